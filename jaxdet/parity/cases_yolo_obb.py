"""Parity cases of the oriented-box YOLO networks (v8, 11, 26) against ultralytics' ``OBBModel(f"{name}.yaml",
nc=C)`` (``yolov8-obb.yaml``, ``yolo11-obb.yaml``, ``yolo26-obb.yaml`` at scale n).

The rows are those of :mod:`jaxdet.parity.cases_yolo_model` (same harness, random weights and BatchNorm
statistics, images, and inputs: the images and every parameter), for the ``task="obb"`` networks, whose levels
are ``[N, H/s, W/s, 4·reg_max + C + 1]`` with the raw output of the angle branch last (ultralytics' ``preds["angle"]``
is its decoded angle for ``OBB``, so the torch side takes the raw one by forward hooks:
:func:`jaxdet.parity.cases_yolo_model.torch_levels`):

- ``<name>_model_eval``: eval mode, the three per-level outputs (yolo26n-obb: both heads);
- ``<name>_model_train``: train mode, the outputs (yolo26n-obb: both heads, the one-to-one branches on detached
  features) and every updated running mean and variance;

- ``<name>_model_loss``: the train-mode outputs through :func:`jaxdet.losses.obb.obb_loss` (the angle channel
  split off as ``angles``, with the model's ``angle_activation``; YOLO26-obb: :func:`~jaxdet.losses.obb.obb_e2e_loss`
  of both heads at step 0) against ultralytics' own criterion of the ``OBBModel`` (``v8OBBLoss``; ``E2ELoss(model,
  v8OBBLoss)`` at epoch 0, weights 0.8 / 0.2) on its train-mode predictions: the total and the terms (box, cls,
  dfl or l1, angle), divided by the batch size, and their gradient w.r.t. the images and every parameter (torch
  autograd through the whole network; float64 ≤ 1e-8). 64-px images, three rotated GT slots per image (sides
  6-30 px, angles in [-π/4, 3π/4)), one of them padding;

with ``<name>`` = yolov8n_obb, yolo11n_obb, yolo26n_obb.
"""

from __future__ import annotations

import functools
import math
import types

import numpy as np

from jaxdet.losses.obb import obb_e2e_loss, obb_loss
from jaxdet.parity.cases_yolo_model import (
    LOSS_IMAGE,
    NUM_CLASSES,
    STRIDES,
    _abstract,
    _wrt,
    jax_forward,
    make_inputs,
    model_cases,
    torch_model_call,
)
from jaxdet.parity.core import ParityCase
from jaxdet.tal import make_anchor_points

#: the OBB models with rows, as ultralytics names their yaml (``<name>.yaml``).
OBB_MODELS = ("yolov8n-obb", "yolo11n-obb", "yolo26n-obb")
#: float32 tolerances of the loss rows (jaxdet's float32 against torch's float64 result). torch's own float32
#: parameter gradients are further from its float64 ones than jaxdet's: yolov8n-obb 1.8e-4 against jaxdet's 1.2e-4
#: (the row's max relative error 1.5e-4; tests/models/test_yolo_obb.py checks jaxdet's against torch's own);
#: yolo11n-obb 2.0e-3 and yolo26n-obb 5.0e-4 (jaxdet) sit in the C3k2/C2PSA networks' 5e-3 of
#: :data:`jaxdet.parity.cases_yolo_model.RTOL32_LOSS`.
RTOL32_LOSS = {"yolov8n-obb": 5e-4, "yolo11n-obb": 5e-3, "yolo26n-obb": 5e-3}


def make_obb_loss_inputs(rng: np.random.Generator, *, name: str) -> tuple[np.ndarray, ...]:
    """``(images [2, 64, 64, 3], *params, *statistics, gt_labels [2, 3], gt_rboxes [2, 3, 5] xywhr px, valid [2, 3])``:
    sides in [6, 30] px, angles in [-pi/4, 3pi/4) (ultralytics' range), three GT slots per image, one of them
    padding."""
    base = make_inputs(rng, name=name, image_shape=(2, LOSS_IMAGE, LOSS_IMAGE, 3))
    sides = rng.uniform(6.0, 30.0, (2, 3, 2))
    centre = rng.uniform(12.0, LOSS_IMAGE - 12.0, (2, 3, 2))
    theta = rng.uniform(-math.pi / 4, 3 * math.pi / 4, (2, 3, 1))
    valid = np.array([[True, True, False], [True, False, False]])
    rboxes = np.where(valid[..., None], np.concatenate([centre, sides, theta], axis=-1), 0.0)
    labels = np.where(valid, rng.integers(0, NUM_CLASSES, (2, 3)), 0).astype(np.int32)
    return (*base, labels, rboxes, valid)


