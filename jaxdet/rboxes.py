"""Rotated boxes in ultralytics' ``xywhr`` convention: ProbIoU, covariances, corners and regularisation.

A rotated box is ``[..., 5]`` = ``(cx, cy, w, h, angle)``, the angle in radians, as ultralytics' OBB models
(``xywhr``): the box's own x axis (along ``w``) points along :math:`(\\cos\\theta, \\sin\\theta)` and its y axis
(along ``h``) along :math:`(-\\sin\\theta, \\cos\\theta)`. In image coordinates (y down) a positive angle turns
the box clockwise on screen. :mod:`jaxdet.polygons` follows the ``mgiou`` package instead, whose angle has the
opposite sign: ``polygons.rotated_box_corners(b)`` with ``b[..., 4] = -angle`` gives the corners of the same
rectangle (in another order), which is how :mod:`jaxdet.losses.obb` hands these boxes to MGIoU.

**ProbIoU** (Llerena et al. 2021) models a box as a 2D Gaussian with mean its centre and covariance
:math:`\\Sigma = R\\,\\mathrm{diag}(w^2/12, h^2/12)\\,R^\\top` (:func:`rbox_covariance`) and compares two of them
through the Bhattacharyya distance :math:`B_D` and the Hellinger distance
:math:`H_D = \\sqrt{1 - e^{-B_D}}`: ``probiou = 1 - H_D``. :func:`probiou` is ultralytics' elementwise
``probiou`` (``utils/metrics.py``, with its ``CIoU`` aspect-ratio path and its ``floor``, 0.01 in
``RotatedBboxLoss``), :func:`probiou_pairwise` its ``batch_probiou``; both to the last digit, eps ``1e-7``.

**Numerics.** Every value and gradient stays finite for finite input: zero width or height, both (a point),
identical boxes, angles of ±π/2 and boxes far apart. Where ultralytics itself is finite the values are its
values; the guards only change what would be NaN or infinite there:

- :math:`\\sqrt{\\det\\Sigma_1 \\det\\Sigma_2}` goes through a double ``where`` (its derivative at 0 is
  infinite; a degenerate box has :math:`\\det\\Sigma = 0`);
- :math:`\\det(\\Sigma_1 + \\Sigma_2)`, non-negative in exact arithmetic, is clamped at 0: rounding can make it
  slightly negative for two collinear degenerate boxes, where ultralytics takes the log of a negative number;
- ``CIoU=True``'s :math:`\\arctan(w/h)` is ``atan2(±w, |h|)`` (:math:`\\pm\\pi/2` at :math:`h = 0`), 0 with a
  zero gradient where both sides are below about 1e-19 (float32; ultralytics: NaN at ``w = h = 0``);
- the clamp of :math:`B_D` to ``[eps, 100]`` passes the gradient at its bounds, as ``torch.clamp``;
- :math:`1 - e^{-B_D}` is ``-expm1(-B_D)``: for nearly identical boxes (:math:`B_D` near its floor ``eps``)
  ``1 - exp`` loses most of its digits in float32 (ultralytics' float32 ProbIoU of two identical boxes is off by
  2.1e-5; this is exact to rounding). In float64 the two agree to 1e-13.

References:
  Llerena, Zeni, Kristen, Jung, "Gaussian Bounding Boxes and Probabilistic Intersection-over-Union for Object
  Detection", arXiv:2106.06072, 2021.
  ultralytics 8.4.190 ``ultralytics/utils/metrics.py`` (``_get_covariance_matrix``, ``probiou``,
  ``batch_probiou``) and ``ultralytics/utils/ops.py`` (``xywhr2xyxyxyxy``, ``regularize_rboxes``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxdet import _checks

__all__ = [
    "PROBIOU_EPS",
    "rbox_covariance",
    "probiou",
    "probiou_pairwise",
    "rbox_corners",
    "regularize_rboxes",
]

PROBIOU_EPS = 1e-7  # ultralytics probiou / batch_probiou eps


def _check_rboxes(boxes, argname: str) -> jax.Array:
    return _checks.floating(boxes, argname, shape="[..., 5] as (cx, cy, w, h, angle)", min_ndim=1, last=5)


def _covariance(boxes: jax.Array, floor) -> tuple[jax.Array, jax.Array, jax.Array]:
    a = boxes[..., 2] ** 2 / 12 + floor
    b = boxes[..., 3] ** 2 / 12 + floor
    cos, sin = jnp.cos(boxes[..., 4]), jnp.sin(boxes[..., 4])
    cos2, sin2 = cos**2, sin**2
    return a * cos2 + b * sin2, a * sin2 + b * cos2, (a - b) * cos * sin


def rbox_covariance(rboxes, *, floor: float = 0.0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The covariance :math:`\\Sigma = [[a, c], [c, b]]` of each box's Gaussian (ultralytics
    ``_get_covariance_matrix``).

    .. math::
       \\alpha = w^2/12 + f,\\ \\beta = h^2/12 + f,\\quad
       a = \\alpha\\cos^2\\theta + \\beta\\sin^2\\theta,\\
       b = \\alpha\\sin^2\\theta + \\beta\\cos^2\\theta,\\
       c = (\\alpha - \\beta)\\cos\\theta\\sin\\theta

    Args:
      rboxes: ``[..., 5]`` xywhr.
      floor: :math:`f`, added to both variances (ultralytics' ``floor``: 0, or 0.01 in ``RotatedBboxLoss``, to
        bound the gradients of sub-stride boxes).

    Returns:
      ``(a, b, c)``, each ``[...]``.
    """
    rboxes = _check_rboxes(rboxes, "rboxes")
    floor = _checks.number(floor, "floor", low=0)
    return _covariance(rboxes, floor)


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` for ``x >= 0`` with gradient 0 (not infinite) at ``x = 0``."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), 0)


def _clamp(x: jax.Array, low: float, high: float) -> jax.Array:
    """``torch.clamp``: the gradient passes at the bounds themselves (``jnp.clip`` halves it there)."""
    return jnp.where(x < low, low, jnp.where(x > high, high, x)).astype(x.dtype)


def _probiou(center1, cov1, center2, cov2, eps) -> jax.Array:
    """ProbIoU from broadcastable centres ``(x, y)`` and covariances ``(a, b, c)`` (ultralytics' formula)."""
    (x1, y1), (a1, b1, c1) = center1, cov1
    (x2, y2), (a2, b2, c2) = center2, cov2
    a, b, c = a1 + a2, b1 + b2, c1 + c2
    det = jnp.maximum(a * b - c**2, 0)  # det(Σ1 + Σ2) >= 0; rounding can take it below for degenerate pairs
    t1 = ((a * (y1 - y2) ** 2 + b * (x1 - x2) ** 2) / (det + eps)) * 0.25
    t2 = ((c * (x2 - x1) * (y1 - y2)) / (det + eps)) * 0.5
    dets = jnp.maximum(a1 * b1 - c1**2, 0) * jnp.maximum(a2 * b2 - c2**2, 0)
    t3 = jnp.log(det / (4 * _safe_sqrt(dets) + eps) + eps) * 0.5
    bd = _clamp(t1 + t2 + t3, eps, 100.0)
    hd = jnp.sqrt(-jnp.expm1(-bd) + eps)  # 1 - exp(-bd) without its cancellation at small bd (float32)
    return 1 - hd


def _atan_ratio(w: jax.Array, h: jax.Array) -> jax.Array:
    """``atan(w / h)`` in ``[-π/2, π/2]`` as ``atan2(±w, |h|)``, with finite gradients: where ``w² + h²`` is not a
    normal number (both sides under about 1e-19 in float32; ultralytics: NaN at ``w = h = 0``) it is 0 with a zero
    gradient (``w / h``'s own gradient ``-w / h²`` overflows long before that)."""
    norm2 = w * w + h * h
    ok = norm2 > jnp.finfo(norm2.dtype).tiny
    sign = jnp.where(h < 0, -1, 1).astype(w.dtype)
    return jnp.where(ok, jnp.arctan2(jnp.where(ok, w, 1) * sign, jnp.where(ok, jnp.abs(h), 1)), 0)


def probiou(boxes1, boxes2, *, ciou: bool = False, eps: float = PROBIOU_EPS, floor: float = 0.0) -> jax.Array:
    """Elementwise ProbIoU of rotated boxes (ultralytics ``probiou``).

    .. math::
       B_D = \\tfrac14 \\frac{A (y_1 - y_2)^2 + B (x_1 - x_2)^2}{A B - C^2 + \\epsilon}
           + \\tfrac12 \\frac{C (x_2 - x_1)(y_1 - y_2)}{A B - C^2 + \\epsilon}
           + \\tfrac12 \\ln\\Big(\\frac{A B - C^2}{4\\sqrt{\\det\\Sigma_1\\det\\Sigma_2} + \\epsilon}
             + \\epsilon\\Big),\\qquad
       \\mathrm{ProbIoU} = 1 - \\sqrt{1 - e^{-\\mathrm{clamp}(B_D, \\epsilon, 100)} + \\epsilon}

    with :math:`[[A, C], [C, B]] = \\Sigma_1 + \\Sigma_2` (:func:`rbox_covariance`). With ``ciou=True``
    ultralytics subtracts CIoU's aspect-ratio penalty :math:`\\alpha v`,
    :math:`v = \\frac{4}{\\pi^2}(\\arctan\\frac{w_2}{h_2} - \\arctan\\frac{w_1}{h_1})^2` and
    :math:`\\alpha = v / (v - \\mathrm{ProbIoU} + 1 + \\epsilon)` a constant (``no_grad``), as in ``bbox_iou``.

    Args:
      boxes1: ``[..., 5]`` xywhr (ultralytics' ``obb1``, the ground truth).
      boxes2: ``[..., 5]`` xywhr (``obb2``, the prediction); leading axes broadcast with ``boxes1``'s.
      ciou: subtract the CIoU aspect-ratio term (ultralytics' ``CIoU``, default False).
      eps: ultralytics' ``eps`` (1e-7).
      floor: added to the variances (:func:`rbox_covariance`; 0.01 in ``RotatedBboxLoss``).

    Returns:
      ``[...]`` ProbIoU in ``[1 - sqrt(1 + eps), 1 - sqrt(1 - e^{-eps} + eps)]`` (less the CIoU term).
    """
    boxes1 = _check_rboxes(boxes1, "boxes1")
    boxes2 = _check_rboxes(boxes2, "boxes2")
    _checks.broadcastable(boxes2, boxes1.shape[:-1], "boxes2", "boxes1.shape[:-1]", skip_last=1,
                          shape="[..., 5] with leading axes")
    eps = _checks.number(eps, "eps", low=0)
    floor = _checks.number(floor, "floor", low=0)
    dtype = jnp.result_type(boxes1.dtype, boxes2.dtype)
    boxes1, boxes2 = boxes1.astype(dtype), boxes2.astype(dtype)
    iou = _probiou(
        (boxes1[..., 0], boxes1[..., 1]), _covariance(boxes1, floor),
        (boxes2[..., 0], boxes2[..., 1]), _covariance(boxes2, floor), eps,
    )
    if not ciou:
        return iou
    aspect1 = _atan_ratio(boxes1[..., 2], boxes1[..., 3])
    v = (4 / math.pi**2) * (_atan_ratio(boxes2[..., 2], boxes2[..., 3]) - aspect1) ** 2
    alpha = jax.lax.stop_gradient(v / (v - iou + (1 + eps)))
    return iou - v * alpha


def probiou_pairwise(boxes1, boxes2, *, eps: float = PROBIOU_EPS) -> jax.Array:
    """ProbIoU of every pair (ultralytics ``batch_probiou``): :func:`probiou` of ``boxes1[..., i, :]`` and
    ``boxes2[..., j, :]``, without forming ``[..., N, M, 5]``.

    Args:
      boxes1: ``[..., N, 5]`` xywhr.
      boxes2: ``[..., M, 5]`` xywhr; leading axes broadcast with ``boxes1``'s.
      eps: ultralytics' ``eps`` (1e-7).

    Returns:
      ``[..., N, M]``.
    """
    boxes1 = _checks.floating(boxes1, "boxes1", shape="[..., N, 5]", min_ndim=2, last=5)
    boxes2 = _checks.floating(boxes2, "boxes2", shape="[..., M, 5]", min_ndim=2, last=5)
    _checks.broadcastable(boxes2, boxes1.shape[:-2], "boxes2", "boxes1.shape[:-2]", skip_last=2,
                          shape="[..., M, 5] with leading axes")
    eps = _checks.number(eps, "eps", low=0)
    dtype = jnp.result_type(boxes1.dtype, boxes2.dtype)
    boxes1, boxes2 = boxes1.astype(dtype), boxes2.astype(dtype)
    cov1 = tuple(x[..., :, None] for x in _covariance(boxes1, 0.0))
    cov2 = tuple(x[..., None, :] for x in _covariance(boxes2, 0.0))
    center1 = (boxes1[..., :, None, 0], boxes1[..., :, None, 1])
    center2 = (boxes2[..., None, :, 0], boxes2[..., None, :, 1])
    return _probiou(center1, cov1, center2, cov2, eps)


def rbox_corners(rboxes) -> jax.Array:
    """The four corners of xywhr boxes, in ultralytics ``xywhr2xyxyxyxy``'s order.

    .. math::
       v_1 = \\tfrac w2 (\\cos\\theta, \\sin\\theta),\\ v_2 = \\tfrac h2 (-\\sin\\theta, \\cos\\theta):\\quad
       (c + v_1 + v_2,\\ c + v_1 - v_2,\\ c - v_1 - v_2,\\ c - v_1 + v_2)

    (:func:`jaxdet.polygons.rotated_box_corners` uses the ``mgiou`` package's convention, the opposite angle, and
    another order.)

    Args:
      rboxes: ``[..., 5]`` xywhr.

    Returns:
      ``[..., 4, 2]`` corners ``(x, y)``.
    """
    rboxes = _check_rboxes(rboxes, "rboxes")
    return _corners(rboxes)


def _corners(rboxes: jax.Array) -> jax.Array:
    center = rboxes[..., :2]
    w, h, angle = rboxes[..., 2:3], rboxes[..., 3:4], rboxes[..., 4:5]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    vec1 = jnp.concatenate([w / 2 * cos, w / 2 * sin], axis=-1)
    vec2 = jnp.concatenate([-h / 2 * sin, h / 2 * cos], axis=-1)
    return jnp.stack([center + vec1 + vec2, center + vec1 - vec2, center - vec1 - vec2, center - vec1 + vec2], axis=-2)


def regularize_rboxes(rboxes) -> jax.Array:
    """The same rectangles with angles in ``[0, π/2)`` (ultralytics ``regularize_rboxes``).

    Where :math:`\\theta \\bmod \\pi \\ge \\pi/2` the width and height swap; the angle becomes
    :math:`\\theta \\bmod \\pi/2` (floored modulo, as ``torch``'s ``%``).

    Args:
      rboxes: ``[..., 5]`` xywhr.

    Returns:
      ``[..., 5]``.
    """
    rboxes = _check_rboxes(rboxes, "rboxes")
    x, y, w, h, t = (rboxes[..., i] for i in range(5))
    swap = jnp.mod(t, math.pi) >= math.pi / 2
    return jnp.stack([x, y, jnp.where(swap, h, w), jnp.where(swap, w, h), jnp.mod(t, math.pi / 2)], axis=-1)
