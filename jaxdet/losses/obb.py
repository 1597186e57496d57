"""The oriented-box (OBB) loss of YOLOv8/11/26-OBB: rotated task-aligned targets, then box, classification, DFL and
angle terms.

Signature (the model heads call it with these names)::

    obb_loss(outputs,          # [B, A, 4·reg_max + C] or one [B, H, W, 4·reg_max + C] map per level: DFL logits
                               #   (side-major l, t, r, b, along the box's own axes), then the class logits
             angles,           # [B, A, 1] or one [B, H, W, 1] map per level: the angle branch (cv4) output
             anchor_points,    # [A, 2] grid units (jaxdet.tal.make_anchor_points)
             anchor_strides,   # [A]
             gt_labels,        # [B, G] int
             gt_rboxes,        # [B, G, 5] xywhr in pixels (angle in radians), padded to G
             valid,            # [B, G] bool
             *, reg_max=16, box=7.5, cls=0.5, dfl=1.5, angle=1.0, angle_activation="sigmoid",
             box_loss="probiou", score_target="stop", step=0, state=None, ...) -> OBBLoss
    OBBLoss(total, terms={"box", "cls", "dfl" (or "l1"), "angle"}, targets, state, metrics)

ultralytics' ``v8OBBLoss`` (pinned: 8.4.190) in JAX, under ``jit``:

1. the angle: ultralytics' ``OBB`` head turns its angle logit into :math:`\\theta = (\\sigma(z) - 1/4)\\,\\pi \\in
   [-\\pi/4, 3\\pi/4)` (``angle_activation="sigmoid"``, default); ``OBB26`` (YOLO26-OBB) uses the raw output
   (``"none"``). The loss itself is the same for both; this is the one place they differ;
2. the boxes: DFL expectation per side (:mod:`jaxdet.losses.yolov8`'s decoding), then
   :func:`jaxdet.tal.dist2rbox` around the anchor point in the box's own frame, with :math:`\\theta` appended:
   ``[B, A, 5]`` xywhr in grid units;
3. GTs with a side under ``min_gt_size`` (2 px) are dropped (ultralytics: "filter rboxes of tiny size to
   stabilize training"), then :func:`jaxdet.tal.rotated_task_aligned_assign` (ProbIoU overlaps, in-rotated-box
   candidates) on the sigmoid scores and the boxes in pixels;
4. with :math:`\\hat t` the soft scores, :math:`w_a = \\sum_c \\hat t_{ac}` and
   :math:`N = \\max(\\sum \\hat t, 1)` over the whole batch, the GT boxes in grid units:

.. math::
   L_{\\mathrm{box}} = \\frac1N \\sum_{a \\in \\mathrm{fg}} w_a (1 - \\mathrm{ProbIoU}_{f}(\\hat b_a, b_a)),\\quad
   L_{\\mathrm{dfl}} = \\frac1N \\sum_{a \\in \\mathrm{fg}} w_a \\tfrac14 \\sum_k \\mathrm{DFL}(z_{ak}, d_{ak}),\\quad
   L_{\\mathrm{cls}} = \\frac1N \\sum \\mathrm{BCE}

   L_{\\mathrm{angle}} = \\frac1N \\sum_{a \\in \\mathrm{fg}} w_a\\,
   e^{-(\\ln\\frac{w_g + 10^{-9}}{h_g + 10^{-9}})^2 / 9}\\,
   \\sin^2\\!\\big(2(\\Delta - \\mathrm{round}(\\Delta/\\pi)\\,\\pi)\\big),\\quad \\Delta = \\hat\\theta_a - \\theta_g

   \\mathrm{total} = 7.5\\,L_{\\mathrm{box}} + 0.5\\,L_{\\mathrm{cls}} + 1.5\\,L_{\\mathrm{dfl}}
   + 1.0\\,L_{\\mathrm{angle}}

where :math:`\\mathrm{ProbIoU}_f` is :func:`jaxdet.rboxes.probiou` with ``floor = 0.01`` (``RotatedBboxLoss``), the
DFL target distances are :func:`jaxdet.tal.rbox2dist` (along the GT box's axes) clipped to ``[0, R − 1 − 0.01]``,
and the angle term is 8.4's ``calculate_angle_loss`` (gain ``angle: 1.0`` in ``default.yaml``), which weighs the
angle error less for near-square GTs (their angle is ill-defined) and is :math:`\\pi`-periodic.

**reg_max = 1** (YOLO26-OBB): the DFL term becomes the L1 term ``"l1"`` of :mod:`jaxdet.losses.yolov8` on the rotated
distances (pixels over the image width and height, ``image_size``), as ``RotatedBboxLoss`` with ``reg_max = 1``.
YOLO26-OBB trains two branches with ultralytics' ``E2ELoss(model, v8OBBLoss)``: :func:`obb_e2e_loss` combines two
:func:`obb_loss` calls with :func:`jaxdet.losses.yolo26.yolo26_branch_weights`.

**Batch size.** As :func:`jaxdet.losses.yolov8.yolov8_loss`: ``B * total`` is ultralytics' ``loss.sum()``.

**Box term** (``box_loss``):

- ``"probiou"`` (default, ultralytics): above.
- ``"mgiou"``: :math:`w_a` times :func:`jaxdet.polygons.mgiou_rotated_loss` of the two boxes (the ``mgiou``
  package's angle is the opposite of xywhr's; the boxes are handed over with their angles negated).
- ``"hybrid"`` (seed 003): :func:`jaxdet.losses.hybrid.hybrid_polygon_loss` on the four corners
  (:func:`jaxdet.rboxes.rbox_corners`), :math:`\\alpha L_2 + (1 - \\alpha) L_{\\mathrm{MGIoU}}` with the L2 weight
  :math:`\\alpha` = ``hybrid_alpha`` (a number, or a :mod:`jaxdet.schedules` schedule read at ``step``) and its
  normalisation ``hybrid_normalization`` (``"none"``, ``"loss_ema"``, ``"grad_norm"``) carrying ``state``
  (:class:`jaxdet.losses.hybrid.HybridState`, returned updated). The hybrid is a weighted mean over the
  foreground anchors with weights :math:`w_a`; it is multiplied by :math:`\\sum_{\\mathrm{fg}} w_a / N` so the
  term has the normalisation of the others. The L2 compares corners in order, so a prediction of the same
  rectangle with another parametrisation (``(h, w, θ ± π/2)``) has an L2 cost; MGIoU has none.

The DFL and angle terms stay in every mode.

**Gradient path of the soft target** (``score_target``): ``"stop"`` (Case 2, default, ultralytics' ``no_grad``
assigner) or ``"through"`` (Case 1): the ProbIoU and class score inside :math:`\\hat t` then move the boxes and
logits through the BCE targets, the weights :math:`w_a` and :math:`N` (:mod:`jaxdet.losses.yolov8`'s module doc).
With ``box_loss="hybrid", hybrid_normalization="grad_norm"`` the hybrid's weights get no gradient (only its
corners do: :func:`jaxdet.losses.hybrid.hybrid_polygon_loss`).

**Finite everywhere.** Background anchors see a stand-in unit box instead of their (GT 0 or padding) target, so
degenerate padding never reaches a value or gradient; zero-size GTs, identical boxes, angles of ±π/2 and far-apart
boxes are finite in every term (:mod:`jaxdet.rboxes`).

References:
  ultralytics 8.4.190 ``ultralytics/utils/loss.py`` (``v8OBBLoss``, ``RotatedBboxLoss``, ``E2ELoss``),
  ``ultralytics/utils/tal.py`` (``RotatedTaskAlignedAssigner``, ``dist2rbox``, ``rbox2dist``),
  ``ultralytics/nn/modules/head.py`` (``OBB``, ``OBB26``).
  Llerena et al., "Gaussian Bounding Boxes and Probabilistic Intersection-over-Union for Object Detection", 2021.

Glossary: seed 003: the hybrid L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation; Case 1: a
target computed from the predictions keeps its gradient (``"through"``); Case 2: its gradient is stopped
(``"stop"``, what every public YOLO does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.gradients import GradientPath
from jaxdet.losses.hybrid import NORMALIZATIONS, HybridState, hybrid_polygon_loss
from jaxdet.losses.yolo26 import YOLO26_BRANCHES, yolo26_branch_weights
from jaxdet.losses.yolov8 import (
    YOLOV8_CLS_LOSSES,
    _check_outputs,
    _cls_elementwise,
    _concat_levels,
    _decode_distances,
    _distance_term,
    _image_size,
)
from jaxdet.polygons import mgiou_rotated_loss
from jaxdet.rboxes import probiou, rbox_corners
from jaxdet.tal import TaskAlignedTargets, dist2rbox, rbox2dist, rotated_task_aligned_assign

__all__ = [
    "OBB_TERMS",
    "OBB_BOX_LOSSES",
    "OBB_ANGLE_ACTIVATIONS",
    "OBBLoss",
    "OBBE2ELoss",
    "obb_decode",
    "obb_loss",
    "obb_loss_from_targets",
    "obb_e2e_loss",
]

OBB_TERMS: tuple[str, ...] = ("box", "cls", "dfl", "angle")  # "l1" instead of "dfl" with reg_max = 1
OBB_BOX_LOSSES: tuple[str, ...] = ("probiou", "mgiou", "hybrid")
OBB_ANGLE_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "none")
PROBIOU_FLOOR = 0.01  # RotatedBboxLoss.floor
ANGLE_LAMBDA = 3.0  # calculate_angle_loss's lambda_val
ANGLE_EPS = 1e-9  # calculate_angle_loss's log-aspect-ratio eps
MIN_GT_SIZE = 2.0  # v8OBBLoss drops GTs with a side under 2 px


class OBBLoss(NamedTuple):
    """Result of :func:`obb_loss`.

    Attributes:
      total: scalar, the sum of the gain-scaled terms.
      terms: ``{"box", "cls", "dfl", "angle"}`` (``"l1"`` instead of ``"dfl"`` with ``reg_max = 1``), each scalar
        and multiplied by its gain.
      targets: the :class:`jaxdet.tal.TaskAlignedTargets` used (``boxes [B, A, 5]`` xywhr in pixels).
      state: the hybrid's updated :class:`jaxdet.losses.hybrid.HybridState` with ``box_loss="hybrid"``; otherwise
        the ``state`` given (``None`` by default).
      metrics: the hybrid's metrics (``alpha``, ``l2``, ``mgiou``, gradient norms, ...), ``{}`` otherwise.
    """

    total: jax.Array
    terms: dict[str, jax.Array]
    targets: TaskAlignedTargets
    state: HybridState | None
    metrics: dict[str, jax.Array]


def _check_angles(angles, b: int, a: int) -> jax.Array:
    angles = _concat_levels(angles, "angles")
    _checks.shape_is(angles, (b, a, 1), "angles", "[B, A, 1] of outputs")
    return angles


def _activate(angles: jax.Array, angle_activation: str) -> jax.Array:
    """ultralytics' ``OBB.forward_head``: ``(sigmoid(z) − 1/4)·π``; ``OBB26``: ``z`` itself."""
    if angle_activation == "sigmoid":
        return (jax.nn.sigmoid(angles) - 0.25) * math.pi
    return angles


