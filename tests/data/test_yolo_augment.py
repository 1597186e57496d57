"""Ultralytics' augmentation recipe (jaxdet.data.yolo_augment): hand-computed mosaic/affine placements, dropped
counts, HSV against ultralytics' RandomHSV (OpenCV), properties on random examples, the loader and resume."""

from __future__ import annotations

import grain
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ultralytics.data.augment import RandomHSV

from jaxdet.data import SyntheticShapes, canonical_polygon, hflip, make_loader, pad_example
from jaxdet.data.yolo_augment import (
    YoloAugment,
    YoloRecipe,
    apply_hsv_gains,
    box_candidates,
    hsv_jitter,
    mosaic4,
    random_affine,
)

NO_SHARD = grain.sharding.NoSharding()


class ScriptedRng:
    """Stands in for a numpy Generator: ``uniform`` returns the scripted values in order (checked in range)."""

    def __init__(self, *values):
        self.values = list(values)

    def uniform(self, lo, hi, size=None):
        v = self.values.pop(0)
        assert lo <= v <= hi, (lo, v, hi)
        return v


def _square_example(size, box_px, cls=1, image_id=0, **extra):
    """Grey-0 image with one white axis-aligned square ``box_px`` (x0, y0, x1, y1 pixels)."""
    x0, y0, x1, y1 = box_px
    img = np.zeros((size, size, 3), np.uint8)
    img[y0:y1, x0:x1] = 255
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float) / size
    return {
        "image": img,
        "boxes": np.array([box_px], np.float32) / size,
        "classes": np.array([cls], np.int32),
        "polygons": canonical_polygon(corners, 8)[None],
        "image_id": np.int32(image_id),
        **extra,
    }


def _bright_extent(img):
    ys, xs = np.nonzero(img[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def test_mosaic_places_known_boxes_and_counts_the_cut_one():
    s = 64
    examples = [
        _square_example(s, (32, 32, 48, 48), cls=0, image_id=7, orig_size=np.array([480, 640], np.int32),
                        ratio_pad=np.array([0.1, 0.0, 80.0], np.float32), note="kept"),
        _square_example(s, (8, 8, 24, 24), cls=1),
        _square_example(s, (0, 0, 16, 16), cls=2),
        _square_example(s, (48, 48, 64, 64), cls=3),  # ends up right of the canvas: cut away
    ]
    out = mosaic4(examples, ScriptedRng(80.0, 70.0))  # centre (xc, yc) = (80, 70)
    # Tile offsets (xc - s, yc - s), (xc, yc - s), (xc - s, yc), (xc, yc) = (16, 6), (80, 6), (16, 70), (80, 70).
    expected = np.array([[48, 38, 64, 54], [88, 14, 104, 30], [16, 70, 32, 86]], float) / 128
    np.testing.assert_allclose(out["boxes"], expected, atol=1e-7)
    np.testing.assert_array_equal(out["classes"], [0, 1, 2])
    assert int(out["num_dropped"]) == 1  # example 3's box lies at x in [128, 144] on a 128 px canvas
    assert out["image"].shape == (128, 128, 3)
    assert out["image"][0, 0, 0] == 114  # canvas left grey outside every tile (tile 0 starts at (16, 6))
    np.testing.assert_array_equal(_bright_extent(out["image"][:64, :64]), [48, 38, 64, 54])
    # Per-image keys come from example 0; the letterbox record becomes the identity of the canvas.
    assert out["image_id"] == 7 and out["note"] == "kept"
    np.testing.assert_array_equal(out["orig_size"], [128, 128])
    np.testing.assert_array_equal(out["ratio_pad"], [1, 1, 0, 0])
    np.testing.assert_allclose(out["polygons"].min(axis=1), expected[:, :2], atol=1e-6)
    np.testing.assert_allclose(out["polygons"].max(axis=1), expected[:, 2:], atol=1e-6)


def test_affine_zoom_half_of_a_mosaic_canvas_is_hand_computed():
    # Canvas 128 -> output 64 with zoom 0.5, no shift: u' = 0.5 (u - 64) + 0.5 * 64 = u / 2.
    canvas = _square_example(128, (48, 38, 64, 54))
    rng = ScriptedRng(0.0, 0.5, 0.0, 0.0, 0.5, 0.5)  # angle, zoom, shear x, shear y, shift x, shift y
    out = random_affine(canvas, rng, out_size=(64, 64))
    np.testing.assert_allclose(out["boxes"], [[24 / 64, 19 / 64, 32 / 64, 27 / 64]], atol=1e-7)
    np.testing.assert_array_equal(_bright_extent(out["image"]), [24, 19, 32, 27])
    assert int(out.get("num_dropped", 0)) == 0
    assert out["image"][0, 0, 0] == 0 and out["image"].shape == (64, 64, 3)


def test_affine_shift_and_rotation_move_the_box_as_computed():
    ex = _square_example(64, (16, 16, 32, 32))
    # zoom 1, shift +0.1 * 64 = 6.4 px right, 0 down: box -> (22.4, 16, 38.4, 32).
    out = random_affine(ex, ScriptedRng(0.0, 1.0, 0.0, 0.0, 0.6, 0.5), out_size=(64, 64))
    np.testing.assert_allclose(out["boxes"][0] * 64, [22.4, 16, 38.4, 32], atol=1e-5)
    # 90 degrees about the image centre (32, 32): (x, y) -> (y, 64 - x) on screen; the box (16..32, 16..32)
    # becomes (16..32, 32..48).
    out = random_affine(ex, ScriptedRng(90.0, 1.0, 0.0, 0.0, 0.5, 0.5), out_size=(64, 64), degrees=90.0)
    np.testing.assert_allclose(out["boxes"][0] * 64, [16, 32, 32, 48], atol=1e-4)
    np.testing.assert_array_equal(_bright_extent(out["image"]), [16, 32, 32, 48])


def test_box_candidates_and_dropped_counts_on_a_constructed_case():
    s = 64
    boxes_px = np.array([
        [20, 20, 44, 44],  # kept
        [10, 10, 13, 30],  # 3 px wide: 1.5 px at zoom 0.5 -> dropped (w <= 2)
        [0, 0, 64, 64],    # whole image at zoom 0.5 -> 32 x 32, kept
    ], float)
    ex = {
        "image": np.zeros((s, s, 3), np.uint8),
        "boxes": (boxes_px / s).astype(np.float32),
        "classes": np.array([0, 1, 2], np.int32),
        "polygons": np.stack([
            canonical_polygon(np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]]) / s, 8)
            for b in boxes_px
        ]),
        "image_id": np.int32(0),
        "num_dropped": np.int32(2),  # from an earlier step: added to
    }
    out = random_affine(ex, ScriptedRng(0.0, 0.5, 0.0, 0.0, 0.5, 0.5), out_size=(s, s))
    np.testing.assert_array_equal(out["classes"], [0, 2])
    assert int(out["num_dropped"]) == 3
    # A fixed shift of 60 px (matrix=): of [0, 50] x [10, 32] 4 px stay visible (area 0.08 < 0.1: dropped);
    # [20, 30] x [40, 60] leaves the frame (dropped); [0, 4] x [0, 10] stays whole (kept).
    boxes_px = np.array([[0, 10, 50, 32], [20, 40, 30, 60], [0, 0, 4, 10]], float)
    ex = dict(ex, boxes=(boxes_px / s).astype(np.float32), num_dropped=np.int32(0))
    shift = np.array([[1.0, 0.0, 60.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = random_affine(ex, None, matrix=shift)
    np.testing.assert_array_equal(out["classes"], [2])
    np.testing.assert_allclose(out["boxes"] * s, [[60, 0, 64, 10]], atol=1e-5)
    assert int(out["num_dropped"]) == 2
    # The rule itself, as ultralytics writes it.
    keep = box_candidates(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 300, 2.5]]),
                          np.array([[0, 0, 10, 10], [0, 0, 3, 3], [0, 0, 300, 2.5]]))
    np.testing.assert_array_equal(keep, [True, False, False])  # area 0.09; aspect ratio 120


