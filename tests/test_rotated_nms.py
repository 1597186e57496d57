"""Tests of jaxdet.nms' rotated path: parity with ultralytics' OBB NMS (``non_max_suppression(rotated=True)``,
``TorchNMS.fast_nms`` with ``batch_probiou``) on random candidates, Fast-NMS against greedy on hand cases, the exact
polygon IoU, jit with fixed sizes, padded candidates and degenerate boxes."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon
from ultralytics.utils import metrics as um
from ultralytics.utils import ops as uops
from ultralytics.utils.nms import TorchNMS, non_max_suppression

from jaxdet.nms import rotated_nms, select_rotated_detections
from jaxdet.polygons import convex_polygon_iou
from jaxdet.rboxes import probiou_pairwise, rbox_corners


def _kept(res, i=None) -> list[int]:
    idx, valid = np.asarray(res.indices), np.asarray(res.valid)
    if i is not None:
        idx, valid = idx[i], valid[i]
    return [int(k) for k in idx[valid]]


def _clustered_rboxes(rng, b, a, *, size=640.0):
    """``[b, a, 5]`` xywhr in pixels around a few centres per image, so that many pairs overlap."""
    centres = rng.uniform(0.1 * size, 0.9 * size, (b, 6, 2))
    pick = rng.integers(0, 6, (b, a))
    xy = np.take_along_axis(centres, pick[..., None], axis=1) + rng.normal(0, 12.0, (b, a, 2))
    wh = rng.uniform(4.0, 80.0, (b, a, 2))
    angle = rng.uniform(-math.pi / 2, math.pi / 2, (b, a, 1))
    return np.concatenate([xy, wh, angle], -1)


def _ultralytics_prediction(rboxes, class_scores):
    """ultralytics' raw OBB output ``[B, 4 + nc + 1, A]`` (xywh, class scores, angle)."""
    x = np.concatenate([rboxes[..., :4], class_scores, rboxes[..., 4:]], axis=-1)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))


def _candidates(rboxes, class_scores, multi_label):
    """The candidates of ultralytics' NMS: one per anchor (its best class) or, multi-label, one per
    (anchor, class) pair in anchor-major order; with each candidate's anchor."""
    b, a, c = class_scores.shape
    if multi_label:
        boxes = np.broadcast_to(rboxes[:, :, None], (b, a, c, 5)).reshape(b, a * c, 5)
        classes = np.broadcast_to(np.arange(c), (b, a, c)).reshape(b, a * c)
        return boxes, class_scores.reshape(b, a * c), classes, np.arange(a * c) // c
    return rboxes, class_scores.max(-1), class_scores.argmax(-1), np.arange(a)


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rotated_nms_matches_ultralytics(x64, multi_label, agnostic, dtype):
    rng = np.random.default_rng(7 + 2 * multi_label + agnostic)
    b, a, c = 4, 160, 3
    rboxes = _clustered_rboxes(rng, b, a).astype(dtype)
    class_scores = rng.uniform(0, 1, (b, a, c)).astype(np.float32).astype(dtype)  # float32-representable
    conf, iou_thres, max_det, max_nms = 0.25, 0.3, 60, 250
    out, keepi = non_max_suppression(
        _ultralytics_prediction(rboxes, class_scores), conf, iou_thres, agnostic=agnostic, multi_label=multi_label,
        max_det=max_det, max_nms=max_nms, nc=c, rotated=True, return_idxs=True, max_time_img=1e6,  # no time limit
    )
    boxes, scores, classes, anchor = _candidates(rboxes, class_scores, multi_label)
    fn = jax.jit(lambda bx, s, cl: select_rotated_detections(
        bx, s, cl if not agnostic else jnp.zeros_like(cl), iou_threshold=iou_thres, score_threshold=conf,
        max_detections=max_det, pre_nms_top_k=max_nms))
    det = fn(jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(classes))
    res = rotated_nms(jnp.asarray(boxes), jnp.asarray(scores), None if agnostic else jnp.asarray(classes),
                      iou_threshold=iou_thres, score_threshold=conf, max_detections=max_det, pre_nms_top_k=max_nms)
    total_kept = 0
    for i in range(b):
        kept = _kept(res, i)
        ref = out[i].numpy()
        total_kept += len(kept)
        np.testing.assert_array_equal(anchor[kept], keepi[i].numpy())
        np.testing.assert_array_equal(np.asarray(scores[i])[kept], ref[:, 4])
        np.testing.assert_array_equal(np.asarray(classes[i])[kept], ref[:, 5])
        np.testing.assert_array_equal(np.asarray(boxes[i])[kept], ref[:, [0, 1, 2, 3, 6]])
        v = np.asarray(det.valid[i])
        assert v.sum() == len(kept)
        np.testing.assert_array_equal(np.asarray(det.scores[i])[v], ref[:, 4])
        np.testing.assert_array_equal(np.asarray(det.boxes[i])[v], ref[:, [0, 1, 2, 3, 6]])
        if not agnostic:
            np.testing.assert_array_equal(np.asarray(det.classes[i])[v], ref[:, 5])
        assert np.all(np.asarray(det.boxes[i])[~v] == 0) and np.all(np.asarray(det.scores[i])[~v] == 0)
    assert 0 < total_kept < b * max_det  # suppression happened, and the cap did not hide it everywhere


