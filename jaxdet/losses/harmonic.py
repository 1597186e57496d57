"""Harmonic loss and Harmonic IoU loss (Wang & Zhang, ICCV 2021, seed 001).

The Harmonic loss couples the classification and regression losses of a positive sample so that each branch is
weighted by how well the other one is doing:

.. math::
    L_{\\mathrm{Har}} = (1 + \\beta_r)\\,L_{\\mathrm{cls}} + (1 + \\beta_c)\\,L_{\\mathrm{reg}},\\qquad
    \\beta_c = e^{-L_{\\mathrm{cls}}},\\quad \\beta_r = e^{-L_{\\mathrm{reg}}}

With the softmax cross-entropy :math:`L_{\\mathrm{cls}} = -\\log p_y`, :math:`\\beta_c = p_y` is the predicted
probability of the ground-truth class.

Gradients (our derivation). The paper's supplement was not reachable from here: what is known of it is that
eq. (5) differentiates β_r with respect to the offset t and that eq. (13) is the condition γ ≤ 1. The contents
we give eqs. (9), (10) and (12) below are our reconstruction under seed 001's numbering; the tests check every
one of them against ``jax.grad``. With the factors differentiated (the paper's
analysis, ``factor_grad="through"``), using :math:`\\partial\\beta_r/\\partial t = -\\beta_r\\,\\partial
L_{\\mathrm{reg}}/\\partial t` and :math:`\\partial\\beta_c/\\partial z = -\\beta_c\\,\\partial
L_{\\mathrm{cls}}/\\partial z`:

- eq. (5), the regression offsets :math:`t`:
  :math:`\\partial L/\\partial t =
  (1 + \\beta_c - \\beta_r L_{\\mathrm{cls}})\\,\\partial L_{\\mathrm{reg}}/\\partial t`
- eq. (10), the class logits :math:`z` (softmax CE):
  :math:`\\partial L/\\partial z = (1 + \\beta_r - \\beta_c L_{\\mathrm{reg}})\\,(\\operatorname{softmax}(z) - e_y)`

With detached factors (``factor_grad="stop"``) the brackets become :math:`1 + \\beta_c` and :math:`1 + \\beta_r`.
Note that the differentiated bracket :math:`1 + \\beta_c - \\beta_r L_{\\mathrm{cls}}` turns negative when the
classification is poor and the box is good (e.g. :math:`L_{\\mathrm{cls}} = 3, L_{\\mathrm{reg}} = 0`): the
regression gradient then points away from the target. That is what the paper's formula implies; detach the
factors if that is not wanted.

The Harmonic IoU loss re-weights the IoU loss towards high-IoU samples:

.. math::
    L_{\\mathrm{HIoU}} = (1 + \\mathrm{IoU})^{\\gamma}\\,(1 - \\mathrm{IoU})

- eq. (12), its derivative:
  :math:`\\mathrm{d}L_{\\mathrm{HIoU}}/\\mathrm{d}\\mathrm{IoU} = (1 + \\mathrm{IoU})^{\\gamma - 1}
  \\left[(\\gamma - 1) - (\\gamma + 1)\\,\\mathrm{IoU}\\right]`
- eq. (9), the requirement that the loss decreases as the IoU grows:
  :math:`\\mathrm{d}L_{\\mathrm{HIoU}}/\\mathrm{d}\\mathrm{IoU} \\le 0` for all :math:`\\mathrm{IoU} \\in [0, 1]`
- eq. (13), the resulting condition: the bracket is largest at IoU = 0, where it is :math:`\\gamma - 1`, so the
  loss is monotone on :math:`[0, 1]` if and only if :math:`\\gamma \\le 1`. For :math:`\\gamma > 1` it increases
  on :math:`[0, (\\gamma - 1)/(\\gamma + 1))`: a worse box would get a smaller loss.

The paper's localisation loss is :math:`L_{\\mathrm{SmoothL1}} + 1.5\\,L_{\\mathrm{HIoU}}` with
:math:`\\gamma = 0.8` (from a summary of the paper; the one public re-implementation uses the same values).

References:
  Wang & Zhang, "Reconcile Prediction Consistency for Balanced Object Detection", ICCV 2021
  (arXiv 2108.10809).

Glossary: seed 001: the Harmonic loss (Wang & Zhang, "Reconcile Prediction Consistency for Balanced Object
Detection", ICCV 2021).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet import boxes as _boxes
from jaxdet._math import safe_pow
from jaxdet.gradients import GradientPath, route_target
from jaxdet.losses._common import check_class_logits, label_log_prob, smooth_l1

__all__ = [
    "HarmonicLoss",
    "harmonic_weighting",
    "harmonic_loss",
    "smooth_l1_loss",
    "harmonic_iou_loss",
    "harmonic_iou_loss_from_iou",
    "REGRESSION_LOSSES",
]


class HarmonicLoss(NamedTuple):
    """Result of :func:`harmonic_loss` / :func:`harmonic_weighting`.

    Attributes:
      total: ``[...]`` per-sample Harmonic loss.
      terms: ``{"cls", "reg", "beta_c", "beta_r"}``, each ``[...]``. ``cls``/``reg`` are the raw (unweighted)
        losses; ``beta_c``/``beta_r`` the harmonic factors (0 where the sample is not positive).
    """

    total: jax.Array
    terms: dict[str, jax.Array]


def smooth_l1_loss(pred: jax.Array, target: jax.Array, *, beta: float = 1.0) -> jax.Array:
    """Smooth-L1 summed over the last axis (the box coordinates), as ``torch.nn.functional.smooth_l1_loss``.

    .. math:: \\ell(d) = \\begin{cases} 0.5\\,d^2/\\beta & |d| < \\beta \\\\ |d| - 0.5\\,\\beta & \\text{otherwise}
              \\end{cases},\\qquad L = \\sum_k \\ell(\\mathrm{pred}_k - \\mathrm{target}_k)

    Args:
      pred: ``[..., K]`` predictions (e.g. encoded box offsets, K = 4).
      target: ``[..., K]`` targets.
      beta: the L2-to-L1 threshold ``>= 0``; 0 gives the L1 loss.

    Returns:
      ``[...]``.
    """
    pred = _checks.floating(pred, "pred", shape="[..., K]", min_ndim=1)
    target = jnp.asarray(target)
    _checks.same_shape(pred, target, "pred", "target")
    beta = _checks.number(beta, "beta", low=0.0)
    return jnp.sum(smooth_l1(pred - target, beta), axis=-1)


def _check_gamma(gamma: float, allow_non_monotone: bool) -> float:
    gamma = _checks.number(gamma, "gamma")
    if gamma > 1.0 and not allow_non_monotone:
        raise _checks.fail_value(
            "gamma", "<= 1 (eq. 13 of Wang & Zhang 2021), or pass allow_non_monotone=True", gamma,
            hint="gamma > 1 makes the Harmonic IoU loss (1+IoU)^gamma (1-IoU) non-monotone: its derivative "
            "(1+IoU)^(gamma-1) [(gamma-1) - (gamma+1) IoU] is positive for IoU < (gamma-1)/(gamma+1), so a worse "
            "box gets a smaller loss there.",
        )
    return gamma


def harmonic_iou_loss_from_iou(
    iou: jax.Array, *, gamma: float = 0.8, allow_non_monotone: bool = False
) -> jax.Array:
    """Harmonic IoU loss from a precomputed IoU.

    .. math:: L_{\\mathrm{HIoU}} = (1 + \\mathrm{IoU})^{\\gamma}\\,(1 - \\mathrm{IoU})

    Monotone decreasing in the IoU on ``[0, 1]`` iff ``gamma <= 1`` (eq. 13, see the module docstring).

    Args:
      iou: ``[...]`` IoU values in ``[0, 1]``.
      gamma: the exponent (paper: 0.8). ``gamma > 1`` raises a ValueError unless ``allow_non_monotone``.
      allow_non_monotone: accept ``gamma > 1`` knowingly.

    Returns:
      ``[...]``.
    """
    gamma = _check_gamma(gamma, allow_non_monotone)
    iou = _checks.floating(iou, "iou")
    # 1 + IoU >= 1 for IoU in [0, 1]; the safe power keeps a negative metric (e.g. a GIoU passed by mistake)
    # from producing a NaN power or an infinite gradient.
    return safe_pow(1.0 + iou, gamma) * (1.0 - iou)


def harmonic_iou_loss(
    boxes1: jax.Array,
    boxes2: jax.Array,
    *,
    gamma: float = 0.8,
    allow_non_monotone: bool = False,
    eps: float = 1e-7,
) -> jax.Array:
    """Harmonic IoU loss between matched xyxy boxes.

    .. math:: L_{\\mathrm{HIoU}} = (1 + \\mathrm{IoU})^{\\gamma}\\,(1 - \\mathrm{IoU})

    Args:
      boxes1: ``[..., 4]`` predicted boxes, xyxy.
      boxes2: ``[..., 4]`` target boxes, xyxy.
      gamma: the exponent (paper: 0.8). ``gamma > 1`` raises a ValueError (eq. 13) unless
        ``allow_non_monotone=True``.
      allow_non_monotone: accept ``gamma > 1`` knowingly.
      eps: passed to :func:`jaxdet.boxes.box_iou`.

    Returns:
      ``[...]``.
    """
    gamma = _check_gamma(gamma, allow_non_monotone)
    iou = _boxes.box_iou(boxes1, boxes2, eps=eps)
    return harmonic_iou_loss_from_iou(iou, gamma=gamma, allow_non_monotone=allow_non_monotone)


def _iou_family(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    def fn(pred: jax.Array, target: jax.Array) -> jax.Array:
        return _boxes.IOU_LOSSES[name](pred, target)

    fn.__name__ = f"{name}_loss"
    return fn


REGRESSION_LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "smooth_l1": smooth_l1_loss,
    "iou": _iou_family("iou"),
    "giou": _iou_family("giou"),
    "diou": _iou_family("diou"),
    "ciou": _iou_family("ciou"),
    "hiou": harmonic_iou_loss,
}
"""Names accepted by :func:`harmonic_loss`'s ``regression``: smooth-L1 on offsets, the IoU family of
:data:`jaxdet.boxes.IOU_LOSSES` (xyxy boxes) and the Harmonic IoU loss (γ = 0.8)."""


def harmonic_weighting(
    cls_loss: jax.Array,
    reg_loss: jax.Array,
    *,
    factor_grad: GradientPath = "through",
    positive: jax.Array | None = None,
) -> HarmonicLoss:
    """Combines any per-sample classification and regression losses into the Harmonic loss.

    .. math::
        L = (1 + \\beta_r)\\,L_{\\mathrm{cls}} + (1 + \\beta_c)\\,L_{\\mathrm{reg}},\\quad
        \\beta_c = e^{-L_{\\mathrm{cls}}},\\ \\beta_r = e^{-L_{\\mathrm{reg}}}

    Args:
      cls_loss: ``[...]`` per-sample classification loss (the paper: softmax CE, so :math:`\\beta_c = p_y`).
      reg_loss: ``[...]`` per-sample regression loss (smooth-L1 summed over coordinates, an IoU-family loss...).
      factor_grad: ``"through"`` (default, the paper's analysis, supplement eq. 5): the factors are
        differentiated, so :math:`\\partial L/\\partial t = (1+\\beta_c-\\beta_r L_{\\mathrm{cls}})\\,\\partial
        L_{\\mathrm{reg}}/\\partial t`. ``"stop"``: the factors are constants (``stop_gradient``), so
        :math:`\\partial L/\\partial t = (1+\\beta_c)\\,\\partial L_{\\mathrm{reg}}/\\partial t`.
      positive: optional ``[...]`` bool mask. Where False the sample is a negative: its loss is ``cls_loss``
        alone and its regression term, factors and their gradients are zero. ``None``: every sample positive.

    Returns:
      :class:`HarmonicLoss` ``(total [...], terms)``.
    """
    cls_loss = _checks.floating(cls_loss, "cls_loss")
    reg_loss = _checks.floating(reg_loss, "reg_loss")
    _checks.same_shape(cls_loss, reg_loss, "cls_loss", "reg_loss")
    # beta in (0, 1]: a loss below 0 (a metric outside its range, e.g. the GIoU of inverted predicted boxes, which
    # YOLO26's raw ltrb distances can produce) counts as 0 in the factor instead of making exp(-loss) overflow.
    beta_c = route_target(jnp.exp(-jnp.where(cls_loss < 0, 0.0, cls_loss)), factor_grad, argname="factor_grad")
    beta_r = route_target(jnp.exp(-jnp.where(reg_loss < 0, 0.0, reg_loss)), factor_grad, argname="factor_grad")
    if positive is None:
        total = (1.0 + beta_r) * cls_loss + (1.0 + beta_c) * reg_loss
        return HarmonicLoss(total, {"cls": cls_loss, "reg": reg_loss, "beta_c": beta_c, "beta_r": beta_r})
    positive = _checks.boolean(positive, "positive")
    _checks.same_shape(cls_loss, positive, "cls_loss", "positive")
    zero = jnp.zeros_like(reg_loss)
    reg = jnp.where(positive, reg_loss, zero)
    beta_c = jnp.where(positive, beta_c, zero)
    beta_r = jnp.where(positive, beta_r, zero)
    total = (1.0 + beta_r) * cls_loss + (1.0 + beta_c) * reg
    return HarmonicLoss(total, {"cls": cls_loss, "reg": reg, "beta_c": beta_c, "beta_r": beta_r})


def _resolve_regression(regression, regression_kwargs):
    if callable(regression):
        fn = regression
    elif isinstance(regression, str) and regression in REGRESSION_LOSSES:
        fn = REGRESSION_LOSSES[regression]
    else:
        raise _checks.fail_value(
            "regression", f"a callable (pred, target) -> [...] or one of {tuple(sorted(REGRESSION_LOSSES))}", regression
        )
    if regression_kwargs:
        kwargs = dict(regression_kwargs)
        return lambda pred, target: fn(pred, target, **kwargs)
    return fn


def harmonic_loss(
    cls_logits: jax.Array,
    labels: jax.Array,
    box_pred: jax.Array,
    box_target: jax.Array,
    *,
    regression: str | Callable[[jax.Array, jax.Array], jax.Array] = "smooth_l1",
    regression_kwargs: dict | None = None,
    factor_grad: GradientPath = "through",
    positive: jax.Array | None = None,
) -> HarmonicLoss:
    """Harmonic loss with the softmax cross-entropy and a chosen regression loss.

    .. math::
        L = (1 + e^{-L_{\\mathrm{reg}}})\\,\\mathrm{CE}(z, y) + (1 + p_y)\\,L_{\\mathrm{reg}}(b, \\hat b),
        \\qquad p_y = e^{-\\mathrm{CE}(z, y)}

    Args:
      cls_logits: ``[..., C]`` class logits (background included if the detector has one).
      labels: ``[...]`` integer ground-truth classes in ``[0, C)``.
      box_pred: ``[..., K]`` predicted regression (encoded offsets for ``"smooth_l1"``; xyxy boxes for the IoU
        family).
      box_target: ``[..., K]`` regression targets, same layout.
      regression: ``"smooth_l1"`` (β = 1, summed over K), ``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"`` (from
        :data:`jaxdet.boxes.IOU_LOSSES`), ``"hiou"`` (:func:`harmonic_iou_loss`), or any callable
        ``(box_pred, box_target) -> [...]``.
      regression_kwargs: keyword arguments for the regression loss (e.g. ``{"beta": 1/9}`` or
        ``{"gamma": 0.5}``).
      factor_grad: ``"through"`` (default; the paper's eq. 5: β_c, β_r differentiated) or ``"stop"`` (detached).
      positive: optional ``[...]`` bool mask of positive samples; negatives get the CE only, and their boxes are
        replaced by a unit box before the regression loss (double ``where``), so padded or degenerate boxes of
        negatives never reach the gradient.

    Returns:
      :class:`HarmonicLoss` ``(total [...], terms {"cls", "reg", "beta_c", "beta_r"})``.
    """
    cls_logits, labels = check_class_logits(cls_logits, labels, "cls_logits")
    box_pred = jnp.asarray(box_pred)
    box_target = jnp.asarray(box_target)
    _checks.same_shape(box_pred, box_target, "box_pred", "box_target")
    if box_pred.ndim != labels.ndim + 1 or box_pred.shape[:-1] != labels.shape:
        expected = labels.shape + (box_pred.shape[-1:] or (4,))
        raise _checks.fail_shape("box_pred", f"labels.shape + (K,) = {expected}", box_pred)
    reg_fn = _resolve_regression(regression, regression_kwargs)
    if positive is not None:
        positive = _checks.boolean(positive, "positive")
        _checks.same_shape(labels, positive, "labels", "positive")
        # Double where: negatives (often padded, degenerate boxes) get a harmless regression input, the unit box
        # against itself, so that an unsafe op inside the regression loss cannot leak a NaN into the gradient.
        k = box_pred.shape[-1]
        safe = jnp.asarray([0.0, 0.0, 1.0, 1.0] if k == 4 else [0.0] * k, dtype=box_pred.dtype)
        keep = positive[..., None]
        box_pred = jnp.where(keep, box_pred, safe)
        box_target = jnp.where(keep, box_target, safe.astype(box_target.dtype))

    ce = -label_log_prob(cls_logits, labels)  # [...]
    reg = reg_fn(box_pred, box_target)  # [...]
    return harmonic_weighting(ce, reg, factor_grad=factor_grad, positive=positive)
