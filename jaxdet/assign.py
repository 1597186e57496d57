"""Target assignment under ``jit``: YOLOv1 grid assignment and SSD prior matching, plus SSD's box coder.

Every function takes ground truth padded to a fixed ``M`` objects with a boolean ``valid`` mask, so shapes stay
static under ``jax.jit``; padded entries are never assigned. Assignments are integer arrays (no gradient flows
through them); the losses in :mod:`jaxdet.losses` consume them.

**YOLOv1** (:func:`yolov1_grid_assign`, :func:`yolov1_responsible_predictor`). A ground-truth box belongs to the
cell of an ``S × S`` grid holding its centre: ``col = floor(cx · S)``, ``row = floor(cy · S)``, clipped to
``[0, S − 1]`` (a centre on the right/bottom border goes to the last cell). Cell ``(row, col)`` is
``pred[..., row, col, :]``: the first grid axis is ``y``, the second ``x``. **Two objects in one cell:** the cell
keeps the *first* valid box in ``gt_boxes`` order (lowest index wins), the rule of darknet's
``fill_truth_region`` (``if (truth[index]) continue;``), which also shuffles the boxes beforehand; the other boxes
of that cell get no target. Within an object cell, the responsible predictor among the ``B`` is the one whose
predicted box has the highest IoU with the object (ties: the lowest index). When every predictor has IoU 0 the
one with the smallest centre/size distance is taken instead, as darknet's ``forward_detection_layer`` does with
its ``rmse`` fallback (otherwise predictor 0 would always win for small or far boxes).

**SSD** (:func:`ssd_match`). torchvision's ``SSDMatcher`` semantics, which is what ``torchvision.models.detection.SSD``
uses: every prior takes its highest-IoU ground truth (ties: the lowest index) if that IoU is ``≥ iou_threshold``,
else it is background (``-1``); then every valid ground truth claims its single best prior (ties: the lowest
prior index) regardless of IoU, overriding the threshold result. When two ground truths claim the same prior, the
one with the higher index wins (torchvision's ``matches[best] = arange(M)`` writes in index order; the last write
wins on CPU). IoU here is exact (``eps = 0``, as torchvision's ``box_iou``), so threshold decisions agree with
torchvision bit for bit. This differs from the generic ``Matcher(allow_low_quality_matches=True)`` of Faster R-CNN,
which re-assigns *all* tied best priors to *their own* best ground truth.

References:
  Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016.
  Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016.
  torchvision ``models/detection/_utils.py`` (``SSDMatcher``, ``BoxCoder``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.boxes import box_convert, box_iou, box_iou_pairwise

SSD_BOX_WEIGHTS: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
SSD_BBOX_XFORM_CLIP: float = math.log(1000.0 / 16)


# ----------------------------------------------------------------------------------------------- validation


def _check_gt(gt_boxes: jax.Array, gt_valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Padded ground truth: float ``gt_boxes [..., M, 4]`` with ``M >= 1`` and its bool mask ``gt_valid [..., M]``."""
    gt_boxes = _checks.floating(gt_boxes, "gt_boxes", shape="[..., M, 4]", min_ndim=2, last=4)
    if gt_boxes.shape[-2] == 0:
        raise _checks.fail_shape(
            "gt_boxes", "[..., M, 4] with M >= 1", gt_boxes, hint="Pad an empty image with gt_valid=False."
        )
    gt_valid = jnp.asarray(gt_valid)
    _checks.shape_is(gt_valid, gt_boxes.shape[:-1], "gt_valid", "gt_boxes.shape[:-1]")
    _checks.dtype_is(gt_valid, "gt_valid", "bool")
    return gt_boxes, gt_valid


def _check_classes(gt_classes: jax.Array, gt_valid: jax.Array) -> jax.Array:
    """Integer ``gt_classes`` of the shape of ``gt_valid``."""
    gt_classes = jnp.asarray(gt_classes)
    _checks.same_shape(gt_valid, gt_classes, "gt_valid", "gt_classes")
    _checks.dtype_is(gt_classes, "gt_classes", "int")
    return gt_classes