def test_rotated_nms_equals_fast_nms_on_every_threshold(x64):
    """Class-agnostic candidates straight into ``TorchNMS.fast_nms(iou_func=batch_probiou)``, no cap."""
    rng = np.random.default_rng(3)
    boxes = _clustered_rboxes(rng, 1, 300)[0]
    scores = rng.permutation(300) / 300.0 + 0.001
    for thr in (0.0, 0.1, 0.5, 0.9, 1.0):
        ref = TorchNMS.fast_nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr, iou_func=um.batch_probiou)
        got = _kept(rotated_nms(boxes, scores, iou_threshold=thr, max_detections=300))
        assert got == ref.tolist(), thr


def test_fast_and_greedy_suppression_differ_on_a_chain():
    # ProbIoU(0,1) and ProbIoU(1,2) are high, ProbIoU(0,2) low: Fast-NMS drops 1 and 2, greedy keeps 2.
    boxes = np.array([[0.0, 0, 10, 4, 0], [5.0, 0, 10, 4, 0], [10.0, 0, 10, 4, 0]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    iou = np.asarray(um.batch_probiou(torch.from_numpy(boxes), torch.from_numpy(boxes)))
    thr = 0.4
    assert iou[0, 1] > thr and iou[1, 2] > thr and iou[0, 2] < thr
    assert _kept(rotated_nms(boxes, scores, iou_threshold=thr, max_detections=3)) == [0]
    assert _kept(rotated_nms(boxes, scores, iou_threshold=thr, max_detections=3, suppression="greedy")) == [0, 2]
    # class-aware: 1, of another class, is neither suppressed by 0 nor suppresses 2.
    classes = np.array([0, 1, 0])
    assert _kept(rotated_nms(boxes, scores, classes, iou_threshold=thr, max_detections=3)) == [0, 1, 2]


def _shapely_iou(b1, b2) -> float:
    p, q = (Polygon(np.asarray(uops.xywhr2xyxyxyxy(torch.from_numpy(b[None])))[0]) for b in (b1, b2))
    inter = p.intersection(q).area
    union = p.area + q.area - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("suppression", ["fast", "greedy"])
def test_polygon_iou_nms_matches_a_shapely_reference(x64, suppression):
    rng = np.random.default_rng(11)
    boxes = _clustered_rboxes(rng, 1, 60)[0]
    scores = rng.permutation(60) / 60.0 + 0.01
    classes = rng.integers(0, 2, 60)
    thr = 0.2
    order = np.argsort(-scores, kind="stable")
    kept, dropped = [], set()
    for r, j in enumerate(order):
        if j in dropped:
            continue
        kept.append(int(j))
        for i in order[r + 1:]:
            if classes[i] == classes[j] and _shapely_iou(boxes[j], boxes[i]) > thr:
                dropped.add(int(i))
    if suppression == "fast":  # every higher-ranked candidate suppresses, not only the kept ones
        kept = [int(j) for r, j in enumerate(order)
                if not any(classes[i] == classes[j] and _shapely_iou(boxes[i], boxes[j]) > thr for i in order[:r])]
    got = _kept(rotated_nms(boxes, scores, classes, iou="polygon", suppression=suppression, iou_threshold=thr,
                            max_detections=60))
    assert got == kept
    assert len(kept) < 60


@pytest.mark.parametrize("iou", ["probiou", "polygon"])
@pytest.mark.parametrize("suppression", ["fast", "greedy"])
def test_jit_fixed_sizes_padding_and_batch_axes(iou, suppression):
    rng = np.random.default_rng(5)
    boxes = _clustered_rboxes(rng, 6, 40).astype(np.float32).reshape(2, 3, 40, 5)
    scores = rng.uniform(0, 1, (2, 3, 40)).astype(np.float32)
    classes = rng.integers(0, 2, (2, 3, 40))
    kw = dict(iou=iou, suppression=suppression, iou_threshold=0.3, score_threshold=0.1)
    fn = jax.jit(lambda b, s, c: rotated_nms(b, s, c, max_detections=50, **kw))
    res = fn(boxes, scores, classes)
    assert res.indices.shape == (2, 3, 50) and res.valid.shape == (2, 3, 50)
    assert res.indices.dtype == jnp.int32
    # padding: extra candidates with score -inf (and NaN boxes) change nothing
    pad_boxes = np.concatenate([boxes, np.full((2, 3, 10, 5), np.nan, np.float32)], axis=2)
    pad_scores = np.concatenate([scores, np.full((2, 3, 10), -np.inf, np.float32)], axis=2)
    pad_classes = np.concatenate([classes, np.zeros((2, 3, 10), classes.dtype)], axis=2)
    padded = fn(pad_boxes, pad_scores, pad_classes)
    np.testing.assert_array_equal(padded.indices, res.indices)
    np.testing.assert_array_equal(padded.valid, res.valid)
    single = jax.jit(lambda b, s, c: rotated_nms(b, s, c, max_detections=50, **kw))
    for i in range(2):
        for j in range(3):
            one = single(boxes[i, j], scores[i, j], classes[i, j])
            kept = _kept(one)
            assert kept == _kept(res, (i, j))
            assert np.all(np.diff(scores[i, j][kept]) <= 0) and np.all(scores[i, j][kept] > 0.1)
            assert not np.any(np.asarray(one.indices)[~np.asarray(one.valid)])
    # truncation: the first D kept candidates of the full output
    short = jax.jit(lambda b, s, c: rotated_nms(b, s, c, max_detections=3, **kw))(boxes, scores, classes)
    for i in range(2):
        for j in range(3):
            assert _kept(short, (i, j)) == _kept(res, (i, j))[:3]


def test_fast_nms_blocks_cover_many_candidates(monkeypatch):
    """Fast-NMS over several blocks of ranks (a small block budget) equals one block."""
    import jaxdet.nms as nms_module  # noqa: PLC0415

    rng = np.random.default_rng(9)
    boxes = _clustered_rboxes(rng, 1, 200)[0].astype(np.float32)
    scores = rng.uniform(0, 1, 200).astype(np.float32)
    full = _kept(rotated_nms(boxes, scores, iou_threshold=0.3, max_detections=200))
    monkeypatch.setattr(nms_module, "_FAST_PAIRS_PER_BLOCK", 200 * 7)  # blocks of 7 ranks, the last one padded
    assert _kept(rotated_nms(boxes, scores, iou_threshold=0.3, max_detections=200)) == full
    assert _kept(rotated_nms(boxes, scores, iou_threshold=0.3, max_detections=5)) == full[:5]


_jit_rotated_nms = jax.jit(rotated_nms, static_argnames=("iou", "suppression", "iou_threshold", "max_detections"))


@functools.partial(jax.jit, static_argnames="iou")
def _pairwise_iou(boxes, *, iou):
    if iou == "probiou":
        return probiou_pairwise(boxes, boxes)
    corners = rbox_corners(boxes)
    return convex_polygon_iou(corners[:, None], corners[None, :])


_side = st.sampled_from([0.0, 1e-6, 1.0, 30.0])
_angle = st.sampled_from([-math.pi / 2, 0.0, math.pi / 4, math.pi / 2, math.pi])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0.0, 5.0, 1e4]), st.sampled_from([0.0, 5.0]), _side, _side, _angle),
             min_size=6, max_size=6),
    st.sampled_from(["probiou", "polygon"]),
    st.sampled_from(["fast", "greedy"]),
)
def test_degenerate_boxes_give_valid_output(boxes, iou, suppression):
    boxes = np.asarray(boxes, np.float32)
    n = len(boxes)
    scores = np.linspace(0.9, 0.1, n).astype(np.float32)
    res = _jit_rotated_nms(boxes, scores, iou=iou, suppression=suppression, iou_threshold=0.5, max_detections=n)
    pair = np.asarray(_pairwise_iou(boxes, iou=iou))
    assert np.all(np.isfinite(pair))
    kept = []  # the rule on the IoU matrix, candidates already in decreasing score
    for j in range(n):
        by = kept if suppression == "greedy" else range(j)
        if not any(pair[i, j] > 0.5 for i in by):
            kept.append(j)
    assert _kept(res) == kept and kept[0] == 0


