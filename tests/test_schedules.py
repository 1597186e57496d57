"""Tests of jaxdet.schedules: α schedule values from the formulas, join boundaries, adaptive α hysteresis."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdet import schedules as S

EPOCHS, SPE = 100, 10  # 100 epochs of 10 steps


def _cos(epoch, start=0.9, end=0.2, transition=70.0):
    progress = min(epoch / transition, 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def _close(schedule, step, expected):
    np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6, atol=1e-7)


def test_cosine_defaults_are_seed_003():
    sched = S.cosine_alpha(total_epochs=EPOCHS, steps_per_epoch=SPE)
    _close(sched, 0, 0.9)
    _close(sched, 9, 0.9)  # per_epoch: constant within epoch 0
    _close(sched, 10, _cos(1))
    _close(sched, 350, 0.55)  # halfway through the 70-epoch transition
    _close(sched, 357, 0.55)
    _close(sched, 699, _cos(69))
    _close(sched, 700, 0.2)
    _close(sched, 999, 0.2)
    _close(sched, 5000, 0.2)


def test_cosine_continuous_and_custom():
    sched = S.cosine_alpha(total_epochs=10, steps_per_epoch=4, alpha_start=0.8, alpha_end=0.4,
                           transition_fraction=0.5, per_epoch=False)
    for step in (0, 1, 3, 7, 13, 19, 20, 33):
        _close(sched, step, _cos(step / 4, 0.8, 0.4, 5.0))
    # increasing schedules work too
    up = S.cosine_alpha(total_epochs=10, alpha_start=0.1, alpha_end=0.9)
    _close(up, 7, 0.9)
    _close(up, 0, 0.1)


def test_linear():
    sched = S.linear_alpha(total_epochs=EPOCHS, steps_per_epoch=SPE)
    _close(sched, 0, 0.9)
    _close(sched, 350, 0.55)
    _close(sched, 140, 0.9 - 0.7 * 14 / 70)
    _close(sched, 700, 0.2)
    _close(sched, 990, 0.2)


def test_step_boundary():
    sched = S.step_alpha(total_epochs=EPOCHS, steps_per_epoch=SPE)
    _close(sched, 0, 0.9)
    _close(sched, 499, 0.9)  # last step of epoch 49
    _close(sched, 500, 0.3)  # first step of epoch 50
    _close(sched, 999, 0.3)
    odd = S.step_alpha(total_epochs=7)  # round(3.5) = 4, half up
    _close(odd, 3, 0.9)
    _close(odd, 4, 0.3)


def test_exponential():
    sched = S.exponential_alpha(steps_per_epoch=SPE)
    for step in (0, 9, 10, 105, 990):
        _close(sched, step, 0.9 * math.exp(-0.05 * (step // SPE)))
    floored = S.exponential_alpha(alpha_min=0.2)
    _close(floored, 100, 0.2)
    _close(floored, 10, 0.9 * math.exp(-0.5))


def test_two_stage_join():
    sched = S.two_stage_alpha(total_epochs=EPOCHS, steps_per_epoch=SPE, switch_fraction=0.3)
    _close(sched, 0, 1.0)
    _close(sched, 299, 1.0)
    _close(sched, 300, 0.0)
    _close(sched, 10_000, 0.0)


def test_static():
    _close(S.static_alpha(0.6), 12345, 0.6)


@pytest.mark.parametrize("name", S.ALPHA_SCHEDULES)
def test_jit_and_array_steps(name):
    sched = S.make_alpha_schedule(name, total_epochs=EPOCHS, steps_per_epoch=SPE)
    steps = jnp.arange(0, 1000, 37, dtype=jnp.int32)
    eager = np.array([float(sched(int(s))) for s in steps])
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(sched))(steps)), eager, rtol=1e-6)
    assert np.all((eager >= 0) & (eager <= 1))


def test_make_alpha_schedule_by_name():
    config = dict(total_epochs=EPOCHS, steps_per_epoch=SPE, alpha_start=0.8, alpha_end=0.1, alpha=0.5,
                  switch_fraction=0.5, rate=0.05)
    direct = S.cosine_alpha(total_epochs=EPOCHS, steps_per_epoch=SPE, alpha_start=0.8, alpha_end=0.1)
    by_name = S.make_alpha_schedule("cosine", **config)
    for step in (0, 123, 456, 789):
        assert float(by_name(step)) == float(direct(step))
    _close(S.make_alpha_schedule("static", **config), 7, 0.5)
    with pytest.raises(ValueError, match="name"):
        S.make_alpha_schedule("warmup", **config)
    with pytest.raises(ValueError, match="adaptive_alpha"):
        S.make_alpha_schedule("adaptive")
    with pytest.raises(ValueError, match="unknown"):
        S.make_alpha_schedule("cosine", total_epochs=10, alpha_begin=0.9)


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        S.cosine_alpha(total_epochs=10, steps_per_epoch=0)
    with pytest.raises(ValueError, match="total_epochs"):
        S.linear_alpha(total_epochs=0)
    with pytest.raises(ValueError, match="transition_fraction"):
        S.cosine_alpha(total_epochs=10, transition_fraction=0.0)
    with pytest.raises(ValueError, match="switch_fraction"):
        S.two_stage_alpha(total_epochs=10, switch_fraction=1.5)


# ---------------------------------------------------------------------------------------------------- adaptive


def _run(ratios, **kwargs):
    state = S.adaptive_alpha_init()
    alphas = []
    for r in ratios:
        state = S.adaptive_alpha_update(state, 1.0, r, **kwargs)
        alphas.append(float(state.alpha))
    return alphas, state


def test_adaptive_first_update_reads_the_rule():
    assert float(S.adaptive_alpha_init().alpha) == pytest.approx(0.9)
    for ratio, alpha in ((0.005, 0.9), (0.05, 0.7), (0.5, 0.3)):
        alphas, _ = _run([ratio])
        assert alphas == [pytest.approx(alpha)]
    # the ratio is MGIoU / L2
    state = S.adaptive_alpha_update(S.adaptive_alpha_init(), 10.0, 2.0)
    assert float(state.ratio_ema) == pytest.approx(0.2)
    assert float(state.alpha) == pytest.approx(0.3)


def test_adaptive_hysteresis_stops_oscillation():
    around_low = [0.009, 0.011] * 10
    with_band, _ = _run(around_low, ema=0.0, hysteresis=1.5)
    np.testing.assert_allclose(with_band, 0.9, rtol=1e-6)
    without, _ = _run(around_low, ema=0.0, hysteresis=1.0)
    np.testing.assert_allclose(without, [0.9, 0.7] * 10, rtol=1e-6)  # the plain rule oscillates
    around_high = [0.11, 0.09] * 10
    with_band, _ = _run(around_high, ema=0.0, hysteresis=1.5)
    np.testing.assert_allclose(with_band, 0.3, rtol=1e-6)


def test_adaptive_switches_past_the_band():
    # start L2-heavy, then: 0.012 (inside band, stay), 0.02 (> 0.015, up), 0.009 (> 0.0067, stay), 0.006 (down),
    # 0.14 (> 0.1*1.5 = 0.15? no: balanced), 0.2 (up to MGIoU-heavy), 0.08 (> 0.1/1.5, stay), 0.05 (down)
    ratios = [0.005, 0.012, 0.02, 0.009, 0.006, 0.14, 0.2, 0.08, 0.05]
    expected = [0.9, 0.9, 0.7, 0.7, 0.9, 0.7, 0.3, 0.3, 0.7]
    alphas, _ = _run(ratios, ema=0.0, hysteresis=1.5)
    np.testing.assert_allclose(alphas, expected, rtol=1e-6)


def test_adaptive_ema_smoothing():
    ratios = [0.005, 0.5, 0.005, 0.005, 0.2]
    beta = 0.8
    _, state = _run(ratios, ema=beta, hysteresis=1.0)
    ema = ratios[0]
    for r in ratios[1:]:
        ema = beta * ema + (1 - beta) * r
    assert float(state.ratio_ema) == pytest.approx(ema, rel=1e-6)
    assert int(state.count) == len(ratios)
    # one spike does not flip α all the way when smoothed: 0.005 then 0.4 -> EMA 0.084 (balanced, not 0.3)
    alphas, _ = _run([0.005, 0.4], ema=0.8, hysteresis=1.0)
    np.testing.assert_allclose(alphas, [0.9, 0.7], rtol=1e-6)
    unsmoothed, _ = _run([0.005, 0.4], ema=0.0, hysteresis=1.0)
    np.testing.assert_allclose(unsmoothed, [0.9, 0.3], rtol=1e-6)


def test_adaptive_non_finite_and_zero_norms():
    _, state = _run([0.05])
    same = S.adaptive_alpha_update(state, jnp.nan, 1.0)
    for a, b in zip(same, state):
        assert float(a) == float(b)
    same = S.adaptive_alpha_update(state, 1.0, jnp.inf)
    assert int(same.count) == int(state.count)
    zero = S.adaptive_alpha_update(S.adaptive_alpha_init(), 0.0, 0.0)
    assert float(zero.alpha) == pytest.approx(0.9) and np.isfinite(float(zero.ratio_ema))
    no_l2 = S.adaptive_alpha_update(S.adaptive_alpha_init(), 0.0, 1e-3)
    assert float(no_l2.alpha) == pytest.approx(0.3) and np.isfinite(float(no_l2.ratio_ema))


def test_adaptive_jit_scan_matches_loop():
    rng = np.random.default_rng(0)
    ratios = np.exp(rng.uniform(np.log(1e-3), np.log(1.0), 40)).astype(np.float32)

    @jax.jit
    def scan(ratios):
        def body(state, r):
            state = S.adaptive_alpha_update(state, jnp.float32(1.0), r)
            return state, state.alpha

        return jax.lax.scan(body, S.adaptive_alpha_init(), ratios)

    final, alphas = scan(ratios)
    loop, loop_state = _run(ratios)
    np.testing.assert_allclose(np.asarray(alphas), loop, rtol=1e-6)
    assert int(final.regime) == int(loop_state.regime)
    assert jax.tree_util.tree_structure(final) == jax.tree_util.tree_structure(S.adaptive_alpha_init())


def test_adaptive_errors():
    state = S.adaptive_alpha_init()
    with pytest.raises(ValueError, match="hysteresis"):
        S.adaptive_alpha_update(state, 1.0, 0.1, hysteresis=4.0)
    with pytest.raises(ValueError, match="hysteresis"):
        S.adaptive_alpha_update(state, 1.0, 0.1, hysteresis=0.5)
    with pytest.raises(ValueError, match="ema"):
        S.adaptive_alpha_update(state, 1.0, 0.1, ema=1.0)
    with pytest.raises(ValueError, match="thresholds"):
        S.adaptive_alpha_update(state, 1.0, 0.1, thresholds=(0.1, 0.01))


_UPDATE = jax.jit(lambda state, r: S.adaptive_alpha_update(state, jnp.float32(1.0), r, ema=0.5, hysteresis=1.5))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=25))
def test_adaptive_changes_only_past_the_band(ratios):
    """Property: every regime change after the first update happens with the smoothed ratio outside the band."""
    state = _UPDATE(S.adaptive_alpha_init(), np.float32(ratios[0]))
    for r in ratios[1:]:
        new = _UPDATE(state, np.float32(r))
        before, after, ema = int(state.regime), int(new.regime), float(new.ratio_ema)
        assert abs(after - before) <= 2 and float(new.alpha) in (pytest.approx(0.9), pytest.approx(0.7),
                                                                  pytest.approx(0.3))
        if after > before:  # moved towards MGIoU: past the upper edge of the band
            assert ema > (0.01 if after == 1 else 0.1) * 1.5 * (1 - 1e-6)
        if after < before:
            assert ema < (0.1 if after == 1 else 0.01) / 1.5 * (1 + 1e-6)
        state = new
