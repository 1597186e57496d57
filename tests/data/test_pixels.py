"""OpenCV pixel work (jaxdet.data.pixels) against the Pillow implementation it replaced, and YoloAugment's one-warp
path against the recipe's functions applied in turn."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from PIL import Image

from jaxdet.data import SyntheticShapes, hflip
from jaxdet.data.pixels import read_region, resize, warp_affine
from jaxdet.data.yolo_augment import (
    YoloAugment,
    YoloRecipe,
    _affine_matrix,
    hsv_jitter,
    mosaic4,
    random_affine,
)


def pillow_warp(image, m, out_size, fill=114):
    """The warp jaxdet used before OpenCV: Pillow's bilinear affine, output point -> input point ``M^-1``."""
    oh, ow = out_size
    inv = np.linalg.inv(m)
    return np.asarray(Image.fromarray(image).transform(
        (ow, oh), Image.AFFINE, data=tuple(inv[:2].reshape(-1)), resample=Image.BILINEAR, fillcolor=(fill,) * 3
    ))


def _edge_band(m, in_size, out_size):
    """bool ``[oh, ow]``: output pixels whose sample lies within 1 px of the input's outer edge (either side)."""
    (ih, iw), (oh, ow) = in_size, out_size
    ys, xs = np.mgrid[0:oh, 0:ow]
    pts = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=float)], axis=-1) @ np.linalg.inv(m).T
    dist = np.minimum.reduce([pts[..., 0], iw - pts[..., 0], pts[..., 1], ih - pts[..., 1]])
    return np.abs(dist) < 1.0


def _random_map(rng, *, zoom=(0.4, 1.6), degrees=30.0):
    s, a = rng.uniform(*zoom), math.radians(rng.uniform(-degrees, degrees))
    c, si = s * math.cos(a), s * math.sin(a)
    return np.array([[c, si, rng.uniform(-20, 60)], [-si, c, rng.uniform(-20, 60)], [0.0, 0.0, 1.0]])


def test_warp_matches_pillow_within_one_level_off_the_edge_band():
    rng = np.random.default_rng(0)
    band_pixels = 0
    for _ in range(60):
        img = rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)  # noise: the hardest case for interpolation
        m = _random_map(rng)
        ours, theirs = warp_affine(img, m, (100, 90)), pillow_warp(img, m, (100, 90))
        diff = np.abs(ours.astype(int) - theirs.astype(int)).max(axis=-1)
        band = _edge_band(m, (128, 160), (100, 90))
        assert diff[~band].max() <= 1, diff[~band].max()
        band_pixels += int(band.sum())
    assert band_pixels > 0  # the maps do reach the input's edge


def test_warp_of_a_window_is_the_warp_of_the_whole_input():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    for _ in range(30):
        m = _random_map(rng, zoom=(0.5, 1.5))
        region = read_region(m, (256, 256), (96, 96))
        cut = np.full_like(img, 114)
        x0, y0, x1, y1 = region
        cut[y0:y1, x0:x1] = img[y0:y1, x0:x1]  # everything outside the region blanked: not read
        np.testing.assert_array_equal(warp_affine(cut, m, (96, 96)), warp_affine(img, m, (96, 96)))
    # A map that shows none of the input: all fill.
    away = np.array([[1.0, 0, 1000.0], [0, 1.0, 0], [0, 0, 1.0]])
    assert read_region(away, (256, 256), (96, 96)) is None
    assert np.all(warp_affine(img, away, (96, 96)) == 114)


