"""Detections and ground truth drawn into a uint8 image grid (:func:`draw_detections`): the final evaluation's
``plots/val_predictions.png`` and ``python -m train.predict``'s annotated images.

Labels (:func:`draw_label`) are text on a filled box of the class colour, the text black or white by the
colour's luminance, sized to the image (:func:`label_font_size`: 2.5 % of the shorter side, at least 12 px) and
kept inside it, so that they read on any photograph and on a grid of small images alike."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxdet import _checks
from jaxdet.nms import Detections

__all__ = ["draw_detections", "draw_label", "label_font", "label_font_size", "text_colour", "MIN_TILE"]

MIN_TILE = 256
""":func:`draw_detections` upscales small images (by an integer factor) until their longer side is at least this."""


_PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)],
    np.uint8,
)


def label_font_size(width: int, height: int) -> int:
    """Label text height in px for a ``width x height`` image: 2.5 % of the shorter side, at least 12."""
    return max(12, round(0.025 * min(width, height)))


_FONTS: dict[int, ImageFont.ImageFont | ImageFont.FreeTypeFont] = {}


def label_font(size: int):
    """Pillow's default font at ``size`` px (its bitmap font where Pillow has no FreeType)."""
    if size not in _FONTS:
        try:
            _FONTS[size] = ImageFont.load_default(size=size)
        except (ImportError, TypeError):  # Pillow without FreeType, or older than 10.1: the fixed bitmap font
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def text_colour(fill: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever has the higher WCAG contrast ratio with ``fill`` (RGB): black when the fill's
    relative luminance exceeds ~0.179."""
    lin = [(v / 255) / 12.92 if v <= 10 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in (int(x) for x in fill[:3])]
    lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return (0, 0, 0) if (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) else (255, 255, 255)


def draw_label(draw: ImageDraw.ImageDraw, box: Sequence[float], text: str, colour: Sequence[int], *,
               font, image_size: tuple[int, int], taken: list | None = None) -> tuple[int, int, int, int] | None:
    """Writes ``text`` on a filled ``colour`` box just above ``box`` (x0, y0, x1, y1 in px), or inside its top
    when there is no room above, moved to stay inside the ``image_size`` (width, height) image.

    ``taken``: label rectangles drawn so far in this image; a label that would overlap one of them goes inside
    the box instead, or, when that overlaps too, is left out (draw the highest scores first). The drawn
    rectangle is appended to it. Returns the rectangle, or None when the label was left out.
    """
    w_img, h_img = image_size
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    _, top, _, bottom = draw.textbbox((0, 0), "Ag", font=font)  # one height for every label: ascender to descender
    pad = max(2, round((bottom - top) * 0.2))
    tw, th = right - left + 2 * pad, bottom - top + 2 * pad
    x0 = min(max(0, int(round(box[0]))), max(0, w_img - tw))
    above = int(round(box[1])) - th
    inside = min(max(0, int(round(box[1]))), max(0, h_img - th))
    candidates = [above, inside] if above >= 0 else [inside]
    for y0 in candidates:
        rect = (x0, y0, x0 + tw, y0 + th)
        if not taken or not any(_overlap(rect, t) for t in taken):
            break
    else:
        return None
    fill = tuple(int(v) for v in colour[:3])
    draw.rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=fill)
    draw.text((x0 + pad - left, y0 + pad - top), text, fill=text_colour(fill), font=font)
    if taken is not None:
        taken.append(rect)
    return rect


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_detections(
    images: np.ndarray,
    detections: Detections | None = None,
    gt: Mapping[str, np.ndarray] | None = None,
    *,
    ncols: int | None = None,
    scale: int | None = None,
    class_names: Sequence[str] | None = None,
    max_images: int | None = 16,
) -> np.ndarray:
    """Draws GT (thin white boxes, and polygons when both sides have them) and detections (class colour, with
    a class/score label (:func:`draw_label`, highest scores first) and polygon outline) into a uint8 image grid.

    Args:
      images: ``[N, H, W, 3]`` float in [0, 1] (or uint8).
      detections: :class:`Detections` (numpy) for the same images, or None.
      gt: batch dict with ``boxes``, ``classes``, ``valid`` (and optional ``polygons``), or None.
      ncols: grid columns (default ``ceil(sqrt(N))``).
      scale: integer upscaling of each image before drawing (default: the smallest that makes the longer side
        at least :data:`MIN_TILE` px, 1 for larger images).
      class_names: optional names for the labels.
      max_images: draw at most this many images.

    Returns:
      uint8 ``[rows * (H*scale + 2) , cols * (W*scale + 2), 3]`` grid.
    """
    images = np.asarray(images)
    _checks.layout(images, "images", shape="[N, H, W, 3]", ndim=4, last=3)
    if scale is None:
        scale = max(1, math.ceil(MIN_TILE / max(images.shape[1], images.shape[2], 1)))
    _checks.positive_int(scale, "scale")
    if images.dtype != np.uint8:
        images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    n = images.shape[0] if max_images is None else min(images.shape[0], max_images)
    h, w = images.shape[1] * scale, images.shape[2] * scale
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    grid = np.full((nrows * (h + 2), ncols * (w + 2), 3), 255, np.uint8)
    sc = np.array([w, h, w, h], np.float64)
    font = label_font(label_font_size(w, h))
    line = max(2, round(min(w, h) / 320))  # box outline width: 2 px up to 640 px images, thicker beyond
    for i in range(n):
        im = Image.fromarray(images[i]).resize((w, h), Image.NEAREST)
        dr = ImageDraw.Draw(im)
        if gt is not None:
            for m in np.flatnonzero(np.asarray(gt["valid"][i])):
                dr.rectangle(list(np.asarray(gt["boxes"][i, m], np.float64) * sc), outline=(255, 255, 255), width=1)
                if gt.get("polygons") is not None and detections is not None and detections.polygons is not None:
                    pts = [tuple(p) for p in (np.asarray(gt["polygons"][i, m], np.float64) * sc[:2])]
                    dr.line(pts + [pts[0]], fill=(255, 255, 255), width=1)
        if detections is not None:
            dv = np.asarray(detections.valid[i])
            scores = np.asarray(detections.scores[i], np.float64)
            order = [d for d in np.argsort(-scores, kind="stable") if dv[d]]  # highest first: their labels win
            labels = []
            for d in order:
                c = int(np.asarray(detections.classes[i, d]))
                col = tuple(int(v) for v in _PALETTE[c % len(_PALETTE)])
                b = list(np.asarray(detections.boxes[i, d], np.float64) * sc)
                dr.rectangle(b, outline=col, width=line)
                if detections.polygons is not None:
                    pts = [tuple(p) for p in (np.asarray(detections.polygons[i, d], np.float64) * sc[:2])]
                    dr.line(pts + [pts[0]], fill=col, width=max(1, line // 2))
                labels.append((b, c, col, float(scores[d])))
            taken: list = []
            for b, c, col, score in labels:  # after every box, so that no box is drawn over a label
                name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
                draw_label(dr, b, f"{name} {score:.2f}", col, font=font, image_size=(w, h), taken=taken)
        r, cidx = divmod(i, ncols)
        grid[r * (h + 2) + 1: r * (h + 2) + 1 + h, cidx * (w + 2) + 1: cidx * (w + 2) + 1 + w] = np.asarray(im)
    return grid
