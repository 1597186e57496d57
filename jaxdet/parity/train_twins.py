"""What both sides of a train-step comparison share: one fixed batch, the YOLOv8n config, the optimizers, and the
YOLO models and losses of both libraries.

The optax side is ``python -m train``'s optimizer (:func:`train.recipe.make_optimizer`: AdamW, global-norm clip,
warmup-cosine LR) or ultralytics' SGD recipe (:data:`SGD`); the PyTorch side is their twins (:func:`torch_adamw`,
:func:`make_torch_optimizer`), which make the same updates from the same gradients
(``tests/parity/test_train_twins.py``). The YOLO train-step comparisons (:data:`YOLO_MODELS`: yolov8n, yolo11n,
yolo26n) start both sides from :func:`ultralytics_model_weights`, train :func:`ultralytics_train_model` with its
``init_criterion()`` (``v8DetectionLoss``, or ``E2ELoss`` for YOLO26) and the jaxdet model with :func:`jax_loss_fn`.
Used by the train-step benchmarks (``benchmarks/train_step.py``, ``benchmarks/yolo_train_step.py``) and by the
YOLOv8n trajectory check (:mod:`jaxdet.parity.yolov8_trajectory`).

This module imports torch, ultralytics, ``train`` and ``configs`` at the top: import it lazily from library code.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import torch
from ultralytics.nn.tasks import DetectionModel

from configs import yolov8n_shapes
from jaxdet.data import SyntheticShapes, collate
from jaxdet.losses.yolo26 import yolo26_loss
from jaxdet.models.yolov8_head import STRIDES, YOLOv8Head
from jaxdet.parity.torch_yolov8 import GAINS
from jaxdet.tal import make_anchor_points
from train import recipe as recipe_lib

#: the classes of the YOLOv8n comparisons (COCO's 80, as in ``yolov8n.yaml``).
NUM_CLASSES = 80
#: ultralytics' default SGD recipe: Nesterov momentum, weight decay on every parameter, constant learning rate.
SGD = {"lr": 0.01, "momentum": 0.937, "weight_decay": 5e-4}
#: the YOLO models of the train-step comparisons, as ultralytics names their yaml (``<name>.yaml``).
YOLO_MODELS = ("yolov8n", "yolo11n", "yolo26n")
#: ``E2ELoss``'s ``epochs`` (ultralytics' ``default.yaml``): it is read only by ``update()``, which a train step
#: never calls (the trainer calls it once per epoch), so every step trains at epoch 0 (weights 0.8 / 0.2).
EPOCHS = 100


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


# ------------------------------------------------------------------------------------- YOLO models and losses


def _check_model(name: str) -> None:
    if name not in YOLO_MODELS:
        raise ValueError(f"model {name!r}: expected one of {', '.join(YOLO_MODELS)}")


def is_end2end(name: str) -> bool:
    """Whether the model of ``name`` has YOLO26's two heads (one-to-many and one-to-one) and ``E2ELoss``."""
    _check_model(name)
    return name.startswith("yolo26")


def ultralytics_model_weights(name: str = "yolov8n", num_classes: int = NUM_CLASSES, seed: int = 0) -> dict:
    """The state dict of a seeded random-weight ``DetectionModel(f"{name}.yaml", nc=num_classes)`` (nothing is
    downloaded), as detached copies; for yolov8n those of :func:`jaxdet.parity.torch_yolov8.ultralytics_weights`."""
    _check_model(name)
    torch.manual_seed(seed)
    model = DetectionModel(f"{name}.yaml", nc=num_classes, verbose=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def ultralytics_train_model(name: str, weights: dict, device, num_classes: int = NUM_CLASSES):
    """``DetectionModel(f"{name}.yaml", nc=num_classes)`` holding ``weights``, in train mode on ``device``, with
    ``args`` carrying the loss gains (``torch_yolov8.GAINS``) and :data:`EPOCHS`, as its ``init_criterion()``
    (``v8DetectionLoss``, or ``E2ELoss`` for YOLO26) reads them."""
    _check_model(name)
    model = DetectionModel(f"{name}.yaml", nc=num_classes, verbose=False)
    model.load_state_dict(weights, strict=True)
    model.args = types.SimpleNamespace(**GAINS, epochs=EPOCHS)
    return model.to(device).train()


def jax_loss_fn(name: str, num_classes: int = NUM_CLASSES):
    """``loss_fn(outputs, batch, *, step, state) -> (loss, metrics, state)`` of ``train.step.make_train_step`` for
    the jaxdet model of ``name``, the twin of ultralytics' ``init_criterion()`` divided by the batch size:

    - yolov8n, yolo11n: the ``yolov8`` head's loss (:func:`jaxdet.losses.yolov8.yolov8_loss`, what
      ``python -m train`` trains YOLOv8 with) against ``v8DetectionLoss``;
    - yolo26n: :func:`jaxdet.losses.yolo26.yolo26_loss` of both heads at step 0 (weights 0.8 one-to-many,
      0.2 one-to-one, reg_max 1) against ``E2ELoss`` at epoch 0 (see :data:`EPOCHS`).

    Metrics: ``loss`` and the gain-scaled terms (``box, cls, dfl``; yolo26n: the weighted ``box, cls, l1``).
    """
    if not is_end2end(name):
        return YOLOv8Head(num_classes=num_classes).loss

    def loss_fn(outputs, batch, *, step, state):
        del step  # E2ELoss's weights move once per epoch; a train step stays in epoch 0
        levels = outputs["one2many"]
        shapes = [tuple(int(d) for d in o.shape[1:3]) for o in levels]
        dtype = jnp.promote_types(levels[0].dtype, jnp.float32)
        points, strides = make_anchor_points(shapes, STRIDES, dtype=dtype)
        h, w = shapes[0][0] * STRIDES[0], shapes[0][1] * STRIDES[0]
        scale = jnp.asarray([w, h, w, h], dtype)
        res = yolo26_loss(outputs, points, strides, batch["classes"], batch["boxes"].astype(dtype) * scale,
                          batch["valid"], step=0)
        return res.total, {"loss": res.total, **res.terms}, state

    return loss_fn
