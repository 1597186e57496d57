"""Seed 003's hybrid polygon loss :math:`\\alpha L_{2} + (1-\\alpha) L_\\mathrm{MGIoU}`, with real gradient norms.

Seed 003 trains a polygon detector. It reports that MGIoU alone stalls with full-image boxes, which it attributes
to a weak-gradient plateau, and that the vertex L2 has strong gradients but ignores shape (:mod:`jaxdet.measurements`
measures those gradients; at the full-image box the MGIoU gradient is not small). The hybrid mixes them with the L2
weight α on a schedule
(:mod:`jaxdet.schedules`) or adaptive α (:func:`jaxdet.schedules.adaptive_alpha_update`, fed by the gradient norms
this loss reports).

**The terms.** For polygons ``[..., K, 2]`` (instances in the leading axes, optionally weighted):

- L2 is seed 003's vertex loss, :func:`jaxdet.losses.vertex.keypoint_loss` with ``variant="seed"``:
  :math:`\\frac{1}{n_\\mathrm{vis}}\\sum_k (1 - e^{-d_k/(A+\\epsilon)})`, where :math:`A` is the area of the target
  polygon's bounding box (or ``area``), and the target's ``target_valid`` mask is the visibility.
- MGIoU is :func:`jaxdet.polygons.mgiou_loss`, :math:`(1-\\mathrm{MGIoU})/2`.

Each is reduced to a scalar by the weighted mean :math:`\\sum_i w_i \\ell_i / \\max(\\sum_i w_i, 10^{-12})`
(``weight``; default all ones: the plain mean). Instances with :math:`w_i = 0` are replaced by a well-formed
polygon before the losses are computed (double-where), so padding never produces NaN values or gradients.

**Normalisation modes** (``normalization``):

- ``"none"``: :math:`T = \\alpha L_2 + (1-\\alpha) L_\\mathrm{MGIoU}` and :math:`\\nabla T` is its true gradient.
- ``"loss_ema"``: seed 003's heuristic, kept for comparison. Each loss is divided by an EMA of its own
  (detached) value, and the sum is scaled back by the L2 EMA, as the public ``ultralytics-mgiou`` fork does:
  :math:`T = \\big(\\alpha L_2/(\\bar L_2+10^{-6}) + (1-\\alpha) L_M/(\\bar L_M+10^{-6})\\big)\\,\\bar L_2`.
  **This is a heuristic that rescales the losses, not a gradient norm**: a loss whose value is large but flat
  (MGIoU on its plateau) keeps a tiny gradient.
- ``"grad_norm"``: each term's gradient with respect to the predicted vertices is scaled to unit norm (or by an
  EMA of its norm, ``norm_ema``) before the α weighting. With :math:`g_j = \\partial L_j / \\partial p` and
  :math:`\\hat g_j = g_j / \\|g_j\\|`:

  .. math:: \\frac{\\partial T}{\\partial p} = \\alpha \\hat g_{L_2} + (1-\\alpha)\\hat g_\\mathrm{MGIoU}
     \\quad\\text{exactly,}

  implemented with ``jax.custom_vjp``: the forward pass computes both term gradients once
  (:func:`jaxdet.gradients.term_gradients`, one ``jax.vjp``) and the backward pass returns the combination
  times the incoming cotangent, so nothing is differentiated twice. The *value* is the un-normalised
  :math:`\\alpha L_2 + (1-\\alpha) L_\\mathrm{MGIoU}` (comparable across modes); by design the gradient is not the
  derivative of that value. Only ``pred`` receives a gradient in this mode (targets, areas, masks, weights and α
  get zero cotangents), and the loss is first-order only (no gradient of the gradient). A zero gradient (a
  term exactly at its minimum) stays zero: the norm is guarded by a double ``where``.

**Metrics** (all stop-gradient): ``alpha``, ``l2``, ``mgiou``, ``l2_grad_norm``, ``mgiou_grad_norm``,
``grad_cosine`` (cosine similarity of the two term gradients) and ``l2_scale``/``mgiou_scale`` (the factor each
loss or gradient was multiplied by before the α weighting). In ``"none"``/``"loss_ema"`` the gradient metrics
cost one extra backward pass; ``gradient_metrics=False`` skips them (they are then NaN). ``"grad_norm"`` gets
them for free.

**State** (:class:`HybridState`, a pytree): the loss EMAs (``"loss_ema"``) and the gradient-norm EMAs
(``"grad_norm"`` with ``norm_ema``). The first update sets an EMA to the current value. Carry it in the train
state; ``state=None`` starts from :func:`hybrid_state_init`.

References:
  Seed 003; ``ultralytics-mgiou`` (branch ``polygon``, ``PolygonLoss`` hybrid mode). Le et al. 2025, MGIoU,
  arXiv 2504.16443.

Glossary: seed 003: the hybrid L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation (the
``ultralytics-mgiou`` fork, on Le et al. 2025, "Marginalized Generalized IoU (MGIoU)", arXiv 2504.16443).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet import gradients as _gradients
from jaxdet import polygons as _polygons
from jaxdet.losses._common import check_vertices
from jaxdet.losses.vertex import box_area_of_polygon, keypoint_loss

__all__ = [
    "HybridLoss",
    "HybridState",
    "NORMALIZATIONS",
    "hybrid_components",
    "hybrid_polygon_loss",
    "hybrid_state_init",
]

Normalization = Literal["none", "loss_ema", "grad_norm"]
NORMALIZATIONS: tuple[str, ...] = ("none", "loss_ema", "grad_norm")

#: seed 003's constant in ``loss / (ema + 1e-6)``.
LOSS_EMA_EPS = 1e-6


class HybridState(NamedTuple):
    """Running statistics of :func:`hybrid_polygon_loss` (a pytree of scalars).

    Attributes:
      l2_loss_ema, mgiou_loss_ema: EMAs of the two (detached) losses, used by ``"loss_ema"``.
      l2_norm_ema, mgiou_norm_ema: EMAs of the two gradient norms, used by ``"grad_norm"`` with ``norm_ema``.
      count: int32 number of calls so far (0: the next call initialises the EMAs).
    """

    l2_loss_ema: jax.Array
    mgiou_loss_ema: jax.Array
    l2_norm_ema: jax.Array
    mgiou_norm_ema: jax.Array
    count: jax.Array


class HybridLoss(NamedTuple):
    """Output of :func:`hybrid_polygon_loss`: unpack as ``total, metrics, state = ...``."""

    total: jax.Array
    metrics: dict[str, jax.Array]
    state: HybridState


def hybrid_state_init(dtype: Any = jnp.float32) -> HybridState:
    """A fresh :class:`HybridState` (zeros, count 0)."""
    zero = jnp.zeros((), dtype)
    return HybridState(zero, zero, zero, zero, jnp.zeros((), jnp.int32))


def _safe_polygon(num_vertices: int, dtype: Any) -> jax.Array:
    """A regular K-gon of radius 0.25 around (0.5, 0.5), counter-clockwise: the stand-in for masked instances."""
    theta = 2.0 * jnp.pi * jnp.arange(num_vertices, dtype=dtype) / num_vertices
    return jnp.stack([0.5 + 0.25 * jnp.cos(theta), 0.5 + 0.25 * jnp.sin(theta)], axis=-1)


def _weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1e-12)


def hybrid_components(
    pred: jax.Array,
    target: jax.Array,
    area: jax.Array | None = None,
    pred_valid: jax.Array | None = None,
    target_valid: jax.Array | None = None,
    weight: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The two scalar terms of the hybrid: ``{"l2": ..., "mgiou": ...}`` (weighted means over instances).

    This is the ``terms_fn`` handed to :func:`jaxdet.gradients.term_gradients`. Arguments as in
    :func:`hybrid_polygon_loss` (positional here so it can be passed through ``term_gradients``).
    """
    pred = check_vertices(pred, target)
    num_vertices = pred.shape[-2]
    batch_shape = pred.shape[:-2]
    dtype = jnp.result_type(pred, target)
    w = jnp.ones(batch_shape, dtype) if weight is None else jnp.broadcast_to(jnp.asarray(weight, dtype), batch_shape)
    keep = (w != 0)[..., None, None]  # [..., 1, 1]
    safe = _safe_polygon(num_vertices, dtype)
    pred_s = jnp.where(keep, pred, safe)  # double-where, first half: masked instances see a proper polygon
    target_s = jnp.where(keep, target, safe)
    keep_v = keep[..., 0]  # [..., 1]
    pv = None if pred_valid is None else jnp.where(keep_v, jnp.asarray(pred_valid, bool), True)
    tv = None if target_valid is None else jnp.where(keep_v, jnp.asarray(target_valid, bool), True)
    if area is None:
        area_s = box_area_of_polygon(target_s, valid=tv)
    else:
        area_s = jnp.where(keep[..., 0, 0], jnp.broadcast_to(jnp.asarray(area, dtype), batch_shape), 1.0)
    l2 = keypoint_loss(pred_s, target_s, area_s, visible=tv, variant="seed")  # [...]
    mg = _polygons.mgiou_loss(pred_s, target_s, pred_valid=pv, target_valid=tv)  # [...]
    l2 = jnp.where(keep[..., 0, 0], l2, 0.0)  # second half: select
    mg = jnp.where(keep[..., 0, 0], mg, 0.0)
    return {"l2": _weighted_mean(l2, w), "mgiou": _weighted_mean(mg, w)}


