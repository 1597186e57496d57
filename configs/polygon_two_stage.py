"""Polygon head, two-stage training: pure vertex L2 (α = 1) for the first half, then pure MGIoU (α = 0).

``jaxdet.schedules.two_stage_alpha`` (``optax.join_schedules`` of two constants); the switch is at
``switch_fraction`` of ``train.steps``.

    python -m train --config configs/polygon_two_stage.py
"""

import ml_collections

from configs import polygon_hybrid


def get_config() -> ml_collections.ConfigDict:
    c = polygon_hybrid.get_config()
    c.name = "polygon_two_stage"
    c.loss.alpha = ml_collections.ConfigDict()
    c.loss.alpha.name = "two_stage"
    c.loss.alpha.switch_fraction = 0.5
    c.loss.alpha.alpha_first = 1.0
    c.loss.alpha.alpha_second = 0.0
    c.loss.alpha.total_epochs = 0  # 0: train.steps
    c.loss.alpha.steps_per_epoch = 1
    return c
