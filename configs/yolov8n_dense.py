"""YOLOv8n on the dense synthetic split (``data.name="dense_shapes"``): 256 px images with 50-300 small shapes.

Derived from ``configs/yolov8n_shapes.py``; it changes only the data (dense split, 256 px, 1,216 object
slots), ultralytics' augmentation recipe (mosaic, affine, HSV, flip; mosaic off for the last
``data.close_mosaic`` steps), the evaluation's detection budget (ultralytics keeps 300 per image) and the length:
1,500 batches of 16 (about 23 epochs of the 1,024 training images), with ultralytics' 3 warm-up epochs. Like
``yolov8n_shapes`` it updates after every batch (``train.nbs = 16``; ultralytics: 64). One loss field differs
from ultralytics: ``loss.tal_norm_eps = 0``. With ultralytics' 1e-9 the task-aligned assigner's soft targets of
6-15 px objects start near 0 (their alignment metric is about 1e-17 under the initial 160 px predictions), and
so do the box and DFL terms they weight. The first 200 batches of a run with 1e-9 trained to box 0.003, cls
0.007, dfl 0.002 (:func:`jaxdet.tal.task_aligned_assign`, ``norm_eps``). The same data with the YOLOv1 head is
``configs/yolov1_dense.py``, for the head comparison in the README.

Run with ``python -m train --config=configs/yolov8n_dense.py``.
"""

from configs import _dense, yolov8n_shapes


def get_config():
    c = yolov8n_shapes.get_config()
    c.name = "yolov8n_dense"
    _dense.apply(c)
    c.loss.tal_norm_eps = 0.0  # see above: ultralytics' 1e-9 zeroes the targets of tiny objects
    # nbs 16 from yolov8n_shapes: an update every batch (ultralytics' 64 had 250 updates in 1,000 batches and
    # reached box mAP@.5 0.44; README, "Dense scenes")
    c.train.steps = 1500  # data.close_mosaic follows: the last 150 batches without mosaic
    c.train.warmup_steps = 192  # 3 epochs of 64 batches
    c.train.eval_every = 250
    c.train.checkpoint_every = 250
    return c
