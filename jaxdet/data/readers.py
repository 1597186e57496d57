"""Readers for COCO JSON, Pascal VOC XML and YOLO txt annotations, and for rotated boxes (ultralytics' OBB txt,
:func:`read_yolo_obb`; DOTA's ``labelTxt``, :func:`read_dota`: records with ``corners``, :mod:`jaxdet.data.rotated`).

All three return a :class:`~jaxdet.data.records.RecordSet` of :class:`~jaxdet.data.records.DetectionRecord`
with the same conventions, so the same annotations in any of the formats give identical targets:

* boxes: float32 ``[n, 4]`` xyxy normalised by the image width/height;
* classes: int32 ``[n]`` indices into ``class_names``;
* polygons: float32 ``[n, K, 2]`` through :func:`~jaxdet.data.geometry.canonical_polygon` (the box rectangle
  when the object has no polygon; ``has_polygon`` says which).

Validation rules, identical for every format (nothing is dropped silently):

* A malformed file or record raises :class:`~jaxdet.data.errors.DatasetFormatError` (a ``ValueError``) whose
  message names the file and the record: ``annotation id N`` (COCO), ``object N`` (VOC, 0-based order in the
  XML), ``line N`` (YOLO, 1-based).
* A class that is not in ``class_names`` (or a COCO ``category_id`` missing from ``categories``) raises.
* **Images** are checked when read (``verify_images=True``, :func:`~jaxdet.data.images.verify_image`, as
  ultralytics' ``verify_image_label``), so a bad file is found before training starts rather than in a
  loader worker. A missing, unreadable or corrupt file is an error naming it (``on_bad_image="error"``,
  :class:`~jaxdet.data.errors.BadImageError`), or with ``on_bad_image="skip"`` it is left out with its
  objects and listed in ``RecordSet.skipped`` (path -> reason). An annotated size (COCO ``width``/``height``,
  VOC ``<size>``) must equal the *displayed* size of the file (EXIF orientation applied,
  :mod:`jaxdet.data.images`); a mismatch always raises.
* **Object geometry** is invalid when (in the image's pixels, after the format's conversion to xyxy):

  - the box has zero or negative width or height (``x1 <= x0`` or ``y1 <= y0``, as annotated);
  - the box or a polygon vertex lies further outside the image than ``tolerance`` (default 1 pixel for
    COCO/VOC, 0.001 of the longer side for YOLO: rounding in exported datasets); within the tolerance it is
    clipped to the image, and a box that has zero area after clipping is invalid too;
  - the polygon has fewer than 3 distinct points or zero area.

  A box partly outside the image by more than the tolerance is invalid rather than clipped, since it usually
  means a wrong image size or box format; a larger ``tolerance`` clips such boxes instead (and a box wholly
  outside then has zero area after clipping: invalid). ultralytics differs here: ``verify_image_label``
  checks a label's normalised centre and size against ``[-0.01, 1.01]`` (beyond, the whole image is marked
  corrupt and left out), keeps a box whose centre and size pass even if its edges leave the image, and clips
  boxes only in its augmentations (``Instances.clip`` then ``remove_zero_area_boxes``), as
  :mod:`jaxdet.data.augment` does. With ``invalid_boxes="error"`` (the default) an invalid object raises
  :class:`~jaxdet.data.errors.InvalidBoxError` naming the file and record; with ``"drop"`` it is left out
  and listed in ``RecordSet.dropped`` (image path -> one message per object).
* Images without objects are kept (an empty COCO image, a VOC file without ``<object>``, a missing or empty
  YOLO label file).

Coordinate conventions: continuous pixel coordinates where pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``.
COCO ``bbox`` is ``[x, y, w, h]`` in these coordinates. VOC ``bndbox`` uses 1-based inclusive pixel indices
(the standard VOC convention), so ``x0 = xmin - 1``, ``x1 = xmax`` (same for y); VOC polygons
(``<polygon><x1>..</x1><y1>..</y1>...``, the Roboflow/CVAT extension) are read in the same 1-based frame
(``x - 1``). YOLO lines are normalised: ``cls cx cy w h`` or ``cls x1 y1 x2 y2 ...`` (>= 3 points); for a
polygon line the box is the polygon's tight box (ultralytics' convention).

Label cache: :func:`read_yolo` and :func:`read_coco` with ``cache=True`` (or a directory) keep the result of a
read (every image's verified size, the parsed objects, what was skipped and dropped) in a per-user cache
directory, never in the dataset, and return it on a later read of unchanged files with the same arguments
without opening an image or a label file; any added, removed or modified file (name, size, mtime) or changed
argument means a fresh read. A read that raises is not cached. Default ``cache=None``: no cache; the
training CLI turns it on (``data.label_cache``). Details in :mod:`jaxdet.data.label_cache`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxdet import _checks
from jaxdet.data.errors import BadImageError, DatasetFormatError, InvalidBoxError
from jaxdet.data.geometry import box_to_polygon, canonical_polygon, polygon_bounds
from jaxdet.data.images import image_size, verify_image
from jaxdet.data.label_cache import CacheEntry, file_stat, listing_digest, resolve_cache_dir, stat_digest
from jaxdet.data.records import DetectionRecord, RecordSet, check_image_size

__all__ = [
    "read_coco",
    "read_voc",
    "read_yolo",
    "read_yolo_files",
    "read_yolo_obb",
    "read_dota",
    "yolo_image_files",
    "yolo_label_path",
    "voc_class_names",
    "VOC_CLASSES",
    "DOTA_CLASSES",
    "IMAGE_EXTENSIONS",
    "ON_BAD_IMAGE",
    "INVALID_BOXES",
]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: what a reader does with a missing, unreadable or corrupt image file.
ON_BAD_IMAGE = ("error", "skip")
#: what a reader does with an object whose geometry is invalid (zero area, outside the image).
INVALID_BOXES = ("error", "drop")


class _Screen:
    """What one read keeps, skips (bad images) and drops (invalid objects), by the reader's options."""

    def __init__(self, on_bad_image: str, invalid_boxes: str, verify_images: bool):
        self.on_bad_image = _checks.choice(on_bad_image, "on_bad_image", ON_BAD_IMAGE)
        self.invalid_boxes = _checks.choice(invalid_boxes, "invalid_boxes", INVALID_BOXES)
        if not isinstance(verify_images, bool):
            raise _checks.fail_value("verify_images", "True or False", verify_images)
        self.verify_images = verify_images
        self.skipped: dict[str, str] = {}
        self.dropped: dict[str, list[str]] = {}

    def image(self, path, record: str, declared=None) -> tuple[int, int] | None:
        """The ``(width, height)`` of the image at ``path``, or None when it is bad and skipped.

        With ``verify_images`` the file is checked (:func:`~jaxdet.data.images.verify_image`) and a
        ``declared`` size must equal its displayed size; without, only a missing ``declared`` size is read
        from the header.
        """
        try:
            if self.verify_images:
                size = verify_image(path)
            else:
                size = declared if declared is not None else image_size(path)
        except BadImageError as err:
            if self.on_bad_image == "error":
                raise BadImageError(path, err.reason, record) from None
            self.skipped[os.fspath(path)] = err.reason
            self.dropped.pop(os.fspath(path), None)  # the objects of a skipped image are gone with it
            return None
        if declared is not None:
            check_image_size(path, *declared, size, record)
            return tuple(declared)
        return size

    def object(self, image_path, *finalise_args) -> tuple | None:
        """:func:`_finalise_object`, or None when the object is invalid and dropped (recorded per image)."""
        try:
            return _finalise_object(*finalise_args)
        except InvalidBoxError as err:
            if self.invalid_boxes == "error":
                raise
            self.dropped.setdefault(os.fspath(image_path), []).append(str(err))
            return None

    def record_set(self, records, class_names) -> RecordSet:
        return RecordSet(
            records=tuple(records),
            class_names=tuple(class_names),
            skipped=dict(self.skipped),
            dropped={path: tuple(messages) for path, messages in self.dropped.items()},
        )


