"""Record and example types shared by every jaxdet data source, plus padding and batching.

Vocabulary:

* A **record** (:class:`DetectionRecord`) is one annotated image as a reader returns it: where the image
  lives, its size, and its normalised targets.
* An **example** is a dict of numpy arrays for one image, with a variable number ``n`` of objects::

      {"image": uint8 [H, W, 3], "boxes": float32 [n, 4] (xyxy in [0, 1]), "classes": int32 [n],
       "polygons": float32 [n, K, 2] (canonical, normalised), "image_id": int32 [],
       "orig_size": int32 [2], "ratio_pad": float32 [4]}   # optional, see jaxdet.data.letterbox

  ``orig_size`` / ``ratio_pad`` say how the image was letterboxed from the original file (absent: it was
  not, the identity). Sources (:class:`~jaxdet.data.synthetic.SyntheticShapes`, :class:`DetectionSource`) return
  examples;
  augmentations map examples to examples.
* A **batch** (contract of the training loop) is a dict of numpy arrays with objects padded to ``M``::

      {"image": uint8 [N, H, W, 3], "boxes": float32 [N, M, 4], "classes": int32 [N, M],
       "valid": bool [N, M], "polygons": float32 [N, M, K, 2], "image_id": int32 [N],
       "orig_size": int32 [N, 2], "ratio_pad": float32 [N, 4], "dropped_boxes": int32 [N]}

  ``dropped_boxes`` is the example's ``num_dropped`` (int32 scalar an augmentation sets: objects it removed,
  e.g. boxes that left the image; 0 when absent). Images stay uint8 up to the device: the models scale them to
  ``[0, 1]`` there (:func:`jaxdet.models.inputs.unit_images`), so the host moves a quarter of the bytes.

  Examples of oriented-box sources also carry ``"corners": float32 [n, 4, 2]`` (normalised rotated-box corners,
  transformed with the image by every augmentation, :mod:`jaxdet.data.rotated`); their batches then also hold
  ``"rboxes": float32 [N, M, 5]``, each box refit from its corners as ultralytics' ``Format(return_obb=True)``
  does: ``(cx / W, cy / H, w / W, h / H, angle)`` of the minimum-area rectangle of the pixel corners
  (:func:`~jaxdet.data.rotated.corners_to_xywhr`: ``w >= h``, angle in radians in ``[-pi/4, 3pi/4)``); multiply
  by ``(W, H, W, H, 1)`` for pixels (as ``v8OBBLoss`` does with ``imgsz``). ``boxes`` is then the tight box of
  each rotated box's visible part.

  Padded slots hold zeros (boxes, polygons, rboxes), class 0 and ``valid=False``. Padding images added to complete a
  final evaluation batch have ``image_id == -1`` and no valid objects.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Sequence

import numpy as np

from jaxdet import _checks
from jaxdet.data.errors import DatasetFormatError
from jaxdet.data.image_cache import CACHE_MODES, DiskImageCache, RecentImages, SharedImageCache
from jaxdet.data.images import read_image
from jaxdet.data.letterbox import identity_letterbox, letterbox_image, letterbox_params, letterbox_points
from jaxdet.data.pixels import resize
from jaxdet.data.rotated import corners_to_xywhr

__all__ = [
    "DatasetFormatError",
    "DetectionRecord",
    "check_image_size",
    "RecordSet",
    "DetectionSource",
    "pad_example",
    "collate",
    "empty_example",
]


#: how :class:`DetectionSource` brings images to its ``image_size``.
RESIZE_MODES = ("letterbox", "stretch")


def check_image_size(path, width: int, height: int, actual, record: str | None = None) -> None:
    """Raise if an image's displayed size differs from its annotated ``width`` x ``height``.

    Args:
      path: the image file (named in the error).
      width, height: the size the annotation declares.
      actual: ``(width, height)`` of the image as jaxdet reads it (EXIF orientation applied,
        :mod:`jaxdet.data.images`).
      record: the record named in the error (e.g. ``"image_id 3"``).

    Raises:
      DatasetFormatError: the two sizes, and, when they are each other's transpose, the EXIF rule.
    """
    aw, ah = (int(v) for v in actual)
    if (aw, ah) == (int(width), int(height)):
        return
    message = f"image is {aw}x{ah} (WxH) but the annotation says {width}x{height}"
    if (aw, ah) == (int(height), int(width)):
        message += (
            "; the file is probably EXIF-rotated: jaxdet reads images upright (EXIF orientation applied, as "
            "ultralytics and cv2.imread do), so width/height and boxes must be given in the displayed frame"
        )
    raise DatasetFormatError(path, message, record)


@dataclasses.dataclass(frozen=True, eq=False)
class DetectionRecord:
    """One annotated image.

    Attributes:
      image_id: integer id (COCO image id; position in sorted file order for VOC/YOLO).
      image_path: path of the image file (or ``None`` when ``image`` holds the pixels).
      width, height: displayed image size in pixels (EXIF orientation applied) as declared by the annotation
        (or read from the file header).
      boxes: float32 ``[n, 4]`` normalised ``xyxy``, ``0 <= x0 < x1 <= 1``, ``0 <= y0 < y1 <= 1``.
      classes: int32 ``[n]`` in ``[0, C)``.
      polygons: float32 ``[n, K, 2]`` canonical polygons (the box rectangle when the annotation has none).
      has_polygon: bool ``[n]``, whether the polygon came from the annotation (False: box rectangle).
      image: optional uint8 ``[H, W, 3]`` pixels held in memory.
      corners: float32 ``[n, 4, 2]`` normalised corners of rotated boxes (oriented-box readers:
        :func:`~jaxdet.data.readers.read_yolo_obb`, :func:`~jaxdet.data.readers.read_dota`), as annotated (not
        clipped); None for records without rotated boxes.
    """

    image_id: int
    image_path: str | None
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray
    polygons: np.ndarray
    has_polygon: np.ndarray
    image: np.ndarray | None = None
    corners: np.ndarray | None = None

    def load_image(self) -> np.ndarray:
        """Return the image as uint8 ``[height, width, 3]`` RGB, upright (:func:`~jaxdet.data.images.read_image`).

        Raises:
          BadImageError: naming the file if it cannot be decoded.
          DatasetFormatError: if its displayed size differs from the annotated ``width``/``height``.
        """
        if self.image is not None:
            return self.image
        arr = read_image(self.image_path)
        check_image_size(
            self.image_path, self.width, self.height, arr.shape[1::-1], record=f"image_id {self.image_id}"
        )
        return arr

    def targets(self) -> dict[str, np.ndarray]:
        """The normalised targets as a dict (``boxes``, ``classes``, ``polygons``, ``has_polygon``)."""
        return {
            "boxes": self.boxes,
            "classes": self.classes,
            "polygons": self.polygons,
            "has_polygon": self.has_polygon,
        }


@dataclasses.dataclass(frozen=True)
class RecordSet(Sequence):
    """What every reader returns: the records (in a fixed order), the class names, and what was left out.

    Attributes:
      records: tuple of :class:`DetectionRecord`.
      class_names: tuple of class names; ``classes`` index into it.
      skipped: ``{image path: reason}`` of the images left out under ``on_bad_image="skip"`` (missing,
        unreadable or corrupt files; their objects are left out with them).
      dropped: ``{image path: (message, ...)}`` of the objects dropped under ``invalid_boxes="drop"``, one
        message per object naming the annotation file, the record and the reason; the per-file count is
        ``len(dropped[path])``.
    """

    records: tuple
    class_names: tuple
    skipped: dict = dataclasses.field(default_factory=dict)
    dropped: dict = dataclasses.field(default_factory=dict)

    @property
    def num_dropped(self) -> int:
        """The number of objects dropped, over all files."""
        return sum(len(v) for v in self.dropped.values())

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class DetectionSource:
    """Random-access grain source of examples built from records, images brought to a fixed size.

    Images are decoded by :meth:`DetectionRecord.load_image` (:func:`~jaxdet.data.images.read_image`: upright,
    RGB uint8 whatever the file's mode or bit depth). With ``resize="letterbox"`` (the default, as
    ultralytics) an image keeps its aspect ratio and is padded with grey 114 (:mod:`jaxdet.data.letterbox`);
    its boxes and polygons are mapped into the letterboxed image. With ``resize="stretch"`` it is resized to
    ``image_size`` without keeping the aspect ratio, and the normalised targets are unchanged. Either way each
    example records ``orig_size`` (``(h, w)``) and ``ratio_pad`` (``(gain_x, gain_y, pad_x, pad_y)``), so
    predictions map back to original pixels (:func:`~jaxdet.data.letterbox.boxes_to_original`).

    Each image is decoded and resized once into a cache (:mod:`jaxdet.data.image_cache`): ``cache="none"``
    keeps the ``buffer`` most recently used images, ``"ram"`` all of them in shared memory (its size checked
    against the available memory first, :attr:`cache_bytes`), ``"disk"`` one ``.npy`` file an image under
    ``cache_dir``. The cache changes the speed, never the examples.

    Args:
      records: a :class:`RecordSet` or a sequence of :class:`DetectionRecord`.
      image_size: ``(height, width)`` of the produced images, or an int for square images.
      resize: ``"letterbox"`` or ``"stretch"``.
      cache: ``"none"``, ``"ram"`` or ``"disk"``.
      cache_dir: the folder of ``cache="disk"`` (required there).
      buffer: how many recently used images are kept besides the cache (0: none).
      polygons: False for consumers that read no polygons (box heads): examples then carry ``polygons
        [n, 0, 2]`` and augmentations skip the polygon work.

    Raises:
      MemoryError: ``cache="ram"`` for more images than fit in memory, saying how much it needs and how much
        is available.
    """

    def __init__(self, records, *, image_size=(64, 64), resize: str = "letterbox", cache: str = "none",
                 cache_dir=None, buffer: int = 64, polygons: bool = True):
        self.records = records
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if len(image_size) != 2 or min(image_size) <= 0:
            raise _checks.fail_value("image_size", "(height, width) > 0, or an int", image_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.resize = _checks.choice(resize, "resize", RESIZE_MODES)
        self.cache = _checks.choice(cache, "cache", CACHE_MODES)
        self.cache_dir = cache_dir
        self.polygons = bool(polygons)
        self.class_names = getattr(records, "class_names", None)
        self._recent = RecentImages(_checks.positive_int(buffer, "buffer", minimum=0))
        self._store = None
        if self.cache == "ram":
            self._store = SharedImageCache(len(records), self.image_size + (3,))
        elif self.cache == "disk":
            if not cache_dir:
                raise _checks.fail_value("cache_dir", "a folder for the .npy files of cache='disk'", cache_dir)
            self._store = DiskImageCache(cache_dir, self.image_size, self.resize)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def cache_bytes(self) -> int:
        """Bytes the decoded images of the whole source take at the training size (what ``cache="ram"`` holds)."""
        return len(self.records) * self.image_size[0] * self.image_size[1] * 3

    @property
    def cached(self) -> bool:
        """Whether every image is kept once decoded (``cache="ram"``): :meth:`fill_cache` can fill it ahead."""
        return self.cache == "ram"

    @property
    def cache_shared(self) -> bool:
        """Whether worker processes share the cache (``"ram"``: shared memory; ``"disk"``: files)."""
        return self.cache != "none"

    def fill_cache(self, stop=None) -> int:
        """Decode every image not yet cached, in index order (for a background thread, as
        :meth:`jaxdet.data.SyntheticShapes.fill_cache`). An image that fails to decode is left for the loader,
        which raises its error naming the file. Returns the number decoded.

        Args:
          stop: optional ``threading.Event``; when set, filling stops before the next image.
        """
        if self.cache == "none":
            raise ValueError("fill_cache: this DetectionSource was made with cache='none'")
        made = 0
        for index in range(len(self.records)):
            if stop is not None and stop.is_set():
                break
            if self._store.get(self._key(index)) is None:
                try:
                    self._pixels(index)
                except Exception:  # noqa: BLE001 - raised again, naming the file, when the loader reads it
                    continue
                made += 1
        return made

    def _key(self, index: int):
        return self.records[index].image_path if self.cache == "disk" else index

    def _geometry(self, rec) -> tuple[np.ndarray, np.ndarray]:
        """``(orig_size [2], ratio_pad [4])`` of a record, from its annotated size (no decoding)."""
        h, w = self.image_size
        orig_size = np.array([rec.height, rec.width], np.int32)
        if self.resize == "letterbox":
            return orig_size, letterbox_params((rec.height, rec.width), self.image_size)[1]
        return orig_size, np.array([w / rec.width, h / rec.height, 0.0, 0.0], np.float32)

    def _pixels(self, index: int) -> np.ndarray:
        """The image of record ``index`` at the training size, uint8 ``[H, W, 3]`` (from a cache when there)."""
        image = self._recent.get(index)
        if image is not None:
            return image
        key = self._key(index) if self._store is not None else None
        image = None if key is None else self._store.get(key)
        if image is None:
            image = self._decode(index)
            if key is not None:
                self._store.put(key, image)
        self._recent.put(index, image)
        return image

    def _decode(self, index: int) -> np.ndarray:
        img = self.records[index].load_image()
        if self.resize == "letterbox":
            return letterbox_image(img, self.image_size)[0]
        return np.ascontiguousarray(resize(img, self.image_size))

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        rec = self.records[index]
        img = self._pixels(index)
        boxes = np.asarray(rec.boxes, np.float32).reshape(-1, 4)
        polygons = np.asarray(rec.polygons, np.float32)
        if not self.polygons:
            polygons = np.zeros((len(boxes), 0, 2), np.float32)
        corners = None if rec.corners is None else np.asarray(rec.corners, np.float32).reshape(-1, 4, 2)
        orig_size, ratio_pad = self._geometry(rec)
        if self.resize == "letterbox":
            geometry = dict(orig_size=orig_size, ratio_pad=ratio_pad, size=self.image_size)
            boxes = letterbox_points(boxes.reshape(-1, 2, 2), **geometry).reshape(-1, 4)
            if self.polygons:
                polygons = letterbox_points(polygons, **geometry)
            if corners is not None:
                corners = letterbox_points(corners, **geometry)
        example = {
            "image": img,
            "boxes": boxes,
            "classes": np.asarray(rec.classes, np.int32).reshape(-1),
            "polygons": polygons,
            "image_id": np.int32(rec.image_id),
            "orig_size": orig_size,
            "ratio_pad": ratio_pad,
        }
        if corners is not None:
            example["corners"] = corners
        return example


def empty_example(image_shape, *, num_vertices: int = 8, image_id: int = -1) -> dict:
    """An example with a black image and no objects (used to complete a final evaluation batch)."""
    _checks.positive_int(num_vertices, "num_vertices")
    orig_size, ratio_pad = identity_letterbox(tuple(image_shape)[:2])
    return {
        "orig_size": orig_size,
        "ratio_pad": ratio_pad,
        "image": np.zeros(tuple(image_shape), np.uint8),
        "boxes": np.zeros((0, 4), np.float32),
        "classes": np.zeros((0,), np.int32),
        "polygons": np.zeros((0, num_vertices, 2), np.float32),
        "image_id": np.int32(image_id),
    }


def pad_example(example: dict, max_objects: int) -> dict:
    """Pad an example's objects to ``max_objects`` and add the ``valid`` mask.

    Args:
      example: an example dict (``boxes [n, 4]``, ``classes [n]``, ``polygons [n, K, 2]``, ...).
      max_objects: ``M``, the fixed number of object slots.

    Returns:
      A new dict with ``boxes [M, 4]``, ``classes [M]``, ``polygons [M, K, 2]``, ``valid [M]`` (first ``n``
      True), ``image`` (uint8 as it is; float images as float32), ``orig_size`` / ``ratio_pad`` (the identity when
      the example has none) and ``dropped_boxes`` (int32 scalar, the example's ``num_dropped`` or 0); with
      ``corners [n, 4, 2]`` also ``rboxes [M, 5]`` (the normalised refit of this module's docstring).

    Raises:
      ValueError: naming ``max_objects`` (and the image id) if the example has more than ``max_objects``
        objects. Nothing is truncated.
    """
    _checks.keys_present(example, ("image", "boxes", "classes", "polygons", "image_id"), "example")
    boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
    classes = np.asarray(example["classes"], np.int32).reshape(-1)
    polys = np.asarray(example["polygons"], np.float32)
    n = boxes.shape[0]
    image_id = int(example["image_id"])
    checked = [("classes", classes), ("polygons", polys)]
    corners = example.get("corners")
    if corners is not None:
        corners = np.asarray(corners, np.float64)
        _checks.layout(corners, "example['corners']", shape="[n, 4, 2]", ndim=3, last=2)
        checked.append(("corners", corners))
    for key, value in checked:
        if value.shape[0] != n:
            raise _checks.fail_shape(
                f"example[{key!r}]", f"[n, ...] with n = {n}, the objects of example['boxes']", value,
                hint=f"(image_id {image_id})",
            )
    if n > max_objects:
        raise _checks.fail_value(
            "max_objects", f">= the {n} objects of image_id {image_id}", max_objects,
            hint="Objects are never truncated: raise max_objects.",
        )
    k = polys.shape[1] if polys.ndim == 3 else 0
    out_boxes = np.zeros((max_objects, 4), np.float32)
    out_cls = np.zeros((max_objects,), np.int32)
    out_poly = np.zeros((max_objects, k, 2), np.float32)
    valid = np.zeros((max_objects,), bool)
    out_boxes[:n], out_cls[:n], valid[:n] = boxes, classes, True
    if n:
        out_poly[:n] = polys
    image = np.asarray(example["image"])
    if image.dtype != np.uint8:  # a source of float images in [0, 1]
        image = image.astype(np.float32)
    orig_size, ratio_pad = identity_letterbox(image.shape[:2])
    out = {
        "orig_size": np.asarray(example.get("orig_size", orig_size), np.int32).reshape(2),
        "ratio_pad": np.asarray(example.get("ratio_pad", ratio_pad), np.float32).reshape(4),
        "image": image,
        "boxes": out_boxes,
        "classes": out_cls,
        "valid": valid,
        "polygons": out_poly,
        "image_id": np.int32(example["image_id"]),
        "dropped_boxes": np.int32(example.get("num_dropped", 0)),
    }
    if corners is not None:
        h, w = image.shape[:2]
        out["rboxes"] = np.zeros((max_objects, 5), np.float32)
        out["rboxes"][:n] = corners_to_xywhr(corners * [w, h]) / [w, h, w, h, 1.0]
    return out


def collate(examples: Sequence[dict], *, max_objects: int | None = None) -> dict:
    """Stack examples into a batch dict.

    Args:
      examples: padded examples (from :func:`pad_example`), or raw examples when ``max_objects`` is given.
      max_objects: if given, pad each example first.

    Returns:
      The batch dict described in this module's docstring, every leaf with leading axis ``N = len(examples)``.
    """
    if max_objects is not None:
        examples = [pad_example(e, max_objects) for e in examples]
    if not examples:
        raise _checks.fail_value("examples", "a non-empty sequence of examples", examples)
    keys = ("image", "boxes", "classes", "valid", "polygons", "image_id", "orig_size", "ratio_pad", "dropped_boxes")
    out = {key: np.stack([np.asarray(e[key]) for e in examples]) for key in keys if key != "image"}
    if any("rboxes" in e for e in examples):  # an oriented-box source; padding images (no objects) hold zeros
        m = out["valid"].shape[1]
        out["rboxes"] = np.stack([np.asarray(e.get("rboxes", np.zeros((m, 5), np.float32))) for e in examples])
    images = [np.asarray(e["image"]) for e in examples]
    out["image"] = np.stack(images, out=_IMAGE_BUFFERS.take((len(images),) + images[0].shape, images[0].dtype))
    return out


class _BufferPool:
    """Reused arrays for the batches' images.

    A batch of 16 images at 640 px is 19.7 MB. Freshly allocated, its pages are faulted in as it is written:
    45-59 ms a batch on this project's 2-core virtual machine, more than the augmentation of the 16 images, when
    the allocator had no free block of that size to reuse (the recently decoded images of ``cache="none"`` fill
    the holes). A pooled array is handed out again only when nothing else references it (no batch, view or
    device buffer aliasing it: its reference count), so a batch is never overwritten while in use.
    """

    def __init__(self, size: int = 16):
        self.size = size
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        with self._lock:
            for array in self._arrays:
                # 3 references: the list, the loop variable and getrefcount's argument.
                if array.shape == shape and array.dtype == dtype and sys.getrefcount(array) == 3:
                    return array
            array = np.empty(shape, dtype)
            if len(self._arrays) >= self.size:
                self._arrays.pop(0)
            self._arrays.append(array)
            return array


_IMAGE_BUFFERS = _BufferPool()
