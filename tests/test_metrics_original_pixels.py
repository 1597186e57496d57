"""Evaluation in original image pixels (letterboxed, non-square images), the per-class table and the IoU-0.5
precision arrays, each checked against faster-coco-eval run independently on pixel boxes built here."""

from __future__ import annotations

import numpy as np
import pytest
from faster_coco_eval import COCO, COCOeval_faster

from jaxdet.data.letterbox import boxes_to_original, letterbox_params, letterbox_points
from jaxdet.metrics import coco_metrics
from jaxdet.nms import Detections
from train.tables import per_class_rows

SIZE = (64, 64)  # network input (H, W)
ORIG = [(100, 200), (300, 120), (64, 64)]  # original (h, w): wide, tall, square
# Original-pixel GT boxes (xyxy) per image and their classes.
GT_PIX = [
    [[10.0, 20.0, 50.0, 60.0], [120.0, 10.0, 190.0, 95.0]],  # 40x40 (medium), 70x85 (medium)
    [[5.0, 30.0, 115.0, 250.0], [20.0, 260.0, 40.0, 290.0]],  # 110x220 (large), 20x30 (small)
    [[8.0, 8.0, 40.0, 50.0]],
]
GT_CLS = [[0, 1], [2, 0], [1]]
M = 3


def _letterboxed_batch():
    """GT normalised on the letterboxed 64x64 images, with orig_size / ratio_pad, as a jaxdet batch."""
    n = len(ORIG)
    batch = {"boxes": np.zeros((n, M, 4), np.float32), "classes": np.zeros((n, M), np.int32),
             "valid": np.zeros((n, M), bool), "orig_size": np.array(ORIG, np.int32),
             "ratio_pad": np.zeros((n, 4), np.float32)}
    for i, ((h, w), boxes, cls) in enumerate(zip(ORIG, GT_PIX, GT_CLS)):
        _, rp = letterbox_params((h, w), SIZE)
        batch["ratio_pad"][i] = rp
        norm = (np.asarray(boxes) / np.array([w, h, w, h])).reshape(-1, 2, 2)
        lb = letterbox_points(norm, orig_size=(h, w), ratio_pad=rp, size=SIZE).reshape(-1, 4)
        batch["boxes"][i, : len(lb)], batch["classes"][i, : len(cls)], batch["valid"][i, : len(lb)] = lb, cls, True
    return batch


def _detections(boxes, scores, classes, valid):
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                      np.asarray(classes, np.int32), np.asarray(valid, bool))


def test_gt_boxes_survive_the_letterbox_round_trip():
    batch = _letterboxed_batch()
    back = boxes_to_original(batch["boxes"], ratio_pad=batch["ratio_pad"], orig_size=batch["orig_size"], size=SIZE)
    for i, boxes in enumerate(GT_PIX):
        np.testing.assert_allclose(back[i, : len(boxes)], boxes, atol=2e-3)  # float32 letterboxed coordinates


def test_perfect_letterboxed_prediction_is_perfect_in_original_pixels():
    batch = _letterboxed_batch()
    det = _detections(batch["boxes"], np.where(batch["valid"], 0.9, 0.0), batch["classes"], batch["valid"])
    res = coco_metrics(det, batch, image_size=SIZE, num_classes=3)
    assert res["mAP"] == pytest.approx(1.0) and res["mAP50"] == pytest.approx(1.0)
    # COCO's area ranges are in original pixels: one small (20x30) GT, medium and large ones. In the 64 px
    # letterboxed images every box would be "small" (< 32² px), so AP_medium / AP_large would be -1 there.
    assert res["stats"]["AP_small"] == pytest.approx(1.0)
    assert res["stats"]["AP_medium"] == pytest.approx(1.0) and res["stats"]["AP_large"] == pytest.approx(1.0)
    # Without the mapping (boxes scaled to the 64x64 input) the same detections have no medium/large GT.
    plain = {k: v for k, v in batch.items() if k not in ("orig_size", "ratio_pad")}
    assert coco_metrics(det, plain, image_size=SIZE, num_classes=3)["stats"]["AP_large"] == -1.0


def test_detections_in_the_padding_are_clipped_to_the_original_image():
    batch = _letterboxed_batch()
    # Image 0 (100x200 -> content 32 px tall at rows 16..48): a prediction reaching into the grey padding
    # maps back beyond the image and is clipped to it, so it still matches the GT touching the edge.
    h, w = ORIG[0]
    _, rp = letterbox_params((h, w), SIZE)
    gt_pix = np.array([[0.0, 0.0, 60.0, 100.0]])  # touches the top and bottom edges
    lb = letterbox_points((gt_pix / [w, h, w, h]).reshape(-1, 2, 2), orig_size=(h, w), ratio_pad=rp,
                          size=SIZE).reshape(-1, 4)
    one = {k: v[:1].copy() for k, v in batch.items()}
    one["boxes"][0, :1], one["classes"][0, :1], one["valid"][0] = lb, 0, [True, False, False]
    into_pad = lb.copy()
    into_pad[0, 1] -= 10 / 64  # 10 letterboxed pixels above the content
    into_pad[0, 3] += 10 / 64
    det = _detections(into_pad[None], [[0.9]], [[0]], [[True]])
    assert coco_metrics(det, one, image_size=SIZE, num_classes=1)["mAP"] == pytest.approx(1.0)


