"""Tests for jaxdet.metrics: COCO mAP (hand computation), greedy matching, polygon metrics (shapely oracle)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdet.metrics import coco_metrics, match_detections
from jaxdet.nms import Detections


def _gt(boxes, classes, m=4, polygons=None):
    n = len(boxes)
    out = {"boxes": np.zeros((n, m, 4), np.float32), "classes": np.zeros((n, m), np.int32),
           "valid": np.zeros((n, m), bool)}
    if polygons is not None:
        out["polygons"] = np.zeros((n, m) + np.asarray(polygons[0]).shape[1:], np.float32)
    for i, (b, c) in enumerate(zip(boxes, classes)):
        out["boxes"][i, : len(b)] = b
        out["classes"][i, : len(c)] = c
        out["valid"][i, : len(b)] = True
        if polygons is not None:
            out["polygons"][i, : len(b)] = polygons[i]
    return out


def _det(boxes, scores, classes, d=6, polygons=None):
    n = len(boxes)
    out = Detections(np.zeros((n, d, 4), np.float32), np.zeros((n, d), np.float32), np.zeros((n, d), np.int32),
                     np.zeros((n, d), bool), None)
    polys = None
    if polygons is not None:
        polys = np.zeros((n, d) + np.asarray(polygons[0]).shape[1:], np.float32)
    for i in range(n):
        k = len(boxes[i])
        out.boxes[i, :k] = np.reshape(boxes[i], (-1, 4))
        out.scores[i, :k], out.classes[i, :k], out.valid[i, :k] = scores[i], classes[i], True
        if polygons is not None:
            polys[i, :k] = polygons[i]
    return out._replace(polygons=polys)


GT_BOXES = [
    [[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.8]],
    [[0.2, 0.3, 0.6, 0.7]],
    [[0.05, 0.6, 0.3, 0.95], [0.6, 0.1, 0.95, 0.45], [0.4, 0.4, 0.6, 0.6]],
]
GT_CLASSES = [[0, 1], [2], [1, 0, 2]]


def test_coco_perfect_shifted_and_empty():
    gt = _gt(GT_BOXES, GT_CLASSES)
    scores = [[0.9] * len(b) for b in GT_BOXES]
    perfect = coco_metrics(_det(GT_BOXES, scores, GT_CLASSES), gt, image_size=64, num_classes=3)
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["mAP50"] == pytest.approx(1.0)
    assert perfect["per_class_AP"] == pytest.approx([1.0, 1.0, 1.0])
    assert perfect["num_gt"] == 6 and perfect["num_detections"] == 6

    # Shift every box right by 15% of its width: IoU = 0.85/1.15 = 0.739 -> correct at 0.5..0.7, wrong at 0.75+.
    shifted = []
    for img in GT_BOXES:
        b = np.asarray(img, np.float64)
        dx = 0.15 * (b[:, 2] - b[:, 0])
        shifted.append(np.stack([b[:, 0] + dx, b[:, 1], b[:, 2] + dx, b[:, 3]], -1))
    res = coco_metrics(_det(shifted, scores, GT_CLASSES), gt, image_size=64, num_classes=3)
    assert res["mAP50"] == pytest.approx(1.0)
    assert res["mAP75"] == pytest.approx(0.0)
    assert res["mAP"] == pytest.approx(5 / 10)  # thresholds .50 .55 .60 .65 .70 hit, .75 ... .95 miss

    empty = coco_metrics(_det([[], [], []], [[], [], []], [[], [], []]), gt, image_size=64, num_classes=3)
    assert empty["mAP"] == 0.0 and empty["mAP50"] == 0.0 and empty["num_detections"] == 0

    # Wrong class everywhere -> 0.
    wrong = [[(c + 1) % 3 for c in cls] for cls in GT_CLASSES]
    assert coco_metrics(_det(GT_BOXES, scores, wrong), gt, image_size=64, num_classes=3)["mAP"] == 0.0


def test_coco_hand_computed_ap():
    # One class, two GT; detections: TP (0.9), FP (0.8), TP (0.7).
    # PR points: (R .5, P 1), (R .5, P .5), (R 1, P 2/3). Interpolated precision: 1 for R <= .5, 2/3 above.
    # COCO 101-point AP = (51 * 1 + 50 * 2/3) / 101 at every IoU threshold (exact matches).
    gt = _gt([[[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9]]], [[0, 0]])
    det = _det([[[0.1, 0.1, 0.3, 0.3], [0.4, 0.0, 0.5, 0.1], [0.6, 0.6, 0.9, 0.9]]], [[0.9, 0.8, 0.7]], [[0, 0, 0]])
    expected = (51 * 1.0 + 50 * 2.0 / 3.0) / 101
    res = coco_metrics(det, gt, image_size=(100, 200))
    assert res["mAP50"] == pytest.approx(expected, abs=1e-12)
    assert res["mAP"] == pytest.approx(expected, abs=1e-12)
    # Two batches (sequence input) give the same as one concatenated batch.
    split = coco_metrics([det, det], [gt, gt], image_size=(100, 200))
    assert split["num_images"] == 2 and split["mAP50"] == pytest.approx(expected, abs=1e-12)


def test_coco_rejects_misaligned_inputs():
    gt = _gt(GT_BOXES, GT_CLASSES)
    with pytest.raises(ValueError, match="images"):
        coco_metrics(_det(GT_BOXES[:2], [[0.5, 0.5], [0.5]], GT_CLASSES[:2]), gt, image_size=64)


def test_match_detections_greedy_by_score():
    gt_b = np.array([[0, 0, 1, 1], [2, 2, 3, 3]], np.float64)
    det_b = np.array([[0, 0, 1, 0.9], [0, 0, 1, 1], [2, 2, 3, 3.2], [5, 5, 6, 6]], np.float64)
    pairs = match_detections(det_b, np.array([0.5, 0.9, 0.8, 0.7]), np.array([0, 0, 1, 0]), gt_b, np.array([0, 1]))
    assert sorted(pairs) == [(1, 0), (2, 1)]  # det 1 (higher score) takes GT 0; det 0 finds it taken


def _regular(cx, cy, r, k, phase=0.0):
    t = phase - np.pi + (np.arange(k) + 0.5) * 2 * np.pi / k
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], -1)


def test_polygon_metrics_against_shapely():
    pytest.importorskip("shapely")
    from shapely.geometry import Polygon  # noqa: PLC0415 - optional: skipped above without shapely

    k = 8
    gpolys = [np.stack([_regular(0.3, 0.3, 0.15, k), _regular(0.7, 0.7, 0.2, k)])]
    gboxes = [[np.r_[p.min(0), p.max(0)] for p in gpolys[0]]]
    gt = _gt(gboxes, [[0, 1]], polygons=gpolys)
    perfect = coco_metrics(_det(gboxes, [[0.9, 0.8]], [[0, 1]], polygons=gpolys), gt, image_size=128)
    assert perfect["polygon_mIoU"] == pytest.approx(1.0, abs=1e-5)
    assert perfect["polygon_matched"] == 2 and perfect["polygon_recall50"] == 1.0
    assert perfect["segm_mAP50"] == pytest.approx(1.0) and perfect["segm_mAP"] == pytest.approx(1.0)

    # Predicted polygons: shifted and rotated versions; boxes stay matched.
    dpolys = [np.stack([_regular(0.32, 0.3, 0.15, k, 0.2), _regular(0.7, 0.68, 0.18, k)])]
    res = coco_metrics(_det(gboxes, [[0.9, 0.8]], [[0, 1]], polygons=dpolys), gt, image_size=128)
    want = np.mean([Polygon(p).intersection(Polygon(q)).area / Polygon(p).union(Polygon(q)).area
                    for p, q in zip(dpolys[0], gpolys[0])])
    assert res["polygon_mIoU"] == pytest.approx(want, rel=1e-4)
    assert res["segm_mAP"] < 1.0
    assert "polygon_mIoU" not in coco_metrics(_det(gboxes, [[0.9, 0.8]], [[0, 1]]), gt, image_size=128)

