"""Ultralytics' training augmentation (``v8_transforms``) for jaxdet examples: mosaic, random affine, HSV, flip.

The recipe, applied by :class:`YoloAugment` to one example (the dicts of :mod:`jaxdet.data.records`):

1. **Mosaic** (probability ``mosaic``, off from step ``close_mosaic_at`` on): the example and 3 others drawn
   uniformly from the source tile a ``2H x 2W`` grey-114 canvas around a random centre
   :math:`(x_c, y_c) \\sim U(W/2, 3W/2) \\times U(H/2, 3H/2)` (:func:`mosaic4`);
2. **random affine** of the canvas (or, without mosaic, of the image itself) to ``H x W``
   (:func:`random_affine`): :math:`M = T\\,S_h\\,R\\,C`, with ``C`` centring the input, ``R`` a rotation by
   :math:`a \\sim U(-\\text{degrees}, \\text{degrees})` and zoom
   :math:`s \\sim U(1 - \\text{scale}, 1 + \\text{scale})`,
   ``S_h`` shears :math:`\\tan U(-\\text{shear}, \\text{shear})` and ``T`` the output centre moved by
   :math:`U(-\\text{translate}, \\text{translate})` of the output size; outside the input is grey 114;
3. **HSV jitter** (:func:`hsv_jitter`): gains :math:`r \\sim U(-1, 1)^3 \\cdot (h, s, v)` applied as lookup tables
   on OpenCV's 8-bit HSV (hue in [0, 180));
4. **horizontal flip** with probability ``fliplr`` (:func:`~jaxdet.data.augment.hflip`).

Defaults are ultralytics' ``default.yaml`` (8.4.190): mosaic 1.0, degrees 0, translate 0.1, scale 0.5,
shear 0, hsv (0.015, 0.7, 0.4), fliplr 0.5. Not implemented: perspective (default 0), flipud (default 0),
mixup / cutmix / copy-paste (default 0), albumentations (only when that package is installed).

Geometry conventions. Boxes are transformed as ultralytics does (the 4 corners through ``M``, then their tight
box, clipped to the output), so under rotation a box grows; polygons are transformed vertex by vertex, clipped to
the image (:func:`~jaxdet.data.geometry.clip_polygon`) and resampled (:func:`~jaxdet.data.geometry.canonical_polygon`)
when the frame cuts them or a shear made their spacing uneven, and otherwise only re-ordered
(:func:`~jaxdet.data.geometry.canonical_order`); examples without polygons (``[n, 0, 2]``) skip that work. The
image is warped by OpenCV (:mod:`jaxdet.data.pixels`) with the same continuous-coordinate map as the targets
(pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``); ultralytics calls ``cv2.warpAffine`` without the half-pixel
shift that convention needs, so its images sit up to half a pixel from its boxes.

Rotated boxes (examples with ``corners [n, 4, 2]``, :mod:`jaxdet.data.rotated`) follow ultralytics' OBB data
(``use_obb``): their corners go through the same maps; where the mosaic canvas or the output image cuts one, it
is replaced by the rectangle of its original orientation that bounds its visible part and its box by the bounds
of that visible part (:func:`~jaxdet.data.rotated.clip_corners`, ``Instances.clip(preserve_obb=True)``), and
:func:`box_candidates` keeps those with more than 0.01 (not 0.1) of their zoomed area visible, ultralytics'
threshold for labels with segments. A shear leaves a parallelogram, refit to its minimum-area rectangle only at
batching (:func:`~jaxdet.data.records.pad_example`), as ultralytics' ``Format``.

Removed objects are counted, never silently dropped. An object is removed when

* the mosaic canvas cuts it completely (its clipped box has zero width or height), or
* after the affine map :func:`box_candidates` rejects it (ultralytics' rule: clipped width and height > 2 px,
  area > 0.1 of the zoomed original, aspect ratio < 100), or
* its clipped polygon is degenerate (the frame cuts the box but not the outline).

Every function adds its count to the example's ``num_dropped`` (int32 scalar, 0 when absent), which
:func:`~jaxdet.data.records.pad_example` carries into the batch as ``dropped_boxes``. Other keys of an example
(per-image metadata) are kept; a mosaic keeps those of its first (the primary) example. A geometric transform
resets the letterbox metadata, when present, to the identity of the output image: ``orig_size`` to ``(H, W)``
and ``ratio_pad`` (gain_x, gain_y, pad_x, pad_y) to ``(1, 1, 0, 0)``.

References:
  Ultralytics YOLOv8, ``ultralytics/data/augment.py`` (``Mosaic``, ``RandomPerspective``, ``RandomHSV``,
  ``RandomFlip``, ``v8_transforms``) and ``ultralytics/cfg/default.yaml``, version 8.4.190.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxdet import _checks
from jaxdet.data.augment import _add_dropped, _reset_letterbox, flip_targets
from jaxdet.data.geometry import canonical_order, canonical_polygon, canonical_polygons, clip_polygon
from jaxdet.data.pixels import apply_hsv_lut, flip_lr, read_region, warp_affine, warp_window
from jaxdet.data.rotated import clip_corners

__all__ = [
    "FILL",
    "YoloAugment",
    "YoloRecipe",
    "box_candidates",
    "hsv_jitter",
    "apply_hsv_gains",
    "mosaic4",
    "random_affine",
]

#: grey level outside the source images (ultralytics' letterbox / mosaic / warp border).
FILL = 114


def box_candidates(before, after, *, wh_thr: float = 2.0, ar_thr: float = 100.0, area_thr: float = 0.1,
                   eps: float = 1e-16) -> np.ndarray:
    """Which transformed boxes to keep (ultralytics' ``RandomPerspective.box_candidates``).

    .. math:: w_2 > t_{wh} \\;\\wedge\\; h_2 > t_{wh} \\;\\wedge\\; \\frac{w_2 h_2}{w_1 h_1 + \\epsilon} > t_{area}
              \\;\\wedge\\; \\max\\!\\left(\\frac{w_2}{h_2 + \\epsilon}, \\frac{h_2}{w_2 + \\epsilon}\\right) < t_{ar}

    Args:
      before: ``[n, 4]`` xyxy pixel boxes before the transform, already zoomed by its scale (so that their area
        is comparable with ``after``).
      after: ``[n, 4]`` xyxy pixel boxes after the transform, clipped to the output image.
      wh_thr: minimum width and height in pixels.
      ar_thr: maximum aspect ratio.
      area_thr: minimum fraction of the (zoomed) area that stays visible.
      eps: guards the divisions.

    Returns:
      bool ``[n]``, True for the boxes to keep.
    """
    b1 = np.asarray(before, np.float64).reshape(-1, 4)
    b2 = np.asarray(after, np.float64).reshape(-1, 4)
    _checks.same_shape(b1, b2, "before", "after")
    w1, h1 = b1[:, 2] - b1[:, 0], b1[:, 3] - b1[:, 1]
    w2, h2 = b2[:, 2] - b2[:, 0], b2[:, 3] - b2[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def _fit_polygons(polys: np.ndarray, cut: np.ndarray, *, resample: bool) -> tuple[np.ndarray, np.ndarray]:
    """Canonical polygons in the unit frame after a transform: clip + resample where ``cut`` (or everywhere when
    ``resample``), else only re-order. Returns ``(polygons [n, K, 2] float32, ok [n])``; ``ok`` is False where
    the clipped outline is degenerate."""
    n, k = polys.shape[0], polys.shape[1]
    out = np.zeros((n, k, 2), np.float32)
    ok = np.ones(n, bool)
    if k == 0:  # examples without polygons
        return out, ok
    redo = cut | resample
    if np.any(~redo):
        out[~redo] = canonical_order(polys[~redo])
    rows = np.flatnonzero(redo)
    outlines = [clip_polygon(polys[i]) if cut[i] else polys[i] for i in rows]
    try:
        out[rows] = canonical_polygons(outlines, k)
    except ValueError:  # some clipped outline is degenerate: find which, one by one
        for i, outline in zip(rows, outlines):
            try:
                out[i] = canonical_polygon(outline, k)
            except ValueError:
                ok[i] = False
    return out, ok


def _select(example: dict, keep: np.ndarray, boxes, polys, corners=None) -> dict:
    """A copy of ``example`` with only the kept objects (their new boxes/polygons/corners) and the dropped ones
    counted."""
    out = dict(example)
    out["boxes"] = np.asarray(boxes, np.float32).reshape(-1, 4)[keep]
    out["classes"] = np.asarray(example["classes"], np.int32).reshape(-1)[keep]
    out["polygons"] = np.asarray(polys, np.float32)[keep]
    if corners is not None:
        out["corners"] = np.asarray(corners, np.float32).reshape(-1, 4, 2)[keep]
    _add_dropped(out, int(np.count_nonzero(~keep)))
    return out


def _rotated(example: dict) -> bool:
    """Whether the example carries rotated boxes (``corners``)."""
    return example.get("corners") is not None


def _mosaic_centre(rng: np.random.Generator, h: int, w: int) -> tuple[int, int]:
    """The canvas point ``(x_c, y_c)`` the 4 tiles meet at (ultralytics' draw: x first)."""
    xc = int(rng.uniform(w / 2, 3 * w / 2))
    yc = int(rng.uniform(h / 2, 3 * h / 2))
    return xc, yc


def _tile_offsets(xc: int, yc: int, h: int, w: int) -> tuple[tuple[int, int], ...]:
    """Top-left canvas corners ``(x, y)`` of the tiles 0 (top-left) .. 3 (bottom-right)."""
    return (xc - w, yc - h), (xc, yc - h), (xc - w, yc), (xc, yc)


def _paste_tiles(images, offsets, canvas_hw, region=None, *, fill: int = FILL) -> np.ndarray:
    """The pixels of the mosaic canvas inside ``region`` (``(x0, y0, x1, y1)``, default the whole canvas).

    The tiles are pasted (cut by the canvas and the region) on a ``fill`` background; building only the region
    a warp will read gives the same warp as the whole canvas (:meth:`YoloAugment.__call__`).
    """
    ch, cw = canvas_hw
    rx0, ry0, rx1, ry1 = (0, 0, cw, ch) if region is None else region
    out = np.full((ry1 - ry0, rx1 - rx0) + images[0].shape[2:], fill, np.uint8)
    for im, (ox, oy) in zip(images, offsets):
        h, w = im.shape[:2]
        x0, y0 = max(ox, rx0), max(oy, ry0)
        x1, y1 = min(ox + w, rx1), min(oy + h, ry1)
        if x1 > x0 and y1 > y0:
            out[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0] = im[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return out


def _mosaic_targets(examples, offsets, h: int, w: int) -> dict:
    """The targets of the 4 tiles on the ``2H x 2W`` canvas (normalised to it), the removed ones counted; the
    per-image keys of ``examples[0]``, no ``image``."""
    boxes, classes, polys, corners, dropped = [], [], [], [], 0
    k = np.asarray(examples[0]["polygons"]).shape[1]
    rotated = _rotated(examples[0])
    for i, (e, (ox, oy)) in enumerate(zip(examples, offsets)):
        b = np.asarray(e["boxes"], np.float64).reshape(-1, 4)
        boxes.append(b * [w, h, w, h] + [ox, oy, ox, oy])
        classes.append(np.asarray(e["classes"], np.int32).reshape(-1))
        p = np.asarray(e["polygons"], np.float64).reshape(len(b), k, 2)
        polys.append((p * [w, h] + [ox, oy]) / [2 * w, 2 * h])
        if rotated:
            if not _rotated(e):
                raise _checks.fail_value(f"examples[{i}]", "rotated boxes ('corners') as examples[0]", "none")
            corners.append(np.asarray(e["corners"], np.float64).reshape(len(b), 4, 2) * [w, h] + [ox, oy])
        dropped += int(e.get("num_dropped", 0))
    b = np.concatenate(boxes)
    if rotated:  # ultralytics' Instances.clip(preserve_obb=True): the box bounds the visible part
        b = np.concatenate([np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1) for c in corners])
        clipped, corners = clip_corners(np.concatenate(corners), 2 * w, 2 * h)
        corners = corners / [2 * w, 2 * h]
    else:
        clipped, corners = np.clip(b, 0.0, [2 * w, 2 * h, 2 * w, 2 * h]), None
    visible = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    p = np.concatenate(polys)
    fitted = np.zeros(p.shape, np.float32)
    cut = np.any(clipped != b, axis=1)
    fitted[visible], ok = _fit_polygons(p[visible], cut[visible], resample=False)
    visible[np.flatnonzero(visible)[~ok]] = False
    out = {key: v for key, v in examples[0].items() if key != "image"}
    out["classes"] = np.concatenate(classes)
    out["num_dropped"] = np.int32(dropped)
    return _select(out, visible, clipped / [2 * w, 2 * h, 2 * w, 2 * h], fitted, corners)


def _check_tiles(examples) -> list[np.ndarray]:
    if len(examples) != 4:
        raise _checks.fail_value("examples", "a sequence of 4 examples", f"{len(examples)} examples")
    for i, e in enumerate(examples):
        _checks.keys_present(e, ("image", "boxes", "classes", "polygons"), f"examples[{i}]")
    images = [np.asarray(e["image"]) for e in examples]
    for i, im in enumerate(images):
        _checks.shape_is(im, images[0].shape, f"examples[{i}]['image']", "the shape of examples[0]['image']")
    return images


def mosaic4(examples, rng: np.random.Generator, *, fill: int = FILL) -> dict:
    """Tile 4 examples of size ``H x W`` on a ``2H x 2W`` canvas around a random centre (ultralytics' 4-mosaic).

    The centre is :math:`x_c = \\lfloor U(W/2, 3W/2) \\rfloor`, :math:`y_c = \\lfloor U(H/2, 3H/2) \\rfloor`; the
    examples' top-left corners go to :math:`(x_c - W, y_c - H)`, :math:`(x_c, y_c - H)`, :math:`(x_c - W, y_c)` and
    :math:`(x_c, y_c)` (example 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right), and the canvas cuts
    what falls outside it. Objects are shifted, clipped to the canvas, and removed (counted) when nothing of
    their box is left.

    Args:
      examples: 4 example dicts with images of the same ``[H, W, 3]`` shape and the same polygon ``K``.
      rng: numpy Generator.
      fill: grey level of the canvas where no image lands.

    Returns:
      An example with image uint8 ``[2H, 2W, 3]`` and its objects normalised to the canvas; per-image keys are
      those of ``examples[0]``; ``num_dropped`` is the sum of the 4 examples' counts plus the objects removed here.
    """
    images = _check_tiles(examples)
    h, w = images[0].shape[:2]
    offsets = _tile_offsets(*_mosaic_centre(rng, h, w), h, w)
    out = _mosaic_targets(examples, offsets, h, w)
    out["image"] = _paste_tiles(images, offsets, (2 * h, 2 * w), fill=fill)
    return _reset_letterbox(out)


def _affine_matrix(rng, in_size, out_size, *, degrees, translate, scale, shear) -> tuple[np.ndarray, float]:
    """``(M [3, 3], s)``: ultralytics' ``T @ S @ R @ C`` in pixels (draw order: angle, zoom, shears, shifts)."""
    (ih, iw), (oh, ow) = in_size, out_size
    centre = np.array([[1.0, 0.0, -iw / 2], [0.0, 1.0, -ih / 2], [0.0, 0.0, 1.0]])
    angle = math.radians(rng.uniform(-degrees, degrees))
    s = float(rng.uniform(1.0 - scale, 1.0 + scale))
    c, si = s * math.cos(angle), s * math.sin(angle)
    # A positive angle turns counter-clockwise on screen (y down), as cv2.getRotationMatrix2D.
    rot = np.array([[c, si, 0.0], [-si, c, 0.0], [0.0, 0.0, 1.0]])
    sh = np.eye(3)
    sh[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    sh[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    shift = np.eye(3)
    shift[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * ow
    shift[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * oh
    return shift @ sh @ rot @ centre, s


def _affine_targets(example: dict, m: np.ndarray, s: float, in_size, out_size, *, sheared: bool) -> dict:
    """The example's targets through the pixel map ``m`` (``in_size -> out_size``), the rejected ones counted
    (:func:`random_affine`'s rules); the image is left as it is."""
    (ih, iw), (oh, ow) = in_size, out_size
    boxes = np.asarray(example["boxes"], np.float64).reshape(-1, 4) * [iw, ih, iw, ih]
    n = len(boxes)
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(n, 4, 2)
    rotated = _rotated(example)
    if rotated:  # the rotated boxes' corners instead (ultralytics' apply_segments, then clip with preserve_obb)
        corners = np.asarray(example["corners"], np.float64).reshape(n, 4, 2) * [iw, ih]
    moved = corners @ m[:2, :2].T + m[:2, 2]  # [n, 4, 2]
    new = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1).reshape(-1, 4)
    if rotated:
        clipped, fitted_corners = clip_corners(moved, ow, oh)
        fitted_corners /= [ow, oh]
        keep = box_candidates(boxes * s, clipped, area_thr=0.01)  # ultralytics' threshold with segments
    else:
        clipped, fitted_corners = np.clip(new, 0.0, [ow, oh, ow, oh]), None
        keep = box_candidates(boxes * s, clipped)
    polys = np.asarray(example["polygons"], np.float64)
    fitted = np.zeros((n,) + polys.shape[1:], np.float32)
    p = ((polys * [iw, ih]) @ m[:2, :2].T + m[:2, 2]) / [ow, oh]
    cut = np.any(clipped != new, axis=1)
    fitted[keep], ok = _fit_polygons(p[keep], cut[keep], resample=sheared)
    keep[np.flatnonzero(keep)[~ok]] = False
    return _select(example, keep, clipped / [ow, oh, ow, oh], fitted, fitted_corners)


def _check_affine_ranges(degrees, translate, scale, shear) -> None:
    _checks.number(degrees, "degrees", low=0.0)
    _checks.number(translate, "translate", low=0.0, high=0.5)
    _checks.number(scale, "scale", low=0.0, high=1.0, high_open=True)
    _checks.number(shear, "shear", low=0.0, high=90.0, high_open=True)


def random_affine(
    example: dict,
    rng: np.random.Generator,
    *,
    out_size: tuple[int, int] | None = None,
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
    fill: int = FILL,
    matrix: np.ndarray | None = None,
) -> dict:
    """Random rotation / zoom / shear / shift of an example to ``out_size`` (ultralytics' ``RandomPerspective``
    without perspective).

    .. math:: M = T\\,S_h\\,R(a, s)\\,C, \\qquad u' = M u \\quad\\text{(pixels, homogeneous)}

    Args:
      example: an example dict (image ``[H, W, 3]``, e.g. a ``2H x 2W`` mosaic canvas).
      rng: numpy Generator (unused when ``matrix`` is given).
      out_size: ``(height, width)`` of the output; default the input's.
      degrees: rotation range, :math:`a \\sim U(-\\text{degrees}, \\text{degrees})`.
      translate: shift of the output centre, a fraction of the output size in ``U(-translate, translate)``.
      scale: zoom range, :math:`s \\sim U(1 - \\text{scale}, 1 + \\text{scale})`.
      shear: shear range in degrees (each axis).
      fill: grey level where the output shows no input.
      matrix: optional fixed ``[3, 3]`` pixel map instead of a random one (its zoom ``s`` for
        :func:`box_candidates` is :math:`\\sqrt{|\\det M_{2\\times 2}|}`).

    Returns:
      The transformed example (image warped by :func:`~jaxdet.data.pixels.warp_affine`); objects that
      :func:`box_candidates` rejects, or whose clipped polygon is degenerate, are removed and added to
      ``num_dropped``.
    """
    _checks.keys_present(example, ("image", "boxes", "classes", "polygons"), "example")
    image = np.asarray(example["image"])
    ih, iw = image.shape[:2]
    oh, ow = (ih, iw) if out_size is None else (int(out_size[0]), int(out_size[1]))
    _check_affine_ranges(degrees, translate, scale, shear)
    if matrix is None:
        m, s = _affine_matrix(rng, (ih, iw), (oh, ow), degrees=degrees, translate=translate, scale=scale, shear=shear)
        sheared = shear > 0
    else:
        m = np.asarray(matrix, np.float64)
        _checks.shape_is(m, (3, 3), "matrix")
        a = m[:2, :2]
        s = math.sqrt(abs(np.linalg.det(a)))
        sheared = not np.allclose(a @ a.T, s * s * np.eye(2), atol=1e-12 * max(s * s, 1.0))
    out = _affine_targets(example, m, s, (ih, iw), (oh, ow), sheared=sheared)
    out["image"] = warp_affine(image, m, (oh, ow), fill=fill)
    return _reset_letterbox(out)


def apply_hsv_gains(image: np.ndarray, gains) -> np.ndarray:
    """Apply HSV gains ``(r_h, r_s, r_v)`` to a uint8 RGB image through lookup tables on 8-bit HSV.

    .. math:: H' = (H + 180\\,r_h) \\bmod 180, \\quad S' = \\mathrm{clip}(S (1 + r_s)), \\quad
              V' = \\mathrm{clip}(V (1 + r_v))

    (each truncated to uint8, and ``S' = 0`` where ``S = 0``, as ultralytics' ``RandomHSV``), converted by
    OpenCV both ways (:func:`~jaxdet.data.pixels.apply_hsv_lut`).

    Args:
      image: uint8 ``[H, W, 3]`` RGB.
      gains: the three gains (already drawn).

    Returns:
      uint8 ``[H, W, 3]`` RGB.
    """
    image = np.asarray(image)
    _checks.layout(image, "image", shape="[H, W, 3]", ndim=3, last=3)
    if image.dtype != np.uint8:
        raise _checks.fail_dtype("image", "uint8", image.dtype)
    r = np.asarray(gains, np.float64).reshape(3)
    x = np.arange(256, dtype=np.float64)
    lut_h = ((x + r[0] * 180) % 180).astype(np.uint8)
    lut_s = np.clip(x * (r[1] + 1), 0, 255).astype(np.uint8)
    lut_v = np.clip(x * (r[2] + 1), 0, 255).astype(np.uint8)
    lut_s[0] = 0
    return apply_hsv_lut(image, lut_h, lut_s, lut_v)


def _hsv_gains(rng: np.random.Generator, hgain: float, sgain: float, vgain: float) -> np.ndarray | None:
    """The drawn gains ``r ~ U(-1, 1)^3 * (h, s, v)``, or None (``rng`` untouched) when all three are 0."""
    if not (hgain or sgain or vgain):
        return None
    return rng.uniform(-1.0, 1.0, 3) * np.array([hgain, sgain, vgain])


def hsv_jitter(example: dict, rng: np.random.Generator, *, hgain: float = 0.015, sgain: float = 0.7,
               vgain: float = 0.4) -> dict:
    """Random hue / saturation / value gains :math:`r \\sim U(-1, 1)^3 \\cdot (h, s, v)` (:func:`apply_hsv_gains`).

    With all gains 0 the example is returned unchanged (a copy of the dict) and ``rng`` is not used, as in
    ultralytics.
    """
    for name, g in (("hgain", hgain), ("sgain", sgain), ("vgain", vgain)):
        _checks.number(g, name, low=0.0)
    out = dict(example)
    r = _hsv_gains(rng, hgain, sgain, vgain)
    if r is not None:
        out["image"] = apply_hsv_gains(example["image"], r)
    return out


@dataclasses.dataclass(frozen=True)
class YoloRecipe:
    """Settings of :class:`YoloAugment` (ultralytics ``default.yaml`` names and defaults).

    Attributes:
      mosaic: probability of a 4-image mosaic.
      close_mosaic_at: first training step without mosaic (None: mosaic all along).
      degrees, translate, scale, shear: :func:`random_affine` ranges.
      hsv_h, hsv_s, hsv_v: :func:`hsv_jitter` gains.
      fliplr: probability of a horizontal flip.
    """

    mosaic: float = 1.0
    close_mosaic_at: int | None = None
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    fliplr: float = 0.5

    def __post_init__(self):
        _checks.number(self.mosaic, "mosaic", low=0.0, high=1.0)
        _checks.number(self.fliplr, "fliplr", low=0.0, high=1.0)
        _check_affine_ranges(self.degrees, self.translate, self.scale, self.shear)
        for name in ("hsv_h", "hsv_s", "hsv_v"):
            _checks.number(getattr(self, name), name, low=0.0)
        if self.close_mosaic_at is not None:
            _checks.number(self.close_mosaic_at, "close_mosaic_at", low=0)


class YoloAugment:
    """Ultralytics' training recipe as an ``augment(example, rng, step=None) -> example`` callable.

    The result is that of :func:`mosaic4`, :func:`random_affine`, :func:`hsv_jitter` and
    :func:`~jaxdet.data.augment.hflip` applied in turn with the same ``rng`` (same targets, bit for bit; pixels
    too), computed with less pixel work: only the part of the mosaic canvas that the affine map reads is pasted.

    Mosaic partners are drawn with the example's own ``rng``, so an augmented example depends only on the seed,
    its global position and ``step``: the loader stays deterministic, checkpointable and shardable. Where from:

    * ``partner_window=None``: uniformly from ``source`` (for sources that hold their images in memory);
    * ``partner_window=W``: from the ``W`` consecutive positions of the loader's stream that hold the example
      (positions ``[W * (g // W), W * (g // W + 1))``, ``g`` the example's position), like ultralytics' buffer of
      recently loaded images. A source that keeps its recently decoded images
      (:class:`~jaxdet.data.records.DetectionSource` without a cache) then decodes about one image per output
      image instead of four; with a local batch that is a multiple of ``W`` every partner is an image of the
      same batch of the same process, whatever the number of processes or worker processes.

    ``uses_step`` tells :func:`~jaxdet.data.pipeline.make_loader` to pass the training step of the example's
    batch, which turns the mosaic off from ``recipe.close_mosaic_at`` on (ultralytics' ``close_mosaic``);
    ``uses_stream`` (true with a ``partner_window``) to pass the example's ``position`` and the ``stream``
    (``stream(g) -> example`` at position ``g``, before augmentation).

    Examples without polygons (``polygons [n, 0, 2]``, sources built with ``polygons=False`` for heads that
    read none) skip all polygon work.

    Args:
      source: random-access source of examples (``len``, ``source[i]``), images all of one size.
      recipe: :class:`YoloRecipe`.
      partner_window: ``W`` above, or None.
    """

    uses_step = True

    def __init__(self, source, recipe: YoloRecipe = YoloRecipe(), *, partner_window: int | None = None):
        if len(source) == 0:
            raise _checks.fail_value("len(source)", "> 0 (mosaic draws partners from it)", 0)
        if partner_window is not None:
            _checks.positive_int(partner_window, "partner_window", hint="Or None: partners from the whole source.")
        self.source = source
        self.recipe = recipe
        self.partner_window = partner_window
        self.uses_stream = partner_window is not None

    def mosaic_on(self, step: int | None) -> bool:
        """Whether the mosaic may be drawn at ``step`` (None: the step is unknown, treated as before the close)."""
        stop = self.recipe.close_mosaic_at
        return self.recipe.mosaic > 0 and (stop is None or step is None or step < stop)

    def _partners(self, rng, position, stream) -> list[dict]:
        if self.partner_window is None:
            return [self.source[int(j)] for j in rng.integers(0, len(self.source), size=3)]
        if position is None or stream is None:
            raise _checks.fail_value(
                "position, stream", "given (the loader passes them when augment.uses_stream)", (position, stream),
                hint="Call through jaxdet.data.make_loader, or build YoloAugment with partner_window=None.",
            )
        start = int(position) - int(position) % self.partner_window
        return [stream(int(g)) for g in rng.integers(start, start + self.partner_window, size=3)]

    def __call__(self, example: dict, rng: np.random.Generator, step: int | None = None, *,
                 position: int | None = None, stream=None) -> dict:
        rc = self.recipe
        image = np.asarray(example["image"])
        h, w = image.shape[:2]
        if self.mosaic_on(step) and rng.random() < rc.mosaic:
            tiles = [example, *self._partners(rng, position, stream)]
            images = _check_tiles(tiles)
            offsets = _tile_offsets(*_mosaic_centre(rng, h, w), h, w)
            targets = _mosaic_targets(tiles, offsets, h, w)
            in_size = (2 * h, 2 * w)
        else:
            images, targets, in_size = None, example, (h, w)
        m, s = _affine_matrix(rng, in_size, (h, w), degrees=rc.degrees, translate=rc.translate, scale=rc.scale,
                              shear=rc.shear)
        out = _affine_targets(targets, m, s, in_size, (h, w), sheared=rc.shear > 0)
        if images is None:
            pixels = warp_affine(image, m, (h, w))
        else:  # the canvas window the warp reads, pasted straight from the tiles
            region = read_region(m, in_size, (h, w))
            pixels = (np.full((h, w, 3), FILL, np.uint8) if region is None else
                      warp_window(_paste_tiles(images, offsets, in_size, region), m, region[:2], (h, w)))
        gains = _hsv_gains(rng, rc.hsv_h, rc.hsv_s, rc.hsv_v)
        if gains is not None:
            pixels = apply_hsv_gains(pixels, gains)
        if rng.random() < rc.fliplr:
            out, pixels = flip_targets(out), flip_lr(pixels)
        out["image"] = pixels
        return _reset_letterbox(out)
