"""YOLO26n (ultralytics yolo26.yaml, scale n) on the embedded synthetic shapes: ``configs/yolov8n_shapes.py`` with
the yolo26 head, its end-to-end loss and its NMS-free evaluation.

What differs from YOLOv8n's run, each as ultralytics trains and validates YOLO26 (:mod:`jaxdet.models.yolo26_head`):

- ``model.head = "yolo26"``, ``model.reg_max = 1``: no DFL bins, the four box values are the distances, and the
  third loss term is an L1 term on them (its gain is ``loss.dfl``, ultralytics' name);
- the loss (ultralytics' ``E2ELoss``): the one-to-many branch with ``loss.topk`` 10, the one-to-one branch with
  ``loss.one2one_topk`` 7 and ``loss.one2one_topk2`` 1, weighted by the one-to-many weight ``loss.one2many``:
  ultralytics' linear decay from 0.8 to 0.1, mapped from its epochs onto this run's 2,000 steps with one "epoch"
  per step (``loss.one2many_epochs = 0``: the weight moves every step; 8 gives ultralytics' per-epoch staircase
  over the run's 7.8 epochs; ``constant`` and ``cosine`` are the alternatives,
  :func:`jaxdet.schedules.one2many_schedule`);
- the evaluation: the one-to-one branch's top ``eval.max_detections`` (300) (anchor, class) pairs above
  ``eval.score_threshold``, without NMS (``eval.iou_threshold`` is not read; ``eval.multi_label`` and
  ``eval.pre_nms_top_k``, NMS options, are removed).

The optimizer is yolov8n_shapes' SGD (lr0 0.01, momentum 0.937), so that the v8, 11 and 26 runs differ only in the
head. ultralytics' default ``optimizer=auto`` picks AdamW (lr0 0.002·5/(4+C) = 0.00111, momentum 0.9) for a run of
2,000 iterations and MuSGD only above 10,000, for YOLOv8 as for YOLO26: ``--config.train.optimizer=auto`` trains
with that choice, ``=musgd`` with YOLO26's MuSGD (train/README.md).

Measured on a 2-core CPU (train/README.md, "Measured runs"): 6 min 52 s and box mAP@.5 0.896 (NMS-free), where
YOLOv8n's default config took 4 min 21 s to 0.985 on the same 2,000 batches, so YOLOv8n stays the default.

Run with ``python -m train --config=configs/yolo26n_shapes.py``.
"""

from configs import yolov8n_shapes


def get_config():
    c = yolov8n_shapes.get_config()
    c.name = "yolo26n_shapes"
    to_yolo26(c)
    return c


def to_yolo26(c):
    """Switches a YOLOv8 config ``c`` to the YOLO26 head in place (``configs/yolo26n_dense.py`` uses it too)."""
    c.model.head = "yolo26"  # yolo26.yaml, end-to-end
    c.model.reg_max = 1  # no DFL bins: the box distances themselves
    # jaxdet.losses.yolo26.yolo26_loss (ultralytics' E2ELoss); box, cls, score_target, topk, tal_norm_eps as v8
    c.loss.dfl = 1.5  # the gain of the L1 term (reg_max 1), ultralytics' dfl
    c.loss.one2one_topk = 7  # the one-to-one assigner's candidates per object
    c.loss.one2one_topk2 = 1  # ... of which it keeps the best (0: all topk)
    c.loss.one2many = "linear"  # one-to-many weight: linear | constant | cosine
    c.loss.one2many_start = 0.8  # at the first step (constant: throughout)
    c.loss.one2many_end = 0.1  # at the last step
    c.loss.one2many_epochs = 0  # 0: the weight moves every step; E: held within each of E parts (ultralytics' epochs)
    # NMS-free evaluation: top eval.max_detections pairs of the one-to-one branch above eval.score_threshold
    del c.eval.multi_label, c.eval.pre_nms_top_k  # NMS options (eval.iou_threshold stays, unread by this head)
    return c
