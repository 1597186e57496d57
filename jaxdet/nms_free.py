"""NMS-free decoding of YOLO26's one-to-one head: decode every anchor, then keep the ``max_det`` best scores.

A one-to-one head is trained (:func:`jaxdet.losses.yolo26.yolo26_loss`, ``topk2 = 1``) to fire once per object, so
its detections need no non-maximum suppression (:mod:`jaxdet.nms`): ultralytics' ``Detect.postprocess`` takes a
top-k. :func:`nms_free_decode` is that postprocess, pinned to ultralytics 8.4.190 (``nn/modules/head.py``:
``Detect.forward`` in eval mode, ``_inference``, ``postprocess``, ``get_topk_index``):

1. boxes: the ``ltrb`` distances (raw with ``reg_max = 1``, the DFL expectation otherwise) around the anchor
   points, xyxy, times the stride (pixels); scores: the sigmoid of the class logits;
2. with ``k = min(max_det, A)``: the ``k`` anchors of highest best-class score, then the ``k`` best
   (anchor, class) pairs among those ``k × C`` scores, in decreasing score. ``agnostic=True`` (ultralytics'
   ``agnostic_nms``) takes the ``k`` anchors of highest best-class score with that class.

Every (anchor, class) pair among the final ``k`` has a score at least the ``k``-th best-class score, so step 2 is
the exact top-``k`` of all ``A × C`` pairs, an anchor possibly appearing with several classes. ``max_det`` has no
cap (ultralytics' default is 300); ties go to the lower index (``lax.top_k``), where ``torch.topk``'s order is
unspecified. Fixed shapes: it jits, with ``max_det`` static.

References:
  ultralytics 8.4.190 ``ultralytics/nn/modules/head.py`` (``Detect``).
  Wang et al., "YOLOv10: Real-Time End-to-End Object Detection", NeurIPS 2024.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.losses.yolov8 import _check_outputs
from jaxdet.tal import dfl_decode, dist2bbox

__all__ = ["TopKDetections", "nms_free_decode", "nms_free_topk"]


class TopKDetections(NamedTuple):
    """The ``k = min(max_det, A)`` detections per image of :func:`nms_free_decode`, in decreasing score.

    Attributes:
      boxes: ``[B, k, 4]`` xyxy in pixels.
      scores: ``[B, k]`` sigmoid class scores.
      labels: ``[B, k]`` int32 classes.
      indices: ``[B, k]`` int32 anchor indices (into the concatenated levels).
    """

    boxes: jax.Array
    scores: jax.Array
    labels: jax.Array
    indices: jax.Array


def nms_free_topk(
    scores: jax.Array, *, max_det: int = 300, agnostic: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The top ``k = min(max_det, A)`` (anchor, class) pairs of ``scores``, as ultralytics' ``get_topk_index``.

    Args:
      scores: ``[B, A, C]`` class scores (probabilities).
      max_det: detections per image (no cap).
      agnostic: one class per anchor, its best (ultralytics' ``agnostic_nms``).

    Returns:
      ``(scores [B, k], labels [B, k] int32, indices [B, k] int32)``, in decreasing score.
    """
    scores = _checks.floating(scores, "scores", ndim=3, shape="[B, A, C]")
    max_det = _checks.positive_int(max_det, "max_det")
    if not isinstance(agnostic, bool):
        raise _checks.fail_value("agnostic", "a bool", agnostic)
    b, a, c = scores.shape
    k = min(max_det, a)
    best = jnp.max(scores, axis=-1)  # [B, A]
    if agnostic:
        top, index = jax.lax.top_k(best, k)
        labels = jnp.take_along_axis(jnp.argmax(scores, axis=-1), index, axis=1)
        return top, labels.astype(jnp.int32), index.astype(jnp.int32)
    _, anchors = jax.lax.top_k(best, k)  # [B, k] the k anchors of highest best-class score
    candidates = jnp.take_along_axis(scores, anchors[..., None], axis=1)  # [B, k, C]
    top, flat = jax.lax.top_k(candidates.reshape(b, k * c), k)  # [B, k] over the k·C pairs
    index = jnp.take_along_axis(anchors, flat // c, axis=1)
    return top, (flat % c).astype(jnp.int32), index.astype(jnp.int32)


def nms_free_decode(
    outputs: jax.Array | Sequence[jax.Array],
    anchor_points: jax.Array,
    anchor_strides: jax.Array,
    *,
    max_det: int = 300,
    reg_max: int = 1,
    agnostic: bool = False,
) -> TopKDetections:
    """YOLO26's inference decode without NMS (ultralytics ``Detect.postprocess``); see the module doc.

    .. math:: \\hat b_a = s_a \\cdot (p_a - (l, t),\\ p_a + (r, b)),\\qquad
       \\mathrm{top}_k \\{\\sigma(z_{ac})\\},\\ k = \\min(\\mathrm{max\\_det}, A)

    Args:
      outputs: the one-to-one branch's raw outputs, ``[B, A, 4·reg_max + C]`` or one ``[B, H, W, 4·reg_max + C]``
        map per level (as :func:`jaxdet.losses.yolo26.yolo26_loss` takes them).
      anchor_points: ``[A, 2]`` grid-unit anchor points (:func:`jaxdet.tal.make_anchor_points`).
      anchor_strides: ``[A]`` the stride of each anchor.
      max_det: detections per image (ultralytics' default 300; no cap).
      reg_max: 1 (YOLO26: raw distances) or the DFL bins per side.
      agnostic: one class per anchor (ultralytics' ``agnostic_nms``).

    Returns:
      :class:`TopKDetections` ``(boxes [B, k, 4] xyxy px, scores [B, k], labels [B, k], indices [B, k])``.
    """
    x, anchor_points, anchor_strides, reg_max = _check_outputs(outputs, anchor_points, anchor_strides, reg_max)
    dist, logits = jnp.split(x, [4 * reg_max], axis=-1)
    if reg_max > 1:
        dist = dfl_decode(dist, reg_max=reg_max)
    boxes = dist2bbox(dist, anchor_points) * anchor_strides[:, None]  # [B, A, 4] pixels
    scores, labels, indices = nms_free_topk(jax.nn.sigmoid(logits), max_det=max_det, agnostic=agnostic)
    return TopKDetections(
        boxes=jnp.take_along_axis(boxes, indices[..., None], axis=1), scores=scores, labels=labels, indices=indices
    )
