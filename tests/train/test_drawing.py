"""``train.drawing``: detections and ground truth drawn into a uint8 image grid."""

from __future__ import annotations

import numpy as np

from tests.test_metrics import GT_BOXES, GT_CLASSES, _det, _gt
from train.drawing import draw_detections


def test_draw_detections_grid():
    gt = _gt(GT_BOXES, GT_CLASSES)
    det = _det(GT_BOXES, [[0.9] * len(b) for b in GT_BOXES], GT_CLASSES)
    images = np.random.default_rng(0).uniform(0, 1, (3, 32, 48, 3)).astype(np.float32)
    grid = draw_detections(images, det, gt, ncols=2, scale=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * (64 + 2), 2 * (96 + 2), 3)
    # Something was drawn in the class colour of image 0's first detection (red, class 0).
    assert np.any(np.all(grid[: 66, : 98] == [230, 25, 75], axis=-1))
