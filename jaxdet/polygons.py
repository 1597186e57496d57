"""Polygons and rotated boxes: area, vertex ordering, exact convex IoU and the MGIoU loss.

Conventions:

* A polygon is ``[..., K, 2]`` of (x, y) vertices. Polygons with fewer real vertices than the array holds are
  padded either with a boolean ``valid`` mask ``[..., K]`` (padding slots may hold anything, even NaN: they
  never reach a value or a gradient) or with repeated vertices (zero-length edges, which every function here
  ignores). Both paddings give the same values.
* Counter-clockwise (CCW) means a positive shoelace signed area in the array's own (x, y) coordinates.
* A rotated box is ``(cx, cy, w, h, theta)`` with ``theta`` in radians, following the ``mgiou`` package
  (``MGIoU2D._rect_to_corners``): the box's own x axis points along ``(cos theta, -sin theta)`` and its y axis
  along ``(sin theta, cos theta)``. On screen, with y pointing down (image coordinates), a positive ``theta``
  turns the box counter-clockwise; in y-up maths coordinates it turns it clockwise.

Everything is jit-safe with fixed shapes, broadcasts over leading axes, and keeps values and gradients finite
on degenerate input (repeated vertices, collinear points, zero area, all-identical points) through the
double-``where`` pattern.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxdet import _checks

__all__ = [
    "polygon_signed_area",
    "polygon_area",
    "sort_vertices_ccw",
    "rotated_box_corners",
    "convex_polygon_iou",
    "mgiou",
    "mgiou_loss",
    "mgiou_rotated",
    "mgiou_rotated_loss",
]


# --------------------------------------------------------------------------------------------------------- #
#                                          input checks                                                      #
# --------------------------------------------------------------------------------------------------------- #
def _check_polygon(polygon, argname: str) -> jax.Array:
    """A float ``[..., K, 2]`` polygon with ``K >= 1``."""
    shape = "[..., K, 2] with K >= 1"
    polygon = _checks.floating(polygon, argname, shape=shape, min_ndim=2, last=2)
    if polygon.shape[-2] < 1:
        raise _checks.fail_shape(argname, shape, polygon)
    return polygon


def _check_valid(valid, polygon: jax.Array, argname: str) -> jax.Array:
    """A bool vertex mask of the polygon's ``[..., K]`` (all True when None)."""
    if valid is None:
        return jnp.ones(polygon.shape[:-1], dtype=bool)
    valid = _checks.boolean(valid, argname)
    _checks.shape_is(valid, polygon.shape[:-1], argname, "the polygon's [..., K]")
    return valid


def _check_rboxes(boxes, argname: str) -> jax.Array:
    """Float rotated boxes ``[..., 5]`` as (cx, cy, w, h, theta)."""
    return _checks.floating(boxes, argname, shape="[..., 5] as (cx, cy, w, h, theta)", min_ndim=1, last=5)


