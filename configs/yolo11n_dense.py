"""YOLO11n on the dense synthetic split: ``configs/yolov8n_dense.py`` (data, augmentation, length, evaluation, and
its ``loss.tal_norm_eps = 0`` for 6-15 px objects) with the yolo11 head (``configs/yolo11n_shapes.py``).

Run with ``python -m train --config=configs/yolo11n_dense.py``.
"""

from configs import yolo11n_shapes, yolov8n_dense


def get_config():
    c = yolov8n_dense.get_config()
    c.name = "yolo11n_dense"
    yolo11n_shapes.to_yolo11(c)
    return c
