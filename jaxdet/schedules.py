"""Schedules for the L2 weight α of the hybrid polygon loss, as plain optax schedules, plus adaptive α.

Every factory returns an ``optax.Schedule``: a pure function ``step -> α`` that works on Python ints and on traced
integer arrays under ``jit``. α is the weight of the vertex (L2) term in
:math:`\\alpha L_{2} + (1-\\alpha) L_{\\mathrm{MGIoU}}` (:func:`jaxdet.losses.hybrid.hybrid_polygon_loss`).

**Steps and epochs.** Seed 003 states its schedules in epochs. The mapping is explicit: every factory takes
``total_epochs`` and ``steps_per_epoch`` and computes

.. math:: \\mathrm{epoch}(s) = \\lfloor s / \\mathrm{steps\\_per\\_epoch} \\rfloor \\quad(\\texttt{per\\_epoch=True})
   \\qquad\\text{or}\\qquad s / \\mathrm{steps\\_per\\_epoch} \\quad(\\texttt{per\\_epoch=False}).

``per_epoch=True`` (the default) holds α constant within an epoch, as the seed (which updates α once per epoch);
``per_epoch=False`` interpolates between epochs. With ``steps_per_epoch=1`` the step *is* the epoch.

Schedules (seed 003's defaults are the defaults):

- :func:`static_alpha`: α constant.
- :func:`cosine_alpha`: from ``alpha_start=0.9`` to ``alpha_end=0.2`` along a half cosine over the first
  ``transition_fraction=0.7`` of training, then ``alpha_end``.
- :func:`linear_alpha`: the same, along a straight line.
- :func:`step_alpha`: 0.9 for the first half of training, 0.3 after.
- :func:`exponential_alpha`: :math:`0.9\\,e^{-0.05\\,\\mathrm{epoch}}`.
- :func:`two_stage_alpha`: pure L2 (α = 1) then pure MGIoU (α = 0), with ``optax.join_schedules``.
- :func:`make_alpha_schedule`: the factory by name, for training configs.

**YOLO26's branch weight** (:func:`one2many_weight`) is a schedule of the same kind: the weight of the one-to-many
term of :func:`jaxdet.losses.yolo26.yolo26_loss`, ultralytics ``E2ELoss``'s linear decay from 0.8 to 0.1 over
the epochs, and :func:`one2many_schedule` the yolo26 head's choice of it over a run's steps (linear, constant,
cosine).

**Adaptive α** (:class:`AdaptiveAlphaState`, :func:`adaptive_alpha_init`, :func:`adaptive_alpha_update`) is not a
function of the step but of the measured gradient norms; it is a small pure state machine carried in the train
state.

Glossary: seed 003: the hybrid L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation (the
``ultralytics-mgiou`` fork, on Le et al. 2025, "Marginalized Generalized IoU (MGIoU)", arXiv 2504.16443).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdet import _checks

__all__ = [
    "ALPHA_SCHEDULES",
    "AdaptiveAlphaState",
    "adaptive_alpha_init",
    "adaptive_alpha_update",
    "adaptive_alpha_regime",
    "cosine_alpha",
    "exponential_alpha",
    "linear_alpha",
    "make_alpha_schedule",
    "ONE2MANY_SCHEDULES",
    "one2many_schedule",
    "one2many_weight",
    "static_alpha",
    "step_alpha",
    "two_stage_alpha",
]


# --------------------------------------------------------------------------------------------------------------
# step -> epoch
# --------------------------------------------------------------------------------------------------------------


def _check_timing(total_epochs: float, steps_per_epoch: int) -> None:
    _checks.positive_int(steps_per_epoch, "steps_per_epoch")
    _checks.number(total_epochs, "total_epochs", low=0.0, low_open=True)


def _check_fraction(value: float, *, argname: str) -> None:
    _checks.number(value, argname, low=0.0, high=1.0, low_open=True)


def _epoch(step: jax.typing.ArrayLike, steps_per_epoch: int, per_epoch: bool) -> jax.Array:
    step = jnp.asarray(step)
    if per_epoch:
        return (step // steps_per_epoch).astype(jnp.result_type(float))
    return step.astype(jnp.result_type(float)) / steps_per_epoch


def _boundary_step(fraction: float, total_epochs: float, steps_per_epoch: int) -> int:
    """First step of the epoch ``round(fraction * total_epochs)`` (rounded half up)."""
    return int(math.floor(fraction * total_epochs + 0.5)) * steps_per_epoch


# --------------------------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------------------------


def static_alpha(alpha: float = 0.5) -> optax.Schedule:
    """Constant α: ``optax.constant_schedule(alpha)``."""
    _checks.number(alpha, "alpha", low=0.0, high=1.0)
    return optax.constant_schedule(alpha)


def cosine_alpha(
    *,
    total_epochs: float,
    steps_per_epoch: int = 1,
    alpha_start: float = 0.9,
    alpha_end: float = 0.2,
    transition_fraction: float = 0.7,
    per_epoch: bool = True,
) -> optax.Schedule:
    """Half-cosine from ``alpha_start`` to ``alpha_end`` over the first ``transition_fraction`` of training.

    .. math:: \\alpha(e) = \\alpha_\\mathrm{end} + (\\alpha_\\mathrm{start} - \\alpha_\\mathrm{end})
       \\,\\tfrac12\\big(1 + \\cos(\\pi \\min(e / T, 1))\\big), \\qquad T = \\mathrm{transition\\_fraction}
       \\cdot \\mathrm{total\\_epochs}

    Args:
      total_epochs: length of training in epochs.
      steps_per_epoch: optimizer steps per epoch (the step -> epoch mapping).
      alpha_start: α at step 0 (seed 003: 0.9, mostly L2).
      alpha_end: α after the transition (seed 003: 0.2, mostly MGIoU).
      transition_fraction: fraction of training the transition takes (seed 003: 0.7).
      per_epoch: hold α constant within an epoch (seed behaviour) or interpolate between epochs.

    Returns:
      ``step -> α``.
    """
    _check_timing(total_epochs, steps_per_epoch)
    _check_fraction(transition_fraction, argname="transition_fraction")
    transition = transition_fraction * total_epochs

    def schedule(step):
        progress = jnp.clip(_epoch(step, steps_per_epoch, per_epoch) / transition, 0.0, 1.0)
        return alpha_end + (alpha_start - alpha_end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))

    return schedule


def linear_alpha(
    *,
    total_epochs: float,
    steps_per_epoch: int = 1,
    alpha_start: float = 0.9,
    alpha_end: float = 0.2,
    transition_fraction: float = 0.7,
    per_epoch: bool = True,
) -> optax.Schedule:
    """Straight line from ``alpha_start`` to ``alpha_end`` over the first ``transition_fraction`` of training.

    .. math:: \\alpha(e) = \\alpha_\\mathrm{start} + (\\alpha_\\mathrm{end} - \\alpha_\\mathrm{start})
       \\min(e / T, 1), \\qquad T = \\mathrm{transition\\_fraction} \\cdot \\mathrm{total\\_epochs}

    Arguments as :func:`cosine_alpha`.
    """
    _check_timing(total_epochs, steps_per_epoch)
    _check_fraction(transition_fraction, argname="transition_fraction")
    transition = transition_fraction * total_epochs

    def schedule(step):
        progress = jnp.clip(_epoch(step, steps_per_epoch, per_epoch) / transition, 0.0, 1.0)
        return alpha_start + (alpha_end - alpha_start) * progress

    return schedule


def step_alpha(
    *,
    total_epochs: float,
    steps_per_epoch: int = 1,
    alpha_before: float = 0.9,
    alpha_after: float = 0.3,
    boundary_fraction: float = 0.5,
) -> optax.Schedule:
    """``alpha_before`` (0.9) until epoch ``round(boundary_fraction * total_epochs)``, then ``alpha_after`` (0.3).

    Built with ``optax.join_schedules`` of two constants (exact values; ``piecewise_constant_schedule`` would
    multiply scales and round). The boundary step itself already has ``alpha_after``.
    """
    _check_timing(total_epochs, steps_per_epoch)
    _check_fraction(boundary_fraction, argname="boundary_fraction")
    boundary = _boundary_step(boundary_fraction, total_epochs, steps_per_epoch)
    return optax.join_schedules(
        [optax.constant_schedule(alpha_before), optax.constant_schedule(alpha_after)], [boundary]
    )


def exponential_alpha(
    *,
    steps_per_epoch: int = 1,
    alpha_start: float = 0.9,
    rate: float = 0.05,
    alpha_min: float = 0.0,
    per_epoch: bool = True,
    total_epochs: float | None = None,
) -> optax.Schedule:
    """Exponential decay in epochs, floored at ``alpha_min``.

    .. math:: \\alpha(e) = \\max(\\alpha_\\mathrm{start} \\, e^{-\\mathrm{rate} \\cdot e}, \\alpha_\\mathrm{min})

    Args:
      steps_per_epoch: optimizer steps per epoch.
      alpha_start: 0.9 (seed 003).
      rate: 0.05 per epoch (seed 003).
      alpha_min: floor (0: none).
      per_epoch: hold α constant within an epoch.
      total_epochs: unused (accepted so every schedule takes the same keywords).
    """
    _check_timing(1 if total_epochs is None else total_epochs, steps_per_epoch)
    _checks.number(rate, "rate", low=0.0)

    def schedule(step):
        epoch = _epoch(step, steps_per_epoch, per_epoch)
        return jnp.maximum(alpha_start * jnp.exp(-rate * epoch), alpha_min)

    return schedule


def two_stage_alpha(
    *,
    total_epochs: float,
    steps_per_epoch: int = 1,
    switch_fraction: float = 0.5,
    alpha_first: float = 1.0,
    alpha_second: float = 0.0,
) -> optax.Schedule:
    """Two-stage training: pure L2 (α = 1) then pure MGIoU (α = 0), switched with ``optax.join_schedules``.

    The switch happens at the first step of epoch ``round(switch_fraction * total_epochs)``; that step already has
    ``alpha_second``.
    """
    _check_timing(total_epochs, steps_per_epoch)
    _check_fraction(switch_fraction, argname="switch_fraction")
    boundary = _boundary_step(switch_fraction, total_epochs, steps_per_epoch)
    return optax.join_schedules(
        [optax.constant_schedule(alpha_first), optax.constant_schedule(alpha_second)], [boundary]
    )


_FACTORIES = {
    "static": static_alpha,
    "cosine": cosine_alpha,
    "linear": linear_alpha,
    "step": step_alpha,
    "exponential": exponential_alpha,
    "two_stage": two_stage_alpha,
}
#: Names accepted by :func:`make_alpha_schedule`. ``"adaptive"`` is not a schedule: see :func:`adaptive_alpha_update`.
ALPHA_SCHEDULES: tuple[str, ...] = tuple(_FACTORIES)

_KEYWORDS = {
    "static": {"alpha"},
    "cosine": {"total_epochs", "steps_per_epoch", "alpha_start", "alpha_end", "transition_fraction", "per_epoch"},
    "linear": {"total_epochs", "steps_per_epoch", "alpha_start", "alpha_end", "transition_fraction", "per_epoch"},
    "step": {"total_epochs", "steps_per_epoch", "alpha_before", "alpha_after", "boundary_fraction"},
    "exponential": {"total_epochs", "steps_per_epoch", "alpha_start", "rate", "alpha_min", "per_epoch"},
    "two_stage": {"total_epochs", "steps_per_epoch", "switch_fraction", "alpha_first", "alpha_second"},
}
_ALL_KEYWORDS = set().union(*_KEYWORDS.values())


def make_alpha_schedule(name: str, **kwargs: Any) -> optax.Schedule:
    """Builds an α schedule by name from config-like keywords.

    Keywords that belong to *another* schedule are ignored, so a config can hold the union of all of them
    (``alpha_start``, ``alpha_end``, ``total_epochs``, ``steps_per_epoch``, ...) and switch schedules by name;
    an unknown keyword raises ValueError.

    Args:
      name: one of :data:`ALPHA_SCHEDULES`: ``"static"``, ``"cosine"``, ``"linear"``, ``"step"``,
        ``"exponential"``, ``"two_stage"``.
      **kwargs: the schedule's keywords (see each factory). ``total_epochs`` is required except for
        ``"static"`` and ``"exponential"``.

    Returns:
      ``step -> α``.
    """
    hint = ""
    if name == "adaptive":
        hint = "Adaptive α is a state machine: use adaptive_alpha_init/adaptive_alpha_update."
    _checks.choice(name, "name", ALPHA_SCHEDULES, hint=hint)
    _checks.keys_known(kwargs, _ALL_KEYWORDS, "**kwargs (the alpha-schedule keywords)")
    used = {k: v for k, v in kwargs.items() if k in _KEYWORDS[name]}
    return _FACTORIES[name](**used)


# --------------------------------------------------------------------------------------------------------------
# YOLO26: the one-to-many weight of the end-to-end loss
# --------------------------------------------------------------------------------------------------------------


def one2many_weight(
    *,
    total_epochs: float = 100,
    steps_per_epoch: int = 1,
    start: float = 0.8,
    end: float = 0.1,
    per_epoch: bool = True,
) -> optax.Schedule:
    """The one-to-many weight of YOLO26's end-to-end loss: ultralytics ``E2ELoss``'s linear decay over the epochs.

    .. math:: w(e) = \\max\\big(1 - e / \\max(E - 1, 1),\\ 0\\big)\\,(w_\\mathrm{start} - w_\\mathrm{end})
       + w_\\mathrm{end}

    with :math:`E` = ``total_epochs``. ultralytics calls ``E2ELoss.update()`` once at the end of each epoch, so
    epoch :math:`e` (from 0) trains with :math:`w(e)`: 0.8 in the first epoch, 0.1 in the last. The one-to-one
    weight is :math:`\\max(1 - w, 0)` (:func:`jaxdet.losses.yolo26.yolo26_loss`).

    Args:
      total_epochs: :math:`E` (ultralytics' ``epochs``; 100 in its ``default.yaml``).
      steps_per_epoch: optimizer steps per epoch; with 1 (default) the step *is* the epoch.
      start, end: the weights of the first and the last epoch (0.8, 0.1).
      per_epoch: ``True`` (default, ultralytics) holds the weight within an epoch; ``False`` interpolates.

    Returns:
      ``step -> w``, an ``optax.Schedule``.

    References:
      ultralytics 8.4.190 ``ultralytics/utils/loss.py`` (``E2ELoss.update``, ``E2ELoss.decay``) and
      ``ultralytics/engine/trainer.py`` (``criterion.update()`` after each epoch).
    """
    _check_timing(total_epochs, steps_per_epoch)
    start = _checks.number(start, "start", low=0.0, high=1.0)
    end = _checks.number(end, "end", low=0.0, high=1.0)
    span = max(total_epochs - 1, 1)
    gap = start - end

    def schedule(step):
        return jnp.maximum(1 - _epoch(step, steps_per_epoch, per_epoch) / span, 0) * gap + end

    return schedule


#: the one-to-many weight schedules of :func:`one2many_schedule` (``loss.one2many`` of the yolo26 head).
ONE2MANY_SCHEDULES: tuple[str, ...] = ("linear", "constant", "cosine")


def one2many_schedule(
    name: str = "linear",
    *,
    total_steps: int,
    start: float = 0.8,
    end: float = 0.1,
    epochs: int = 0,
) -> optax.Schedule:
    """YOLO26's one-to-many weight over a run of ``total_steps`` optimizer steps, by name (the yolo26 head's
    ``loss.one2many``).

    ultralytics counts its decay in epochs (:func:`one2many_weight`); a run counts steps. The run is mapped onto
    :math:`E` "epochs" of :math:`n` steps: ``epochs = 0`` (default) makes every step an epoch (:math:`E = T`,
    :math:`n = 1`: the weight moves at every step), ``epochs = E > 0`` gives ultralytics' staircase, the weight held
    within each of :math:`E` epochs of :math:`n = \\lceil T / E \\rceil` steps (the last epoch possibly shorter).
    With the progress :math:`p = \\min(\\lfloor s / n \\rfloor / \\max(E - 1, 1), 1)`, 0 at the first step and 1 at
    the last:

    - ``"linear"``: ultralytics' ``E2ELoss`` decay, :math:`w = w_\\mathrm{end} + (w_\\mathrm{start} -
      w_\\mathrm{end})(1 - p)` (:func:`one2many_weight` with ``total_epochs = E``, ``steps_per_epoch = n``):
      0.8 at the first step, 0.1 at the last;
    - ``"constant"``: :math:`w = w_\\mathrm{start}` throughout (``end`` and ``epochs`` unused);
    - ``"cosine"``: :math:`w = w_\\mathrm{end} + (w_\\mathrm{start} - w_\\mathrm{end})(1 + \\cos \\pi p) / 2`.

    The one-to-one weight is :math:`\\max(1 - w, 0)` (:func:`jaxdet.losses.yolo26.yolo26_loss`).

    Args:
      name: one of :data:`ONE2MANY_SCHEDULES`.
      total_steps: :math:`T`, the run's optimizer steps.
      start, end: the weights at the first and the last step (0.8 and 0.1, ultralytics'), in ``[0, 1]``.
      epochs: :math:`E`, 0 for one epoch per step.

    Returns:
      ``step -> w``, an ``optax.Schedule``.
    """
    _checks.choice(name, "name", ONE2MANY_SCHEDULES)
    total_steps = _checks.positive_int(total_steps, "total_steps")
    start = _checks.number(start, "start", low=0.0, high=1.0)
    end = _checks.number(end, "end", low=0.0, high=1.0)
    epochs = _checks.positive_int(epochs, "epochs", minimum=0)
    if name == "constant":
        return optax.constant_schedule(start)
    if epochs == 0:
        epochs, steps_per_epoch = total_steps, 1
    else:
        steps_per_epoch = -(-total_steps // epochs)
    if name == "linear":
        return one2many_weight(total_epochs=epochs, steps_per_epoch=steps_per_epoch, start=start, end=end)
    span = max(epochs - 1, 1)

    def schedule(step):
        progress = jnp.minimum(_epoch(step, steps_per_epoch, True) / span, 1.0)
        return end + (start - end) * 0.5 * (1 + jnp.cos(jnp.pi * progress))

    return schedule


# --------------------------------------------------------------------------------------------------------------
# adaptive alpha
# --------------------------------------------------------------------------------------------------------------


class AdaptiveAlphaState(NamedTuple):
    """State of adaptive α (a pytree; carry it in the train state).

    Attributes:
      alpha: ``[]`` the current α (the L2 weight to use at the next step).
      regime: ``[]`` int32: 0 = L2-heavy (ratio small), 1 = balanced, 2 = MGIoU-heavy (ratio large).
      ratio_ema: ``[]`` EMA of the MGIoU / L2 gradient-norm ratio.
      count: ``[]`` int32 number of (finite) updates so far.
    """

    alpha: jax.Array
    regime: jax.Array
    ratio_ema: jax.Array
    count: jax.Array


def adaptive_alpha_init(*, alpha: float = 0.9, dtype: Any = jnp.float32) -> AdaptiveAlphaState:
    """Initial adaptive-α state: α = ``alpha`` (0.9, L2-heavy, as seed 003 starts) until the first update."""
    _checks.number(alpha, "alpha", low=0.0, high=1.0)
    return AdaptiveAlphaState(
        alpha=jnp.asarray(alpha, dtype),
        regime=jnp.zeros((), jnp.int32),
        ratio_ema=jnp.zeros((), dtype),
        count=jnp.zeros((), jnp.int32),
    )


def _check_thresholds(thresholds: tuple[float, float]) -> tuple[float, float]:
    """``(lo, hi)`` with ``0 < lo < hi`` (traced thresholds are not checked)."""
    if not isinstance(thresholds, (tuple, list)) or len(thresholds) != 2:
        raise _checks.fail_value("thresholds", "(lo, hi) with 0 < lo < hi", thresholds)
    lo, hi = thresholds
    traced = isinstance(lo, jax.core.Tracer) or isinstance(hi, jax.core.Tracer)
    if not traced and not 0 < lo < hi:
        raise _checks.fail_value("thresholds", "(lo, hi) with 0 < lo < hi", thresholds)
    return lo, hi


def adaptive_alpha_regime(
    ratio: jax.typing.ArrayLike, *, thresholds: tuple[float, float] = (0.01, 0.1)
) -> jax.Array:
    """The regime of a ratio without hysteresis: 0 if ``ratio < lo``, 2 if ``ratio > hi``, else 1."""
    lo, hi = _check_thresholds(thresholds)
    ratio = jnp.asarray(ratio)
    return jnp.where(ratio < lo, 0, jnp.where(ratio > hi, 2, 1)).astype(jnp.int32)


def adaptive_alpha_update(
    state: AdaptiveAlphaState,
    l2_grad_norm: jax.typing.ArrayLike,
    mgiou_grad_norm: jax.typing.ArrayLike,
    *,
    ema: float = 0.9,
    hysteresis: float = 1.5,
    thresholds: tuple[float, float] = (0.01, 0.1),
    alphas: tuple[float, float, float] = (0.9, 0.7, 0.3),
    eps: float = 1e-12,
) -> AdaptiveAlphaState:
    """One step of adaptive α from the gradient norms of the two terms (w.r.t. the predicted vertices).

    Rule (seed 003): with :math:`r = \\|g_\\mathrm{MGIoU}\\| / \\|g_{L2}\\|`, α = 0.9 when r < 0.01 (MGIoU is on its
    weak-gradient plateau: lean on L2), α = 0.3 when r > 0.1 (MGIoU pulls: lean on it), α = 0.7 otherwise.

    Two things keep α from oscillating:

    - **EMA**: the rule reads :math:`\\bar r \\leftarrow \\beta \\bar r + (1-\\beta) r` (β = ``ema``); the first
      update sets :math:`\\bar r = r` and picks the regime without hysteresis.
    - **Hysteresis**: a regime is left only when :math:`\\bar r` is past its boundary by the factor ``h``
      (``hysteresis``): to move *up* (towards MGIoU) the ratio must exceed ``threshold * h``, to move *down* it
      must fall below ``threshold / h``. Equivalently, with :math:`a` the regime read with thresholds × h and
      :math:`b` the regime read with thresholds / h (:math:`a \\le b`), the new regime is
      ``clip(regime, a, b)``. ``hysteresis=1`` disables it.

    Non-finite norms leave the state unchanged. The ratio's denominator is floored at ``eps``; both norms zero give
    r = 0.

    Args:
      state: the current :class:`AdaptiveAlphaState`.
      l2_grad_norm: ``[]`` norm of the L2 term's gradient.
      mgiou_grad_norm: ``[]`` norm of the MGIoU term's gradient.
      ema: β of the ratio EMA, in [0, 1) (0: no smoothing).
      hysteresis: band factor h ≥ 1, with ``lo * h < hi / h`` so the bands do not overlap.
      thresholds: ``(lo, hi)`` = (0.01, 0.1).
      alphas: α for regimes 0, 1, 2 = (0.9, 0.7, 0.3).
      eps: floor of the L2 norm in the ratio.

    Returns:
      The new state; read ``state.alpha``. jit- and scan-safe (no Python control flow on values).
    """
    lo, hi = _check_thresholds(thresholds)
    _checks.number(ema, "ema", low=0.0, high=1.0, high_open=True)
    if not (hysteresis >= 1.0 and lo * hysteresis < hi / hysteresis):
        raise _checks.fail_value(
            "hysteresis", f">= 1 with lo*h < hi/h (h < {math.sqrt(hi / lo):.3g})", hysteresis
        )
    if len(alphas) != 3:
        raise _checks.fail_value("alphas", "3 values (regimes 0, 1, 2)", alphas)
    _checks.number(eps, "eps", low=0.0)
    dtype = state.ratio_ema.dtype
    l2 = jnp.asarray(l2_grad_norm, dtype)
    mg = jnp.asarray(mgiou_grad_norm, dtype)
    finite = jnp.isfinite(l2) & jnp.isfinite(mg)
    ratio = jnp.where(finite, mg, 0.0) / jnp.maximum(jnp.where(finite, l2, 1.0), eps)

    first = state.count == 0
    ratio_ema = jnp.where(first, ratio, ema * state.ratio_ema + (1.0 - ema) * ratio)
    lower = adaptive_alpha_regime(ratio_ema, thresholds=(lo * hysteresis, hi * hysteresis))
    upper = adaptive_alpha_regime(ratio_ema, thresholds=(lo / hysteresis, hi / hysteresis))
    banded = jnp.clip(state.regime, lower, upper)
    regime = jnp.where(first, adaptive_alpha_regime(ratio_ema, thresholds=thresholds), banded).astype(jnp.int32)
    alpha = jnp.asarray(alphas, dtype)[regime]

    new = AdaptiveAlphaState(alpha=alpha, regime=regime, ratio_ema=ratio_ema, count=state.count + 1)
    return jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, state)