def _cross(a: jax.Array, b: jax.Array) -> jax.Array:
    """z component of a × b over the last axis (of size 2)."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


# --------------------------------------------------------------------------------------------------------- #
#                                   ordering, padding, area                                                  #
# --------------------------------------------------------------------------------------------------------- #
def _canonical(polygon: jax.Array, valid: jax.Array, *, sort: bool) -> tuple[jax.Array, jax.Array]:
    """Orders the valid vertices first and fills the padding slots with the first vertex.

    With ``sort`` the valid vertices are sorted by angle around their centroid (CCW for any point set whose
    centroid sees it in angular order, in particular convex polygons); otherwise they keep their order. A
    polygon with no valid vertex becomes the origin. The result is a closed polygon whose padding edges have
    length exactly zero.
    """
    k = polygon.shape[-2]
    n = jnp.sum(valid, axis=-1)  # [...]
    w = valid[..., None]
    count = jnp.maximum(n, 1)[..., None].astype(polygon.dtype)
    centroid = jnp.sum(jnp.where(w, polygon, 0.0), axis=-2) / count  # [..., 2]; the origin when n == 0
    safe = jnp.where(w, polygon, centroid[..., None, :])  # [..., K, 2]; padding never reaches the output
    if sort:
        d = lax.stop_gradient(safe - centroid[..., None, :])  # only used for the (non-differentiable) order
        key = jnp.where(valid, jnp.arctan2(d[..., 1], d[..., 0]), jnp.inf)
    else:
        key = jnp.where(valid, jnp.arange(k), k)
    idx = jnp.argsort(key, axis=-1, stable=True)  # [..., K]
    ordered = jnp.take_along_axis(safe, idx[..., None], axis=-2)
    ordered_valid = jnp.arange(k) < n[..., None]  # [..., K]
    ordered = jnp.where(ordered_valid[..., None], ordered, ordered[..., :1, :])
    return ordered, ordered_valid


def _shoelace(closed: jax.Array) -> jax.Array:
    """Signed area of a polygon whose padding slots repeat its first vertex. ``[..., K, 2] -> [...]``."""
    rel = closed - closed[..., :1, :]  # translate to the first vertex: less cancellation
    return 0.5 * jnp.sum(_cross(rel, jnp.roll(rel, -1, axis=-2)), axis=-1)


def polygon_signed_area(polygon, *, valid=None) -> jax.Array:
    r"""Signed (shoelace) area of a polygon, taking its valid vertices in array order.

    .. math:: A = \tfrac12 \sum_i (x_i y_{i+1} - x_{i+1} y_i)

    Positive for counter-clockwise vertices (in the array's own x, y coordinates).

    Args:
      polygon: ``[..., K, 2]`` vertices.
      valid: optional bool ``[..., K]``; invalid vertices are skipped (the polygon closes over the valid ones).

    Returns:
      ``[...]`` signed area.
    """
    polygon = _check_polygon(polygon, "polygon")
    valid = _check_valid(valid, polygon, "valid")
    closed, _ = _canonical(polygon, valid, sort=False)
    return _shoelace(closed)


def polygon_area(polygon, *, valid=None) -> jax.Array:
    """Unsigned area ``|polygon_signed_area|``. Args as :func:`polygon_signed_area`; returns ``[...]``."""
    return jnp.abs(polygon_signed_area(polygon, valid=valid))


def sort_vertices_ccw(polygon, *, valid=None) -> tuple[jax.Array, jax.Array]:
    r"""Sorts vertices counter-clockwise by angle around the centroid of the valid vertices (jit-safe).

    The valid vertices come first, ordered by increasing :math:`\operatorname{atan2}(y - c_y, x - c_x)` (so
    the first is the one with the smallest angle, and the shoelace area is :math:`\ge 0`); the padding slots
    come last and are filled with a copy of the first vertex, so the result is also a valid repeated-vertex
    padding. A polygon with no valid vertex comes back as the origin repeated, with an all-False mask.
    Gradients flow through the permutation (the order itself is piecewise constant). For a convex
    polygon this is its boundary order; for other point sets it is the star-shaped order around the centroid.

    Args:
      polygon: ``[..., K, 2]`` vertices.
      valid: optional bool ``[..., K]``.

    Returns:
      ``(ordered [..., K, 2], ordered_valid [..., K])``.
    """
    polygon = _check_polygon(polygon, "polygon")
    valid = _check_valid(valid, polygon, "valid")
    return _canonical(polygon, valid, sort=True)


def rotated_box_corners(boxes) -> jax.Array:
    r"""Corners of rotated boxes ``(cx, cy, w, h, theta)``, theta in radians, in the ``mgiou`` convention.

    .. math::
        (x, y) = (c_x, c_y) + (u\cos\theta + v\sin\theta,\; -u\sin\theta + v\cos\theta),\quad
        (u, v) \in \{(-\tfrac w2, -\tfrac h2), (\tfrac w2, -\tfrac h2), (\tfrac w2, \tfrac h2),
        (-\tfrac w2, \tfrac h2)\}

    i.e. the box's x axis is :math:`(\cos\theta, -\sin\theta)`: counter-clockwise on screen with y down,
    clockwise in y-up coordinates. The corners come in that order, which is CCW (positive shoelace area) for
    ``w, h > 0``.

    Args:
      boxes: ``[..., 5]``.

    Returns:
      ``[..., 4, 2]`` corners.
    """
    boxes = _check_rboxes(boxes, "boxes")
    return _corners(boxes)


def _corners(boxes: jax.Array) -> jax.Array:
    cx, cy, w, h, theta = (boxes[..., i] for i in range(5))
    c, s = jnp.cos(theta), jnp.sin(theta)
    u = 0.5 * w[..., None] * jnp.array([-1.0, 1.0, 1.0, -1.0], dtype=boxes.dtype)  # [..., 4]
    v = 0.5 * h[..., None] * jnp.array([-1.0, -1.0, 1.0, 1.0], dtype=boxes.dtype)
    x = cx[..., None] + u * c[..., None] + v * s[..., None]
    y = cy[..., None] - u * s[..., None] + v * c[..., None]
    return jnp.stack([x, y], axis=-1)


# --------------------------------------------------------------------------------------------------------- #
#                                 exact convex IoU (Sutherland-Hodgman)                                      #
# --------------------------------------------------------------------------------------------------------- #
def _clip_by_edge(carry, edge):
    """Clips the convex polygon ``carry = (V [M, 2], n)`` by the half-plane left of ``a -> b``."""
    poly, n = carry
    a, b, ok = edge
    m = poly.shape[0]
    idx = jnp.arange(m)
    nxt = jnp.where(idx + 1 < n, idx + 1, 0)
    d = _cross(b - a, poly - a)  # [M], >= 0 inside
    inside = d >= 0
    d_next, inside_next, poly_next = d[nxt], inside[nxt], poly[nxt]
    live = idx < n
    emit_cur = live & inside
    emit_int = live & (inside != inside_next)
    denom = d - d_next  # != 0 wherever emit_int
    t = d / jnp.where(emit_int, denom, 1.0)
    cross_pt = poly + t[:, None] * (poly_next - poly)
    count = emit_cur.astype(jnp.int32) + emit_int.astype(jnp.int32)
    offset = jnp.cumsum(count) - count
    out = jnp.zeros_like(poly)
    out = out.at[jnp.where(emit_cur, offset, m)].set(poly, mode="drop")
    out = out.at[jnp.where(emit_int, offset + emit_cur, m)].set(cross_pt, mode="drop")
    n_out = jnp.minimum(jnp.sum(count), m)
    return (jnp.where(ok, out, poly), jnp.where(ok, n_out, n)), None


def _convex_iou_single(p, p_valid, q, q_valid):
    k1, k2 = p.shape[0], q.shape[0]
    m = k1 + k2  # the intersection of convex k1- and k2-gons has at most k1 + k2 vertices
    p, p_ok = _canonical(p, p_valid, sort=True)
    q, _ = _canonical(q, q_valid, sort=True)
    area_p, area_q = jnp.abs(_shoelace(p)), jnp.abs(_shoelace(q))
    n0 = jnp.sum(p_ok)
    start = jnp.concatenate([p, jnp.broadcast_to(p[:1], (k2, 2))], axis=0)  # [M, 2]
    a, b = q, jnp.roll(q, -1, axis=0)
    edge_ok = jnp.sum((b - a) ** 2, axis=-1) > 0  # padding / repeated vertices: no clipping
    (poly, n), _ = lax.scan(_clip_by_edge, (start, n0), (a, b, edge_ok))
    live = jnp.arange(m) < n
    poly = jnp.where(live[:, None], poly, poly[:1])  # close with the first vertex for the shoelace
    inter = jnp.where(n >= 3, jnp.abs(_shoelace(poly)), 0.0)
    inter = jnp.clip(inter, 0.0, jnp.minimum(area_p, area_q))
    union = area_p + area_q - inter
    ok = union > 0
    return jnp.where(ok, inter / jnp.where(ok, union, 1.0), 0.0)


def convex_polygon_iou(p, q, *, p_valid=None, q_valid=None) -> jax.Array:
    r"""Exact IoU of two convex polygons under jit (Sutherland–Hodgman clipping with fixed shapes).

    .. math:: \mathrm{IoU} = \frac{|P \cap Q|}{|P| + |Q| - |P \cap Q|}

    Both polygons are first sorted CCW around their centroids (so any vertex order is accepted), then ``P`` is
    clipped by every edge of ``Q`` into a buffer of ``K1 + K2`` vertices (the most a convex intersection can
    have). Meant for evaluation; it is differentiable almost everywhere, but MGIoU is the training loss.
    Zero-area polygons (and polygons with no valid vertex) give IoU 0, never NaN.

    Args:
      p: ``[..., K1, 2]`` convex polygon.
      q: ``[..., K2, 2]`` convex polygon; leading axes broadcast with ``p``'s.
      p_valid: optional bool ``[..., K1]`` vertex mask for ``p``.
      q_valid: optional bool ``[..., K2]`` vertex mask for ``q``.

    Returns:
      ``[...]`` IoU in [0, 1].
    """
    p = _check_polygon(p, "p")
    q = _check_polygon(q, "q")
    p_valid = _check_valid(p_valid, p, "p_valid")
    q_valid = _check_valid(q_valid, q, "q_valid")
    dtype = jnp.result_type(p.dtype, q.dtype)
    lead = jnp.broadcast_shapes(p.shape[:-2], q.shape[:-2])
    k1, k2 = p.shape[-2], q.shape[-2]
    p = jnp.broadcast_to(p.astype(dtype), lead + (k1, 2)).reshape(-1, k1, 2)
    q = jnp.broadcast_to(q.astype(dtype), lead + (k2, 2)).reshape(-1, k2, 2)
    p_valid = jnp.broadcast_to(p_valid, lead + (k1,)).reshape(-1, k1)
    q_valid = jnp.broadcast_to(q_valid, lead + (k2,)).reshape(-1, k2)
    return jax.vmap(_convex_iou_single)(p, p_valid, q, q_valid).reshape(lead)


# --------------------------------------------------------------------------------------------------------- #
#                                                  MGIoU                                                     #
# --------------------------------------------------------------------------------------------------------- #
def _tiny(dtype) -> float:
    """Smallest squared edge length / 1D hull length treated as non-zero: ``finfo.tiny ** (1/3)``.

    About 2e-13 in float32 and 3e-103 in float64. Below it the derivatives (``1 / hull**2``, ``len2 ** -1.5``)
    would overflow; real geometry is many orders of magnitude above it (an edge must be longer than ~5e-7 in
    float32, ~2e-52 in float64, to count as an axis).
    """
    return float(jnp.finfo(dtype).tiny) ** (1.0 / 3.0)


def _edge_normals(closed: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Unit edge normals of a closed polygon and the mask of non-zero edges: ``[..., K, 2] -> [..., K, 2], [..., K]``.
    """
    e = jnp.roll(closed, -1, axis=-2) - closed
    len2 = jnp.sum(e * e, axis=-1)
    ok = len2 > _tiny(closed.dtype)  # zero-length edges (padding, repeated vertices) are not axes
    inv = lax.rsqrt(jnp.where(ok, len2, 1.0))  # double-where: never rsqrt(0)
    normal = jnp.stack([-e[..., 1], e[..., 0]], axis=-1) * inv[..., None]
    return jnp.where(ok[..., None], normal, 0.0), ok


def _extremes(poly: jax.Array, axes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Min and max projection of ``poly [..., K, 2]`` on each of ``axes [..., A, 2]`` -> ``[..., A]`` each.

    The extreme vertex is chosen without gradient (argmin/argmax over the vertex-major ``[..., K, A]``
    projections), then re-projected, so the backward pass is a small gather instead of the min/max rule over
    the whole ``[..., K, A]`` array (about 2x faster on CPU). At an exact tie the gradient goes to the first
    tied vertex; at the ties that occur structurally (both ends of an edge on that edge's normal) the tied
    projections are the same function of the inputs, so the gradient is the same whichever end is chosen.
    """
    ax, ay = axes[..., None, :, 0], axes[..., None, :, 1]  # [..., 1, A]
    proj = lax.stop_gradient(poly[..., :, None, 0] * ax + poly[..., :, None, 1] * ay)  # [..., K, A]
    lo = jnp.take_along_axis(poly, jnp.argmin(proj, axis=-2)[..., None], axis=-2)  # [..., A, 2]
    hi = jnp.take_along_axis(poly, jnp.argmax(proj, axis=-2)[..., None], axis=-2)
    return jnp.sum(lo * axes, axis=-1), jnp.sum(hi * axes, axis=-1)


def _projected_giou(p, q, axes, axes_ok, eps):
    r"""Mean over the valid axes of the 1D GIoU of the projections of ``p`` and ``q``.

    ``p [..., K1, 2]``, ``q [..., K2, 2]``, ``axes [..., A, 2]``, ``axes_ok [..., A]`` -> ``[...]``.
    """
    p_lo, p_hi = _extremes(p, axes)  # [..., A]
    q_lo, q_hi = _extremes(q, axes)
    overlap = jnp.minimum(p_hi, q_hi) - jnp.maximum(p_lo, q_lo)  # negative gap when disjoint
    hull = jnp.maximum(p_hi, q_hi) - jnp.minimum(p_lo, q_lo)
    nonflat = hull > _tiny(hull.dtype)  # hull == 0: both projections are the same single point -> GIoU 1
    giou = jnp.where(nonflat, overlap / jnp.where(nonflat, hull + eps, 1.0), 1.0)  # [..., A]
    count = jnp.sum(axes_ok, axis=-1)
    total = jnp.sum(jnp.where(axes_ok, giou, 0.0), axis=-1)
    return total / jnp.maximum(count, 1).astype(total.dtype)


def _with_fallback_axes(axes, axes_ok):
    """Appends the coordinate axes, used only when no edge gives an axis (both shapes single points)."""
    lead = axes.shape[:-2]
    eye = jnp.broadcast_to(jnp.eye(2, dtype=axes.dtype), lead + (2, 2))
    none = ~jnp.any(axes_ok, axis=-1, keepdims=True)  # [..., 1]
    return (jnp.concatenate([axes, eye], axis=-2), jnp.concatenate([axes_ok, jnp.broadcast_to(none, lead + (2,))], -1))


def mgiou(pred, target, *, pred_valid=None, target_valid=None, eps: float = 0.0, sort_vertices: bool = True):
    r"""Marginalized Generalized IoU (MGIoU) of two polygons.

    The candidate axes are the unit edge normals of both polygons (after sorting each polygon's vertices by
    angle around its centroid, as in the paper and the ``mgiou`` package). A polygon with no valid vertex is a
    single point at the origin (its inputs get no gradient). Both polygons are projected on every
    axis and the 1D GIoU of the two intervals is averaged over the axes:

    .. math::
        \mathrm{GIoU}_{1D}(a) = \frac{\min(\max P_a, \max Q_a) - \max(\min P_a, \min Q_a)}
                                     {\max(\max P_a, \max Q_a) - \min(\min P_a, \min Q_a) + \epsilon},
        \qquad \mathrm{MGIoU} = \frac{1}{|\mathcal A|} \sum_{a \in \mathcal A} \mathrm{GIoU}_{1D}(a)

    (in 1D this equals the paper's :math:`I/U - (C - U)/C` exactly). MGIoU lies in [-1, 1] and is 1 for
    identical shapes; -1 is reached only by zero-area shapes (two distinct points, two parallel segments on
    different lines), so for shapes with positive area it lies in (-1, 1].

    Degenerate input stays finite in value and gradient: zero-length edges (repeated vertices, padding) are
    removed from the axis set :math:`\mathcal A` and the mean runs over the remaining axes only; an axis on
    which both projections are the same single point counts as GIoU 1; if neither polygon has a non-zero edge
    (both are single points) the coordinate axes are used. "Zero" means below ``finfo(dtype).tiny ** (1/3)``
    for a squared edge length or a 1D hull length (about 2e-13 in float32, 3e-103 in float64), so that no
    derivative overflows.

    Differences from the ``mgiou`` package (``MGIoU2DPlus``), which agrees with this function on well-formed
    shapes (see ``jaxdet.parity.cases_polygons``):

    * Its ``_EPS = 0`` and its axes are unnormalized, so a zero-length edge gives the axis (0, 0), a zero hull
      and 0/0 = NaN in value and gradient. Here such edges are masked out.
    * ``MGIoU2D`` (rectangles) divides the reduced loss by ``avg_factor``, which defaults to the batch size
      ``B``: with ``reduction="mean"`` the loss is divided by ``B`` twice, and even ``reduction="none"`` returns
      ``loss / B``. jaxdet returns the unreduced loss and does not reproduce either.
    * ``MGIoU2DPlus(visible_mask=...)`` drops whole samples (a data-dependent shape); here masks are per vertex.

    Args:
      pred: ``[..., K1, 2]`` predicted polygon vertices.
      target: ``[..., K2, 2]`` target polygon vertices; leading axes broadcast with ``pred``'s.
      pred_valid: optional bool ``[..., K1]`` vertex mask (``None``: all valid). Repeated vertices work as
        padding too and give the same value.
      target_valid: optional bool ``[..., K2]`` vertex mask.
      eps: added to each 1D hull length (the package's ``_EPS``, 0 by default). The axes are unit vectors, so
        ``eps`` is in the input's length units.
      sort_vertices: sort each polygon's vertices by angle around its centroid (the paper's rule). ``False``
        takes the valid vertices in array order (already boundary-ordered input, either orientation).

    Returns:
      ``[...]`` MGIoU.

    References:
      Le et al. (2025), Marginalized Generalized IoU (MGIoU), arXiv:2504.16443; PyPI ``mgiou`` 0.1.0 (MIT).
    """
    pred = _check_polygon(pred, "pred")
    target = _check_polygon(target, "target")
    pred_valid = _check_valid(pred_valid, pred, "pred_valid")
    target_valid = _check_valid(target_valid, target, "target_valid")
    dtype = jnp.result_type(pred.dtype, target.dtype)
    p, _ = _canonical(pred.astype(dtype), pred_valid, sort=sort_vertices)
    q, _ = _canonical(target.astype(dtype), target_valid, sort=sort_vertices)
    lead = jnp.broadcast_shapes(p.shape[:-2], q.shape[:-2])
    p = jnp.broadcast_to(p, lead + p.shape[-2:])
    q = jnp.broadcast_to(q, lead + q.shape[-2:])
    np_, np_ok = _edge_normals(p)
    nq, nq_ok = _edge_normals(q)
    axes, axes_ok = _with_fallback_axes(jnp.concatenate([np_, nq], -2), jnp.concatenate([np_ok, nq_ok], -1))
    return _projected_giou(p, q, axes, axes_ok, eps)


def mgiou_loss(pred, target, *, pred_valid=None, target_valid=None, eps: float = 0.0, sort_vertices: bool = True):
    r"""MGIoU loss of two polygons, unreduced: :math:`\mathcal L = (1 - \mathrm{MGIoU}) / 2`, in [0, 1]
    ([0, 1) for shapes with positive area; see :func:`mgiou`).

    Args and conventions as :func:`mgiou`. Returns ``[...]``.
    """
    return 0.5 * (1.0 - mgiou(pred, target, pred_valid=pred_valid, target_valid=target_valid, eps=eps,
                              sort_vertices=sort_vertices))


def _box_axes(boxes: jax.Array) -> jax.Array:
    """The two unit axes (edge normals) of rotated boxes, from theta alone: ``[..., 5] -> [..., 2, 2]``."""
    c, s = jnp.cos(boxes[..., 4]), jnp.sin(boxes[..., 4])
    return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], axis=-2)


def mgiou_rotated(pred, target, *, eps: float = 0.0) -> jax.Array:
    r"""MGIoU of rotated boxes ``(cx, cy, w, h, theta)`` (theta in radians, ``mgiou`` convention; see
    :func:`rotated_box_corners`).

    The axes are the two edge normals of each box, four in all, as in ``mgiou.MGIoU2D(representation="rect")``;
    they are taken from :math:`\theta` directly, so a zero width or height still has well-defined axes (the
    package computes them from corner differences and gets NaN there). Formula as :func:`mgiou`.

    The package's ``MGIoU2D`` also replaces the loss of an all-zero target box by an L1 loss and divides by
    ``avg_factor`` (default ``B``) even with ``reduction="none"``; neither is reproduced here.

    Args:
      pred: ``[..., 5]`` predicted boxes.
      target: ``[..., 5]`` target boxes; leading axes broadcast with ``pred``'s.
      eps: added to each 1D hull length (0 as in the package).

    Returns:
      ``[...]`` MGIoU in [-1, 1] ((-1, 1] for boxes with positive size).
    """
    pred = _check_rboxes(pred, "pred")
    target = _check_rboxes(target, "target")
    dtype = jnp.result_type(pred.dtype, target.dtype)
    pred, target = pred.astype(dtype), target.astype(dtype)
    lead = jnp.broadcast_shapes(pred.shape[:-1], target.shape[:-1])
    pred, target = jnp.broadcast_to(pred, lead + (5,)), jnp.broadcast_to(target, lead + (5,))
    axes = jnp.concatenate([_box_axes(pred), _box_axes(target)], axis=-2)  # [..., 4, 2]
    axes_ok = jnp.ones(lead + (4,), dtype=bool)
    return _projected_giou(_corners(pred), _corners(target), axes, axes_ok, eps)


def mgiou_rotated_loss(pred, target, *, eps: float = 0.0) -> jax.Array:
    r"""MGIoU loss of rotated boxes, unreduced: :math:`(1 - \mathrm{MGIoU}) / 2`. Args as :func:`mgiou_rotated`."""
    return 0.5 * (1.0 - mgiou_rotated(pred, target, eps=eps))
