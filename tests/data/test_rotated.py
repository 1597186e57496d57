"""Rotated boxes in the data pipeline: the corners <-> xywhr geometry and the clip against ultralytics 8.4.190
(``xyxyxyxy2xywhr``, ``xywhr2xyxyxyxy``, ``Instances.clip(preserve_obb=True)``), the OBB and DOTA readers against
ultralytics' ``verify_image_label``, the corners through letterbox, mosaic, affine and flip (against ultralytics'
``Mosaic._cat_labels``, ``RandomPerspective.apply_instances`` and ``Format(return_obb=True)`` on the same
inputs, and on fixed maps whose result is known), the batch's ``rboxes`` and the synthetic rotated split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from ultralytics.cfg import get_cfg
from ultralytics.data.augment import Format, Mosaic, RandomPerspective
from ultralytics.data.converter import convert_dota_to_yolo_obb
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import verify_image_label
from ultralytics.utils.instance import Instances
from ultralytics.utils.ops import xywhr2xyxyxyxy, xyxyxyxy2xywhr

from jaxdet import data
from jaxdet.data.errors import DatasetFormatError, InvalidBoxError
from jaxdet.data.rotated import clip_corners, corners_to_xywhr, xywhr_to_corners
from jaxdet.data.yolo_augment import _mosaic_centre, _tile_offsets


def _random_rboxes(rng, n, lo=0.0, hi=100.0):
    return np.c_[rng.uniform(lo, hi, (n, 2)), rng.uniform(1, 40, (n, 2)), rng.uniform(-3.5, 3.5, n)]


# ------------------------------------------------------------------------------------------------ geometry

def test_corners_and_xywhr_equal_ultralytics():
    rng = np.random.default_rng(0)
    r = _random_rboxes(rng, 200)
    corners = xywhr_to_corners(r)
    np.testing.assert_array_equal(corners, xywhr2xyxyxyxy(r))
    np.testing.assert_array_equal(corners_to_xywhr(corners), xyxyxyxy2xywhr(corners))
    np.testing.assert_array_equal(corners_to_xywhr(corners.reshape(-1, 8)), xyxyxyxy2xywhr(corners))
    sheared = corners @ np.array([[1.0, 0.3], [0.0, 1.0]])  # parallelograms: their minimum-area rectangles
    np.testing.assert_array_equal(corners_to_xywhr(sheared), xyxyxyxy2xywhr(sheared))
    dense = np.concatenate([corners, corners[:, :2] * 0.5 + corners[:, 2:] * 0.5], axis=1)  # 6 points each
    np.testing.assert_array_equal(corners_to_xywhr(dense), xyxyxyxy2xywhr(dense))
    canon = corners_to_xywhr(corners)
    assert np.all(canon[:, 2] >= canon[:, 3])
    assert np.all((canon[:, 4] >= -math.pi / 4) & (canon[:, 4] < 3 * math.pi / 4))
    assert corners_to_xywhr(np.zeros((0, 4, 2))).shape == (0, 5)


def test_xywhr_round_trip_on_a_known_box():
    corners = xywhr_to_corners([10.0, 20.0, 8.0, 4.0, math.pi / 2])
    np.testing.assert_allclose(corners, [[8, 24], [12, 24], [12, 16], [8, 16]], atol=1e-12)
    np.testing.assert_allclose(corners_to_xywhr(corners[None]), [[10, 20, 8, 4, math.pi / 2]], atol=1e-6)


def test_clip_corners_equals_instances_clip_preserve_obb():
    rng = np.random.default_rng(1)
    seg = xywhr_to_corners(_random_rboxes(rng, 300, lo=-20.0, hi=110.0)).astype(np.float32)
    ins = Instances(np.concatenate([seg.min(1), seg.max(1)], 1), seg.copy(), bbox_format="xyxy", normalized=False)
    ins.clip(80, 70, preserve_obb=True)
    boxes, corners = clip_corners(seg, 80, 70)
    outside = ~np.all((seg.min(1) >= 0) & (seg.max(1) <= (80, 70)), axis=1)
    assert outside.sum() > 100 and np.any(np.all(boxes == 0, axis=1))  # cut ones and wholly outside ones
    np.testing.assert_array_equal(boxes, ins.bboxes)
    np.testing.assert_array_equal(corners, ins.segments)


def test_clip_corners_of_an_axis_aligned_box_is_the_intersection():
    boxes, corners = clip_corners([[[-2.0, 1.0], [5.0, 1.0], [5.0, 3.0], [-2.0, 3.0]]], 10, 10)
    np.testing.assert_allclose(boxes, [[0, 1, 5, 3]], atol=1e-6)
    np.testing.assert_allclose(corners_to_xywhr(corners), [[2.5, 2.0, 5.0, 2.0, 0.0]], atol=1e-6)


# ------------------------------------------------------------------------------------------------ readers

def _write_image(path, w=40, h=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path)


def _obb_folder(tmp_path, lines, w=40, h=30):
    _write_image(tmp_path / "images" / "a.png", w, h)
    (tmp_path / "labels").mkdir(exist_ok=True)
    (tmp_path / "labels" / "a.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "images"


_OBB_LINES = ["0 0.1 0.1 0.5 0.2 0.45 0.6 0.05 0.5", "1 0.6 0.3 0.9 0.3 0.9 0.8 0.6 0.8"]


def test_read_yolo_obb_matches_ultralytics_verify_image_label(tmp_path):
    images = _obb_folder(tmp_path, _OBB_LINES)
    rs = data.read_yolo_obb(images, class_names=("a", "b"))
    (rec,) = rs.records
    _, lb, shape, segments, *_ = verify_image_label(
        (str(images / "a.png"), str(tmp_path / "labels" / "a.txt"), "", False, 2, 0, 0, False)
    )
    assert shape == (30, 40)
    np.testing.assert_array_equal(rec.classes, lb[:, 0].astype(int))
    np.testing.assert_allclose(rec.corners, np.stack(segments), rtol=0, atol=1e-7)
    cxcywh = lb[:, 1:]  # the tight boxes, xywh normalised
    np.testing.assert_allclose(rec.boxes, np.c_[cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2],
                               atol=1e-6)
    assert rec.has_polygon.all() and rec.polygons.shape == (2, 8, 2)
    # Format(return_obb) of the same corners: the batch's rboxes
    batch = data.collate([data.DetectionSource(rs, image_size=(30, 40))[0]], max_objects=3)
    expected = xyxyxyxy2xywhr(np.stack(segments) * [40, 30]) / [40, 30, 40, 30, 1]
    np.testing.assert_allclose(batch["rboxes"][0, :2], expected, atol=1e-6)
    assert not batch["rboxes"][0, 2].any() and batch["valid"][0].tolist() == [True, True, False]


@pytest.mark.parametrize("size", [(64, 64), (40, 64)])
def test_exported_rotated_split_reads_as_ultralytics_yolo_dataset_obb(tmp_path, size):
    """The rotated split written as YOLO-OBB (4-point lines) and read back: the batch's classes and rboxes
    equal what ultralytics' ``YOLODataset(task="obb")`` gives for the same files (letterbox to 64, Format)."""
    ds = data.SyntheticShapes("val", num_images=6, image_size=size, seed=1, rotated=True)
    images = data.export_synthetic(ds, tmp_path / "val", fmt="yolo")
    source = data.DetectionSource(data.read_yolo_obb(images, class_names=ds.class_names), image_size=64,
                                  polygons=False)
    ref = YOLODataset(img_path=str(images), imgsz=64, augment=False, cache=False, hyp=get_cfg(), task="obb",
                      data={"names": dict(enumerate(ds.class_names)), "channels": 3}, pad=0.0, batch_size=1)
    for i in range(len(ds)):
        item, batch = ref[i], data.collate([source[i]], max_objects=8)
        n = int(batch["valid"][0].sum())
        assert n == len(item["cls"]) > 0
        np.testing.assert_array_equal(batch["classes"][0, :n], item["cls"].numpy()[:, 0])
        np.testing.assert_allclose(batch["rboxes"][0, :n], item["bboxes"].numpy(), rtol=0, atol=1e-6)
        # the synthetic example's own corners give the same targets (letterboxed by the known padding)
        own = ds[i]["corners"].astype(np.float64) * size[::-1] + [0, (64 - size[0]) / 2]
        np.testing.assert_allclose(batch["rboxes"][0, :n] * [64, 64, 64, 64, 1],
                                   corners_to_xywhr(own), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("0 0.1 0.1 0.5 0.2 0.45 0.6", "9 fields"),
        ("0 0.1 0.1 0.5 0.2 0.45 0.6 0.05 x", "not numbers"),
        ("2 0.1 0.1 0.5 0.2 0.45 0.6 0.05 0.5", "class index 2"),
        ("0 0.1 0.1 0.5 0.2 0.45 0.6 0.05 nan", "non-finite"),
    ],
)
def test_read_yolo_obb_errors_name_file_and_line(tmp_path, line, fragment):
    images = _obb_folder(tmp_path, [_OBB_LINES[0], line])
    with pytest.raises(DatasetFormatError) as info:
        data.read_yolo_obb(images, class_names=("a", "b"))
    assert info.value.record == "line 2" and info.value.path.endswith("a.txt") and fragment in str(info.value)


