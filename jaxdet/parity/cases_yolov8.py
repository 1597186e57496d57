"""Parity cases of YOLOv8's task-aligned assignment and detection loss against ultralytics 8.4.190.

- ``task_aligned_assign`` vs ``ultralytics.utils.tal.TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0,
  eps=1e-9)`` on batches with 0, 1, 20 and 300 GT slots per image: labels, boxes, soft scores, foreground mask and
  GT index (the integer outputs must agree exactly for the row to pass).
- ``yolov8_loss`` vs ``ultralytics.utils.loss.v8DetectionLoss`` built from ``DetectionModel("yolov8n.yaml")``:
  the three gain-scaled terms and their gradient with respect to the raw head outputs ``[B, A, 64 + C]``.

Inputs (256-px images, so ``A = 1344`` anchors at strides 8/16/32): predicted boxes around every anchor, class
scores spread over the whole sigmoid range, GT boxes of every size from 1 px (enlarged for the candidate test) to
half the image, a duplicated GT (identical boxes), padding in the middle of the slots and an image with none. GT
boxes stay below the first 12 px of the image: there the zero-metric ties of ``torch.topk`` (tal module doc)
could make the foreground masks differ in anchors that add nothing to the loss.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxdet.losses.yolov8 import yolov8_loss
from jaxdet.parity.core import ParityCase
from jaxdet.tal import make_anchor_points, task_aligned_assign

IMAGE, CLASSES, BATCH, STRIDES = 256, 7, 4, (8, 16, 32)


@functools.lru_cache(maxsize=None)
def anchors_pixels() -> tuple[np.ndarray, np.ndarray]:
    """``(points [A, 2] grid units, strides [A])`` of a 256-px image, float64."""
    with jax.enable_x64(True):
        anchors = make_anchor_points([(IMAGE // s, IMAGE // s) for s in STRIDES], STRIDES, dtype=np.float64)
        return np.asarray(anchors.points), np.asarray(anchors.strides)


def gt_inputs(rng: np.random.Generator, num_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gt_labels [B, G] int32, gt_boxes [B, G, 4] xyxy pixels, valid [B, G])`` as described in the module doc;
    ``num_gt < 0`` gives ``G = -num_gt`` slots of padding only (a batch without objects)."""
    empty, num_gt = num_gt < 0, abs(num_gt)
    size = rng.uniform(2.0, IMAGE / 2, (BATCH, num_gt, 2)) * rng.choice([0.02, 0.1, 1.0], (BATCH, num_gt, 1))
    low = size / 2 + np.array([0.0, 12.0])  # tops below y = 12 px
    centre = rng.uniform(low, IMAGE - size / 2)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    return labels_and_padding(rng, boxes, empty)


def labels_and_padding(rng: np.random.Generator, boxes: np.ndarray, empty: bool):
    """``(labels [B, G] int32, boxes, valid [B, G])`` for GT boxes ``[B, G, D]``: the second GT a copy of the first
    (identical GTs, when ``G > 2``), 80 % of the slots valid, none in the last image (none at all when ``empty``),
    padding zeroed as ultralytics pads."""
    num_gt = boxes.shape[1]
    if num_gt > 2:
        boxes[:, 1] = boxes[:, 0]  # identical GTs
    labels = rng.integers(0, CLASSES, (BATCH, num_gt)).astype(np.int32)
    valid = rng.uniform(size=(BATCH, num_gt)) < 0.8
    valid[BATCH - 1] = False  # an image without objects
    valid &= not empty
    boxes = np.where(valid[..., None], boxes, 0.0)  # ultralytics pads with zeros
    labels = np.where(valid, labels, 0).astype(np.int32)
    return labels, boxes, valid


def tal_inputs(rng: np.random.Generator, num_gt: int) -> tuple[np.ndarray, ...]:
    """``(pred_scores [B, A, C], pred_boxes [B, A, 4] px, anchor_points [A, 2] px, gt_labels, gt_boxes, valid)``."""
    points, strides = anchors_pixels()
    points = points * strides[:, None]
    scores = 1 / (1 + np.exp(-rng.normal(-1.0, 2.0, (BATCH, points.shape[0], CLASSES))))
    distances = rng.uniform(2.0, 60.0, (BATCH, points.shape[0], 4))
    pred_boxes = np.concatenate([points - distances[..., :2], points + distances[..., 2:]], axis=-1)
    return (scores, pred_boxes, points, *gt_inputs(rng, num_gt))


def loss_inputs(rng: np.random.Generator, num_gt: int) -> tuple[np.ndarray, ...]:
    """``(outputs [B, A, 64 + C], gt_labels, gt_boxes, valid)``: raw outputs as a fresh head gives them (class
    logits around -2, DFL logits of unit spread)."""
    points, _ = anchors_pixels()
    outputs = rng.normal(0.0, 1.0, (BATCH, points.shape[0], 64 + CLASSES))
    outputs[..., 64:] -= 2.0
    return (outputs, *gt_inputs(rng, num_gt))


@jax.jit
def _tal_jax(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid):
    return task_aligned_assign(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid)._asdict()


def _tal_torch(*tensors):
    from jaxdet.parity.torch_yolov8 import tal_torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    return tal_torch(*tensors)


@jax.jit
def _loss_jax(outputs, gt_labels, gt_boxes, valid):
    points, strides = anchors_pixels()
    out = yolov8_loss(outputs, points.astype(outputs.dtype), strides.astype(outputs.dtype), gt_labels, gt_boxes, valid)
    return {"total": out.total, **out.terms}


def _loss_torch(outputs, gt_labels, gt_boxes, valid):
    from jaxdet.parity.torch_yolov8 import v8_detection_loss_torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    return v8_detection_loss_torch(outputs, gt_labels, gt_boxes, valid, image_size=IMAGE)


def cases() -> list[ParityCase]:
    rows = [
        ParityCase(
            name=f"task_aligned_assign (G={g})",
            reference="ultralytics.utils.tal.TaskAlignedAssigner",
            jax_fn=_tal_jax,
            torch_fn=_tal_torch,
            make_inputs=functools.partial(tal_inputs, num_gt=g),
            wrt=(),  # both assigners are gradient-free (ultralytics: no_grad; jaxdet: score_target="stop")
        )
        for g in (0, 1, 20, 300)
    ]
    rows += [
        ParityCase(
            name=f"yolov8_loss ({what})",
            reference="ultralytics.utils.loss.v8DetectionLoss",
            jax_fn=_loss_jax,
            torch_fn=_loss_torch,
            make_inputs=functools.partial(loss_inputs, num_gt=g),
        )
        for what, g in (("G=20", 20), ("G=300", 300), ("no objects in the batch: G=5, all padding", -5))
    ]
    return rows
