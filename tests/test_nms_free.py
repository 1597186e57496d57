"""jaxdet.nms_free: YOLO26's NMS-free decode against ultralytics' ``Detect.postprocess`` (indices, classes,
scores and boxes, class-aware and agnostic, max_det below, at and above 300 and above the anchor count), the
exact top-k property, jit, and argument errors.

The 256-px float64/float32 rows are in ``python -m jaxdet.parity`` (``nms_free_decode``)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxdet.nms_free import nms_free_decode, nms_free_topk
from jaxdet.parity.torch_yolo26 import postprocess_torch
from jaxdet.tal import make_anchor_points

IMAGE, CLASSES, BATCH = 128, 5, 2
ANCHORS = make_anchor_points([(IMAGE // s, IMAGE // s) for s in (8, 16, 32)], (8, 16, 32), dtype=np.float64)
A = ANCHORS.points.shape[0]  # 336


def raw_outputs(seed=0, reg_max=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(-2.0, 1.5, (BATCH, A, 4 * reg_max + CLASSES))
    if reg_max == 1:
        x[..., :4] = rng.uniform(0.2, 5.0, (BATCH, A, 4))
    return x


decode = jax.jit(nms_free_decode, static_argnames=("max_det", "reg_max", "agnostic"))


@pytest.mark.parametrize("max_det", [1, 7, 300, 336, 1000])
@pytest.mark.parametrize("agnostic", [False, True])
def test_matches_ultralytics_postprocess(x64, max_det, agnostic):
    x = raw_outputs(max_det)
    ours = decode(x, ANCHORS.points, ANCHORS.strides, max_det=max_det, agnostic=agnostic)
    theirs = postprocess_torch(torch.from_numpy(x), image_size=IMAGE, max_det=max_det, agnostic=agnostic)
    k = min(max_det, A)
    assert ours.boxes.shape == (BATCH, k, 4) and ours.scores.shape == (BATCH, k)
    np.testing.assert_array_equal(ours.indices, theirs["indices"].numpy())
    np.testing.assert_array_equal(ours.labels, theirs["labels"].numpy())
    np.testing.assert_allclose(ours.scores, theirs["scores"].numpy(), rtol=1e-15)
    np.testing.assert_allclose(ours.boxes, theirs["boxes"].numpy(), rtol=1e-14, atol=1e-12)


def test_dfl_outputs_match_ultralytics(x64):
    x = raw_outputs(3, reg_max=16)
    ours = decode(x, ANCHORS.points, ANCHORS.strides, max_det=50, reg_max=16)
    theirs = postprocess_torch(torch.from_numpy(x), image_size=IMAGE, max_det=50, reg_max=16)
    np.testing.assert_array_equal(ours.indices, theirs["indices"].numpy())
    np.testing.assert_allclose(ours.boxes, theirs["boxes"].numpy(), rtol=1e-13, atol=1e-12)


def test_is_the_exact_top_k_of_all_pairs():
    scores = jax.nn.sigmoid(jnp.asarray(raw_outputs(4)[..., 4:], jnp.float32))
    for k in (1, 20, 300, 3 * A):
        top, labels, index = nms_free_topk(scores, max_det=k)
        kk = min(k, A)
        flat = np.sort(np.asarray(scores).reshape(BATCH, -1), axis=1)[:, ::-1][:, :kk]
        np.testing.assert_array_equal(top, flat)
        np.testing.assert_array_equal(np.asarray(scores)[np.arange(BATCH)[:, None], index, labels], top)


def test_per_level_outputs_and_float32():
    x = raw_outputs(5).astype(np.float32)
    levels, start = [], 0
    for s in (8, 16, 32):
        n = (IMAGE // s) ** 2
        levels.append(x[:, start:start + n].reshape(BATCH, IMAGE // s, IMAGE // s, -1))
        start += n
    points, strides = ANCHORS.points.astype(jnp.float32), ANCHORS.strides.astype(jnp.float32)
    flat = decode(x, points, strides, max_det=30)
    per_level = decode(levels, points, strides, max_det=30)
    for a, b in zip(flat, per_level):
        np.testing.assert_array_equal(a, b)
    assert flat.boxes.dtype == jnp.float32 and flat.indices.dtype == jnp.int32


def test_bad_arguments_name_the_argument():
    x = raw_outputs()
    with pytest.raises(ValueError, match="^max_det must be"):
        nms_free_decode(x, ANCHORS.points, ANCHORS.strides, max_det=0)
    with pytest.raises(ValueError, match="^anchor_points must have shape"):
        nms_free_decode(x, ANCHORS.points[:-1], ANCHORS.strides)
    with pytest.raises(ValueError, match="^outputs must have shape"):
        nms_free_decode(x[..., :4], ANCHORS.points, ANCHORS.strides)
    with pytest.raises(ValueError, match="^agnostic must be"):
        nms_free_topk(jnp.zeros((1, 3, 2)), agnostic="yes")
    with pytest.raises(ValueError, match="^scores must have shape"):
        nms_free_topk(jnp.zeros((3, 2)))