def test_read_yolo_obb_invalid_boxes_raise_or_drop_and_are_listed(tmp_path):
    degenerate = "0 0.1 0.1 0.5 0.5 0.3 0.3 0.2 0.2"  # 4 collinear corners: zero area
    outside = "1 0.6 0.3 1.3 0.3 1.3 0.8 0.6 0.8"
    images = _obb_folder(tmp_path, [_OBB_LINES[0], degenerate, outside])
    with pytest.raises(InvalidBoxError) as info:
        data.read_yolo_obb(images, class_names=("a", "b"))
    assert info.value.record == "line 2"
    rs = data.read_yolo_obb(images, class_names=("a", "b"), invalid_boxes="drop")
    assert len(rs.records[0].classes) == 1 and rs.num_dropped == 2
    (messages,) = rs.dropped.values()
    assert "line 2" in messages[0] and "line 3" in messages[1]


def test_read_yolo_obb_cache_and_file_list_give_the_same_records(tmp_path):
    images = _obb_folder(tmp_path, _OBB_LINES)
    fresh = data.read_yolo_obb(images, class_names=("a", "b"), cache=tmp_path / "cache")
    cached = data.read_yolo_obb(images, class_names=("a", "b"), cache=tmp_path / "cache")
    listed = data.read_yolo_files(data.yolo_image_files(images), class_names=("a", "b"), obb=True)
    plain = data.read_yolo(images, class_names=("a", "b"), cache=tmp_path / "cache")  # a separate cache entry
    assert plain.records[0].corners is None
    for other in (cached, listed):
        for key in ("boxes", "classes", "polygons", "corners"):
            np.testing.assert_array_equal(getattr(other.records[0], key), getattr(fresh.records[0], key))


