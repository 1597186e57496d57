"""Letterbox: resize an image keeping its aspect ratio and pad it to a fixed size, as ultralytics' ``LetterBox``.

The image is scaled by :math:`r = \\min(H / h, W / w)` (up or down), each side rounded to whole pixels (at least
1), and centred on a ``fill`` canvas of ``(H, W)``, the padding split as ultralytics splits it (``round(d/2 - 0.1)``
before, the rest after). Every letterboxed example records where its pixels came from::

    orig_size  int32   [2]  (h, w) of the original image in pixels
    ratio_pad  float32 [4]  (gain_x, gain_y, pad_x, pad_y): a letterboxed pixel x' = gain_x * x + pad_x

``gain_x = new_w / w`` and ``gain_y = new_h / h`` are the realised per-axis gains (equal to ``r`` up to the
rounding of each side), so the mapping is exact for the resized content. An image that was not letterboxed
(a synthetic one, or an augmented mosaic) has the identity: ``orig_size = (H, W)``, ``ratio_pad = (1, 1, 0, 0)``
(:func:`identity_letterbox`).

Boxes are normalised to the image they refer to (``[0, 1]``, xyxy). :func:`letterbox_points` maps normalised
points of the original image into the letterboxed one; :func:`boxes_to_original` maps predictions on the
letterboxed image back to pixels of the original image, clipped to it, as ultralytics' ``scale_boxes`` does
before its COCO evaluation.

References:
  ultralytics 8.4.190, ``ultralytics/data/augment.py::LetterBox``, ``ultralytics/utils/ops.py::scale_boxes``.
"""

from __future__ import annotations

import numpy as np

from jaxdet import _checks
from jaxdet.data.pixels import resize

__all__ = ["PAD_VALUE", "letterbox_params", "letterbox_image", "letterbox_points", "identity_letterbox",
           "boxes_to_original", "points_to_original"]

#: ultralytics' grey padding value.
PAD_VALUE = 114


def _size_hw(size, name: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) <= 0:
        raise _checks.fail_value(name, "(height, width) > 0, or an int", size)
    return size