def _check_inputs(pred, target, pred_valid, target_valid, weight, area, alpha, normalization):
    pred = check_vertices(pred, target)
    for name, value in (("pred_valid", pred_valid), ("target_valid", target_valid)):
        if value is not None:
            _checks.shape_is(value, pred.shape[:-1], name, "pred.shape[:-1]")
    for name, value in (("weight", weight), ("area", area)):
        if value is not None:
            _checks.broadcastable(value, pred.shape[:-2], name, "pred.shape[:-2]")
    _checks.choice(normalization, "normalization", NORMALIZATIONS)
    if isinstance(alpha, (int, float)):
        _checks.number(alpha, "alpha", low=0.0, high=1.0)


def _ema(old: jax.Array, new: jax.Array, decay: float, first: jax.Array) -> jax.Array:
    return jnp.where(first, new, decay * old + (1.0 - decay) * new)


def _guarded_inverse(norm: jax.Array, eps: float) -> jax.Array:
    """1/norm, or 0 where norm <= eps (double-where: the division never sees a zero)."""
    ok = norm > eps
    return jnp.where(ok, 1.0 / jnp.where(ok, norm, 1.0), 0.0)


def _tree_scale_add(a: float | jax.Array, x: Any, b: float | jax.Array, y: Any) -> Any:
    return jax.tree_util.tree_map(lambda u, v: a * u + b * v, x, y)