def _dota_folder(tmp_path, lines, name="P0001"):
    _write_image(tmp_path / "images" / f"{name}.png", 40, 30)
    (tmp_path / "labelTxt").mkdir(exist_ok=True)
    (tmp_path / "labelTxt" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "images", tmp_path / "labelTxt"


def test_read_dota_reads_headers_categories_and_difficult(tmp_path):
    px = (np.array([float(v) for v in _OBB_LINES[0].split()[1:]]).reshape(4, 2) * [40, 30]).ravel()
    px2 = (np.array([float(v) for v in _OBB_LINES[1].split()[1:]]).reshape(4, 2) * [40, 30]).ravel()
    lines = ["imagesource:GoogleEarth", "gsd:0.146343590398",
             " ".join(f"{v:g}" for v in px) + " small-vehicle 0", " ".join(f"{v:g}" for v in px2) + " plane 1"]
    images, labels = _dota_folder(tmp_path, lines)
    rs = data.read_dota(images, labels)
    assert rs.class_names == ("plane", "small-vehicle")
    (rec,) = rs.records
    np.testing.assert_array_equal(rec.classes, [1, 0])
    # the same objects as the YOLO-OBB file, normalised
    obb = data.read_yolo_obb(_obb_folder(tmp_path / "obb", _OBB_LINES), class_names=("a", "b")).records[0]
    np.testing.assert_allclose(rec.corners, obb.corners, atol=1e-6)
    np.testing.assert_allclose(rec.boxes, obb.boxes, atol=1e-6)
    easy = data.read_dota(images, labels, include_difficult=False, class_names=("plane", "small-vehicle", "ship"))
    np.testing.assert_array_equal(easy.records[0].classes, [1])


def test_read_dota_equals_ultralytics_conversion_to_obb_labels(tmp_path):
    rng = np.random.default_rng(2)
    for phase in ("train", "val"):
        _write_image(tmp_path / "images" / phase / "P0007.png", 300, 200)
        r = np.c_[rng.uniform(40, 160, (5, 2)), rng.uniform(5, 60, (5, 2)), rng.uniform(-3, 3, 5)]
        corners = xywhr_to_corners(r)
        names = [data.DOTA_CLASSES[i] for i in rng.integers(0, 18, 5)]
        lines = ["imagesource:GoogleEarth", "gsd:0.5"] + [
            " ".join(f"{v:.1f}" for v in c.ravel()) + f" {name} {i % 2}"
            for i, (c, name) in enumerate(zip(corners, names))
        ]
        (tmp_path / "labels" / f"{phase}_original").mkdir(parents=True)
        (tmp_path / "labels" / f"{phase}_original" / "P0007.txt").write_text("\n".join(lines) + "\n")
    convert_dota_to_yolo_obb(tmp_path)
    for phase in ("train", "val"):
        ours = data.read_dota(tmp_path / "images" / phase, tmp_path / "labels" / f"{phase}_original",
                              class_names=data.DOTA_CLASSES).records[0]
        theirs = data.read_yolo_obb(tmp_path / "images" / phase, class_names=data.DOTA_CLASSES).records[0]
        np.testing.assert_array_equal(ours.classes, theirs.classes)
        np.testing.assert_allclose(ours.corners, theirs.corners, rtol=0, atol=1e-6)  # they write 6 digits


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("1 2 3 4 5 6 7 8", "got 8 fields"),
        ("1 2 30 4 30 20 1 x plane 0", "not numbers"),
        ("1 2 30 4 30 20 1 20 boat 0", "'boat' is not in class_names"),
        ("1 2 30 4 30 20 1 20 plane 2", "difficult must be 0 or 1"),
    ],
)
def test_read_dota_errors_name_file_and_line(tmp_path, line, fragment):
    images, labels = _dota_folder(tmp_path, ["gsd:0.1", "1 2 30 4 30 20 1 20 plane 0", line])
    with pytest.raises(DatasetFormatError) as info:
        data.read_dota(images, labels, class_names=("plane",))
    assert info.value.record == "line 3" and info.value.path.endswith("P0001.txt") and fragment in str(info.value)


