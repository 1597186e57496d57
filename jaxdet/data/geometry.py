"""Polygon canonicalisation and small numpy geometry helpers for the data pipeline.

Every polygon that enters jaxdet's data (synthetic outlines, COCO segmentations, VOC ``<polygon>`` elements,
YOLO polygon lines, augmented polygons) goes through :func:`canonical_polygon`, so all targets share one
convention:

* exactly ``k`` vertices, resampled evenly by arc length along the closed outline;
* counter-clockwise, i.e. positive shoelace signed area in the array's own ``(x, y)`` coordinates
  (with image coordinates, where y points down, this is clockwise on screen);
* starting from the vertex with the smallest angle ``atan2(y - cy, x - cx)`` around the centroid
  ``(cx, cy)`` = mean of the ``k`` output vertices. Angles within ``1e-6`` rad of ``+pi`` are treated as
  ``-pi`` so that a vertex lying exactly left of the centroid starts the polygon regardless of rounding.

The function is invariant to a cyclic shift or a reversal of the input vertices and commutes with
translation and uniform scaling. It is *not* idempotent: resampling an already resampled ``k``-gon spaces the
points along the ``k``-gon's own (shorter) perimeter and moves them. After a geometric transform of a canonical
polygon that maps the outline onto itself up to a similarity (flip, scale, translation), use
:func:`canonical_order`, which only re-orients and re-starts the vertices without resampling.
"""

from __future__ import annotations

import numpy as np

from jaxdet import _checks

__all__ = [
    "canonical_polygon",
    "canonical_order",
    "canonical_polygons",
    "box_to_polygon",
    "clip_polygon",
    "polygon_signed_area",
    "polygon_bounds",
]

_ANGLE_WRAP_TOL = 1e-6
_MIN_BATCH = 8  # canonical_polygons resamples groups of at least this many equal-length polygons together


def polygon_signed_area(points: np.ndarray) -> float:
    """Shoelace signed area of a closed polygon.

    Args:
      points: ``[P, 2]`` vertices ``(x, y)``.

    Returns:
      The signed area, positive for counter-clockwise order in the array's ``(x, y)`` coordinates.

    .. math:: A = \\tfrac12 \\sum_i (x_i y_{i+1} - x_{i+1} y_i)
    """
    p = np.asarray(points, dtype=np.float64)
    _checks.layout(p, "points", shape="[P, 2]", ndim=2, last=2)
    q = np.concatenate([p[1:], p[:1]], axis=0)
    return float(0.5 * np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]))


def polygon_bounds(points: np.ndarray) -> np.ndarray:
    """Tight ``xyxy`` box of a ``[P, 2]`` polygon (float64 ``[4]``)."""
    p = np.asarray(points, dtype=np.float64)
    _checks.layout(p, "points", shape="[P, 2] with P >= 1", ndim=2, last=2)
    if len(p) == 0:
        raise _checks.fail_shape("points", "[P, 2] with P >= 1", p)
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


def _start_index(points: np.ndarray) -> int:
    centre = points.mean(axis=0)
    ang = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    ang = np.where(ang > np.pi - _ANGLE_WRAP_TOL, ang - 2.0 * np.pi, ang)
    return int(np.argmin(ang))


