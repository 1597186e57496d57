"""The loader's pixel work through OpenCV, in jaxdet's pixel convention.

jaxdet's geometry uses continuous pixel coordinates in which pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``
(its centre is ``(j + 0.5, i + 0.5)``); boxes and polygons are transformed in that frame. OpenCV puts pixel
centres at integers. :func:`warp_affine` therefore conjugates the map by a half-pixel shift, so an image and its
targets move together exactly (ultralytics calls ``cv2.warpAffine`` with the unshifted matrix, so its images sit
up to half a pixel from its boxes).

OpenCV runs each call on one thread here (``cv2.setNumThreads(1)`` when this module first uses it): the loader
parallelises over examples (grain threads and worker processes), and OpenCV's own pool on top of them would
oversubscribe the cores.

Measured on one core of this project's 2-core machine, 640 px, against the Pillow / numpy code they replace:
``warp_affine`` 1280 -> 640 0.44 ms (Pillow 10.1 ms), :func:`apply_hsv_lut` about 1 ms (numpy 20.6 ms),
:func:`resize` 416 -> 640 0.33 ms (Pillow 3.2 ms), :func:`flip_lr` 0.03 ms (numpy 1.4 ms).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

from jaxdet import _checks

__all__ = ["read_region", "warp_affine", "warp_window", "resize", "flip_lr", "apply_hsv_lut"]


@functools.cache
def _cv2():
    import cv2  # noqa: PLC0415 - optional (train extra): loaded and set to one thread on first use

    cv2.setNumThreads(1)
    _keep_images_in_the_heap()
    return cv2


def _keep_images_in_the_heap() -> None:
    """Where the C library is glibc, keep freed image-sized blocks (up to 32 MiB) in the process's heap.

    Every example allocates and frees a few images (1.2 MB at 640 px). By default glibc serves such blocks by
    ``mmap`` or hands them back to the system when the heap's top is free, so the next image page-faults all
    its pages again: about 270 minor faults an image, measured with a RAM cache, which cost 18 % of the loader's
    rate on one core (tiles48: 272-294 -> 356-365 images/s with these settings). The settings are process-wide
    (``mallopt`` of ``M_MMAP_THRESHOLD`` 32 MiB and ``M_TRIM_THRESHOLD`` 128 MiB); elsewhere nothing changes.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc: no mallopt
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 128 << 20)


def _check_image(image, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise _checks.fail_shape(name, "uint8 [H, W, 3]", image, hint=f"(dtype {image.dtype})")
    return image


def read_region(matrix: np.ndarray, in_size, out_size) -> tuple[int, int, int, int] | None:
    """The input pixels a bilinear warp by ``matrix`` to ``out_size`` reads.

    Args:
      matrix: ``[3, 3]`` pixel map from input to output (jaxdet's convention).
      in_size, out_size: ``(height, width)`` of the input and the output.

    Returns:
      ``(x0, y0, x1, y1)`` (a pixel of margin on each side, cut to the input), or None when no output pixel
      samples the input.
    """
    (ih, iw), (oh, ow) = in_size, out_size
    m = _check_matrix(matrix)
    centres = np.array([[0.5, 0.5, 1.0], [ow - 0.5, 0.5, 1.0], [0.5, oh - 0.5, 1.0], [ow - 0.5, oh - 0.5, 1.0]])
    src = (centres @ np.linalg.inv(m).T)[:, :2]  # the output's corner pixel centres in the input
    lo = np.floor(src.min(axis=0) - 0.5).astype(int) - 1  # a sample at p reads pixels floor(p - 0.5) + {0, 1}
    hi = np.floor(src.max(axis=0) - 0.5).astype(int) + 3
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), iw), min(int(hi[1]), ih)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _check_matrix(matrix) -> np.ndarray:
    m = np.asarray(matrix, np.float64)
    if m.shape != (3, 3):
        raise _checks.fail_shape("matrix", "[3, 3]", m)
    return m