# ------------------------------------------------------------------------------------------------ transforms

def _obb_example(corners_px, size=(64, 64), classes=None):
    h, w = size
    corners_px = np.asarray(corners_px, np.float64).reshape(-1, 4, 2)
    n = len(corners_px)
    return {
        "image": np.full((h, w, 3), 100, np.uint8),
        "boxes": (np.concatenate([corners_px.min(1), corners_px.max(1)], 1) / [w, h, w, h]).astype(np.float32),
        "classes": np.arange(n, dtype=np.int32) if classes is None else np.asarray(classes, np.int32),
        "polygons": np.zeros((n, 0, 2), np.float32),
        "corners": (corners_px / [w, h]).astype(np.float32),
        "image_id": np.int32(0),
    }


def _instances(corners_px):
    seg = np.asarray(corners_px, np.float32).reshape(-1, 4, 2)
    return Instances(np.concatenate([seg.min(1), seg.max(1)], 1), seg.copy(), bbox_format="xyxy", normalized=False)


def _random_example(rng, n=12, size=(64, 64)):
    corners = xywhr_to_corners(np.c_[rng.uniform(-4, 68, (n, 2)), rng.uniform(3, 30, (n, 2)), rng.uniform(-3, 3, n)])
    return _obb_example(corners, size)