def letterbox_params(orig_size, size) -> tuple[tuple[int, int], np.ndarray]:
    """The resized content size and the mapping of a letterbox from ``orig_size`` to ``size``.

    Args:
      orig_size: ``(h, w)`` of the original image, or an int for a square one.
      size: ``(H, W)`` of the letterboxed image, or an int.

    Returns:
      ``((new_h, new_w), ratio_pad)``: the size the content is resized to, and float32 ``[4]``
      ``(gain_x, gain_y, pad_x, pad_y)``, the content's offset being ``(pad_x, pad_y)`` whole pixels.
    """
    h, w = _size_hw(orig_size, "orig_size")
    big_h, big_w = _size_hw(size, "size")
    r = min(big_h / h, big_w / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    pad_x, pad_y = round((big_w - new_w) / 2 - 0.1), round((big_h - new_h) / 2 - 0.1)
    return (new_h, new_w), np.array([new_w / w, new_h / h, pad_x, pad_y], np.float32)


def identity_letterbox(size) -> tuple[np.ndarray, np.ndarray]:
    """``(orig_size, ratio_pad)`` of an image of ``size`` that was not letterboxed."""
    h, w = _size_hw(size, "size")
    return np.array([h, w], np.int32), np.array([1.0, 1.0, 0.0, 0.0], np.float32)


def letterbox_image(image: np.ndarray, size, *, fill: int = PAD_VALUE) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox ``image`` to ``size`` (:func:`~jaxdet.data.pixels.resize`: bilinear, pixel-area averaging when
    shrinking to half or less; ``fill`` padding).

    Args:
      image: uint8 ``[h, w, 3]``.
      size: ``(H, W)`` or an int.
      fill: padding grey level (ultralytics: 114).

    Returns:
      ``(letterboxed uint8 [H, W, 3], ratio_pad float32 [4])``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise _checks.fail_shape("image", "uint8 [h, w, 3]", image)
    _checks.number(fill, "fill", low=0, high=255)
    (new_h, new_w), ratio_pad = letterbox_params(image.shape[:2], size)
    big_h, big_w = _size_hw(size, "size")
    image = resize(image, (new_h, new_w))
    out = np.full((big_h, big_w, 3), fill, np.uint8)
    x0, y0 = int(ratio_pad[2]), int(ratio_pad[3])
    out[y0 : y0 + new_h, x0 : x0 + new_w] = image
    return out, ratio_pad


def letterbox_points(points: np.ndarray, *, orig_size, ratio_pad: np.ndarray, size) -> np.ndarray:
    """Map normalised points of the original image into the letterboxed image (normalised there).

    Args:
      points: ``[..., 2]`` normalised ``(x, y)`` of the original image.
      orig_size: ``(h, w)`` of the original image.
      ratio_pad: ``[4]`` from :func:`letterbox_params`.
      size: ``(H, W)`` of the letterboxed image.

    Returns:
      float32 ``[..., 2]``: :math:`x' = (g_x\\, w\\, x + p_x) / W`, and the same for ``y``.
    """
    h, w = _size_hw(orig_size, "orig_size")
    big_h, big_w = _size_hw(size, "size")
    pts = np.asarray(points, np.float64)
    if pts.ndim < 1 or pts.shape[-1] != 2:
        raise _checks.fail_shape("points", "[..., 2]", pts)
    if np.asarray(ratio_pad).shape != (4,):
        raise _checks.fail_shape("ratio_pad", "[4]", np.asarray(ratio_pad))
    gx, gy, px, py = (float(v) for v in np.asarray(ratio_pad, np.float64))
    out = np.empty_like(pts)
    out[..., 0] = (gx * w * pts[..., 0] + px) / big_w
    out[..., 1] = (gy * h * pts[..., 1] + py) / big_h
    return out.astype(np.float32)


def boxes_to_original(boxes: np.ndarray, *, ratio_pad: np.ndarray, orig_size: np.ndarray, size) -> np.ndarray:
    """Map normalised xyxy boxes on letterboxed images back to pixels of the original images, clipped.

    Args:
      boxes: ``[..., D, 4]`` normalised xyxy on the letterboxed images (``D`` boxes per image).
      ratio_pad: ``[..., 4]`` per image (the batch's ``ratio_pad``).
      orig_size: ``[..., 2]`` per image, ``(h, w)`` (the batch's ``orig_size``).
      size: ``(H, W)`` of the letterboxed images.

    Returns:
      float64 ``[..., D, 4]`` pixel xyxy in the original images, clipped to ``[0, w] x [0, h]``.
    """
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim < 2 or boxes.shape[-1] != 4:
        raise _checks.fail_shape("boxes", "[..., D, 4]", boxes)
    corners = points_to_original(  # [..., 2D, 2]: (x0, y0), (x1, y1) of every box
        boxes.reshape(*boxes.shape[:-1], 2, 2).reshape(*boxes.shape[:-2], -1, 2), ratio_pad=ratio_pad, size=size
    )
    hw = np.asarray(orig_size, np.float64)[..., None, :]  # [..., 1, 2]
    if hw.shape[:-2] != boxes.shape[:-2] or hw.shape[-1] != 2:
        raise _checks.fail_shape("orig_size", f"[{', '.join(map(str, boxes.shape[:-2]))}, 2]", np.asarray(orig_size))
    clipped = np.clip(corners, 0.0, hw[..., ::-1])  # x to [0, w], y to [0, h]
    return clipped.reshape(boxes.shape)


def points_to_original(points: np.ndarray, *, ratio_pad: np.ndarray, size) -> np.ndarray:
    """Map normalised points on letterboxed images back to pixels of the original images (not clipped).

    Args:
      points: ``[..., P, 2]`` normalised ``(x, y)`` on the letterboxed images (``P`` points per image).
      ratio_pad: ``[..., 4]`` per image (the batch's ``ratio_pad``).
      size: ``(H, W)`` of the letterboxed images.

    Returns:
      float64 ``[..., P, 2]``: :math:`x = (W x' - p_x) / g_x` and the same for ``y``, the inverse of
      :func:`letterbox_points` in pixels.
    """
    big_h, big_w = _size_hw(size, "size")
    pts = np.asarray(points, np.float64)
    if pts.ndim < 2 or pts.shape[-1] != 2:
        raise _checks.fail_shape("points", "[..., P, 2]", pts)
    rp = np.asarray(ratio_pad, np.float64)[..., None, :]  # [..., 1, 4]
    if rp.shape[:-2] != pts.shape[:-2] or rp.shape[-1] != 4:
        raise _checks.fail_shape("ratio_pad", f"[{', '.join(map(str, pts.shape[:-2]))}, 4]", np.asarray(ratio_pad))
    return np.stack([(pts[..., 0] * big_w - rp[..., 2]) / rp[..., 0], (pts[..., 1] * big_h - rp[..., 3]) / rp[..., 1]],
                    axis=-1)
