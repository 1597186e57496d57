"""``train.drawing``: detections and ground truth drawn into a uint8 image grid."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from tests.test_metrics import GT_BOXES, GT_CLASSES, _det, _gt
from train.drawing import (
    _PALETTE,
    MIN_TILE,
    draw_detections,
    draw_label,
    label_font,
    label_font_size,
    text_colour,
)


def test_draw_detections_grid():
    gt = _gt(GT_BOXES, GT_CLASSES)
    det = _det(GT_BOXES, [[0.9] * len(b) for b in GT_BOXES], GT_CLASSES)
    images = np.random.default_rng(0).uniform(0, 1, (3, 32, 48, 3)).astype(np.float32)
    grid = draw_detections(images, det, gt, ncols=2, scale=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * (64 + 2), 2 * (96 + 2), 3)
    # Something was drawn in the class colour of image 0's first detection (red, class 0).
    assert np.any(np.all(grid[: 66, : 98] == [230, 25, 75], axis=-1))


def test_small_images_drawn_at_least_256_px_a_tile():
    images = np.zeros((4, 64, 48, 3), np.float32)
    grid = draw_detections(images)  # default scale: the longer side reaches MIN_TILE
    assert MIN_TILE == 256 and grid.shape == (2 * (256 + 2), 2 * (192 + 2), 3)
    assert draw_detections(np.zeros((1, 300, 400, 3), np.uint8)).shape == (302, 402, 3)  # large: own resolution


def test_label_font_grows_with_the_image():
    assert label_font_size(256, 256) == 12 and label_font_size(64, 64) == 12  # at least 12 px
    assert label_font_size(1280, 720) == 18 and label_font_size(2560, 1920) == 48  # 2.5 % of the shorter side
    heights = []
    for side in (256, 1280):
        im = Image.new("RGB", (side, side))
        rect = draw_label(ImageDraw.Draw(im), (side / 4, side / 4, side / 2, side / 2), "bus 0.93", (0, 130, 200),
                          font=label_font(label_font_size(side, side)), image_size=(side, side))
        heights.append(rect[3] - rect[1])
    assert heights[1] >= 2 * heights[0] and heights[0] >= 12


def test_label_on_a_same_coloured_object_contrasts():
    # A blue label on a blue bus: the label's fill is the box colour, its text black or white, whichever contrasts.
    blue = (0, 130, 200)
    im = Image.new("RGB", (640, 480), blue)
    rect = draw_label(ImageDraw.Draw(im), (100, 100, 400, 300), "bus 0.93", blue, font=label_font(20),
                      image_size=(640, 480))
    region = np.asarray(im, np.int32)[rect[1]:rect[3], rect[0]:rect[2]]
    diff = np.abs(region - np.array(blue)).sum(-1)
    assert (diff == 0).mean() > 0.5  # mostly the fill
    assert (diff >= 300).sum() >= 20  # the text: far from the fill (black on this blue)
    assert text_colour(blue) == (0, 0, 0) and text_colour((0, 0, 128)) == (255, 255, 255)
    assert text_colour((255, 225, 25)) == (0, 0, 0)  # black on yellow


def test_labels_stay_inside_the_image_and_do_not_overlap():
    im = Image.new("RGB", (200, 100))
    dr = ImageDraw.Draw(im)
    font = label_font(12)
    taken: list = []
    top_right = draw_label(dr, (180, 0, 200, 30), "regular_polygon 0.99", (230, 25, 75), font=font,
                           image_size=(200, 100), taken=taken)
    assert top_right[0] >= 0 and top_right[1] >= 0 and top_right[2] <= 200 and top_right[3] <= 100
    bottom = draw_label(dr, (0, 95, 10, 100), "x 0.50", (60, 180, 75), font=font, image_size=(200, 100),
                        taken=taken)
    assert bottom[3] <= 100 and bottom[1] >= 0
    # The same box again: above and inside are both taken, so the label is left out rather than drawn over.
    assert draw_label(dr, (180, 0, 200, 30), "other 0.40", (0, 130, 200), font=font, image_size=(200, 100),
                      taken=taken) is None
    assert len(taken) == 2


def test_predicted_labels_are_sized_to_a_large_photograph():
    # predict draws at the image's own size (scale=1): on a 1280x960 image the label is >= 24 px high, not ~10.
    images = np.full((1, 960, 1280, 3), 0.5, np.float32)
    det = _det([[[0.3, 0.3, 0.6, 0.6]]], [[0.9]], [[3]])
    grid = draw_detections(images, det, scale=1, ncols=1, max_images=1)
    tile = grid[1:-1, 1:-1].astype(np.int32)
    fill = np.all(tile == _PALETTE[3], axis=-1)  # the label's filled background (and the box outline)
    rows = np.flatnonzero(fill[:, int(0.3 * 1280) + 10: int(0.3 * 1280) + 40].any(1))
    label_rows = rows[rows < int(0.3 * 960)]  # above the box
    assert label_rows.size >= label_font_size(1280, 960)
