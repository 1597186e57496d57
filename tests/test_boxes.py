"""Tests of jaxdet.boxes: formats, properties, finiteness on degenerate boxes, pairwise/jit/vmap, errors.

Parity with torchvision (values and gradients, float64 and float32) is in tests/parity/test_cases.py.
"""

import itertools
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision.ops
from hypothesis import given, settings
from jax.test_util import check_grads

from jaxdet import boxes
from jaxdet.parity.cases_boxes import random_boxes

METRICS = {
    "iou": boxes.box_iou,
    "giou": boxes.generalized_box_iou,
    "diou": boxes.distance_box_iou,
    "ciou": boxes.complete_box_iou,
}
PAIRWISE = {
    "iou": boxes.box_iou_pairwise,
    "giou": boxes.generalized_box_iou_pairwise,
    "diou": boxes.distance_box_iou_pairwise,
    "ciou": boxes.complete_box_iou_pairwise,
}
RANGES = {"iou": (0.0, 1.0), "giou": (-1.0, 1.0), "diou": (-1.0, 1.0), "ciou": (-1.5, 1.0)}


# ----------------------------------------------------------------------------------------------- formats


def test_box_convert_known_values():
    xyxy = jnp.array([[1.0, 2.0, 5.0, 8.0]])
    np.testing.assert_allclose(boxes.box_convert(xyxy, "xyxy", "cxcywh"), [[3.0, 5.0, 4.0, 6.0]])
    np.testing.assert_allclose(boxes.box_convert(xyxy, "xyxy", "xywh"), [[1.0, 2.0, 4.0, 6.0]])
    np.testing.assert_allclose(boxes.box_area(xyxy), [24.0])


@pytest.mark.parametrize("fmt_a,fmt_b", itertools.permutations(boxes.BOX_FORMATS, 2))
def test_box_convert_round_trip(fmt_a, fmt_b):
    b = jnp.asarray(random_boxes(np.random.default_rng(0), (3, 5)), jnp.float32)
    there = boxes.box_convert(boxes.box_convert(b, "xyxy", fmt_a), fmt_a, fmt_b)
    back = boxes.box_convert(boxes.box_convert(there, fmt_b, fmt_a), fmt_a, "xyxy")
    np.testing.assert_allclose(back, b, rtol=1e-5, atol=1e-4)


def test_box_convert_matches_torchvision():

    b = random_boxes(np.random.default_rng(1), (20,))
    for fmt in ("cxcywh", "xywh"):
        ours = boxes.box_convert(jnp.asarray(b, jnp.float32), "xyxy", fmt)
        ref = torchvision.ops.box_convert(torch.tensor(b, dtype=torch.float32), "xyxy", fmt).numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-6)


# ------------------------------------------------------------------------------------- closed-form values


def test_iou_closed_form():
    a = jnp.array([0.0, 0.0, 2.0, 2.0])
    b = jnp.array([1.0, 1.0, 3.0, 3.0])
    # intersection 1, union 7, enclosure 9, centre distance² 2, enclosure diagonal² 18.
    np.testing.assert_allclose(boxes.box_iou(a, b, eps=0), 1 / 7, rtol=1e-6)
    np.testing.assert_allclose(boxes.generalized_box_iou(a, b, eps=0), 1 / 7 - 2 / 9, rtol=1e-6)
    np.testing.assert_allclose(boxes.distance_box_iou(a, b, eps=0), 1 / 7 - 2 / 18, rtol=1e-6)
    # same aspect ratio → v = 0 → CIoU = DIoU.
    np.testing.assert_allclose(boxes.complete_box_iou(a, b, eps=0), 1 / 7 - 2 / 18, rtol=1e-6)


def test_ciou_aspect_term_closed_form():
    a = jnp.array([0.0, 0.0, 2.0, 1.0])  # w/h = 2
    b = jnp.array([0.0, 0.0, 1.0, 1.0])  # w/h = 1, inside a
    iou, diou = 0.5, 0.5 - (0.25 + 0.0) / 5
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    alpha = v / (1 - iou + v)
    np.testing.assert_allclose(boxes.complete_box_iou(a, b, eps=0), diou - alpha * v, rtol=1e-6)


