"""Parity cases of the oriented-box (OBB) pieces against ultralytics 8.4.190.

- ``probiou`` / ``probiou_pairwise`` vs ``ultralytics.utils.metrics.probiou`` (with ``RotatedBboxLoss``'s
  ``floor=0.01``) / ``batch_probiou``, on pairs that overlap, coincide, or lie apart: values and gradients.
- ``rotated_task_aligned_assign`` vs ``ultralytics.utils.tal.RotatedTaskAlignedAssigner(topk=10, alpha=0.5,
  beta=6.0, eps=1e-9)`` as ``v8OBBLoss`` builds it, with 0, 1, 20 and 300 GT slots per image: labels, boxes, soft
  scores, foreground mask and GT index (integers exactly).
- ``obb_loss`` vs ``ultralytics.utils.loss.v8OBBLoss`` built from ``OBBModel("yolov8n-obb.yaml")`` (the four
  gain-scaled terms ``box, cls, dfl, angle``, ``default.yaml``'s gains) and their gradients with respect to the
  raw head outputs ``[B, A, 64 + C]`` and the raw angle logits ``[B, A, 1]`` (the torch side applies the ``OBB``
  head's ``(sigmoid − 1/4)·π`` itself); one row with ``reg_max = 1`` and raw angles (YOLO26-OBB's ``OBB26``
  head and its L1 term, ``OBBModel("yolo26n-obb.yaml")``'s ``v8OBBLoss`` branch).

Inputs (256-px images, ``A = 1344`` anchors at strides 8/16/32): GT boxes of every size from 1 px (dropped by the
2-px filter) through sizes under the 16-px candidate floor to half the image, angles over ``[0, π/2)`` (ultralytics'
datasets regularise them there) and beyond, a duplicated GT, padding among the slots and an image with none. The
GTs keep clear of the image's first 12 px rows (the zero-metric ties of ``torch.topk``, :mod:`jaxdet.tal`).
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from jaxdet.losses.obb import obb_loss
from jaxdet.parity.cases_yolov8 import BATCH, CLASSES, IMAGE, anchors_pixels, labels_and_padding
from jaxdet.parity.core import ParityCase
from jaxdet.rboxes import probiou, probiou_pairwise
from jaxdet.tal import rotated_task_aligned_assign

GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5, "angle": 1.0}
STRIDES = (8, 16, 32)


# ------------------------------------------------------------------------------------------------------ inputs


def random_rboxes(rng: np.random.Generator, shape: tuple[int, ...], *, spread: float = 20.0) -> np.ndarray:
    """``shape + (5,)`` xywhr boxes: centres in ``[0, spread]``, sides in ``[0.5, 12]``, angles in ``(-π, π)``."""
    centre = rng.uniform(0, spread, shape + (2,))
    size = rng.uniform(0.5, 12.0, shape + (2,))
    return np.concatenate([centre, size, rng.uniform(-math.pi, math.pi, shape + (1,))], axis=-1)


def probiou_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two ``[256, 5]`` sets of pairs: identical, overlapping and unrelated (some far apart)."""
    b1, b2 = random_rboxes(rng, (256,)), random_rboxes(rng, (256,))
    b2[:32] = b1[:32]
    b2[32:128, :2] = b1[32:128, :2] + rng.normal(0, 1.0, (96, 2))
    b2[224:, :2] += 200.0
    return b1, b2


def pairwise_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``[2, 24, 5]`` and ``[2, 17, 5]`` boxes, some shared."""
    b1, b2 = random_rboxes(rng, (2, 24)), random_rboxes(rng, (2, 17))
    b2[:, :5] = b1[:, :5]
    return b1, b2


def gt_inputs(rng: np.random.Generator, num_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gt_labels [B, G] int32, gt_rboxes [B, G, 5] xywhr pixels, valid [B, G])`` as in the module doc;
    ``num_gt < 0`` gives ``G = -num_gt`` slots of padding only."""
    empty, num_gt = num_gt < 0, abs(num_gt)
    size = rng.uniform(3.0, IMAGE / 2, (BATCH, num_gt, 2)) * rng.choice([0.3, 0.1, 1.0], (BATCH, num_gt, 1))
    size = np.where(rng.uniform(size=(BATCH, num_gt, 2)) < 0.05, 1.0, size)  # some sides under the 2-px filter
    angle = rng.uniform(0, math.pi / 2, (BATCH, num_gt, 1))
    angle = np.where(rng.uniform(size=angle.shape) < 0.2, rng.uniform(-math.pi, math.pi, angle.shape), angle)
    radius = np.hypot(*np.maximum(size, 16.0).transpose(2, 0, 1))[..., None] / 2  # the enlarged box's circle
    low = np.concatenate([radius, radius + 12.0], axis=-1)  # clear of the first 12 px rows
    centre = rng.uniform(low, np.maximum(IMAGE - radius, low + 1))
    return labels_and_padding(rng, np.concatenate([centre, size, angle], axis=-1), empty)


