"""Host-side geometry of rotated boxes for the data pipeline (numpy + OpenCV), as ultralytics' OBB data does it.

Two representations:

* **corners** ``[n, 4, 2]``: the four vertices ``(x, y)`` of each rectangle in order around it (ultralytics'
  ``xyxyxyxy`` / the instances' ``segments``). Examples carry these through every geometric augmentation
  (they stay exact under letterbox, mosaic, affine maps and flips);
* **xywhr** ``[n, 5]``: ``(cx, cy, w, h, angle)``, angle in radians (ultralytics' ``xywhr``), what the batch
  carries (``rboxes``) and the loss reads. The canonical form (:func:`corners_to_xywhr`) has ``w >= h`` and
  :math:`\\theta \\in [-\\pi/4, 3\\pi/4)`.

The corners -> xywhr refit is OpenCV's minimum-area rectangle (``cv2.minAreaRect``, in float32 as ultralytics'
``xyxyxyxy2xywhr``), so after a shear (a parallelogram) or a cut by the image border the target is the
rectangle ultralytics trains on. :func:`clip_corners` is ultralytics' ``Instances.clip(preserve_obb=True)``
(8.4.190): a rectangle that leaves the image is replaced by the rectangle of its original orientation that
bounds its visible part.

References:
  Ultralytics ``ultralytics/utils/ops.py`` (``xyxyxyxy2xywhr``, ``xywhr2xyxyxyxy``) and
  ``ultralytics/utils/instance.py`` (``Instances.clip``), version 8.4.190.
"""

from __future__ import annotations

import numpy as np

from jaxdet import _checks
from jaxdet.data.pixels import _cv2

__all__ = ["clip_corners", "corners_to_xywhr", "xywhr_to_corners"]


def _corners(corners, argname: str = "corners") -> np.ndarray:
    pts = np.asarray(corners, np.float64)
    if pts.ndim == 2 and pts.shape[1] == 8:
        pts = pts.reshape(-1, 4, 2)
    _checks.layout(pts, argname, shape="[n, P, 2] (or [n, 8])", ndim=3, last=2)
    if not np.all(np.isfinite(pts)):
        raise _checks.fail_value(argname, "finite coordinates", "non-finite values")
    return pts


def _min_area_rect(points: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float]:
    """``cv2.minAreaRect`` of ``[P, 2]`` points in float32 (``((cx, cy), (w, h), angle_degrees)``)."""
    return _cv2().minAreaRect(np.ascontiguousarray(points, np.float32))


def corners_to_xywhr(corners) -> np.ndarray:
    """Minimum-area rotated rectangles of point sets, canonical (ultralytics' ``xyxyxyxy2xywhr``).

    .. math:: \\theta = \\frac{\\pi}{180}\\,\\alpha_{cv2} \\;(+\\tfrac{\\pi}{2},\\ w \\leftrightarrow h
              \\text{ when } w < h), \\quad \\theta \\leftarrow \\theta - \\pi\\,
              \\left\\lfloor \\frac{\\theta + \\pi/4}{\\pi} \\right\\rfloor \\in [-\\pi/4, 3\\pi/4)

    Args:
      corners: ``[n, P, 2]`` points (``P = 4`` corners; more points give their minimum-area rectangle) or
        ``[n, 8]``, any units.

    Returns:
      float64 ``[n, 5]`` ``(cx, cy, w, h, angle)`` with ``w >= h``, angle in radians in ``[-pi/4, 3pi/4)``.
    """
    pts = _corners(corners)
    out = np.zeros((len(pts), 5), np.float64)
    for i, p in enumerate(pts):
        (cx, cy), (w, h), angle = _min_area_rect(p)
        theta = angle / 180 * np.pi
        if w < h:
            w, h = h, w
            theta += np.pi / 2
        while theta >= 3 * np.pi / 4:
            theta -= np.pi
        while theta < -np.pi / 4:
            theta += np.pi
        out[i] = cx, cy, w, h, theta
    return out