def _independent_coco(det_pix, gt_pix, num_classes, sizes, cat):
    """faster-coco-eval on pixel boxes built here, restricted to one category (params.catIds)."""
    images = [{"id": i + 1, "height": h, "width": w} for i, (h, w) in enumerate(sizes)]
    anns, dets = [], []
    for i, (boxes, cls) in enumerate(gt_pix):
        for b, c in zip(boxes, cls):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                         "iscrowd": 0})
    for i, (boxes, scores, cls) in enumerate(det_pix):
        for b, s, c in zip(boxes, scores, cls):
            dets.append({"image_id": i + 1, "category_id": int(c) + 1,
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                         "score": float(s)})
    gt = COCO({"images": images, "annotations": anns,
               "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]})
    ev = COCOeval_faster(gt, gt.loadRes(dets), iouType="bbox", print_function=lambda *a, **k: None)
    ev.params.catIds = [cat + 1]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def _noisy_scene(seed):
    """Letterboxed GT batch plus noisy detections (shifted GT copies, wrong classes, random boxes)."""
    rng = np.random.default_rng(seed)
    batch = _letterboxed_batch()
    n, d = len(ORIG), 8
    boxes = np.zeros((n, d, 4), np.float32)
    scores = rng.uniform(0.05, 1.0, (n, d)).astype(np.float32)
    classes = rng.integers(0, 3, (n, d)).astype(np.int32)
    valid = np.ones((n, d), bool)
    for i in range(n):
        k = int(batch["valid"][i].sum())
        boxes[i, :k] = batch["boxes"][i, :k] + rng.normal(0, 0.02, (k, 4))
        classes[i, :k] = np.where(rng.uniform(size=k) < 0.8, batch["classes"][i, :k], classes[i, :k])
        xy = rng.uniform(0, 0.8, (d - k, 2))
        boxes[i, k:] = np.concatenate([xy, xy + rng.uniform(0.05, 0.2, (d - k, 2))], -1)
    return batch, _detections(boxes, scores, classes, valid)


def test_per_class_table_and_precision_agree_with_faster_coco_eval_per_category():
    batch, det = _noisy_scene(0)
    res = coco_metrics(det, batch, image_size=SIZE, num_classes=3)
    det_pix = boxes_to_original(det.boxes, ratio_pad=batch["ratio_pad"], orig_size=batch["orig_size"], size=SIZE)
    det_pix = [(det_pix[i], det.scores[i], det.classes[i]) for i in range(len(ORIG))]
    rows = per_class_rows(res, class_names=["a", "b", "c"])
    assert [r["class"] for r in rows] == ["all", "a", "b", "c"]
    assert rows[0]["images"] == 3 and rows[0]["instances"] == 5
    assert [(r["images"], r["instances"]) for r in rows[1:]] == [(2, 2), (2, 2), (1, 1)]  # counted from GT_CLS
    for k in range(3):
        ev = _independent_coco(det_pix, list(zip(GT_PIX, GT_CLS)), 3, ORIG, k)
        assert rows[1 + k]["AP50"] == pytest.approx(ev.stats_as_dict["AP_50"], abs=1e-9)
        assert rows[1 + k]["AP50-95"] == pytest.approx(ev.stats_as_dict["AP_all"], abs=1e-9)
        np.testing.assert_allclose(res["precision50"][k], ev.eval["precision"][0, :, 0, 0, -1], atol=1e-12)
    have = [r["AP50"] for r in rows[1:] if r["AP50"] >= 0]
    assert rows[0]["AP50"] == pytest.approx(np.mean(have), abs=1e-12)  # "all" = mean over classes with GT


def test_identity_mapping_gives_the_same_metrics_as_plain_scaling():
    # Synthetic images carry the identity (orig_size = image size, ratio_pad = (1, 1, 0, 0)): bit-identical.
    batch, det = _noisy_scene(1)
    plain = {k: v for k, v in batch.items() if k not in ("orig_size", "ratio_pad")}
    ident = dict(plain, orig_size=np.tile(np.array(SIZE, np.int32), (len(ORIG), 1)),
                 ratio_pad=np.tile(np.array([1, 1, 0, 0], np.float32), (len(ORIG), 1)))
    a = coco_metrics(det, plain, image_size=SIZE, num_classes=3)
    b = coco_metrics(det, ident, image_size=SIZE, num_classes=3)
    assert a["stats"] == b["stats"] and a["per_class"] == b["per_class"]
    np.testing.assert_array_equal(a["precision50"], b["precision50"])


def test_max_detections_raises_coco_max_dets():
    # 150 detections in one image, the true one ranked last: COCO's maxDets=100 never sees it.
    batch = _letterboxed_batch()
    one = {k: v[2:3] for k, v in batch.items()}
    far = np.tile([[0.9, 0.9, 0.95, 0.95]], (150, 1)).astype(np.float32)
    far[-1] = one["boxes"][0, 0]
    scores = np.linspace(0.9, 0.1, 150, dtype=np.float32)
    det = _detections(far[None], scores[None], np.full((1, 150), 1), np.ones((1, 150), bool))
    assert coco_metrics(det, one, image_size=SIZE, num_classes=3)["mAP50"] == 0.0
    res = coco_metrics(det, one, image_size=SIZE, num_classes=3, max_detections=150)
    assert res["mAP50"] > 0.0 and "AR150" in res