def rtal_inputs(rng: np.random.Generator, num_gt: int) -> tuple[np.ndarray, ...]:
    """``(pred_scores [B, A, C], pred_rboxes [B, A, 5] px, anchor_points [A, 2] px, gt_labels, gt_rboxes, valid)``;
    the predictions are rotated boxes around every anchor. Sides under the 2-px filter count as valid here (the
    assigner has no such filter: the loss drops them)."""
    points, strides = anchors_pixels()
    points = points * strides[:, None]
    scores = 1 / (1 + np.exp(-rng.normal(-1.0, 2.0, (BATCH, points.shape[0], CLASSES))))
    shape = (BATCH, points.shape[0])
    centre = points + rng.normal(0, 8.0, shape + (2,))
    pred = np.concatenate([centre, rng.uniform(4.0, 100.0, shape + (2,)),
                           rng.uniform(-math.pi / 4, 3 * math.pi / 4, shape + (1,))], axis=-1)
    return (scores, pred, points, *gt_inputs(rng, num_gt))


def loss_inputs(rng: np.random.Generator, num_gt: int, reg_max: int = 16) -> tuple[np.ndarray, ...]:
    """``(outputs [B, A, 4·reg_max + C], angle logits [B, A, 1], gt_labels, gt_rboxes, valid)``: raw outputs as a
    fresh head gives them (class logits around -2, DFL logits of unit spread; with ``reg_max = 1`` distances in
    ``[0.5, 6]`` grid units)."""
    points, _ = anchors_pixels()
    outputs = rng.normal(0.0, 1.0, (BATCH, points.shape[0], 4 * reg_max + CLASSES))
    outputs[..., 4 * reg_max:] -= 2.0
    if reg_max == 1:
        outputs[..., :4] = rng.uniform(0.5, 6.0, (BATCH, points.shape[0], 4))
    angles = rng.normal(0.0, 1.5, (BATCH, points.shape[0], 1))
    return (outputs, angles, *gt_inputs(rng, num_gt))


# ------------------------------------------------------------------------------------------------- jaxdet side


@jax.jit
def _probiou_jax(b1, b2):
    return {"probiou": probiou(b1, b2), "probiou_floor": probiou(b1, b2, floor=0.01)}


@jax.jit
def _rtal_jax(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid):
    return rotated_task_aligned_assign(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid)._asdict()


@functools.partial(jax.jit, static_argnames=("reg_max",))
def _loss_jax(outputs, angles, gt_labels, gt_rboxes, valid, reg_max=16):
    points, strides = anchors_pixels()
    out = obb_loss(outputs, angles, points.astype(outputs.dtype), strides.astype(outputs.dtype), gt_labels,
                   gt_rboxes, valid, reg_max=reg_max, angle_activation="sigmoid" if reg_max > 1 else "none",
                   image_size=(IMAGE, IMAGE))
    return {"total": out.total, **out.terms}


# -------------------------------------------------------------------------------------------------- torch side


def _probiou_torch(b1, b2):
    from ultralytics.utils.metrics import probiou as probiou_torch  # noqa: PLC0415 - torch side: imported lazily

    return {"probiou": probiou_torch(b1, b2)[:, 0], "probiou_floor": probiou_torch(b1, b2, floor=0.01)[:, 0]}


def _pairwise_torch(b1, b2):
    import torch  # noqa: PLC0415 - torch side: imported lazily
    from ultralytics.utils.metrics import batch_probiou  # noqa: PLC0415

    return torch.stack([batch_probiou(x, y) for x, y in zip(b1, b2)])


def rtal_torch(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid, *, topk=10, topk2=None):
    """ultralytics' ``RotatedTaskAlignedAssigner`` as ``v8OBBLoss`` builds it → the jaxdet result's fields."""
    from ultralytics.utils.tal import RotatedTaskAlignedAssigner  # noqa: PLC0415 - torch side: imported lazily

    assigner = RotatedTaskAlignedAssigner(topk=topk, num_classes=pred_scores.shape[-1], alpha=0.5, beta=6.0,
                                          stride=list(STRIDES), eps=1e-9, topk2=topk2)
    dtype = pred_scores.dtype
    labels, boxes, scores, fg_mask, gt_index = assigner(
        pred_scores, pred_boxes, anchor_points, gt_labels[..., None].to(dtype), gt_boxes, valid[..., None].to(dtype)
    )
    return {"labels": labels.int(), "boxes": boxes, "scores": scores, "fg_mask": fg_mask, "gt_index": gt_index.int()}


@functools.lru_cache(maxsize=None)
def obb_model(num_classes: int, yaml: str = "yolov8n-obb.yaml"):
    """A random-weight ``OBBModel(yaml)`` with ``num_classes`` classes and ``args`` carrying the gains."""
    import types  # noqa: PLC0415

    from ultralytics.nn.tasks import OBBModel  # noqa: PLC0415 - torch side: imported lazily

    model = OBBModel(yaml, nc=num_classes, verbose=False)
    model.args = types.SimpleNamespace(**GAINS)
    return model