def test_resize_up_matches_pillow_and_halving_averages_areas():
    img = np.random.default_rng(2).integers(0, 256, (52, 61, 3), dtype=np.uint8)
    for size in ((80, 94), (64, 64), (100, 61)):
        ours = resize(img, size).astype(int)
        theirs = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BILINEAR)).astype(int)
        assert np.abs(ours - theirs).max() <= 1
    blocks = img[:52, :60].reshape(26, 2, 30, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(resize(img[:52, :60], (26, 30)).astype(float) - blocks).max() <= 0.5 + 1e-9


# ------------------------------------------------------------------------------------------- YoloAugment's one warp

_SHAPES = SyntheticShapes("train", num_images=16, image_size=96, seed=5, max_objects_per_image=6)
_RECIPES = [
    YoloRecipe(),
    YoloRecipe(degrees=30.0, shear=10.0),
    YoloRecipe(mosaic=0.0, fliplr=1.0),
    YoloRecipe(scale=0.9, translate=0.4),
]


def _in_turn(example, rng, recipe, *, warp=None):
    """The recipe as the functions applied one after another (the reference of YoloAugment); with ``warp`` the
    affine's pixels come from ``warp(canvas, M, out_size)`` instead."""
    h, w = example["image"].shape[:2]
    if recipe.mosaic > 0 and rng.random() < recipe.mosaic:  # no draw without mosaic, as YoloAugment
        partners = [_SHAPES[int(j)] for j in rng.integers(0, len(_SHAPES), size=3)]
        example = mosaic4([example, *partners], rng)
    ranges = dict(degrees=recipe.degrees, translate=recipe.translate, scale=recipe.scale, shear=recipe.shear)
    m, _ = _affine_matrix(copy.deepcopy(rng), example["image"].shape[:2], (h, w), **ranges)
    canvas = example["image"]
    example = random_affine(example, rng, out_size=(h, w), **ranges)
    if warp is not None:
        example["image"] = warp(canvas, m, (h, w))
    example = hsv_jitter(example, rng, hgain=recipe.hsv_h, sgain=recipe.hsv_s, vgain=recipe.hsv_v)
    flipped = rng.random() < recipe.fliplr
    if flipped:
        example = hflip(example)
    return example, m, canvas.shape[:2], flipped


@pytest.mark.parametrize("recipe", _RECIPES)
def test_one_warp_equals_the_recipe_in_turn(recipe):
    aug = YoloAugment(_SHAPES, recipe)
    for seed in range(24):
        ex = _SHAPES[seed % 16]
        ours = aug(ex, np.random.default_rng(seed))
        ref = _in_turn(ex, np.random.default_rng(seed), recipe)[0]
        assert sorted(ours) == sorted(ref)
        for key in ref:
            np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)


def test_recipe_matches_the_pillow_implementation_on_fixed_draws():
    """Against the implementation before OpenCV (Pillow warp): the same boxes, kept and dropped objects; pixels
    within 1 grey level away from the canvas edge (HSV off: it would amplify a one-level difference)."""
    recipe = YoloRecipe(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    aug = YoloAugment(_SHAPES, recipe)
    for seed in range(24):
        ex = _SHAPES[seed % 16]
        ours = aug(ex, np.random.default_rng(seed))
        ref, m, in_size, flipped = _in_turn(ex, np.random.default_rng(seed), recipe, warp=pillow_warp)
        for key in ("boxes", "classes", "polygons", "num_dropped"):
            np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)
        band = _edge_band(m, in_size, (96, 96))
        band = band[:, ::-1] if flipped else band
        diff = np.abs(ours["image"].astype(int) - ref["image"].astype(int)).max(axis=-1)
        assert diff[~band].max(initial=0) <= 1, (seed, diff[~band].max())


def test_examples_without_polygons_skip_polygon_work_and_keep_the_boxes():
    recipe = YoloRecipe(degrees=20.0)
    aug = YoloAugment(_SHAPES, recipe)
    bare = [dict(_SHAPES[i], polygons=_SHAPES[i]["polygons"][:, :0]) for i in range(16)]
    aug_bare = YoloAugment(bare, recipe)
    for seed in range(24):
        full = aug(_SHAPES[seed % 16], np.random.default_rng(seed))
        out = aug_bare(bare[seed % 16], np.random.default_rng(seed))
        assert out["polygons"].shape == (len(out["boxes"]), 0, 2)
        np.testing.assert_array_equal(out["image"], full["image"])
        # Without outlines no object is removed for a degenerate clipped outline: the boxes with polygons are
        # those without, less the ones so removed.
        n_polygon_rule = int(out["num_dropped"]) - int(full["num_dropped"])
        assert n_polygon_rule <= 0 and len(out["boxes"]) == len(full["boxes"]) - n_polygon_rule
        rows = {tuple(b) for b in out["boxes"].tolist()}
        assert all(tuple(b) in rows for b in full["boxes"].tolist())