def _finalise_object(path, record, box_px, poly_px, width, height, k, tolerance):
    """Validate one object in pixel coordinates and return (box_norm, poly_norm, has_polygon).

    Raises:
      DatasetFormatError: a box that is not 4 finite numbers, a polygon that is not finite (x, y) pairs.
      InvalidBoxError: invalid geometry (the module doc's rules), which ``invalid_boxes="drop"`` drops.
    """
    box = np.asarray(box_px, np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise DatasetFormatError(path, f"box must be 4 finite numbers, got {box_px!r}", record)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise InvalidBoxError(path, f"box has zero or negative width/height (xyxy pixels {box.tolist()})", record)
    lo = np.array([-tolerance, -tolerance, -tolerance, -tolerance])
    hi = np.array([width, height, width, height]) + tolerance
    if np.any(box < lo) or np.any(box > hi):
        raise InvalidBoxError(
            path, f"box {box.tolist()} (xyxy pixels) lies outside the {width}x{height} image", record
        )
    box = np.clip(box, 0, [width, height, width, height])
    if not (box[2] > box[0] and box[3] > box[1]):
        raise InvalidBoxError(path, "box has zero area after clipping to the image", record)
    scale = np.array([width, height], np.float64)
    if poly_px is None:
        poly = box_to_polygon(box / np.array([width, height, width, height]))
        has_polygon = False
    else:
        pts = np.asarray(poly_px, np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
            raise DatasetFormatError(path, "polygon must be finite (x, y) pairs", record)
        if np.any(pts < -tolerance) or np.any(pts > scale + tolerance):
            raise InvalidBoxError(path, f"polygon lies outside the {width}x{height} image", record)
        poly = np.clip(pts, 0, scale) / scale
        has_polygon = True
    try:
        canon = canonical_polygon(poly, k)
    except ValueError as err:
        raise InvalidBoxError(path, f"invalid polygon: {err}", record) from None
    box_n = box / np.array([width, height, width, height])
    return box_n.astype(np.float32), canon, has_polygon


def _make_record(image_id, image_path, width, height, objs, k, image=None, corners=None) -> DetectionRecord:
    """``objs``: ``(box, polygon, has_polygon, class)`` each; ``corners``: their ``[4, 2]`` rotated-box corners
    (oriented-box readers) or None."""
    n = len(objs)
    boxes = np.stack([o[0] for o in objs]).astype(np.float32) if n else np.zeros((0, 4), np.float32)
    classes = np.asarray([o[3] for o in objs], np.int32).reshape(n)
    polys = np.stack([o[1] for o in objs]).astype(np.float32) if n else np.zeros((0, k, 2), np.float32)
    has_poly = np.asarray([o[2] for o in objs], bool).reshape(n)
    return DetectionRecord(
        image_id=int(image_id),
        image_path=None if image_path is None else os.fspath(image_path),
        width=int(width),
        height=int(height),
        boxes=boxes,
        classes=classes,
        polygons=polys,
        has_polygon=has_poly,
        image=image,
        corners=None if corners is None else np.asarray(corners, np.float32).reshape(n, 4, 2),
    )


# --------------------------------------------------------------------------------------------------- COCO
def read_coco(
    annotation_file,
    *,
    image_dir=None,
    class_names: Sequence[str] | None = None,
    num_vertices: int = 8,
    include_crowd: bool = False,
    tolerance: float = 1.0,
    on_bad_image: str = "error",
    invalid_boxes: str = "error",
    verify_images: bool = True,
    cache=None,
) -> RecordSet:
    """Read a COCO detection / instance-segmentation JSON file.

    Args:
      annotation_file: path of the JSON file.
      image_dir: directory of the images (default: the JSON file's directory); ``file_name`` is relative to it.
      class_names: class order. Default: the ``categories`` sorted by ``id``. When given, every category name
        used by an annotation must appear in it.
      num_vertices: ``K`` of the canonical polygons.
      include_crowd: ``iscrowd=1`` annotations are excluded by default (COCO evaluation ignores them);
        with True they are kept, with their box rectangle as polygon when the segmentation is RLE.
      tolerance: pixels by which a coordinate may exceed the image before it is invalid (then clipped).
      on_bad_image: ``"error"``: a missing, unreadable or corrupt image raises
        :class:`~jaxdet.data.errors.BadImageError` naming it; ``"skip"``: the image and its objects are left
        out and listed in ``RecordSet.skipped`` with the reason.
      invalid_boxes: ``"error"``: an object with invalid geometry (the module doc's rules) raises
        :class:`~jaxdet.data.errors.InvalidBoxError` naming the file and record; ``"drop"``: it is left out
        and listed in ``RecordSet.dropped`` under its image.
      verify_images: check every image file when reading (:func:`~jaxdet.data.images.verify_image`: the
        header, ``Image.verify()``, JPEG completeness, the annotated size against the displayed size).
        False opens no file that the annotations do not need (the image size of a YOLO folder, or of a VOC
        file without ``<size>``, is still read from the header); a bad file then fails when it is loaded.
      cache: the label cache (:mod:`jaxdet.data.label_cache`): ``None``/``False`` (default): none; ``True``:
        the per-user cache directory (``$JAXDET_CACHE_DIR``, ``$XDG_CACHE_HOME/jaxdet`` or
        ``~/.cache/jaxdet``, under ``labels/``); a path: that directory. A read of unchanged files with the
        same arguments then returns the cached result, equal to a fresh read, without parsing the JSON or
        opening an image; a read that raises is not cached.

    Segmentation: a list of polygons ``[[x1, y1, x2, y2, ...], ...]``; one polygon is used as is, several parts
    are merged into their convex hull (which encloses the object, like its box). A missing or empty
    segmentation gives the box rectangle (``has_polygon=False``).

    Returns:
      A :class:`RecordSet`, records in the order of the ``images`` array.
    """
    path = Path(annotation_file)
    screen = _Screen(on_bad_image, invalid_boxes, verify_images)
    entry = None
    cache_dir = resolve_cache_dir(cache)
    if cache_dir is not None:
        args = dict(
            class_names=None if class_names is None else list(class_names),
            num_vertices=num_vertices,
            include_crowd=include_crowd,
            tolerance=tolerance,
            on_bad_image=on_bad_image,
            invalid_boxes=invalid_boxes,
            verify_images=verify_images,
        )
        idir = Path(image_dir) if image_dir is not None else path.parent
        entry = CacheEntry(cache_dir, "coco", path.name, {"annotation_file": path, "image_dir": idir}, args)
        json_stat = file_stat(path)
        # the JSON and every image it names (kept or skipped), without parsing the JSON
        hit = entry.load(lambda meta: stat_digest([path, *meta["image_paths"], *(p for p, _ in meta["skipped"])]))
        if hit is not None:
            return hit
    result = _read_coco(path, screen, image_dir, class_names, num_vertices, include_crowd, tolerance)
    if entry is not None and file_stat(path) == json_stat:  # not when the JSON changed while it was read
        entry.save(result, stat_digest([path, *(r.image_path for r in result.records), *result.skipped]))
    return result


def _read_coco(path, screen, image_dir, class_names, num_vertices, include_crowd, tolerance) -> RecordSet:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetFormatError(path, f"cannot read JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetFormatError(path, "missing 'images' list")
    anns = data.get("annotations", [])
    cats = data.get("categories")
    if not isinstance(anns, list) or not isinstance(cats, list):
        raise DatasetFormatError(path, "'annotations' and 'categories' must be lists")
    cat_name = {}
    for i, c in enumerate(cats):
        try:
            cat_name[int(c["id"])] = str(c["name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetFormatError(path, "category needs integer 'id' and 'name'", f"category {i}") from None
    if class_names is None:
        class_names = tuple(cat_name[i] for i in sorted(cat_name))
    class_names = tuple(class_names)
    name_to_idx = {n: i for i, n in enumerate(class_names)}
    image_dir = Path(image_dir) if image_dir is not None else path.parent

    images = {}
    order = []
    for i, im in enumerate(data["images"]):
        try:
            iid, fname, w, h = int(im["id"]), str(im["file_name"]), int(im["width"]), int(im["height"])
        except (KeyError, TypeError, ValueError):
            raise DatasetFormatError(
                path, "image needs integer 'id', 'width', 'height' and 'file_name'", f"image {i}"
            ) from None
        if w <= 0 or h <= 0:
            raise DatasetFormatError(path, f"non-positive image size {w}x{h}", f"image id {iid}")
        if iid in images:
            raise DatasetFormatError(path, "duplicate image id", f"image id {iid}")
        images[iid] = (fname, w, h)
        order.append(iid)

    objs: dict[int, list] = {iid: [] for iid in order}
    for i, a in enumerate(anns):
        rec = f"annotation id {a.get('id', '?')} (index {i})" if isinstance(a, dict) else f"annotation {i}"
        if not isinstance(a, dict):
            raise DatasetFormatError(path, "annotation must be an object", rec)
        try:
            iid, cid = int(a["image_id"]), int(a["category_id"])
        except (KeyError, TypeError, ValueError):
            raise DatasetFormatError(path, "needs integer 'image_id' and 'category_id'", rec) from None
        if iid not in images:
            raise DatasetFormatError(path, f"unknown image_id {iid}", rec)
        if cid not in cat_name:
            raise DatasetFormatError(path, f"unknown category_id {cid} (not in 'categories')", rec)
        if cat_name[cid] not in name_to_idx:
            raise DatasetFormatError(
                path, f"category {cat_name[cid]!r} is not in class_names {list(class_names)}", rec
            )
        crowd = bool(a.get("iscrowd", 0))
        if crowd and not include_crowd:
            continue
        bbox = a.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise DatasetFormatError(path, f"'bbox' must be [x, y, w, h], got {bbox!r}", rec)
        try:
            x, y, bw, bh = (float(v) for v in bbox)
        except (TypeError, ValueError):
            raise DatasetFormatError(path, f"'bbox' must be numbers, got {bbox!r}", rec) from None
        _, w, h = images[iid]
        seg = a.get("segmentation")
        poly = None
        if isinstance(seg, list) and seg:
            parts = []
            for part in seg:
                try:
                    arr = np.asarray(part, np.float64)
                except (TypeError, ValueError):
                    raise DatasetFormatError(path, "segmentation polygon must be numbers", rec) from None
                if arr.ndim != 1 or arr.size < 6 or arr.size % 2:
                    raise DatasetFormatError(
                        path, "segmentation polygon must be a flat list of >= 3 (x, y) pairs", rec
                    )
                parts.append(arr.reshape(-1, 2))
            poly = parts[0] if len(parts) == 1 else _convex_hull(np.concatenate(parts))
        elif seg not in (None, [], {}) and not (isinstance(seg, dict) and crowd):
            if not isinstance(seg, dict):
                raise DatasetFormatError(path, f"unsupported segmentation {type(seg).__name__}", rec)
            raise DatasetFormatError(path, "RLE segmentation is only supported for iscrowd=1", rec)
        obj = screen.object(
            image_dir / images[iid][0], path, rec, [x, y, x + bw, y + bh], poly, w, h, num_vertices, tolerance
        )
        if obj is not None:
            objs[iid].append((*obj, name_to_idx[cat_name[cid]]))

    records = []
    for iid in order:
        fname, w, h = images[iid]
        if screen.image(image_dir / fname, f"image id {iid}", declared=(w, h)) is not None:
            records.append(_make_record(iid, image_dir / fname, w, h, objs[iid], num_vertices))
    return screen.record_set(records, class_names)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain, counter-clockwise in (x, y)."""
    pts = np.unique(np.asarray(points, np.float64), axis=0)
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(tuple(p))
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(tuple(p))
    return np.asarray(lower[:-1] + upper[:-1])


# --------------------------------------------------------------------------------------------------- VOC
def _text(node, tag, path, record, cast=float):
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetFormatError(path, f"missing <{tag}>", record)
    try:
        return cast(child.text.strip())
    except ValueError:
        raise DatasetFormatError(path, f"<{tag}> is not a number: {child.text.strip()!r}", record) from None


def _voc_files(annotations) -> list[Path]:
    """A directory of ``*.xml`` files (sorted by name) or a sequence of XML paths, as a list of paths."""
    if isinstance(annotations, (str, os.PathLike)):
        return sorted(Path(annotations).glob("*.xml"))
    return [Path(p) for p in annotations]


def voc_class_names(*annotations) -> tuple[str, ...]:
    """The sorted object ``<name>``s of Pascal VOC XML annotations (the class order when none is given).

    Args:
      *annotations: one or more directories of ``*.xml`` files or sequences of XML paths (e.g. the train and
        validation splits, so both use one class order).

    Raises:
      DatasetFormatError: naming the file that cannot be parsed.
    """
    names = set()
    for group in annotations:
        for xml_path in _voc_files(group):
            try:
                root = ET.parse(xml_path).getroot()
            except (ET.ParseError, OSError) as err:
                raise DatasetFormatError(xml_path, f"cannot parse XML: {err}") from None
            names.update((o.findtext("name") or "").strip() for o in root.findall("object"))
    names.discard("")
    return tuple(sorted(names))


def read_voc(
    annotations,
    *,
    image_dir=None,
    class_names: Sequence[str] = VOC_CLASSES,
    num_vertices: int = 8,
    include_difficult: bool = True,
    tolerance: float = 1.0,
    on_bad_image: str = "error",
    invalid_boxes: str = "error",
    verify_images: bool = True,
) -> RecordSet:
    """Read Pascal VOC XML annotations.

    Args:
      annotations: a directory of ``*.xml`` files (read in sorted name order) or a sequence of XML paths.
      image_dir: directory holding ``<filename>`` (default: ``<xml dir>/../JPEGImages`` if it exists, else the
        XML file's directory).
      class_names: class order; an object whose ``<name>`` is not in it raises.
      num_vertices: ``K`` of the canonical polygons.
      include_difficult: keep ``<difficult>1</difficult>`` objects (default True; with False they are skipped,
        as VOC evaluation does).
      tolerance: pixels by which a coordinate may exceed the image before it is invalid (then clipped).
      on_bad_image: ``"error"``: a missing, unreadable or corrupt image raises
        :class:`~jaxdet.data.errors.BadImageError` naming it; ``"skip"``: the image and its objects are left
        out and listed in ``RecordSet.skipped`` with the reason.
      invalid_boxes: ``"error"``: an object with invalid geometry (the module doc's rules) raises
        :class:`~jaxdet.data.errors.InvalidBoxError` naming the file and record; ``"drop"``: it is left out
        and listed in ``RecordSet.dropped`` under its image.
      verify_images: check every image file when reading (:func:`~jaxdet.data.images.verify_image`: the
        header, ``Image.verify()``, JPEG completeness, the annotated size against the displayed size).
        False opens no file that the annotations do not need (the image size of a YOLO folder, or of a VOC
        file without ``<size>``, is still read from the header); a bad file then fails when it is loaded.

    ``image_id`` is the position of the XML file in the (sorted) list. ``<size>`` gives the image size; without
    it the image header is read.

    Returns:
      A :class:`RecordSet`.
    """
    files = _voc_files(annotations)
    screen = _Screen(on_bad_image, invalid_boxes, verify_images)
    class_names = tuple(class_names)
    name_to_idx = {n: i for i, n in enumerate(class_names)}
    records = []
    for image_id, xml_path in enumerate(files):
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError) as err:
            raise DatasetFormatError(xml_path, f"cannot parse XML: {err}") from None
        if root.tag != "annotation":
            raise DatasetFormatError(xml_path, f"root element is <{root.tag}>, expected <annotation>")
        fname = root.findtext("filename")
        if not fname or not fname.strip():
            raise DatasetFormatError(xml_path, "missing <filename>")
        if image_dir is not None:
            idir = Path(image_dir)
        else:
            jpeg = xml_path.parent.parent / "JPEGImages"
            idir = jpeg if jpeg.is_dir() else xml_path.parent
        img_path = idir / fname.strip()
        size = root.find("size")
        declared = None
        if size is not None:
            declared = (_text(size, "width", xml_path, "size", int), _text(size, "height", xml_path, "size", int))
            if min(declared) <= 0:
                raise DatasetFormatError(xml_path, f"non-positive image size {declared[0]}x{declared[1]}", "size")
        wh = screen.image(img_path, f"image_id {image_id} of {xml_path}", declared=declared)
        if wh is None:
            continue
        w, h = wh
        objs = []
        for j, obj in enumerate(root.findall("object")):
            rec = f"object {j}"
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise DatasetFormatError(xml_path, "missing <name>", rec)
            if name not in name_to_idx:
                raise DatasetFormatError(xml_path, f"class {name!r} is not in class_names", rec)
            difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true", "True")
            if difficult and not include_difficult:
                continue
            bnd = obj.find("bndbox")
            if bnd is None:
                raise DatasetFormatError(xml_path, "missing <bndbox>", rec)
            xmin, ymin, xmax, ymax = (_text(bnd, t, xml_path, rec) for t in ("xmin", "ymin", "xmax", "ymax"))
            poly = None
            pnode = obj.find("polygon")
            if pnode is not None:
                coords = {c.tag: c.text for c in pnode}
                pts = []
                i = 1
                while f"x{i}" in coords or f"y{i}" in coords:
                    try:
                        pts.append((float(coords[f"x{i}"]) - 1.0, float(coords[f"y{i}"]) - 1.0))
                    except (KeyError, TypeError, ValueError):
                        raise DatasetFormatError(xml_path, f"bad <polygon> point {i}", rec) from None
                    i += 1
                if len(pts) != len(coords) // 2 or len(coords) % 2:
                    raise DatasetFormatError(xml_path, "<polygon> children must be x1, y1, x2, y2, ...", rec)
                poly = np.asarray(pts, np.float64).reshape(-1, 2)
            obj = screen.object(
                img_path, xml_path, rec, [xmin - 1.0, ymin - 1.0, xmax, ymax], poly, w, h, num_vertices, tolerance
            )
            if obj is not None:
                objs.append((*obj, name_to_idx[name]))
        records.append(_make_record(image_id, img_path, w, h, objs, num_vertices))
    return screen.record_set(records, class_names)


# --------------------------------------------------------------------------------------------------- YOLO

def _read_yolo_labels(pairs, class_names, screen, num_vertices: int, tolerance: float,
                      obb: bool = False) -> list[DetectionRecord]:
    """The records of ``(image, label file)`` pairs in order (``image_id`` = position; see :func:`read_yolo`;
    ``obb``: every line is a rotated box, :func:`read_yolo_obb`)."""
    records = []
    for image_id, (img_path, label_path) in enumerate(pairs):
        wh = screen.image(img_path, f"image_id {image_id}")
        if wh is None:
            continue
        w, h = wh
        objs, corners = [], []
        if label_path.exists():
            with open(label_path) as fh:
                lines = fh.read().splitlines()
            for ln, line in enumerate(lines, start=1):
                tokens = line.split()
                if not tokens:
                    continue
                rec = f"line {ln}"
                try:
                    cls = int(tokens[0])
                    vals = np.asarray([float(t) for t in tokens[1:]], np.float64)
                except ValueError:
                    raise DatasetFormatError(label_path, f"not numbers: {line.strip()!r}", rec) from None
                if not 0 <= cls < len(class_names):
                    raise DatasetFormatError(
                        label_path, f"class index {cls} outside [0, {len(class_names)})", rec
                    )
                if not np.all(np.isfinite(vals)):
                    raise DatasetFormatError(label_path, "non-finite coordinate", rec)
                if obb:
                    if len(vals) != 8:
                        raise DatasetFormatError(
                            label_path, f"expected 'cls x1 y1 x2 y2 x3 y3 x4 y4' (9 fields), got {len(tokens)}", rec
                        )
                    obj = _rotated_object(screen, img_path, label_path, rec, vals.reshape(4, 2) * [w, h], w, h,
                                          num_vertices, tolerance * max(w, h))
                    if obj is not None:
                        objs.append((*obj[:3], cls))
                        corners.append(obj[3])
                    continue
                if len(vals) == 4:
                    cx, cy, bw, bh = vals
                    box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
                    poly = None
                elif len(vals) >= 6 and len(vals) % 2 == 0:
                    poly = vals.reshape(-1, 2)
                    box = polygon_bounds(poly)
                else:
                    raise DatasetFormatError(
                        label_path,
                        f"expected 'cls cx cy w h' or 'cls x1 y1 x2 y2 x3 y3 ...', got {len(tokens)} fields",
                        rec,
                    )
                scale = np.array([w, h, w, h], np.float64)
                obj = screen.object(
                    img_path,
                    label_path,
                    rec,
                    box * scale,
                    None if poly is None else poly * scale[:2],
                    w,
                    h,
                    num_vertices,
                    tolerance * max(w, h),
                )
                if obj is not None:
                    objs.append((*obj, cls))
        records.append(_make_record(image_id, img_path, w, h, objs, num_vertices, corners=corners if obb else None))
    return records


def _rotated_object(screen, image_path, label_path, record, corners_px, width, height, k, tolerance):
    """A rotated box from its 4 pixel corners: validated as the polygon of its corners (tight box and polygon
    within ``tolerance`` of the image, non-zero area); ``(box, polygon, True, corners normalised)``, or None when
    invalid and dropped."""
    obj = screen.object(image_path, label_path, record, polygon_bounds(corners_px), corners_px, width, height, k,
                        tolerance)
    return None if obj is None else (*obj, np.asarray(corners_px, np.float64) / [width, height])


def read_yolo(
    image_dir,
    *,
    class_names: Sequence[str],
    label_dir=None,
    num_vertices: int = 8,
    tolerance: float = 1e-3,
    on_bad_image: str = "error",
    invalid_boxes: str = "error",
    verify_images: bool = True,
    cache=None,
    obb: bool = False,
) -> RecordSet:
    """Read a YOLO (ultralytics/darknet) folder: one ``<stem>.txt`` label file per image.

    Args:
      image_dir: directory of images (files with :data:`IMAGE_EXTENSIONS`, read in sorted name order).
      class_names: class order; a class index outside ``[0, len(class_names))`` raises.
      label_dir: directory of label files (default: ``image_dir`` with its last ``images`` path component
        replaced by ``labels`` when that exists, else ``image_dir`` itself).
      num_vertices: ``K`` of the canonical polygons.
      tolerance: normalised amount by which a coordinate may leave ``[0, 1]`` before it is invalid.
      on_bad_image: ``"error"``: a missing, unreadable or corrupt image raises
        :class:`~jaxdet.data.errors.BadImageError` naming it; ``"skip"``: the image and its objects are left
        out and listed in ``RecordSet.skipped`` with the reason.
      invalid_boxes: ``"error"``: an object with invalid geometry (the module doc's rules) raises
        :class:`~jaxdet.data.errors.InvalidBoxError` naming the file and record; ``"drop"``: it is left out
        and listed in ``RecordSet.dropped`` under its image.
      verify_images: check every image file when reading (:func:`~jaxdet.data.images.verify_image`: the
        header, ``Image.verify()``, JPEG completeness, the annotated size against the displayed size).
        False opens no file that the annotations do not need (the image size of a YOLO folder, or of a VOC
        file without ``<size>``, is still read from the header); a bad file then fails when it is loaded.
      cache: the label cache (:mod:`jaxdet.data.label_cache`): ``None``/``False`` (default): none; ``True``:
        the per-user cache directory (``$JAXDET_CACHE_DIR``, ``$XDG_CACHE_HOME/jaxdet`` or
        ``~/.cache/jaxdet``, under ``labels/``); a path: that directory. A read of unchanged files with the
        same arguments then returns the cached result, equal to a fresh read, without opening any image or
        label file; a read that raises is not cached.
      obb: the label files are ultralytics OBB files (:func:`read_yolo_obb`).

    Each line is ``cls cx cy w h`` (a box) or ``cls x1 y1 ... xn yn`` with ``n >= 3`` (a polygon; its box is
    the polygon's tight box). Blank lines are ignored. A missing label file means an image without objects.
    ``image_id`` is the image's position in sorted order (skipped images keep their numbers free). The image
    size is the displayed size read from the file header (EXIF orientation 5-8 swaps width and height, as
    ultralytics' ``exif_size``): YOLO coordinates are fractions of the image as displayed.

    Returns:
      A :class:`RecordSet`.
    """
    image_dir, label_dir = _yolo_dirs(image_dir, label_dir)
    screen = _Screen(on_bad_image, invalid_boxes, verify_images)
    class_names = tuple(class_names)
    entry = None
    cache_dir = resolve_cache_dir(cache)
    if cache_dir is not None:
        args = dict(
            class_names=list(class_names),
            num_vertices=num_vertices,
            tolerance=tolerance,
            on_bad_image=on_bad_image,
            invalid_boxes=invalid_boxes,
            verify_images=verify_images,
            obb=obb,
        )
        entry = CacheEntry(cache_dir, "yolo", image_dir.name, {"image_dir": image_dir, "label_dir": label_dir}, args)
        # taken before reading: a file changed during the read makes the next read a fresh one
        fingerprint = listing_digest([(image_dir, IMAGE_EXTENSIONS), (label_dir, (".txt",))])
        hit = entry.load(lambda meta: fingerprint)
        if hit is not None:
            return hit
    records = _read_yolo_labels(_label_pairs(image_dir, label_dir), class_names, screen, num_vertices, tolerance,
                                obb)
    result = screen.record_set(records, class_names)
    if entry is not None:
        entry.save(result, fingerprint)
    return result


def _yolo_dirs(image_dir, label_dir) -> tuple[Path, Path]:
    """``(image_dir, label_dir)`` of :func:`read_yolo` (the default label folder: its rule)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DatasetFormatError(image_dir, "image_dir is not a directory")
    if label_dir is None:
        parts = list(image_dir.parts)
        if "images" in parts:
            idx = len(parts) - 1 - parts[::-1].index("images")
            cand = Path(*parts[:idx], "labels", *parts[idx + 1 :])
            label_dir = cand if cand.is_dir() else image_dir
        else:
            label_dir = image_dir
    return image_dir, Path(label_dir)


def _label_pairs(image_dir: Path, label_dir: Path) -> list[tuple[Path, Path]]:
    """``(image, label_dir / <stem>.txt)`` for the images of ``image_dir`` in sorted name order."""
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return [(f, label_dir / (f.stem + ".txt")) for f in files]


def read_yolo_obb(
    image_dir,
    *,
    class_names: Sequence[str],
    label_dir=None,
    num_vertices: int = 8,
    tolerance: float = 1e-3,
    on_bad_image: str = "error",
    invalid_boxes: str = "error",
    verify_images: bool = True,
    cache=None,
) -> RecordSet:
    """Read an ultralytics OBB folder: one ``<stem>.txt`` per image, a line ``cls x1 y1 x2 y2 x3 y3 x4 y4`` per
    rotated box (the 4 corners, normalised by the image width and height).

    The folders, ``image_id`` and the image checks are those of :func:`read_yolo`. Each rotated box is validated
    as the polygon of its corners (the module doc's rules: its tight box and corners within ``tolerance`` of the
    image, non-zero area); its record gets ``boxes`` (the corners' tight box), ``polygons`` (the canonical
    polygon of the corners, ``has_polygon`` True) and ``corners`` ``[n, 4, 2]`` (normalised, as annotated, not
    clipped: ultralytics clips rotated boxes in its augmentations, :func:`~jaxdet.data.rotated.clip_corners`).
    The ``xywhr`` targets are refit from the corners at batching (:func:`~jaxdet.data.records.pad_example`), as
    ultralytics' ``xyxyxyxy2xywhr``. A line that is not a class index and 8 numbers raises
    :class:`~jaxdet.data.errors.DatasetFormatError` naming the file and line.

    ultralytics' ``verify_image_label`` differs on invalid boxes as for :func:`read_yolo` (module doc) and also
    removes duplicate lines (with a warning); jaxdet keeps them.

    Args:
      image_dir, class_names, label_dir, num_vertices, tolerance, on_bad_image, invalid_boxes, verify_images,
        cache: as :func:`read_yolo` (this is ``read_yolo(..., obb=True)``; :func:`read_yolo_files` takes ``obb``
        too, for a ``data.yaml``'s lists).

    Returns:
      A :class:`RecordSet` whose records carry ``corners``.
    """
    return read_yolo(image_dir, class_names=class_names, label_dir=label_dir, num_vertices=num_vertices,
                     tolerance=tolerance, on_bad_image=on_bad_image, invalid_boxes=invalid_boxes,
                     verify_images=verify_images, cache=cache, obb=True)


# --------------------------------------------------------------------------------------------------- DOTA

_DOTA_HEADERS = ("imagesource:", "gsd:")

#: DOTA's categories in the order of ultralytics' ``convert_dota_to_yolo_obb`` (DOTA v1.0's 15, then v1.5's
#: container-crane, then v2.0's airport and helipad): ``read_dota(..., class_names=DOTA_CLASSES)`` gives the
#: class indices of the labels that converter writes.
DOTA_CLASSES: tuple[str, ...] = (
    "plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court", "ground-track-field",
    "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter", "roundabout", "soccer-ball-field",
    "swimming-pool", "container-crane", "airport", "helipad",
)  # fmt: skip


def _dota_lines(path: Path) -> list[tuple[int, list[str]]]:
    """The object lines of a DOTA label file as ``(line number, tokens)`` (header and blank lines left out)."""
    with open(path) as fh:
        lines = fh.read().splitlines()
    out = []
    for ln, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens or (not out and line.strip().lower().startswith(_DOTA_HEADERS)):
            continue
        if len(tokens) not in (9, 10):
            raise DatasetFormatError(
                path, f"expected 'x1 y1 x2 y2 x3 y3 x4 y4 category [difficult]', got {len(tokens)} fields",
                f"line {ln}",
            )
        out.append((ln, tokens))
    return out


def read_dota(
    image_dir,
    label_dir,
    *,
    class_names: Sequence[str] | None = None,
    include_difficult: bool = True,
    num_vertices: int = 8,
    tolerance: float = 1.0,
    on_bad_image: str = "error",
    invalid_boxes: str = "error",
    verify_images: bool = True,
) -> RecordSet:
    """Read a DOTA folder: ``label_dir/<stem>.txt`` (DOTA's ``labelTxt``) for each image of ``image_dir``.

    A label file may start with the header lines ``imagesource:...`` and ``gsd:...``; every other non-blank line
    is ``x1 y1 x2 y2 x3 y3 x4 y4 category difficult`` (``difficult`` 0 or 1, optional: 0), the corners in the
    image's pixels. Objects become records as in :func:`read_yolo_obb` (with ``corners``); the pixel corners
    are normalised by the image size. A missing label file means an image without objects.

    Args:
      image_dir: directory of images (:data:`IMAGE_EXTENSIONS`, sorted name order; ``image_id`` = position).
      label_dir: directory of the label files.
      class_names: class order; a category not in it raises. None: the sorted category strings of all the label
        files of ``label_dir``; :data:`DOTA_CLASSES` for ultralytics' class indices.
      include_difficult: keep objects marked difficult (True, as ultralytics' ``convert_dota_to_yolo_obb``).
      num_vertices: ``K`` of the canonical polygons.
      tolerance: pixels by which a corner may leave the image before the object is invalid.
      on_bad_image, invalid_boxes, verify_images: as :func:`read_yolo`.

    Returns:
      A :class:`RecordSet` whose records carry ``corners``.

    Raises:
      DatasetFormatError: naming the file and line of a line that is not 8 numbers, a category and an optional
        0/1, or whose category is not in ``class_names``.
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    for name, folder in (("image_dir", image_dir), ("label_dir", label_dir)):
        if not folder.is_dir():
            raise DatasetFormatError(folder, f"{name} is not a directory")
    screen = _Screen(on_bad_image, invalid_boxes, verify_images)
    pairs = _label_pairs(image_dir, label_dir)
    parsed = {label: _dota_lines(label) for _, label in pairs if label.exists()}
    if class_names is None:
        found = {tokens[8] for lines in parsed.values() for _, tokens in lines}
        found |= {t[8] for f in sorted(label_dir.glob("*.txt")) if f not in parsed for _, t in _dota_lines(f)}
        class_names = sorted(found)
    class_names = tuple(class_names)
    name_to_idx = {name: i for i, name in enumerate(class_names)}
    records = []
    for image_id, (img_path, label_path) in enumerate(pairs):
        wh = screen.image(img_path, f"image_id {image_id}")
        if wh is None:
            continue
        w, h = wh
        objs, corners = [], []
        for ln, tokens in parsed.get(label_path, []):
            rec = f"line {ln}"
            try:
                pts = np.asarray([float(t) for t in tokens[:8]], np.float64).reshape(4, 2)
            except ValueError:
                raise DatasetFormatError(label_path, f"corners are not numbers: {tokens[:8]}", rec) from None
            if not np.all(np.isfinite(pts)):
                raise DatasetFormatError(label_path, "non-finite coordinate", rec)
            if tokens[8] not in name_to_idx:
                raise DatasetFormatError(label_path, f"category {tokens[8]!r} is not in class_names", rec)
            difficult = tokens[9] if len(tokens) == 10 else "0"
            if difficult not in ("0", "1"):
                raise DatasetFormatError(label_path, f"difficult must be 0 or 1, got {difficult!r}", rec)
            if difficult == "1" and not include_difficult:
                continue
            obj = _rotated_object(screen, img_path, label_path, rec, pts, w, h, num_vertices, tolerance)
            if obj is not None:
                objs.append((*obj[:3], name_to_idx[tokens[8]]))
                corners.append(obj[3])
        records.append(_make_record(image_id, img_path, w, h, objs, num_vertices, corners=corners))
    return screen.record_set(records, class_names)


def yolo_label_path(image_path) -> Path:
    """The label file ultralytics reads for an image: its path with the last ``images`` directory replaced by
    ``labels`` and the extension by ``.txt`` (beside the image when no directory is called ``images``).

    ``/d/images/train/a.jpg -> /d/labels/train/a.txt``.
    """
    text = os.fspath(image_path)
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, found, tail = text.rpartition(images)
    return Path(head + labels + tail if found else text).with_suffix(".txt")


def yolo_image_files(source) -> list[Path]:
    """The images of an ultralytics dataset entry (a ``data.yaml``'s ``train`` / ``val`` / ``test``), listed as
    ultralytics lists them.

    Args:
      source: an image folder (searched recursively), a ``.txt`` file of image paths (one a line; a path
        starting with ``./`` is relative to the list's folder, any other relative path to the working
        directory), or a list of those.

    Returns:
      The image files (suffixes :data:`IMAGE_EXTENSIONS`, case-insensitive), sorted by path.

    Raises:
      DatasetFormatError: naming an entry that does not exist, a list file that cannot be read, or a source
        without images.
    """
    entries = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not entries:
        raise DatasetFormatError("source", "is an empty list (expected image folders or .txt lists of images)")
    found: list[str] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            found += glob.glob(os.path.join(glob.escape(os.fspath(path)), "**", "*.*"), recursive=True)
        elif path.is_file():
            try:
                with open(path, encoding="utf-8-sig") as fh:
                    lines = [line.strip() for line in fh.read().strip().splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as err:
                raise DatasetFormatError(path, f"cannot be read as a list of image paths ({err})") from None
            folder = os.fspath(path.parent) + os.sep
            found += [folder + line[2:] if line.startswith("./") else line for line in lines]
        else:
            raise DatasetFormatError(path, "does not exist (expected an image folder or a .txt list of images)")
    files = sorted(f for f in found if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    if not files:
        where = entries[0] if len(entries) == 1 else ", ".join(os.fspath(e) for e in entries)
        raise DatasetFormatError(where, f"holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [Path(f) for f in files]


def read_yolo_files(
    image_files: Sequence,
    *,
    class_names: Sequence[str],
    num_vertices: int = 8,
    tolerance: float = 1e-3,
    on_bad_image: str = "error",
    invalid_boxes: str = "error",
    verify_images: bool = True,
    cache=None,
    obb: bool = False,
) -> RecordSet:
    """Read YOLO labels for a list of images (:func:`yolo_image_files`), each image's label file found as
    ultralytics finds it (:func:`yolo_label_path`; a missing one means an image without objects).

    Args:
      image_files: the image paths, in ``image_id`` order.
      class_names, num_vertices, tolerance, on_bad_image, invalid_boxes, verify_images, cache: as
        :func:`read_yolo` (the cache is keyed on the list and checks the size and mtime of every image and
        label file).
      obb: the label files are ultralytics OBB files (:func:`read_yolo_obb`).

    Returns:
      A :class:`RecordSet`.
    """
    files = [Path(f) for f in image_files]
    if not files:
        raise DatasetFormatError("image_files", "is empty")
    pairs = [(f, yolo_label_path(f)) for f in files]
    screen = _Screen(on_bad_image, invalid_boxes, verify_images)
    class_names = tuple(class_names)
    entry = None
    cache_dir = resolve_cache_dir(cache)
    if cache_dir is not None:
        listing = hashlib.sha256("\n".join(os.path.abspath(f) for f in files).encode("utf-8", "surrogateescape"))
        args = dict(class_names=list(class_names), num_vertices=num_vertices, tolerance=tolerance,
                    on_bad_image=on_bad_image, invalid_boxes=invalid_boxes, verify_images=verify_images,
                    files=listing.hexdigest(), obb=obb)
        entry = CacheEntry(cache_dir, "yolo", files[0].parent.name, {"first_image": files[0]}, args)
        fingerprint = stat_digest(p for pair in pairs for p in pair)  # taken before reading, as read_yolo
        hit = entry.load(lambda meta: fingerprint)
        if hit is not None:
            return hit
    records = _read_yolo_labels(pairs, class_names, screen, num_vertices, tolerance, obb)
    result = screen.record_set(records, class_names)
    if entry is not None:
        entry.save(result, fingerprint)
    return result
