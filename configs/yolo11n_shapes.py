"""YOLO11n (ultralytics yolo11.yaml, scale n) on the embedded synthetic shapes: ``configs/yolov8n_shapes.py`` with
``model.head = "yolo11"``.

Everything else is YOLOv8n's run, as ultralytics trains YOLO11 with the same loss (``v8DetectionLoss``: DFL with
``reg_max`` 16, task-aligned ``topk`` 10, gains 7.5 / 0.5 / 1.5), recipe and NMS validation: only the network
differs (C3k2 blocks, the C2PSA attention block after SPPF, the depthwise class branch; :mod:`jaxdet.models.yolo`).
The optimizer is yolov8n_shapes' SGD: ultralytics' default ``optimizer=auto`` would pick AdamW for a run of 2,000
iterations, for either network (``--config.train.optimizer=auto``; train/README.md).

Run with ``python -m train --config=configs/yolo11n_shapes.py``.
"""

from configs import yolov8n_shapes


def get_config():
    c = yolov8n_shapes.get_config()
    c.name = "yolo11n_shapes"
    to_yolo11(c)
    return c


def to_yolo11(c):
    """Switches a YOLOv8 config ``c`` to the YOLO11 head in place (``configs/yolo11n_dense.py`` uses it too)."""
    c.model.head = "yolo11"  # yolo11.yaml; model.scale, reg_max, dtype and the loss fields are YOLOv8's
    return c
