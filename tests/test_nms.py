"""Tests for jaxdet.nms: fixed-size NMS (hand cases + torchvision oracle) and the gathered detections."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.nms import nms, select_detections


def _kept(res) -> list[int]:
    return [int(i) for i in np.asarray(res.indices)[np.asarray(res.valid)]]


# ------------------------------------------------------------------------------------------------------ NMS


def test_nms_hand_built():
    boxes = np.array(
        [
            [0.0, 0.0, 1.0, 1.0],  # 0: score .9, class 0
            [0.0, 0.0, 1.0, 0.9],  # 1: IoU .9 with 0, class 0 -> suppressed
            [0.0, 0.0, 1.0, 0.9],  # 2: same box, class 1 -> kept (class-aware)
            [2.0, 2.0, 3.0, 3.0],  # 3: disjoint -> kept
            [0.0, 0.0, 1.0, 0.4],  # 4: IoU .4 with 0 -> kept at thr .5
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    classes = np.array([0, 0, 1, 0, 0])
    res = nms(boxes, scores, classes, iou_threshold=0.5, max_detections=5)
    assert _kept(res) == [0, 2, 3, 4]
    assert res.indices.shape == (5,) and res.valid.shape == (5,)
    assert not bool(res.valid[4])
    # class-agnostic: 2 is suppressed by 0 as well.
    assert _kept(nms(boxes, scores, None, iou_threshold=0.5, max_detections=5)) == [0, 3, 4]
    # strict '>': IoU exactly 0.4 is kept at threshold 0.4.
    assert _kept(nms(boxes, scores, classes, iou_threshold=0.4, max_detections=5)) == [0, 2, 3, 4]
    assert _kept(nms(boxes, scores, classes, iou_threshold=0.39, max_detections=5)) == [0, 2, 3]
    # score threshold and truncation to max_detections.
    assert _kept(nms(boxes, scores, classes, iou_threshold=0.5, score_threshold=0.55, max_detections=5)) == [0, 2, 3]
    assert _kept(nms(boxes, scores, classes, iou_threshold=0.5, max_detections=2)) == [0, 2]
    # output larger than the number of candidates is padded.
    res = nms(boxes, scores, classes, iou_threshold=0.5, max_detections=8)
    assert res.indices.shape == (8,) and _kept(res) == [0, 2, 3, 4]
    # unsorted input: the order of the output follows the scores.
    perm = np.array([4, 2, 0, 3, 1])
    res = nms(boxes[perm], scores[perm], classes[perm], iou_threshold=0.5, max_detections=5)
    assert [int(perm[i]) for i in _kept(res)] == [0, 2, 3, 4]


def test_nms_suppression_chain_is_greedy():
    # 0 suppresses 1; 1 would suppress 2, but 1 is gone, so 2 survives (greedy, not a matrix shortcut).
    boxes = np.array([[0.0, 0, 1, 1], [0.3, 0, 1.3, 1], [0.6, 0, 1.6, 1]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    # IoU(0,1) = .7/1.3 = .538, IoU(1,2) = .538, IoU(0,2) = .4/1.6 = .25
    assert _kept(nms(boxes, scores, None, iou_threshold=0.5, max_detections=3)) == [0, 2]


def test_nms_matches_torchvision_batched_nms():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    n, a = 6, 80
    xy = rng.uniform(0, 1, (n, a, 2))
    wh = rng.uniform(0.02, 0.5, (n, a, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (n, a)).astype(np.float32)
    classes = rng.integers(0, 3, (n, a))
    agnostic = jax.jit(lambda b, s, thr: nms(b, s, None, iou_threshold=thr, max_detections=a))
    for thr in (0.3, 0.5, 0.7):
        res = jax.jit(lambda b, s, c: nms(b, s, c, iou_threshold=thr, max_detections=a))(boxes, scores, classes)
        agn_all = agnostic(boxes, scores, thr)
        for i in range(n):
            ref = torchvision.ops.batched_nms(
                torch.from_numpy(boxes[i]), torch.from_numpy(scores[i]), torch.from_numpy(classes[i]), thr
            ).numpy()
            got = np.asarray(res.indices[i])[np.asarray(res.valid[i])]
            np.testing.assert_array_equal(got, ref)
            # class-agnostic version against torchvision.ops.nms
            agn = jax.tree.map(lambda x: x[i], agn_all)
            ref_agn = torchvision.ops.nms(torch.from_numpy(boxes[i]), torch.from_numpy(scores[i]), thr).numpy()
            np.testing.assert_array_equal(_kept(agn), ref_agn)
    # pre_nms_top_k: equals torchvision on the top-k candidates.
    k = 30
    res = nms(boxes, scores, classes, iou_threshold=0.5, max_detections=a, pre_nms_top_k=k)
    for i in range(n):
        top = np.argsort(-scores[i])[:k]
        ref = torchvision.ops.batched_nms(
            torch.from_numpy(boxes[i][top]), torch.from_numpy(scores[i][top]), torch.from_numpy(classes[i][top]), 0.5
        ).numpy()
        np.testing.assert_array_equal(np.asarray(res.indices[i])[np.asarray(res.valid[i])], top[ref])


def test_nms_bad_arguments():
    b = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="scores"):
        nms(b, np.zeros(3), max_detections=2)
    with pytest.raises(ValueError, match="max_detections"):
        nms(b, np.zeros(4), max_detections=0)
    with pytest.raises(ValueError, match="boxes"):
        nms(np.zeros((4, 3)), np.zeros(4))


def test_select_detections_gathers_and_pads():
    boxes = jnp.asarray([[[0.0, 0, 0.5, 0.5], [0.0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]])
    scores = jnp.asarray([[0.2, 0.9, 0.6]])
    classes = jnp.asarray([[1, 1, 2]])
    polys = jnp.arange(3 * 4 * 2, dtype=jnp.float32).reshape(1, 3, 4, 2)
    det = select_detections(boxes, scores, classes, polys, iou_threshold=0.5, max_detections=4)
    np.testing.assert_array_equal(det.valid, [[True, True, False, False]])
    np.testing.assert_allclose(det.scores, [[0.9, 0.6, 0.0, 0.0]])
    np.testing.assert_array_equal(det.classes, [[1, 2, 0, 0]])
    np.testing.assert_allclose(det.polygons[0, 0], polys[0, 1])
    np.testing.assert_allclose(det.polygons[0, 1], polys[0, 2])
    np.testing.assert_allclose(det.boxes[0, 2:], 0.0)
