"""Tests of jaxdet.assign: YOLOv1 grid assignment, responsible predictor, SSD matching and box coding.

Oracles: hand-built cases with values worked out by hand, and torchvision's own ``SSDMatcher`` / ``BoxCoder``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torchvision.models.detection import _utils as tv_det_utils
from torchvision.ops import box_iou as tv_box_iou

from jaxdet import assign
from jaxdet.assign import (
    ssd_decode,
    ssd_encode,
    ssd_match,
    yolov1_cell_index,
    yolov1_grid_assign,
    yolov1_responsible_predictor,
)

# ------------------------------------------------------------------------------------------------- YOLOv1


def test_cell_index_hand_cases():
    boxes = jnp.array(
        [
            [0.4, 0.4, 0.6, 0.6],  # centre (0.5, 0.5): floor(3.5) = 3
            [0.0, 0.0, 0.0, 0.0],  # centre (0, 0): cell (0, 0)
            [0.9, 0.2, 1.0, 0.3],  # centre (0.95, 0.25): col floor(6.65)=6, row floor(1.75)=1
            [1.0, 1.0, 1.0, 1.0],  # centre on the far border: clipped to the last cell
        ]
    )
    row, col = yolov1_cell_index(boxes, grid_size=7)
    np.testing.assert_array_equal(row, [3, 0, 1, 6])
    np.testing.assert_array_equal(col, [3, 0, 6, 6])


def test_grid_assign_hand_case_and_first_box_wins():
    s = 4
    gt_boxes = jnp.array(
        [
            [0.10, 0.60, 0.30, 0.80],  # centre (0.2, 0.7): col 0, row 2, offsets (0.8, 0.8)
            [0.55, 0.05, 0.65, 0.15],  # centre (0.6, 0.1): col 2, row 0 — padded, must be ignored
            [0.30, 0.80, 0.40, 0.90],  # centre (0.35, 0.85): col 1, row 3, offsets (0.4, 0.4)
            [0.12, 0.62, 0.20, 0.70],  # centre (0.16, 0.66): same cell as box 0 → box 0 wins
            [0.00, 0.50, 0.48, 0.98],  # centre (0.24, 0.74): same cell as box 0 → box 0 wins
        ]
    )
    gt_classes = jnp.array([3, 1, 2, 0, 4], jnp.int32)
    gt_valid = jnp.array([True, False, True, True, True])
    t = yolov1_grid_assign(gt_boxes, gt_classes, gt_valid, grid_size=s)
    expected_obj = np.zeros((s, s), bool)
    expected_obj[2, 0] = True
    expected_obj[3, 1] = True
    np.testing.assert_array_equal(t.has_object, expected_obj)
    np.testing.assert_array_equal(t.gt_index[2, 0], 0)
    np.testing.assert_array_equal(t.gt_index[3, 1], 2)
    assert int(t.gt_index[0, 2]) == -1  # the padded box's cell stays empty
    np.testing.assert_allclose(t.boxes[2, 0], gt_boxes[0])
    assert int(t.classes[2, 0]) == 3 and int(t.classes[3, 1]) == 2
    np.testing.assert_allclose(t.offsets[2, 0], [0.8, 0.8], atol=1e-6)
    np.testing.assert_allclose(t.offsets[3, 1], [0.4, 0.4], atol=1e-6)
    np.testing.assert_array_equal(t.boxes[~expected_obj], 0)


def test_grid_assign_first_valid_box_wins_when_first_is_padding():
    gt_boxes = jnp.array([[0.1, 0.1, 0.2, 0.2], [0.12, 0.12, 0.18, 0.18], [0.11, 0.11, 0.19, 0.19]])
    gt_classes = jnp.array([0, 1, 2], jnp.int32)
    t = yolov1_grid_assign(gt_boxes, gt_classes, jnp.array([False, True, True]), grid_size=3)
    assert int(t.gt_index[0, 0]) == 1 and int(t.classes[0, 0]) == 1
    assert int(t.has_object.sum()) == 1


def test_grid_assign_all_padded_and_batched():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.8, (2, 3, 5, 2))
    gt_boxes = np.concatenate([xy, xy + 0.2], -1).astype(np.float32)
    gt_classes = rng.integers(0, 4, (2, 3, 5)).astype(np.int32)
    gt_valid = rng.uniform(size=(2, 3, 5)) < 0.6
    gt_valid[1, 2] = False
    t = jax.jit(lambda b, c, v: yolov1_grid_assign(b, c, v, grid_size=5))(gt_boxes, gt_classes, gt_valid)
    assert t.has_object.shape == (2, 3, 5, 5) and t.boxes.shape == (2, 3, 5, 5, 4)
    assert not bool(t.has_object[1, 2].any())
    for i in range(2):
        for j in range(3):
            single = yolov1_grid_assign(gt_boxes[i, j], gt_classes[i, j], gt_valid[i, j], grid_size=5)
            for got, want in zip(t, single):  # jit may fuse the float offsets differently: 1 ulp
                np.testing.assert_allclose(got[i, j], want, rtol=1e-6, atol=1e-7)


def test_responsible_predictor_max_iou_ties_and_distance_fallback():
    target = jnp.array([0.0, 0.0, 1.0, 1.0])
    # IoU 0.25 vs 0.5 → predictor 1.
    pred = jnp.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 0.5]])
    index, iou = yolov1_responsible_predictor(pred, target, eps=0.0)
    assert int(index) == 1
    np.testing.assert_allclose(iou, [0.25, 0.5])
    # Equal IoU → lowest index.
    pred = jnp.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    assert int(yolov1_responsible_predictor(pred, target)[0]) == 0
    # No overlap at all → the box closest in (cx, cy, w, h): predictor 1.
    target = jnp.array([0.0, 0.0, 0.1, 0.1])
    pred = jnp.array([[0.8, 0.8, 0.9, 0.9], [0.2, 0.2, 0.3, 0.3]])
    assert int(yolov1_responsible_predictor(pred, target)[0]) == 1


def test_grid_assign_errors_name_argument():
    boxes = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="gt_valid"):
        yolov1_grid_assign(boxes, jnp.zeros(3, jnp.int32), jnp.ones(4, bool), grid_size=7)
    with pytest.raises(ValueError, match="gt_valid"):
        yolov1_grid_assign(boxes, jnp.zeros(3, jnp.int32), jnp.ones(3, jnp.int32), grid_size=7)
    with pytest.raises(ValueError, match="gt_classes"):
        yolov1_grid_assign(boxes, jnp.zeros(3), jnp.ones(3, bool), grid_size=7)
    with pytest.raises(ValueError, match="gt_boxes"):
        yolov1_grid_assign(jnp.zeros((3, 5)), jnp.zeros(3, jnp.int32), jnp.ones(3, bool), grid_size=7)
    with pytest.raises(ValueError, match="grid_size"):
        yolov1_grid_assign(boxes, jnp.zeros(3, jnp.int32), jnp.ones(3, bool), grid_size=0)


# ---------------------------------------------------------------------------------------------------- SSD


def _anchors(grid: int = 5) -> np.ndarray:
    c = (np.stack(np.meshgrid(np.arange(grid), np.arange(grid)), -1).reshape(-1, 2) + 0.5) / grid
    out = [np.concatenate([c - s / 2, c + s / 2], -1) for s in (0.2, 0.4)]
    return np.concatenate(out, 0)


def _torchvision_match(anchors: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    idx = np.nonzero(valid)[0]
    if idx.size == 0:
        return np.full(len(anchors), -1)
    matcher = tv_det_utils.SSDMatcher(0.5)
    m = matcher(tv_box_iou(torch.from_numpy(gt[idx]), torch.from_numpy(anchors))).numpy()
    return np.where(m >= 0, idx[np.maximum(m, 0)], m)


@pytest.mark.parametrize("seed", range(8))
def test_ssd_match_equals_torchvision_ssd_matcher(seed, x64):
    # float64 on both sides: symmetric priors give geometrically tied IoUs, which float32 rounding breaks
    # differently from torch's float64.
    rng = np.random.default_rng(seed)
    anchors = _anchors()
    n, m = 3, 7
    centre = rng.uniform(0.05, 0.95, (n, m, 2))
    size = rng.uniform(0.02, 0.6, (n, m, 2))
    gt = np.concatenate([centre - size / 2, centre + size / 2], -1)
    valid = rng.uniform(size=(n, m)) < 0.7
    valid[0, 0] = False  # padding first
    valid[2] = False  # all padded
    ours = np.asarray(jax.jit(ssd_match)(anchors, gt, valid))
    for i in range(n):
        np.testing.assert_array_equal(ours[i], _torchvision_match(anchors, gt[i], valid[i]))
    assert (ours[2] == -1).all()


def test_ssd_match_hand_cases():
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0], [0.5, 0.0, 1.0, 0.5]])
    gt = np.array(
        [
            [0.0, 0.0, 0.5, 0.5],  # = anchor 0 (IoU 1)
            [0.6, 0.6, 0.7, 0.7],  # tiny in anchor 1: IoU 0.04 < 0.5, still claims anchor 1 (its best prior)
            [0.0, 0.0, 0.5, 0.5],  # padded copy of anchor 0: must not be matched
            [0.5, 0.0, 1.0, 0.45],  # IoU 0.9 with anchor 3
        ]
    )
    valid = np.array([True, True, False, True])
    np.testing.assert_array_equal(ssd_match(anchors, gt, valid), [0, 1, -1, 3])
    # Two ground truths whose best prior is the same: the higher index wins, as torchvision's write order.
    gt2 = np.array([[0.0, 0.0, 0.45, 0.45], [0.0, 0.0, 0.4, 0.5]])
    ours = np.asarray(ssd_match(anchors, gt2, np.array([True, True])))
    assert ours[0] == 1
    np.testing.assert_array_equal(ours, _torchvision_match(anchors, gt2, np.array([True, True])))


def _match_both_paths(anchors, gt, valid):

    m = gt.shape[-2]
    flat_gt, flat_valid = gt.reshape(-1, m, 4), valid.reshape(-1, m)
    per_object = jax.jit(assign._ssd_match_per_object, static_argnums=3)(anchors, flat_gt, flat_valid, 0.5)
    batched = jax.jit(assign._ssd_match_batched, static_argnums=3)(anchors, flat_gt, flat_valid, 0.5)
    assert per_object.dtype == batched.dtype == jnp.int32
    return np.asarray(per_object), np.asarray(batched)


@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
def test_ssd_match_per_object_path_equals_torchvision_on_ties(lead, x64):
    """The CPU path (one ground-truth slot at a time, best priors searched block by block) equals torchvision's
    SSDMatcher with duplicated ground truth, boxes equal to priors, symmetric priors (geometric IoU ties) and
    padding, and ssd_match returns it in the input's leading shape. (The whole-batch GPU path breaks an
    occasional geometric tie of this data differently: its fused IoU rounds differently; general position is
    tested below.)"""
    rng = np.random.default_rng(11)
    anchors = _anchors(6)
    m = 9
    centre = rng.uniform(0.05, 0.95, (*lead, m, 2))
    size = rng.uniform(0.02, 0.6, (*lead, m, 2))
    gt = np.concatenate([centre - size / 2, centre + size / 2], -1)
    gt[..., 1, :] = gt[..., 0, :]  # a duplicate: both claim the same best prior
    gt[..., 2, :] = anchors[7]  # exactly a prior
    valid = rng.uniform(size=(*lead, m)) < 0.8
    per_object, _ = _match_both_paths(anchors, gt, valid)
    flat_gt, flat_valid = gt.reshape(-1, m, 4), valid.reshape(-1, m)
    for i in range(len(flat_gt)):
        np.testing.assert_array_equal(per_object[i], _torchvision_match(anchors, flat_gt[i], flat_valid[i]))
    ours = jax.jit(ssd_match)(anchors, gt, valid)
    assert ours.shape == (*lead, len(anchors))
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(np.asarray(ours).reshape(-1, len(anchors)), per_object)
    assert (per_object >= 0).any()


def test_ssd_match_per_object_best_prior_ties_across_blocks_go_to_the_lowest_prior(x64):
    """More priors than one search block (and not a multiple of it): a ground truth whose best IoU is reached by
    priors in two blocks, and by two priors in one block, claims the lowest of them, as torchvision's argmax."""

    block = assign._PRIOR_BLOCK
    rng = np.random.default_rng(13)
    xy = rng.uniform(0, 0.5, (2 * block + 37, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(0.3, 0.5, xy.shape)], -1)
    target = np.array([0.6, 0.6, 0.65, 0.66])  # far from every random prior: its best IoU is with the copies
    for i in (block + 40, 2 * block + 5, block + 90):  # copies of one prior in the 2nd block (twice) and the 3rd
        anchors[i] = [0.55, 0.55, 0.7, 0.7]
    gt = np.stack([target, [0.1, 0.1, 0.5, 0.5], target])[None]  # [1, 3, 4]; slot 2 is padding
    valid = np.array([[True, True, False]])
    per_object, batched = _match_both_paths(anchors, gt, valid)
    np.testing.assert_array_equal(per_object[0], _torchvision_match(anchors, gt[0], valid[0]))
    np.testing.assert_array_equal(per_object, batched)
    assert per_object[0, block + 40] == 0 and per_object[0, block + 90] != 0