def obb_decode(
    outputs: jax.Array | Sequence[jax.Array],
    angles: jax.Array | Sequence[jax.Array],
    anchor_points: jax.Array,
    anchor_strides: jax.Array,
    *,
    reg_max: int = 16,
    angle_activation: Literal["sigmoid", "none"] = "sigmoid",
) -> tuple[jax.Array, jax.Array]:
    """The predicted rotated boxes and class logits of raw OBB outputs (``v8OBBLoss.bbox_decode``).

    Args:
      outputs, angles, anchor_points, anchor_strides, reg_max, angle_activation: as :func:`obb_loss`.

    Returns:
      ``(rboxes [B, A, 5] xywhr in grid units (multiply the first four by the strides for pixels),
      logits [B, A, C])``.
    """
    x, anchor_points, anchor_strides, reg_max = _check_outputs(outputs, anchor_points, anchor_strides, reg_max)
    _checks.choice(angle_activation, "angle_activation", OBB_ANGLE_ACTIVATIONS)
    theta = _activate(_check_angles(angles, *x.shape[:2]).astype(x.dtype), angle_activation)
    _, logits, distances = _decode_distances(x, reg_max)
    return jnp.concatenate([dist2rbox(distances, theta, anchor_points), theta], axis=-1), logits


def obb_loss(
    outputs: jax.Array | Sequence[jax.Array],
    angles: jax.Array | Sequence[jax.Array],
    anchor_points: jax.Array,
    anchor_strides: jax.Array,
    gt_labels: jax.Array,
    gt_rboxes: jax.Array,
    valid: jax.Array,
    *,
    reg_max: int = 16,
    box: float = 7.5,
    cls: float = 0.5,
    dfl: float = 1.5,
    angle: float = 1.0,
    angle_activation: Literal["sigmoid", "none"] = "sigmoid",
    score_target: GradientPath = "stop",
    cls_loss: Literal["bce", "varifocal", "quality_focal", "focal"] = "bce",
    cls_loss_kwargs: dict | None = None,
    box_loss: Literal["probiou", "mgiou", "hybrid"] = "probiou",
    hybrid_alpha: float | jax.Array | Callable[[jax.Array], jax.Array] | None = None,
    hybrid_normalization: Literal["none", "loss_ema", "grad_norm"] = "none",
    hybrid_kwargs: dict | None = None,
    step: jax.typing.ArrayLike = 0,
    state: HybridState | None = None,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
    min_gt_side: float = 16.0,
    min_gt_size: float = MIN_GT_SIZE,
    gt_chunk_size: int | None = None,
    norm_eps: float | None = None,
    topk2: int | None = None,
    image_size: tuple[float, float] | None = None,
) -> OBBLoss:
    """The OBB loss (ultralytics ``v8OBBLoss``) from the raw head outputs; see the module doc.

    Args:
      outputs: ``[B, A, 4·reg_max + C]`` or one ``[B, H, W, 4·reg_max + C]`` map per level: the DFL logits
        (side-major ``l, t, r, b`` along the box's axes), then the class logits, as ultralytics' ``OBB`` head's
        ``cv2``/``cv3`` (:func:`jaxdet.losses.yolov8.yolov8_loss`'s layout).
      angles: ``[B, A, 1]`` or one ``[B, H, W, 1]`` map per level: the angle branch's output (``cv4``).
      anchor_points: ``[A, 2]`` grid-unit anchor points (:func:`jaxdet.tal.make_anchor_points`).
      anchor_strides: ``[A]`` the stride of each anchor.
      gt_labels: ``[B, G]`` int classes.
      gt_rboxes: ``[B, G, 5]`` xywhr GT boxes (centre and sides in **pixels**, angle in radians), padded to ``G``.
      valid: ``[B, G]`` bool, False for padding.
      reg_max: DFL bins (16), or 1 for YOLO26-OBB's raw distances and L1 term.
      box, cls, dfl, angle: the gains (7.5, 0.5, 1.5, 1.0: ultralytics' ``default.yaml``).
      angle_activation: ``"sigmoid"`` (default, ``OBB``: :math:`(\\sigma(z) - 1/4)\\pi`) or ``"none"`` (``OBB26``,
        or angles already activated).
      score_target: ``"stop"`` (Case 2, default, ultralytics) or ``"through"`` (Case 1).
      cls_loss, cls_loss_kwargs: the classification term, as :func:`jaxdet.losses.yolov8.yolov8_loss`'s.
      box_loss: ``"probiou"`` (default), ``"mgiou"`` or ``"hybrid"`` (module doc).
      hybrid_alpha: the hybrid's L2 weight in [0, 1]: a number, a traced scalar, or a ``step -> α`` schedule
        (:mod:`jaxdet.schedules`); required with ``box_loss="hybrid"``.
      hybrid_normalization: ``"none"``, ``"loss_ema"`` or ``"grad_norm"`` (:mod:`jaxdet.losses.hybrid`).
      hybrid_kwargs: further keywords of :func:`jaxdet.losses.hybrid.hybrid_polygon_loss` (``loss_ema_decay``,
        ``norm_ema``, ``gradient_metrics``, ...).
      step: the training step at which a schedule ``hybrid_alpha`` is read.
      state: the hybrid's :class:`jaxdet.losses.hybrid.HybridState` (``None``: a fresh one).
      topk, alpha, beta, eps, min_gt_side, gt_chunk_size, norm_eps, topk2: of
        :func:`jaxdet.tal.rotated_task_aligned_assign` (v8OBBLoss: 10, 0.5, 6.0, 1e-9, its second stride 16).
      min_gt_size: GTs with a width or height below this many pixels are dropped (2, ultralytics); 0 keeps all.
      image_size: ``(H, W)`` in pixels for the L1 term of ``reg_max = 1`` (as :func:`yolov8_loss`'s).

    Returns:
      :class:`OBBLoss` ``(total, terms, targets, state, metrics)``, not multiplied by the batch size.
    """
    size = _image_size(outputs, anchor_strides, image_size, _checks.positive_int(reg_max, "reg_max"))
    x, anchor_points, anchor_strides, reg_max = _check_outputs(outputs, anchor_points, anchor_strides, reg_max)
    rboxes, logits = obb_decode(x, angles, anchor_points, anchor_strides, reg_max=reg_max,
                                angle_activation=angle_activation)
    gt_rboxes = _checks.floating(gt_rboxes, "gt_rboxes", last=5, shape="[B, G, 5]").astype(x.dtype)
    valid = _checks.boolean(valid, "valid", shape="[B, G]")
    _checks.shape_is(valid, gt_rboxes.shape[:-1], "valid", "gt_rboxes.shape[:-1]")
    min_gt_size = _checks.number(min_gt_size, "min_gt_size", low=0)
    valid = valid & (gt_rboxes[..., 2] >= min_gt_size) & (gt_rboxes[..., 3] >= min_gt_size)
    stride = anchor_strides[:, None]  # [A, 1]
    targets = rotated_task_aligned_assign(
        jax.nn.sigmoid(logits),
        jnp.concatenate([rboxes[..., :4] * stride, rboxes[..., 4:]], axis=-1),
        anchor_points * stride,
        gt_labels,
        gt_rboxes,
        valid,
        topk=topk, alpha=alpha, beta=beta, eps=eps, min_gt_side=min_gt_side, score_target=score_target,
        gt_chunk_size=gt_chunk_size, norm_eps=norm_eps, topk2=topk2,
    )
    return obb_loss_from_targets(
        x, angles, anchor_points, anchor_strides, targets, reg_max=reg_max, box=box, cls=cls, dfl=dfl, angle=angle,
        angle_activation=angle_activation, cls_loss=cls_loss, cls_loss_kwargs=cls_loss_kwargs, box_loss=box_loss,
        hybrid_alpha=hybrid_alpha, hybrid_normalization=hybrid_normalization, hybrid_kwargs=hybrid_kwargs,
        step=step, state=state, image_size=None if size is None else (size[0], size[1]),
    )


