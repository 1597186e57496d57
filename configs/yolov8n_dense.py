"""YOLOv8n on the dense synthetic split (``data.name="dense_shapes"``): 256 px images with 50-300 small shapes.

Derived from ``configs/yolov8n_shapes.py``; it changes only the data (dense split, 256 px, up to 1,000 object
slots), ultralytics' augmentation recipe (mosaic, affine, HSV, flip; mosaic off for the last
``data.close_mosaic`` steps) and the evaluation's detection budget (ultralytics keeps 300 per image). The same
data with the YOLOv1 head is ``configs/yolov1_dense.py``, for the head comparison in the README.

Run with ``python -m train --config=configs/yolov8n_dense.py``.
"""

from configs import _dense, yolov8n_shapes


def get_config():
    c = yolov8n_shapes.get_config()
    c.name = "yolov8n_dense"
    _dense.apply(c)
    return c
