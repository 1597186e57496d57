"""Deterministic synthetic shapes: jaxdet's embedded default dataset (no download).

Each image has a smooth two-colour gradient background, clutter (thin lines and small dots), 1 to
``max_objects_per_image`` non-overlapping filled shapes of random colour, and Gaussian pixel noise. The five
classes are :data:`SHAPE_CLASSES`:

====  ===================  =============================================================
id    name                 outline
====  ===================  =============================================================
0     rectangle            axis-aligned rectangle, aspect ratio in [0.5, 1]
1     rotated_rectangle    rectangle rotated by 20..70 degrees
2     ellipse              ellipse (half-axes ratio 0.4..0.75), any rotation
3     triangle             triangle with angular gaps of 100..140 degrees
4     regular_polygon      regular pentagon or hexagon, any rotation
====  ===================  =============================================================

Targets are exact: each shape is defined by an analytic outline (vertices for polygons; for an ellipse a
dense polygon that includes its four extreme points), the box is the outline's tight box (the analytic box
of the shape), and the polygon target is ``canonical_polygon(outline, num_vertices)``. Shapes are drawn at
2x resolution and box-filtered down, with vertices mapped so that pixel ``(i, j)`` covers the continuous
square ``[j, j+1] x [i, i+1]``.

With ``rotated=True`` the same generator makes the **rotated split** (the oriented-box default): the classes are
:data:`ROTATED_SHAPE_CLASSES`, rectangles of three aspect ratios (short side over long side) at any angle in
``[0, pi)``, and each example also carries ``corners`` ``[n, 4, 2]`` (the rectangle's normalised corners,
:mod:`jaxdet.data.rotated`; the batch refits them to ``rboxes``):

====  ===================  =============================================================
id    name                 aspect ratio (short / long side)
====  ===================  =============================================================
0     square               0.85 .. 1
1     rectangle            0.45 .. 0.6
2     bar                  0.2 .. 0.3
====  ===================  =============================================================

Exported with ``export_synthetic(split, out, fmt="yolo")`` (:mod:`jaxdet.data.writers`), the rotated split's
4-vertex outlines are ultralytics OBB label lines, read back by :func:`~jaxdet.data.readers.read_yolo_obb` and by
ultralytics' ``YOLODataset(task="obb")`` alike.

The same generator makes the dense-scene split (:data:`DENSE_SHAPES`: many small objects; ``max_iou`` allows
light overlap). Every image is generated from its own ``numpy.random.Generator`` seeded by ``(seed, split, index)``,
so access
is random, O(1) and identical on every host; train and validation use different split ids and never share a
stream. Generation costs about 3 ms for a 64x64 image (drawing at 2x, filtering, noise), so by default a split
whose images fit in :data:`AUTO_CACHE_BYTES` keeps each example once generated: from the second epoch on an
example costs a dict copy (``cache=None``, the default; ``True`` / ``False`` to force).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from jaxdet import _checks
from jaxdet.data.geometry import canonical_polygons, polygon_bounds, polygon_signed_area

__all__ = ["AUTO_CACHE_BYTES", "DENSE_SHAPES", "ROTATED_SHAPE_CLASSES", "SHAPE_CLASSES", "SyntheticShapes"]

#: ``cache=None`` keeps generated examples when the split's uint8 images take at most this many bytes (1 GiB:
#: 87,381 images of 64x64, 5,461 of 256x256).
AUTO_CACHE_BYTES = 1 << 30

#: The dense-scene split (``SyntheticShapes(split, image_size=256, **DENSE_SHAPES)``, ``data.name="dense_shapes"``
#: in ``python -m train``): 50-300 shapes per image, each 2.5-6 % of the image side (6-15 px at 256 px), 1 px apart.
DENSE_SHAPES = dict(min_objects=50, max_objects_per_image=300, size_range=(0.025, 0.06))

SHAPE_CLASSES: tuple[str, ...] = (
    "rectangle",
    "rotated_rectangle",
    "ellipse",
    "triangle",
    "regular_polygon",
)

#: The classes of the rotated split (``SyntheticShapes(..., rotated=True)``), rectangles by aspect ratio.
ROTATED_SHAPE_CLASSES: tuple[str, ...] = ("square", "rectangle", "bar")
_ROTATED_ASPECTS = ((0.85, 1.0), (0.45, 0.6), (0.2, 0.3))

_SPLITS = {"train": 0, "val": 1, "test": 2}
_SUPERSAMPLE = 2
_ELLIPSE_POINTS = 64


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _ellipse_outline(a: float, b: float, theta: float) -> np.ndarray:
    """Dense outline of an ellipse centred at 0 with half-axes a, b rotated by theta, incl. extreme points."""
    c, s = math.cos(theta), math.sin(theta)
    # x(t) = a cos t c - b sin t s ; y(t) = a cos t s + b sin t c. Extremes: dx/dt = 0, dy/dt = 0.
    tx = math.atan2(-b * s, a * c)
    ty = math.atan2(b * c, a * s)
    ts = np.concatenate([np.linspace(0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False), [tx, tx + np.pi, ty, ty + np.pi]])
    ts = np.unique(np.mod(ts, 2 * np.pi))
    pts = np.stack([a * np.cos(ts), b * np.sin(ts)], axis=1)
    return pts @ _rot(theta).T


class SyntheticShapes:
    """Random-access synthetic shapes dataset (a grain source).

    Args:
      split: ``"train"``, ``"val"`` or ``"test"``.
      num_images: number of images in the split (default 8192 for train, 512 otherwise).
      image_size: ``(height, width)`` or an int (default 64: a tiny CPU detector learns it in minutes).
      seed: dataset seed; together with the split and index it fixes every image.
      num_vertices: ``K``, vertices of the polygon targets.
      min_objects, max_objects_per_image: object count range per image (uniform). Fewer objects are placed
        when no free spot is found after 30 tries.
      size_range: object size as a fraction of the shorter image side (outer diameter).
      noise_std: range of the per-image Gaussian noise std (in [0, 1] intensity units).
      clutter: number range of clutter items (lines + dots) per image.
      max_iou: 0 (default): objects' boxes are at least 1 px apart; > 0: an object may overlap each placed one
        up to this box IoU (light overlap for dense scenes).
      cache: keep generated examples in memory (about ``H*W*3`` bytes each, read-only) so later epochs skip
        generation; None (default): when the whole split takes at most :data:`AUTO_CACHE_BYTES`.
      polygons: False for consumers that read no polygons (box heads): examples carry ``polygons [n, 0, 2]``
        and augmentations skip the polygon work.
      rotated: the rotated split (module doc): classes :data:`ROTATED_SHAPE_CLASSES`, examples with ``corners``.

    ``dataset[i]`` returns an example dict (see :mod:`jaxdet.data.records`); :meth:`annotation` also returns
    the raw outlines in pixels.
    """

    class_names = SHAPE_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        num_images: int | None = None,
        image_size=64,
        seed: int = 0,
        num_vertices: int = 8,
        min_objects: int = 1,
        max_objects_per_image: int = 4,
        size_range: tuple[float, float] = (0.25, 0.5),
        noise_std: tuple[float, float] = (0.01, 0.05),
        clutter: tuple[int, int] = (2, 6),
        max_iou: float = 0.0,
        cache: bool | None = None,
        polygons: bool = True,
        rotated: bool = False,
    ):
        _checks.choice(split, "split", sorted(_SPLITS))
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if len(image_size) != 2 or min(image_size) < 8:
            raise _checks.fail_value("image_size", "(height, width) >= 8, or an int >= 8", image_size)
        if not 0 <= min_objects <= max_objects_per_image:
            raise _checks.fail_value(
                "min_objects", f"in [0, max_objects_per_image = {max_objects_per_image}]", min_objects
            )
        if not 0 < size_range[0] <= size_range[1] <= 1:
            raise _checks.fail_value("size_range", "(lo, hi) with 0 < lo <= hi <= 1", size_range)
        _checks.number(max_iou, "max_iou", low=0.0, high=1.0, high_open=True)
        self.split = split
        self.num_images = int(num_images if num_images is not None else (8192 if split == "train" else 512))
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.seed = int(seed)
        self.num_vertices = int(num_vertices)
        self.min_objects = int(min_objects)
        self.max_objects_per_image = int(max_objects_per_image)
        self.size_range = tuple(float(s) for s in size_range)
        self.noise_std = tuple(float(s) for s in noise_std)
        self.clutter = tuple(int(c) for c in clutter)
        self.max_iou = float(max_iou)
        if cache is None:
            cache = self.num_images * self.image_size[0] * self.image_size[1] * 3 <= AUTO_CACHE_BYTES
        self._cache: dict | None = {} if cache else None
        self.polygons = bool(polygons)
        if not isinstance(rotated, bool):
            raise _checks.fail_value("rotated", "True or False", rotated)
        self.rotated = rotated
        self.class_names = ROTATED_SHAPE_CLASSES if rotated else SHAPE_CLASSES

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.num_images

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLITS[self.split], int(index)])

    # ------------------------------------------------------------------ shapes
    def _outline(self, cls: int, size: float, rng: np.random.Generator) -> np.ndarray:
        """Outline centred at 0 (pixels), outer diameter about ``size``."""
        r = size / 2
        if self.rotated:  # a rectangle of the class's aspect ratio whose diagonal is ``size``, at any angle
            aspect = rng.uniform(*_ROTATED_ASPECTS[cls])
            w = size / math.sqrt(1.0 + aspect * aspect)
            h = w * aspect
            pts = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
            return pts @ _rot(rng.uniform(0, np.pi)).T
        if cls in (0, 1):
            aspect = rng.uniform(0.5, 1.0)
            w = 2 * r if cls == 0 else 1.6 * r
            h = w * aspect
            if rng.random() < 0.5:
                w, h = h, w
            pts = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
            if cls == 1:
                pts = pts @ _rot(math.radians(rng.uniform(20, 70))).T
            return pts
        if cls == 2:
            a = r
            b = r * rng.uniform(0.4, 0.75)
            return _ellipse_outline(a, b, rng.uniform(0, np.pi))
        if cls == 3:
            phi0 = rng.uniform(0, 2 * np.pi)
            gaps = rng.uniform(100, 140, size=2)
            angles = np.radians(np.array([0.0, gaps[0], gaps[0] + gaps[1]])) + phi0
            radii = r * rng.uniform(0.85, 1.0, size=3)
            return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        if cls == 4:
            n = int(rng.choice([5, 6]))
            angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n) / n
            return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)
        raise AssertionError(cls)

    def _free(self, x0: float, y0: float, x1: float, y1: float, others: np.ndarray) -> bool:
        """Whether the box ``(x0, y0, x1, y1)`` may be placed beside the ``others`` ``[4, m]`` (columns x0, y0,
        x1, y1): at least 1 px apart, or (``max_iou > 0``) box IoU at most ``max_iou`` with each."""
        if self.max_iou == 0.0:
            apart = (x0 >= others[2] + 1) | (others[0] >= x1 + 1) | (y0 >= others[3] + 1) | (others[1] >= y1 + 1)
            return bool(apart.all())
        iw = np.clip(np.minimum(x1, others[2]) - np.maximum(x0, others[0]), 0, None)
        ih = np.clip(np.minimum(y1, others[3]) - np.maximum(y0, others[1]), 0, None)
        inter = iw * ih
        union = (x1 - x0) * (y1 - y0) + (others[2] - others[0]) * (others[3] - others[1])
        return bool(np.all(inter <= self.max_iou * (union - inter)))

    # ------------------------------------------------------------------ generation
    def annotation(self, index: int) -> dict:
        """Generate image ``index`` with its raw annotation.

        Returns:
          dict with ``image`` uint8 ``[H, W, 3]``, ``classes`` int32 ``[n]``, ``outlines`` (list of ``[P_i, 2]``
          float64 outlines in pixels, counter-clockwise in array coordinates), ``boxes_px`` float64 ``[n, 4]``
          (xyxy pixels), and ``image_id``.
        """
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        rng = self._rng(index)
        h, w = self.image_size
        f = _SUPERSAMPLE
        side = min(h, w)

        # Background: linear gradient between two colours along a random direction.
        c0, c1 = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
        theta = rng.uniform(0, 2 * np.pi)
        xs = (np.arange(w * f, dtype=np.float32) / (w * f) - 0.5) * math.cos(theta)
        ys = (np.arange(h * f, dtype=np.float32) / (h * f) - 0.5) * math.sin(theta)
        tt = ys[:, None] + xs[None, :] + 0.5
        tt = np.clip(tt, 0, 1)[..., None]
        bg = (c0 * (1 - tt) + c1 * tt).astype(np.uint8)
        canvas = Image.fromarray(bg)
        draw = ImageDraw.Draw(canvas)

        # Clutter: thin lines and small dots (smaller than any object).
        n_clutter = int(rng.integers(self.clutter[0], self.clutter[1] + 1))
        for _ in range(n_clutter):
            col = tuple(int(v) for v in rng.integers(0, 256, size=3))
            if rng.random() < 0.5:
                p = rng.uniform(0, 1, size=4) * np.array([w, h, w, h]) * f
                draw.line([tuple(p[:2]), tuple(p[2:])], fill=col, width=max(1, f // 2))
            else:
                cx, cy = rng.uniform(0, w * f), rng.uniform(0, h * f)
                rad = rng.uniform(0.5, 0.04 * side) * f
                draw.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=col)

        n_obj = int(rng.integers(self.min_objects, self.max_objects_per_image + 1))
        outlines, classes, boxes = [], [], []
        placed = np.zeros((4, n_obj))  # columns x0, y0, x1, y1 (pixels) of the objects placed so far
        for _ in range(n_obj):
            cls = int(rng.integers(0, len(self.class_names)))
            size = rng.uniform(*self.size_range) * side
            base = self._outline(cls, size, rng)
            lo, hi = base.min(axis=0), base.max(axis=0)
            others = placed[:, : len(boxes)]
            for _try in range(30):
                cx = rng.uniform(-lo[0], w - hi[0])
                cy = rng.uniform(-lo[1], h - hi[1])
                if self._free(cx + lo[0], cy + lo[1], cx + hi[0], cy + hi[1], others):
                    break
            else:
                continue
            pts = base + np.array([cx, cy])
            pts = np.clip(pts, 0.0, [w, h])
            # Object colour: far enough from the local background.
            bgcol = bg[min(int(cy * f), h * f - 1), min(int(cx * f), w * f - 1)].astype(float)
            for _c in range(10):
                col = rng.integers(0, 256, size=3)
                if np.abs(col - bgcol).sum() > 150:
                    break
            draw.polygon((pts * f - 0.5).ravel().tolist(), fill=tuple(int(v) for v in col))
            # Counter-clockwise in array coordinates.
            if polygon_signed_area(pts) < 0:
                pts = pts[::-1]
            outlines.append(pts)
            classes.append(cls)
            boxes.append(polygon_bounds(pts))
            placed[:, len(boxes) - 1] = boxes[-1]

        img = canvas.resize((w, h), Image.BOX)
        arr = np.asarray(img, dtype=np.float32)
        std = rng.uniform(*self.noise_std) * 255.0
        arr = arr + rng.normal(0.0, std, size=arr.shape).astype(np.float32)
        image = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        return {
            "image": image,
            "classes": np.asarray(classes, np.int32),
            "outlines": outlines,
            "boxes_px": np.asarray(boxes, np.float64).reshape(-1, 4),
            "image_id": np.int32(index),
        }

    @property
    def cached(self) -> bool:
        """Whether generated examples are kept (the ``cache`` argument)."""
        return self._cache is not None

    def fill_cache(self, stop=None) -> int:
        """Generates every example not yet cached, in index order, for a background thread: the loader then
        finds them ready instead of generating them between train steps. Safe beside concurrent ``dataset[i]``
        (an example generated twice at once is the same example). Returns the number generated.

        Args:
          stop: optional ``threading.Event``; when set, filling stops before the next example.
        """
        if self._cache is None:
            raise ValueError(f"fill_cache: this {self.split!r} split was made with cache=False")
        made = 0
        for index in range(self.num_images):
            if stop is not None and stop.is_set():
                break
            if index not in self._cache:
                self[index]
                made += 1
        return made

    def __getitem__(self, index: int) -> dict:
        """Example ``index`` (see :mod:`jaxdet.data.records`): normalised boxes and canonical polygons (``[n, 0,
        2]`` without ``polygons``)."""
        example = self._example(int(index))
        if not self.polygons:
            example["polygons"] = np.zeros((len(example["boxes"]), 0, 2), np.float32)
        return example

    def _example(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += self.num_images
        if self._cache is not None and index in self._cache:
            return dict(self._cache[index])
        ann = self.annotation(index)
        h, w = self.image_size
        scale = np.array([w, h], np.float64)
        boxes = (ann["boxes_px"] / np.array([w, h, w, h])).astype(np.float32)
        polygons = canonical_polygons([o / scale for o in ann["outlines"]], self.num_vertices)
        example = {
            "image": ann["image"],
            "boxes": boxes.reshape(-1, 4),
            "classes": ann["classes"],
            "polygons": polygons.astype(np.float32),
            "image_id": np.int32(index),
        }
        if self.rotated:
            example["corners"] = (np.stack(ann["outlines"]).reshape(-1, 4, 2) / scale).astype(np.float32)
        if self._cache is not None:
            for v in example.values():
                if isinstance(v, np.ndarray):
                    v.flags.writeable = False
            self._cache[index] = example
            return dict(example)
        return example