def _first_true(mask: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """Index of the first True along ``axis`` (0 when none) and whether any is True."""
    return jnp.argmax(mask, axis=axis).astype(jnp.int32), jnp.any(mask, axis=axis)


# ------------------------------------------------------------------------------------------------- YOLOv1


class YoloV1Targets(NamedTuple):
    """Per-cell YOLOv1 targets (see :func:`yolov1_grid_assign`).

    Attributes:
      has_object: ``[..., S, S]`` bool, the cell holds the centre of a valid box (:math:`1^{obj}_i`).
      boxes: ``[..., S, S, 4]`` xyxy normalised box of the cell's object (zeros in empty cells).
      offsets: ``[..., S, S, 2]`` the object's centre as an offset in its cell, ``(cx·S − col, cy·S − row)``.
      classes: ``[..., S, S]`` int32 class of the cell's object (0 in empty cells).
      gt_index: ``[..., S, S]`` int32 index into ``gt_boxes`` of the cell's object, ``-1`` in empty cells.
    """

    has_object: jax.Array
    boxes: jax.Array
    offsets: jax.Array
    classes: jax.Array
    gt_index: jax.Array


def yolov1_cell_index(gt_boxes: jax.Array, *, grid_size: int) -> tuple[jax.Array, jax.Array]:
    """Grid cell ``(row, col)`` holding each box centre.

    .. math:: \\mathrm{col} = \\mathrm{clip}(\\lfloor c_x S \\rfloor, 0, S-1),\\quad
              \\mathrm{row} = \\mathrm{clip}(\\lfloor c_y S \\rfloor, 0, S-1)

    Args:
      gt_boxes: ``[..., 4]`` xyxy boxes normalised to ``[0, 1]``.
      grid_size: ``S``.

    Returns:
      ``(row, col)``, two int32 arrays ``[...]``.
    """
    gt_boxes = _checks.floating(gt_boxes, "gt_boxes", shape="[..., 4]", min_ndim=1, last=4)
    _checks.positive_int(grid_size, "grid_size")
    centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # [..., 2] (cx, cy)
    cell = jnp.clip(jnp.floor(centre * grid_size), 0, grid_size - 1).astype(jnp.int32)
    return cell[..., 1], cell[..., 0]


def yolov1_grid_assign(
    gt_boxes: jax.Array, gt_classes: jax.Array, gt_valid: jax.Array, *, grid_size: int
) -> YoloV1Targets:
    """Assigns padded ground truth to the cells of an ``S × S`` grid (YOLOv1).

    Each valid box goes to the cell holding its centre (:func:`yolov1_cell_index`). When several valid boxes
    share a cell, the first one in ``gt_boxes`` order wins, as in darknet's ``fill_truth_region``; padded boxes
    (``gt_valid == False``) are never assigned.

    Args:
      gt_boxes: ``[..., M, 4]`` xyxy boxes normalised to ``[0, 1]``.
      gt_classes: ``[..., M]`` integer classes in ``[0, C)``.
      gt_valid: ``[..., M]`` bool mask of real (non-padding) boxes.
      grid_size: ``S``.

    Returns:
      :class:`YoloV1Targets` with ``[..., S, S, ...]`` fields.
    """
    gt_boxes, gt_valid = _check_gt(gt_boxes, gt_valid)
    gt_classes = _check_classes(gt_classes, gt_valid)
    _checks.positive_int(grid_size, "grid_size")
    s = grid_size
    row, col = yolov1_cell_index(gt_boxes, grid_size=s)  # [..., M]
    flat = row * s + col  # [..., M]
    in_cell = (flat[..., :, None] == jnp.arange(s * s, dtype=jnp.int32)) & gt_valid[..., :, None]  # [..., M, S*S]
    first, has_object = _first_true(in_cell, axis=-2)  # [..., S*S]
    boxes = jnp.take_along_axis(gt_boxes, first[..., :, None], axis=-2)  # [..., S*S, 4]
    classes = jnp.take_along_axis(gt_classes, first, axis=-1).astype(jnp.int32)  # [..., S*S]
    boxes = jnp.where(has_object[..., None], boxes, 0)
    classes = jnp.where(has_object, classes, 0)
    gt_index = jnp.where(has_object, first, -1)

    lead = gt_boxes.shape[:-2]
    grid = jnp.stack(jnp.meshgrid(jnp.arange(s), jnp.arange(s), indexing="xy"), axis=-1)  # [S, S, 2] (col, row)
    boxes = boxes.reshape(*lead, s, s, 4)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    offsets = jnp.where(has_object.reshape(*lead, s, s)[..., None], centre * s - grid.astype(boxes.dtype), 0)
    return YoloV1Targets(
        has_object=has_object.reshape(*lead, s, s),
        boxes=boxes,
        offsets=offsets,
        classes=classes.reshape(*lead, s, s),
        gt_index=gt_index.reshape(*lead, s, s),
    )


def yolov1_responsible_predictor(
    pred_boxes: jax.Array, target_boxes: jax.Array, *, eps: float = 1e-7
) -> tuple[jax.Array, jax.Array]:
    """Index of the responsible predictor among the ``B`` of each cell (YOLOv1), and the IoUs it used.

    The predictor with the highest IoU with the cell's object is responsible (ties: the lowest index). If all
    ``B`` IoUs are 0, the predictor with the smallest squared distance between ``(cx, cy, w, h)`` of its box and
    of the object is taken instead (darknet's ``rmse`` fallback). The selection is a constant: no gradient flows
    through it (the IoUs are computed under ``stop_gradient``).

    Args:
      pred_boxes: ``[..., B, 4]`` xyxy predicted boxes of a cell.
      target_boxes: ``[..., 4]`` xyxy object box of that cell.
      eps: added to the IoU union, as :func:`jaxdet.boxes.box_iou`.

    Returns:
      ``(index [...] int32, iou [..., B])``.
    """
    pred_boxes = _checks.floating(pred_boxes, "pred_boxes", shape="[..., B, 4]", min_ndim=2, last=4)
    target_boxes = _checks.floating(target_boxes, "target_boxes", shape="[..., 4]", min_ndim=1, last=4)
    _checks.number(eps, "eps", low=0.0)
    pred_boxes = jax.lax.stop_gradient(pred_boxes)
    target_boxes = jax.lax.stop_gradient(target_boxes)[..., None, :]
    iou = box_iou(pred_boxes, target_boxes, eps=eps)  # [..., B]
    dist = jnp.sum(
        (box_convert(pred_boxes, "xyxy", "cxcywh") - box_convert(target_boxes, "xyxy", "cxcywh")) ** 2, axis=-1
    )  # [..., B]
    by_iou = jnp.argmax(iou, axis=-1)
    by_dist = jnp.argmin(dist, axis=-1)
    index = jnp.where(jnp.max(iou, axis=-1) > 0, by_iou, by_dist).astype(jnp.int32)
    return index, iou


# ---------------------------------------------------------------------------------------------------- SSD


def ssd_match(
    anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array, *, iou_threshold: float = 0.5
) -> jax.Array:
    """Matches priors to padded ground truth with torchvision's ``SSDMatcher`` rule.

    .. math:: m(a) = \\begin{cases} g & \\text{if } a = \\arg\\max_{a'} \\mathrm{IoU}(g, a') \\text{ for a valid } g
              \\text{ (highest such } g\\text{)} \\\\ \\arg\\max_g \\mathrm{IoU}(g, a) & \\text{if }
              \\max_g \\mathrm{IoU}(g, a) \\ge t \\\\ -1 & \\text{otherwise} \\end{cases}

    When JAX's default backend is the CPU the ground-truth slots are matched one at a time over the whole batch
    (:func:`_ssd_match_per_object`; about 3x faster there), elsewhere as whole-batch ``[..., M, A]`` reductions
    (parallel on a GPU). Both follow the rule above; at an exact geometric IoU tie, float rounding of the
    differently fused IoUs may pick a different one of the tied priors.

    Args:
      anchors: ``[A, 4]`` xyxy priors (positive area), in the same coordinates as ``gt_boxes``.
      gt_boxes: ``[..., M, 4]`` xyxy ground truth, padded.
      gt_valid: ``[..., M]`` bool mask; padded entries are never matched and claim no prior.
      iou_threshold: ``t``, 0.5 in SSD.

    Returns:
      ``[..., A]`` int32: the matched ground-truth index, or ``-1`` for background.
    """
    anchors = _checks.floating(anchors, "anchors", shape="[A, 4]", ndim=2, last=4)
    gt_boxes, gt_valid = _check_gt(gt_boxes, gt_valid)
    gt_boxes = jax.lax.stop_gradient(gt_boxes)
    anchors = anchors.astype(gt_boxes.dtype)
    lead, (num_gt, num_anchors) = gt_boxes.shape[:-2], (gt_boxes.shape[-2], anchors.shape[0])
    gt_flat, valid_flat = gt_boxes.reshape(-1, num_gt, 4), gt_valid.reshape(-1, num_gt)  # [B, M, 4], [B, M]
    match = _ssd_match_per_object if jax.default_backend() == "cpu" else _ssd_match_batched
    return match(anchors, gt_flat, valid_flat, iou_threshold).reshape(*lead, num_anchors)


def _first_argmax(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """``(jnp.argmax(x, axis), jnp.max(x, axis))`` of a NaN-free ``x`` as two plain reductions: the maximum, then
    the lowest index that reaches it, so ties go to the lowest index as in ``jnp.argmax``. XLA:CPU runs
    ``argmax``'s (value, index) pair reduction much slower than these (1.7x in an earlier, per-image form of
    ``ssd_match``). Returns int32 indices and the maxima, both with ``axis`` removed."""
    best = jnp.max(x, axis=axis, keepdims=True)
    index = jax.lax.broadcasted_iota(jnp.int32, x.shape, axis % x.ndim)
    first = jnp.min(jnp.where(x == best, index, x.shape[axis]), axis=axis)
    return first, jnp.squeeze(best, axis)


#: priors per block of :func:`_ssd_match_per_object`'s best-prior search (the measured optimum of 64-512 is flat).
_PRIOR_BLOCK = 128


def _ssd_match_per_object(anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array, iou_threshold: float):
    """:func:`ssd_match` of ``gt_boxes [B, M, 4]`` one ground-truth slot at a time (``fori_loop`` over ``M``), the
    whole batch at once: each step computes one ``[B, A]`` IoU row and

    - keeps the running best ground truth of every prior (a strictly greater IoU replaces it, so ties go to the
      lowest index, as ``argmax``);
    - finds the slot's best prior (ties: the lowest prior index) in two stages: the maximum of each block of
      :data:`_PRIOR_BLOCK` priors, the first block that reaches the overall maximum, then the first prior in
      that block that reaches it. A second full pass for the index (``where(iou == max)``, or ``argmax``'s
      (value, index) reduce) is what made the matching slow on XLA:CPU.

    At batch 32 × 20 slots × 8732 priors on this project's 2-core CPU: 10.3-11 ms against 29-31 ms for one image
    at a time under ``lax.map`` (the previous CPU path), with the same matches."""
    num_batch, num_gt = gt_valid.shape
    num_anchors = anchors.shape[0]
    num_blocks = -(-num_anchors // _PRIOR_BLOCK)
    padded = num_blocks * _PRIOR_BLOCK
    # Padding priors copy prior 0 (a finite IoU) and are masked below the -1 of an invalid slot.
    priors = jnp.concatenate([anchors, jnp.broadcast_to(anchors[:1], (padded - num_anchors, 4))])  # [P, 4]
    real = (jnp.arange(padded) < num_anchors).reshape(num_blocks, _PRIOR_BLOCK)

    def step(j, carry):
        best_iou, best_gt, best_prior = carry  # [B, P], [B, P], [B, M]
        box = jax.lax.dynamic_index_in_dim(gt_boxes, j, axis=1)  # [B, 1, 4]
        valid = jax.lax.dynamic_index_in_dim(gt_valid, j, axis=1)  # [B, 1]
        iou = jnp.where(valid, box_iou(box, priors, eps=0.0), -1.0)  # [B, P]
        better = iou > best_iou
        blocks = jnp.where(real, iou.reshape(num_batch, num_blocks, _PRIOR_BLOCK), -2.0)  # [B, nb, block]
        block, _ = _first_argmax(jnp.max(blocks, axis=-1), axis=-1)  # [B]
        within, _ = _first_argmax(jnp.take_along_axis(blocks, block[:, None, None], axis=1)[:, 0], axis=-1)  # [B]
        best_prior = jax.lax.dynamic_update_index_in_dim(best_prior, block * _PRIOR_BLOCK + within, j, axis=1)
        return jnp.where(better, iou, best_iou), jnp.where(better, j, best_gt), best_prior

    init = (
        jnp.full((num_batch, padded), -1.0, gt_boxes.dtype),
        jnp.zeros((num_batch, padded), jnp.int32),
        jnp.zeros((num_batch, num_gt), jnp.int32),
    )
    best_iou, best_gt, best_prior = jax.lax.fori_loop(0, num_gt, step, init)
    matches = jnp.where(best_iou[:, :num_anchors] >= iou_threshold, best_gt[:, :num_anchors], -1)  # [B, A]
    # Each valid ground truth claims its best prior; a scatter-max makes the highest index win a shared prior.
    claim = jnp.where(gt_valid, jnp.arange(num_gt, dtype=jnp.int32), -1)  # [B, M]
    rows = jnp.arange(num_batch, dtype=jnp.int32)[:, None]
    claimant = jnp.full((num_batch, num_anchors), -1, jnp.int32).at[rows, best_prior].max(claim)  # [B, A]
    return jnp.where(claimant >= 0, claimant, matches).astype(jnp.int32)


def _ssd_match_batched(anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array, iou_threshold: float):
    """:func:`ssd_match` of ``gt_boxes [B, M, 4]`` as whole-batch ``[B, M, A]`` reductions (parallel on a GPU)."""
    iou = box_iou_pairwise(gt_boxes, anchors, eps=0.0)  # [B, M, A]
    iou = jnp.where(gt_valid[..., :, None], iou, -1.0)
    num_batch, num_gt, num_anchors = iou.shape
    # Materialise the IoU once: otherwise XLA fuses its computation into each of the reductions below.
    iou = jax.lax.optimization_barrier(iou)
    best_val = jnp.max(iou, axis=-2)  # [B, A]
    best_gt = jnp.argmax(iou, axis=-2).astype(jnp.int32)  # [B, A]
    matches = jnp.where(best_val >= iou_threshold, best_gt, -1)
    # jnp.argmax: ties to the lowest prior index (lax.top_k(·, 1) on a [B, M, A] array broke ties differently).
    best_prior = jnp.argmax(iou, axis=-1).astype(jnp.int32)  # [B, M]
    # Each valid ground truth claims its best prior; a scatter-max makes the highest index win a shared prior.
    claim = jnp.where(gt_valid, jnp.arange(num_gt, dtype=jnp.int32), -1)  # [B, M]
    rows = jnp.arange(num_batch, dtype=jnp.int32)[:, None]
    claimant = jnp.full((num_batch, num_anchors), -1, jnp.int32).at[rows, best_prior].max(claim)  # [B, A]
    return jnp.where(claimant >= 0, claimant, matches).astype(jnp.int32)


def _check_priors(anchors: jax.Array, boxes: jax.Array, boxes_name: str) -> jax.Array:
    """Float priors ``[..., 4]`` broadcastable with the boxes they encode or decode."""
    anchors = _checks.floating(anchors, "anchors", shape="[..., 4]", min_ndim=1, last=4)
    _checks.broadcastable(anchors, boxes.shape, "anchors", f"{boxes_name}.shape")
    return anchors


def _check_weights(weights: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The box-coder weights: four numbers."""
    if len(weights) != 4:
        raise _checks.fail_value("weights", "(w_x, w_y, w_w, w_h), four numbers", weights)
    return tuple(weights)


def ssd_encode(
    gt_boxes: jax.Array,
    anchors: jax.Array,
    *,
    weights: tuple[float, float, float, float] = SSD_BOX_WEIGHTS,
    eps: float = 1e-12,
) -> jax.Array:
    """Encodes boxes relative to priors (torchvision ``BoxCoder.encode_single``).

    .. math:: t_x = w_x \\frac{g_{cx} - a_{cx}}{a_w},\\; t_y = w_y \\frac{g_{cy} - a_{cy}}{a_h},\\;
              t_w = w_w \\log\\frac{g_w}{a_w},\\; t_h = w_h \\log\\frac{g_h}{a_h}

    Args:
      gt_boxes: ``[..., 4]`` xyxy boxes to encode.
      anchors: ``[..., 4]`` xyxy priors, broadcastable against ``gt_boxes``.
      weights: ``(w_x, w_y, w_w, w_h)``, SSD's ``(10, 10, 5, 5)``.
      eps: floor of the box widths and heights inside the log and the divisions, so a zero-size box gives a large
        finite code (torchvision gives ``-inf``). It changes nothing for sizes above ``eps``.

    Returns:
      ``[..., 4]`` codes ``(t_x, t_y, t_w, t_h)``.
    """
    gt_boxes = _checks.floating(gt_boxes, "gt_boxes", shape="[..., 4]", min_ndim=1, last=4)
    anchors = _check_priors(anchors, gt_boxes, "gt_boxes")
    wx, wy, ww, wh = _check_weights(weights)
    anchors = anchors.astype(gt_boxes.dtype)
    # torchvision's form: size = x2 - x1, centre = x1 + 0.5 * size (kept for bitwise agreement).
    g_w = gt_boxes[..., 2] - gt_boxes[..., 0]
    g_h = gt_boxes[..., 3] - gt_boxes[..., 1]
    a_w = anchors[..., 2] - anchors[..., 0]
    a_h = anchors[..., 3] - anchors[..., 1]
    g_cx, g_cy = gt_boxes[..., 0] + 0.5 * g_w, gt_boxes[..., 1] + 0.5 * g_h
    a_cx, a_cy = anchors[..., 0] + 0.5 * a_w, anchors[..., 1] + 0.5 * a_h
    a_w, a_h = jnp.maximum(a_w, eps), jnp.maximum(a_h, eps)
    g_w, g_h = jnp.maximum(g_w, eps), jnp.maximum(g_h, eps)
    return jnp.stack(
        [wx * (g_cx - a_cx) / a_w, wy * (g_cy - a_cy) / a_h, ww * jnp.log(g_w / a_w), wh * jnp.log(g_h / a_h)],
        axis=-1,
    )


def ssd_decode(
    rel_codes: jax.Array,
    anchors: jax.Array,
    *,
    weights: tuple[float, float, float, float] = SSD_BOX_WEIGHTS,
    clip: float = SSD_BBOX_XFORM_CLIP,
) -> jax.Array:
    """Decodes box codes relative to priors (torchvision ``BoxCoder.decode_single``); inverse of :func:`ssd_encode`.

    .. math:: c_x = \\frac{t_x}{w_x} a_w + a_{cx},\\; w = a_w \\exp(\\min(t_w / w_w, \\mathrm{clip})),\\; \\dots

    Args:
      rel_codes: ``[..., 4]`` codes ``(t_x, t_y, t_w, t_h)``.
      anchors: ``[..., 4]`` xyxy priors, broadcastable against ``rel_codes``.
      weights: ``(w_x, w_y, w_w, w_h)``.
      clip: upper bound of ``t_w / w_w`` and ``t_h / w_h`` before ``exp``, torchvision's ``log(1000 / 16)``.

    Returns:
      ``[..., 4]`` xyxy boxes.
    """
    rel_codes = _checks.floating(rel_codes, "rel_codes", shape="[..., 4]", min_ndim=1, last=4)
    anchors = _check_priors(anchors, rel_codes, "rel_codes")
    wx, wy, ww, wh = _check_weights(weights)
    anchors = anchors.astype(rel_codes.dtype)
    a_w = anchors[..., 2] - anchors[..., 0]
    a_h = anchors[..., 3] - anchors[..., 1]
    a_cx = anchors[..., 0] + 0.5 * a_w
    a_cy = anchors[..., 1] + 0.5 * a_h
    dw = jnp.minimum(rel_codes[..., 2] / ww, clip)
    dh = jnp.minimum(rel_codes[..., 3] / wh, clip)
    cx = rel_codes[..., 0] / wx * a_w + a_cx
    cy = rel_codes[..., 1] / wy * a_h + a_cy
    half_w = 0.5 * (jnp.exp(dw) * a_w)
    half_h = 0.5 * (jnp.exp(dh) * a_h)
    return jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
