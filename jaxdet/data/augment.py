"""Geometric augmentations applied consistently to the image, boxes and polygons of an example.

Examples are the dicts of :mod:`jaxdet.data.records` (uint8 image, normalised xyxy boxes, canonical polygons).
Every function returns a new example; other (per-image) keys are kept, the letterbox record ``orig_size`` /
``ratio_pad`` (when present) is reset to the identity (:func:`_reset_letterbox`), and removed objects are added to
``num_dropped`` (:func:`_add_dropped`). Ultralytics' recipe (mosaic, affine, HSV) is :mod:`jaxdet.data.yolo_augment`.
Polygons stay canonical: a flip reverses the vertex order, which
:func:`~jaxdet.data.geometry.canonical_order` fixes without resampling (so flipping twice is the identity);
a polygon cut by the frame is clipped and resampled with :func:`~jaxdet.data.geometry.canonical_polygon`.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxdet import _checks
from jaxdet.data.geometry import canonical_order, canonical_polygon, clip_polygon
from jaxdet.data.letterbox import identity_letterbox
from jaxdet.data.pixels import flip_lr, warp_affine
from jaxdet.data.rotated import clip_corners

__all__ = ["flip_targets", "hflip", "scale_jitter", "augment_example", "make_augment"]


def _reset_letterbox(example: dict) -> dict:
    """Set ``orig_size`` / ``ratio_pad`` (when present) to the identity of the example's own image, in place.

    After a geometric augmentation the image no longer maps back to the original file image, so the letterbox
    record becomes that of an image that is its own original
    (:func:`~jaxdet.data.letterbox.identity_letterbox`).
    """
    orig_size, ratio_pad = identity_letterbox(np.asarray(example["image"]).shape[:2])
    if "orig_size" in example:
        example["orig_size"] = orig_size
    if "ratio_pad" in example:
        example["ratio_pad"] = ratio_pad
    return example


def _add_dropped(example: dict, count: int) -> dict:
    """Add ``count`` removed objects to the example's ``num_dropped`` (int32 scalar, 0 when absent), in place."""
    example["num_dropped"] = np.int32(int(example.get("num_dropped", 0)) + int(count))
    return example


def _check_scale_range(scale_range: tuple[float, float]) -> None:
    if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
        raise _checks.fail_value("scale_range", "(lo, hi) with 0 < lo <= hi", scale_range)


def flip_targets(example: dict) -> dict:
    """The example's boxes and polygons mirrored horizontally (:math:`x \\mapsto 1 - x`); the image is left as it
    is (the targets' half of :func:`hflip`)."""
    _checks.keys_present(example, ("boxes", "polygons"), "example")
    out = dict(example)
    boxes = np.asarray(example["boxes"], np.float64).reshape(-1, 4)
    out["boxes"] = np.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=1).astype(
        np.float32
    )
    polys = np.asarray(example["polygons"], np.float64)
    flipped = polys.copy()
    flipped[..., 0] = 1.0 - flipped[..., 0]
    # Mirroring keeps the even arc-length spacing; only the order must be fixed (no resampling).
    out["polygons"] = canonical_order(flipped) if len(polys) and polys.shape[1] else polys.astype(np.float32)
    if example.get("corners") is not None:  # rotated boxes: the corners mirrored (refit at batching)
        corners = np.array(example["corners"], np.float64)
        corners[..., 0] = 1.0 - corners[..., 0]
        out["corners"] = corners.astype(np.float32)
    return out


def hflip(example: dict) -> dict:
    """Mirror horizontally: image columns reversed, :math:`x \\mapsto 1 - x` for boxes and polygons.

    Flipping twice gives back the example (up to float32 rounding of :math:`1 - (1 - x)`).
    """
    _checks.keys_present(example, ("image", "boxes", "polygons"), "example")
    out = flip_targets(example)
    out["image"] = flip_lr(example["image"])
    return _reset_letterbox(out)


