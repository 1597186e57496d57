"""The YOLOv8/11 detection loss: task-aligned targets, then box (CIoU), classification (BCE) and DFL terms.

ultralytics' ``v8DetectionLoss`` (pinned: 8.4.190) in JAX, under ``jit``, from the raw head outputs:

1. decode the boxes: DFL expectation over ``reg_max`` bins per side (as :func:`jaxdet.tal.dfl_decode`), then
   ``dist2bbox`` around the anchor points (grid units);
2. assign targets with :func:`jaxdet.tal.task_aligned_assign` on the sigmoid scores and the boxes in pixels;
3. with :math:`\\hat t` the soft scores ``[B, A, C]``, :math:`w_a = \\sum_c \\hat t_{ac}` the per-anchor weight
   and :math:`N = \\max(\\sum_{b,a,c} \\hat t, 1)` over the **whole batch**:

.. math::
   L_{\\mathrm{cls}} = \\frac{1}{N}\\sum_{b,a,c} \\mathrm{BCE}(x_{bac}, \\hat t_{bac}),\\quad
   L_{\\mathrm{box}} = \\frac{1}{N}\\sum_{a \\in \\mathrm{fg}} w_a\\,(1 - \\mathrm{CIoU}(\\hat b_a, b_a)),\\quad
   L_{\\mathrm{dfl}} = \\frac{1}{N}\\sum_{a \\in \\mathrm{fg}} w_a\\,\\tfrac14 \\sum_{k} \\mathrm{DFL}(z_{ak}, d_{ak})

   \\mathrm{total} = 7.5\\,L_{\\mathrm{box}} + 0.5\\,L_{\\mathrm{cls}} + 1.5\\,L_{\\mathrm{dfl}}

The box and DFL terms are in grid units (boxes divided by their level's stride), the CIoU is ultralytics'
``bbox_iou`` (eps 1e-7 added to the heights too: ``height_eps``), and the DFL target distance is clipped to
``[0, reg_max − 1 − 0.01]``.

**reg_max = 1** (YOLO26: no DFL bins). The four box channels are the distances ``(l, t, r, b)`` themselves, in
grid units, with no activation, and the DFL term becomes an L1 term (key ``"l1"`` instead of ``"dfl"``, still
weighted by the ``dfl`` gain, as ultralytics' ``BboxLoss`` with ``reg_max=1``) on the distances in pixels divided
by the image width (``l``, ``r``) and height (``t``, ``b``), unclipped:

.. math::
   L_{\\mathrm{l1}} = \\frac{1}{N}\\sum_{a \\in \\mathrm{fg}} w_a\\,\\tfrac14 \\sum_{k}
   \\Big|\\frac{s_a (\\hat d_{ak} - d_{ak})}{S_k}\\Big|,\\qquad S_l = S_r = W,\\ S_t = S_b = H

with ``(H, W)`` the image size, ultralytics' first level's ``(H, W)`` times its stride (``image_size``, taken from
per-level outputs when not given).

**Batch size.** ultralytics returns ``loss * batch_size`` (the three gain-scaled terms, each multiplied by ``B``)
and its trainer back-propagates their sum, so its gradient is ``B`` times the gradient of the normalised loss.
jaxdet returns the normalised terms (no factor ``B``): ``B * total`` is ultralytics' ``loss.sum()``, and
``terms[k]`` is its ``loss[k] / B`` (``get_assigned_targets_and_loss``'s unscaled loss). Multiply by ``B`` (or
scale the learning rate) to reproduce ultralytics' step size.

**Gradient path of the soft target** (``score_target``), the target :math:`\\hat t = t\\,\\max u / (\\max t +
\\epsilon)` computed from the predictions (seed 000's situation):

- ``"stop"`` (default, Case 2, ultralytics' ``no_grad`` assigner): :math:`\\hat t`, hence :math:`w` and
  :math:`N`, are constants. The classification term then gives the box logits exactly zero gradient, and the box
  and DFL terms reach the class logits not at all.
- ``"through"`` (Case 1): :math:`\\hat t` stays in the graph wherever it is used (the BCE targets, the weights
  :math:`w` and the normaliser :math:`N`), so the IoU inside it moves the boxes through the classification term,
  and the class score inside it moves the class logits through all three. The discrete assignment is piecewise
  constant and has no gradient either way.

**Pluggable terms** (each the existing jaxdet function, applied to the same targets):

- ``cls_loss``: ``"bce"`` (default, :func:`binary_cross_entropy_with_logits`), ``"varifocal"``
  (:func:`varifocal_loss`), ``"quality_focal"`` (:func:`quality_focal_loss`), ``"focal"``
  (:func:`sigmoid_focal_loss`), with ``cls_loss_kwargs``; each summed over anchors and classes, divided by ``N``.
  The soft scores are routed by ``score_target`` first, so VFL/QFL get ``iou_target="through"`` and add no
  second stop.
- ``box_loss``: ``"ciou"`` (default), ``"giou"``, ``"diou"`` (:data:`jaxdet.boxes.IOU_LOSSES`) or
  ``"harmonic_iou"`` (:func:`harmonic_iou_loss_from_iou` of :func:`jaxdet.boxes.box_iou`), with
  ``box_loss_kwargs``, all with ultralytics' ``height_eps``.
- ``harmonic``: ``None`` (default) or a factor gradient path ``"through"``/``"stop"``: the Harmonic loss (seed 001,
  :func:`harmonic_weighting`) couples each foreground anchor's classification loss :math:`L^c_a = \\sum_c
  \\ell_{ac}` and box loss :math:`L^r_a`: the class term becomes :math:`\\sum_a (1 + e^{-L^r_a}) L^c_a / N` and the
  box term :math:`\\sum_{a \\in \\mathrm{fg}} w_a (1 + e^{-L^c_a}) L^r_a / N`; background anchors keep
  :math:`L^c_a` alone. The DFL term is unchanged.

References:
  Jocher et al., ultralytics YOLOv8 (2023), ``ultralytics/utils/loss.py`` (``v8DetectionLoss``, ``BboxLoss``,
  ``DFLoss``), version 8.4.190.
  Li et al., "Generalized Focal Loss", NeurIPS 2020 (the distribution focal loss).
  Feng et al., "TOOD: Task-aligned One-stage Object Detection", ICCV 2021.

Glossary: seed 000: the gradient of YOLOv1's IoU confidence target (Redmon et al., "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016); seed 001: the Harmonic loss (Wang & Zhang, "Reconcile Prediction
Consistency for Balanced Object Detection", ICCV 2021); Case 1: a target computed from the predictions keeps its
gradient (``"through"``); Case 2: its gradient is stopped (``"stop"``, what every public YOLO does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.boxes import IOU_LOSSES, box_iou
from jaxdet.gradients import GradientPath
from jaxdet.losses.focal import (
    binary_cross_entropy_with_logits,
    quality_focal_loss,
    sigmoid_focal_loss,
    varifocal_loss,
)
from jaxdet.losses.harmonic import harmonic_iou_loss_from_iou, harmonic_weighting
from jaxdet.tal import IOU_EPS, TaskAlignedTargets, bbox2dist, dfl_expectation, dist2bbox, task_aligned_assign

__all__ = [
    "YOLOV8_TERMS",
    "YOLO26_TERMS",
    "YOLOV8_CLS_LOSSES",
    "YOLOV8_BOX_LOSSES",
    "YoloV8Loss",
    "dfl_loss",
    "yolov8_loss",
    "yolov8_loss_from_targets",
]

YOLOV8_TERMS: tuple[str, ...] = ("box", "cls", "dfl")
YOLO26_TERMS: tuple[str, ...] = ("box", "cls", "l1")  # the terms with reg_max = 1
YOLOV8_CLS_LOSSES: tuple[str, ...] = ("bce", "varifocal", "quality_focal", "focal")
YOLOV8_BOX_LOSSES: tuple[str, ...] = ("ciou", "giou", "diou", "harmonic_iou")
DFL_MARGIN = 0.01  # ultralytics clips the DFL target to reg_max - 1 - 0.01


class YoloV8Loss(NamedTuple):
    """Result of :func:`yolov8_loss`.

    Attributes:
      total: scalar, ``box_gain · box + cls_gain · cls + dfl_gain · dfl``.
      terms: ``{"box", "cls", "dfl"}`` (``{"box", "cls", "l1"}`` with ``reg_max = 1``), each scalar and already
        multiplied by its gain (as ultralytics' ``loss``).
      targets: the :class:`jaxdet.tal.TaskAlignedTargets` used (boxes in pixels).
    """

    total: jax.Array
    terms: dict[str, jax.Array]
    targets: TaskAlignedTargets


def dfl_loss(pred_dist: jax.Array, target: jax.Array, *, margin: float = DFL_MARGIN) -> jax.Array:
    """Distribution focal loss: cross-entropy at the two bins around a continuous target, linearly weighted.

    .. math::
       \\mathrm{DFL}(z, y) = -\\big((i + 1 - y)\\log \\operatorname{softmax}(z)_i
       + (y - i)\\log \\operatorname{softmax}(z)_{i+1}\\big),\\quad i = \\lfloor y \\rfloor

    with ``y`` clipped to ``[0, R − 1 − margin]`` first (ultralytics' ``DFLoss``), so ``i + 1 ≤ R − 1``.

    Args:
      pred_dist: ``[..., R]`` bin logits.
      target: ``[...]`` target distances in bins.
      margin: the clip below ``R − 1`` (0.01).

    Returns:
      ``[...]`` unreduced loss.

    References:
      Li et al., "Generalized Focal Loss", NeurIPS 2020, eq. (6).
    """
    pred_dist = _checks.floating(pred_dist, "pred_dist", min_ndim=1, shape="[..., R]")
    target = _checks.floating(target, "target")
    _checks.shape_is(target, pred_dist.shape[:-1], "target", "pred_dist.shape[:-1]")
    if pred_dist.shape[-1] < 2:
        raise _checks.fail_shape("pred_dist", "[..., R] with R >= 2 bins", pred_dist)
    margin = _checks.number(margin, "margin", low=0, high=pred_dist.shape[-1] - 1, high_open=True)
    return _dfl_from_log_probs(jax.nn.log_softmax(pred_dist, axis=-1), target, margin)


def _dfl_from_log_probs(log_probs: jax.Array, target: jax.Array, margin: float) -> jax.Array:
    """:func:`dfl_loss` from ``log_softmax`` of the bin logits ``[..., R]`` (shared with the box decoding)."""
    reg_max = log_probs.shape[-1]
    target = jnp.clip(target, 0, reg_max - 1 - margin)
    left = jnp.floor(target)
    weight_left = left + 1 - target
    weight_right = 1 - weight_left
    bins = jnp.arange(reg_max, dtype=log_probs.dtype)
    # One-hot selections instead of gathers: the backward pass stays elementwise.
    picked_left = jnp.sum(jnp.where(bins == left[..., None], log_probs, 0), axis=-1)
    picked_right = jnp.sum(jnp.where(bins == left[..., None] + 1, log_probs, 0), axis=-1)
    return -(picked_left * weight_left + picked_right * weight_right)


def _concat_levels(outputs: jax.Array | Sequence[jax.Array], argname: str = "outputs") -> jax.Array:
    """``[B, A, no]`` from one array or from per-level NHWC maps ``[B, H, W, no]`` (row-major, levels in order)."""
    if isinstance(outputs, (list, tuple)):
        if not outputs:
            raise _checks.fail_value(argname, "a [B, A, no] array or a non-empty sequence of [B, H, W, no]", outputs)
        levels = []
        for level in outputs:
            level = _checks.floating(level, argname, shape="[B, H, W, no] per level")
            if level.ndim != 4 or level.shape[0] != outputs[0].shape[0] or level.shape[-1] != outputs[0].shape[-1]:
                raise _checks.fail_shape(argname, "[B, H, W, no] per level (same B and no)", level)
            levels.append(level.reshape(level.shape[0], -1, level.shape[-1]))
        return jnp.concatenate(levels, axis=1)
    outputs = _checks.floating(outputs, argname, shape="[B, A, no]")
    if outputs.ndim != 3:
        raise _checks.fail_shape(argname, "[B, A, no] or a sequence of [B, H, W, no]", outputs)
    return outputs


def _cls_elementwise(name: str, logits: jax.Array, targets: jax.Array, kwargs: dict) -> jax.Array:
    if name == "bce":
        return binary_cross_entropy_with_logits(logits, targets, **kwargs)
    if name == "varifocal":
        return varifocal_loss(logits, targets, iou_target="through", **kwargs)
    if name == "quality_focal":
        return quality_focal_loss(logits, targets, iou_target="through", **kwargs)
    return sigmoid_focal_loss(logits, targets, **kwargs)


def _box_elementwise(name: str, pred: jax.Array, target: jax.Array, kwargs: dict) -> jax.Array:
    if name == "harmonic_iou":
        iou = box_iou(pred, target, eps=IOU_EPS, height_eps=IOU_EPS)
        return harmonic_iou_loss_from_iou(iou, **kwargs)
    return IOU_LOSSES[name](pred, target, eps=IOU_EPS, height_eps=IOU_EPS, **kwargs)


def _check_outputs(outputs, anchor_points, anchor_strides, reg_max):
    reg_max = _checks.positive_int(reg_max, "reg_max")
    x = _concat_levels(outputs)
    b, a, channels = x.shape
    if channels - 4 * reg_max < 1:
        raise _checks.fail_shape("outputs", f"[B, A, 4·reg_max + C] = [B, A, {4 * reg_max} + C] with C >= 1", x)
    anchor_points = _checks.floating(anchor_points, "anchor_points", last=2, shape="[A, 2]")
    _checks.shape_is(anchor_points, (a, 2), "anchor_points", "[A, 2] with A of outputs")
    anchor_strides = _checks.floating(anchor_strides, "anchor_strides", shape="[A]")
    _checks.shape_is(anchor_strides, (a,), "anchor_strides", "[A] with A of outputs")
    return x, anchor_points, anchor_strides, reg_max


def _decode_distances(x: jax.Array, reg_max: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(bin log-probabilities [B, A, 4, R], logits [B, A, C], distances [B, A, 4] grid units)``.

    One ``log_softmax`` serves both the DFL term and the expected distances (:func:`jaxdet.tal.dfl_decode`'s
    expectation of its ``exp``). With ``reg_max = 1`` the first output is the raw distances ``[B, A, 4]``, as the
    third."""
    b, a, _ = x.shape
    # One split (its gradient a concatenation), not two slices (whose gradients XLA adds as two padded copies).
    dist, logits = jnp.split(x, [4 * reg_max], axis=-1)
    if reg_max == 1:
        return dist, logits, dist
    log_probs = jax.nn.log_softmax(dist.reshape(b, a, 4, reg_max), axis=-1)
    return log_probs, logits, dfl_expectation(jnp.exp(log_probs))


def _decode(x: jax.Array, anchor_points: jax.Array, reg_max: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`_decode_distances` with the distances as ``pred_boxes [B, A, 4]`` xyxy grid units."""
    first, logits, distances = _decode_distances(x, reg_max)
    return first, logits, dist2bbox(distances, anchor_points)


def _distance_term(
    first: jax.Array, target_dist: jax.Array, anchor_strides: jax.Array, size: jax.Array | None, reg_max: int
) -> tuple[jax.Array, str]:
    """The per-anchor distance term ``[B, A]`` and its name: DFL of the bin log-probabilities ``first`` at the target
    distances ``[B, A, 4]`` (grid units, clipped to ``[0, R − 1 − 0.01]`` here), or with ``reg_max = 1`` the L1 of
    the raw distances ``first`` in pixels over the image width and height ``size`` (module doc)."""
    if reg_max == 1:  # YOLO26: L1 on the distances in pixels over the image width (l, r) and height (t, b)
        stride, sides = anchor_strides[:, None], jnp.tile(size[::-1].astype(first.dtype), 2)  # [A, 1], [4] (W, H, W, H)
        diff = first * stride / sides - target_dist * stride / sides  # [B, A, 4]
        # |diff| with torch's l1_loss gradient sign(diff), 0 at diff = 0 (jnp.abs has 1 there)
        return jnp.mean(diff * jax.lax.stop_gradient(jnp.sign(diff)), axis=-1), "l1"
    return jnp.mean(_dfl_from_log_probs(first, target_dist, DFL_MARGIN), axis=-1), "dfl"


def _image_size(outputs, anchor_strides, image_size, reg_max: int) -> jax.Array | None:
    """``[2]`` ``(H, W)`` in pixels for the L1 term of ``reg_max = 1`` (``None`` otherwise): as given (a pair or a
    ``[2]`` array), or ultralytics' first level's ``(H, W)`` times its stride from per-level outputs."""
    if reg_max != 1:
        return None
    if image_size is None:
        if isinstance(outputs, (list, tuple)) and outputs and getattr(outputs[0], "ndim", 0) == 4:
            return jnp.asarray(outputs[0].shape[1:3]) * jnp.asarray(anchor_strides)[0]
        raise _checks.fail_value("image_size", "an (H, W) pair in pixels with reg_max = 1 and [B, A, no] outputs",
                                 image_size, hint="Pass it, or the outputs per level.")
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise _checks.fail_value("image_size", "an (H, W) pair in pixels", image_size)
        for side in image_size:
            if isinstance(side, (int, float)):
                _checks.number(side, "image_size", low=0, low_open=True)
        return jnp.stack([jnp.asarray(side) for side in image_size])
    image_size = _checks.array(image_size, "image_size", shape="[2]")
    _checks.shape_is(image_size, (2,), "image_size", "(H, W)")
    return image_size


def yolov8_loss(
    outputs: jax.Array | Sequence[jax.Array],
    anchor_points: jax.Array,
    anchor_strides: jax.Array,
    gt_labels: jax.Array,
    gt_boxes: jax.Array,
    valid: jax.Array,
    *,
    reg_max: int = 16,
    box: float = 7.5,
    cls: float = 0.5,
    dfl: float = 1.5,
    score_target: GradientPath = "stop",
    cls_loss: Literal["bce", "varifocal", "quality_focal", "focal"] = "bce",
    box_loss: Literal["ciou", "giou", "diou", "harmonic_iou"] = "ciou",
    harmonic: GradientPath | None = None,
    cls_loss_kwargs: dict | None = None,
    box_loss_kwargs: dict | None = None,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
    min_gt_side: float = 16.0,
    gt_chunk_size: int | None = None,
    norm_eps: float | None = None,
    topk2: int | None = None,
    image_size: tuple[float, float] | None = None,
) -> YoloV8Loss:
    """YOLOv8's detection loss (ultralytics ``v8DetectionLoss``) from the raw head outputs; see the module doc.

    :func:`jaxdet.tal.task_aligned_assign` on the decoded predictions, then :func:`yolov8_loss_from_targets`.

    Args:
      outputs: raw head outputs, ``[B, A, 4·reg_max + C]``, or one ``[B, H, W, 4·reg_max + C]`` map per level
        (concatenated row-major in level order). Channels: the ``4·reg_max`` DFL logits (side-major ``l, t, r,
        b``), then the ``C`` class logits, as ultralytics' ``Detect`` head.
      anchor_points: ``[A, 2]`` grid-unit anchor points (:func:`jaxdet.tal.make_anchor_points`).
      anchor_strides: ``[A]`` the stride of each anchor.
      gt_labels: ``[B, G]`` int classes.
      gt_boxes: ``[B, G, 4]`` xyxy GT boxes in **pixels**, padded to ``G``.
      valid: ``[B, G]`` bool, False for padding (padding is never detected from the coordinates).
      reg_max: DFL bins per side (16), or 1 for YOLO26's raw distances and L1 term (see the module doc).
      box, cls, dfl: the gains (7.5, 0.5, 1.5, ultralytics' ``default.yaml``).
      score_target: ``"stop"`` (Case 2, default, ultralytics) or ``"through"`` (Case 1), see the module doc.
      cls_loss: ``"bce"`` (default), ``"varifocal"``, ``"quality_focal"`` or ``"focal"``.
      box_loss: ``"ciou"`` (default), ``"giou"``, ``"diou"`` or ``"harmonic_iou"``.
      harmonic: ``None`` (default) or ``"through"``/``"stop"``: the Harmonic loss weighting of the class and box
        terms with that gradient path for its factors.
      cls_loss_kwargs, box_loss_kwargs: keyword arguments of the chosen functions (e.g. ``{"gamma": 1.5}``).
      topk, alpha, beta, eps, min_gt_side, gt_chunk_size, norm_eps, topk2: of
        :func:`jaxdet.tal.task_aligned_assign` (v8DetectionLoss: 10, 0.5, 6.0, 1e-9, its second stride 16, none;
        YOLO26's one-to-one branch: ``topk=7, topk2=1``).
      image_size: ``(H, W)`` in pixels, for the L1 term of ``reg_max = 1`` only; ``None`` takes the first level's
        size times its stride from per-level outputs (required with ``[B, A, no]`` outputs).

    Returns:
      :class:`YoloV8Loss` ``(total, terms {"box", "cls", "dfl" or "l1"}, targets)``, the terms gain-scaled and not
      multiplied by the batch size.
    """
    size = _image_size(outputs, anchor_strides, image_size, _checks.positive_int(reg_max, "reg_max"))
    x, anchor_points, anchor_strides, reg_max = _check_outputs(outputs, anchor_points, anchor_strides, reg_max)
    _, logits, pred_boxes = _decode(x, anchor_points, reg_max)
    stride = anchor_strides[:, None]  # [A, 1]
    targets = task_aligned_assign(
        jax.nn.sigmoid(logits),
        pred_boxes * stride,
        anchor_points * stride,
        gt_labels,
        _checks.floating(gt_boxes, "gt_boxes", last=4, shape="[B, G, 4]").astype(x.dtype),
        valid,
        topk=topk, alpha=alpha, beta=beta, eps=eps, min_gt_side=min_gt_side, score_target=score_target,
        gt_chunk_size=gt_chunk_size, norm_eps=norm_eps, topk2=topk2,
    )
    return yolov8_loss_from_targets(
        x, anchor_points, anchor_strides, targets, reg_max=reg_max, box=box, cls=cls, dfl=dfl,
        cls_loss=cls_loss, box_loss=box_loss, harmonic=harmonic, cls_loss_kwargs=cls_loss_kwargs,
        box_loss_kwargs=box_loss_kwargs, image_size=None if size is None else (size[0], size[1]),
    )


def yolov8_loss_from_targets(
    outputs: jax.Array | Sequence[jax.Array],
    anchor_points: jax.Array,
    anchor_strides: jax.Array,
    targets: TaskAlignedTargets,
    *,
    reg_max: int = 16,
    box: float = 7.5,
    cls: float = 0.5,
    dfl: float = 1.5,
    cls_loss: Literal["bce", "varifocal", "quality_focal", "focal"] = "bce",
    box_loss: Literal["ciou", "giou", "diou", "harmonic_iou"] = "ciou",
    harmonic: GradientPath | None = None,
    cls_loss_kwargs: dict | None = None,
    box_loss_kwargs: dict | None = None,
    image_size: tuple[float, float] | jax.Array | None = None,
) -> YoloV8Loss:
    """The three YOLOv8 terms from given targets (e.g. frozen ones, or another assigner's).

    Arguments as :func:`yolov8_loss` (``image_size`` also as a ``[2]`` array); ``targets`` is a
    :class:`jaxdet.tal.TaskAlignedTargets` (boxes in pixels) whose ``scores`` are used as given: whatever gradient
    they carry reaches the outputs through the BCE targets, the weights and the normaliser.

    Returns:
      :class:`YoloV8Loss` ``(total, terms, targets)``.
    """
    size = _image_size(outputs, anchor_strides, image_size, _checks.positive_int(reg_max, "reg_max"))
    x, anchor_points, anchor_strides, reg_max = _check_outputs(outputs, anchor_points, anchor_strides, reg_max)
    b, a, _ = x.shape
    gains = {name: _checks.number(v, name, low=0) for name, v in (("box", box), ("cls", cls), ("dfl", dfl))}
    _checks.choice(cls_loss, "cls_loss", YOLOV8_CLS_LOSSES)
    _checks.choice(box_loss, "box_loss", YOLOV8_BOX_LOSSES)
    _checks.choice(harmonic, "harmonic", (None, "stop", "through"))
    num_classes = x.shape[-1] - 4 * reg_max
    scores = _checks.floating(targets.scores, "targets.scores")
    _checks.shape_is(scores, (b, a, num_classes), "targets.scores", "[B, A, C] of outputs")
    fg = _checks.boolean(targets.fg_mask, "targets.fg_mask")
    _checks.shape_is(fg, (b, a), "targets.fg_mask", "[B, A] of outputs")
    target_boxes = _checks.floating(targets.boxes, "targets.boxes")
    _checks.shape_is(target_boxes, (b, a, 4), "targets.boxes", "[B, A, 4] of outputs")

    dist, logits, pred_boxes = _decode(x, anchor_points, reg_max)
    normaliser = jnp.maximum(jnp.sum(scores), 1)
    weight = jnp.sum(scores, axis=-1)  # [B, A]
    target_boxes = target_boxes / anchor_strides[:, None]  # [B, A, 4] grid units

    cls_per_anchor = jnp.sum(_cls_elementwise(cls_loss, logits, scores, dict(cls_loss_kwargs or {})), axis=-1)
    box_per_anchor = jnp.where(fg, _box_elementwise(box_loss, pred_boxes, target_boxes, dict(box_loss_kwargs or {})), 0)
    if harmonic is not None:
        factors = harmonic_weighting(cls_per_anchor, box_per_anchor, factor_grad=harmonic, positive=fg).terms
        cls_per_anchor = (1 + factors["beta_r"]) * cls_per_anchor
        box_per_anchor = (1 + factors["beta_c"]) * box_per_anchor

    max_distance = None if reg_max == 1 else reg_max - 1 - DFL_MARGIN  # the L1 target is unclipped
    target_dist = bbox2dist(anchor_points, target_boxes, max_distance=max_distance)  # [B, A, 4] grid units
    dist_per_anchor, dist_name = _distance_term(dist, target_dist, anchor_strides, size, reg_max)  # [B, A]

    terms = {
        "box": gains["box"] * jnp.sum(jnp.where(fg, box_per_anchor * weight, 0)) / normaliser,
        "cls": gains["cls"] * jnp.sum(cls_per_anchor) / normaliser,
        dist_name: gains["dfl"] * jnp.sum(jnp.where(fg, dist_per_anchor * weight, 0)) / normaliser,
    }
    return YoloV8Loss(total=terms["box"] + terms["cls"] + terms[dist_name], terms=terms, targets=targets)
