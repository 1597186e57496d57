"""SSD multibox loss (Liu et al. 2016) with torchvision's ``SSD.compute_loss`` semantics, under ``jit``.

For each image, priors are matched to the padded ground truth (:func:`jaxdet.assign.ssd_match`). Positives
regress the encoded box (weights ``(10, 10, 5, 5)``, :func:`jaxdet.assign.ssd_encode`) with smooth-L1
(``beta = 1``, summed); every prior gets a softmax cross-entropy whose target is the matched class, or the
background class 0. Hard negative mining keeps, per image, the ``neg_pos_ratio · n_pos`` priors ranked highest by
their cross-entropy once positives are set to ``−∞``. Both terms are divided by
:math:`N = \\max(1, \\text{positives in the batch})`:

.. math::
   L_{loc} = \\frac{1}{N} \\sum_{a \\in Pos} \\sum_{k} \\mathrm{smoothL1}_{\\beta=1}(\\ell_{ak} - \\hat g_{ak}),\\qquad
   L_{conf} = \\frac{1}{N} \\Big(\\sum_{a \\in Pos} \\mathrm{CE}_a + \\sum_{a \\in Neg_{hard}} \\mathrm{CE}_a\\Big)

**Classes.** ``gt_classes`` hold *0-based object classes* in ``[0, C)`` (the data contract of jaxdet), and
``cls_logits`` has ``C + 1`` columns with column 0 the background: object class ``c`` is logit column ``c + 1``,
which is torchvision's 1-based ``labels``.

**torchvision quirks reproduced** (so parity is exact): mining ranks priors in descending order, ties to the lower
prior index (a stable sort). When ``neg_pos_ratio · n_pos`` exceeds the number of negatives, the ranking reaches
the positives (at ``−∞``, lowest index first) and their cross-entropy is counted a second time, exactly as in
torchvision's ``cls_loss[foreground_idxs].sum() + cls_loss[background_idxs].sum()``. torchvision's default
``sort`` does not promise an order among exact ties: for tied negatives that only moves the gradient between
equal-loss priors; for a partly reached set of positives it can change the value, and there jaxdet's
lowest-index rule is the deterministic choice.

**Reduction.** The normalisation by the batch's positive count couples the images, so the outputs are scalars
(as torchvision's). ``total = bbox_regression + classification``.

References:
  Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016.
  torchvision ``models/detection/ssd.py`` (``SSD.compute_loss``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.assign import SSD_BOX_WEIGHTS, ssd_encode, ssd_match
from jaxdet.losses._common import smooth_l1, softmax_cross_entropy

SSD_TERMS: tuple[str, ...] = ("bbox_regression", "classification")


class SSDLoss(NamedTuple):
    """Output of :func:`ssd_multibox_loss`.

    Attributes:
      total: scalar, ``bbox_regression + classification``.
      terms: ``{"bbox_regression", "classification"}`` → scalars, as torchvision's loss dict.
    """

    total: jax.Array
    terms: dict[str, jax.Array]


def _check_heads(cls_logits: jax.Array, box_regression: jax.Array, anchors: jax.Array) -> tuple[jax.Array, ...]:
    """Float head outputs ``[N, A, C + 1]`` (C >= 1), ``[N, A, 4]`` and priors ``[A, 4]``."""
    cls_logits = _checks.floating(cls_logits, "cls_logits", shape="[N, A, C + 1] with C >= 1", ndim=3)
    if cls_logits.shape[-1] < 2:
        raise _checks.fail_shape("cls_logits", "[N, A, C + 1] with C >= 1", cls_logits)
    n, a = cls_logits.shape[:2]
    box_regression = jnp.asarray(box_regression)
    _checks.shape_is(box_regression, (n, a, 4), "box_regression", "[N, A, 4]")
    _checks.dtype_is(box_regression, "box_regression", "float")
    anchors = jnp.asarray(anchors)
    _checks.shape_is(anchors, (a, 4), "anchors", "[A, 4]")
    _checks.dtype_is(anchors, "anchors", "float")
    return cls_logits, box_regression, anchors


def _check_gt(gt_boxes: jax.Array, gt_classes: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Float ``gt_boxes [N, M, 4]`` and integer ``gt_classes [N, M]``."""
    gt_boxes = _checks.floating(gt_boxes, "gt_boxes", shape=f"[N, M, 4] with N = {n}", ndim=3, last=4)
    if gt_boxes.shape[0] != n:
        raise _checks.fail_shape("gt_boxes", f"[N, M, 4] with N = {n}", gt_boxes)
    gt_classes = jnp.asarray(gt_classes)
    _checks.shape_is(gt_classes, gt_boxes.shape[:2], "gt_classes", "[N, M]")
    _checks.dtype_is(gt_classes, "gt_classes", "int")
    return gt_boxes, gt_classes