# ------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["iou", "giou", "diou"])
def test_gradients_match_finite_differences(x64, name):
    rng = np.random.default_rng(2)
    b1, b2 = random_boxes(rng, (6,)), random_boxes(rng, (6,))
    check_grads(lambda x, y: METRICS[name](x, y), (b1, b2), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_ciou_alpha_through_matches_finite_differences(x64):
    rng = np.random.default_rng(3)
    b1, b2 = random_boxes(rng, (6,)), random_boxes(rng, (6,))
    def ciou(x, y):
        return boxes.complete_box_iou(x, y, alpha_grad="through")

    check_grads(ciou, (b1, b2), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_ciou_alpha_stop_treats_alpha_as_constant(x64):
    """alpha_grad="stop": the gradient equals that of DIoU − α₀·v with α₀ frozen at its current value."""
    rng = np.random.default_rng(4)
    b1, b2 = jnp.asarray(random_boxes(rng, (8,))), jnp.asarray(random_boxes(rng, (8,)))

    def v_of(x):
        w1, h1 = x[..., 2] - x[..., 0], x[..., 3] - x[..., 1]
        w2, h2 = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1]
        return 4 / math.pi**2 * (jnp.arctan(w2 / h2) - jnp.arctan(w1 / h1)) ** 2

    iou0 = boxes.box_iou(b1, b2)
    alpha0 = v_of(b1) / (1 - iou0 + v_of(b1) + 1e-7)
    expected = jax.grad(lambda x: jnp.sum(boxes.distance_box_iou(x, b2) - alpha0 * v_of(x)))(b1)
    got = jax.grad(lambda x: jnp.sum(boxes.complete_box_iou(x, b2, alpha_grad="stop")))(b1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    through = jax.grad(lambda x: jnp.sum(boxes.complete_box_iou(x, b2, alpha_grad="through")))(b1)
    assert not np.allclose(through, got), "the two gradient paths must differ on generic boxes"


# ------------------------------------------------------------------------------ degenerate-input property


def _degenerate_pair(family, x, y, w, h, dx, dy):
    b = np.array([x, y, x + w, y + h])
    if family == "zero_width":
        b[2] = b[0]
    elif family == "zero_height":
        b[3] = b[1]
    elif family == "zero_area":
        b[2], b[3] = b[0], b[1]
    if family in ("identical", "identical_zero_area"):
        if family == "identical_zero_area":
            b[2], b[3] = b[0], b[1]
        return b, b.copy()
    other = np.array([x + dx, y + dy, x + dx + h, y + dy + w])
    if family == "disjoint":
        other = b + np.array([w + 1 + abs(dx), 0.0, w + 1 + abs(dx), 0.0])
    return b, other


coords = st.floats(-1e4, 1e4, allow_nan=False, width=32)
sizes = st.one_of(st.just(0.0), st.floats(0.0, 1e4, width=32))
FAMILIES = ["zero_width", "zero_height", "zero_area", "identical", "identical_zero_area", "disjoint", "general"]


def _values_and_grads(fn, b1, b2, eps):
    value = fn(b1, b2, eps=eps)
    grads = jax.grad(lambda x, y: jnp.sum(fn(x, y, eps=eps)), argnums=(0, 1))(b1, b2)
    return value, grads


_JITTED = {
    (name, eps): jax.jit(lambda b1, b2, fn=fn, eps=eps: _values_and_grads(fn, b1, b2, eps))
    for name, fn in {**METRICS, **{f"{k}_loss": v for k, v in boxes.IOU_LOSSES.items()}}.items()
    for eps in (1e-7, 0.0)
}


@settings(max_examples=150, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    x=coords, y=coords, w=sizes, h=sizes, dx=coords, dy=coords,
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_finite_values_and_gradients_on_degenerate_boxes(family, x, y, w, h, dx, dy, dtype):
    b1, b2 = _degenerate_pair(family, x, y, w, h, dx, dy)
    with jax.enable_x64(dtype == np.float64):
        for (name, eps), fn in _JITTED.items():
            if eps == 0.0 and dtype == np.float32:
                continue  # eps=0 guards exact zeros only; a float32 denominator of 1e-38 overflows d(1/c)/dc.
            value, grads = fn(jnp.asarray(b1, dtype), jnp.asarray(b2, dtype))
            assert np.isfinite(value).all(), (name, eps, family, b1, b2, value)
            for g in grads:
                assert np.isfinite(g).all(), (name, eps, family, b1, b2, g)
            if name in RANGES:
                lo, hi = RANGES[name]
                slack = 1e-5 if dtype == np.float32 else 1e-12
                assert lo - slack <= float(value) <= hi + slack, (name, family, float(value))


def test_identical_boxes_score_one_and_zero_area_scores_zero():
    b = jnp.array([[1.0, 2.0, 4.0, 6.0], [3.0, 3.0, 3.0, 3.0]])
    for name, fn in METRICS.items():
        np.testing.assert_allclose(fn(b[:1], b[:1]), [1.0], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(fn(b[1:], b[1:], eps=0.0), [0.0], atol=1e-6, err_msg=name)


# ------------------------------------------------------------------------------ pairwise, jit and vmap


@pytest.mark.parametrize("name", list(METRICS))
def test_pairwise_agrees_with_elementwise(name):
    rng = np.random.default_rng(5)
    b1 = jnp.asarray(random_boxes(rng, (2, 7)), jnp.float32)
    b2 = jnp.asarray(random_boxes(rng, (2, 5)), jnp.float32)
    pairwise = PAIRWISE[name](b1, b2)
    assert pairwise.shape == (2, 7, 5)
    for batch, i, j in itertools.product(range(2), range(7), range(5)):
        np.testing.assert_allclose(pairwise[batch, i, j], METRICS[name](b1[batch, i], b2[batch, j]), rtol=1e-6)


@pytest.mark.parametrize("name", list(METRICS))
def test_jit_and_vmap_are_identical(name):
    """jit(vmap(f)) is bitwise jit(f); eager differs from jit only by XLA's fusion rounding (a few ulps)."""
    rng = np.random.default_rng(6)
    b1 = jnp.asarray(random_boxes(rng, (4, 9)), jnp.float32)
    b2 = jnp.asarray(random_boxes(rng, (4, 9)), jnp.float32)
    fn = METRICS[name]
    jitted = jax.jit(fn)(b1, b2)
    np.testing.assert_array_equal(jax.jit(jax.vmap(fn))(b1, b2), jitted)
    np.testing.assert_array_equal(jax.jit(jax.vmap(jax.vmap(fn)))(b1, b2), jitted)
    np.testing.assert_allclose(fn(b1, b2), jitted, rtol=4 * np.finfo(np.float32).eps)
    row_grad = jax.grad(lambda x, y: jnp.sum(fn(x, y)))
    vmapped = jax.jit(jax.vmap(row_grad))(b1, b2)
    np.testing.assert_array_equal(vmapped, jax.jit(row_grad)(b1, b2))
    eager = row_grad(b1, b2)
    np.testing.assert_allclose(vmapped, eager, rtol=0, atol=1e-6 * float(jnp.abs(eager).max()))


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [*METRICS.values(), *boxes.IOU_LOSSES.values()])
def test_errors_name_the_argument(fn):
    good = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="boxes1 must have shape"):
        fn(jnp.zeros((3, 5)), good)
    with pytest.raises(ValueError, match="boxes2 must have a floating dtype"):
        fn(good, jnp.zeros((3, 4), jnp.int32))
    with pytest.raises(ValueError, match="broadcastable"):
        fn(good, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="eps"):
        fn(good, good, eps=-1.0)


def test_other_errors():
    with pytest.raises(ValueError, match="boxes2 must have shape"):
        boxes.box_iou_pairwise(jnp.zeros((3, 4)), jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="N, 4"):
        boxes.box_iou_pairwise(jnp.zeros((4,)), jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="out_fmt"):
        boxes.box_convert(jnp.zeros((3, 4)), "xyxy", "yxyx")
    with pytest.raises(ValueError, match="alpha_grad"):
        boxes.complete_box_iou(jnp.zeros((3, 4)), jnp.zeros((3, 4)), alpha_grad="detach")
