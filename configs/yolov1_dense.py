"""YOLOv1 grid head on the dense synthetic split (``data.name="dense_shapes"``), the baseline for
``configs/yolov8n_dense.py``: the same data, recipe and evaluation (``configs/_dense.py``).

Derived from ``configs/yolov1_shapes.py``. At 256 px the three stride-2 stages give a 32 x 32 grid
(``model.grid_size = 32``); YOLOv1 still predicts one class and ``model.num_boxes`` boxes per cell, which is
what the dense split stresses.

Run with ``python -m train --config=configs/yolov1_dense.py``.
"""

from configs import _dense, yolov1_shapes


def get_config():
    c = yolov1_shapes.get_config()
    c.name = "yolov1_dense"
    _dense.apply(c)
    c.model.grid_size = 32  # 256 px / 2**len(model.widths)
    return c
