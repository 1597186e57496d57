"""Letterbox: geometry as ultralytics' LetterBox / scale_boxes, exact round trip, and DetectionSource."""

import numpy as np
import pytest
import torch
from ultralytics.data.augment import LetterBox
from ultralytics.utils.ops import scale_boxes

from jaxdet.data import DetectionRecord, DetectionSource, collate
from jaxdet.data.letterbox import (
    PAD_VALUE,
    boxes_to_original,
    identity_letterbox,
    letterbox_image,
    letterbox_params,
    letterbox_points,
)

SHAPES = [(480, 640), (640, 480), (33, 1000), (1000, 7), (64, 64), (20, 30), (375, 500)]


@pytest.mark.parametrize("orig", SHAPES)
@pytest.mark.parametrize("size", [(64, 64), (640, 640), (96, 160)])
def test_params_match_ultralytics_letterbox(orig, size):

    ref = LetterBox(new_shape=size).get_params({"img": np.zeros((*orig, 3), np.uint8)})
    (new_h, new_w), ratio_pad = letterbox_params(orig, size)
    assert (new_w, new_h) == tuple(ref["new_unpad"])
    assert (ratio_pad[2], ratio_pad[3]) == (ref["left"], ref["top"])
    assert ratio_pad[0] == pytest.approx(new_w / orig[1]) and ratio_pad[1] == pytest.approx(new_h / orig[0])


@pytest.mark.parametrize("orig", SHAPES)
def test_boxes_to_original_matches_ultralytics_scale_boxes(orig):

    size = (64, 96)
    rng = np.random.default_rng(0)
    xy = np.sort(rng.uniform(-0.1, 1.1, size=(5, 2, 2)), axis=1).reshape(5, 4)  # some outside: clipped
    ours = boxes_to_original(
        xy[None], ratio_pad=letterbox_params(orig, size)[1][None], orig_size=np.array([orig]), size=size
    )[0]
    px = torch.tensor(xy * [size[1], size[0], size[1], size[0]], dtype=torch.float64)
    ref = scale_boxes(size, px, orig).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("orig", SHAPES)
def test_points_round_trip_through_letterbox(orig):
    size = (64, 64)
    _, rp = letterbox_params(orig, size)
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    lb = letterbox_points(boxes.reshape(-1, 2, 2), orig_size=orig, ratio_pad=rp, size=size).reshape(-1, 4)
    assert lb.min() >= 0 and lb.max() <= 1
    back = boxes_to_original(lb[None], ratio_pad=rp[None], orig_size=np.array([orig]), size=size)[0]
    np.testing.assert_allclose(back, boxes * [orig[1], orig[0], orig[1], orig[0]], rtol=1e-5, atol=1e-3)


def test_image_content_placed_on_grey_padding():
    image = np.zeros((30, 60, 3), np.uint8)
    image[:, :] = (200, 10, 50)
    out, rp = letterbox_image(image, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(rp, np.float32([64 / 60, 32 / 30, 0, 16]))
    assert (out[:16] == PAD_VALUE).all() and (out[48:] == PAD_VALUE).all()
    assert (out[16:48] == (200, 10, 50)).all()


def test_identity_for_images_that_were_not_letterboxed():
    orig_size, ratio_pad = identity_letterbox((48, 64))
    np.testing.assert_array_equal(orig_size, [48, 64])
    np.testing.assert_array_equal(ratio_pad, [1, 1, 0, 0])


def _record(image, boxes):
    n = len(boxes)
    return DetectionRecord(
        image_id=3,
        image_path="in-memory.png",
        width=image.shape[1],
        height=image.shape[0],
        boxes=np.asarray(boxes, np.float32),
        classes=np.zeros((n,), np.int32),
        polygons=np.repeat(np.asarray(boxes, np.float32)[:, None, :2], 8, axis=1).reshape(n, 8, 2),
        has_polygon=np.zeros((n,), bool),
        image=image,
    )


def test_detection_source_letterboxes_boxes_onto_the_drawn_object():
    image = np.full((40, 80, 3), 255, np.uint8)
    image[10:30, 20:60] = 0  # a black box at x 20..60, y 10..30 (pixels)
    box = [20 / 80, 10 / 40, 60 / 80, 30 / 40]
    ex = DetectionSource([_record(image, [box])], image_size=64)[0]
    np.testing.assert_array_equal(ex["orig_size"], [40, 80])
    np.testing.assert_array_equal(ex["ratio_pad"], np.float32([0.8, 0.8, 0, 16]))
    x0, y0, x1, y1 = np.round(ex["boxes"][0] * 64).astype(int)
    assert (x0, y0, x1, y1) == (16, 24, 48, 40)
    assert (ex["image"][y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] == 0).all()
    assert (ex["image"][:16] == PAD_VALUE).all()
    stretched = DetectionSource([_record(image, [box])], image_size=64, resize="stretch")[0]
    np.testing.assert_allclose(stretched["boxes"][0], box)
    np.testing.assert_array_equal(stretched["ratio_pad"], np.float32([0.8, 1.6, 0, 0]))


def test_batches_carry_the_letterbox_geometry():
    image = np.zeros((40, 80, 3), np.uint8)
    ex = DetectionSource([_record(image, [[0.1, 0.1, 0.2, 0.2]])], image_size=64)[0]
    batch = collate([ex, {k: v for k, v in ex.items() if k not in ("orig_size", "ratio_pad")}], max_objects=2)
    np.testing.assert_array_equal(batch["orig_size"], [[40, 80], [64, 64]])
    np.testing.assert_array_equal(batch["ratio_pad"], np.float32([[0.8, 0.8, 0, 16], [1, 1, 0, 0]]))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="resize"):
        DetectionSource([], image_size=64, resize="crop")
    with pytest.raises(ValueError, match="image"):
        letterbox_image(np.zeros((4, 4), np.uint8), 8)
    with pytest.raises(ValueError, match="size"):
        letterbox_params((4, 4), (0, 8))
    with pytest.raises(ValueError, match="ratio_pad"):
        boxes_to_original(np.zeros((2, 3, 4)), ratio_pad=np.zeros((3, 4)), orig_size=np.ones((2, 2)), size=8)