def _angle_loss(pred_theta: jax.Array, target: jax.Array) -> jax.Array:
    """``calculate_angle_loss`` per anchor (before the weight): the aspect-ratio weight times
    ``sin²(2·wrap(Δθ))``; ``target [..., 5]`` xywhr (finite: the background's stand-in box)."""
    log_ar = jnp.log((target[..., 2] + ANGLE_EPS) / (target[..., 3] + ANGLE_EPS))
    scale_weight = jnp.exp(-(log_ar**2) / ANGLE_LAMBDA**2)
    delta = pred_theta - target[..., 4]
    wrapped = delta - jnp.round(delta / math.pi) * math.pi
    return scale_weight * jnp.sin(2 * wrapped) ** 2


def _hybrid_alpha(hybrid_alpha, step, dtype) -> jax.Array:
    if hybrid_alpha is None:
        raise _checks.fail_value("hybrid_alpha", 'given with box_loss="hybrid" (a number or a step -> α schedule)',
                                 hybrid_alpha, hint="jaxdet.schedules.make_alpha_schedule builds one.")
    if callable(hybrid_alpha):
        step = _checks.array(step, "step", ndim=0, shape="[] (a scalar step)")
        value = jnp.asarray(hybrid_alpha(step), dtype)
        if value.ndim != 0:
            raise _checks.fail_shape("hybrid_alpha", "a schedule of scalar α", value)
        return value
    if isinstance(hybrid_alpha, (int, float)):
        _checks.number(hybrid_alpha, "hybrid_alpha", low=0.0, high=1.0)
    return jnp.asarray(hybrid_alpha, dtype)


