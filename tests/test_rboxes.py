"""Tests of jaxdet.rboxes: ultralytics parity (probiou, batch_probiou, _get_covariance_matrix, xywhr2xyxyxyxy,
regularize_rboxes) in float64 and float32, finite values and gradients on degenerate rotated boxes (hypothesis),
gradients against finite differences, and the relation to jaxdet.polygons' corner convention."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from ultralytics.utils import metrics as um
from ultralytics.utils import ops as uops

from jaxdet import polygons, rboxes


def random_rboxes(rng: np.random.Generator, shape: tuple[int, ...], *, spread: float = 20.0) -> np.ndarray:
    """``shape + (5,)`` xywhr boxes: centres in ``[0, spread]``, sides in ``[0.5, 12]``, angles in ``(-π, π)``."""
    centre = rng.uniform(0, spread, shape + (2,))
    size = rng.uniform(0.5, 12.0, shape + (2,))
    angle = rng.uniform(-math.pi, math.pi, shape + (1,))
    return np.concatenate([centre, size, angle], axis=-1)


# ------------------------------------------------------------------------------------------- ultralytics parity


@pytest.mark.parametrize("floor", [0.0, 0.01])
@pytest.mark.parametrize("ciou", [False, True])
def test_probiou_matches_ultralytics_float64(x64, ciou, floor):
    rng = np.random.default_rng(0)
    b1, b2 = random_rboxes(rng, (64,)), random_rboxes(rng, (64,))
    b2[:8] = b1[:8]  # identical pairs
    b2[8:16, :2] = b1[8:16, :2] + rng.normal(0, 0.5, (8, 2))  # overlapping pairs
    t1, t2 = torch.tensor(b1, requires_grad=True), torch.tensor(b2, requires_grad=True)
    expected = um.probiou(t1, t2, CIoU=ciou, floor=floor)[:, 0]
    expected.sum().backward()
    fn = lambda x, y: rboxes.probiou(x, y, ciou=ciou, floor=floor)  # noqa: E731
    value = fn(jnp.asarray(b1), jnp.asarray(b2))
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-12, atol=1e-13)
    g1, g2 = jax.grad(lambda x, y: jnp.sum(fn(x, y)), argnums=(0, 1))(jnp.asarray(b1), jnp.asarray(b2))
    np.testing.assert_allclose(g1, t1.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(g2, t2.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_probiou_matches_ultralytics_float32():
    rng = np.random.default_rng(1)
    b1, b2 = random_rboxes(rng, (64,)).astype(np.float32), random_rboxes(rng, (64,)).astype(np.float32)
    b2[:16, :2] = b1[:16, :2] + rng.normal(0, 0.5, (16, 2))
    expected = um.probiou(torch.tensor(b1), torch.tensor(b2))[:, 0].numpy()
    np.testing.assert_allclose(rboxes.probiou(b1, b2), expected, rtol=1e-5, atol=1e-6)


def test_probiou_pairwise_matches_batch_probiou(x64):
    rng = np.random.default_rng(2)
    b1, b2 = random_rboxes(rng, (9,)), random_rboxes(rng, (7,))
    b2[:3] = b1[:3]
    expected = um.batch_probiou(torch.tensor(b1), torch.tensor(b2)).numpy()
    np.testing.assert_allclose(rboxes.probiou_pairwise(b1, b2), expected, rtol=1e-12, atol=1e-13)
    # batched leading axes, and the elementwise function on every pair
    batched = rboxes.probiou_pairwise(np.stack([b1, b1]), np.stack([b2, b2[::-1]]))
    assert batched.shape == (2, 9, 7)
    np.testing.assert_allclose(batched[0], expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(batched[1], expected[:, ::-1], rtol=1e-12, atol=1e-13)
    elementwise = rboxes.probiou(b1[:, None, :], b2[None, :, :])
    np.testing.assert_allclose(rboxes.probiou_pairwise(b1, b2), elementwise, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("floor", [0.0, 0.01])
def test_covariance_matches_ultralytics(x64, floor):
    b = random_rboxes(np.random.default_rng(3), (20,))
    expected = um._get_covariance_matrix(torch.tensor(b), floor)
    for got, want in zip(rboxes.rbox_covariance(b, floor=floor), expected):
        np.testing.assert_allclose(got, want[:, 0].numpy(), rtol=1e-14, atol=1e-14)


def test_corners_match_ultralytics_and_polygons_with_the_opposite_angle(x64):
    b = random_rboxes(np.random.default_rng(4), (3, 6))
    corners = rboxes.rbox_corners(b)
    assert corners.shape == (3, 6, 4, 2)
    np.testing.assert_allclose(corners, uops.xywhr2xyxyxyxy(torch.tensor(b)).numpy(), rtol=1e-14, atol=1e-13)
    # the same rectangle as jaxdet.polygons' mgiou convention with the angle negated (corners in another order)
    mg = polygons.rotated_box_corners(b * np.array([1, 1, 1, 1, -1.0]))
    np.testing.assert_allclose(np.sort(np.asarray(mg).reshape(-1, 8), -1),
                               np.sort(np.asarray(corners).reshape(-1, 8), -1), atol=1e-12)
    np.testing.assert_allclose(mg[..., [2, 1, 0, 3], :], corners, atol=1e-12)


def test_regularize_matches_ultralytics(x64):
    rng = np.random.default_rng(5)
    b = random_rboxes(rng, (200,))
    b[:, 4] = rng.uniform(-3 * math.pi, 3 * math.pi, 200)
    b[:8, 4] = [0.0, math.pi / 2, -math.pi / 2, math.pi, -math.pi, math.pi / 4, 3 * math.pi / 2, -1e-12]
    expected = uops.regularize_rboxes(torch.tensor(b)).numpy()
    got = np.asarray(rboxes.regularize_rboxes(b))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)
    assert ((got[:, 4] >= 0) & (got[:, 4] < math.pi / 2 + 1e-12)).all()
    # same rectangle: the corners agree up to their order
    a, r = np.asarray(rboxes.rbox_corners(b)), np.asarray(rboxes.rbox_corners(got))
    np.testing.assert_allclose(np.sort(a.reshape(-1, 8), -1), np.sort(r.reshape(-1, 8), -1), atol=1e-9)


# ---------------------------------------------------------------------------------------- properties


def test_identical_boxes_are_one_and_probiou_is_symmetric(x64):
    b = random_rboxes(np.random.default_rng(6), (16,))
    np.testing.assert_allclose(rboxes.probiou(b, b), 1 - math.sqrt(1 - math.exp(-1e-7) + 1e-7), rtol=1e-9)
    other = random_rboxes(np.random.default_rng(7), (16,))
    np.testing.assert_allclose(rboxes.probiou(b, other), rboxes.probiou(other, b), rtol=1e-12, atol=1e-14)
    # a half-turn is the same box
    turned = b + np.array([0, 0, 0, 0, math.pi])
    np.testing.assert_allclose(rboxes.probiou(b, turned), rboxes.probiou(b, b), rtol=1e-9)


@pytest.mark.parametrize("floor", [0.0, 0.01])
def test_gradients_match_finite_differences(x64, floor):
    """(``ciou=True`` holds its α constant, as ultralytics' ``no_grad``: its gradient is not the derivative; it is
    compared with torch's in test_probiou_matches_ultralytics_float64.)"""
    rng = np.random.default_rng(8)
    b1, b2 = random_rboxes(rng, (6,), spread=6.0), random_rboxes(rng, (6,), spread=6.0)
    fn = lambda x, y: rboxes.probiou(x, y, floor=floor)  # noqa: E731
    check_grads(fn, (jnp.asarray(b1), jnp.asarray(b2)), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
    check_grads(lambda x, y: rboxes.probiou_pairwise(x, y), (jnp.asarray(b1), jnp.asarray(b2)), order=1,
                modes=["rev"], atol=1e-6, rtol=1e-6)


def _degenerate_pair(family, x, y, w, h, angle, dx, dy):
    b = np.array([x, y, w, h, angle])
    other = np.array([x + dx, y + dy, h, w, -angle])
    if family == "zero_width":
        b[2] = other[2] = 0.0
    elif family == "zero_height":
        b[3] = other[3] = 0.0
    elif family == "points":
        b[2:4] = other[2:4] = 0.0
    elif family == "collinear":  # two segments on one line: det(Σ1 + Σ2) = 0 exactly, rounded either way
        b[3] = 0.0
        other = np.array([x + dx * math.cos(angle), y + dx * math.sin(angle), w * 0.5, 0.0, angle + math.pi])
    elif family == "identical":
        other = b.copy()
    elif family == "identical_zero":
        b[2] = 0.0
        other = b.copy()
    elif family == "right_angle":
        b[4], other[4] = math.pi / 2, -math.pi / 2
    elif family == "far":
        other[:2] = b[:2] + np.array([1e4, -1e4])
    return b, other


_FAMILIES = ["zero_width", "zero_height", "points", "collinear", "identical", "identical_zero", "right_angle",
             "far", "general"]
coords = st.floats(-1e3, 1e3, allow_nan=False, width=32)
sides = st.one_of(st.just(0.0), st.floats(0.0, 1e3, width=32))
angles = st.one_of(st.sampled_from([0.0, math.pi / 2, -math.pi / 2, math.pi]), st.floats(-4.0, 4.0, width=32))


def _values_and_grads(b1, b2):
    out = {}
    for name, fn in {
        "probiou": lambda x, y: rboxes.probiou(x, y),
        "probiou_floor": lambda x, y: rboxes.probiou(x, y, floor=0.01),
        "probiou_ciou": lambda x, y: rboxes.probiou(x, y, ciou=True),
        "pairwise": lambda x, y: rboxes.probiou_pairwise(x[None], y[None])[0, 0],
        "corners": lambda x, y: jnp.sum(rboxes.rbox_corners(x) * rboxes.rbox_corners(y)),
        "regularize": lambda x, y: jnp.sum(rboxes.regularize_rboxes(x) * y),
    }.items():
        out[name] = (fn(b1, b2), jax.grad(lambda x, y: jnp.sum(fn(x, y)), argnums=(0, 1))(b1, b2))
    return out


_JITTED = jax.jit(_values_and_grads)


@settings(max_examples=200, deadline=None)
@given(family=st.sampled_from(_FAMILIES), x=coords, y=coords, w=sides, h=sides, angle=angles, dx=coords, dy=coords,
       dtype=st.sampled_from([np.float32, np.float64]))
@example(family="zero_width", x=0.0, y=0.0, w=0.0, h=3.9191989089117426e-38, angle=0.0, dx=0.0, dy=0.0,
         dtype=np.float32)  # atan(w / h)'s gradient -w / h² overflowed (0 · inf)
def test_finite_values_and_gradients_on_degenerate_rotated_boxes(family, x, y, w, h, angle, dx, dy, dtype):
    b1, b2 = _degenerate_pair(family, x, y, w, h, angle, dx, dy)
    with jax.enable_x64(dtype == np.float64):
        results = _JITTED(jnp.asarray(b1, dtype), jnp.asarray(b2, dtype))
        for name, (value, grads) in results.items():
            assert np.isfinite(value).all(), (name, family, b1, b2, value)
            for g in grads:
                assert np.isfinite(g).all(), (name, family, b1, b2, g)
            if name in ("probiou", "probiou_floor", "pairwise"):
                assert -1e-6 <= float(value) <= 1.0, (name, family, float(value))


def test_collinear_segments_are_finite_where_ultralytics_is_not(x64):
    """Two segments on one line: det(Σ1 + Σ2) rounds below 0 and ultralytics takes the log of it; jaxdet clamps
    it at 0 (ProbIoU near 0, its gradient finite)."""
    angle = 0.7
    b1 = np.array([[0.0, 0.0, 10.0, 0.0, angle]])
    b2 = np.array([[3 * math.cos(angle), 3 * math.sin(angle), 4.0, 0.0, angle + math.pi]])
    value, grad = jax.value_and_grad(lambda x: jnp.sum(rboxes.probiou(x, b2)))(jnp.asarray(b1))
    assert np.isfinite(value) and np.isfinite(grad).all()


def test_jit_and_vmap_agree():
    rng = np.random.default_rng(9)
    b1 = jnp.asarray(random_rboxes(rng, (4, 9)), jnp.float32)
    b2 = jnp.asarray(random_rboxes(rng, (4, 9)), jnp.float32)
    jitted = jax.jit(rboxes.probiou)(b1, b2)
    np.testing.assert_array_equal(jax.jit(jax.vmap(rboxes.probiou))(b1, b2), jitted)
    np.testing.assert_allclose(rboxes.probiou(b1, b2), jitted, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.jit(rboxes.probiou_pairwise)(b1, b2)[:, 0, 0], jitted[:, 0], rtol=1e-6, atol=1e-7)