def ultralytics_obb_batch(gt_labels, gt_rboxes, valid, image_size: int) -> dict:
    """ultralytics' OBB training batch (``batch_idx``, ``cls``, ``bboxes`` as normalised xywhr) of the valid GTs."""
    import torch  # noqa: PLC0415

    image, slot = np.nonzero(np.asarray(valid))
    index = (torch.from_numpy(image), torch.from_numpy(slot))
    boxes = gt_rboxes[index]  # [N, 5] pixels
    scale = torch.tensor([image_size] * 4 + [1.0], dtype=boxes.dtype)
    return {"batch_idx": index[0].to(boxes.dtype), "cls": gt_labels[index].to(boxes.dtype), "bboxes": boxes / scale}


def v8_obb_loss_torch(outputs, angles, gt_labels, gt_rboxes, valid, *, image_size: int, reg_max: int = 16,
                      yaml: str = "yolov8n-obb.yaml"):
    """``v8OBBLoss.loss`` on raw outputs ``[B, A, 4·reg_max + C]`` and angle logits ``[B, A, 1]`` (activated as the
    ``OBB`` head does with ``reg_max > 1``, raw as ``OBB26`` with 1) → the gain-scaled terms ``{"total", "box",
    "cls", "dfl" or "l1", "angle"}``, divided by the batch size."""
    import torch  # noqa: PLC0415
    from ultralytics.utils.loss import v8OBBLoss  # noqa: PLC0415

    from jaxdet.parity.torch_yolov8 import default_dtype  # noqa: PLC0415

    b, _, channels = outputs.shape
    criterion = v8OBBLoss(obb_model(channels - 4 * reg_max, yaml))
    theta = (angles.sigmoid() - 0.25) * math.pi if reg_max > 1 else angles
    preds = {
        "boxes": outputs[..., : 4 * reg_max].permute(0, 2, 1),
        "scores": outputs[..., 4 * reg_max:].permute(0, 2, 1),
        "angle": theta.permute(0, 2, 1),
        "feats": [torch.zeros(b, 1, image_size // s, image_size // s, dtype=outputs.dtype) for s in STRIDES],
    }
    with default_dtype(outputs.dtype):
        loss, _ = criterion.loss(preds, ultralytics_obb_batch(gt_labels, gt_rboxes, valid, image_size))
    loss = loss / b
    return {"total": loss.sum(), "box": loss[0], "cls": loss[1], "dfl" if reg_max > 1 else "l1": loss[2],
            "angle": loss[3]}


# ------------------------------------------------------------------------------------------------------- rows


def cases() -> list[ParityCase]:
    rows = [
        ParityCase(
            name="probiou",
            reference="ultralytics.utils.metrics.probiou (floor 0 and 0.01)",
            jax_fn=_probiou_jax,
            torch_fn=_probiou_torch,
            make_inputs=probiou_inputs,
            wrt=(0, 1),
        ),
        ParityCase(
            name="probiou_pairwise",
            reference="ultralytics.utils.metrics.batch_probiou",
            jax_fn=jax.jit(probiou_pairwise),
            torch_fn=_pairwise_torch,
            make_inputs=pairwise_inputs,
            wrt=(0, 1),
        ),
    ]
    rows += [
        ParityCase(
            name=f"rotated_task_aligned_assign (G={g})",
            reference="ultralytics.utils.tal.RotatedTaskAlignedAssigner",
            jax_fn=_rtal_jax,
            torch_fn=rtal_torch,
            make_inputs=functools.partial(rtal_inputs, num_gt=g),
            wrt=(),  # both gradient-free (ultralytics: no_grad; jaxdet: score_target="stop")
            # ProbIoU's 1 - sqrt(1 - exp(-B) + eps) keeps few float32 digits for small overlaps, and the soft
            # score's u^6 multiplies them by 6: ultralytics' own float32 scores are 1.2e-5 from its float64 at G=300
            rtol32=2e-5,
        )
        for g in (0, 1, 20, 300)
    ]
    rows += [
        ParityCase(
            name=f"obb_loss ({what})",
            reference="ultralytics.utils.loss.v8OBBLoss",
            jax_fn=_loss_jax,
            torch_fn=functools.partial(v8_obb_loss_torch, image_size=IMAGE),
            make_inputs=functools.partial(loss_inputs, num_gt=g),
            wrt=(0, 1),
        )
        for what, g in (("G=20", 20), ("G=300", 300), ("no objects in the batch: G=5, all padding", -5))
    ]
    rows.append(
        ParityCase(
            name="obb_loss (reg_max=1, raw angle: YOLO26-OBB, G=20)",
            reference="ultralytics.utils.loss.v8OBBLoss of OBBModel(yolo26n-obb.yaml)",
            jax_fn=functools.partial(_loss_jax, reg_max=1),
            torch_fn=functools.partial(v8_obb_loss_torch, image_size=IMAGE, reg_max=1, yaml="yolo26n-obb.yaml"),
            make_inputs=functools.partial(loss_inputs, num_gt=20, reg_max=1),
            wrt=(0, 1),
        )
    )
    return rows
