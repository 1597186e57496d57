"""Tests of jaxdet.rotated_metrics against ultralytics' OBB validation (``OBBValidator._process_batch`` with
``batch_probiou``, ``match_predictions``, ``DetMetrics`` / ``ap_per_class``), number by number on the same
predictions, and hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ultralytics.models.yolo.obb.val import OBBValidator
from ultralytics.utils.metrics import DetMetrics
from ultralytics.utils.metrics import ap_per_class as ultralytics_ap_per_class

from jaxdet.metrics import RECALL_THRESHOLDS
from jaxdet.nms import Detections
from jaxdet.rotated_metrics import IOU_THRESHOLDS, APResult, ap_per_class, match_predictions, obb_metrics
from train import eval_report, tables


def _validator() -> OBBValidator:
    """The parts of an ``OBBValidator`` that ``_process_batch`` and ``match_predictions`` read."""
    v = OBBValidator.__new__(OBBValidator)
    v.iouv = torch.linspace(0.5, 0.95, 10)
    v.niou = v.iouv.numel()
    return v


def _random_split(rng, n, m, d, c, dtype):
    """Padded normalised GT and detections: detections near the GT (jittered, some of the wrong class) and
    random ones; image 1 has no GT, image 2 no detections, image 3 neither."""
    gt = np.zeros((n, m, 5))
    gt[..., :2] = rng.uniform(0.15, 0.85, (n, m, 2))
    gt[..., 2:4] = rng.uniform(0.03, 0.25, (n, m, 2))
    gt[..., 4] = rng.uniform(-math.pi / 4, 3 * math.pi / 4, (n, m))
    gcls = rng.integers(0, c, (n, m))
    gval = rng.uniform(size=(n, m)) < 0.7
    gval[1] = gval[3] = False
    src = rng.integers(0, m, (n, d))
    boxes = np.take_along_axis(gt, src[..., None], axis=1)
    boxes[..., :2] += rng.normal(0, 0.01, (n, d, 2))
    boxes[..., 2:4] *= rng.uniform(0.7, 1.3, (n, d, 2))
    boxes[..., 4] += rng.normal(0, 0.2, (n, d))
    rand = rng.uniform(size=(n, d)) < 0.3
    boxes[rand, :2] = rng.uniform(0.1, 0.9, (rand.sum(), 2))
    dcls = np.where(rng.uniform(size=(n, d)) < 0.8, np.take_along_axis(gcls, src, axis=1), rng.integers(0, c, (n, d)))
    scores = rng.uniform(0.01, 1.0, (n, d)).astype(np.float32)
    dval = rng.uniform(size=(n, d)) < 0.8
    dval[2] = dval[3] = False
    det = Detections(boxes.astype(dtype), scores, dcls.astype(np.int32), dval)
    return det, {"rboxes": gt.astype(dtype), "classes": gcls.astype(np.int32), "valid": gval}


def _ultralytics_metrics(det, gt, scale, names):
    """ultralytics' validator steps on the same detections: per image ``_process_batch`` (pixels) and
    ``DetMetrics.update_stats``, then ``process``."""
    v, metrics = _validator(), DetMetrics(names=names)
    for i in range(det.boxes.shape[0]):
        di = np.flatnonzero(det.valid[i])
        di = di[np.argsort(-det.scores[i, di], kind="stable")]  # NMS output: decreasing score
        gi = np.flatnonzero(gt["valid"][i])
        preds = {"bboxes": torch.from_numpy(det.boxes[i, di] * scale), "conf": torch.from_numpy(det.scores[i, di]),
                 "cls": torch.from_numpy(det.classes[i, di].astype(np.float32))}
        batch = {"bboxes": torch.from_numpy(gt["rboxes"][i, gi] * scale),
                 "cls": torch.from_numpy(gt["classes"][i, gi].astype(np.float32))}
        cls = batch["cls"].numpy()
        metrics.update_stats({
            **v._process_batch(preds, batch), "target_cls": cls, "target_img": np.unique(cls),
            "conf": preds["conf"].numpy(), "pred_cls": preds["cls"].numpy(), "im_name": f"{i}.jpg",
        })
    metrics.process()
    return metrics


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_obb_metrics_match_ultralytics_number_by_number(x64, dtype):
    rng = np.random.default_rng(0)
    n, m, d, c = 8, 12, 40, 5
    det, gt = _random_split(rng, n, m, d, c, dtype)
    h, w = 480, 640
    scale = np.array([w, h, w, h, 1.0], dtype)
    ref = _ultralytics_metrics(det, gt, scale, {k: str(k) for k in range(c)})
    box = ref.box
    out = obb_metrics(det, gt, image_size=(h, w), num_classes=c)
    res = APResult(**out["ap_per_class"])
    assert len(box.ap_class_index) >= 3 and box.map50 > 0.1  # a real evaluation: matches at several IoUs
    np.testing.assert_array_equal(res.classes, box.ap_class_index)
    np.testing.assert_array_equal(res.ap, box.all_ap)
    np.testing.assert_array_equal(res.precision, box.p)
    np.testing.assert_array_equal(res.recall, box.r)
    np.testing.assert_array_equal(res.f1, box.f1)
    np.testing.assert_array_equal(res.p_curve, box.p_curve)
    np.testing.assert_array_equal(res.r_curve, box.r_curve)
    np.testing.assert_array_equal(res.f1_curve, box.f1_curve)
    np.testing.assert_array_equal(res.pr_curve, box.prec_values)
    assert out["mAP50"] == box.map50 and out["mAP"] == box.map and out["mAP75"] == box.map75
    assert out["precision"] == box.mp and out["recall"] == box.mr and out["fitness"] == ref.fitness
    for k, row in enumerate(out["per_class"]):
        assert row["instances"] == ref.nt_per_class[k] and row["images"] == ref.nt_per_image[k]
        if k in box.ap_class_index:
            i = list(box.ap_class_index).index(k)
            p, r, ap50, ap = box.class_result(i)
            assert (row["precision"], row["recall"], row["AP50"], row["AP"]) == (p, r, ap50, ap)
            assert out["per_class_AP"][k] == ap
        else:
            assert row["AP50"] == row["AP"] == -1.0 and np.all(out["precision50"][k] == -1)
    assert out["num_images"] == n and out["num_gt"] == gt["valid"].sum() and out["num_detections"] == det.valid.sum()
    # the 101-point envelope integrates to AP50 (ultralytics' compute_ap integrand)
    for i, k in enumerate(res.classes):
        np.testing.assert_allclose(np.trapezoid(out["precision50"][k], RECALL_THRESHOLDS), res.ap[i, 0], rtol=1e-12)


def test_match_predictions_equals_ultralytics_on_random_ious(x64):
    rng = np.random.default_rng(1)
    v = _validator()
    for trial in range(30):
        g, p = rng.integers(1, 8), rng.integers(1, 12)
        iou = rng.choice([0.0, 0.5, 0.55, 0.7, 0.95, 1.0], (g, p)) if trial % 3 == 0 else rng.uniform(0.3, 1, (g, p))
        gc, pc = rng.integers(0, 2, g), rng.integers(0, 2, p)
        ref = v.match_predictions(torch.from_numpy(pc.astype(np.float32)), torch.from_numpy(gc.astype(np.float32)),
                                  torch.from_numpy(iou)).numpy()
        np.testing.assert_array_equal(match_predictions(pc, gc, iou), ref)
    np.testing.assert_array_equal(IOU_THRESHOLDS, v.iouv.numpy())


def test_match_predictions_hand_built():
    # two detections on one GT: the first (higher score) takes it at every threshold its IoU reaches.
    iou = np.array([[0.72, 0.9]])
    tp = match_predictions(np.array([0, 0]), np.array([0]), iou)
    np.testing.assert_array_equal(tp[0], IOU_THRESHOLDS <= 0.72)
    np.testing.assert_array_equal(tp[1], (IOU_THRESHOLDS > 0.72) & (IOU_THRESHOLDS <= 0.9))
    # another class never matches
    assert not match_predictions(np.array([1]), np.array([0]), np.array([[1.0]])).any()


def test_ap_per_class_equals_ultralytics_and_handles_empty_classes():
    rng = np.random.default_rng(2)
    tp = rng.uniform(size=(50, 10)) < 0.5
    conf = rng.uniform(size=50)
    pred_cls = rng.integers(0, 4, 50)
    target_cls = np.array([0, 0, 1, 3, 3, 3, 5])  # class 5: GT, no detection; class 2: detections, no GT
    ref = ultralytics_ap_per_class(tp, conf, pred_cls, target_cls)
    res = ap_per_class(tp, conf, pred_cls, target_cls)
    for got, want in zip(
        (res.tp, res.fp, res.precision, res.recall, res.f1, res.ap, res.classes, res.p_curve, res.r_curve,
         res.f1_curve, res.pr_curve), ref[:10] + ref[11:]):
        np.testing.assert_array_equal(got, want)
    assert np.all(res.ap[list(res.classes).index(5)] == 0)


def test_obb_metrics_perfect_empty_and_sequences():
    gt = {"rboxes": np.array([[[0.5, 0.5, 0.2, 0.1, 0.3], [0.2, 0.3, 0.1, 0.1, 0.0]]]),
          "classes": np.array([[0, 1]]), "valid": np.array([[True, True]])}
    det = Detections(gt["rboxes"].copy(), np.array([[0.9, 0.8]]), gt["classes"].copy(), gt["valid"].copy())
    out = obb_metrics(det, gt, image_size=640)
    # perfect detections: ultralytics' 0.995, not 1 (at recall 1 the interpolation reads the sentinel precision 0,
    # so the last of the 100 trapezoids is half)
    assert out["mAP"] == pytest.approx(0.995, abs=1e-12) and out["mAP50"] == pytest.approx(0.995, abs=1e-12)
    assert out["precision"] == pytest.approx(1.0) and out["recall"] == pytest.approx(1.0)
    assert [r["instances"] for r in out["per_class"]] == [1, 1]
    # a sequence of batches equals their concatenation; an image without GT makes its detections false positives
    empty_gt = {k: np.zeros_like(v) for k, v in gt.items()}
    both = obb_metrics([det, det], [gt, empty_gt], image_size=640)
    assert both["num_images"] == 2 and both["num_detections"] == 4 and both["num_gt"] == 2
    assert both["mAP50"] < 1.0
    # no ground truth and no detection anywhere: ultralytics' zeros, every class row -1
    none = Detections(np.zeros((1, 2, 5)), np.zeros((1, 2)), np.zeros((1, 2), np.int32), np.zeros((1, 2), bool))
    out = obb_metrics(none, empty_gt, image_size=640, num_classes=3)
    assert out["mAP"] == out["mAP50"] == out["precision"] == 0.0
    assert [r["AP"] for r in out["per_class"]] == [-1.0] * 3 and out["precision50"].shape == (3, 101)


def test_obb_metrics_bad_arguments():
    det = Detections(np.zeros((1, 2, 4)), np.zeros((1, 2)), np.zeros((1, 2), np.int32), np.zeros((1, 2), bool))
    gt = {"rboxes": np.zeros((1, 1, 5)), "classes": np.zeros((1, 1), np.int32), "valid": np.zeros((1, 1), bool)}
    with pytest.raises(ValueError, match="detections.boxes"):
        obb_metrics(det, gt, image_size=64)
    with pytest.raises(ValueError, match="gt"):
        obb_metrics(det._replace(boxes=np.zeros((1, 2, 5))), {"boxes": gt["rboxes"]}, image_size=64)
    with pytest.raises(ValueError, match="iou"):
        match_predictions(np.zeros(2), np.zeros(1), np.zeros((2, 2)))


def test_obb_metrics_feed_the_trainers_table_and_report(tmp_path):
    """The result has the keys of coco_metrics' that train.tables and train.eval_report read (per-class table,
    PR curve), and only its scalars pass the evaluator's scalar filter."""
    det, gt = _random_split(np.random.default_rng(4), 4, 6, 12, 3, np.float32)
    out = obb_metrics(det, gt, image_size=64)
    scalars = {k for k, v in out.items() if np.ndim(v) == 0 and isinstance(v, (int, float))}
    assert {"mAP", "mAP50", "mAP75", "precision", "recall", "num_gt"} <= scalars and "ap_per_class" not in scalars
    table = tables.format_metrics_table(out, class_names=["a", "b", "c"])
    assert "mAP@.5" in table and "Instances" in table
    paths = eval_report.write_report(str(tmp_path), {**out, "class_names": ["a", "b", "c"]}, step=1)
    assert all((tmp_path / p).exists() for p in paths)