def test_identical_boxes_keep_one_and_zero_area_boxes():
    box = np.array([[3.0, 4.0, 10.0, 2.0, math.pi / 2]], np.float32)
    boxes = np.repeat(box, 4, axis=0)
    scores = np.array([0.2, 0.9, 0.5, 0.7], np.float32)
    for iou in ("probiou", "polygon"):
        assert _kept(rotated_nms(boxes, scores, iou=iou, max_detections=4)) == [1]
    # zero-area boxes: ultralytics' ProbIoU of two points is ~1 whatever their distance (their Gaussians have no
    # spread, so the Bhattacharyya distance is its floor eps), so one suppresses the other; the polygon IoU is 0.
    points = np.array([[0.0, 0, 0, 0, 0], [50.0, 50, 0, 0, 0]], np.float32)
    ref = um.batch_probiou(torch.from_numpy(points), torch.from_numpy(points))
    assert float(ref[0, 1]) > 0.99
    assert _kept(rotated_nms(points, np.array([0.9, 0.8]), max_detections=2)) == [0]
    assert _kept(rotated_nms(points, np.array([0.9, 0.8]), iou="polygon", max_detections=2)) == [0, 1]


def test_rotated_nms_bad_arguments():
    b = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="rboxes"):
        rotated_nms(np.zeros((4, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="scores"):
        rotated_nms(b, np.zeros(3))
    with pytest.raises(ValueError, match="iou"):
        rotated_nms(b, np.zeros(4), iou="giou")
    with pytest.raises(ValueError, match="suppression"):
        rotated_nms(b, np.zeros(4), suppression="soft")
    with pytest.raises(ValueError, match="iou_threshold"):
        rotated_nms(b, np.zeros(4), iou_threshold=1.5)
