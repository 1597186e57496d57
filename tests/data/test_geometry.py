"""canonical_polygon and clip_polygon against closed-form geometry and shapely."""

import math

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from jaxdet.data import canonical_order, canonical_polygon, canonical_polygons, clip_polygon, polygon_signed_area


def _random_convex(rng, n=None):
    n = n or int(rng.integers(3, 12))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.5, 1.0, n)
    pts = np.stack([r * np.cos(ang), r * np.sin(ang)], 1) * rng.uniform(0.05, 0.4) + rng.uniform(0.3, 0.7, 2)
    hull = shapely.convex_hull(shapely.MultiPoint(pts))
    return np.asarray(hull.exterior.coords)[:-1]


def _check_canonical(out, src, k):
    assert out.shape == (k, 2) and out.dtype == np.float32
    # Counter-clockwise in the array's own (x, y) coordinates (shoelace computed here, not by the library).
    x, y = out[:, 0].astype(np.float64), out[:, 1].astype(np.float64)
    assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0
    # Starts at the smallest centroid angle.
    c = out.mean(0)
    ang = np.arctan2(out[:, 1] - c[1], out[:, 0] - c[0])
    ang = np.where(ang > np.pi - 1e-5, ang - 2 * np.pi, ang)
    assert np.argmin(ang) == 0
    # Every vertex lies on the source outline, evenly spaced by arc length along it.
    ring = shapely.LinearRing(src)
    pts = shapely.points(out.astype(np.float64))
    assert np.max(shapely.distance(ring, pts)) < 1e-6
    s = np.array([ring.project(p) for p in pts])
    s0 = ring.project(pts[0])
    gaps = np.diff(np.sort(np.mod(s - s0, ring.length)))
    gaps = np.append(gaps, ring.length - np.sum(gaps))
    np.testing.assert_allclose(gaps, ring.length / k, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [3, 8, 13])
def test_canonical_random_convex(k):
    rng = np.random.default_rng(k)
    for _ in range(30):
        src = _random_convex(rng)
        out = canonical_polygon(src, k)
        _check_canonical(out, src, k)


def test_canonical_invariances_and_idempotence():
    rng = np.random.default_rng(1)
    for _ in range(30):
        src = _random_convex(rng)
        ref = canonical_polygon(src, 8)
        shift = int(rng.integers(1, len(src)))
        np.testing.assert_allclose(canonical_polygon(np.roll(src, shift, 0), 8), ref, atol=1e-6)
        np.testing.assert_allclose(canonical_polygon(src[::-1], 8), ref, atol=1e-6)  # clockwise input
        closed = np.concatenate([src, src[:1]])  # explicitly closed ring
        np.testing.assert_allclose(canonical_polygon(closed, 8), ref, atol=1e-6)
        np.testing.assert_allclose(canonical_order(np.roll(ref[::-1], 3, 0)), ref, atol=0)
        # Mirroring then re-ordering gives a canonical polygon on the mirrored outline.
        mirrored = src * [-1.0, 1.0]
        _check_canonical(canonical_order(ref * [-1.0, 1.0]), mirrored, 8)
        # Commutes with uniform scale + translation.
        np.testing.assert_allclose(canonical_polygon(src * 2.0 + 3.0, 8), ref * 2.0 + 3.0, atol=1e-5)


def test_canonical_square_closed_form():
    # Unit square with k=8: the 4 corners and 4 edge midpoints; centroid (0.5, 0.5). The midpoint (0, 0.5)
    # lies exactly left of the centroid: atan2 = pi, which the documented tie rule maps to -pi, the smallest
    # angle, so it starts; then counter-clockwise (positive shoelace in array coordinates) to (0, 0).
    sq = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    out = canonical_polygon(sq[[2, 1, 0, 3]], 8)  # clockwise, shifted input
    expect = np.array([[0, 0.5], [0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1], [0.5, 1], [0, 1]])
    np.testing.assert_allclose(out, expect, atol=1e-7)


def test_canonical_degenerate_raises():
    with pytest.raises(ValueError, match="points"):
        canonical_polygon(np.array([[0, 0], [1, 1]]), 8)
    with pytest.raises(ValueError, match="points"):
        canonical_polygon(np.array([[0, 0], [1, 1], [2, 2]]), 8)  # collinear: zero area
    with pytest.raises(ValueError, match="points"):
        canonical_polygon(np.array([[0, 0], [0, 0], [0, 0], [1, 0]]), 8)
    with pytest.raises(ValueError, match="points"):
        canonical_polygon(np.zeros((4, 3)), 8)
    with pytest.raises(ValueError, match="k"):
        canonical_polygon(np.eye(3)[:, :2] + [[0, 0], [0, 0], [1, 0]], 2)
    assert canonical_polygons([], 5).shape == (0, 5, 2)


def test_clip_polygon_matches_shapely():
    rng = np.random.default_rng(2)
    for _ in range(50):
        src = _random_convex(rng) * 2.0 - 0.5  # often crosses the unit square
        got = clip_polygon(src)
        ref = Polygon(src).intersection(box(0, 0, 1, 1))
        area = abs(polygon_signed_area(got)) if len(got) >= 3 else 0.0
        assert math.isclose(area, ref.area, rel_tol=1e-9, abs_tol=1e-12)
        if len(got):
            assert got.min() >= 0 and got.max() <= 1
