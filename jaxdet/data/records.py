"""Record and example types shared by every jaxdet data source, plus padding and batching.

Vocabulary:

* A **record** (:class:`DetectionRecord`) is one annotated image as a reader returns it: where the image
  lives, its size, and its normalised targets.
* An **example** is a dict of numpy arrays for one image, with a variable number ``n`` of objects::

      {"image": uint8 [H, W, 3], "boxes": float32 [n, 4] (xyxy in [0, 1]), "classes": int32 [n],
       "polygons": float32 [n, K, 2] (canonical, normalised), "image_id": int32 [],
       "orig_size": int32 [2], "ratio_pad": float32 [4]}   # optional, see jaxdet.data.letterbox

  ``orig_size`` / ``ratio_pad`` say how the image was letterboxed from the original file (absent: it was
  not, the identity). Sources (:class:`~jaxdet.data.synthetic.SyntheticShapes`, :class:`DetectionSource`) return examples;
  augmentations map examples to examples.
* A **batch** (contract of the training loop) is a dict of numpy arrays with objects padded to ``M``::

      {"image": float32 [N, H, W, 3] in [0, 1], "boxes": float32 [N, M, 4], "classes": int32 [N, M],
       "valid": bool [N, M], "polygons": float32 [N, M, K, 2], "image_id": int32 [N],
       "orig_size": int32 [N, 2], "ratio_pad": float32 [N, 4], "dropped_boxes": int32 [N]}

  ``dropped_boxes`` is the example's ``num_dropped`` (int32 scalar an augmentation sets: objects it removed,
  e.g. boxes that left the image; 0 when absent).

  Padded slots hold zeros (boxes, polygons), class 0 and ``valid=False``. Padding images added to complete a
  final evaluation batch have ``image_id == -1`` and no valid objects.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from jaxdet import _checks
from jaxdet.data.errors import DatasetFormatError
from jaxdet.data.images import read_image
from jaxdet.data.letterbox import identity_letterbox, letterbox_image, letterbox_points

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

    Args:
      records: a :class:`RecordSet` or a sequence of :class:`DetectionRecord`.
      image_size: ``(height, width)`` of the produced images, or an int for square images.
      resize: ``"letterbox"`` or ``"stretch"``.
    """

    def __init__(self, records, *, image_size=(64, 64), resize: str = "letterbox"):
        self.records = records
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if len(image_size) != 2 or min(image_size) <= 0:
            raise _checks.fail_value("image_size", "(height, width) > 0, or an int", image_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.resize = _checks.choice(resize, "resize", RESIZE_MODES)
        self.class_names = getattr(records, "class_names", None)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        rec = self.records[index]
        img = rec.load_image()
        h, w = self.image_size
        boxes = np.asarray(rec.boxes, np.float32).reshape(-1, 4)
        polygons = np.asarray(rec.polygons, np.float32)
        orig_size = np.array(img.shape[:2], np.int32)
        if self.resize == "letterbox":
            img, ratio_pad = letterbox_image(img, self.image_size)
            geometry = dict(orig_size=orig_size, ratio_pad=ratio_pad, size=self.image_size)
            boxes = letterbox_points(boxes.reshape(-1, 2, 2), **geometry).reshape(-1, 4)
            polygons = letterbox_points(polygons, **geometry)
        else:
            ratio_pad = np.array([w / img.shape[1], h / img.shape[0], 0.0, 0.0], np.float32)
            if img.shape[:2] != (h, w):
                img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        return {
            "image": img,
            "boxes": boxes,
            "classes": np.asarray(rec.classes, np.int32).reshape(-1),
            "polygons": polygons,
            "image_id": np.int32(rec.image_id),
            "orig_size": orig_size,
            "ratio_pad": ratio_pad,
        }


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
      True), ``image`` converted to float32 in ``[0, 1]``, ``orig_size`` / ``ratio_pad`` (the identity when
      the example has none) and ``dropped_boxes`` (int32 scalar, the example's ``num_dropped`` or 0).

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
    for key, value in (("classes", classes), ("polygons", polys)):
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
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    orig_size, ratio_pad = identity_letterbox(image.shape[:2])
    return {
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
    return {key: np.stack([np.asarray(e[key]) for e in examples]) for key in keys}
