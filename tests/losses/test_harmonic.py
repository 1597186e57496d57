"""Tests of jaxdet.losses.harmonic: the seed-001 equations against jax.grad, HIoU monotonicity, degenerate inputs.

The closed forms below are written out independently in numpy (softmax, cross-entropy, smooth-L1 derivative,
the HIoU derivative); jax.grad of the library's loss must match them at many random points. Equation numbers
follow the issue (see the module docstring of jaxdet.losses.harmonic for the derivations).
"""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdet import boxes
from jaxdet.losses import harmonic


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_ce(z, y):
    m = z.max(-1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(-1))
    return lse - z[np.arange(len(y)), y]


def _np_smooth_l1(d):
    a = np.abs(d)
    return np.where(a < 1, 0.5 * d * d, a - 0.5).sum(-1)


def _np_smooth_l1_grad(d):
    return np.clip(d, -1.0, 1.0)


def _inputs(seed, n=300, c=9):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.5, (n, c))
    y = rng.integers(0, c, n)
    pred = rng.normal(0, 1.5, (n, 4))
    target = rng.normal(0, 1.5, (n, 4))
    return z, y, pred, target


def _grads(z, y, pred, target, factor_grad, positive=None, regression="smooth_l1"):
    with jax.enable_x64(True):
        fn = jax.jit(jax.grad(
            lambda a, b: harmonic.harmonic_loss(a, jnp.asarray(y), b, jnp.asarray(target), regression=regression,
                                                factor_grad=factor_grad, positive=positive).total.sum(),
            argnums=(0, 1)))
        gz, gb = fn(jnp.asarray(z), jnp.asarray(pred))
    return np.asarray(gz), np.asarray(gb)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_match_definition(seed):
    z, y, pred, target = _inputs(seed)
    ce = _np_ce(z, y)
    reg = _np_smooth_l1(pred - target)
    expected = (1 + np.exp(-reg)) * ce + (1 + np.exp(-ce)) * reg
    with jax.enable_x64(True):
        out = harmonic.harmonic_loss(jnp.asarray(z), jnp.asarray(y), jnp.asarray(pred), jnp.asarray(target))
    np.testing.assert_allclose(np.asarray(out.total), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.terms["cls"]), ce, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.terms["reg"]), reg, rtol=1e-12)
    # β_c = exp(-CE) is the predicted probability of the ground-truth class.
    np.testing.assert_allclose(np.asarray(out.terms["beta_c"]), _np_softmax(z)[np.arange(len(y)), y], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.terms["beta_r"]), np.exp(-reg), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eq5_regression_gradient(seed):
    """eq. (5): ∂L/∂t = (1 + β_c − β_r·CE)·∂L_reg/∂t (differentiated factors); (1 + β_c)·∂L_reg/∂t detached."""
    z, y, pred, target = _inputs(seed)
    ce = _np_ce(z, y)
    reg = _np_smooth_l1(pred - target)
    beta_c, beta_r = np.exp(-ce), np.exp(-reg)
    dreg = _np_smooth_l1_grad(pred - target)
    _, gb = _grads(z, y, pred, target, "through")
    np.testing.assert_allclose(gb, (1 + beta_c - beta_r * ce)[:, None] * dreg, rtol=1e-10, atol=1e-14)
    _, gb_stop = _grads(z, y, pred, target, "stop")
    np.testing.assert_allclose(gb_stop, (1 + beta_c)[:, None] * dreg, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eq10_classification_gradient(seed):
    """eq. (10): ∂L/∂z = (1 + β_r − β_c·L_reg)·(softmax(z) − e_y); (1 + β_r)·(softmax(z) − e_y) detached."""
    z, y, pred, target = _inputs(seed)
    ce = _np_ce(z, y)
    reg = _np_smooth_l1(pred - target)
    beta_c, beta_r = np.exp(-ce), np.exp(-reg)
    dce = _np_softmax(z) - np.eye(z.shape[-1])[y]
    gz, _ = _grads(z, y, pred, target, "through")
    np.testing.assert_allclose(gz, (1 + beta_r - beta_c * reg)[:, None] * dce, rtol=1e-9, atol=1e-14)
    gz_stop, _ = _grads(z, y, pred, target, "stop")
    np.testing.assert_allclose(gz_stop, (1 + beta_r)[:, None] * dce, rtol=1e-9, atol=1e-14)


def test_eq5_with_iou_family_regression():
    """eq. (5) holds for any regression loss: here GIoU, with ∂L_reg/∂box taken from the GIoU loss alone."""
    rng = np.random.default_rng(3)
    n, c = 200, 7
    z = rng.normal(0, 2, (n, c))
    y = rng.integers(0, c, n)
    xy = rng.uniform(0, 50, (n, 2))
    target = np.concatenate([xy, xy + rng.uniform(2, 30, (n, 2))], -1)
    pred = target + rng.normal(0, 4, (n, 4))
    ce = _np_ce(z, y)
    with jax.enable_x64(True):
        reg = np.asarray(jax.jit(boxes.generalized_box_iou_loss)(jnp.asarray(pred), jnp.asarray(target)))
        dreg = np.asarray(jax.jit(jax.grad(lambda b: boxes.generalized_box_iou_loss(b, jnp.asarray(target)).sum()))(
            jnp.asarray(pred)))
    _, gb = _grads(z, y, pred, target, "through", regression="giou")
    factor = 1 + np.exp(-ce) - np.exp(-reg) * ce
    np.testing.assert_allclose(gb, factor[:, None] * dreg, rtol=1e-9, atol=1e-14)


def test_differentiated_factor_can_reverse_the_regression_gradient():
    """A poor classification (CE = 3) with a good box: 1 + β_c − β_r CE < 0, so eq. (5) pushes the box away."""
    z = np.array([[3.0, 0.0, 0.0, 0.0]])  # label 1 gets a low probability
    y = np.array([1])
    ce = _np_ce(z, y)
    pred = np.array([[0.1, 0.0, 0.0, 0.0]])
    target = np.zeros((1, 4))
    assert 1 + np.exp(-ce[0]) - np.exp(-_np_smooth_l1(pred - target)[0]) * ce[0] < 0
    _, gb = _grads(z, y, pred, target, "through")
    _, gb_stop = _grads(z, y, pred, target, "stop")
    assert gb[0, 0] < 0 < gb_stop[0, 0]


def test_negatives_get_cross_entropy_only():
    z, y, pred, target = _inputs(4, n=100)
    positive = np.random.default_rng(5).random(100) < 0.5
    with jax.enable_x64(True):
        out = harmonic.harmonic_loss(jnp.asarray(z), jnp.asarray(y), jnp.asarray(pred), jnp.asarray(target),
                                     positive=jnp.asarray(positive))
    ce = _np_ce(z, y)
    reg = _np_smooth_l1(pred - target)
    full = (1 + np.exp(-reg)) * ce + (1 + np.exp(-ce)) * reg
    np.testing.assert_allclose(np.asarray(out.total), np.where(positive, full, ce), rtol=1e-12)
    gz, gb = _grads(z, y, pred, target, "through", positive=jnp.asarray(positive))
    assert np.all(gb[~positive] == 0.0)
    dce = _np_softmax(z) - np.eye(z.shape[-1])[y]
    np.testing.assert_allclose(gz[~positive], dce[~positive], rtol=1e-9, atol=1e-14)


def test_weighting_accepts_any_losses_and_callable_regression():
    z, y, pred, target = _inputs(6, n=50)
    l1 = lambda p, t: jnp.abs(p - t).sum(-1)  # noqa: E731
    with jax.enable_x64(True):
        out = harmonic.harmonic_loss(jnp.asarray(z), jnp.asarray(y), jnp.asarray(pred), jnp.asarray(target),
                                     regression=l1)
        direct = harmonic.harmonic_weighting(jnp.asarray(_np_ce(z, y)), jnp.asarray(np.abs(pred - target).sum(-1)))
        kw = harmonic.harmonic_loss(jnp.asarray(z), jnp.asarray(y), jnp.asarray(pred), jnp.asarray(target),
                                    regression_kwargs={"beta": 0.0})
    np.testing.assert_allclose(np.asarray(out.total), np.asarray(direct.total), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(kw.total), np.asarray(out.total), rtol=1e-12)


# ------------------------------------------------------------------------------------------------ Harmonic IoU


def _np_hiou_grad(iou, gamma):
    """eq. (12): d/dIoU of (1+IoU)^γ (1−IoU)."""
    return (1 + iou) ** (gamma - 1) * ((gamma - 1) - (gamma + 1) * iou)


@pytest.mark.parametrize("gamma", [-0.5, 0.0, 0.3, 0.8, 1.0])
def test_eq12_derivative(gamma):
    iou = np.linspace(0.0, 1.0, 401)
    with jax.enable_x64(True):
        fn = jax.jit(jax.vmap(jax.grad(lambda u: harmonic.harmonic_iou_loss_from_iou(u, gamma=gamma))))
        got = np.asarray(fn(jnp.asarray(iou)))
        value = np.asarray(harmonic.harmonic_iou_loss_from_iou(jnp.asarray(iou), gamma=gamma))
    np.testing.assert_allclose(value, (1 + iou) ** gamma * (1 - iou), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got, _np_hiou_grad(iou, gamma), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("gamma", [-1.0, 0.0, 0.5, 0.8, 0.99, 1.0])
def test_eq9_monotone_for_gamma_at_most_one(gamma):
    """eq. (9) + (13): for γ ≤ 1 the derivative is ≤ 0 on [0, 1] and the loss never increases with the IoU."""
    iou = np.linspace(0.0, 1.0, 2001)
    with jax.enable_x64(True):
        value = np.asarray(harmonic.harmonic_iou_loss_from_iou(jnp.asarray(iou), gamma=gamma))
        grad = np.asarray(jax.jit(jax.vmap(jax.grad(
            lambda u: harmonic.harmonic_iou_loss_from_iou(u, gamma=gamma))))(jnp.asarray(iou)))
    assert np.all(grad <= 1e-15)
    assert np.all(np.diff(value) <= 1e-15)


@pytest.mark.parametrize("gamma", [1.01, 1.5, 2.0, 4.0])
def test_eq13_non_monotone_above_one(gamma):
    """For γ > 1 the derivative is positive on [0, (γ−1)/(γ+1)): a worse box has a smaller loss there."""
    with pytest.raises(ValueError, match="gamma"):
        harmonic.harmonic_iou_loss_from_iou(jnp.asarray(0.5), gamma=gamma)
    with pytest.raises(ValueError, match="monotone"):
        harmonic.harmonic_iou_loss(jnp.zeros(4), jnp.ones(4), gamma=gamma)
    root = (gamma - 1) / (gamma + 1)
    with jax.enable_x64(True):
        loss = lambda u: harmonic.harmonic_iou_loss_from_iou(u, gamma=gamma, allow_non_monotone=True)  # noqa
        grad = jax.grad(loss)
        assert float(grad(jnp.asarray(0.0))) > 0
        assert float(grad(jnp.asarray(root / 2))) > 0
        assert abs(float(grad(jnp.asarray(root)))) < 1e-12
        assert float(grad(jnp.asarray(min(1.0, root + 0.1)))) < 0
        assert float(loss(jnp.asarray(0.0))) < float(loss(jnp.asarray(root)))


def test_hiou_from_boxes_matches_numpy_iou():
    rng = np.random.default_rng(7)
    n = 300
    xy = rng.uniform(0, 50, (n, 2))
    b2 = np.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], -1)
    b1 = b2 + rng.normal(0, 5, (n, 4))
    b1 = np.concatenate([np.minimum(b1[:, :2], b1[:, 2:] - 0.5), b1[:, 2:]], -1)
    wh = np.clip(np.minimum(b1[:, 2:], b2[:, 2:]) - np.maximum(b1[:, :2], b2[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = inter / (area(b1) + area(b2) - inter + 1e-7)
    with jax.enable_x64(True):
        got = np.asarray(harmonic.harmonic_iou_loss(jnp.asarray(b1), jnp.asarray(b2)))
    np.testing.assert_allclose(got, (1 + iou) ** 0.8 * (1 - iou), rtol=1e-12)


# ------------------------------------------------------------------------------------------------ degenerate


_coord = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1, width=32))
_size = st.one_of(st.sampled_from([0.0, 1e-7, 1e-3]), st.floats(0, 1, width=32))
_logit = st.one_of(st.sampled_from([-100.0, 0.0, 100.0]), st.floats(-100, 100, width=32))


@jax.jit
def _harmonic_all(z, y, b1, b2, positive):
    out = {}
    for reg in ("smooth_l1", "iou", "giou", "diou", "ciou", "hiou"):
        for fg in ("through", "stop"):
            out[reg, fg] = jax.value_and_grad(
                lambda a, b: harmonic.harmonic_loss(a, y, b, b2, regression=reg, factor_grad=fg,
                                                    positive=positive).total.sum(), argnums=(0, 1))(z, b1)
    return out


def _boxes_from(xy, wh):
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float32, (6, 5), elements=_logit),
    hnp.arrays(np.int32, (6,), elements=st.integers(0, 4)),
    hnp.arrays(np.float32, (2, 6, 2), elements=_coord),
    hnp.arrays(np.float32, (2, 6, 2), elements=_size),
    hnp.arrays(np.bool_, (6,)),
    st.sampled_from(["random", "zero_area", "identical", "padded"]),
)
def test_finite_on_degenerate_inputs(z, y, xy, wh, positive, family):
    """Zero-area boxes, identical boxes, all-zero padded ground truth, logits ±100, no positives: finite values
    and gradients for every regression loss and both factor paths."""
    b1, b2 = _boxes_from(xy[0], wh[0]), _boxes_from(xy[1], wh[1])
    if family == "zero_area":
        b1, b2 = _boxes_from(xy[0], 0 * wh[0]), _boxes_from(xy[1], 0 * wh[1])
    elif family == "identical":
        b2 = b1.copy()
    elif family == "padded":
        b2 = np.zeros_like(b2)
    for key, (value, grads) in _harmonic_all(jnp.asarray(z), jnp.asarray(y), jnp.asarray(b1), jnp.asarray(b2),
                                             jnp.asarray(positive)).items():
        assert np.isfinite(float(value)), key
        for g in grads:
            assert np.all(np.isfinite(np.asarray(g))), key


