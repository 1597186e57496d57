"""Tests of jaxdet.losses.hybrid: the three normalisation modes, grad-norm exactness, metrics, finiteness."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdet.losses.hybrid import HybridState, hybrid_components, hybrid_polygon_loss, hybrid_state_init
from jaxdet.losses.vertex import keypoint_loss
from jaxdet.measurements import format_figures, full_image_polygon, gradient_figures
from jaxdet.parity.cases_hybrid import random_convex_polygons
from jaxdet.polygons import mgiou_loss

os.environ.setdefault("YOLO_OFFLINE", "1")

K = 8
N = 6
BETA_LOSS, BETA_NORM = 0.9, 0.8  # loss EMA and gradient-norm EMA decays of the variants below

_VARIANTS = {
    "none": dict(normalization="none"),
    "none_nometrics": dict(normalization="none", gradient_metrics=False),
    "loss_ema": dict(normalization="loss_ema", loss_ema_decay=BETA_LOSS),
    "loss_ema_norescale": dict(normalization="loss_ema", loss_ema_decay=BETA_LOSS, loss_ema_rescale=False),
    "grad_norm": dict(normalization="grad_norm"),
    "grad_norm_ema": dict(normalization="grad_norm", norm_ema=BETA_NORM),
}


@jax.jit
def _everything(pred, target, weight, state, alpha):
    """{variant: (HybridLoss, d total / d pred)} for every variant, plus the chain-rule check, in one jit.

    One compilation serves all tests (eager dispatch of the MGIoU ops, and one jit per variant, are slow to
    compile on a shared CPU).
    """
    results = {}
    for name, kwargs in _VARIANTS.items():
        def total(p, kwargs=kwargs):
            out = hybrid_polygon_loss(p, target, alpha=alpha, weight=weight, state=state, **kwargs)
            return out.total, out

        (_, out), grad = jax.value_and_grad(total, has_aux=True)(pred)
        results[name] = (out, grad)
    # chain rule through pred: d/dθ total(2θ) at θ = pred / 2 is twice the gradient at pred
    chained = jax.grad(lambda th: hybrid_polygon_loss(2.0 * th, target, alpha=alpha, weight=weight, state=state,
                                                      normalization="grad_norm").total)(pred / 2.0)
    results["grad_norm_chain"] = (None, chained)
    return results


def _run(pred, target, *, weight=None, state=None, alpha=0.5):
    weight = np.ones(pred.shape[0]) if weight is None else weight
    state = hybrid_state_init(jnp.float64) if state is None else state
    return _everything(pred, target, weight, state, jnp.asarray(alpha, jnp.float64))


def _inputs(seed=0, n=N):
    rng = np.random.default_rng(seed)
    target = random_convex_polygons(rng, n)
    pred = random_convex_polygons(rng, n)
    # half the predictions overlap their targets: rotated, scaled, shifted copies (generic: no parallel edges,
    # which would put exact ties in MGIoU's max/min projections, where the gradient is not unique)
    half = n // 2
    center = target[:half].mean(axis=1, keepdims=True)
    angle = rng.uniform(0.1, 0.3, (half, 1)) * rng.choice([-1, 1], (half, 1))
    rel = (target[:half] - center) * rng.uniform(0.8, 1.2, (half, 1, 1))
    c, s = np.cos(angle), np.sin(angle)
    pred[:half] = center + np.stack([rel[..., 0] * c - rel[..., 1] * s, rel[..., 0] * s + rel[..., 1] * c], -1)
    pred[:half] += rng.normal(0, 0.02, (half, 1, 2))
    return pred, target


def _independent_terms_fn(pred, target, weight):
    """The two terms written directly from keypoint_loss and mgiou_loss (no hybrid code)."""
    wh = jnp.max(target, axis=-2) - jnp.min(target, axis=-2)
    area = wh[..., 0] * wh[..., 1]
    l2 = keypoint_loss(pred, target, area, variant="seed")
    mg = mgiou_loss(pred, target)
    return jnp.sum(weight * l2) / jnp.sum(weight), jnp.sum(weight * mg) / jnp.sum(weight)


@jax.jit
def _independent(pred, target, weight):
    """Values and gradients of the independent terms, each gradient from its own jax.grad (not term_gradients)."""
    values = _independent_terms_fn(pred, target, weight)
    g_l2 = jax.grad(lambda p: _independent_terms_fn(p, target, weight)[0])(pred)
    g_mg = jax.grad(lambda p: _independent_terms_fn(p, target, weight)[1])(pred)
    return values, (g_l2, g_mg)


def _terms_and_grads(pred, target, weight=None):
    weight = np.ones(pred.shape[0]) if weight is None else weight
    (l2, mg), (g_l2, g_mg) = _independent(pred, target, weight)
    return float(l2), float(mg), np.asarray(g_l2), np.asarray(g_mg)


def _unit(g):
    return g / np.linalg.norm(g)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, 1.0])
def test_grad_norm_gradient_is_exact(x64, alpha):
    pred, target = _inputs(0)
    _, _, g_l2, g_mg = _terms_and_grads(pred, target)
    expected = alpha * _unit(g_l2) + (1 - alpha) * _unit(g_mg)
    got = np.asarray(_run(pred, target, alpha=alpha)["grad_norm"][1])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    if alpha in (0.0, 1.0):
        assert np.linalg.norm(got) == pytest.approx(1.0, rel=1e-12)


def test_grad_norm_exact_with_weights_and_chain_rule(x64):
    pred, target = _inputs(1)
    weight = np.array([1.0, 0.5, 0.0, 2.0, 0.3, 0.0])
    _, _, g_l2, g_mg = _terms_and_grads(pred, target, weight)
    alpha = 0.4
    expected = alpha * _unit(g_l2) + (1 - alpha) * _unit(g_mg)
    results = _run(pred, target, weight=weight, alpha=alpha)
    got = np.asarray(results["grad_norm"][1])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert np.all(got[[2, 5]] == 0.0)  # zero-weight instances get no gradient
    np.testing.assert_allclose(np.asarray(results["grad_norm_chain"][1]), 2 * expected, rtol=1e-12, atol=1e-15)


def test_grad_norm_with_ema_of_norms(x64):
    pred, target = _inputs(2)
    _, _, g_l2, g_mg = _terms_and_grads(pred, target)
    n_l2, n_mg = np.linalg.norm(g_l2), np.linalg.norm(g_mg)
    alpha = 0.6
    state = HybridState(jnp.asarray(0.0), jnp.asarray(0.0), jnp.asarray(0.5), jnp.asarray(0.02),
                        jnp.asarray(3, jnp.int32))
    ema_l2, ema_mg = BETA_NORM * 0.5 + (1 - BETA_NORM) * n_l2, BETA_NORM * 0.02 + (1 - BETA_NORM) * n_mg
    out, got = _run(pred, target, state=state, alpha=alpha)["grad_norm_ema"]
    expected = alpha * g_l2 / ema_l2 + (1 - alpha) * g_mg / ema_mg
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-15)
    assert float(out.state.l2_norm_ema) == pytest.approx(ema_l2, rel=1e-12)
    assert float(out.state.mgiou_norm_ema) == pytest.approx(ema_mg, rel=1e-12)
    assert int(out.state.count) == 4
    # first call: the EMA starts at the current norm, i.e. unit-norm gradients
    _, first = _run(pred, target, alpha=alpha)["grad_norm_ema"]
    np.testing.assert_allclose(np.asarray(first), alpha * g_l2 / n_l2 + (1 - alpha) * g_mg / n_mg, rtol=1e-12)


def test_modes_values_and_metrics(x64):
    pred, target = _inputs(3)
    alpha = 0.35
    l2, mg, g_l2, g_mg = _terms_and_grads(pred, target)
    cosine = float(np.vdot(g_l2, g_mg) / (np.linalg.norm(g_l2) * np.linalg.norm(g_mg)))
    results = _run(pred, target, alpha=alpha)
    for mode in ("none", "loss_ema", "grad_norm"):
        out, grad = results[mode]
        m = out.metrics
        assert float(m["l2"]) == pytest.approx(l2, rel=1e-12)
        assert float(m["mgiou"]) == pytest.approx(mg, rel=1e-12)
        assert float(m["alpha"]) == pytest.approx(alpha)
        assert float(m["l2_grad_norm"]) == pytest.approx(np.linalg.norm(g_l2), rel=1e-12)
        assert float(m["mgiou_grad_norm"]) == pytest.approx(np.linalg.norm(g_mg), rel=1e-12)
        assert float(m["grad_cosine"]) == pytest.approx(cosine, rel=1e-10)
        if mode in ("none", "grad_norm"):
            assert float(out.total) == pytest.approx(alpha * l2 + (1 - alpha) * mg, rel=1e-12)
        else:  # first call: each EMA is the loss itself
            expected = (alpha * l2 / (l2 + 1e-6) + (1 - alpha) * mg / (mg + 1e-6)) * l2
            assert float(out.total) == pytest.approx(expected, rel=1e-12)
        if mode == "none":  # the plain gradient of the weighted sum
            np.testing.assert_allclose(np.asarray(grad), alpha * g_l2 + (1 - alpha) * g_mg, rtol=1e-12, atol=1e-15)
    skipped = results["none_nometrics"][0].metrics
    assert np.isnan(float(skipped["grad_cosine"])) and float(skipped["l2"]) == pytest.approx(l2, rel=1e-12)


def test_loss_ema_state_carries(x64):
    pred, target = _inputs(4)
    pred2, _ = _inputs(5)
    alpha, beta = 0.7, BETA_LOSS
    first, _ = _run(pred, target, alpha=alpha)["loss_ema"]
    l2a, mga, _, _ = _terms_and_grads(pred, target)
    assert float(first.state.l2_loss_ema) == pytest.approx(l2a, rel=1e-12)
    assert int(first.state.count) == 1
    results = _run(pred2, target, alpha=alpha, state=first.state)
    second, got = results["loss_ema"]
    l2b, mgb, g_l2, g_mg = _terms_and_grads(pred2, target)
    e_l2, e_mg = beta * l2a + (1 - beta) * l2b, beta * mga + (1 - beta) * mgb
    assert float(second.state.l2_loss_ema) == pytest.approx(e_l2, rel=1e-12)
    assert float(second.state.mgiou_loss_ema) == pytest.approx(e_mg, rel=1e-12)
    expected = (alpha * l2b / (e_l2 + 1e-6) + (1 - alpha) * mgb / (e_mg + 1e-6)) * e_l2
    assert float(second.total) == pytest.approx(expected, rel=1e-12)
    # the EMAs are constants: the gradient is the α-weighted, rescaled term gradients
    want = (alpha * g_l2 / (e_l2 + 1e-6) + (1 - alpha) * g_mg / (e_mg + 1e-6)) * e_l2
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-15)
    no_rescale, _ = results["loss_ema_norescale"]
    assert float(no_rescale.total) == pytest.approx(expected / e_l2, rel=1e-12)


def test_zero_gradient_term_stays_zero(x64):
    """pred == target: the L2 gradient is exactly 0; grad_norm must not divide by it."""
    _, target = _inputs(6)
    out, got = _run(target, target)["grad_norm"]
    assert np.isfinite(np.asarray(got)).all()
    assert float(out.metrics["l2_grad_norm"]) == 0.0
    assert float(out.metrics["l2_scale"]) == 0.0
    _, _, _, g_mg = _terms_and_grads(target, target)
    n = np.linalg.norm(g_mg)
    np.testing.assert_allclose(np.asarray(got), 0.5 * g_mg / n if n > 1e-12 else 0 * g_mg, rtol=1e-12, atol=1e-15)


def test_all_weights_zero(x64):
    pred, target = _inputs(7)
    results = _run(pred, target, weight=np.zeros(pred.shape[0]))
    for mode in _VARIANTS:
        out, grad = results[mode]
        assert float(out.total) == 0.0
        assert np.all(np.asarray(grad) == 0.0)
        assert all(np.isfinite(float(v)) for k, v in out.metrics.items() if mode != "none_nometrics")


def test_state_is_a_pytree_and_carries(x64):
    pred, target = _inputs(8)
    state = hybrid_state_init(jnp.float64)
    for _ in range(3):
        out, grad = _run(pred, target, state=state)["grad_norm_ema"]
        state = out.state
    assert int(state.count) == 3 and np.isfinite(float(out.total)) and np.isfinite(np.asarray(grad)).all()
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(hybrid_state_init())


def _degenerate_polygon(draw, k):
    kind = draw(st.sampled_from(["point", "repeated", "collinear", "random", "tiny"]))
    coords = st.floats(0.0, 1.0, allow_nan=False, width=32)
    if kind == "point":
        xy = [draw(coords), draw(coords)]
        return np.tile(np.array(xy, np.float32), (k, 1))
    if kind == "collinear":
        t = np.array(draw(st.lists(coords, min_size=k, max_size=k)), np.float32)
        a, b = np.array([draw(coords), draw(coords)], np.float32), np.array([draw(coords), draw(coords)], np.float32)
        return a + t[:, None] * (b - a)
    pts = np.array(draw(st.lists(coords, min_size=2 * k, max_size=2 * k)), np.float32).reshape(k, 2)
    if kind == "repeated":
        pts[1::2] = pts[::2][: len(pts[1::2])]
    if kind == "tiny":
        pts = pts[:1] + 1e-7 * (pts - pts[:1])
    return pts


@jax.jit
def _all_modes(pred, target, weight, pred_valid, target_valid):
    results = []
    for mode in ("none", "loss_ema", "grad_norm"):
        def fn(p, mode=mode):
            out = hybrid_polygon_loss(p, target, alpha=0.5, normalization=mode, weight=weight,
                                      pred_valid=pred_valid, target_valid=target_valid)
            return out.total, out.metrics

        (total, metrics), grad = jax.value_and_grad(fn, has_aux=True)(pred)
        results.append((total, metrics, grad))
    return results


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_finite_on_degenerate_polygons(data):
    n = 2
    pred = np.stack([_degenerate_polygon(data.draw, K) for _ in range(n)])
    target = np.stack([_degenerate_polygon(data.draw, K) for _ in range(n)])
    weight = np.array([1.0, data.draw(st.sampled_from([0.0, 1.0]))], np.float32)
    pred_valid = np.array(data.draw(st.lists(st.booleans(), min_size=n * K, max_size=n * K))).reshape(n, K)
    target_valid = np.array(data.draw(st.lists(st.booleans(), min_size=n * K, max_size=n * K))).reshape(n, K)
    for total, metrics, grad in _all_modes(pred, target, weight, pred_valid, target_valid):
        assert np.isfinite(float(total))
        assert np.isfinite(np.asarray(grad)).all()
        assert all(np.isfinite(float(v)) for v in metrics.values())


def test_errors():
    p = np.zeros((2, 4, 2), np.float32)
    with pytest.raises(ValueError, match="normalization"):
        hybrid_polygon_loss(p, p, alpha=0.5, normalization="ema")
    with pytest.raises(ValueError, match="alpha"):
        hybrid_polygon_loss(p, p, alpha=1.5)
    with pytest.raises(ValueError, match="target"):
        hybrid_polygon_loss(p, np.zeros((2, 5, 2)), alpha=0.5)
    with pytest.raises(ValueError, match="pred"):
        hybrid_polygon_loss(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)), alpha=0.5)
    with pytest.raises(ValueError, match="weight"):
        hybrid_polygon_loss(p, p, alpha=0.5, weight=np.ones(3))
    with pytest.raises(ValueError, match="target_valid"):
        hybrid_polygon_loss(p, p, alpha=0.5, target_valid=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="norm_ema"):
        hybrid_polygon_loss(p, p, alpha=0.5, normalization="grad_norm", norm_ema=1.0)
    with pytest.raises(ValueError, match="loss_ema_decay"):
        hybrid_polygon_loss(p, p, alpha=0.5, loss_ema_decay=-0.1)


def test_components_match_independent_terms(x64):
    pred, target = _inputs(9)
    terms = jax.jit(hybrid_components)(pred, target)
    l2, mg, _, _ = _terms_and_grads(pred, target)
    assert float(terms["l2"]) == pytest.approx(l2, rel=1e-13)
    assert float(terms["mgiou"]) == pytest.approx(mg, rel=1e-13)


def test_seed003_measurement_runs():

    square = full_image_polygon(K)
    assert square.shape == (K, 2) and square.min() == 0.0 and square.max() == 1.0
    figures = gradient_figures(num_images=2)
    plateau = figures["full-image box"]
    assert np.isfinite(plateau["l2_grad_norm"]).all() and np.isfinite(plateau["mgiou_grad_norm"]).all()
    assert np.all(np.abs(plateau["grad_cosine"]) <= 1 + 1e-12)
    np.testing.assert_allclose(plateau["ratio"], plateau["mgiou_grad_norm"] / plateau["l2_grad_norm"])
    assert "seed 003 claim" in format_figures(figures)


@pytest.mark.parametrize("normalization", ["none", "loss_ema", "grad_norm"])
def test_alpha_is_a_constant_in_every_mode(normalization):
    """α weights the terms; the loss is never differentiated through it (the same in all three modes)."""
    rng = np.random.default_rng(5)
    target = jnp.asarray(rng.uniform(0.2, 0.8, (3, 4, 2)), jnp.float32)
    pred = target + jnp.asarray(rng.normal(0, 0.05, (3, 4, 2)), jnp.float32)

    def total(alpha):
        return hybrid_polygon_loss(pred, target, alpha=alpha, normalization=normalization).total

    assert float(jax.grad(total)(jnp.float32(0.4))) == 0.0
    assert float(total(jnp.float32(0.1))) != float(total(jnp.float32(0.9)))  # α does weight the terms