def hybrid_polygon_loss(
    pred: jax.Array,
    target: jax.Array,
    *,
    alpha: float | jax.Array,
    normalization: Normalization = "none",
    state: HybridState | None = None,
    area: jax.Array | None = None,
    pred_valid: jax.Array | None = None,
    target_valid: jax.Array | None = None,
    weight: jax.Array | None = None,
    loss_ema_decay: float = 0.9,
    loss_ema_rescale: bool = True,
    norm_ema: float | None = None,
    norm_eps: float = 1e-12,
    gradient_metrics: bool = True,
) -> HybridLoss:
    """Hybrid polygon loss :math:`\\alpha L_2 + (1-\\alpha) L_\\mathrm{MGIoU}` of seed 003 (see the module doc).

    .. math:: T = \\alpha L_2 + (1-\\alpha) L_\\mathrm{MGIoU}, \\qquad
       \\nabla_p T = \\alpha\\, \\hat g_{L_2} + (1-\\alpha)\\, \\hat g_\\mathrm{MGIoU} \\;(\\texttt{"grad\\_norm"})

    Args:
      pred: ``[..., K, 2]`` predicted polygon vertices (x, y), K the same for all.
      target: ``[..., K, 2]`` ground-truth vertices (canonical order: counter-clockwise).
      alpha: the L2 weight in [0, 1], a float or a traced scalar (e.g. ``schedule(step)`` or
        ``AdaptiveAlphaState.alpha``). It is a constant of the loss in every ``normalization`` mode
        (``stop_gradient``): the loss is differentiated with respect to ``pred`` only, never ``alpha``.
      normalization: ``"none"``, ``"loss_ema"`` (seed 003's heuristic) or ``"grad_norm"`` (real gradient
        normalisation).
      state: :class:`HybridState` from the previous call (``None``: a fresh one).
      area: optional ``[...]`` area for the L2 term (seed: the GT box area). Default: the bounding-box area of
        ``target`` (over its valid vertices).
      pred_valid, target_valid: optional ``[..., K]`` bool vertex masks, passed to ``mgiou_loss``;
        ``target_valid`` is also the L2 visibility mask.
      weight: optional ``[...]`` per-instance weights (e.g. the foreground/valid mask); terms are weighted means.
      loss_ema_decay: EMA decay of the losses in ``"loss_ema"`` (0.9).
      loss_ema_rescale: multiply the normalised sum by the L2 EMA, as the seed's fixed version does (True).
      norm_ema: ``None`` (default): divide each gradient by its current norm (unit norm). A decay in [0, 1):
        divide by an EMA of the norm carried in ``state`` (smoother; the result then has norm ≈ 1).
      norm_eps: a gradient norm ≤ this counts as zero (its normalised gradient is 0).
      gradient_metrics: compute the gradient norms and cosine in ``"none"``/``"loss_ema"`` (one extra backward).

    Returns:
      :class:`HybridLoss` ``(total [], metrics {name: []}, state)``.
    """
    _check_inputs(pred, target, pred_valid, target_valid, weight, area, alpha, normalization)
    _checks.number(loss_ema_decay, "loss_ema_decay", low=0.0, high=1.0, high_open=True)
    if norm_ema is not None:
        _checks.number(norm_ema, "norm_ema", low=0.0, high=1.0, high_open=True, hint="Or None (the current norm).")
    _checks.number(norm_eps, "norm_eps", low=0.0)
    dtype = jnp.result_type(pred, target)
    if state is None:
        state = hybrid_state_init(dtype)
    alpha = jax.lax.stop_gradient(jnp.asarray(alpha, dtype))  # a weight, never a path: the same in every mode
    first = state.count == 0
    args = (target, area, pred_valid, target_valid, weight)
    nan = jnp.full((), jnp.nan, dtype)

    if normalization == "grad_norm":
        total, aux = _grad_norm_total(pred, args, alpha, state, norm_ema, norm_eps)
        aux = jax.lax.stop_gradient(aux)
        metrics = {
            "alpha": alpha,
            "l2": aux["l2"],
            "mgiou": aux["mgiou"],
            "l2_grad_norm": aux["l2_grad_norm"],
            "mgiou_grad_norm": aux["mgiou_grad_norm"],
            "grad_cosine": aux["grad_cosine"],
            "l2_scale": aux["l2_scale"],
            "mgiou_scale": aux["mgiou_scale"],
        }
        new_state = state._replace(
            l2_norm_ema=aux["l2_norm_ema"], mgiou_norm_ema=aux["mgiou_norm_ema"], count=state.count + 1
        )
        return HybridLoss(total, metrics, new_state)

    terms = hybrid_components(pred, *args)
    l2, mg = terms["l2"], terms["mgiou"]
    if gradient_metrics:
        _, grads = _gradients.term_gradients(hybrid_components, jax.lax.stop_gradient(pred), *args)
        norms = _gradients.gradient_norms(grads)
        l2_norm, mg_norm = norms["l2"], norms["mgiou"]
        cosine = _gradients.gradient_cosine(grads["l2"], grads["mgiou"])
    else:
        l2_norm = mg_norm = cosine = nan

    if normalization == "none":
        total = alpha * l2 + (1.0 - alpha) * mg
        l2_scale = mg_scale = jnp.ones((), dtype)
        new_state = state._replace(count=state.count + 1)
    else:  # loss_ema
        l2_ema = _ema(state.l2_loss_ema, jax.lax.stop_gradient(l2), loss_ema_decay, first)
        mg_ema = _ema(state.mgiou_loss_ema, jax.lax.stop_gradient(mg), loss_ema_decay, first)
        rescale = l2_ema if loss_ema_rescale else jnp.ones((), dtype)
        l2_scale = rescale / (l2_ema + LOSS_EMA_EPS)
        mg_scale = rescale / (mg_ema + LOSS_EMA_EPS)
        total = alpha * l2 * l2_scale + (1.0 - alpha) * mg * mg_scale
        new_state = state._replace(l2_loss_ema=l2_ema, mgiou_loss_ema=mg_ema, count=state.count + 1)

    metrics = {
        "alpha": alpha,
        "l2": l2,
        "mgiou": mg,
        "l2_grad_norm": l2_norm,
        "mgiou_grad_norm": mg_norm,
        "grad_cosine": cosine,
        "l2_scale": l2_scale,
        "mgiou_scale": mg_scale,
    }
    metrics = jax.lax.stop_gradient(metrics)
    return HybridLoss(total, metrics, jax.lax.stop_gradient(new_state))


