"""``train.tables``: the printable summary and per-class tables of a ``coco_metrics`` result."""

from __future__ import annotations

import numpy as np

from jaxdet.metrics import coco_metrics
from tests.test_metrics import GT_BOXES, GT_CLASSES, _det, _gt
from train.metrics_log import MetricWriter, json_scalar
from train.tables import format_metrics_line, format_metrics_table, is_count


def test_metrics_table_with_per_class_rows():
    gt = _gt(GT_BOXES, GT_CLASSES)
    det = _det(GT_BOXES, [[0.9] * len(b) for b in GT_BOXES], GT_CLASSES)
    res = coco_metrics(det, gt, image_size=64, num_classes=3)
    table = format_metrics_table(res, class_names=["a", "b", "c"])
    assert "mAP@.5" in table and "1.0000" in table
    rows = [line.split() for line in table.splitlines()[-4:]]
    assert rows == [["all", "3", "6", "1", "1"], ["a", "2", "2", "1", "1"], ["b", "2", "2", "1", "1"],
                    ["c", "2", "2", "1", "1"]]


def test_metrics_line_prints_counts_as_integers():
    ev = {"mAP": 0.02484, "AR100": 1.0, "num_images": 256.0, "num_gt": 580.0, "num_detections": 3453.0,
          "skipped_steps": 0.0, "dropped_boxes": 3.0}
    assert format_metrics_line(ev) == ("mAP=0.0248, AR100=1.0000, num_images=256, num_gt=580, num_detections=3453, "
                                       "skipped_steps=0, dropped_boxes=3")
    assert format_metrics_line({"num_x": 2.5, "k": 7}) == "num_x=2.5000, k=7"  # a fraction stays a fraction
    assert is_count("num_images") and is_count("skipped") and not is_count("mAP")


def test_metrics_jsonl_and_summary_write_counts_as_integers(tmp_path):
    writer = MetricWriter(str(tmp_path), tensorboard=False)
    writer.write("eval", 3, {"mAP": np.float32(0.5), "num_images": np.float32(256.0), "dropped_boxes": 2.0,
                             "loss": float("nan"), "num_x": 2.5})
    writer.close()
    line = open(tmp_path / "metrics.jsonl").read().strip()
    assert line == ('{"kind": "eval", "step": 3, "mAP": 0.5, "num_images": 256, "dropped_boxes": 2, "loss": "nan", '
                    '"num_x": 2.5}')
    assert json_scalar("eval", {"num_gt": 3.0, "AR100": 1.0}) == {"num_gt": 3, "AR100": 1.0}
    assert json_scalar("stopped", False) is False and json_scalar("name", "x") == "x"