def test_ssd_match_paths_bit_identical_float32():
    """float32, priors and ground truth in general position (no geometric IoU ties), 20 slots per image."""
    rng = np.random.default_rng(12)
    xy = rng.uniform(0, 0.8, (500, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(0.05, 0.4, (500, 2))], -1).astype(np.float32)
    centre = rng.uniform(0.05, 0.95, (8, 20, 2))
    size = rng.uniform(0.05, 0.5, (8, 20, 2))
    gt = np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0, 1).astype(np.float32)
    valid = np.arange(20)[None] < rng.integers(1, 21, (8, 1))
    per_object, batched = _match_both_paths(anchors, gt, valid)
    np.testing.assert_array_equal(per_object, batched)
    assert (per_object >= 0).sum() > 100


def test_ssd_match_errors_name_argument():
    with pytest.raises(ValueError, match="anchors"):
        ssd_match(np.zeros((2, 3, 4)), np.zeros((2, 4)), np.ones(2, bool))
    with pytest.raises(ValueError, match="gt_valid"):
        ssd_match(np.zeros((3, 4)), np.zeros((2, 4)), np.ones(3, bool))
    with pytest.raises(ValueError, match="gt_boxes"):
        ssd_match(np.zeros((3, 4)), np.zeros((2,)), np.ones(2, bool))
    with pytest.raises(ValueError, match="gt_boxes"):
        ssd_match(np.zeros((3, 4)), np.zeros((0, 4)), np.ones(0, bool))