@pytest.mark.parametrize("seed", range(4))
def test_random_affine_of_rotated_boxes_equals_ultralytics(seed):
    rng = np.random.default_rng(seed)
    ex = _random_example(rng, n=16)
    corners_px = ex["corners"].astype(np.float64) * 64
    theta, s, sh = math.radians(rng.uniform(-40, 40)), rng.uniform(0.6, 1.4), math.tan(math.radians(rng.uniform(-8, 8)))
    m = np.array([[1, 0, rng.uniform(20, 44)], [0, 1, rng.uniform(20, 44)], [0, 0, 1]]) @ np.array(
        [[1, sh, 0], [0, 1, 0], [0, 0, 1]]) @ np.array(
        [[s * math.cos(theta), s * math.sin(theta), 0], [-s * math.sin(theta), s * math.cos(theta), 0], [0, 0, 1]]
    ) @ np.array([[1, 0, -32], [0, 1, -32], [0, 0, 1]])
    ours = data.random_affine(ex, None, matrix=m)
    rp = RandomPerspective(preserve_obb=True)
    scale = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    labels = {"instances": _instances(corners_px), "cls": ex["classes"][:, None].copy()}
    ref = rp.apply_instances(labels, {"M": m, "scale": scale, "size": (64, 64), "orig_shape": (64, 64)})
    np.testing.assert_array_equal(ours["classes"], ref["cls"][:, 0])
    assert ours["num_dropped"] == 16 - len(ref["cls"])
    np.testing.assert_allclose(ours["corners"] * 64, ref["instances"].segments, atol=2e-5)
    np.testing.assert_allclose(ours["boxes"] * 64, ref["instances"].bboxes, atol=2e-5)
    fmt = Format(bbox_format="xywh", normalize=True, return_obb=True, batch_idx=False)
    expected = fmt({"img": np.zeros((64, 64, 3), np.uint8), **ref})["bboxes"].numpy()
    batch = data.collate([ours], max_objects=16)
    n = len(ours["classes"])
    np.testing.assert_allclose(batch["rboxes"][0, :n], expected, atol=2e-6)


def test_mosaic_of_rotated_boxes_equals_ultralytics_cat_labels():
    rng = np.random.default_rng(5)
    tiles = [_random_example(rng, n=6) for _ in range(4)]
    draw = np.random.default_rng(11)
    ours = data.mosaic4(tiles, draw)
    offsets = _tile_offsets(*_mosaic_centre(np.random.default_rng(11), 64, 64), 64, 64)
    mosaic = Mosaic.__new__(Mosaic)
    mosaic.imgsz, mosaic.preserve_obb = 64, True
    parts = []
    for t, (ox, oy) in zip(tiles, offsets):
        ins = _instances(t["corners"].astype(np.float64) * 64)
        ins.add_padding(ox, oy)
        parts.append({"im_file": "x", "ori_shape": (64, 64), "cls": t["classes"][:, None], "instances": ins})
    ref = mosaic._cat_labels(parts)
    np.testing.assert_array_equal(ours["classes"], ref["cls"][:, 0])
    assert 0 < len(ours["classes"]) < 24 and ours["num_dropped"] == 24 - len(ref["cls"])
    np.testing.assert_allclose(ours["corners"] * 128, ref["instances"].segments, atol=2e-5)
    np.testing.assert_allclose(ours["boxes"] * 128, ref["instances"].bboxes, atol=2e-5)


def test_mosaic_of_rotated_and_axis_aligned_examples_raises():
    tiles = [_random_example(np.random.default_rng(0), n=2)] + [
        {k: v for k, v in _random_example(np.random.default_rng(i), n=2).items() if k != "corners"} for i in range(3)
    ]
    with pytest.raises(ValueError, match=r"examples\[1\] must be rotated boxes"):
        data.mosaic4(tiles, np.random.default_rng(0))