def canonical_polygon(points, k: int = 8, *, eps: float = 1e-12) -> np.ndarray:
    """Resample a closed polygon to exactly ``k`` vertices in jaxdet's canonical order.

    Steps: drop repeated consecutive vertices (and a repeated closing vertex); orient counter-clockwise by the
    shoelace sign; start at the input vertex with the smallest centroid angle (so the result does not depend on
    where the input ring starts); place ``k`` points at arc lengths ``j * T / k`` (``T`` the perimeter,
    ``j = 0 .. k-1``); finally roll the result so that it starts at its own smallest-angle vertex.

    Args:
      points: ``[P, 2]`` float vertices ``(x, y)`` of a simple (or at least non-degenerate) closed outline,
        ``P >= 3``; any coordinate frame (normalised or pixels).
      k: number of output vertices, ``k >= 3``.
      eps: a polygon whose absolute area or perimeter is ``<= eps`` is degenerate.

    Returns:
      ``[k, 2]`` float32 canonical polygon.

    Raises:
      ValueError: naming ``points`` if it is not ``[P, 2]`` finite with at least 3 distinct vertices and
        non-zero area, or naming ``k`` if ``k < 3``.

    .. math:: v_j = \\gamma\\!\\left(s_0 + \\tfrac{j}{k} T\\right), \\quad j = 0, \\dots, k-1
    """
    if isinstance(k, bool) or int(k) != k or k < 3:
        raise _checks.fail_value("k", "an integer >= 3", k)
    k = int(k)
    p = np.asarray(points, dtype=np.float64)
    _checks.layout(p, "points", shape="[P, 2]", ndim=2, last=2)
    if not np.all(np.isfinite(p)):
        raise _checks.fail_value("points", "finite", f"{np.count_nonzero(~np.isfinite(p))} non-finite coordinates")
    # Remove consecutive duplicates, including the closing vertex.
    if len(p) > 1:
        keep = np.any(p != np.concatenate([p[-1:], p[:-1]], axis=0), axis=1)
        if not keep.any():
            keep[0] = True
        p = p[keep]
    if len(p) < 3:
        raise _checks.fail_shape("points", "[P, 2] with P >= 3 distinct vertices", p)
    area = polygon_signed_area(p)
    if abs(area) <= eps:
        raise _checks.fail_value("points", f"a polygon whose |area| > eps = {eps}", area, hint="It is degenerate.")
    if area < 0:
        p = p[::-1]
    i0 = _start_index(p)
    p = np.concatenate([p[i0:], p[:i0]], axis=0)
    ring = np.concatenate([p, p[:1]], axis=0)
    seg = np.linalg.norm(np.diff(ring, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    if total <= eps:
        raise _checks.fail_value("points", f"a polygon whose perimeter > eps = {eps}", total, hint="It is degenerate.")
    t = np.arange(k, dtype=np.float64) * (total / k)
    out = np.stack([np.interp(t, cum, ring[:, 0]), np.interp(t, cum, ring[:, 1])], axis=1)
    i0 = _start_index(out)
    out = np.concatenate([out[i0:], out[:i0]], axis=0)
    return out.astype(np.float32)


def canonical_order(points) -> np.ndarray:
    """Put a polygon's existing vertices in canonical order, without resampling.

    Reverses the vertices if the shoelace area is negative, then rolls them to start at the vertex with the
    smallest centroid angle (same rule as :func:`canonical_polygon`). Use it after a flip (which reverses the
    orientation) of a polygon that is already evenly resampled; flipping twice then returns the original.

    Args:
      points: ``[k, 2]`` vertices, or ``[n, k, 2]`` for ``n`` polygons at once.

    Returns:
      float32 of the same shape, the same vertex sets in canonical order.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim not in (2, 3) or p.shape[-1] != 2 or p.shape[-2] < 3:
        raise _checks.fail_shape("points", "[k, 2] or [n, k, 2] with k >= 3", p)
    batch = p if p.ndim == 3 else p[None]
    k = batch.shape[1]
    nxt = np.roll(batch, -1, axis=1)
    area = 0.5 * np.sum(batch[..., 0] * nxt[..., 1] - nxt[..., 0] * batch[..., 1], axis=1)  # polygon_signed_area
    batch = np.where((area < 0)[:, None, None], batch[:, ::-1], batch)
    order = (np.arange(k) + _start_indices(batch)[:, None]) % k
    out = np.take_along_axis(batch, order[..., None], axis=1).astype(np.float32)
    return out if p.ndim == 3 else out[0]


def _canonical_same_length(p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`canonical_polygon` of ``[n, P, 2]`` float64 rings at once, with the same floating-point operations
    (so the same bits). Returns ``(out [n, k, 2] float32, ok [n])``; rows that are not ok (repeated vertices,
    degenerate or non-finite) are left to :func:`canonical_polygon`."""
    n, m = p.shape[:2]
    nxt = np.roll(p, -1, axis=1)
    ok = np.all(np.isfinite(p), axis=(1, 2)) & ~np.any(np.all(p == nxt, axis=2), axis=1)
    area = 0.5 * np.sum(p[..., 0] * nxt[..., 1] - nxt[..., 0] * p[..., 1], axis=1)
    ok &= np.abs(area) > 1e-12
    p = np.where((area < 0)[:, None, None], p[:, ::-1], p)
    p = np.take_along_axis(p, ((np.arange(m) + _start_indices(p)[:, None]) % m)[..., None], axis=1)
    ring = np.concatenate([p, p[:, :1]], axis=1)
    seg = np.linalg.norm(np.diff(ring, axis=1), axis=2)
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(seg, axis=1)], axis=1)  # [n, P + 1]
    total = cum[:, -1]
    ok &= total > 1e-12
    t = np.arange(k, dtype=np.float64)[None, :] * (total / k)[:, None]  # [n, k]
    # np.interp: j with cum[j] <= t < cum[j + 1], then slope * (t - cum[j]) + y[j] (y[j] where t == cum[j]).
    j = np.clip(np.sum(cum[:, None, :] <= t[:, :, None], axis=2) - 1, 0, m - 1)  # [n, k]
    c0, c1 = np.take_along_axis(cum, j, axis=1), np.take_along_axis(cum, j + 1, axis=1)
    out = np.empty((n, k, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        for d in range(2):
            y0 = np.take_along_axis(ring[..., d], j, axis=1)
            y1 = np.take_along_axis(ring[..., d], j + 1, axis=1)
            out[..., d] = np.where(c0 == t, y0, (y1 - y0) / (c1 - c0) * (t - c0) + y0)
    out = np.take_along_axis(out, ((np.arange(k) + _start_indices(out)[:, None]) % k)[..., None], axis=1)
    return out.astype(np.float32), ok


def _start_indices(points: np.ndarray) -> np.ndarray:
    """:func:`_start_index` of each of ``[n, P, 2]`` polygons."""
    centre = points.mean(axis=1)
    ang = np.arctan2(points[..., 1] - centre[:, None, 1], points[..., 0] - centre[:, None, 0])
    ang = np.where(ang > np.pi - _ANGLE_WRAP_TOL, ang - 2.0 * np.pi, ang)
    return np.argmin(ang, axis=1)


def canonical_polygons(polygons, k: int = 8) -> np.ndarray:
    """Apply :func:`canonical_polygon` to a sequence of (possibly ragged) polygons.

    Polygons with the same vertex count (8 or more of them) are resampled together (vectorised, bit-identical
    to :func:`canonical_polygon`); a degenerate one raises its ValueError.

    Args:
      polygons: sequence of ``[P_i, 2]`` arrays (or an ``[n, P, 2]`` array).
      k: vertices per output polygon.

    Returns:
      ``[n, k, 2]`` float32 (``[0, k, 2]`` for an empty sequence).
    """
    if isinstance(k, bool) or int(k) != k or k < 3:
        raise _checks.fail_value("k", "an integer >= 3", k)
    polys = [np.asarray(p, dtype=np.float64) for p in polygons]
    out = np.zeros((len(polys), int(k), 2), np.float32)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(polys):
        if p.ndim == 2 and p.shape[-1] == 2 and len(p) >= 3:
            groups.setdefault(len(p), []).append(i)
        else:
            out[i] = canonical_polygon(p, k)  # raises its shape error
    for idx in groups.values():
        if len(idx) < _MIN_BATCH:  # a few polygons: the vectorised path's fixed cost is not worth it
            for i in idx:
                out[i] = canonical_polygon(polys[i], k)
            continue
        batch, ok = _canonical_same_length(np.stack([polys[i] for i in idx]), int(k))
        for row, i in enumerate(idx):
            out[i] = batch[row] if ok[row] else canonical_polygon(polys[i], k)
    return out


def box_to_polygon(box) -> np.ndarray:
    """The 4 corners ``[4, 2]`` (float64) of an ``xyxy`` box, used when an annotation has no polygon."""
    box = np.asarray(box, dtype=np.float64)
    _checks.layout(box, "box", shape="[4]", ndim=1, last=4)
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def clip_polygon(points, x_min=0.0, y_min=0.0, x_max=1.0, y_max=1.0) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon to an axis-aligned rectangle.

    Args:
      points: ``[P, 2]`` vertices.
      x_min, y_min, x_max, y_max: the clip rectangle.

    Returns:
      ``[Q, 2]`` float64 clipped polygon (``Q`` may be 0 when the polygon lies outside).
    """
    points = np.asarray(points, dtype=np.float64)
    _checks.layout(points, "points", shape="[P, 2]", ndim=2, last=2)
    poly = [tuple(v) for v in points]
    # Each edge: (axis, bound, keep_if_greater).
    for axis, bound, greater in ((0, x_min, True), (0, x_max, False), (1, y_min, True), (1, y_max, False)):
        if not poly:
            break

        def inside(v, axis=axis, bound=bound, greater=greater):
            return v[axis] >= bound if greater else v[axis] <= bound

        out = []
        prev = poly[-1]
        for cur in poly:
            cin, pin = inside(cur), inside(prev)
            if cin != pin:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                cross = [prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])]
                cross[axis] = bound
                out.append(tuple(cross))
            if cin:
                out.append(cur)
            prev = cur
        poly = out
    return np.asarray(poly, dtype=np.float64).reshape(-1, 2)