def obb_loss_from_targets(
    outputs: jax.Array | Sequence[jax.Array],
    angles: jax.Array | Sequence[jax.Array],
    anchor_points: jax.Array,
    anchor_strides: jax.Array,
    targets: TaskAlignedTargets,
    *,
    reg_max: int = 16,
    box: float = 7.5,
    cls: float = 0.5,
    dfl: float = 1.5,
    angle: float = 1.0,
    angle_activation: Literal["sigmoid", "none"] = "sigmoid",
    cls_loss: Literal["bce", "varifocal", "quality_focal", "focal"] = "bce",
    cls_loss_kwargs: dict | None = None,
    box_loss: Literal["probiou", "mgiou", "hybrid"] = "probiou",
    hybrid_alpha: float | jax.Array | Callable[[jax.Array], jax.Array] | None = None,
    hybrid_normalization: Literal["none", "loss_ema", "grad_norm"] = "none",
    hybrid_kwargs: dict | None = None,
    step: jax.typing.ArrayLike = 0,
    state: HybridState | None = None,
    image_size: tuple[float, float] | jax.Array | None = None,
) -> OBBLoss:
    """The four OBB terms from given targets (e.g. frozen ones): arguments as :func:`obb_loss`, ``targets`` a
    :class:`jaxdet.tal.TaskAlignedTargets` with ``boxes [B, A, 5]`` xywhr in pixels, whose ``scores`` are used as
    given (with whatever gradient they carry).

    Returns:
      :class:`OBBLoss` ``(total, terms, targets, state, metrics)``.
    """
    size = _image_size(outputs, anchor_strides, image_size, _checks.positive_int(reg_max, "reg_max"))
    x, anchor_points, anchor_strides, reg_max = _check_outputs(outputs, anchor_points, anchor_strides, reg_max)
    b, a, _ = x.shape
    gains = {name: _checks.number(v, name, low=0)
             for name, v in (("box", box), ("cls", cls), ("dfl", dfl), ("angle", angle))}
    _checks.choice(angle_activation, "angle_activation", OBB_ANGLE_ACTIVATIONS)
    _checks.choice(cls_loss, "cls_loss", YOLOV8_CLS_LOSSES)
    _checks.choice(box_loss, "box_loss", OBB_BOX_LOSSES)
    _checks.choice(hybrid_normalization, "hybrid_normalization", NORMALIZATIONS)
    num_classes = x.shape[-1] - 4 * reg_max
    scores = _checks.floating(targets.scores, "targets.scores")
    _checks.shape_is(scores, (b, a, num_classes), "targets.scores", "[B, A, C] of outputs")
    fg = _checks.boolean(targets.fg_mask, "targets.fg_mask")
    _checks.shape_is(fg, (b, a), "targets.fg_mask", "[B, A] of outputs")
    target_boxes = _checks.floating(targets.boxes, "targets.boxes")
    _checks.shape_is(target_boxes, (b, a, 5), "targets.boxes", "[B, A, 5] of outputs")

    theta = _activate(_check_angles(angles, b, a).astype(x.dtype), angle_activation)  # [B, A, 1]
    first, logits, distances = _decode_distances(x, reg_max)
    pred = jnp.concatenate([dist2rbox(distances, theta, anchor_points), theta], axis=-1)  # [B, A, 5] grid units
    normaliser = jnp.maximum(jnp.sum(scores), 1)
    weight = jnp.where(fg, jnp.sum(scores, axis=-1), 0)  # [B, A]
    stride = anchor_strides[:, None]
    target = jnp.concatenate([target_boxes[..., :4] / stride, target_boxes[..., 4:]], axis=-1)  # grid units
    # Background anchors get a stand-in unit box: their target (GT 0 or padding) never reaches a value or gradient.
    target = jnp.where(fg[..., None], target, jnp.asarray([0.0, 0.0, 1.0, 1.0, 0.0], x.dtype))

    cls_sum = jnp.sum(_cls_elementwise(cls_loss, logits, scores, dict(cls_loss_kwargs or {})))
    target_dist = rbox2dist(anchor_points, target[..., :4], target[..., 4:])  # [B, A, 4], unclipped
    dist_per_anchor, dist_name = _distance_term(first, target_dist, anchor_strides, size, reg_max)
    angle_per_anchor = _angle_loss(theta[..., 0], target)

    metrics: dict[str, jax.Array] = {}
    if box_loss == "hybrid":
        hybrid = hybrid_polygon_loss(
            rbox_corners(pred), rbox_corners(target), alpha=_hybrid_alpha(hybrid_alpha, step, x.dtype),
            normalization=hybrid_normalization, state=state, weight=weight, **dict(hybrid_kwargs or {}),
        )
        box_sum = hybrid.total * jnp.sum(weight)  # the weighted mean times Σ w: the other terms' Σ w ℓ
        state, metrics = hybrid.state, hybrid.metrics
    else:
        if box_loss == "probiou":
            box_per_anchor = 1.0 - probiou(pred, target, floor=PROBIOU_FLOOR)
        else:
            flip = jnp.asarray([1.0, 1.0, 1.0, 1.0, -1.0], x.dtype)  # the mgiou package's angle is -θ
            box_per_anchor = mgiou_rotated_loss(pred * flip, target * flip)
        box_sum = jnp.sum(jnp.where(fg, box_per_anchor * weight, 0))

    terms = {
        "box": gains["box"] * box_sum / normaliser,
        "cls": gains["cls"] * cls_sum / normaliser,
        dist_name: gains["dfl"] * jnp.sum(jnp.where(fg, dist_per_anchor * weight, 0)) / normaliser,
        "angle": gains["angle"] * jnp.sum(jnp.where(fg, angle_per_anchor * weight, 0)) / normaliser,
    }
    total = terms["box"] + terms["cls"] + terms[dist_name] + terms["angle"]
    return OBBLoss(total=total, terms=terms, targets=targets, state=state, metrics=metrics)


