"""Tiled prediction on images larger than the model's input: overlapping windows, and the merge of their detections.

* :func:`tile_windows` — the windows ``[K, 4]`` that cover an image with a given overlap, laid out as ultralytics'
  ``split_dota.get_windows`` lays out its crops (the last window of a row or column shifted inward).
* :func:`tile_to_image` — a window's detections in image pixels (the window's offset added).
* :func:`merge_tiles` — all windows' detections in image pixels, merged by class-aware NMS (a detection seen by two
  overlapping windows is kept once).

Boxes are axis-aligned xyxy ``[..., 4]`` or rotated ``(cx, cy, w, h, angle)`` ``[..., 5]``; a rotated box moves by
its centre only. Host-side numpy, except the NMS (:func:`jaxdet.nms.nms`, :func:`jaxdet.nms.rotated_nms`, or
another passed as ``nms_fn``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxdet import _checks
from jaxdet.nms import nms, rotated_nms

__all__ = ["MergedDetections", "merge_tiles", "tile_to_image", "tile_windows"]


class MergedDetections(NamedTuple):
    """The detections of a whole image, in decreasing score (variable length ``P``).

    Attributes:
      boxes: float64 ``[P, 4]`` xyxy or ``[P, 5]`` ``(cx, cy, w, h, angle)``, image pixels.
      scores: ``[P]``.
      classes: int64 ``[P]``.
      windows: int64 ``[P]``: the window each detection came from.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    windows: np.ndarray


def _starts(length: int, size: int, step: int) -> np.ndarray:
    """Window starts along one axis: every ``step`` pixels, the last one moved back to end at ``length``."""
    if length <= size:
        return np.zeros(1, np.int64)
    n = -(-(length - size) // step) + 1  # ceil((length - size) / step) + 1
    starts = step * np.arange(n, dtype=np.int64)
    starts[-1] = length - size  # <= step * (n - 1): shifted inward, so the window ends at the border
    return starts


def tile_windows(height: int, width: int, *, size: int, overlap: float) -> np.ndarray:
    """The overlapping windows that cover a ``height x width`` image, row by row.

    Along each axis of length ``L``, the windows start every ``step`` pixels, with

    .. math:: \\mathrm{gap} = \\mathrm{round}(\\mathrm{overlap} \\cdot \\mathrm{size}), \\quad
        \\mathrm{step} = \\max(1, \\mathrm{size} - \\mathrm{gap}), \\quad
        n = \\lceil (L - \\mathrm{size}) / \\mathrm{step} \\rceil + 1

    windows (ultralytics' ``split_dota.get_windows`` with ``crop_size = size``, ``gap``); the last start is set to
    ``L - size`` so that the last window ends at the border (shifted inward, overlapping its neighbour by more than
    ``gap``). So every window is ``size`` pixels long when ``L >= size``; when ``L < size`` the axis has one window,
    the whole axis (ultralytics pads such a crop; here the window is the image's extent, clipped).

    Args:
      height, width: the image's size in pixels.
      size: the window's side in pixels.
      overlap: the fraction of ``size`` that neighbouring windows share, in ``[0, 1)``.

    Returns:
      int64 ``[K, 4]`` windows ``(x0, y0, x1, y1)`` in pixels (``x1``, ``y1`` exclusive), rows top to bottom and
      left to right within a row; ``K = n_y · n_x``.
    """
    _checks.positive_int(height, "height")
    _checks.positive_int(width, "width")
    _checks.positive_int(size, "size")
    overlap = _checks.number(overlap, "overlap", low=0.0, high=1.0, high_open=True)
    step = max(1, size - round(overlap * size))
    ys, xs = _starts(height, size, step), _starts(width, size, step)
    y0, x0 = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))  # [K]: row-major
    return np.stack([x0, y0, np.minimum(x0 + size, width), np.minimum(y0 + size, height)], axis=-1)


def _offsets(windows: np.ndarray, box_dim: int) -> np.ndarray:
    """``[K, box_dim]``: what a window's boxes gain in image pixels (xyxy: both corners; rotated: the centre)."""
    x0, y0 = windows[:, 0].astype(np.float64), windows[:, 1].astype(np.float64)
    zero = np.zeros_like(x0)
    cols = (x0, y0, x0, y0) if box_dim == 4 else (x0, y0, zero, zero, zero)
    return np.stack(cols, axis=-1)


