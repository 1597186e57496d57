"""Tests of jaxdet.losses.focal: closed forms, the VFL/QFL gradient paths, degenerate inputs, argument errors.

Parity with torchvision / the torch references is in jaxdet.parity.cases_dense (run by tests/parity/test_cases.py).
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdet import boxes
from jaxdet.losses import focal


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_bce(x, t):
    """-t log σ(x) - (1-t) log(1-σ(x)), with -log σ(x) = log(1 + e^{-x}) evaluated accurately."""
    return t * np.logaddexp(0.0, -x) + (1 - t) * np.logaddexp(0.0, x)


# ------------------------------------------------------------------------------------------------ RetinaNet


@pytest.mark.parametrize("prior", [0.01, 0.1, 0.5, 0.9])
def test_prior_bias_gives_prior_probability(prior):
    bias = focal.retinanet_prior_bias(prior)
    assert isinstance(bias, float)
    assert 1.0 / (1.0 + math.exp(-bias)) == pytest.approx(prior, rel=1e-12)


def test_prior_bias_default_is_retinanet():
    assert focal.retinanet_prior_bias() == pytest.approx(-math.log(99.0), rel=1e-12)


def test_bias_init_in_flax_conv():

    conv = nnx.Conv(4, 6, kernel_size=(3, 3), bias_init=focal.retinanet_bias_init(0.01), rngs=nnx.Rngs(0))
    bias = np.asarray(conv.bias[...])
    assert bias.shape == (6,)
    np.testing.assert_allclose(bias, np.full(6, -math.log(99.0), np.float32), rtol=1e-6)
    out = conv(jnp.zeros((1, 5, 5, 4)))
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(out)), 0.01, rtol=1e-5)


@pytest.mark.parametrize("prior", [0.0, 1.0, -0.1, 2.0])
def test_prior_bias_rejects_bad_prior(prior):
    with pytest.raises(ValueError, match="prior_prob"):
        focal.retinanet_prior_bias(prior)


def test_bce_gradient_is_sigmoid_minus_target_everywhere():
    """Including x = 0 exactly (where a max/abs formulation would pick a subgradient) and the far tails.

    The oracle writes σ(x) − t as (1 − t)σ(x) − tσ(−x) to avoid cancelling 1 − σ(x) in the tails."""
    x = np.array([0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 30.0, -30.0, 100.0, -100.0])
    for t in (0.0, 0.3, 1.0):
        with jax.enable_x64(True):
            g = jax.grad(lambda v: focal.binary_cross_entropy_with_logits(v, jnp.full(10, t)).sum())(jnp.asarray(x))
            v = np.asarray(focal.binary_cross_entropy_with_logits(jnp.asarray(x), jnp.full(10, t)))
        expected = (1 - t) * _np_sigmoid(x) - t * _np_sigmoid(-x)
        np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(v, _np_bce(x, t), rtol=1e-14)


def test_sigmoid_focal_gamma0_no_alpha_is_bce():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (50, 7))
    t = (rng.random((50, 7)) < 0.4).astype(np.float64)
    with jax.enable_x64(True):
        got = np.asarray(focal.sigmoid_focal_loss(jnp.asarray(x), jnp.asarray(t), alpha=-1.0, gamma=0.0))
    np.testing.assert_allclose(got, _np_bce(x, t), rtol=1e-12)


def test_sigmoid_focal_closed_form():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, (50, 7))
    t = (rng.random((50, 7)) < 0.4).astype(np.float64)
    p = _np_sigmoid(x)
    p_t = np.where(t == 1, p, 1 - p)
    alpha_t = np.where(t == 1, 0.25, 0.75)
    expected = -alpha_t * (1 - p_t) ** 2 * np.log(p_t)
    with jax.enable_x64(True):
        got = np.asarray(focal.sigmoid_focal_loss(jnp.asarray(x), jnp.asarray(t)))
        mean = float(focal.sigmoid_focal_loss(jnp.asarray(x), jnp.asarray(t), reduction="mean"))
        total = float(focal.sigmoid_focal_loss(jnp.asarray(x), jnp.asarray(t), reduction="sum"))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert mean == pytest.approx(expected.mean(), rel=1e-12)
    assert total == pytest.approx(expected.sum(), rel=1e-12)


def test_softmax_focal_closed_form_per_class_alpha():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3, (40, 5))
    y = rng.integers(0, 5, 40)
    alpha = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p_y = p[np.arange(40), y]
    expected = -alpha[y] * (1 - p_y) ** 1.5 * np.log(p_y)
    with jax.enable_x64(True):
        got = np.asarray(focal.softmax_focal_loss(jnp.asarray(z), jnp.asarray(y), alpha=jnp.asarray(alpha),
                                                  gamma=1.5))
        ce = np.asarray(focal.softmax_focal_loss(jnp.asarray(z), jnp.asarray(y), gamma=0.0))
        scaled = np.asarray(focal.softmax_focal_loss(jnp.asarray(z), jnp.asarray(y), alpha=0.5, gamma=1.5))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(ce, -np.log(p_y), rtol=1e-10)
    np.testing.assert_allclose(scaled, -0.5 * (1 - p_y) ** 1.5 * np.log(p_y), rtol=1e-10)


def test_softmax_focal_two_classes_matches_sigmoid_focal():
    """With logits [0, x] and label 1, p_y = σ(x): the softmax and sigmoid focal losses coincide (α off)."""
    x = np.linspace(-8, 8, 33)
    with jax.enable_x64(True):
        logits = jnp.stack([jnp.zeros_like(x), jnp.asarray(x)], axis=-1)
        soft = focal.softmax_focal_loss(logits, jnp.ones(33, jnp.int32), gamma=2.0)
        sig = focal.sigmoid_focal_loss(jnp.asarray(x), jnp.ones(33), alpha=-1.0, gamma=2.0)
        g_soft = jax.jit(jax.grad(lambda v: focal.softmax_focal_loss(
            jnp.stack([jnp.zeros_like(v), v], -1), jnp.ones(33, jnp.int32)).sum()))(jnp.asarray(x))
        g_sig = jax.jit(jax.grad(lambda v: focal.sigmoid_focal_loss(v, jnp.ones(33), alpha=-1.0).sum()))(
            jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(soft), np.asarray(sig), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g_soft), np.asarray(g_sig), rtol=1e-10, atol=1e-300)


# ------------------------------------------------------------------------------------------------ VFL / QFL


def _vfl_closed_form(x, t, alpha=0.75, gamma=2.0):
    """Value, ∂/∂x and ∂/∂t of VFL (t treated as a variable), written out by hand."""
    s = _np_sigmoid(x)
    bce = _np_bce(x, t)
    pos = t > 0
    d = s - t
    w = np.where(pos, t, alpha * np.abs(d) ** gamma)
    value = w * bce
    dw_dx = np.where(pos, 0.0, alpha * gamma * np.abs(d) ** (gamma - 1) * np.sign(d) * s * (1 - s))
    dw_dt = np.where(pos, 1.0, -alpha * gamma * np.abs(d) ** (gamma - 1) * np.sign(d))
    dx = dw_dx * bce + w * (s - t)
    dt = dw_dt * bce + w * (-x)  # ∂BCE/∂t = -x
    return value, dx, dt


def _qfl_closed_form(x, t, beta=2.0):
    s = _np_sigmoid(x)
    bce = _np_bce(x, t)
    d = t - s
    m = np.abs(d) ** beta
    dm_dd = beta * np.abs(d) ** (beta - 1) * np.sign(d)
    value = m * bce
    dx = -dm_dd * s * (1 - s) * bce + m * (s - t)
    dt = dm_dd * bce + m * (-x)
    return value, dx, dt


def _iou_score_inputs(seed, n=200):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, n)
    t = np.where(rng.random(n) < 0.5, rng.uniform(0.05, 1.0, n), 0.0)
    return x, t


@pytest.mark.parametrize("name", ["varifocal_loss", "quality_focal_loss"])
def test_closed_form_values_and_gradients(name):
    x, t = _iou_score_inputs(3)
    loss_fn = getattr(focal, name)
    closed = _vfl_closed_form if name == "varifocal_loss" else _qfl_closed_form
    value, dx, dt = closed(x, t)
    with jax.enable_x64(True):
        xj, tj = jnp.asarray(x), jnp.asarray(t)
        got = np.asarray(loss_fn(xj, tj))
        gx_stop, gt_stop = jax.jit(jax.grad(lambda a, b: loss_fn(a, b).sum(), argnums=(0, 1)))(xj, tj)
        gx_thr, gt_thr = jax.jit(jax.grad(lambda a, b: loss_fn(a, b, iou_target="through").sum(),
                                          argnums=(0, 1)))(xj, tj)
    np.testing.assert_allclose(got, value, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(gx_stop), dx, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gx_thr), dx, rtol=1e-9, atol=1e-14)
    # Case 2: no gradient at all reaches the IoU target; Case 1: the closed-form ∂L/∂t.
    assert np.all(np.asarray(gt_stop) == 0.0)
    np.testing.assert_allclose(np.asarray(gt_thr), dt, rtol=1e-9, atol=1e-14)
    assert np.any(np.abs(dt) > 1e-3)


@pytest.mark.parametrize("name", ["varifocal_loss", "quality_focal_loss"])
def test_through_differs_from_stop_by_exactly_the_iou_path(name):
    """Targets computed from predicted boxes: the box gradient is 0 with "stop" and ∂L/∂t · ∂IoU/∂box with
    "through"; the logit gradient is the same in both."""
    rng = np.random.default_rng(4)
    n = 64
    gt_xy = rng.uniform(0, 50, (n, 2))
    gt = np.concatenate([gt_xy, gt_xy + rng.uniform(5, 30, (n, 2))], -1)
    pred = gt + rng.normal(0, 3, (n, 4))
    pred = np.concatenate([np.minimum(pred[:, :2], pred[:, 2:] - 1), pred[:, 2:]], -1)
    x = rng.normal(0, 2, n)
    positive = rng.random(n) < 0.6
    loss_fn = getattr(focal, name)
    closed = _vfl_closed_form if name == "varifocal_loss" else _qfl_closed_form
    with jax.enable_x64(True):
        def total(logits, box, path):
            iou = jnp.where(jnp.asarray(positive), boxes.box_iou(box, jnp.asarray(gt)), 0.0)
            return loss_fn(logits, iou, iou_target=path).sum()

        xj, bj = jnp.asarray(x), jnp.asarray(pred)
        grad = jax.jit(jax.grad(total, argnums=(0, 1)), static_argnums=2)
        gx_s, gb_s = grad(xj, bj, "stop")
        gx_t, gb_t = grad(xj, bj, "through")
        iou = np.where(positive, np.asarray(boxes.box_iou(bj, jnp.asarray(gt))), 0.0)
        # ∂IoU/∂box of each pair (rows are independent), masked like the target.
        diou = np.asarray(jax.grad(lambda b: boxes.box_iou(b, jnp.asarray(gt)).sum())(bj)) * positive[:, None]
    _, _, dt = closed(x, iou)
    np.testing.assert_allclose(np.asarray(gx_s), np.asarray(gx_t), rtol=1e-12, atol=1e-300)
    assert np.all(np.asarray(gb_s) == 0.0)
    np.testing.assert_allclose(np.asarray(gb_t), dt[:, None] * diou, rtol=1e-9, atol=1e-14)
    assert np.abs(np.asarray(gb_t)).max() > 1e-3


def test_vfl_iou_weighted_false_weights_positives_by_one():
    x, t = _iou_score_inputs(5)
    with jax.enable_x64(True):
        got = np.asarray(focal.varifocal_loss(jnp.asarray(x), jnp.asarray(t), iou_weighted=False))
    s = _np_sigmoid(x)
    expected = np.where(t > 0, 1.0, 0.75 * s**2) * _np_bce(x, t)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


# ------------------------------------------------------------------------------------------------ degenerate


_extreme = st.sampled_from([-100.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 100.0])
_logit = st.one_of(_extreme, st.floats(-100, 100, allow_nan=False, width=32))
_target01 = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1, width=32))

_LOSSES = {
    "sigmoid_focal": lambda x, t, path: focal.sigmoid_focal_loss(x, t),
    "sigmoid_focal_g0.5": lambda x, t, path: focal.sigmoid_focal_loss(x, t, gamma=0.5),
    "sigmoid_focal_noalpha_g1": lambda x, t, path: focal.sigmoid_focal_loss(x, t, alpha=-1, gamma=1.0),
    "vfl": lambda x, t, path: focal.varifocal_loss(x, t, iou_target=path),
    "vfl_g0.5": lambda x, t, path: focal.varifocal_loss(x, t, gamma=0.5, iou_target=path),
    "qfl": lambda x, t, path: focal.quality_focal_loss(x, t, iou_target=path),
    "qfl_b0.5": lambda x, t, path: focal.quality_focal_loss(x, t, beta=0.5, iou_target=path),
}


@jax.jit
def _all_values_and_grads(x, t):
    out = {}
    for name, fn in _LOSSES.items():
        for path in ("stop", "through"):
            out[name, path] = jax.value_and_grad(lambda a, b: fn(a, b, path).sum(), argnums=(0, 1))(x, t)
    return out


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, (16,), elements=_logit), hnp.arrays(np.float32, (16,), elements=_target01))
def test_finite_on_extreme_logits(x, t):
    for key, (value, grads) in _all_values_and_grads(jnp.asarray(x), jnp.asarray(t)).items():
        assert np.isfinite(float(value)), key
        for g in grads:
            assert np.all(np.isfinite(np.asarray(g))), key


@jax.jit
def _softmax_value_and_grad(z, y):
    return {g: jax.value_and_grad(lambda a: focal.softmax_focal_loss(a, y, gamma=g).sum())(z)
            for g in (0.0, 0.5, 2.0)}


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, (8, 5), elements=_logit), hnp.arrays(np.int32, (8,), elements=st.integers(0, 4)))
def test_softmax_focal_finite_on_extreme_logits(z, y):
    for gamma, (value, grad) in _softmax_value_and_grad(jnp.asarray(z), jnp.asarray(y)).items():
        assert np.isfinite(float(value)), gamma
        assert np.all(np.isfinite(np.asarray(grad))), gamma


def test_extreme_logits_values_are_right():
    """At ±100 in float32 the losses take their limits instead of inf/NaN."""
    x = jnp.array([100.0, -100.0, 100.0, -100.0], jnp.float32)
    t = jnp.array([1.0, 0.0, 0.0, 1.0], jnp.float32)
    got = np.asarray(focal.sigmoid_focal_loss(x, t, alpha=-1.0))
    np.testing.assert_allclose(got, [0.0, 0.0, 100.0, 100.0], atol=1e-6, rtol=1e-6)


def test_all_zero_targets():
    x = jnp.linspace(-100.0, 100.0, 41)
    t = jnp.zeros(41)
    for path in ("stop", "through"):
        vfl, gv = jax.jit(jax.value_and_grad(lambda a: focal.varifocal_loss(a, t, iou_target=path).sum()))(x)
        qfl, gq = jax.jit(jax.value_and_grad(lambda a: focal.quality_focal_loss(a, t, iou_target=path).sum()))(x)
        for v, g in ((vfl, gv), (qfl, gq)):
            assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
    # With no positive, VFL is α σ^γ BCE(x, 0) and QFL is σ^β BCE(x, 0).
    xs = np.linspace(-5, 5, 11)
    with jax.enable_x64(True):
        v = np.asarray(focal.varifocal_loss(jnp.asarray(xs), jnp.zeros(11)))
        q = np.asarray(focal.quality_focal_loss(jnp.asarray(xs), jnp.zeros(11)))
    s = _np_sigmoid(xs)
    np.testing.assert_allclose(v, 0.75 * s**2 * _np_bce(xs, 0.0), rtol=1e-10)
    np.testing.assert_allclose(q, s**2 * _np_bce(xs, 0.0), rtol=1e-10)


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "call, argname",
    [
        (lambda: focal.sigmoid_focal_loss(jnp.zeros(3), jnp.zeros(3), reduction="avg"), "reduction"),
        (lambda: focal.sigmoid_focal_loss(jnp.zeros(3), jnp.zeros(3), alpha=1.5), "alpha"),
        (lambda: focal.sigmoid_focal_loss(jnp.zeros(3), jnp.zeros(3), gamma=-1.0), "gamma"),
        (lambda: focal.sigmoid_focal_loss(jnp.zeros(3), jnp.zeros(4)), "targets"),
        (lambda: focal.sigmoid_focal_loss(jnp.zeros(3, jnp.int32), jnp.zeros(3)), "inputs"),
        (lambda: focal.softmax_focal_loss(jnp.zeros((3, 4)), jnp.zeros(3)), "labels"),
        (lambda: focal.softmax_focal_loss(jnp.zeros((3, 4)), jnp.zeros(2, jnp.int32)), "labels"),
        (lambda: focal.softmax_focal_loss(jnp.zeros((3, 4)), jnp.zeros(3, jnp.int32), alpha=jnp.ones(3)),
         "alpha"),
        (lambda: focal.softmax_focal_loss(jnp.zeros((3, 4)), jnp.zeros(3, jnp.int32), reduction="x"),
         "reduction"),
        (lambda: focal.varifocal_loss(jnp.zeros(3), jnp.zeros(3), iou_target="detach"), "iou_target"),
        (lambda: focal.varifocal_loss(jnp.zeros(3), jnp.zeros(2)), "targets"),
        (lambda: focal.quality_focal_loss(jnp.zeros(3), jnp.zeros(3), iou_target=True), "iou_target"),
        (lambda: focal.quality_focal_loss(jnp.zeros(3), jnp.zeros(3), beta=-2.0), "beta"),
        (lambda: focal.quality_focal_loss(jnp.zeros(3), jnp.zeros(3), reduction=None), "reduction"),
    ],
)
def test_value_errors_name_the_argument(call, argname):
    with pytest.raises(ValueError, match=argname):
        call()
