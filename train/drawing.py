"""Detections and ground truth drawn into a uint8 image grid (:func:`draw_detections`): the final evaluation's
``plots/val_predictions.png`` and ``python -m train.predict``'s annotated images."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from jaxdet import _checks
from jaxdet.nms import Detections

__all__ = ["draw_detections"]


_PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)],
    np.uint8,
)


def draw_detections(
    images: np.ndarray,
    detections: Detections | None = None,
    gt: Mapping[str, np.ndarray] | None = None,
    *,
    ncols: int | None = None,
    scale: int = 2,
    class_names: Sequence[str] | None = None,
    max_images: int | None = 16,
) -> np.ndarray:
    """Draws GT (thin white boxes, and polygons when both sides have them) and detections (class colour, with
    class/score text and polygon outline) into a uint8 image grid.

    Args:
      images: ``[N, H, W, 3]`` float in [0, 1] (or uint8).
      detections: :class:`Detections` (numpy) for the same images, or None.
      gt: batch dict with ``boxes``, ``classes``, ``valid`` (and optional ``polygons``), or None.
      ncols: grid columns (default ``ceil(sqrt(N))``).
      scale: integer upscaling of each image before drawing (text legibility).
      class_names: optional names for the labels.
      max_images: draw at most this many images.

    Returns:
      uint8 ``[rows * (H*scale + 2) , cols * (W*scale + 2), 3]`` grid.
    """
    images = np.asarray(images)
    _checks.layout(images, "images", shape="[N, H, W, 3]", ndim=4, last=3)
    _checks.positive_int(scale, "scale")
    if images.dtype != np.uint8:
        images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    n = images.shape[0] if max_images is None else min(images.shape[0], max_images)
    h, w = images.shape[1] * scale, images.shape[2] * scale
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    grid = np.full((nrows * (h + 2), ncols * (w + 2), 3), 255, np.uint8)
    sc = np.array([w, h, w, h], np.float64)
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
            for d in np.flatnonzero(dv):
                c = int(np.asarray(detections.classes[i, d]))
                col = tuple(int(v) for v in _PALETTE[c % len(_PALETTE)])
                b = list(np.asarray(detections.boxes[i, d], np.float64) * sc)
                dr.rectangle(b, outline=col, width=2)
                if detections.polygons is not None:
                    pts = [tuple(p) for p in (np.asarray(detections.polygons[i, d], np.float64) * sc[:2])]
                    dr.line(pts + [pts[0]], fill=col, width=1)
                name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
                dr.text((b[0] + 2, b[1] + 1), f"{name} {float(detections.scores[i, d]):.2f}", fill=col)
        r, cidx = divmod(i, ncols)
        grid[r * (h + 2) + 1: r * (h + 2) + 1 + h, cidx * (w + 2) + 1: cidx * (w + 2) + 1 + w] = np.asarray(im)
    return grid