def xywhr_to_corners(rboxes) -> np.ndarray:
    """The four corners of rotated boxes (ultralytics' ``xywhr2xyxyxyxy`` order).

    .. math:: c_{1,2,3,4} = (c_x, c_y) \\pm \\tfrac{w}{2}(\\cos\\theta, \\sin\\theta)
              \\pm \\tfrac{h}{2}(-\\sin\\theta, \\cos\\theta)

    in the order :math:`+u+v, +u-v, -u-v, -u+v`.

    Args:
      rboxes: ``[..., 5]`` ``(cx, cy, w, h, angle)``, angle in radians (any range, not canonicalised).

    Returns:
      float64 ``[..., 4, 2]``.
    """
    r = np.asarray(rboxes, np.float64)
    if r.ndim < 1 or r.shape[-1] != 5:
        raise _checks.fail_shape("rboxes", "[..., 5] (cx, cy, w, h, angle)", r)
    ctr = r[..., :2]
    cos, sin = np.cos(r[..., 4:5]), np.sin(r[..., 4:5])
    u = r[..., 2:3] / 2 * np.concatenate([cos, sin], axis=-1)
    v = r[..., 3:4] / 2 * np.concatenate([-sin, cos], axis=-1)
    return np.stack([ctr + u + v, ctr + u - v, ctr - u - v, ctr - u + v], axis=-2)


def clip_corners(corners, width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Clip rotated boxes to a ``width x height`` image, keeping their orientation (ultralytics'
    ``Instances.clip(preserve_obb=True)``).

    A box inside the image is kept; its box is the tight box of its corners. A box that leaves the image is
    intersected with it (``cv2.intersectConvexConvex`` of its convex hull and the image rectangle); its box becomes
    the bounds of the visible part, and its corners the rectangle with the original's minimum-area orientation
    :math:`\\theta` that bounds the visible part:

    .. math:: B = \\begin{pmatrix}\\cos\\theta & -\\sin\\theta \\\\ \\sin\\theta & \\cos\\theta\\end{pmatrix},
              \\quad (u, v) = p\\,B, \\quad \\text{corners} = \\{(u_2, v_2), (u_2, v_1), (u_1, v_1), (u_1, v_2)\\}\\,B^T

    A box with nothing visible gets zeros (box and corners), i.e. zero area: the caller removes it.

    Args:
      corners: ``[n, 4, 2]`` pixel corners.
      width, height: the image size in pixels.

    Returns:
      ``(boxes [n, 4] xyxy, corners [n, 4, 2])``, float64 pixels.
    """
    pts = _corners(corners)
    _checks.number(width, "width", low=0.0, low_open=True)
    _checks.number(height, "height", low=0.0, low_open=True)
    n = len(pts)
    boxes = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1).reshape(n, 4)
    out = pts.copy()
    cv2 = _cv2()
    canvas = np.array(((0, 0), (width, 0), (width, height), (0, height)), np.float32)
    inside = np.all((pts.min(axis=1) >= 0) & (pts.max(axis=1) <= (width, height)), axis=1)
    for i in np.flatnonzero(~inside):
        seg = pts[i].astype(np.float32)
        area, visible = cv2.intersectConvexConvex(cv2.convexHull(seg), canvas)
        if visible is None or area <= 0:
            boxes[i], out[i] = 0.0, 0.0
            continue
        visible = visible.reshape(-1, 2)
        boxes[i] = (*visible.min(axis=0), *visible.max(axis=0))
        _, (bw, bh), angle = _min_area_rect(seg)
        theta = np.deg2rad(angle + (90.0 if bw < bh else 0.0))
        # float32 as OpenCV's output and ultralytics' basis: the same rectangle to the last bit
        basis = np.array(((np.cos(theta), -np.sin(theta)), (np.sin(theta), np.cos(theta))), np.float32)
        (u1, v1), (u2, v2) = (visible @ basis).min(axis=0), (visible @ basis).max(axis=0)
        out[i] = np.array(((u2, v2), (u2, v1), (u1, v1), (u1, v2)), np.float32) @ basis.T
    return boxes, out
