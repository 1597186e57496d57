"""``train.tables``: the printable summary and per-class tables of a ``coco_metrics`` result."""

from __future__ import annotations

from jaxdet.metrics import coco_metrics
from tests.test_metrics import GT_BOXES, GT_CLASSES, _det, _gt
from train.tables import format_metrics_table


def test_metrics_table_with_per_class_rows():
    gt = _gt(GT_BOXES, GT_CLASSES)
    det = _det(GT_BOXES, [[0.9] * len(b) for b in GT_BOXES], GT_CLASSES)
    res = coco_metrics(det, gt, image_size=64, num_classes=3)
    table = format_metrics_table(res, class_names=["a", "b", "c"])
    assert "mAP@.5" in table and "1.0000" in table
    rows = [line.split() for line in table.splitlines()[-4:]]
    assert rows == [["all", "3", "6", "1", "1"], ["a", "2", "2", "1", "1"], ["b", "2", "2", "1", "1"],
                    ["c", "2", "2", "1", "1"]]