class OBBE2ELoss(NamedTuple):
    """Result of :func:`obb_e2e_loss`: as :class:`jaxdet.losses.yolo26.Yolo26Loss`, with :class:`OBBLoss`
    branches (the hybrid's state, if any, is the one-to-one branch's: ``one2one.state``)."""

    total: jax.Array
    terms: dict[str, jax.Array]
    weights: dict[str, jax.Array]
    one2many: OBBLoss
    one2one: OBBLoss


def obb_e2e_loss(
    outputs: Mapping[str, jax.Array | Sequence[jax.Array]],
    angles: Mapping[str, jax.Array | Sequence[jax.Array]],
    anchor_points: jax.Array,
    anchor_strides: jax.Array,
    gt_labels: jax.Array,
    gt_rboxes: jax.Array,
    valid: jax.Array,
    *,
    step: jax.typing.ArrayLike = 0,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    reg_max: int = 1,
    angle_activation: Literal["sigmoid", "none"] = "none",
    one2many_topk: int = 10,
    one2one_topk: int = 7,
    one2one_topk2: int | None = 1,
    state: HybridState | None = None,
    **kwargs,
) -> OBBE2ELoss:
    """YOLO26-OBB's end-to-end loss (ultralytics ``E2ELoss(model, v8OBBLoss)``): :math:`w\\,L_{\\mathrm{o2m}} +
    \\max(1 - w, 0)\\,L_{\\mathrm{o2o}}` with :math:`w` = ``schedule(step)``
    (:func:`jaxdet.losses.yolo26.yolo26_branch_weights`), each branch an :func:`obb_loss`.

    Args:
      outputs, angles: ``{"one2many": ..., "one2one": ...}``, each branch's raw outputs as :func:`obb_loss` takes
        them.
      anchor_points, anchor_strides, gt_labels, gt_rboxes, valid: as :func:`obb_loss`.
      step, schedule: the one-to-many weight's schedule and the step it is read at (:func:`yolo26_loss`'s); ``step``
        also reads a schedule ``hybrid_alpha``.
      reg_max: 1 (YOLO26-OBB).
      angle_activation: ``"none"`` (``OBB26``'s raw angle).
      one2many_topk, one2one_topk, one2one_topk2: the two assigners' ``topk`` (10; 7 with ``topk2 = 1``).
      state: the hybrid's state, shared by the two branches in turn (one-to-many first).
      **kwargs: the other keywords of :func:`obb_loss`, for both branches.

    Returns:
      :class:`OBBE2ELoss` ``(total, terms, weights, one2many, one2one)``.
    """
    for name, value in (("outputs", outputs), ("angles", angles)):
        if not isinstance(value, Mapping):
            raise _checks.fail_value(name, 'a mapping {"one2many": ..., "one2one": ...}', type(value).__name__)
        _checks.keys_present(value, YOLO26_BRANCHES, name)
        _checks.keys_known(value, YOLO26_BRANCHES, name)
    weights = yolo26_branch_weights(step, schedule)
    common = dict(reg_max=reg_max, angle_activation=angle_activation, step=step, **kwargs)
    args = (anchor_points, anchor_strides, gt_labels, gt_rboxes, valid)
    one2many = obb_loss(outputs["one2many"], angles["one2many"], *args, topk=one2many_topk, state=state, **common)
    one2one = obb_loss(outputs["one2one"], angles["one2one"], *args, topk=one2one_topk, topk2=one2one_topk2,
                       state=one2many.state, **common)
    w_many, w_one = (weights[name].astype(one2many.total.dtype) for name in YOLO26_BRANCHES)
    terms = {name: w_many * one2many.terms[name] + w_one * one2one.terms[name] for name in one2many.terms}
    return OBBE2ELoss(w_many * one2many.total + w_one * one2one.total, terms, weights, one2many, one2one)
