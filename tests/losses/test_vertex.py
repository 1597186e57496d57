"""Tests of jaxdet.losses.vertex: ultralytics KeypointLoss parity, the seed variant, masks, finiteness."""

import os

import jax
import jax.test_util
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ultralytics.utils.loss import KeypointLoss

from jaxdet.losses.vertex import OKS_SIGMA, box_area_of_polygon, keypoint_loss, vertex_l2_loss

os.environ.setdefault("YOLO_OFFLINE", "1")


def _inputs(rng, n=6, k=8, masked=True):
    target = rng.uniform(0, 1, (n, k, 2))
    pred = target + rng.normal(0, 0.1, (n, k, 2))
    area = rng.uniform(0.01, 0.5, (n,))
    mask = rng.uniform(size=(n, k)) > 0.3 if masked else np.ones((n, k), bool)
    mask[0] = False
    return pred, target, area, mask


def _numpy_reference(pred, target, area, mask, sigmas, variant):
    """Per-instance loss written from the formula (float64 numpy)."""
    k = pred.shape[-2]
    d = ((pred - target) ** 2).sum(-1)
    if variant == "oks":
        e = d / ((2 * sigmas) ** 2 * (area[:, None] + 1e-9) * 2)
    else:
        e = d / (area[:, None] + 1e-9)
    factor = k / (mask.sum(-1) + 1e-9)
    return factor * ((1 - np.exp(-e)) * mask).mean(-1)


@pytest.mark.parametrize("variant", ["oks", "seed"])
def test_matches_formula(x64, variant):
    pred, target, area, mask = _inputs(np.random.default_rng(0))
    sigmas = np.full(8, 1 / 8) if variant == "oks" else None
    ours = keypoint_loss(pred, target, area, visible=mask, variant=variant)
    ref = _numpy_reference(pred, target, area, mask, np.full(8, 1 / 8), variant)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-13, atol=1e-16)
    assert ours[0] == 0.0  # no visible vertex: zero loss
    if variant == "oks":
        explicit = keypoint_loss(pred, target, area, visible=mask, sigmas=sigmas)
        np.testing.assert_allclose(np.asarray(explicit), np.asarray(ours), rtol=1e-15)


def test_matches_ultralytics_keypoint_loss(x64):
    torch = pytest.importorskip("torch")

    rng = np.random.default_rng(1)
    for k, sigmas in ((17, OKS_SIGMA.astype(np.float64)), (8, np.full(8, 1 / 8))):
        pred, target, area, mask = _inputs(rng, n=10, k=k)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # ultralytics computes K/n_vis in the default dtype
        try:
            ref = KeypointLoss(torch.from_numpy(sigmas))(
                torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(mask),
                torch.from_numpy(area[:, None]),
            )
        finally:
            torch.set_default_dtype(previous)
        ours = keypoint_loss(pred, target, area[:, None], visible=mask, sigmas=sigmas, reduction="mean")
        np.testing.assert_allclose(float(ours), float(ref), rtol=1e-12)


def test_reductions_and_area_shapes(x64):
    pred, target, area, mask = _inputs(np.random.default_rng(2))
    per = keypoint_loss(pred, target, area, visible=mask)
    assert per.shape == (6,)
    np.testing.assert_allclose(keypoint_loss(pred, target, area, visible=mask, reduction="mean"), per.mean())
    np.testing.assert_allclose(keypoint_loss(pred, target, area, visible=mask, reduction="sum"), per.sum())
    np.testing.assert_allclose(keypoint_loss(pred, target, area[:, None], visible=mask), per)
    # leading batch axes broadcast
    both = keypoint_loss(np.stack([pred, pred]), np.stack([target, target]), np.stack([area, area]),
                         visible=np.stack([mask, mask]))
    np.testing.assert_allclose(both, np.stack([per, per]))


def test_vertex_l2_loss(x64):
    pred, target, _, mask = _inputs(np.random.default_rng(3))
    d = ((pred - target) ** 2).sum(-1)
    np.testing.assert_allclose(vertex_l2_loss(pred, target), d.mean(-1), rtol=1e-14)
    ref = (d * mask).sum(-1) / np.maximum(mask.sum(-1), 1)
    np.testing.assert_allclose(vertex_l2_loss(pred, target, visible=mask), ref, rtol=1e-14)


def test_box_area_of_polygon(x64):
    rng = np.random.default_rng(4)
    poly = rng.uniform(0, 1, (5, 8, 2))
    valid = rng.uniform(size=(5, 8)) > 0.4
    valid[1] = False
    wh = poly.max(1) - poly.min(1)
    np.testing.assert_allclose(box_area_of_polygon(poly), wh[:, 0] * wh[:, 1], rtol=1e-14)
    expected = []
    for p, v in zip(poly, valid):
        if v.any():
            w = p[v].max(0) - p[v].min(0)
            expected.append(w[0] * w[1])
        else:
            expected.append(0.0)
    np.testing.assert_allclose(box_area_of_polygon(poly, valid=valid), expected, rtol=1e-14)


def test_gradient_matches_finite_differences(x64):
    pred, target, area, mask = _inputs(np.random.default_rng(5), n=3)
    for variant in ("oks", "seed"):
        fn = lambda p, t, a: keypoint_loss(p, t, a, visible=mask, variant=variant, reduction="sum")  # noqa: E731
        jax.test_util.check_grads(fn, (pred, target, area), order=1, modes=["rev"], eps=1e-6)


@jax.jit
def _degenerate_value_and_grads(pred, target, area, mask):
    results = []
    for variant in ("oks", "seed"):
        def fn(p, t, a, variant=variant):
            return keypoint_loss(p, t, a, visible=mask, variant=variant, reduction="sum")

        results.append(jax.value_and_grad(fn, argnums=(0, 1, 2))(pred, target, area))
    return results


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_finite_on_degenerate_input(data):
    k = 4
    coords = st.sampled_from([0.0, 0.0, 1e-12, 0.5, 1.0, 1e3])
    pred = np.array(data.draw(st.lists(coords, min_size=2 * k, max_size=2 * k)), np.float32).reshape(1, k, 2)
    target = np.array(data.draw(st.lists(coords, min_size=2 * k, max_size=2 * k)), np.float32).reshape(1, k, 2)
    area = np.array([data.draw(st.sampled_from([0.0, 1e-12, 1.0]))], np.float32)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=k, max_size=k))).reshape(1, k)
    for value, grads in _degenerate_value_and_grads(pred, target, area, mask):
        assert np.isfinite(value)
        assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_errors():
    p = np.zeros((2, 4, 2))
    with pytest.raises(ValueError, match="pred"):
        keypoint_loss(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)), np.ones(2))
    with pytest.raises(ValueError, match="target"):
        keypoint_loss(p, np.zeros((2, 5, 2)), np.ones(2))
    with pytest.raises(ValueError, match="variant"):
        keypoint_loss(p, p, np.ones(2), variant="l1")
    with pytest.raises(ValueError, match="sigmas"):
        keypoint_loss(p, p, np.ones(2), sigmas=np.ones(3))
    with pytest.raises(ValueError, match="sigmas"):
        keypoint_loss(p, p, np.ones(2), sigmas=np.ones(4), variant="seed")
    with pytest.raises(ValueError, match="visible"):
        keypoint_loss(p, p, np.ones(2), visible=np.ones((2, 3)))
    with pytest.raises(ValueError, match="area"):
        keypoint_loss(p, p, np.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        keypoint_loss(p, p, np.ones(2), reduction="avg")