def _order_keys(x: jax.Array) -> jax.Array:
    """Unsigned integer keys with the order of the floats ``x`` (no NaN): ``x < y ⇔ key(x) < key(y)``."""
    x = x + jnp.zeros((), x.dtype)  # -0.0 → +0.0, so the two zeros tie as in a sort
    bits = x.dtype.itemsize * 8
    signed = jax.lax.bitcast_convert_type(x, jnp.dtype(f"int{bits}"))
    unsigned = jax.lax.bitcast_convert_type(signed, jnp.dtype(f"uint{bits}"))
    sign_bit = jnp.asarray(1 << (bits - 1), unsigned.dtype)
    # Non-negative floats: set the sign bit; negative floats: flip every bit (larger magnitude → smaller key).
    return jnp.where(signed >= 0, unsigned | sign_bit, ~unsigned)


def _kth_largest_key(keys: jax.Array, k: jax.Array) -> jax.Array:
    """Per row of ``keys [N, A]`` (unsigned), the ``k``-th largest key (``k [N, 1] >= 1``), built bit by bit from
    the top: the largest ``T`` with ``#{keys >= T} >= k``. One count per bit instead of a sort."""
    bits = keys.dtype.itemsize * 8

    def body(i, threshold):
        candidate = threshold | (jnp.asarray(1, keys.dtype) << (bits - 1 - i).astype(keys.dtype))
        enough = jnp.sum(keys >= candidate, axis=-1, keepdims=True) >= k
        return jnp.where(enough, candidate, threshold)

    return jax.lax.fori_loop(0, bits, body, jnp.zeros((keys.shape[0], 1), keys.dtype))


def hard_negative_mask(neg_loss: jax.Array, positive: jax.Array, *, neg_pos_ratio: float = 3.0) -> jax.Array:
    """Hard negative mining of one batch, torchvision's rule, under ``jit``.

    Priors are ranked per image by ``neg_loss`` with positives set to ``−∞`` (descending; ties by lower prior
    index, a stable sort); the first ``neg_pos_ratio · n_pos`` ranks of each image are selected. Computed without
    a sort: the ``k``-th largest value is found by bisection on the floats' bit patterns (one count per bit), then
    everything above it and the first ties at it are taken — the same set as the stable sort, in O(bits · A).

    Args:
      neg_loss: ``[N, A]`` per-prior classification loss (not differentiated through the ranking; no NaN).
      positive: ``[N, A]`` bool, matched priors.
      neg_pos_ratio: negatives kept per positive (3).

    Returns:
      ``[N, A]`` bool mask of the selected priors (positives only when the ranking reaches them, see the
      module docstring).
    """
    neg_loss = _checks.floating(neg_loss, "neg_loss", shape="[N, A]", ndim=2)
    positive = _checks.boolean(positive, "positive")
    _checks.same_shape(neg_loss, positive, "neg_loss", "positive")
    _checks.number(neg_pos_ratio, "neg_pos_ratio", low=0.0)
    ranked = jnp.where(positive, -jnp.inf, jax.lax.stop_gradient(neg_loss))  # [N, A]
    num_anchors = ranked.shape[-1]
    num_negative = neg_pos_ratio * jnp.sum(positive, axis=-1, keepdims=True)  # [N, 1] (float, as torchvision)
    # rank < num_negative  ⇔  rank < k with k = ceil(num_negative), at most A.
    k = jnp.minimum(jnp.ceil(num_negative), num_anchors).astype(jnp.int32)  # [N, 1]
    keys = _order_keys(ranked)
    threshold = _kth_largest_key(keys, jnp.maximum(k, 1))  # [N, 1]
    above = keys > threshold
    tied = keys == threshold
    room = k - jnp.sum(above, axis=-1, keepdims=True)  # ties still to take, lowest index first
    selected = above | (tied & (jnp.cumsum(tied, axis=-1) <= room))
    return selected & (k > 0)


