"""``jaxdet.tiling``: the windows (coverage, overlap, borders, images smaller than a tile, ultralytics' layout) and
the merge (window offsets, duplicates in overlaps suppressed, padding ignored, the rotated-NMS seam)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdet import nms as nms_lib
from jaxdet.tiling import merge_tiles, tile_to_image, tile_windows

SIZES = [(100, 250, 100, 0.2), (1000, 1000, 256, 0.25), (513, 700, 128, 0.0), (300, 301, 100, 0.5),
         (640, 640, 640, 0.2), (1024, 4000, 1024, 0.195), (37, 90, 16, 0.9)]


@pytest.mark.parametrize("h, w, size, overlap", SIZES)
def test_windows_cover_the_image_at_full_size_inside_it(h, w, size, overlap):
    win = tile_windows(h, w, size=size, overlap=overlap)
    assert win.dtype == np.int64 and win.ndim == 2 and win.shape[1] == 4
    assert (win[:, :2] >= 0).all() and (win[:, 2] <= w).all() and (win[:, 3] <= h).all()
    assert ((win[:, 2] - win[:, 0]) == size).all() and ((win[:, 3] - win[:, 1]) == size).all()
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in win:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


@pytest.mark.parametrize("h, w, size, overlap", SIZES)
def test_windows_are_ultralytics_split_dota_windows(h, w, size, overlap):
    """The same set as ``split_dota.get_windows((h, w), (size,), (gap,))`` with gap = round(overlap * size)."""
    split_dota = pytest.importorskip("ultralytics.data.split_dota")
    gap = round(overlap * size)
    want = split_dota.get_windows((h, w), (size,), (gap,))
    got = tile_windows(h, w, size=size, overlap=overlap)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want.tolist()))


def test_windows_rows_steps_and_border_shift():
    win = tile_windows(180, 250, size=100, overlap=0.2)  # step 80: x 0, 80, then 160 -> shifted to 150; y 0, 80
    np.testing.assert_array_equal(win, [[0, 0, 100, 100], [80, 0, 180, 100], [150, 0, 250, 100],
                                        [0, 80, 100, 180], [80, 80, 180, 180], [150, 80, 250, 180]])
    # neighbours share at least round(overlap * size) = 20 px
    assert win[1, 0] - win[0, 0] == 80 and win[0, 2] - win[1, 0] == 20 and win[1, 2] - win[2, 0] == 30
    # an exact fit has no shifted window; overlap 0 tiles without sharing
    np.testing.assert_array_equal(tile_windows(64, 96, size=32, overlap=0.0)[:, 0], [0, 32, 64] * 2)


def test_an_image_smaller_than_the_tile_is_one_window():
    np.testing.assert_array_equal(tile_windows(50, 30, size=64, overlap=0.5), [[0, 0, 30, 50]])
    # one axis smaller: one row of windows as tall as the image
    np.testing.assert_array_equal(tile_windows(20, 150, size=64, overlap=0.0), [[0, 0, 64, 20], [64, 0, 128, 20],
                                                                                 [86, 0, 150, 20]])


def test_tile_to_image_moves_corners_or_centres():
    win = np.array([[0, 0, 10, 10], [30, 20, 40, 30]])
    xyxy = np.array([[[1.0, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0]]])
    np.testing.assert_array_equal(tile_to_image(xyxy, win), [[[1, 2, 3, 4]], [[31, 22, 33, 24]]])
    rot = np.array([[[5.0, 6.0, 2.0, 1.0, 0.3]], [[5.0, 6.0, 2.0, 1.0, -1.2]]])
    np.testing.assert_array_equal(tile_to_image(rot, win), [[[5, 6, 2, 1, 0.3]], [[35, 26, 2, 1, -1.2]]])


def _two_windows():
    """Windows [0, 100) and [80, 180) of a 100 x 180 image; one object at image x 82..98 seen by both."""
    win = tile_windows(100, 180, size=100, overlap=0.2)
    boxes = np.array([[[82.0, 10.0, 98.0, 30.0], [10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 0.0, 0.0]],
                      [[2.5, 10.0, 18.0, 30.0], [2.0, 10.0, 18.0, 30.0], [50.0, 50.0, 60.0, 60.0]]])
    scores = np.array([[0.9, 0.6, 0.0], [0.8, 0.7, 0.5]])
    classes = np.array([[1, 0, 0], [1, 2, 0]])
    valid = np.array([[True, True, False], [True, True, True]])
    return boxes, scores, classes, valid, win


def test_merge_keeps_one_of_each_duplicate_in_the_overlap():
    boxes, scores, classes, valid, win = _two_windows()
    out = merge_tiles(boxes, scores, classes, valid, win, iou_threshold=0.5)
    # window 1's class-1 box is window 0's (IoU 15.5 / 16 > 0.5): suppressed; its class-2 twin is another class
    np.testing.assert_array_equal(out.boxes, [[82, 10, 98, 30], [82, 10, 98, 30], [10, 10, 20, 20],
                                              [130, 50, 140, 60]])
    np.testing.assert_array_equal(out.scores, [0.9, 0.7, 0.6, 0.5])
    np.testing.assert_array_equal(out.classes, [1, 2, 0, 0])
    np.testing.assert_array_equal(out.windows, [0, 1, 0, 1])
    assert out.boxes.dtype == np.float64 and out.classes.dtype == np.int64
    top = merge_tiles(boxes, scores, classes, valid, win, iou_threshold=0.5, max_detections=2)
    np.testing.assert_array_equal(top.scores, [0.9, 0.7])
    # a stricter threshold keeps both views of the object
    assert len(merge_tiles(boxes, scores, classes, valid, win, iou_threshold=0.99).scores) == 5


def test_merge_of_one_window_is_its_detections():
    boxes, scores, classes, valid, _ = _two_windows()
    out = merge_tiles(boxes[1:], scores[1:], classes[1:], valid[1:], np.array([[5, 7, 105, 107]]),
                      iou_threshold=0.7)
    np.testing.assert_array_equal(out.boxes, boxes[1] + [5, 7, 5, 7])
    np.testing.assert_array_equal(out.scores, scores[1])


def _rotated_two_windows():
    """:func:`_two_windows` as rotated boxes: 4 x 4 squares at the boxes' corners, angle 0.3."""
    boxes, scores, classes, valid, win = _two_windows()
    rot = np.concatenate([boxes[..., :2], np.full(boxes.shape[:2] + (2,), 4.0), np.full(boxes.shape[:2] + (1,), 0.3)],
                         axis=-1)
    return rot, scores, classes, valid, win