def warp_affine(image: np.ndarray, matrix: np.ndarray, out_size, *, fill: int = 114) -> np.ndarray:
    """Bilinear affine warp of ``image`` to ``out_size``: output point ``u' = M u`` (continuous coordinates).

    .. math:: \\text{out}(u') = \\text{in}(M^{-1} u'), \\qquad M_{\\text{cv}} = T(-\\tfrac12)\\, M\\, T(\\tfrac12)

    Only the :func:`read_region` of the input is handed to OpenCV (:func:`warp_window`), so a caller that can
    build just that window of a larger input (the mosaic canvas) gets the same pixels, bit for bit.

    Against Pillow's ``Image.transform`` (bilinear) with the same map the pixels agree within 1 grey level,
    except in the one-pixel band along the input's outer edge: OpenCV blends the edge pixels with ``fill``
    there, Pillow cuts them sharply.

    Args:
      image: uint8 ``[H, W, 3]``.
      matrix: ``[3, 3]`` pixel map from input to output in jaxdet's convention.
      out_size: ``(height, width)`` of the output.
      fill: grey level where the output shows no input.

    Returns:
      uint8 ``[height, width, 3]``.
    """
    image = _check_image(image)
    m = _check_matrix(matrix)
    region = read_region(m, image.shape[:2], out_size)
    if region is None:
        return np.full((int(out_size[0]), int(out_size[1]), 3), fill, np.uint8)
    x0, y0, x1, y1 = region
    return warp_window(image[y0:y1, x0:x1], m, (x0, y0), out_size, fill=fill)


def warp_window(window: np.ndarray, matrix: np.ndarray, origin, out_size, *, fill: int = 114) -> np.ndarray:
    """:func:`warp_affine` of an input of which only ``window`` is given, its top-left pixel at ``origin``
    ``(x0, y0)`` of the input (``window`` must cover the input's :func:`read_region`).

    Returns:
      uint8 ``[height, width, 3]``.
    """
    cv2 = _cv2()
    window = _check_image(window, "window")
    x0, y0 = origin
    m = _check_matrix(matrix) @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    m = m[:2].copy()
    m[:, 2] += 0.5 * (m[:, 0] + m[:, 1]) - 0.5  # pixel centres from (j + 0.5, i + 0.5) to (j, i)
    oh, ow = int(out_size[0]), int(out_size[1])
    return cv2.warpAffine(window, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(int(fill),) * 3)


def resize(image: np.ndarray, size) -> np.ndarray:
    """Resize ``image`` to ``size = (height, width)``: bilinear, or pixel-area averaging (``cv2.INTER_AREA``) when
    both sides shrink to half or less, where bilinear sampling would skip pixels and alias.

    Milder reductions stay bilinear, as ultralytics' training loader resizes: area averaging cost 1.3 ms against
    0.3 ms for an 800 px photograph brought to 640 px, a seventh of the loader's time an image.

    Returns:
      uint8 ``[height, width, 3]`` (the input itself when it already has that size).
    """
    cv2 = _cv2()
    image = _check_image(image)
    h, w = int(size[0]), int(size[1])
    if image.shape[:2] == (h, w):
        return image
    halved = 2 * h <= image.shape[0] and 2 * w <= image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if halved else cv2.INTER_LINEAR)


def flip_lr(image: np.ndarray) -> np.ndarray:
    """The image mirrored left-right (columns reversed), uint8 ``[H, W, 3]``."""
    return _cv2().flip(_check_image(image), 1)


def apply_hsv_lut(image: np.ndarray, lut_h: np.ndarray, lut_s: np.ndarray, lut_v: np.ndarray) -> np.ndarray:
    """Map each channel of the image's OpenCV 8-bit HSV (hue in ``[0, 180)``) through a 256-entry table.

    Args:
      image: uint8 ``[H, W, 3]`` RGB.
      lut_h, lut_s, lut_v: uint8 ``[256]`` tables of the hue, saturation and value channels.

    Returns:
      uint8 ``[H, W, 3]`` RGB (``cv2.cvtColor`` both ways: RGB -> HSV is exact integer arithmetic, HSV -> RGB
      rounds within 1 grey level of the exact formula).
    """
    cv2 = _cv2()
    image = _check_image(image)
    for name, table in (("lut_h", lut_h), ("lut_s", lut_s), ("lut_v", lut_v)):
        _checks.shape_is(np.asarray(table), (256,), name)
    lut = np.stack([lut_h, lut_s, lut_v], axis=-1).astype(np.uint8).reshape(1, 256, 3)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2RGB)