def scale_jitter(
    example: dict,
    rng: np.random.Generator,
    *,
    scale_range: tuple[float, float] = (0.75, 1.25),
    fill: int = 127,
    min_visible: float = 1.0,
) -> dict:
    """Zoom by a random factor ``s`` and translate, keeping the image size.

    A content point moves as :math:`u' = s\\,u + t` (normalised, same ``s`` on both axes). For ``s < 1`` the
    shrunken image is placed at a random offset on a ``fill`` canvas; for ``s > 1`` a random window is cropped,
    chosen (when possible) so that the union of all boxes stays inside. Objects that still leave the frame are
    clipped: the box is intersected with the frame and the polygon clipped (Sutherland-Hodgman) and
    re-canonicalised; a rotated box (``corners``) is clipped keeping its orientation
    (:func:`~jaxdet.data.rotated.clip_corners`). An object with less than ``min_visible`` pixels of visible width
    or height is dropped (this is the only place where objects are removed).

    Args:
      example: an example dict.
      rng: numpy Generator (one per example, from grain's ``random_map``).
      scale_range: ``(lo, hi)`` range of ``s`` (uniform).
      fill: grey level of the canvas outside the source image.
      min_visible: minimum visible width/height in pixels to keep an object.

    Returns:
      The transformed example.
    """
    _checks.keys_present(example, ("image", "boxes", "classes", "polygons"), "example")
    _check_scale_range(scale_range)
    image = np.asarray(example["image"])
    h, w = image.shape[:2]
    s = float(rng.uniform(*scale_range))
    boxes = np.asarray(example["boxes"], np.float64).reshape(-1, 4)
    polys = np.asarray(example["polygons"], np.float64)
    k = polys.shape[1]
    lo, hi = min(0.0, 1.0 - s), max(0.0, 1.0 - s)
    t = np.zeros(2)
    for axis in (0, 1):
        a, b = lo, hi
        if len(boxes):
            a = max(lo, -s * boxes[:, axis].min())
            b = min(hi, 1.0 - s * boxes[:, axis + 2].max())
            if a > b:
                a, b = lo, hi
        t[axis] = rng.uniform(a, b)
    out = dict(example)
    zoom = np.array([[s, 0.0, t[0] * w], [0.0, s, t[1] * h], [0.0, 0.0, 1.0]])  # u' = s u + t, in pixels
    out["image"] = warp_affine(image, zoom, (h, w), fill=fill)
    new_boxes = boxes * s + np.array([t[0], t[1], t[0], t[1]])
    clipped = np.clip(new_boxes, 0.0, 1.0)
    rotated = example.get("corners") is not None
    if rotated:  # rotated boxes: clipped keeping their orientation, the box bounding the visible part
        moved = (np.asarray(example["corners"], np.float64).reshape(-1, 4, 2) * s + t) * [w, h]
        new_boxes = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1) / [w, h, w, h]
        clipped, corners = clip_corners(moved, w, h)
        clipped, corners = clipped / [w, h, w, h], corners / [w, h]
    keep, out_polys = [], []
    for i in range(len(boxes)):
        bw = (clipped[i, 2] - clipped[i, 0]) * w
        bh = (clipped[i, 3] - clipped[i, 1]) * h
        if bw < min_visible or bh < min_visible:
            continue
        poly = polys[i] * s + t
        if k == 0:  # an example without polygons
            out_polys.append(poly)
        elif np.any(new_boxes[i] != clipped[i]):
            # The frame cuts the object: clip the outline and resample it.
            try:
                out_polys.append(canonical_polygon(clip_polygon(poly), k))
            except ValueError:
                continue
        else:
            # A similarity keeps the canonical polygon canonical; only fix the order against rounding.
            out_polys.append(canonical_order(poly))
        keep.append(i)
    keep = np.asarray(keep, np.int64)
    out["boxes"] = clipped[keep].astype(np.float32).reshape(-1, 4)
    out["classes"] = np.asarray(example["classes"], np.int32)[keep]
    out["polygons"] = np.stack(out_polys).astype(np.float32) if out_polys else np.zeros((0, k, 2), np.float32)
    if rotated:
        out["corners"] = corners[keep].astype(np.float32).reshape(-1, 4, 2)
    _add_dropped(out, len(boxes) - len(keep))
    return _reset_letterbox(out)


def augment_example(
    example: dict,
    rng: np.random.Generator,
    *,
    hflip_prob: float = 0.5,
    scale_range: tuple[float, float] | None = (0.75, 1.25),
) -> dict:
    """Default training augmentation: scale jitter (if ``scale_range``), then a horizontal flip with
    probability ``hflip_prob``. Deterministic given ``rng``."""
    _checks.number(hflip_prob, "hflip_prob", low=0.0, high=1.0)
    if scale_range is not None:
        example = scale_jitter(example, rng, scale_range=scale_range)
    if rng.random() < hflip_prob:
        example = hflip(example)
    return example


def make_augment(*, hflip_prob: float = 0.5, scale_range: tuple[float, float] | None = (0.75, 1.25)):
    """:func:`augment_example` with fixed settings, as a ``(example, rng) -> example`` callable."""
    _checks.number(hflip_prob, "hflip_prob", low=0.0, high=1.0)
    if scale_range is not None:
        _check_scale_range(scale_range)
    return functools.partial(augment_example, hflip_prob=hflip_prob, scale_range=scale_range)