def test_pure_zoom_and_shift_move_rotated_boxes_exactly():
    corners = xywhr_to_corners([[20.0, 24.0, 16.0, 6.0, 0.5], [40.0, 40.0, 10.0, 10.0, -0.2]])
    ex = _obb_example(corners)
    m = np.array([[0.5, 0.0, 7.0], [0.0, 0.5, 3.0], [0.0, 0.0, 1.0]])
    out = data.random_affine(ex, None, matrix=m, out_size=(48, 40))
    assert out["num_dropped"] == 0
    rboxes = data.collate([out], max_objects=2)["rboxes"][0] * [40, 48, 40, 48, 1]
    want = corners_to_xywhr(corners * 0.5 + [7.0, 3.0])
    np.testing.assert_allclose(rboxes, want, atol=1e-4)
    np.testing.assert_allclose(rboxes[:, :4], [[17, 15, 8, 3], [27, 23, 5, 5]], atol=1e-4)


def test_flip_mirrors_corners_and_the_angle():
    ex = _obb_example(xywhr_to_corners([[20.0, 24.0, 16.0, 6.0, 0.5]]))
    flipped = data.hflip(ex)
    np.testing.assert_allclose(flipped["corners"][..., 0], 1 - ex["corners"][..., 0], atol=1e-7)
    rbox = data.collate([flipped], max_objects=1)["rboxes"][0, 0] * [64, 64, 64, 64, 1]
    np.testing.assert_allclose(rbox, [44.0, 24.0, 16.0, 6.0, -0.5], atol=1e-4)  # the angle mirrored: -theta


def test_letterbox_maps_corners_by_the_known_gain_and_padding(tmp_path):
    images = _obb_folder(tmp_path, _OBB_LINES, w=40, h=20)
    rs = data.read_yolo_obb(images, class_names=("a", "b"))
    ex = data.DetectionSource(rs, image_size=(80, 80))[0]  # gain 2, 20 px of padding above and below
    want = rs.records[0].corners * [80, 40] + [0, 20]
    np.testing.assert_allclose(ex["corners"] * 80, want, atol=1e-4)


def test_scale_jitter_and_the_yolo_recipe_keep_rotated_boxes_consistent():
    ds = data.SyntheticShapes("train", num_images=8, image_size=64, seed=3, rotated=True)
    aug = data.YoloAugment(ds, data.YoloRecipe(degrees=45, shear=5))
    for i in range(8):
        for out in (aug(ds[i], np.random.default_rng(i)), data.augment_example(ds[i], np.random.default_rng(i))):
            assert out["corners"].shape == (len(out["classes"]), 4, 2) and len(out["boxes"]) == len(out["classes"])
            c, b = out["corners"].astype(np.float64), out["boxes"].astype(np.float64)
            tight = np.c_[c.min(1), c.max(1)]
            # the box is the visible part of the rotated box: in the image, inside the (refit) rectangle, and
            # its tight box where the rectangle lies in the image (a cut one may reach past the border)
            assert np.all(b >= 0) and np.all(b <= 1)
            assert np.all(b[:, :2] >= tight[:, :2] - 1e-5) and np.all(b[:, 2:] <= tight[:, 2:] + 1e-5)
            inside = np.all((tight[:, :2] >= 0) & (tight[:, 2:] <= 1), axis=1)
            np.testing.assert_allclose(b[inside], tight[inside], atol=1e-5)


# ------------------------------------------------------------------------------------------------ synthetic

def test_synthetic_rotated_split_is_deterministic_rectangles_of_its_aspect_ratios():
    a = data.SyntheticShapes("train", num_images=16, image_size=96, seed=7, rotated=True, cache=False)
    b = data.SyntheticShapes("train", num_images=16, image_size=96, seed=7, rotated=True, cache=False)
    assert a.class_names == data.ROTATED_SHAPE_CLASSES and a.num_classes == 3
    seen = set()
    for i in range(16):
        ea, eb = a[i], b[i]
        for key in ("image", "boxes", "classes", "corners"):
            np.testing.assert_array_equal(ea[key], eb[key])
        c = ea["corners"].astype(np.float64) * 96
        np.testing.assert_allclose(ea["boxes"] * 96, np.c_[c.min(1), c.max(1)], atol=1e-4)
        r = corners_to_xywhr(c)
        sides = np.linalg.norm(np.roll(c, -1, axis=1) - c, axis=2)
        np.testing.assert_allclose(sides[:, 0], sides[:, 2], rtol=1e-5)  # a rectangle: opposite sides equal
        for cls, (w, h) in zip(ea["classes"], r[:, 2:4]):
            lo, hi = ((0.85, 1.0), (0.45, 0.6), (0.2, 0.3))[cls]
            assert lo - 1e-4 <= h / w <= hi + 1e-4
            seen.add(int(cls))
    assert seen == {0, 1, 2}
    other = data.SyntheticShapes("train", num_images=16, image_size=96, seed=8, rotated=True, cache=False)
    assert not np.array_equal(other[0]["image"], a[0]["image"])
    plain = data.SyntheticShapes("train", num_images=2, image_size=96, seed=7)
    assert "corners" not in plain[0] and "rboxes" not in data.collate([plain[0]], max_objects=8)