def test_padded_negatives_do_not_leak_nan():
    """A regression loss that is NaN on a padded (all-zero) pair must not reach the gradient of negatives."""
    def nan_on_zero(p, t):  # an unguarded log: NaN/inf for zero-size boxes
        return jnp.sum(jnp.log((p[..., 2:] - p[..., :2]) / (t[..., 2:] - t[..., :2])) ** 2, -1)

    z = jnp.zeros((2, 3))
    y = jnp.zeros(2, jnp.int32)
    pred = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    target = jnp.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    positive = jnp.array([True, False])
    value, (gz, gb) = jax.jit(jax.value_and_grad(lambda a, b: harmonic.harmonic_loss(
        a, y, b, target, regression=nan_on_zero, positive=positive).total.sum(), argnums=(0, 1)))(z, pred)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(gz))) and np.all(np.isfinite(np.asarray(gb)))
    assert np.all(np.asarray(gb)[1] == 0) and np.any(np.asarray(gb)[0] != 0)


def test_hiou_finite_at_zero_area_and_negative_metric():
    zero = jnp.zeros((3, 4))
    for gamma in (0.5, 0.8, 1.0):
        v, g = jax.jit(jax.value_and_grad(lambda b: harmonic.harmonic_iou_loss(b, zero, gamma=gamma).sum()))(zero)
        assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
        # a negative metric (e.g. a GIoU of −1 passed by mistake) stays finite too
        v, g = jax.jit(jax.value_and_grad(lambda u: harmonic.harmonic_iou_loss_from_iou(u, gamma=gamma).sum()))(
            jnp.array([-1.0, -0.5, 0.0]))
        assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))


