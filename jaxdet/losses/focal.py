"""The focal family: sigmoid and softmax focal loss, the RetinaNet prior bias, Varifocal and Quality Focal loss.

Every loss here is computed from logits with log-sigmoid / log-softmax forms, so values and gradients stay finite
for logits of ±100 in float32. Powers of a base that can reach exactly 0 (``(1 - p_t)^γ``, ``|p - t|^γ``) use the
double-``where`` pattern so that a fractional exponent never produces ``inf * 0``.

References:
  - Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017 (RetinaNet).
  - Zhang et al., "VarifocalNet: An IoU-aware Dense Object Detector", CVPR 2021.
  - Li et al., "Generalized Focal Loss", NeurIPS 2020 (Quality Focal Loss).

Glossary: Case 1: a target computed from the predictions keeps its gradient (``"through"``); Case 2: its gradient is
stopped (``"stop"``, what every public YOLO does).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet._math import safe_pow
from jaxdet.gradients import GradientPath, route_target
from jaxdet.losses._common import check_class_logits, check_reduction, label_log_prob, reduce_loss

Reduction = Literal["none", "mean", "sum"]

__all__ = [
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "retinanet_prior_bias",
    "retinanet_bias_init",
    "varifocal_loss",
    "quality_focal_loss",
    "binary_cross_entropy_with_logits",
]


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _check_logits_targets(logits: jax.Array, targets: jax.Array, logits_name: str) -> tuple[jax.Array, jax.Array]:
    """Float ``logits`` and ``targets`` of the same shape (``targets`` cast to the logits' dtype)."""
    logits = _checks.floating(logits, logits_name)
    targets = jnp.asarray(targets, dtype=logits.dtype)
    _checks.same_shape(logits, targets, logits_name, "targets")
    return logits, targets


def _sigmoid_terms(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(x >= 0, σ(x), σ(-x), log1p(exp(-|x|)))`` from a single ``exp``, exact in both tails.

    ``exp(-|x|)`` is written ``exp(where(x >= 0, -x, x))`` rather than with ``abs`` so that the derivative at
    ``x = 0`` is the true one (``abs`` has a subgradient there).
    """
    nonneg = x >= 0
    e = jnp.exp(jnp.where(nonneg, -x, x))  # exp(-|x|) in (0, 1]
    r = 1.0 / (1.0 + e)
    p = jnp.where(nonneg, r, e * r)
    q = jnp.where(nonneg, e * r, r)
    return nonneg, p, q, jnp.log1p(e)


def _bce_from_terms(x: jax.Array, t: jax.Array, nonneg: jax.Array, log1p_e: jax.Array) -> jax.Array:
    # t softplus(-x) + (1 - t) softplus(x), with softplus(±x) = max(±x, 0) + log1p(exp(-|x|)): two
    # non-negative terms, so no cancellation.
    return jnp.where(nonneg, (1.0 - t) * x, -t * x) + log1p_e


def binary_cross_entropy_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Elementwise, numerically stable binary cross-entropy on logits.

    .. math:: \\mathrm{BCE}(x, t) = t\\operatorname{softplus}(-x) + (1 - t)\\operatorname{softplus}(x)
              = -t\\log\\sigma(x) - (1-t)\\log\\sigma(-x)

    evaluated as ``max(x, 0)(1 - t) + max(-x, 0) t + log1p(exp(-|x|))``. Its derivative is exactly
    :math:`\\sigma(x) - t` everywhere, including ``x = 0``. Unlike the common ``(1 - t) x + softplus(-x)``
    form, it never subtracts two large terms (``t = 0, x << 0`` or ``t = 1, x >> 0``), so small losses keep
    full relative precision, and one ``exp`` and one ``log1p`` serve the whole loss.

    Args:
      logits: ``[...]`` float logits.
      targets: ``[...]`` float targets in ``[0, 1]`` (soft targets allowed).

    Returns:
      ``[...]`` unreduced loss.
    """
    logits = _checks.floating(logits, "logits")
    _checks.broadcastable(targets, logits.shape, "targets", "logits.shape")
    nonneg, _, _, log1p_e = _sigmoid_terms(logits)
    return _bce_from_terms(logits, targets, nonneg, log1p_e)


# ----------------------------------------------------------------------------------------------------------------
# RetinaNet


def sigmoid_focal_loss(
    inputs: jax.Array,
    targets: jax.Array,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
) -> jax.Array:
    """Sigmoid focal loss of RetinaNet (parity with ``torchvision.ops.sigmoid_focal_loss``).

    .. math::
        p_t = p\\,t + (1-p)(1-t),\\quad \\alpha_t = \\alpha\\,t + (1-\\alpha)(1-t),\\quad
        \\mathrm{FL} = \\alpha_t\\,(1-p_t)^{\\gamma}\\,\\mathrm{BCE}(x, t),\\quad p = \\sigma(x)

    ``1 - p`` is evaluated as :math:`\\sigma(-x)` and the BCE with softplus terms, so logits of ±100
    give finite values and gradients in float32.

    Args:
      inputs: ``[...]`` float logits.
      targets: ``[...]`` float binary labels (0 negative, 1 positive; soft labels are accepted), same shape.
      alpha: weight of the positives in ``[0, 1]``; any ``alpha < 0`` disables the α weighting (torchvision uses
        ``-1``).
      gamma: focusing exponent ``>= 0``.
      reduction: ``"none"`` (``[...]``), ``"mean"`` or ``"sum"`` (scalars).

    Returns:
      The loss, reduced as asked.

    References:
      Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, eq. (5).
    """
    inputs, targets = _check_logits_targets(inputs, targets, "inputs")
    alpha = _checks.number(alpha, "alpha", high=1.0, hint="A negative alpha disables the alpha weighting.")
    gamma = _checks.number(gamma, "gamma", low=0.0)
    check_reduction(reduction)

    nonneg, p, one_minus_p, log1p_e = _sigmoid_terms(inputs)
    ce = _bce_from_terms(inputs, targets, nonneg, log1p_e)
    one_minus_p_t = p * (1.0 - targets) + one_minus_p * targets
    loss = ce * safe_pow(one_minus_p_t, gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1.0 - alpha) * (1.0 - targets)
        loss = alpha_t * loss
    return reduce_loss(loss, reduction)


def softmax_focal_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    alpha: float | jax.Array | None = None,
    gamma: float = 2.0,
    reduction: Reduction = "none",
) -> jax.Array:
    """Multi-class (softmax) focal loss.

    .. math::
        \\mathrm{FL}(z, y) = -\\alpha_y\\,(1 - p_y)^{\\gamma}\\,\\log p_y,\\qquad p = \\operatorname{softmax}(z)

    :math:`\\log p_y` comes from ``log_softmax`` and :math:`1 - p_y` from ``-expm1(log p_y)``, so the loss is
    finite for logits of ±100. With ``gamma = 0`` and ``alpha = None`` it is the softmax cross-entropy.

    Args:
      logits: ``[..., C]`` float class logits.
      labels: ``[...]`` integer class indices in ``[0, C)``.
      alpha: class weighting. ``None`` (default): no weighting (:math:`\\alpha_y = 1`). A scalar: every term is
        multiplied by that scalar (the kornia convention; a scalar cannot separate positives from negatives in a
        softmax). A ``[C]`` array: per-class weights, :math:`\\alpha_y = \\alpha[y]` (e.g. a smaller weight for
        the background class).
      gamma: focusing exponent ``>= 0``.
      reduction: ``"none"`` (``[...]``), ``"mean"`` or ``"sum"``.

    Returns:
      The loss, reduced as asked.
    """
    logits, labels = check_class_logits(logits, labels, "logits")
    gamma = _checks.number(gamma, "gamma", low=0.0)
    check_reduction(reduction)
    num_classes = logits.shape[-1]

    log_p_y = label_log_prob(logits, labels)  # [...]
    one_minus_p_y = -jnp.expm1(log_p_y)
    loss = -safe_pow(one_minus_p_y, gamma) * log_p_y
    if alpha is not None:
        alpha_arr = jnp.asarray(alpha, dtype=logits.dtype)
        if alpha_arr.ndim == 0:
            loss = alpha_arr * loss
        elif alpha_arr.shape == (num_classes,):
            loss = alpha_arr[labels] * loss
        else:
            raise _checks.fail_shape("alpha", f"() or [C] = ({num_classes},), or alpha=None", alpha_arr)
    return reduce_loss(loss, reduction)


def retinanet_prior_bias(prior_prob: float = 0.01) -> float:
    """Bias that makes a sigmoid classifier start at probability ``prior_prob`` (RetinaNet's initialisation).

    .. math:: b = -\\log\\frac{1 - \\pi}{\\pi},\\qquad \\sigma(b) = \\pi

    Args:
      prior_prob: the prior probability :math:`\\pi` in ``(0, 1)``; RetinaNet uses 0.01 (b ≈ −4.595).

    Returns:
      The bias as a Python float.
    """
    prior_prob = _checks.number(prior_prob, "prior_prob", low=0.0, high=1.0, low_open=True, high_open=True)
    return -math.log((1.0 - prior_prob) / prior_prob)


def retinanet_bias_init(prior_prob: float = 0.01) -> Callable[..., jax.Array]:
    """A flax initializer filling the bias with :func:`retinanet_prior_bias`.

    Usable as ``nnx.Conv(..., bias_init=retinanet_bias_init(0.01))`` or ``nnx.Linear(..., bias_init=...)``: it
    follows the ``jax.nn.initializers`` signature ``init(key, shape, dtype)``.

    Args:
      prior_prob: the prior probability :math:`\\pi` in ``(0, 1)``.
    """
    bias = retinanet_prior_bias(prior_prob)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:  # noqa: ARG001 (key unused: deterministic)
        return jnp.full(shape, bias, dtype=dtype)

    return init


# ----------------------------------------------------------------------------------------------------------------
# IoU-aware classification losses


def varifocal_loss(
    logits: jax.Array,
    targets: jax.Array,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    iou_weighted: bool = True,
    iou_target: GradientPath = "stop",
    reduction: Reduction = "none",
) -> jax.Array:
    """Varifocal loss (VarifocalNet): BCE on logits against an IoU-aware classification score.

    .. math::
        w = t\\,[t > 0] + \\alpha\\,|p - t|^{\\gamma}\\,[t \\le 0],\\qquad
        \\mathrm{VFL}(x, t) = w \\cdot \\mathrm{BCE}(x, t),\\qquad p = \\sigma(x)

    As in the official code, the weight is not detached from the prediction :math:`p`; the modulating term only
    down-weights negatives, positives are weighted by their IoU target.

    Args:
      logits: ``[...]`` float logits (typically ``[B, A, C]``).
      targets: ``[...]`` IoU-aware score: the IoU with the matched ground truth at the ground-truth class,
        0 elsewhere; same shape as ``logits``.
      alpha: weight of the negatives (0.75).
      gamma: focusing exponent for the negatives (2).
      iou_weighted: weight positives by ``t`` (default, the paper) or by 1.
      iou_target: gradient path of ``targets``. ``"stop"`` (default, as the official code, which computes the
        IoU from detached boxes): Case 2, ``targets`` gets no gradient. ``"through"``: Case 1, the gradient
        flows into ``targets`` (and on to the boxes that produced the IoU), through both the BCE target and the
        positive weight.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
      The loss, reduced as asked.

    References:
      Zhang et al., "VarifocalNet: An IoU-aware Dense Object Detector", CVPR 2021, eq. (2).
    """
    logits, targets = _check_logits_targets(logits, targets, "logits")
    targets = route_target(targets, iou_target, argname="iou_target")
    gamma = _checks.number(gamma, "gamma", low=0.0)
    check_reduction(reduction)

    nonneg, p, _, log1p_e = _sigmoid_terms(logits)
    positive = targets > 0
    zero = jnp.zeros_like(targets)
    pos_weight = targets if iou_weighted else jnp.ones_like(targets)
    weight = jnp.where(positive, pos_weight, zero) + jnp.where(
        positive, zero, alpha * safe_pow(jnp.abs(p - targets), gamma)
    )
    loss = weight * _bce_from_terms(logits, targets, nonneg, log1p_e)
    return reduce_loss(loss, reduction)


def quality_focal_loss(
    logits: jax.Array,
    targets: jax.Array,
    *,
    beta: float = 2.0,
    iou_target: GradientPath = "stop",
    reduction: Reduction = "none",
) -> jax.Array:
    """Quality focal loss (Generalized Focal Loss), elementwise over a dense soft-label array.

    .. math:: \\mathrm{QFL}(x, t) = |t - \\sigma(x)|^{\\beta}\\,\\mathrm{BCE}(x, t)

    With ``targets`` holding the IoU at the ground-truth class of each positive and 0 everywhere else, summing
    over the class axis gives the paper's per-anchor QFL. The modulating factor is not detached from
    :math:`\\sigma(x)` (as the official code).

    Args:
      logits: ``[...]`` float logits (typically ``[B, A, C]``).
      targets: ``[...]`` soft quality labels in ``[0, 1]``, same shape as ``logits``.
      beta: focusing exponent (2).
      iou_target: gradient path of ``targets``. ``"stop"`` (default, as the official code): Case 2, no
        gradient to ``targets``. ``"through"``: Case 1, the gradient also flows into ``targets`` through the BCE
        target and the modulating factor.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
      The loss, reduced as asked.

    References:
      Li et al., "Generalized Focal Loss: Learning Qualified and Distributed Bounding Boxes for Dense Object
      Detection", NeurIPS 2020, eq. (5).
    """
    logits, targets = _check_logits_targets(logits, targets, "logits")
    targets = route_target(targets, iou_target, argname="iou_target")
    beta = _checks.number(beta, "beta", low=0.0)
    check_reduction(reduction)

    nonneg, p, _, log1p_e = _sigmoid_terms(logits)
    loss = safe_pow(jnp.abs(targets - p), beta) * _bce_from_terms(logits, targets, nonneg, log1p_e)
    return reduce_loss(loss, reduction)