def ssd_multibox_loss_from_matches(
    cls_logits: jax.Array,
    box_regression: jax.Array,
    anchors: jax.Array,
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    matched_idxs: jax.Array,
    *,
    neg_pos_ratio: float = 3.0,
    box_weights: tuple[float, float, float, float] = SSD_BOX_WEIGHTS,
    beta: float = 1.0,
) -> SSDLoss:
    """SSD multibox loss given precomputed matches (torchvision ``SSD.compute_loss(..., matched_idxs)``).

    Args:
      cls_logits: ``[N, A, C + 1]`` class logits, column 0 background.
      box_regression: ``[N, A, 4]`` predicted codes ``(t_x, t_y, t_w, t_h)``.
      anchors: ``[A, 4]`` xyxy priors (positive area), in the coordinates of ``gt_boxes``.
      gt_boxes: ``[N, M, 4]`` xyxy ground truth, padded.
      gt_classes: ``[N, M]`` integer 0-based object classes in ``[0, C)``.
      matched_idxs: ``[N, A]`` integer matched ground-truth index per prior, ``-1`` (any negative) for background,
        e.g. from :func:`jaxdet.assign.ssd_match`. Must point at valid ground truth only.
      neg_pos_ratio: hard negatives per positive (3, torchvision's ``(1 − 0.25) / 0.25``).
      box_weights: box coder weights ``(10, 10, 5, 5)``.
      beta: smooth-L1 ``beta`` (1).

    Returns:
      :class:`SSDLoss` of scalars.
    """
    cls_logits, box_regression, anchors = _check_heads(cls_logits, box_regression, anchors)
    n, a, _ = cls_logits.shape
    gt_boxes, gt_classes = _check_gt(gt_boxes, gt_classes, n)
    matched_idxs = jnp.asarray(matched_idxs)
    _checks.shape_is(matched_idxs, (n, a), "matched_idxs", "[N, A]")
    _checks.dtype_is(matched_idxs, "matched_idxs", "int")
    _checks.number(neg_pos_ratio, "neg_pos_ratio", low=0.0)
    _checks.number(beta, "beta", low=0.0)
    dtype = box_regression.dtype
    anchors = anchors.astype(dtype)
    positive = matched_idxs >= 0  # [N, A]
    index = jnp.maximum(matched_idxs, 0).astype(jnp.int32)
    matched_boxes = jnp.take_along_axis(gt_boxes.astype(dtype), index[..., None], axis=1)  # [N, A, 4]
    # Background priors encode their own anchor (target 0): no log of a padded zero box is ever taken.
    matched_boxes = jnp.where(positive[..., None], matched_boxes, anchors)
    target = jax.lax.stop_gradient(ssd_encode(matched_boxes, anchors, weights=box_weights))  # [N, A, 4]
    box_loss = jnp.sum(jnp.where(positive[..., None], smooth_l1(box_regression - target, beta), 0))

    labels = jnp.where(positive, jnp.take_along_axis(gt_classes, index, axis=1) + 1, 0)  # [N, A]
    ce = softmax_cross_entropy(cls_logits, labels)  # [N, A]
    negatives = hard_negative_mask(ce, positive, neg_pos_ratio=neg_pos_ratio)
    cls_loss = jnp.sum(jnp.where(positive, ce, 0)) + jnp.sum(jnp.where(negatives, ce, 0))

    num_pos = jnp.maximum(jnp.sum(positive), 1).astype(dtype)
    terms = {"bbox_regression": box_loss / num_pos, "classification": cls_loss / num_pos}
    return SSDLoss(total=terms["bbox_regression"] + terms["classification"], terms=terms)


def ssd_multibox_loss(
    cls_logits: jax.Array,
    box_regression: jax.Array,
    anchors: jax.Array,
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    gt_valid: jax.Array,
    *,
    neg_pos_ratio: float = 3.0,
    iou_threshold: float = 0.5,
    box_weights: tuple[float, float, float, float] = SSD_BOX_WEIGHTS,
    beta: float = 1.0,
) -> SSDLoss:
    """SSD multibox loss: prior matching (:func:`jaxdet.assign.ssd_match`), then
    :func:`ssd_multibox_loss_from_matches`. See the module docstring for the formula and conventions.

    Args:
      cls_logits: ``[N, A, C + 1]`` class logits, column 0 background.
      box_regression: ``[N, A, 4]`` predicted codes.
      anchors: ``[A, 4]`` xyxy priors, in the coordinates of ``gt_boxes``.
      gt_boxes: ``[N, M, 4]`` xyxy ground truth, padded.
      gt_classes: ``[N, M]`` integer 0-based object classes in ``[0, C)``.
      gt_valid: ``[N, M]`` bool mask of real boxes.
      neg_pos_ratio: hard negatives per positive (3).
      iou_threshold: matching IoU threshold (0.5).
      box_weights: box coder weights ``(10, 10, 5, 5)``.
      beta: smooth-L1 ``beta`` (1).

    Returns:
      :class:`SSDLoss` of scalars.
    """
    cls_logits, box_regression, anchors = _check_heads(cls_logits, box_regression, anchors)
    gt_boxes, gt_classes = _check_gt(gt_boxes, gt_classes, cls_logits.shape[0])
    matched = ssd_match(anchors, gt_boxes, gt_valid, iou_threshold=iou_threshold)
    return ssd_multibox_loss_from_matches(
        cls_logits,
        box_regression,
        anchors,
        gt_boxes,
        gt_classes,
        matched,
        neg_pos_ratio=neg_pos_ratio,
        box_weights=box_weights,
        beta=beta,
    )
