"""Anchor-free geometry and task-aligned assignment (TAL) of YOLOv8/11, under ``jit``, in fixed memory.

**Anchors.** A feature level of stride ``s`` and size ``H × W`` has one anchor point per cell, at the cell centre
``(x + 0.5, y + 0.5)`` in that level's grid units (pixels = grid units × ``s``). Levels are concatenated in
order and each level is flattened row-major (``index = y · W + x``), as ultralytics' ``make_anchors`` and the
``[B, H, W, C] → [B, H·W, C]`` reshape of an NHWC head both do. A box is predicted as its four distances
``(l, t, r, b)`` from the anchor point (:func:`dist2bbox`, :func:`bbox2dist`); YOLOv8's head predicts each
distance as a distribution over ``reg_max`` bins ``0, 1, …, reg_max − 1`` (DFL), decoded by its expectation
(:func:`dfl_decode`).

**Task-aligned assignment** (:func:`task_aligned_assign`) reproduces ``ultralytics.utils.tal.TaskAlignedAssigner``
as ``v8DetectionLoss`` builds it (``topk=10, alpha=0.5, beta=6.0, eps=1e-9``, strides ``(8, 16, 32)``), pinned to
ultralytics 8.4.190. Its behaviours, each reproduced:

1. *Candidates* — an anchor is a candidate of a valid ground truth (GT) when its centre lies strictly inside the
   box: all four distances to the sides ``> eps``. Before this test, a GT side shorter than ``min_gt_side``
   (ultralytics' ``stride_val``, its second stride: 16) is enlarged to it about the box centre, so tiny boxes
   still get candidates. The box goes through ultralytics' ``xyxy → xywh → xyxy`` round trip, so the
   comparisons are bit-identical.
2. *Alignment metric* — at candidates, ``t = s^α · u^β`` with ``s`` the predicted score of the GT's class and
   ``u = max(CIoU(gt, pred), 0)`` (ultralytics' ``bbox_iou``: eps 1e-7, also added to the heights); 0 elsewhere.
3. *Top-k over the masked metric with de-duplication* — each valid GT takes the ``topk`` anchors of largest ``t``
   over *all* anchors (``t = 0`` off its candidates), then keeps those that are candidates. Ties at the k-th
   value go to the lowest anchor index (``lax.top_k``; see the note below). Padded GTs select nothing
   (ultralytics points their top-k at anchor 0 and its de-duplication, a count ``> 1`` set to 0, removes them).
4. *Anchors claimed by several GTs* go to the GT of highest overlap ``u`` among **all** GTs having the anchor as
   a candidate (not only those that selected it), the first such GT on ties, as ``overlaps.max(1)``.
5. *Soft score* — with :math:`P_g` the anchors finally assigned to GT :math:`g`,
   :math:`\\hat t_a = t_{g a} \\cdot \\max_{a' \\in P_g} u_{g a'} / (\\max_{a' \\in P_g} t_{g a'} + \\epsilon)`, put
   at the GT's class of a foreground anchor (0 elsewhere).
6. *Padding* is the ``valid`` mask, never the coordinate sum: ultralytics' ``v8DetectionLoss`` treats a GT whose
   four coordinates sum to 0 as padding; here such a box, if valid, is a GT like any other.
7. Background anchors get GT index 0, and the label and box of GT 0 (``gt_labels[..., 0]``, possibly padding),
   exactly as ultralytics; only with ``G = 0`` GT slots are the labels ``num_classes`` and the boxes zeros.
8. *Second top-k* (``topk2``, YOLO26's one-to-one branch: ``topk=7, topk2=1``) — after step 4, each GT keeps
   only the ``topk2`` of its positives of largest metric ``t`` (ties to the lowest anchor index); the others
   become background (GT index 0). As ultralytics, the filter runs only when ``topk2 ≠ topk``, and the soft
   scores (step 5) are normalised over the positives that remain. ultralytics takes this top-k over all anchors
   of the GT's masked metric, so when fewer than ``topk2`` of its positives have ``t > 0`` it fills the list in
   ``torch.topk``'s order among zero-metric anchors; jaxdet keeps the lowest-index positives. Such a positive has
   soft score 0 and adds nothing to any loss term (only ``fg_mask`` and ``gt_index`` can differ).
9. *Ranking without underflow* — both top-k's rank :math:`2^{m\beta} t = s^\alpha (2^m u)^\beta` (``m = 64 // β``
   for a whole ``β``: 10 for β = 6), the order of ``t`` exactly (a power of two changes no rounding). ``t``
   itself can underflow: with β = 6 a float32 overlap below 4.8e-7 gives ``t`` under float32's smallest normal
   number, which torch keeps as a subnormal and XLA:CPU flushes to 0, so the direct product would rank such
   anchors among the zero-metric ones. Measured on ProbIoU overlaps (rotated boxes, 300 GTs), where such tiny
   overlaps are common; the soft score uses ``t`` itself.

**Rotated boxes** (:func:`rotated_task_aligned_assign`, ultralytics' ``RotatedTaskAlignedAssigner`` of
``v8OBBLoss``): the same behaviours on xywhr boxes (:mod:`jaxdet.rboxes`), with the candidate test of behaviour 1
and the overlap of behaviour 2 replaced (an anchor inside the rotated box, edges included; ProbIoU instead of
CIoU). Both functions are one implementation that takes these two pieces as parameters. A rotated box is coded
by its distances along its own axes (:func:`dist2rbox`, :func:`rbox2dist`).

**Memory.** No ``[B, G, A, 4]`` float array is ever formed, and the ``[B, G, A]`` metric is never kept whole:
the GTs are processed ``gt_chunk_size`` at a time (``lax.scan``), each chunk leaving only per-anchor summaries
(how many GTs selected it, which one, and the running highest overlap with its first index). The soft scores are
then recomputed only at the ``B · A`` (anchor, assigned GT) pairs. Peak memory grows with
``B · gt_chunk_size · A``, not with ``G``.

**Gradient path of the soft score** (``score_target``). The discrete assignment (steps 1–4) is computed from
``stop_gradient`` inputs and is piecewise constant anyway. The soft score (step 5) is a target computed from the
predictions: ``"stop"`` (default, Case 2, as ultralytics' ``no_grad`` assigner) makes it a constant; ``"through"``
(Case 1) keeps it in the graph, so its IoUs move the predicted boxes and its class scores the logits, through
:math:`t` and both maxima (CIoU's α stays a constant, as in ``bbox_iou``).

**Ties at the k-th metric value** (step 3). ``torch.topk`` on the CPU breaks ties in the order of its selection
algorithm (a heap over the first ``topk`` anchors when ``64 · topk ≤ A``, an introselect otherwise); jaxdet takes
the lowest index. Ties occur in practice only at ``t = 0``, when a GT has fewer than ``topk`` anchors with a
positive metric: both then fill the list with zero-metric anchors of low index (the top-left corner of the first
level), which become foreground only when they are candidates of that GT (its box covers that corner) and have a
CIoU clamped to 0. Such an anchor gets soft score 0, so it adds exactly nothing to any loss term; it can only
change ``fg_mask`` and ``gt_index``.

References:
  Feng et al., "TOOD: Task-aligned One-stage Object Detection", ICCV 2021.
  ultralytics 8.4.190 ``ultralytics/utils/tal.py`` (``TaskAlignedAssigner``, ``make_anchors``, ``dist2bbox``,
  ``bbox2dist``) and ``ultralytics/utils/loss.py`` (``v8DetectionLoss.bbox_decode``).

Glossary: Case 1: a target computed from the predictions keeps its gradient (``"through"``); Case 2: its gradient is
stopped (``"stop"``, what every public YOLO does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks
from jaxdet._math import safe_pow
from jaxdet.boxes import complete_box_iou
from jaxdet.gradients import GradientPath, route_target
from jaxdet.rboxes import PROBIOU_EPS, probiou, rbox_corners

__all__ = [
    "Anchors",
    "TaskAlignedTargets",
    "make_anchor_points",
    "dist2bbox",
    "bbox2dist",
    "dist2rbox",
    "rbox2dist",
    "dfl_decode",
    "dfl_expectation",
    "task_aligned_assign",
    "rotated_task_aligned_assign",
]

IOU_EPS = 1e-7  # ultralytics bbox_iou's eps (union, enclosing diagonal, CIoU α and the heights)
_PAIRS_PER_CHUNK = 1 << 24  # automatic gt_chunk_size: at most this many (image, GT, anchor) pairs per chunk


# ------------------------------------------------------------------------------------------------- anchors


class Anchors(NamedTuple):
    """Anchor points of a feature pyramid (:func:`make_anchor_points`).

    Attributes:
      points: ``[A, 2]`` ``(x, y)`` cell centres, each in its own level's grid units.
      strides: ``[A]`` the stride of each anchor's level (pixels per grid unit).
    """

    points: jax.Array
    strides: jax.Array


def make_anchor_points(
    feature_shapes: Sequence[tuple[int, int]],
    strides: Sequence[float],
    *,
    offset: float = 0.5,
    dtype=jnp.float32,
) -> Anchors:
    """The anchor points of every cell of every level, as ultralytics' ``make_anchors``.

    .. math:: p_{y, x} = (x + \\mathrm{offset},\\ y + \\mathrm{offset}),\\quad 0 \\le x < W_l,\\ 0 \\le y < H_l

    Args:
      feature_shapes: ``(H, W)`` of each level, e.g. ``((80, 80), (40, 40), (20, 20))`` at 640 px.
      strides: the stride of each level, e.g. ``(8, 16, 32)``.
      offset: the position inside the cell (0.5: its centre).
      dtype: float dtype of the result.

    Returns:
      :class:`Anchors` ``(points [A, 2], strides [A])`` with ``A = Σ H·W``, levels in order, each row-major.
    """
    shapes = [tuple(shape) for shape in feature_shapes]
    if not shapes or any(len(s) != 2 for s in shapes):
        raise _checks.fail_value("feature_shapes", "a non-empty sequence of (H, W) pairs", feature_shapes)
    for shape in shapes:
        for side in shape:
            _checks.positive_int(side, "feature_shapes")
    strides = list(strides)
    if len(strides) != len(shapes):
        raise _checks.fail_value("strides", f"a sequence of {len(shapes)} strides (one per level)", strides)
    for stride in strides:
        _checks.number(stride, "strides", low=0, low_open=True)
    offset = _checks.number(offset, "offset")
    points, per_anchor = [], []
    for (h, w), stride in zip(shapes, strides):
        ys, xs = np.meshgrid(np.arange(h) + offset, np.arange(w) + offset, indexing="ij")
        points.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        per_anchor.append(np.full(h * w, stride, dtype=np.float64))
    return Anchors(jnp.asarray(np.concatenate(points), dtype), jnp.asarray(np.concatenate(per_anchor), dtype))


def dist2bbox(
    distances: jax.Array, anchor_points: jax.Array, *, fmt: Literal["xyxy", "cxcywh"] = "xyxy"
) -> jax.Array:
    """Boxes from their distances to the anchor point.

    .. math:: (x_1, y_1, x_2, y_2) = (p_x - l,\\ p_y - t,\\ p_x + r,\\ p_y + b)

    Args:
      distances: ``[..., 4]`` ``(l, t, r, b)``.
      anchor_points: ``[..., 2]`` ``(p_x, p_y)``, broadcastable against ``distances[..., :2]``.
      fmt: ``"xyxy"`` or ``"cxcywh"`` (ultralytics' ``xywh=True``).

    Returns:
      ``[..., 4]`` boxes, in the units of the inputs.
    """
    distances = _checks.floating(distances, "distances", last=4)
    anchor_points = _checks.floating(anchor_points, "anchor_points", last=2)
    _checks.choice(fmt, "fmt", ("xyxy", "cxcywh"))
    top_left = anchor_points - distances[..., :2]
    bottom_right = anchor_points + distances[..., 2:]
    if fmt == "cxcywh":
        return jnp.concatenate([(top_left + bottom_right) / 2, bottom_right - top_left], axis=-1)
    return jnp.concatenate([top_left, bottom_right], axis=-1)


def bbox2dist(anchor_points: jax.Array, boxes: jax.Array, *, max_distance: float | None = None) -> jax.Array:
    """Distances ``(l, t, r, b)`` from the anchor points to the sides of xyxy boxes (inverse of :func:`dist2bbox`).

    Args:
      anchor_points: ``[..., 2]``.
      boxes: ``[..., 4]`` xyxy, broadcastable against the anchor points.
      max_distance: if given, the distances are clipped to ``[0, max_distance]``; YOLOv8's DFL target uses
        ``reg_max − 1 − 0.01`` (ultralytics' ``bbox2dist(..., reg_max - 1)``).

    Returns:
      ``[..., 4]``.
    """
    anchor_points = _checks.floating(anchor_points, "anchor_points", last=2)
    boxes = _checks.floating(boxes, "boxes", last=4)
    distances = jnp.concatenate([anchor_points - boxes[..., :2], boxes[..., 2:] - anchor_points], axis=-1)
    if max_distance is None:
        return distances
    return jnp.clip(distances, 0, _checks.number(max_distance, "max_distance", low=0))


def dist2rbox(distances: jax.Array, angle: jax.Array, anchor_points: jax.Array) -> jax.Array:
    """Rotated boxes from their distances to the anchor point, in the box's own frame (ultralytics ``dist2rbox``).

    .. math::
       (c_x, c_y) = p + R(\\theta)\\,\\big(\\tfrac{r - l}{2}, \\tfrac{b - t}{2}\\big),\\quad (w, h) = (l + r, t + b)

    with :math:`R(\\theta)` the rotation by the angle (:mod:`jaxdet.rboxes`' xywhr convention).

    Args:
      distances: ``[..., 4]`` ``(l, t, r, b)`` along the box's own axes.
      angle: ``[..., 1]`` the box angle in radians, broadcastable against ``distances``.
      anchor_points: ``[..., 2]``, broadcastable against ``distances[..., :2]``.

    Returns:
      ``[..., 4]`` ``(cx, cy, w, h)``, in the units of the inputs (append the angle for xywhr).
    """
    distances = _checks.floating(distances, "distances", last=4)
    angle = _checks.floating(angle, "angle", last=1, shape="[..., 1]")
    anchor_points = _checks.floating(anchor_points, "anchor_points", last=2)
    lt, rb = distances[..., :2], distances[..., 2:]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    half = (rb - lt) / 2
    xf, yf = half[..., :1], half[..., 1:]
    xy = jnp.concatenate([xf * cos - yf * sin, xf * sin + yf * cos], axis=-1) + anchor_points
    return jnp.concatenate([xy, lt + rb], axis=-1)


def rbox2dist(
    anchor_points: jax.Array, boxes: jax.Array, angle: jax.Array, *, max_distance: float | None = None
) -> jax.Array:
    """Distances ``(l, t, r, b)`` from the anchor points to the sides of rotated boxes, along the boxes' own axes
    (ultralytics ``rbox2dist``, the inverse of :func:`dist2rbox`).

    Args:
      anchor_points: ``[..., 2]``.
      boxes: ``[..., 4]`` ``(cx, cy, w, h)``, broadcastable against the anchor points.
      angle: ``[..., 1]`` the boxes' angles in radians.
      max_distance: if given, the distances are clipped to ``[0, max_distance]`` (the OBB DFL target:
        ``reg_max − 1 − 0.01``, ultralytics' ``rbox2dist(..., reg_max=reg_max - 1)``).

    Returns:
      ``[..., 4]``.
    """
    anchor_points = _checks.floating(anchor_points, "anchor_points", last=2)
    boxes = _checks.floating(boxes, "boxes", last=4)
    angle = _checks.floating(angle, "angle", last=1, shape="[..., 1]")
    offset = boxes[..., :2] - anchor_points
    offset_x, offset_y = offset[..., :1], offset[..., 1:]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    xf = offset_x * cos + offset_y * sin
    yf = -offset_x * sin + offset_y * cos
    w, h = boxes[..., 2:3], boxes[..., 3:4]
    distances = jnp.concatenate([w / 2 - xf, h / 2 - yf, w / 2 + xf, h / 2 + yf], axis=-1)
    if max_distance is None:
        return distances
    return jnp.clip(distances, 0, _checks.number(max_distance, "max_distance", low=0))


def dfl_decode(pred_dist: jax.Array, *, reg_max: int = 16) -> jax.Array:
    """The expected distances of YOLOv8's distribution head.

    .. math:: d_k = \\sum_{i=0}^{R-1} i \\cdot \\operatorname{softmax}(z_{k})_i,\\quad k \\in \\{l, t, r, b\\}

    Args:
      pred_dist: ``[..., 4 · reg_max]`` logits, side-major: the ``reg_max`` bins of ``l``, then of ``t``, ``r``,
        ``b`` (ultralytics' ``view(b, a, 4, reg_max)``).
      reg_max: number of bins ``R`` (16).

    Returns:
      ``[..., 4]`` distances in grid units, each in ``[0, R − 1]``.
    """
    reg_max = _checks.positive_int(reg_max, "reg_max")
    pred_dist = _checks.floating(pred_dist, "pred_dist", last=4 * reg_max, shape=f"[..., 4·reg_max = {4 * reg_max}]")
    return dfl_expectation(jax.nn.softmax(pred_dist.reshape(*pred_dist.shape[:-1], 4, reg_max), axis=-1))


def dfl_expectation(probs: jax.Array) -> jax.Array:
    """``Σ_i i · probs[..., i]``: the expected bin of ``[..., R]`` probabilities → ``[...]`` (an elementwise
    product and a sum: on XLA:CPU 1.3× faster forward + backward than a ``[..., R] @ [R]`` matmul)."""
    probs = _checks.floating(probs, "probs", shape="[..., R]", min_ndim=1)
    return jnp.sum(probs * jnp.arange(probs.shape[-1], dtype=probs.dtype), axis=-1)


# ---------------------------------------------------------------------------------- task-aligned assignment


class TaskAlignedTargets(NamedTuple):
    """The result of :func:`task_aligned_assign`.

    Attributes:
      labels: ``[B, A]`` int32 class of the assigned GT (of GT 0 for background anchors, as ultralytics).
      boxes: ``[B, A, 4]`` the assigned GT box (GT 0's for background anchors); ``[B, A, 5]`` xywhr from
        :func:`rotated_task_aligned_assign`.
      scores: ``[B, A, C]`` soft classification targets: the normalised alignment metric at the GT's class of a
        foreground anchor, 0 elsewhere.
      fg_mask: ``[B, A]`` bool, the foreground anchors.
      gt_index: ``[B, A]`` int32 index of the assigned GT in the padded ``G`` axis (0 for background).
    """

    labels: jax.Array
    boxes: jax.Array
    scores: jax.Array
    fg_mask: jax.Array
    gt_index: jax.Array


def _candidate_boxes(gt_boxes: jax.Array, valid: jax.Array, min_gt_side: float) -> jax.Array:
    """GT boxes ``[..., 4]`` for the candidate test: valid sides ``< min_gt_side`` enlarged to it (behaviour 1)."""
    centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
    size = gt_boxes[..., 2:] - gt_boxes[..., :2]
    size = jnp.where((size < min_gt_side) & valid[..., None], jnp.asarray(min_gt_side, size.dtype), size)
    half = size / 2
    return jnp.concatenate([centre - half, centre + half], axis=-1)


def _inside(points: jax.Array, boxes: jax.Array, eps: float) -> jax.Array:
    """Whether ``points [..., 2]`` lie strictly inside ``boxes [..., 4]`` by more than ``eps`` → ``[...]``."""
    x, y = points[..., 0], points[..., 1]
    return (
        (x - boxes[..., 0] > eps) & (y - boxes[..., 1] > eps) & (boxes[..., 2] - x > eps) & (boxes[..., 3] - y > eps)
    )


def _candidates_xyxy(points, gt_boxes, valid, min_gt_side, eps):
    """Behaviour 1 for xyxy GTs: ``points [..., 2]`` strictly inside the enlarged ``gt_boxes [..., 4]``."""
    return _inside(points, _candidate_boxes(gt_boxes, valid, min_gt_side), eps)


def _overlap_ciou(gt_boxes, pred_boxes):
    """ultralytics' ``bbox_iou(..., CIoU=True)`` of xyxy boxes (the horizontal assigner's overlap)."""
    return complete_box_iou(gt_boxes, pred_boxes, eps=IOU_EPS, height_eps=IOU_EPS, angles="per_box")


def _candidates_xywhr(points, gt_boxes, valid, min_gt_side, eps):
    """Behaviour 1 for rotated GTs (``RotatedTaskAlignedAssigner.select_candidates_in_gts``): valid sides
    ``< min_gt_side`` enlarged to it, then ``points [..., 2]`` inside the box *inclusive* of its edges, by the
    projections on two adjacent edges ``AB``, ``AD`` of its corners: ``0 ≤ AP·AB ≤ |AB|²`` and ``0 ≤ AP·AD ≤
    |AD|²`` (no ``eps``, as ultralytics)."""
    del eps
    size = gt_boxes[..., 2:4]
    size = jnp.where((size < min_gt_side) & valid[..., None], jnp.asarray(min_gt_side, size.dtype), size)
    corners = rbox_corners(jnp.concatenate([gt_boxes[..., :2], size, gt_boxes[..., 4:]], axis=-1))  # [..., 4, 2]
    a, ab, ad = corners[..., 0, :], corners[..., 1, :] - corners[..., 0, :], corners[..., 3, :] - corners[..., 0, :]
    apx, apy = points[..., 0] - a[..., 0], points[..., 1] - a[..., 1]
    norm_ab = ab[..., 0] * ab[..., 0] + ab[..., 1] * ab[..., 1]
    norm_ad = ad[..., 0] * ad[..., 0] + ad[..., 1] * ad[..., 1]
    ap_dot_ab = apx * ab[..., 0] + apy * ab[..., 1]
    ap_dot_ad = apx * ad[..., 0] + apy * ad[..., 1]
    return (ap_dot_ab >= 0) & (ap_dot_ab <= norm_ab) & (ap_dot_ad >= 0) & (ap_dot_ad <= norm_ad)


def _overlap_probiou(gt_boxes, pred_boxes):
    """ultralytics' ``probiou(gt, pred)`` (eps 1e-7, no floor): the rotated assigner's overlap."""
    return probiou(gt_boxes, pred_boxes, eps=PROBIOU_EPS)


class _Geometry(NamedTuple):
    """What the task-aligned assignment needs of a box format: the box size, the candidate test
    ``(points, gt_boxes, valid, min_gt_side, eps) -> bool`` and the overlap ``(gt_boxes, pred_boxes) -> u``
    (clamped at 0 by the assignment), both broadcasting over leading axes."""

    size: int
    candidates: Callable[..., jax.Array]
    overlap: Callable[[jax.Array, jax.Array], jax.Array]


_XYXY = _Geometry(4, _candidates_xyxy, _overlap_ciou)
_XYWHR = _Geometry(5, _candidates_xywhr, _overlap_probiou)


def _overlap_and_metric(
    geometry: _Geometry, gt_boxes: jax.Array, pred_boxes: jax.Array, scores: jax.Array, candidate: jax.Array,
    alpha: float, beta: float, scale_log2: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """``u = max(overlap, 0)`` and ``t = s^α u^β`` at candidates, 0 elsewhere (behaviour 2), broadcast → ``[...]``;
    ``t`` is scaled by ``2^(scale_log2 · β)`` (:func:`_metric_scale_log2`).

    Non-candidates go through the double ``where`` (a unit score), so a zero score never meets ``s^α`` in a
    gradient.
    """
    overlap = jnp.where(candidate, jnp.maximum(geometry.overlap(gt_boxes, pred_boxes), 0), 0)
    score = jnp.where(candidate, scores, 1)
    metric = jnp.where(candidate, safe_pow(score, alpha) * safe_pow(overlap * 2.0**scale_log2, beta), 0)
    return overlap, metric


def _metric_scale_log2(beta: float) -> int:
    """``m`` such that the metric is ranked as :math:`s^\alpha (2^m u)^\beta = 2^{m\beta} t` (behaviour 9): the
    order of ``t`` exactly, without its underflow. 0 unless ``β`` is a positive whole number (whose power is exact
    repeated multiplication, so the scaling by a power of two changes no rounding); ``2^{mβ} ≤ 2^{64}``."""
    return int(64 // beta) if float(beta).is_integer() and beta > 0 else 0


def _check_assign_inputs(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid, d=4):
    pred_scores = _checks.floating(pred_scores, "pred_scores", min_ndim=3, shape="[B, A, C]")
    if pred_scores.ndim != 3:
        raise _checks.fail_shape("pred_scores", "[B, A, C]", pred_scores)
    b, a, _ = pred_scores.shape
    pred_boxes = _checks.floating(pred_boxes, "pred_boxes", last=d, shape=f"[B, A, {d}]")
    _checks.shape_is(pred_boxes, (b, a, d), "pred_boxes", f"[B, A, {d}] of pred_scores")
    anchor_points = _checks.floating(anchor_points, "anchor_points", last=2, shape="[A, 2]")
    _checks.shape_is(anchor_points, (a, 2), "anchor_points", "[A, 2] of pred_scores")
    gt_boxes = _checks.floating(gt_boxes, "gt_boxes", last=d, shape=f"[B, G, {d}]")
    if gt_boxes.ndim != 3 or gt_boxes.shape[0] != b:
        raise _checks.fail_shape("gt_boxes", f"[B, G, {d}] with B = {b}", gt_boxes)
    gt_labels = _checks.integer(gt_labels, "gt_labels", shape="[B, G]")
    _checks.shape_is(gt_labels, gt_boxes.shape[:2], "gt_labels", "gt_boxes.shape[:-1]")
    valid = _checks.boolean(valid, "valid", shape="[B, G]")
    _checks.shape_is(valid, gt_boxes.shape[:2], "valid", "gt_boxes.shape[:-1]")
    return pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid


def task_aligned_assign(
    pred_scores: jax.Array,
    pred_boxes: jax.Array,
    anchor_points: jax.Array,
    gt_labels: jax.Array,
    gt_boxes: jax.Array,
    valid: jax.Array,
    *,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
    min_gt_side: float = 16.0,
    score_target: GradientPath = "stop",
    gt_chunk_size: int | None = None,
    norm_eps: float | None = None,
    topk2: int | None = None,
) -> TaskAlignedTargets:
    """Task-aligned assignment of YOLOv8 (TOOD's TAL as ultralytics' ``TaskAlignedAssigner``), see the module doc.

    .. math::
       t_{ga} = s_{a, c_g}^{\\alpha}\\, \\max(\\mathrm{CIoU}(g, a), 0)^{\\beta},\\qquad
       \\hat t_a = t_{ga}\\, \\frac{\\max_{a' \\in P_g} u_{ga'}}{\\max_{a' \\in P_g} t_{ga'} + \\epsilon}
       \\ \\text{at class } c_g \\text{ of the GT } g \\text{ assigned to } a

    All coordinates in one unit, pixels in YOLOv8 (grid points × stride), since ``min_gt_side`` and the
    in-box ``eps`` are absolute.

    Args:
      pred_scores: ``[B, A, C]`` predicted class probabilities (sigmoid of the logits).
      pred_boxes: ``[B, A, 4]`` predicted xyxy boxes.
      anchor_points: ``[A, 2]`` anchor points.
      gt_labels: ``[B, G]`` int GT classes in ``[0, C)`` (clipped into it; padded entries may hold anything).
      gt_boxes: ``[B, G, 4]`` xyxy GT boxes, padded to ``G``.
      valid: ``[B, G]`` bool, False for padding.
      topk: anchors selected per GT (v8DetectionLoss: 10; the class default of ultralytics is 13).
      alpha: exponent of the score in the metric (0.5).
      beta: exponent of the CIoU in the metric (6.0).
      eps: the in-box margin and, unless ``norm_eps`` is given, the normaliser's epsilon (1e-9, ultralytics).
      min_gt_side: GT sides shorter than this are enlarged to it for the candidate test (ultralytics'
        ``stride_val`` = the second stride, 16); 0 disables it.
      score_target: ``"stop"`` (Case 2, default, ultralytics) or ``"through"`` (Case 1), the gradient path of
        ``scores``.
      gt_chunk_size: GTs processed at once; ``None`` picks the largest with at most 2²⁴ (image, GT, anchor) pairs
        per chunk (16 × 124 × 8400 in float32: 67 MB per ``[B, chunk, A]`` array).
      norm_eps: the normaliser's :math:`\\epsilon`; ``None`` (default) uses ``eps``, as ultralytics. The
        metric :math:`t = s^{\\alpha} u^{\\beta}` of a small object is tiny at the start of training: a 9 px
        box under a 160 px initial prediction has :math:`u \\approx 0.003`, so :math:`t \\approx 10^{-17}`.
        Against :math:`\\epsilon = 10^{-9}` that sends :math:`\\hat t` to about 0, and the box and DFL terms,
        weighted by :math:`\\hat t`, vanish with it. On the dense synthetic split (6–15 px objects) the score
        sum of 4 images was 1.2e-4 with 1e-9 and 5.5 with 0. ``0`` drops the epsilon: a GT whose positives all have
        :math:`t = 0` then gets :math:`\\hat t = 0`, where the division would be 0/0.
      topk2: ``None`` (default, YOLOv8/11) or the number of positives each GT keeps after the conflicts are
        resolved, those of largest metric (behaviour 8; ultralytics' ``TaskAlignedAssigner(topk2=...)``, 1 in
        YOLO26's one-to-one loss). Equal to ``topk``, it changes nothing, as in ultralytics.

    Returns:
      :class:`TaskAlignedTargets` ``(labels [B, A], boxes [B, A, 4], scores [B, A, C], fg_mask [B, A],
      gt_index [B, A])``.
    """
    return _task_aligned(
        _XYXY, pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid,
        topk=topk, alpha=alpha, beta=beta, eps=eps, min_gt_side=min_gt_side, score_target=score_target,
        gt_chunk_size=gt_chunk_size, norm_eps=norm_eps, topk2=topk2,
    )


def rotated_task_aligned_assign(
    pred_scores: jax.Array,
    pred_boxes: jax.Array,
    anchor_points: jax.Array,
    gt_labels: jax.Array,
    gt_boxes: jax.Array,
    valid: jax.Array,
    *,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
    min_gt_side: float = 16.0,
    score_target: GradientPath = "stop",
    gt_chunk_size: int | None = None,
    norm_eps: float | None = None,
    topk2: int | None = None,
) -> TaskAlignedTargets:
    """Task-aligned assignment of rotated boxes (ultralytics' ``RotatedTaskAlignedAssigner``, as ``v8OBBLoss``
    builds it), the behaviours of :func:`task_aligned_assign` with two of its pieces replaced:

    - *candidates* (behaviour 1): an anchor is a candidate of a valid GT when its centre lies inside the rotated
      box or on its edges, ``0 ≤ AP·AB ≤ |AB|²`` and ``0 ≤ AP·AD ≤ |AD|²`` for the box's corners ``A, B, D``
      (:func:`jaxdet.rboxes.rbox_corners`); a width or height ``< min_gt_side`` is enlarged to it first, the
      centre and angle kept. ``eps`` plays no part here (only in the normaliser);
    - *overlap* (behaviour 2): ``u = max(ProbIoU(gt, pred), 0)`` (:func:`jaxdet.rboxes.probiou`, eps 1e-7).

    Everything else (top-k with de-duplication, conflicts to the highest overlap, ``topk2``, the soft score and its
    ``score_target`` path, the memory bound, padding by ``valid``) is :func:`task_aligned_assign`'s.

    Args:
      pred_scores: ``[B, A, C]`` predicted class probabilities (sigmoid of the logits).
      pred_boxes: ``[B, A, 5]`` predicted xywhr boxes (centre and sides in pixels, angle in radians).
      anchor_points: ``[A, 2]`` anchor points in pixels.
      gt_labels: ``[B, G]`` int GT classes.
      gt_boxes: ``[B, G, 5]`` xywhr GT boxes, padded to ``G``.
      valid: ``[B, G]`` bool, False for padding.
      topk, alpha, beta, eps, min_gt_side, score_target, gt_chunk_size, norm_eps, topk2: as
        :func:`task_aligned_assign` (v8OBBLoss: 10, 0.5, 6.0, 1e-9, its second stride 16).

    Returns:
      :class:`TaskAlignedTargets` with ``boxes [B, A, 5]`` xywhr.
    """
    return _task_aligned(
        _XYWHR, pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid,
        topk=topk, alpha=alpha, beta=beta, eps=eps, min_gt_side=min_gt_side, score_target=score_target,
        gt_chunk_size=gt_chunk_size, norm_eps=norm_eps, topk2=topk2,
    )


def _task_aligned(geometry: _Geometry, pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid, *, topk,
                  alpha, beta, eps, min_gt_side, score_target, gt_chunk_size, norm_eps, topk2) -> TaskAlignedTargets:
    """The assignment of :func:`task_aligned_assign` and :func:`rotated_task_aligned_assign` for ``geometry``."""
    pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid = _check_assign_inputs(
        pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid, geometry.size
    )
    b, a, c = pred_scores.shape
    g = gt_boxes.shape[1]
    topk = _checks.positive_int(topk, "topk")
    if topk > a:
        raise _checks.fail_value("topk", f"at most the number of anchors A = {a}", topk)
    alpha = _checks.number(alpha, "alpha", low=0)
    beta = _checks.number(beta, "beta", low=0)
    eps = _checks.number(eps, "eps", low=0)
    norm_eps = eps if norm_eps is None else _checks.number(norm_eps, "norm_eps", low=0)
    if topk2 is not None:
        topk2 = _checks.positive_int(topk2, "topk2")
    min_gt_side = _checks.number(min_gt_side, "min_gt_side", low=0)
    _checks.choice(score_target, "score_target", ("stop", "through"))
    if gt_chunk_size is None:
        gt_chunk_size = max(1, _PAIRS_PER_CHUNK // max(b * a, 1))
    gt_chunk_size = min(_checks.positive_int(gt_chunk_size, "gt_chunk_size"), max(g, 1))
    gt_labels = jnp.clip(gt_labels, 0, c - 1).astype(jnp.int32)
    dtype = pred_scores.dtype

    if g == 0:  # ultralytics' early return: labels = num_classes, everything else zero
        return TaskAlignedTargets(
            labels=jnp.full((b, a), c, jnp.int32),
            boxes=jnp.zeros((b, a, geometry.size), gt_boxes.dtype),
            scores=jnp.zeros((b, a, c), dtype),
            fg_mask=jnp.zeros((b, a), bool),
            gt_index=jnp.zeros((b, a), jnp.int32),
        )

    count, gt_index = _select(
        geometry,
        jax.lax.stop_gradient(pred_scores),
        jax.lax.stop_gradient(pred_boxes),
        jax.lax.stop_gradient(anchor_points),
        gt_labels,
        jax.lax.stop_gradient(gt_boxes),
        valid,
        topk=topk, alpha=alpha, beta=beta, eps=eps, min_gt_side=min_gt_side, chunk=gt_chunk_size,
    )
    fg_mask = count > 0

    # Behaviour 5 at the B·A (anchor, assigned GT) pairs only, from the (possibly differentiated) predictions.
    labels = jnp.take_along_axis(gt_labels, gt_index, axis=1)  # [B, A]
    boxes = jnp.take_along_axis(gt_boxes, gt_index[..., None], axis=1)  # [B, A, D]
    assigned_valid = jnp.take_along_axis(valid, gt_index, axis=1)  # [B, A]
    candidate = geometry.candidates(anchor_points, boxes, assigned_valid, min_gt_side, eps) & assigned_valid
    score = jnp.take_along_axis(pred_scores, labels[..., None], axis=-1)[..., 0]  # [B, A]
    scale_log2 = _metric_scale_log2(beta)
    overlap, ranked = _overlap_and_metric(geometry, boxes, pred_boxes, score, candidate, alpha, beta, scale_log2)
    metric = ranked * 2.0 ** (-scale_log2 * beta)  # t itself: exact, or flushed to 0 as a direct product would be
    if topk2 is not None and topk2 != topk:  # behaviour 8; the dropped anchors fall back to GT 0, as background
        fg_mask = _keep_topk_per_gt(fg_mask, gt_index, jax.lax.stop_gradient(ranked), topk2, g)
        gt_index = jnp.where(fg_mask, gt_index, 0)
        labels = jnp.take_along_axis(gt_labels, gt_index, axis=1)
        boxes = jnp.take_along_axis(gt_boxes, gt_index[..., None], axis=1)
    overlap = jnp.where(fg_mask, overlap, 0)
    metric = jnp.where(fg_mask, metric, 0)
    batch = jnp.arange(b)[:, None]
    best_overlap = jnp.zeros((b, g), dtype).at[batch, gt_index].max(overlap)  # [B, G] over each GT's positives
    best_metric = jnp.zeros((b, g), dtype).at[batch, gt_index].max(metric)
    gt_best_overlap = jnp.take_along_axis(best_overlap, gt_index, axis=1)  # [B, A]
    gt_best_metric = jnp.take_along_axis(best_metric, gt_index, axis=1)
    denominator = gt_best_metric + norm_eps
    positive = denominator > 0  # always with norm_eps > 0; with 0, False only where metric = 0 too
    norm = jnp.where(positive, metric * gt_best_overlap / jnp.where(positive, denominator, 1), 0)
    norm = route_target(norm, score_target, argname="score_target")
    scores = jnp.where(jax.nn.one_hot(labels, c, dtype=bool), norm[..., None], jnp.zeros((), dtype))
    return TaskAlignedTargets(labels=labels, boxes=boxes, scores=scores, fg_mask=fg_mask, gt_index=gt_index)


def _keep_topk_per_gt(fg_mask: jax.Array, gt_index: jax.Array, metric: jax.Array, k: int, g: int) -> jax.Array:
    """Behaviour 8: ``fg_mask [B, A]`` less the positives outside the ``k`` of largest ``metric [B, A]`` of their GT.

    One sort per image by (assigned GT, −metric, anchor index), background last; an anchor's rank in its GT's
    run is its position less the run's first position. No ``[B, G, A]`` array is formed.
    """
    b, a = fg_mask.shape
    key = jnp.where(fg_mask, gt_index, g)  # background sorts after every GT
    position = jnp.broadcast_to(jnp.arange(a, dtype=jnp.int32), (b, a))
    sorted_key, _, anchor = jax.lax.sort((key, -metric, position), dimension=1, num_keys=3)
    run_start = jnp.concatenate([jnp.ones((b, 1), bool), sorted_key[:, 1:] != sorted_key[:, :-1]], axis=1)
    rank_sorted = position - jax.lax.cummax(jnp.where(run_start, position, 0), axis=1)
    rank = jnp.zeros((b, a), jnp.int32).at[jnp.arange(b)[:, None], anchor].set(rank_sorted)
    return fg_mask & (rank < k)


def _select(geometry, pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid, *, topk, alpha, beta, eps,
            min_gt_side, chunk):
    """Behaviours 1–4, ``chunk`` GTs at a time → ``(count [B, A], gt_index [B, A])``.

    ``count`` is how many GTs selected the anchor; ``gt_index`` the assigned GT (the selecting one if one did,
    the first highest-overlap GT if several did, 0 if none).
    """
    b, a, _ = pred_scores.shape
    g, d = gt_boxes.shape[1:]
    n_chunks = -(-g // chunk)
    pad = n_chunks * chunk - g
    if pad:
        gt_labels = jnp.pad(gt_labels, ((0, 0), (0, pad)))
        gt_boxes = jnp.pad(gt_boxes, ((0, 0), (0, pad), (0, 0)))  # [B, G', D]
        valid = jnp.pad(valid, ((0, 0), (0, pad)))
    scores_by_class = jnp.swapaxes(pred_scores, 1, 2)  # [B, C, A]
    batch = jnp.arange(b)[:, None, None]

    def chunk_step(carry, xs):
        count, index_sum, best_overlap, best_index = carry
        labels, boxes, ok, first = xs  # [B, c], [B, c, D], [B, c], scalar
        candidate = geometry.candidates(anchor_points, boxes[:, :, None, :], ok[:, :, None], min_gt_side, eps)
        candidate = candidate & ok[..., None]  # [B, c, A]
        score = jnp.take_along_axis(scores_by_class, labels[..., None], axis=1)  # [B, c, A]
        overlap, metric = _overlap_and_metric(
            geometry, boxes[:, :, None, :], pred_boxes[:, None, :, :], score, candidate, alpha, beta,
            _metric_scale_log2(beta),
        )  # [B, c, A] each; the metric scaled (behaviour 9)
        _, top = jax.lax.top_k(metric, topk)  # [B, c, k]
        selected = jnp.take_along_axis(candidate, top, axis=-1)  # [B, c, k]
        gt_ids = first + jnp.arange(chunk, dtype=jnp.int32)[None, :, None]
        count = count.at[batch, top].add(selected.astype(jnp.int32))
        index_sum = index_sum.at[batch, top].add(jnp.where(selected, gt_ids, 0))
        chunk_best = jnp.max(overlap, axis=1)  # [B, A]
        better = chunk_best > best_overlap  # strict: the first GT keeps a tie
        best_index = jnp.where(better, first + jnp.argmax(overlap, axis=1).astype(jnp.int32), best_index)
        best_overlap = jnp.where(better, chunk_best, best_overlap)
        return (count, index_sum, best_overlap, best_index), None

    init = (
        jnp.zeros((b, a), jnp.int32),
        jnp.zeros((b, a), jnp.int32),
        jnp.full((b, a), -1, pred_boxes.dtype),
        jnp.zeros((b, a), jnp.int32),
    )
    xs = (
        gt_labels.reshape(b, n_chunks, chunk).swapaxes(0, 1),
        gt_boxes.reshape(b, n_chunks, chunk, d).swapaxes(0, 1),
        valid.reshape(b, n_chunks, chunk).swapaxes(0, 1),
        jnp.arange(n_chunks, dtype=jnp.int32) * chunk,
    )
    if n_chunks == 1:
        carry, _ = chunk_step(init, jax.tree_util.tree_map(lambda x: x[0], xs))
    else:
        carry, _ = jax.lax.scan(chunk_step, init, xs)
    count, index_sum, _, best_index = carry
    gt_index = jnp.where(count > 1, best_index, jnp.where(count == 1, index_sum, 0))
    return count, gt_index
