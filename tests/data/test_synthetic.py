"""SyntheticShapes: determinism, shapes/dtypes, target geometry against shapely and the rendered pixels."""

import threading

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from jaxdet.data import SHAPE_CLASSES, SyntheticShapes, synthetic


def test_deterministic_and_random_access():
    a = SyntheticShapes("train", num_images=50, seed=3)
    b = SyntheticShapes("train", num_images=50, seed=3)
    for i in (0, 17, 49, 17):
        ea, eb = a[i], b[i]
        for key in ea:
            np.testing.assert_array_equal(ea[key], eb[key])
    # Out-of-order access gives the same bytes as in-order access.
    seq = [a[i]["image"] for i in range(5)]
    assert all(np.array_equal(a[i]["image"], seq[i]) for i in (4, 2, 0))
    # Different seed / split / index give different images.
    c = SyntheticShapes("train", num_images=50, seed=4)
    v = SyntheticShapes("val", num_images=50, seed=3)
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    assert not np.array_equal(a[0]["image"], v[0]["image"])
    assert not np.array_equal(a[0]["image"], a[1]["image"])
    assert len(a) == 50 and len(SyntheticShapes("val")) == 512
    with pytest.raises(IndexError):
        a[50]
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes("dev")


def test_cache_returns_same_example():
    a = SyntheticShapes("val", num_images=4, cache=True)
    b = SyntheticShapes("val", num_images=4)
    for _ in range(2):
        for key, val in a[2].items():
            np.testing.assert_array_equal(val, b[2][key])


def test_cache_is_automatic_below_the_size_limit(monkeypatch):

    small = SyntheticShapes("val", num_images=4)
    assert small[1]["image"] is small[1]["image"]  # cached: the same read-only array
    assert not small[1]["image"].flags.writeable
    monkeypatch.setattr(synthetic, "AUTO_CACHE_BYTES", 4 * 64 * 64 * 3 - 1)
    large = SyntheticShapes("val", num_images=4)
    assert large[1]["image"] is not large[1]["image"]  # generated on every read
    np.testing.assert_array_equal(large[1]["image"], small[1]["image"])
    assert SyntheticShapes("val", num_images=4, cache=True)[1]["image"] is not None


def test_fill_cache_generates_the_missing_examples_once_and_stops_on_request():

    ds = SyntheticShapes("val", num_images=6, image_size=32, cache=True)
    first = ds[2]["image"]
    assert ds.cached and ds.fill_cache() == 5  # every example but the one already read
    assert ds.fill_cache() == 0 and ds[2]["image"] is first
    fresh = SyntheticShapes("val", num_images=6, image_size=32, cache=False)
    for i in range(6):
        for key, val in ds[i].items():
            np.testing.assert_array_equal(val, fresh[i][key])
    stop = threading.Event()
    stop.set()
    assert SyntheticShapes("val", num_images=6, image_size=32, cache=True).fill_cache(stop) == 0
    assert not fresh.cached
    with pytest.raises(ValueError, match="cache=False"):
        fresh.fill_cache()


@pytest.mark.parametrize("image_size", [64, (48, 80)])
def test_shapes_dtypes_and_targets(image_size):
    ds = SyntheticShapes("train", num_images=40, image_size=image_size, num_vertices=8, max_objects_per_image=5)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    counts, seen = [], set()
    for i in range(len(ds)):
        e = ds[i]
        n = len(e["classes"])
        counts.append(n)
        assert e["image"].shape == (h, w, 3) and e["image"].dtype == np.uint8
        assert e["boxes"].shape == (n, 4) and e["boxes"].dtype == np.float32
        assert e["classes"].dtype == np.int32 and e["polygons"].shape == (n, 8, 2)
        assert e["polygons"].dtype == np.float32 and int(e["image_id"]) == i
        b = e["boxes"]
        assert np.all(b >= 0) and np.all(b <= 1) and np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        seen.update(e["classes"].tolist())
        # Polygons lie inside their boxes, and are counter-clockwise.
        p = e["polygons"]
        assert np.all(p[..., 0] >= b[:, None, 0] - 1e-6) and np.all(p[..., 0] <= b[:, None, 2] + 1e-6)
        assert np.all(p[..., 1] >= b[:, None, 1] - 1e-6) and np.all(p[..., 1] <= b[:, None, 3] + 1e-6)
        for poly in p:
            assert Polygon(poly).is_valid and Polygon(poly).exterior.is_ccw  # positive shoelace area
        # Objects do not overlap (targets exact, no occlusion).
        for j in range(n):
            for k in range(j + 1, n):
                inter = shapely.box(*b[j]).intersection(shapely.box(*b[k])).area
                assert inter == 0.0
    assert 1 <= min(counts) and max(counts) <= 5
    assert seen == set(range(len(SHAPE_CLASSES)))


def test_boxes_match_rendered_pixels():
    """Rasterise each outline independently (shapely point-in-polygon on pixel centres) and compare to where
    the object's colour actually appears; the box must be the outline's tight box."""
    ds = SyntheticShapes("val", num_images=12, image_size=64, noise_std=(0.0, 0.0), clutter=(0, 0))
    h = w = 64
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    centres = shapely.points(np.stack([xx.ravel(), yy.ravel()], 1))
    for i in range(len(ds)):
        ann = ds.annotation(i)
        img = ann["image"].astype(int)
        for outline, box in zip(ann["outlines"], ann["boxes_px"]):
            np.testing.assert_allclose(box, [*outline.min(0), *outline.max(0)])
            inside = shapely.contains(Polygon(outline).buffer(-1.0), centres).reshape(h, w)
            if inside.sum() < 4:
                continue
            colour = np.median(img[inside], axis=0)
            match = np.all(np.abs(img - colour) <= 2, axis=-1)
            # Pixels of that colour around the object lie within the box (+1 px antialiasing margin).
            region = match[max(0, int(box[1]) - 3) : int(box[3]) + 4, max(0, int(box[0]) - 3) : int(box[2]) + 4]
            ry, rx = np.nonzero(region)
            ry = ry + max(0, int(box[1]) - 3)
            rx = rx + max(0, int(box[0]) - 3)
            assert rx.min() >= box[0] - 1 and rx.max() + 1 <= box[2] + 1
            assert ry.min() >= box[1] - 1 and ry.max() + 1 <= box[3] + 1
            # And the object's colour fills (almost) the whole interior.
            assert match[inside].mean() > 0.95