def jax_obb_loss(*inputs, name: str):
    """:func:`jaxdet.losses.obb.obb_loss` of the jaxdet model's train-mode outputs (the angle channel split off as
    ``angles``, with the model's ``angle_activation``); YOLO26-obb: :func:`~jaxdet.losses.obb.obb_e2e_loss` of both
    heads at step 0 (weights 0.8 / 0.2). ``{"total", "box", "cls", "dfl" | "l1", "angle"}``."""
    *net, labels, rboxes, valid = inputs
    outputs, _ = jax_forward(*net, name=name, train=True)
    model = _abstract(name)
    if model.end2end:
        shapes = [tuple(o.shape[1:3]) for o in outputs["one2many"]]
        points, strides = make_anchor_points(shapes, STRIDES, dtype=rboxes.dtype)
        result = obb_e2e_loss({k: [o[..., :-1] for o in v] for k, v in outputs.items()},
                              {k: [o[..., -1:] for o in v] for k, v in outputs.items()}, points, strides, labels,
                              rboxes, valid, step=0, reg_max=model.reg_max, angle_activation=model.angle_activation)
    else:
        points, strides = make_anchor_points([tuple(o.shape[1:3]) for o in outputs], STRIDES, dtype=rboxes.dtype)
        result = obb_loss([o[..., :-1] for o in outputs], [o[..., -1:] for o in outputs], points, strides, labels,
                          rboxes, valid, reg_max=model.reg_max, angle_activation=model.angle_activation)
    return {"total": result.total, **result.terms}


def torch_obb_loss(*tensors, name: str):
    """ultralytics' own criterion of ``OBBModel`` (``init_criterion``: ``v8OBBLoss``, or ``E2ELoss(model,
    v8OBBLoss)`` at epoch 0 for YOLO26-obb) on the model's train-mode predictions (autograd through the network),
    with ``default.yaml``'s gains: the loss vector and its sum divided by the batch size."""
    from ultralytics.utils.loss import E2ELoss, v8OBBLoss  # noqa: PLC0415 - torch side: imported only when a comparison runs

    from jaxdet.parity.cases_obb import GAINS, ultralytics_obb_batch  # noqa: PLC0415 - torch side: imported only when a comparison runs
    from jaxdet.parity.torch_yolov8 import default_dtype  # noqa: PLC0415 - torch side: imported only when a comparison runs

    *net, labels, rboxes, valid = tensors
    model, run, _ = torch_model_call(*net, name=name, train=True)
    model.args = types.SimpleNamespace(**GAINS, epochs=100)
    end2end = getattr(model.model[-1], "one2one_cv2", None) is not None
    criterion = E2ELoss(model, v8OBBLoss) if end2end else v8OBBLoss(model)
    with default_dtype(rboxes.dtype):
        loss, _ = criterion(run(), ultralytics_obb_batch(labels, rboxes, valid, LOSS_IMAGE))
    loss = loss / rboxes.shape[0]
    names = ("box", "cls", "dfl" if model.model[-1].reg_max > 1 else "l1", "angle")
    return {"total": loss.sum(), **dict(zip(names, loss))}


def loss_case(name: str) -> ParityCase:
    """The ``<name>_model_loss`` row (module doc)."""
    criterion = "E2ELoss(v8OBBLoss)" if name.startswith("yolo26") else "v8OBBLoss"
    return ParityCase(
        name=f"{name.replace('-', '_')}_model_loss",
        reference=f"ultralytics {criterion} of OBBModel('{name}.yaml') train, autograd",
        jax_fn=functools.partial(jax_obb_loss, name=name),
        torch_fn=functools.partial(torch_obb_loss, name=name),
        make_inputs=functools.partial(make_obb_loss_inputs, name=name),
        wrt=_wrt(name, train=True),
        rtol64=1e-8,
        rtol32=RTOL32_LOSS[name],
    )


def cases() -> list[ParityCase]:
    return [case for name in OBB_MODELS for case in (*model_cases(name), loss_case(name))]