# ------------------------------------------------------------------------------------------------ errors


_Z, _Y, _B = jnp.zeros((3, 4)), jnp.zeros(3, jnp.int32), jnp.zeros((3, 4))


@pytest.mark.parametrize(
    "call, argname",
    [
        (lambda: harmonic.harmonic_loss(_Z, _Y, _B, _B, factor_grad="detach"), "factor_grad"),
        (lambda: harmonic.harmonic_loss(_Z, _Y, _B, _B, regression="l3"), "regression"),
        (lambda: harmonic.harmonic_loss(_Z, _Y.astype(jnp.float32), _B, _B), "labels"),
        (lambda: harmonic.harmonic_loss(_Z, jnp.zeros(2, jnp.int32), _B, _B), "labels"),
        (lambda: harmonic.harmonic_loss(_Z.astype(jnp.int32), _Y, _B, _B), "cls_logits"),
        (lambda: harmonic.harmonic_loss(_Z, _Y, _B, jnp.zeros((3, 2))), "box_target"),
        (lambda: harmonic.harmonic_loss(_Z, _Y, jnp.zeros((2, 4)), jnp.zeros((2, 4))), "box_pred"),
        (lambda: harmonic.harmonic_loss(_Z, _Y, _B, _B, positive=jnp.ones(3)), "positive"),
        (lambda: harmonic.harmonic_loss(_Z, _Y, _B, _B, positive=jnp.ones(2, bool)), "positive"),
        (lambda: harmonic.harmonic_weighting(jnp.zeros(3), jnp.zeros(2)), "reg_loss"),
        (lambda: harmonic.harmonic_iou_loss(_B, _B, gamma=1.2), "gamma"),
        (lambda: harmonic.harmonic_iou_loss_from_iou(jnp.zeros(3), gamma=float("nan")), "gamma"),
        (lambda: harmonic.smooth_l1_loss(_B, _B, beta=-1.0), "beta"),
    ],
)
def test_value_errors_name_the_argument(call, argname):
    with pytest.raises(ValueError, match=argname):
        call()
