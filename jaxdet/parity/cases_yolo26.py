"""Parity cases of YOLO26's loss pieces and NMS-free decode against ultralytics 8.4.190.

- ``task_aligned_assign`` with ``topk=7, topk2=1`` (the one-to-one assigner of ``E2ELoss``) vs
  ``TaskAlignedAssigner(topk=7, topk2=1)``: every field, the integer ones exactly.
- ``yolov8_loss`` with ``reg_max=1`` (raw ``ltrb`` distances, the L1 box term of ``BboxLoss``) vs
  ``v8DetectionLoss`` on a ``reg_max=1`` head, with ``topk=10`` and with ``topk=7, topk2=1``: the three terms and
  the gradient w.r.t. the raw outputs.
- ``yolo26_loss`` vs ``E2ELoss`` after ``e`` calls of ``update()`` (10 epochs; ``e`` = 0, 4 and 9, the first, a
  middle and the last weight of its schedule): the weighted terms and total (ultralytics' loss vector and its sum,
  divided by the batch size), each branch's three terms, and the gradient w.r.t. the raw outputs of both branches.
- ``nms_free_decode`` vs ``Detect.postprocess`` (with ``get_topk_index``'s anchor indices): anchor indices,
  classes, scores and boxes, for ``max_det`` = 1, 300 and 1000 (above ultralytics' default; the 256-px image has
  1,344 anchors), class-aware and agnostic.

Inputs as :mod:`jaxdet.parity.cases_yolov8` (256-px images, 7 classes, GT boxes of every size, a duplicated GT,
padding and an image without objects), with the 4 box channels the raw distances of a fresh YOLO26 head: 0.5 to 6
grid units.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxdet.losses.yolo26 import yolo26_loss
from jaxdet.losses.yolov8 import yolov8_loss
from jaxdet.nms_free import nms_free_decode
from jaxdet.parity.cases_yolov8 import BATCH, CLASSES, IMAGE, anchors_pixels, gt_inputs, tal_inputs
from jaxdet.parity.core import ParityCase
from jaxdet.schedules import one2many_weight
from jaxdet.tal import task_aligned_assign

EPOCHS = 10


def raw_outputs(rng: np.random.Generator) -> np.ndarray:
    """``[B, A, 4 + C]``: raw distances of 0.5–6 grid units, then class logits around -2."""
    points, _ = anchors_pixels()
    x = rng.normal(-2.0, 1.0, (BATCH, points.shape[0], 4 + CLASSES))
    x[..., :4] = rng.uniform(0.5, 6.0, (BATCH, points.shape[0], 4))
    return x


def loss_inputs(rng: np.random.Generator, num_gt: int) -> tuple[np.ndarray, ...]:
    return (raw_outputs(rng), *gt_inputs(rng, num_gt))


def e2e_inputs(rng: np.random.Generator, num_gt: int) -> tuple[np.ndarray, ...]:
    return (raw_outputs(rng), raw_outputs(rng), *gt_inputs(rng, num_gt))


def decode_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (raw_outputs(rng),)


# ------------------------------------------------------------------------------------------------ jax side


@jax.jit
def _tal_jax(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid):
    return task_aligned_assign(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid, topk=7,
                               topk2=1)._asdict()


def _anchors(dtype):
    points, strides = anchors_pixels()
    return points.astype(dtype), strides.astype(dtype)


@functools.partial(jax.jit, static_argnames=("topk", "topk2"))
def _loss_jax(outputs, gt_labels, gt_boxes, valid, *, topk, topk2):
    out = yolov8_loss(outputs, *_anchors(outputs.dtype), gt_labels, gt_boxes, valid, reg_max=1, topk=topk,
                      topk2=topk2, image_size=(IMAGE, IMAGE))
    return {"total": out.total, **out.terms}


@functools.partial(jax.jit, static_argnames=("epoch",))
def _e2e_jax(one2many, one2one, gt_labels, gt_boxes, valid, *, epoch):
    out = yolo26_loss({"one2many": one2many, "one2one": one2one}, *_anchors(one2many.dtype), gt_labels, gt_boxes,
                      valid, step=epoch, schedule=one2many_weight(total_epochs=EPOCHS), image_size=(IMAGE, IMAGE))
    branch = {name: {"total": b.total, **b.terms} for name, b in (("one2many", out.one2many),
                                                                   ("one2one", out.one2one))}
    return {"total": out.total, **out.terms, **branch}


@functools.partial(jax.jit, static_argnames=("max_det", "agnostic"))
def _decode_jax(outputs, *, max_det, agnostic):
    return nms_free_decode(outputs, *_anchors(outputs.dtype), max_det=max_det, agnostic=agnostic)._asdict()


# ---------------------------------------------------------------------------------------------- torch side
# (imported only when a comparison runs: `import jaxdet.parity` loads no torch)


def _tal_torch(*tensors):
    from jaxdet.parity.torch_yolov8 import tal_torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    return tal_torch(*tensors, topk=7, topk2=1)


def _loss_torch(outputs, gt_labels, gt_boxes, valid, *, topk, topk2):
    from jaxdet.parity.torch_yolo26 import detection_loss_torch  # noqa: PLC0415 - torch side, lazily

    return detection_loss_torch(outputs, gt_labels, gt_boxes, valid, image_size=IMAGE, topk=topk, topk2=topk2)


def _e2e_torch(one2many, one2one, gt_labels, gt_boxes, valid, *, epoch):
    from jaxdet.parity.torch_yolo26 import e2e_loss_torch  # noqa: PLC0415 - torch side, lazily

    return e2e_loss_torch(one2many, one2one, gt_labels, gt_boxes, valid, image_size=IMAGE, epoch=epoch,
                          epochs=EPOCHS)


def _decode_torch(outputs, *, max_det, agnostic):
    from jaxdet.parity.torch_yolo26 import postprocess_torch  # noqa: PLC0415 - torch side, lazily

    out = postprocess_torch(outputs, image_size=IMAGE, max_det=max_det, agnostic=agnostic)
    return {"boxes": out["boxes"], "indices": out["indices"].int(), "labels": out["labels"].int(),
            "scores": out["scores"]}


def cases() -> list[ParityCase]:
    rows = [
        ParityCase(
            name=f"task_aligned_assign (topk=7, topk2=1, G={g})",
            reference="ultralytics.utils.tal.TaskAlignedAssigner(topk=7, topk2=1)",
            jax_fn=_tal_jax,
            torch_fn=_tal_torch,
            make_inputs=functools.partial(tal_inputs, num_gt=g),
            wrt=(),
        )
        for g in (20, 300)
    ]
    rows += [
        ParityCase(
            name=f"yolov8_loss (reg_max=1, L1 box term, {what})",
            reference="ultralytics.utils.loss.v8DetectionLoss (reg_max=1: BboxLoss L1)",
            jax_fn=functools.partial(_loss_jax, topk=topk, topk2=topk2),
            torch_fn=functools.partial(_loss_torch, topk=topk, topk2=topk2),
            make_inputs=functools.partial(loss_inputs, num_gt=20),
        )
        for what, topk, topk2 in (("topk=10", 10, None), ("topk=7, topk2=1", 7, 1))
    ]
    rows += [
        ParityCase(
            name=f"yolo26_loss (epoch {epoch} of {EPOCHS}{what})",
            reference="ultralytics.utils.loss.E2ELoss",
            jax_fn=functools.partial(_e2e_jax, epoch=epoch),
            torch_fn=functools.partial(_e2e_torch, epoch=epoch),
            make_inputs=functools.partial(e2e_inputs, num_gt=g),
            wrt=(0, 1),
        )
        for epoch, g, what in ((0, 20, ", G=20"), (4, 300, ", G=300"), (9, 20, ", G=20"),
                               (4, -5, ", no objects: G=5, all padding"))
    ]
    rows += [
        ParityCase(
            name=f"nms_free_decode (max_det={max_det}{', agnostic' if agnostic else ''})",
            reference="ultralytics.nn.modules.head.Detect.postprocess",
            jax_fn=functools.partial(_decode_jax, max_det=max_det, agnostic=agnostic),
            torch_fn=functools.partial(_decode_torch, max_det=max_det, agnostic=agnostic),
            make_inputs=decode_inputs,
            wrt=(),
        )
        for max_det, agnostic in ((1, False), (300, False), (1000, False), (300, True))
    ]
    return rows