def test_loader_batches_carry_rboxes_with_the_padding_images():
    ds = data.SyntheticShapes("val", num_images=3, image_size=32, seed=0, rotated=True)
    batches = list(data.make_loader(ds, batch_size=2, seed=0, max_objects=6, shuffle=False, num_epochs=1,
                                    drop_remainder=False))
    assert len(batches) == 2 and batches[1]["image_id"].tolist() == [2, -1]  # a padding image completes it
    for batch in batches:
        assert batch["rboxes"].shape == (2, 6, 5) and batch["rboxes"].dtype == np.float32
        assert np.all(batch["rboxes"][~batch["valid"]] == 0) and np.all(batch["rboxes"][batch["valid"]][:, 2] > 0)
    batch = batches[0]
    torch.testing.assert_close(torch.tensor(batch["rboxes"][0][batch["valid"][0]]), torch.tensor(
        (xyxyxyxy2xywhr(ds[0]["corners"] * 32) / [32, 32, 32, 32, 1]).astype(np.float32)), atol=1e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    angle=st.sampled_from([0.0, math.pi / 2, -math.pi / 2, math.pi / 4, 1e-7, math.pi]),
    thin=st.sampled_from([1e-3, 0.05, 1.0]),
    degrees=st.sampled_from([0.0, 45.0, 180.0]),
    shear=st.sampled_from([0.0, 10.0]),
)
def test_degenerate_rotated_boxes_give_finite_canonical_rboxes(seed, angle, thin, degrees, shear):
    """Thin, border-crossing, wholly outside and identical rotated boxes at the awkward angles, through the recipe
    (mosaic, affine, flip) and the plain jitter: every batch rbox is finite and canonical, every object counted."""
    rng = np.random.default_rng(seed)
    n = 6
    r = np.c_[rng.uniform(-10, 74, (n, 2)), rng.uniform(2, 30, n), rng.uniform(2, 30, n) * thin, np.full(n, angle)]
    r[1] = r[0]  # identical boxes
    corners = xywhr_to_corners(r)
    keep = [i for i in range(n) if np.all(corners[i].max(0) > 0) and np.all(corners[i].min(0) < 64)]
    ex = _obb_example(corners[keep])
    ex["boxes"] = np.clip(ex["boxes"], 0, 1)
    aug = data.YoloAugment([ex] * 4, data.YoloRecipe(degrees=degrees, shear=shear, mosaic=0.5))
    outs = [aug(ex, np.random.default_rng(seed)), data.augment_example(ex, np.random.default_rng(seed))]
    batch = data.collate(outs, max_objects=4 * n)
    for out, rboxes, valid in zip(outs, batch["rboxes"], batch["valid"]):
        assert np.all(np.isfinite(rboxes)) and not rboxes[~valid].any()
        w, h, theta = rboxes[valid, 2], rboxes[valid, 3], rboxes[valid, 4]
        assert np.all(w > 0) and np.all(h >= 0) and np.all(w >= h - 1e-6)
        assert np.all((theta >= -math.pi / 4 - 1e-6) & (theta < 3 * math.pi / 4 + 1e-6))
        assert len(out["classes"]) + out.get("num_dropped", 0) in (len(keep), 4 * len(keep))  # 4: a mosaic
