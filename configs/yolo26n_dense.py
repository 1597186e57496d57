"""YOLO26n on the dense synthetic split: ``configs/yolov8n_dense.py`` (data, augmentation, length, evaluation, and
its ``loss.tal_norm_eps = 0`` for 6-15 px objects) with the yolo26 head, its loss and its NMS-free evaluation
(``configs/yolo26n_shapes.py``). The one-to-many weight decays from 0.8 to 0.1 over the run's 1,500 steps.

Run with ``python -m train --config=configs/yolo26n_dense.py``.
"""

from configs import yolo26n_shapes, yolov8n_dense


def get_config():
    c = yolov8n_dense.get_config()
    c.name = "yolo26n_dense"
    yolo26n_shapes.to_yolo26(c)
    return c
