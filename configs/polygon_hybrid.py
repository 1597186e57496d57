"""Polygon head on synthetic shapes, hybrid L2 + MGIoU loss with a cosine α schedule 0.9 → 0.2.

α (the weight of the vertex L2 term) follows ``jaxdet.schedules.cosine_alpha``: a half cosine from 0.9 to 0.2
over the first 70% of training (seed 003), then 0.2. One step is one "epoch" of the schedule
(``steps_per_epoch=1``, ``total_epochs`` = ``train.steps`` when left at 0), interpolated per step.

Other schedules: ``--config.loss.alpha.name=linear|step|exponential|two_stage|static|adaptive``.

    python -m train --config configs/polygon_hybrid.py

Glossary: seed 003: the hybrid L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation (the
``ultralytics-mgiou`` fork, on Le et al. 2025, "Marginalized Generalized IoU (MGIoU)", arXiv 2504.16443).
"""

import ml_collections

from configs import yolov1_shapes


def get_config() -> ml_collections.ConfigDict:
    c = yolov1_shapes.get_config()
    c.name = "polygon_hybrid"
    c.model.head = "polygon"

    c.loss = ml_collections.ConfigDict()
    c.loss.lambda_obj = 1.0
    c.loss.lambda_noobj = 0.5
    c.loss.lambda_cls = 1.0
    c.loss.lambda_box = 2.0
    c.loss.lambda_poly = 2.0
    c.loss.normalization = "none"  # hybrid: "none" | "loss_ema" | "grad_norm"
    c.loss.alpha = ml_collections.ConfigDict()
    c.loss.alpha.name = "cosine"
    c.loss.alpha.alpha_start = 0.9
    c.loss.alpha.alpha_end = 0.2
    c.loss.alpha.transition_fraction = 0.7
    c.loss.alpha.total_epochs = 0  # 0: train.steps
    c.loss.alpha.steps_per_epoch = 1
    c.loss.alpha.per_epoch = False
    return c
