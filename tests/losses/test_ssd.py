"""Tests of jaxdet.losses.ssd: hard negative mining by hand, the no-positive batch, torchvision quirks, parity with
torchvision's ``SSD.compute_loss``, errors and finiteness on degenerate input (hypothesis)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxdet.losses.ssd import hard_negative_mask, ssd_multibox_loss, ssd_multibox_loss_from_matches
from jaxdet.parity import run_case
from jaxdet.parity.cases_detection import cases
from jaxdet.parity.torch_detection import ssd_compute_loss_torch

from_matches = jax.jit(ssd_multibox_loss_from_matches)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _smooth_l1(x):
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def test_hard_negative_mining_by_hand(x64):
    rng = np.random.default_rng(0)
    a, c = 8, 2
    anchors = np.array([[i / 8, 0.0, i / 8 + 0.25, 0.5] for i in range(a)])
    gt = np.array([[[0.05, 0.1, 0.3, 0.55], [0.0, 0.0, 0.0, 0.0]]])
    cls = np.array([[1, 0]], np.int32)  # 0-based: class 1 is logit column 2
    matched = np.full((1, a), -1, np.int32)
    matched[0, 0] = 0
    logits = rng.normal(0, 2, (1, a, c + 1))
    reg = rng.normal(0, 1, (1, a, 4))
    out = from_matches(logits, reg, anchors, gt, cls, matched)

    ce = -_log_softmax(logits[0])[np.arange(a), [2] + [0] * (a - 1)]
    hard = np.sort(ce[1:])[::-1][:3]  # 3 negatives per positive
    np.testing.assert_allclose(out.terms["classification"], ce[0] + hard.sum(), rtol=1e-12)
    # Box target by hand: weights (10, 10, 5, 5) on (dx/w, dy/h, log w ratio, log h ratio).
    g, an = gt[0, 0], anchors[0]
    gw, gh, aw, ah = g[2] - g[0], g[3] - g[1], an[2] - an[0], an[3] - an[1]
    target = np.array(
        [10 * ((g[0] + g[2]) / 2 - (an[0] + an[2]) / 2) / aw, 10 * ((g[1] + g[3]) / 2 - (an[1] + an[3]) / 2) / ah,
         5 * np.log(gw / aw), 5 * np.log(gh / ah)]
    )
    np.testing.assert_allclose(out.terms["bbox_regression"], _smooth_l1(reg[0, 0] - target).sum(), rtol=1e-12)
    np.testing.assert_allclose(out.total, out.terms["classification"] + out.terms["bbox_regression"], rtol=1e-15)


def test_mining_keeps_three_negatives_per_positive_per_image_and_normalises_by_batch(x64):
    rng = np.random.default_rng(1)
    n, a = 3, 20
    positive = np.zeros((n, a), bool)
    positive[0, [2]] = True
    positive[1, [0, 5]] = True  # image 2 has none
    neg_loss = rng.uniform(0, 5, (n, a))
    mask = np.asarray(hard_negative_mask(jnp.asarray(neg_loss), jnp.asarray(positive)))
    np.testing.assert_array_equal(mask.sum(1), [3, 6, 0])
    assert not (mask & positive).any()
    for i in range(n):
        k = mask[i].sum()
        negatives = np.where(positive[i], -np.inf, neg_loss[i])
        np.testing.assert_array_equal(np.sort(np.nonzero(mask[i])[0]), np.sort(np.argsort(-negatives)[:k]))

    # The loss divides both terms by the positives of the whole batch (3), not per image.
    logits = rng.normal(0, 1, (n, a, 3))
    reg = rng.normal(0, 1, (n, a, 4))
    anchors = np.tile([[0.2, 0.2, 0.6, 0.6]], (a, 1))
    gt = np.tile([[[0.25, 0.2, 0.6, 0.7]]], (n, 1, 1))
    matched = np.where(positive, 0, -1).astype(np.int32)
    out = from_matches(logits, reg, anchors, gt, np.zeros((n, 1), np.int32), matched)
    ce = -_log_softmax(logits)[..., 0]
    ce = np.where(positive, -_log_softmax(logits)[..., 1], ce)
    chosen = positive | np.asarray(hard_negative_mask(jnp.asarray(ce), jnp.asarray(positive)))
    np.testing.assert_allclose(out.terms["classification"], ce[chosen].sum() / 3, rtol=1e-12)


def _mining_by_stable_sort(neg_loss, positive, ratio):
    """torchvision's rule with numpy: rank by a stable descending sort, keep rank < ratio · n_pos."""
    ranked = np.where(positive, -np.inf, neg_loss)
    order = np.argsort(-ranked, axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable")
    return rank < ratio * positive.sum(-1, keepdims=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ratio", [3.0, 2.5])
def test_hard_negative_mask_equals_stable_sort_with_ties(dtype, ratio):
    """The sort-free bisection picks exactly the stable sort's set, with heavy ties, ±0, and k beyond the
    negatives (then the positives at −∞ are reached in index order)."""
    rng = np.random.default_rng(4)
    n, a = 16, 40
    neg_loss = rng.integers(0, 4, (n, a)).astype(dtype)  # many exact ties
    neg_loss[0, :5] = -0.0
    neg_loss[1] = 0.0
    neg_loss[2] *= 1e30
    positive = rng.uniform(size=(n, a)) < rng.uniform(0, 0.5, (n, 1))  # some rows reach the positives
    positive[3] = False
    positive[4] = True
    want = _mining_by_stable_sort(neg_loss, positive, ratio)
    with jax.enable_x64(dtype == "float64"):
        got = np.asarray(jax.jit(functools.partial(hard_negative_mask, neg_pos_ratio=ratio))(neg_loss, positive))
    np.testing.assert_array_equal(got, want)
    assert (want & positive).any()  # the quirk is exercised


def test_no_positives_gives_zero_loss_and_zero_finite_gradients():
    rng = np.random.default_rng(2)
    n, a = 2, 16
    logits = rng.normal(0, 1, (n, a, 4)).astype(np.float32)
    reg = rng.normal(0, 1, (n, a, 4)).astype(np.float32)
    anchors = np.tile([[0.0, 0.0, 0.1, 0.1]], (a, 1)).astype(np.float32)
    gt = np.zeros((n, 3, 4), np.float32)
    cls = np.zeros((n, 3), np.int32)
    valid = np.zeros((n, 3), bool)  # all ground truth padded: no prior is matched

    def total(lg, rg):
        return ssd_multibox_loss(lg, rg, anchors, gt, cls, valid).total

    value, grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(logits, reg)
    assert float(value) == 0.0  # N = max(1, 0) and 3 × 0 negatives are kept
    for g in grads:
        assert np.isfinite(np.asarray(g)).all() and (np.asarray(g) == 0).all()


@pytest.mark.parametrize("a", [3, 6])
def test_mining_reaching_positives_counts_them_twice_like_torchvision(a, x64):
    """With fewer negatives than 3 × positives the ranking reaches the positives; torchvision counts them again."""
    rng = np.random.default_rng(a)
    logits = rng.normal(0, 1, (1, a, 3))
    reg = rng.normal(0, 1, (1, a, 4))
    anchors = np.array([[i / a, 0.0, (i + 1) / a, 1.0] for i in range(a)])
    gt = np.array([[[0.0, 0.0, 1.0 / a, 1.0], [1.0 / a, 0.0, 2.0 / a, 0.9]]])
    cls = np.array([[0, 1]], np.int32)
    valid = np.ones((1, 2), bool)
    matched = np.full((1, a), -1, np.int32)
    matched[0, : a // 3] = np.arange(a // 3)  # a = 3: 1 positive, a = 6: 2 positives
    out = from_matches(logits, reg, anchors, gt, cls, matched)
    want = ssd_compute_loss_torch(*(torch.from_numpy(x) for x in (logits, reg, anchors, gt, cls, valid, matched)))
    for name in ("bbox_regression", "classification"):
        np.testing.assert_allclose(out.terms[name], want[name].numpy(), rtol=1e-12)
    # and the positives really were counted twice:
    ce = -_log_softmax(logits[0])[np.arange(a), np.where(matched[0] >= 0, cls[0][np.maximum(matched[0], 0)] + 1, 0)]
    pos = matched[0] >= 0
    np.testing.assert_allclose(out.terms["classification"], (2 * ce[pos].sum() + ce[~pos].sum()) / pos.sum(),
                               rtol=1e-12)


@pytest.mark.parametrize("name", ["ssd_multibox_loss_from_matches", "ssd_multibox_loss"])
def test_parity_with_torchvision_compute_loss_float64(name):

    case = next(c for c in cases() if c.name == name)
    report = run_case(case, dtypes=("float64",))
    assert report.passed(), report.table()


def test_errors_name_the_argument():
    n, a, m = 2, 5, 3
    logits, reg, anchors = jnp.zeros((n, a, 3)), jnp.zeros((n, a, 4)), jnp.zeros((a, 4))
    gt, cls, valid = jnp.zeros((n, m, 4)), jnp.zeros((n, m), jnp.int32), jnp.ones((n, m), bool)
    cases = [
        ("cls_logits", (jnp.zeros((a, 3)), reg, anchors, gt, cls, valid)),
        ("box_regression", (logits, jnp.zeros((n, a, 5)), anchors, gt, cls, valid)),
        ("anchors", (logits, reg, jnp.zeros((a + 1, 4)), gt, cls, valid)),
        ("gt_boxes", (logits, reg, anchors, jnp.zeros((n + 1, m, 4)), cls, valid)),
        ("gt_classes", (logits, reg, anchors, gt, jnp.zeros((n, m)), valid)),
        ("gt_valid", (logits, reg, anchors, gt, cls, jnp.ones((n, m + 1), bool))),
    ]
    for argname, args in cases:
        with pytest.raises(ValueError, match=argname):
            ssd_multibox_loss(*args)
    with pytest.raises(ValueError, match="matched_idxs"):
        ssd_multibox_loss_from_matches(logits, reg, anchors, gt, cls, jnp.zeros((n, a + 1), jnp.int32))


# ------------------------------------------------------------------------------- degenerate input (hypothesis)

N, A, M, K = 2, 24, 3, 4


def _anchors():
    centres = (np.stack(np.meshgrid(np.arange(4), np.arange(3)), -1).reshape(-1, 2) + 0.5) / [4, 3]
    return np.concatenate(
        [np.concatenate([centres - s / 2, centres + s / 2], -1) for s in (0.25, 0.5)], 0
    ).astype(np.float32)


@functools.partial(jax.jit)
def _values_and_grads(logits, reg, anchors, gt, cls, valid):
    def total(lg, rg):
        out = ssd_multibox_loss(lg, rg, anchors, gt, cls, valid)
        return out.total, out

    return jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(logits, reg)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    zero_area_gt=st.booleans(),
    all_padded=st.booleans(),
    logit_scale=st.sampled_from([1.0, 100.0]),
    saturate=st.booleans(),
)
def test_finite_values_and_gradients_on_degenerate_input(seed, zero_area_gt, all_padded, logit_scale, saturate):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (N, A, K)) * logit_scale
    if saturate:
        logits = np.sign(logits) * 100.0  # logits of exactly ±100
    reg = rng.normal(0, 1, (N, A, 4)) * logit_scale
    xy = rng.uniform(0, 1, (N, M, 2))
    wh = np.zeros((N, M, 2)) if zero_area_gt else rng.uniform(0, 1 - xy)
    gt = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    cls = rng.integers(0, K - 1, (N, M)).astype(np.int32)
    valid = np.zeros((N, M), bool) if all_padded else rng.uniform(size=(N, M)) < 0.8
    (value, out), grads = _values_and_grads(
        logits.astype(np.float32), reg.astype(np.float32), _anchors(), gt, cls, valid
    )
    assert np.isfinite(float(value)) and all(np.isfinite(float(v)) for v in out.terms.values())
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
    if all_padded:
        assert float(out.terms["bbox_regression"]) == 0.0 and float(out.terms["classification"]) == 0.0