def tile_to_image(boxes, windows) -> np.ndarray:
    """Boxes in window pixels -> image pixels: each window's ``(x0, y0)`` added.

    .. math:: (x_0', y_0', x_1', y_1') = (x_0 + u, y_0 + v, x_1 + u, y_1 + v), \\qquad
        (c_x', c_y', w, h, \\theta) = (c_x + u, c_y + v, w, h, \\theta)

    for the window's top-left corner ``(u, v)``.

    Args:
      boxes: ``[K, D, 4]`` xyxy or ``[K, D, 5]`` ``(cx, cy, w, h, angle)``, pixels of each of the K windows.
      windows: ``[K, 4]`` :func:`tile_windows`.

    Returns:
      float64, the shape of ``boxes``, in image pixels.
    """
    boxes, windows = np.asarray(boxes), np.asarray(windows)  # numpy: float64 pixels stay float64
    _checks.layout(boxes, "boxes", shape="[K, D, 4] or [K, D, 5]", ndim=3)
    if boxes.shape[-1] not in (4, 5):
        raise _checks.fail_shape("boxes", "[K, D, 4] or [K, D, 5]", boxes)
    _checks.dtype_is(boxes, "boxes", "float")
    _checks.dtype_is(windows, "windows", "int")
    _checks.shape_is(windows, (boxes.shape[0], 4), "windows", "[K, 4] with K = boxes.shape[0]")
    return boxes.astype(np.float64) + _offsets(windows, boxes.shape[-1])[:, None, :]


def merge_tiles(
    boxes,
    scores,
    classes,
    valid,
    windows,
    *,
    iou_threshold: float,
    max_detections: int | None = None,
    nms_fn: Callable | None = None,
) -> MergedDetections:
    """The detections of K windows in image pixels (:func:`tile_to_image`), merged by class-aware NMS.

    With the default NMS of xyxy boxes (greedy) a detection survives unless a kept, higher-scoring one of its class,
    from any window, has

    .. math:: \\mathrm{IoU}(b_i, b_j) > \\tau_{\\mathrm{iou}}

    (the same rule, and ``iou_threshold``, as each window's own NMS: an object that two overlapping windows both see
    is kept once, from the window that scored it higher); rotated boxes go through ultralytics' OBB rule
    (Fast-NMS on ProbIoU, :func:`jaxdet.nms.rotated_nms`'s defaults). Detections of one window already passed that
    NMS, so a single window merges to itself (either rule keeps a set whose pairwise IoUs are all within the
    threshold).

    Args:
      boxes: ``[K, D, 4]`` xyxy or ``[K, D, 5]`` ``(cx, cy, w, h, angle)`` in each window's pixels.
      scores: ``[K, D]``.
      classes: ``[K, D]`` int.
      valid: ``[K, D]`` bool; padding slots are False.
      windows: int ``[K, 4]`` :func:`tile_windows`.
      iou_threshold: the NMS threshold τ.
      max_detections: the most detections kept (default: all that survive).
      nms_fn: the NMS, called as :func:`jaxdet.nms.nms` (``nms_fn(boxes [A, C], scores [A], classes [A], *,
        iou_threshold, score_threshold, max_detections) -> NMSResult``), e.g. a :func:`functools.partial` of
        :func:`jaxdet.nms.rotated_nms` with ``iou="polygon"``. Default: :func:`jaxdet.nms.nms` for xyxy boxes,
        :func:`jaxdet.nms.rotated_nms` for rotated ones.

    Returns:
      :class:`MergedDetections`, boxes in image pixels.
    """
    image_boxes = tile_to_image(boxes, windows)  # checks boxes and windows
    k, d, box_dim = image_boxes.shape
    scores, classes, valid = np.asarray(scores), np.asarray(classes), np.asarray(valid)
    for x, name, kind in ((scores, "scores", "float"), (classes, "classes", "int"), (valid, "valid", "bool")):
        _checks.shape_is(x, (k, d), name, "boxes.shape[:-1]")
        _checks.dtype_is(x, name, kind)
    _checks.number(iou_threshold, "iou_threshold", low=0.0, high=1.0)
    if max_detections is not None:
        _checks.positive_int(max_detections, "max_detections")
    nms_fn = nms_fn or (nms if box_dim == 4 else rotated_nms)

    flat_scores = scores.astype(np.float64).reshape(-1)
    a = 1 << max(0, k * d - 1).bit_length()  # padded to a power of two: few NMS compiles across image sizes
    pad = a - k * d
    cand_boxes = np.pad(image_boxes.reshape(-1, box_dim), ((0, pad), (0, 0)))
    cand_scores = np.pad(np.where(valid.reshape(-1), flat_scores, -np.inf), (0, pad),
                         constant_values=-np.inf)  # invalid and padding slots never enter the NMS
    cand_classes = np.pad(classes.reshape(-1), (0, pad))
    res = nms_fn(jnp.asarray(cand_boxes, jnp.float32), jnp.asarray(cand_scores, jnp.float32),
                 jnp.asarray(cand_classes), iou_threshold=float(iou_threshold), score_threshold=-np.inf,
                 max_detections=int(min(a, max_detections or a)))
    keep = np.asarray(res.indices)[np.asarray(res.valid)]  # [P], decreasing score
    return MergedDetections(
        boxes=cand_boxes[keep],
        scores=flat_scores[keep],
        classes=cand_classes[keep].astype(np.int64),
        windows=(keep // max(d, 1)).astype(np.int64),
    )