def test_ssd_encode_decode_equal_torchvision_box_coder(x64):
    rng = np.random.default_rng(1)
    anchors = _anchors()
    centre = rng.uniform(0.1, 0.9, (len(anchors), 2))
    size = rng.uniform(0.05, 0.5, (len(anchors), 2))
    gt = np.concatenate([centre - size / 2, centre + size / 2], -1)
    coder = tv_det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    want = coder.encode_single(torch.from_numpy(gt), torch.from_numpy(anchors)).numpy()
    codes = ssd_encode(jnp.asarray(gt), jnp.asarray(anchors))
    np.testing.assert_allclose(codes, want, rtol=1e-13, atol=1e-13)
    rel = rng.normal(0, 3, (len(anchors), 4))
    rel[0, 2] = 100.0  # clipped at log(1000/16)
    want_boxes = coder.decode_single(torch.from_numpy(rel), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(ssd_decode(jnp.asarray(rel), jnp.asarray(anchors)), want_boxes, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ssd_decode(codes, jnp.asarray(anchors)), gt, rtol=1e-12, atol=1e-12)


def test_ssd_encode_zero_size_box_is_finite():
    anchors = jnp.array([[0.0, 0.0, 0.5, 0.5]])
    gt = jnp.array([[0.2, 0.2, 0.2, 0.2]])
    codes = ssd_encode(gt, anchors)
    assert np.isfinite(np.asarray(codes)).all()
    np.testing.assert_allclose(codes[0, 2], 5 * math.log(1e-12 / 0.5), rtol=1e-5)