def test_flip_twice_is_identity_and_keeps_keys():
    ds = SyntheticShapes("train", num_images=4, seed=3)
    e = dict(ds[0], extra=np.arange(3), num_dropped=np.int32(4))
    ff = hflip(hflip(e))
    np.testing.assert_array_equal(ff["image"], e["image"])
    np.testing.assert_allclose(ff["boxes"], e["boxes"], atol=1e-7)
    np.testing.assert_allclose(ff["polygons"], e["polygons"], atol=1e-7)
    np.testing.assert_array_equal(ff["extra"], e["extra"])
    assert int(ff["num_dropped"]) == 4


def test_hsv_zero_gains_is_identity():
    e = SyntheticShapes("train", num_images=2, seed=0)[1]
    out = hsv_jitter(e, np.random.default_rng(0), hgain=0.0, sgain=0.0, vgain=0.0)
    np.testing.assert_array_equal(out["image"], e["image"])


def test_hsv_matches_ultralytics_random_hsv():

    rgb = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    rgb[0, :6] = [[0, 0, 0], [255, 255, 255], [128, 128, 128], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    for seed, gains in enumerate([(0.015, 0.7, 0.4), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0001)]):
        np.random.seed(seed)
        r = np.random.uniform(-1, 1, 3) * gains  # the draw RandomHSV makes next
        np.random.seed(seed)
        labels = {"img": np.ascontiguousarray(rgb[..., ::-1])}  # ultralytics images are BGR
        RandomHSV(*gains)(labels)
        # The same tables through the same OpenCV conversions: equal pixels.
        np.testing.assert_array_equal(apply_hsv_gains(rgb, r), labels["img"][..., ::-1])


# ----------------------------------------------------------------------------------------------- properties

_SHAPES = SyntheticShapes("train", num_images=16, image_size=48, seed=5, max_objects_per_image=6)