def _grad_norm_forward(pred, args, alpha, state, norm_ema, norm_eps):
    """Values, term gradients and the normalised combination (no differentiation through any of it)."""
    terms, grads = _gradients.term_gradients(hybrid_components, pred, *args)
    norms = _gradients.gradient_norms(grads)
    first = state.count == 0
    if norm_ema is None:
        l2_norm_used, mg_norm_used = norms["l2"], norms["mgiou"]
        l2_norm_ema, mg_norm_ema = state.l2_norm_ema, state.mgiou_norm_ema
    else:
        l2_norm_ema = _ema(state.l2_norm_ema, norms["l2"], norm_ema, first)
        mg_norm_ema = _ema(state.mgiou_norm_ema, norms["mgiou"], norm_ema, first)
        l2_norm_used, mg_norm_used = l2_norm_ema, mg_norm_ema
    l2_scale = _guarded_inverse(l2_norm_used, norm_eps)
    mg_scale = _guarded_inverse(mg_norm_used, norm_eps)
    combined = _tree_scale_add(alpha * l2_scale, grads["l2"], (1.0 - alpha) * mg_scale, grads["mgiou"])
    total = alpha * terms["l2"] + (1.0 - alpha) * terms["mgiou"]
    aux = {
        "l2": terms["l2"],
        "mgiou": terms["mgiou"],
        "l2_grad_norm": norms["l2"],
        "mgiou_grad_norm": norms["mgiou"],
        "grad_cosine": _gradients.gradient_cosine(grads["l2"], grads["mgiou"]),
        "l2_scale": l2_scale,
        "mgiou_scale": mg_scale,
        "l2_norm_ema": l2_norm_ema,
        "mgiou_norm_ema": mg_norm_ema,
    }
    return (total, aux), combined


def _grad_norm_total(pred, args, alpha, state, norm_ema, norm_eps):
    # norm_ema and norm_eps are Python constants closed over; every array is an explicit argument.
    @jax.custom_vjp
    def total_fn(pred, args, alpha, state):
        return _grad_norm_forward(pred, args, alpha, state, norm_ema, norm_eps)[0]

    def fwd(pred, args, alpha, state):
        out, combined = _grad_norm_forward(pred, args, alpha, state, norm_ema, norm_eps)
        return out, combined

    def bwd(combined, cotangents):
        ct_total, _ = cotangents  # the aux outputs are metrics: their cotangents are ignored
        grad_pred = jax.tree_util.tree_map(lambda g: (ct_total * g).astype(g.dtype), combined)
        return (grad_pred, jax.tree_util.tree_map(lambda _: None, args, is_leaf=lambda x: x is None), None, None)

    total_fn.defvjp(fwd, bwd)
    return total_fn(pred, args, alpha, state)