def test_rotated_boxes_merge_by_rotated_nms():
    rot, scores, classes, valid, win = _rotated_two_windows()
    out = merge_tiles(rot, scores, classes, valid, win, iou_threshold=0.5)
    # 4 x 4 squares at x 82 and 82.5, same angle: ProbIoU about 0.8 > 0.5, the class-1 duplicate goes; the
    # class-2 twin (window 1 at x 82) and the rest stay
    want_iou = nms_lib.rotated_nms(tile_to_image(rot, win)[[0, 1], [0, 0]], np.ones(2), max_detections=2,
                                   iou_threshold=0.5)
    assert np.asarray(want_iou.valid).tolist() == [True, False]  # the pair is a duplicate under rotated_nms
    np.testing.assert_array_equal(out.scores, [0.9, 0.7, 0.6, 0.5])
    np.testing.assert_array_equal(out.boxes, [[82, 10, 4, 4, 0.3], [82, 10, 4, 4, 0.3], [10, 10, 4, 4, 0.3],
                                              [130, 50, 4, 4, 0.3]])
    np.testing.assert_array_equal(out.windows, [0, 1, 0, 1])


def test_merge_takes_any_nms():
    """The seam: ``nms_fn`` receives the boxes in image pixels (rotated ones moved by their centre only)."""
    rot, scores, classes, valid, win = _rotated_two_windows()
    seen = {}

    def keep_all(b, s, c, **kw):
        seen["boxes"], seen["kw"] = np.asarray(b), kw
        return nms_lib.NMSResult(np.arange(kw["max_detections"]), np.isfinite(np.asarray(s)))

    out = merge_tiles(rot, scores, classes, valid, win, iou_threshold=0.5, nms_fn=keep_all)
    np.testing.assert_allclose(seen["boxes"][:6], tile_to_image(rot, win).reshape(6, 5), rtol=1e-7)
    assert seen["kw"]["iou_threshold"] == 0.5 and seen["kw"]["max_detections"] == 8  # 6 candidates padded to 8
    np.testing.assert_array_equal(out.scores, [0.9, 0.6, 0.8, 0.7, 0.5])  # valid ones, in the NMS's order
