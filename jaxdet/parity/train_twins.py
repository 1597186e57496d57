"""What both sides of a train-step comparison share: one fixed batch, the YOLOv8n config, the optimizers.

The optax side is ``python -m train``'s optimizer (:func:`train.recipe.make_optimizer`: AdamW, global-norm clip,
warmup-cosine LR) or ultralytics' SGD recipe (:data:`SGD`); the PyTorch side is their twins (:func:`torch_adamw`,
:func:`make_torch_optimizer`), which make the same updates from the same gradients
(``tests/parity/test_train_twins.py``). Used by the train-step benchmarks (``benchmarks/train_step.py``,
``benchmarks/yolov8_train_step.py``) and by the YOLOv8n trajectory check (:mod:`jaxdet.parity.yolov8_trajectory`).

This module imports torch, ``train`` and ``configs`` at the top: import it lazily from library code.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import ml_collections
import numpy as np
import optax
import torch

from configs import yolov8n_shapes
from jaxdet.data import SyntheticShapes, collate
from train import recipe as recipe_lib

#: the classes of the YOLOv8n comparisons (COCO's 80, as in ``yolov8n.yaml``).
NUM_CLASSES = 80
#: ultralytics' default SGD recipe: Nesterov momentum, weight decay on every parameter, constant learning rate.
SGD = {"lr": 0.01, "momentum": 0.937, "weight_decay": 5e-4}


def make_batch(cfg: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """One fixed global batch (the contract batch dict, numpy) of the config's synthetic shapes:
    ``cfg.train.batch_size`` images of ``cfg.data.image_size`` px, padded to ``cfg.data.max_objects_per_image``
    slots."""
    n = int(cfg.train.batch_size)
    ds = SyntheticShapes("train", image_size=int(cfg.data.image_size), num_images=n, seed=int(cfg.data.seed),
                         num_vertices=int(cfg.data.num_vertices), min_objects=int(cfg.data.min_objects),
                         max_objects_per_image=int(cfg.data.max_objects_per_image))
    return collate([ds[i] for i in range(n)], max_objects=int(cfg.data.max_objects_per_image))


def yolov8n_config(*, batch: int, image_size: int, optimizer: str) -> ml_collections.ConfigDict:
    """``configs/yolov8n_shapes.py`` at :data:`NUM_CLASSES` classes with this batch, image size and optimizer
    (``"sgd"``: :data:`SGD`; ``"adamw"``: ``train.recipe.make_optimizer``)."""
    cfg = yolov8n_shapes.get_config()
    cfg.model.num_classes = NUM_CLASSES
    cfg.train.batch_size = int(batch)
    cfg.data.image_size = int(image_size)  # shared with model.image_size
    cfg.train.optimizer = optimizer
    return cfg


def make_tx(cfg: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(optax transformation, lr schedule)`` of ``cfg.train.optimizer``: :data:`SGD` (optax
    ``add_decayed_weights`` + ``sgd(nesterov=True)``, which is ``torch.optim.SGD(nesterov=True, weight_decay=...)``)
    or ``"adamw"`` (``train.recipe.make_optimizer``)."""
    if cfg.train.optimizer == "adamw":
        return recipe_lib.make_optimizer(cfg.train)
    tx = optax.chain(optax.add_decayed_weights(SGD["weight_decay"]),
                     optax.sgd(SGD["lr"], momentum=SGD["momentum"], nesterov=True))
    return tx, optax.constant_schedule(SGD["lr"])


def warmup_cosine(train_cfg: ml_collections.ConfigDict) -> Callable[[int], float]:
    """The LR multiplier of ``train.recipe.make_lr_schedule`` (``optax.warmup_cosine_decay_schedule``), for
    ``torch.optim.lr_scheduler.LambdaLR``."""
    steps = int(train_cfg.steps)
    warmup = int(min(train_cfg.warmup_steps, max(steps - 1, 0)))
    decay = max(steps, warmup + 1) - warmup
    end = float(train_cfg.end_lr_factor)

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        t = min(step - warmup, decay) / decay
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


def torch_adamw(params, train_cfg: ml_collections.ConfigDict, *, fused: bool = False):
    """``(optimizer, update)``: ``update()`` = clip the grads' global norm, AdamW step, LR schedule step.

    The PyTorch twin of ``train.recipe.make_optimizer``: ``optax.chain(clip_by_global_norm, adamw)`` with the
    warmup-cosine schedule (torch's AdamW decays ``p *= 1 - lr·wd`` before the Adam step, which is optax's
    ``p - lr·(adam + wd·p)``).
    """
    t = train_cfg
    opt = torch.optim.AdamW(params, lr=float(t.learning_rate), betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=float(t.weight_decay), fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(t))
    clip = float(t.get("grad_clip", 0.0))

    def update():
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sched.step()

    return opt, update


def make_torch_optimizer(params, cfg: ml_collections.ConfigDict):
    """``(optimizer, update)``: the PyTorch twin of :func:`make_tx` for ``cfg.train.optimizer``; ``update()``
    applies one step."""
    if cfg.train.optimizer == "adamw":
        return torch_adamw(params, cfg.train)
    opt = torch.optim.SGD(params, lr=SGD["lr"], momentum=SGD["momentum"], nesterov=True,
                          weight_decay=SGD["weight_decay"])
    return opt, opt.step