@settings(max_examples=30, deadline=None)
@given(
    index=st.integers(0, 15),
    seed=st.integers(0, 2**31 - 1),
    degrees=st.sampled_from([0.0, 30.0]),
    shear=st.sampled_from([0.0, 10.0]),
    scale=st.sampled_from([0.0, 0.5, 0.9]),
)
def test_recipe_keeps_targets_inside_and_counts_every_object(index, seed, degrees, shear, scale):
    rng = np.random.default_rng(seed)
    partners = [_SHAPES[int(j)] for j in np.random.default_rng(seed).integers(0, 16, 3)]
    first = _SHAPES[index]
    m = mosaic4([first, *partners], rng)
    n_in = len(first["boxes"]) + sum(len(p["boxes"]) for p in partners)
    assert len(m["boxes"]) + int(m["num_dropped"]) == n_in
    out = random_affine(m, rng, out_size=(48, 48), degrees=degrees, shear=shear, scale=scale)
    assert len(out["boxes"]) + int(out["num_dropped"]) == n_in
    for e in (m, out):
        b, p = e["boxes"], e["polygons"]
        assert b.dtype == np.float32 and p.shape == (len(b), 8, 2)
        assert np.all((b >= 0) & (b <= 1)) and np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        assert np.all((p >= 0) & (p <= 1))
        assert len(e["classes"]) == len(b)
    w, h = (out["boxes"][:, 2] - out["boxes"][:, 0]) * 48, (out["boxes"][:, 3] - out["boxes"][:, 1]) * 48
    assert np.all(w > 2) and np.all(h > 2)  # box_candidates' 2 px rule
    assert out["image"].shape == (48, 48, 3) and out["image"].dtype == np.uint8


# ----------------------------------------------------------------------------------------------- recipe + loader


class _CountingSource:
    def __init__(self, source):
        self.source, self.reads = source, 0

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        self.reads += 1
        return self.source[i]


def test_close_mosaic_stops_drawing_partners():
    src = _CountingSource(_SHAPES)
    aug = YoloAugment(src, YoloRecipe(close_mosaic_at=5))
    for step in (0, 4):
        src.reads = 0
        out = aug(_SHAPES[0], np.random.default_rng(step), step=step)
        assert src.reads == 3 and out["image"].shape == (48, 48, 3)
    for step in (5, 9):
        src.reads = 0
        aug(_SHAPES[0], np.random.default_rng(step), step=step)
        assert src.reads == 0
    with pytest.raises(ValueError, match="mosaic"):
        YoloRecipe(mosaic=1.5)


def test_loader_passes_the_step_and_resumes_bit_identically_across_close_mosaic():
    seen = []

    def spy(example, rng, step):
        seen.append((int(example["image_id"]), step))
        return example

    spy.uses_step = True
    it = make_loader(_SHAPES, batch_size=4, seed=0, augment=spy, shard_options=NO_SHARD, num_threads=0)
    ids = [next(it)["image_id"].tolist() for _ in range(3)]
    steps = {i: s for i, s in seen}
    for t, batch_ids in enumerate(ids):
        assert all(steps[i] == t for i in batch_ids)  # step t's examples were augmented with step t

    aug = YoloAugment(_SHAPES, YoloRecipe(close_mosaic_at=3))
    kw = dict(batch_size=4, seed=1, augment=aug, max_objects=40, shard_options=NO_SHARD, num_threads=0)
    it = make_loader(_SHAPES, **kw)
    for _ in range(2):
        next(it)
    state = it.get_state()
    rest = [next(it) for _ in range(3)]  # steps 2 (mosaic), 3 and 4 (no mosaic)
    again = make_loader(_SHAPES, **kw)
    again.set_state(state)
    for a in rest:
        b = next(again)
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert sum(int(r["dropped_boxes"].sum()) for r in rest) > 0
    # Two shards see the rows of the global batch.
    glob = make_loader(_SHAPES, **kw)
    halves = [make_loader(_SHAPES, **dict(kw, shard_options=grain.sharding.ShardOptions(i, 2))) for i in range(2)]
    for _ in range(2):
        g, parts = next(glob), [next(h) for h in halves]
        for k in g:
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), g[k], err_msg=k)


def test_pad_example_carries_the_dropped_count():
    e = dict(_SHAPES[0], num_dropped=np.int32(3))
    assert pad_example(e, 8)["dropped_boxes"] == 3 and pad_example(_SHAPES[0], 8)["dropped_boxes"] == 0


def test_worker_processes_give_the_same_batches_and_resume():
    aug = YoloAugment(_SHAPES, YoloRecipe(close_mosaic_at=2))
    kw = dict(batch_size=4, seed=2, augment=aug, max_objects=40, shard_options=NO_SHARD, num_threads=0)
    ref = make_loader(_SHAPES, **kw)
    ref = [next(ref) for _ in range(3)]
    it = make_loader(_SHAPES, num_workers=1, **kw)
    first = next(it)
    state = it.get_state()
    again = make_loader(_SHAPES, num_workers=1, **kw)
    again.set_state(state)
    for a, b in zip([ref[0], ref[1], ref[1], ref[2]], [first, next(it), next(again), next(again)]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
