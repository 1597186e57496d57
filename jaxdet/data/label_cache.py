"""A cache of parsed labels, so that a large YOLO folder or COCO JSON starts in seconds the second time.

Reading a folder checks every image (:func:`~jaxdet.data.images.verify_image`) and parses and validates every
object (polygon fitting included): minutes for 100,000 images. :func:`~jaxdet.data.readers.read_yolo` and
:func:`~jaxdet.data.readers.read_coco` with ``cache=`` keep what such a read returned (the
:class:`~jaxdet.data.records.RecordSet`: records, the displayed size of every image, the skipped images with
their reasons and the dropped objects with their messages) in one file, and a later read with the same
arguments of unchanged files returns it without opening an image or a label file. ultralytics does the same
with its ``labels.cache`` (``YOLODataset.cache_labels`` / ``get_labels``).

Where it lives. ultralytics writes ``labels.cache`` beside the label folder; jaxdet never writes into a
dataset, so the files go to a cache directory the user controls: ``cache=True`` uses
:func:`default_cache_dir` (``$JAXDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxdet``, else ``~/.cache/jaxdet``;
the files are under its ``labels/``), and ``cache="<dir>"`` uses ``<dir>`` itself. There is one file per
dataset location and set of reader arguments, named ``<format>-<folder or JSON name>-<hash>.npz`` (the hash
of the location as given and absolute, and of the arguments); deleting the directory is always safe.

When it is used. The file is used only when all of these equal what it recorded, else the folder is read
afresh and the file replaced:

* the cache format (:data:`CACHE_VERSION`) and a hash of the source of the modules that compute the result
  (readers, geometry, image checks, errors), so that a changed jaxdet never returns an old result;
* the reader's arguments that change its result (``class_names``, ``num_vertices``, ``tolerance``,
  ``on_bad_image``, ``invalid_boxes``, ``verify_images``, COCO's ``include_crowd``) and the paths, as given
  and absolute;
* the files: name, size and modification time (``st_mtime_ns``, following symbolic links) of every image
  and every ``*.txt`` of a YOLO folder (one ``os.scandir`` per folder, so an added, removed, replaced or
  touched image or label file is seen), or of the COCO JSON and every image it names (a missing one too).

A file's content is not read to key it (as in ultralytics' ``get_hash``): an edit that keeps both the size and
the modification time, e.g. a copy with ``cp -p`` of a file of the same size, is not seen; touch it.

Failures. Only a read that returns is cached: a read that raises (a malformed label under any option, a bad
image under ``on_bad_image="error"``, an invalid object under ``invalid_boxes="error"``) writes nothing, and
the next read raises the same error afresh. A cache file that cannot be read (truncated, not an ``.npz``, an
unexpected layout) is ignored with one warning and rewritten; a cache directory that cannot be written gives
one warning and the read goes on without a cache.

Format: ``numpy.savez`` (uncompressed) read with ``allow_pickle=False``: the objects of all images concatenated
(``boxes`` float32 ``[T, 4]``, ``classes`` int32 ``[T]``, ``polygons`` float32 ``[T, K, 2]``, ``has_polygon``
bool ``[T]``; with rotated boxes also ``corners`` float32 ``[T, 4, 2]``, flagged in ``meta``), per image
``counts``, ``image_id``, ``width``, ``height``, and a UTF-8 JSON ``meta`` (key,
fingerprint, class names, image paths, skipped, dropped). It is written to a temporary file in the same
directory and moved into place with ``os.replace``, so a reader never sees half a file. The records of a
cached read hold views into these arrays, equal in dtype, shape and every bit to those of a fresh read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from jaxdet import __version__, _checks
from jaxdet.data.records import DetectionRecord, RecordSet

__all__ = ["CACHE_VERSION", "default_cache_dir", "resolve_cache_dir"]

#: Bumped when the file layout or the meaning of a cached field changes.
CACHE_VERSION = 1
_SUBDIR = "labels"
#: Modules whose source decides what a reader returns (hashed into the key).
_CODE_MODULES = ("readers", "geometry", "images", "errors", "label_cache")


def default_cache_dir() -> Path:
    """The per-user directory of jaxdet's caches: ``$JAXDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxdet``, else
    ``~/.cache/jaxdet``. Label caches go to its ``labels/`` subdirectory."""
    root = os.environ.get("JAXDET_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "jaxdet"


def resolve_cache_dir(cache) -> Path | None:
    """The directory that the readers' ``cache`` argument names, or None for no cache.

    Args:
      cache: ``None`` or ``False``: no cache; ``True``: ``default_cache_dir() / "labels"``; a path (str or
        ``os.PathLike``, ``~`` expanded): that directory (created when first written).
    """
    if cache is None or cache is False:
        return None
    if cache is True:
        return default_cache_dir() / _SUBDIR
    if isinstance(cache, (str, os.PathLike)) and os.fspath(cache):
        return Path(os.path.expanduser(os.fspath(cache)))
    raise _checks.fail_value("cache", "None, True, False or a directory path", cache)


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    h = hashlib.sha256()
    for name in _CODE_MODULES:
        path = Path(__file__).with_name(f"{name}.py")
        try:
            h.update(path.read_bytes())
        except OSError:  # no sources shipped: the package version stands in
            h.update(f"{name}:{__version__}".encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ fingerprints
def file_stat(path) -> tuple[int, int]:
    """``(size, st_mtime_ns)`` following symbolic links; ``(-1, -1)`` for a missing or unreadable file."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def listing_digest(folders: Iterable[tuple[os.PathLike | str, tuple[str, ...]]]) -> str:
    """A hash of the names, sizes and mtimes of the files in each folder whose lower-case name ends with one of
    the suffixes (one ``os.scandir`` per folder; a superset of the files a reader takes, e.g. a hidden ``.jpg``).

    Args:
      folders: ``(folder, suffixes)`` pairs, e.g. ``[(image_dir, IMAGE_EXTENSIONS), (label_dir, (".txt",))]``.
    """
    h = hashlib.sha256()
    for folder, suffixes in folders:
        suffixes = tuple(suffixes)
        rows = []
        append = rows.append
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    name = entry.name
                    if not name.lower().endswith(suffixes):  # a superset of the files the readers take
                        continue
                    try:
                        st = entry.stat()  # follows symbolic links, as the readers do
                    except OSError:
                        append((name, -1, -1))
                    else:
                        append((name, st.st_size, st.st_mtime_ns))
        except OSError as err:  # e.g. no label folder: recorded, so that its appearance is seen
            append(("", type(err).__name__, 0))
        rows.sort()
        h.update(repr((os.path.abspath(folder), suffixes, rows)).encode())
    return h.hexdigest()


def stat_digest(paths: Iterable[os.PathLike | str]) -> str:
    """A hash of the size and mtime of each file, in the given order (a missing file counts as ``-1, -1``)."""
    h = hashlib.sha256()
    rows = [f"{os.fspath(p)}\0{s}\0{m}" for p in paths for s, m in (file_stat(p),)]
    h.update("\n".join(rows).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- the entry
class CacheEntry:
    """The cache file of one read: where it is, what key it must carry, and how to load and save it.

    Args:
      cache_dir: the directory (from :func:`resolve_cache_dir`).
      fmt: ``"yolo"`` or ``"coco"``.
      name: a readable part of the file name (the image folder's or JSON file's name).
      paths: the paths of the read as given (``{role: path}``); their absolute forms are keyed too.
      args: the reader arguments that change its result (JSON-serialisable).
    """

    def __init__(self, cache_dir: Path, fmt: str, name: str, paths: dict, args: dict):
        key = {
            "format": fmt,
            "paths": {k: (None if p is None else [os.fspath(p), os.path.abspath(p)]) for k, p in paths.items()},
            "args": args,
        }
        self.key = json.dumps(key, sort_keys=True, default=repr)  # an odd argument type is a miss, not an error
        digest = hashlib.sha256(self.key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "data"
        self.path = Path(cache_dir) / f"{fmt}-{safe}-{digest}.npz"

    # -- load
    def load(self, fingerprint: Callable[[dict], str]) -> RecordSet | None:
        """The cached :class:`RecordSet`, or None when there is no valid file for the current files.

        Args:
          fingerprint: maps the file's ``meta`` dict to the digest of the files as they are now
            (:func:`listing_digest`, :func:`stat_digest`).
        """
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode("utf-8", "surrogateescape"))
                if (
                    meta.get("version") != CACHE_VERSION
                    or meta.get("code") != _code_hash()
                    or meta.get("key") != self.key
                ):
                    return None
                if fingerprint(meta) != meta["fingerprint"]:
                    return None
                keys = ("image_id", "width", "height", "counts", "boxes", "classes", "polygons", "has_polygon")
                arrays = {k: z[k] for k in keys + (("corners",) if meta.get("corners") else ())}
            return _records_from(meta, arrays)
        except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile) as err:
            warnings.warn(
                f"jaxdet: ignoring the unreadable label cache {self.path} ({type(err).__name__}: {err}); "
                "reading the annotations afresh and rewriting it",
                stacklevel=3,
            )
            return None

    # -- save
    def save(self, records: RecordSet, fingerprint: str) -> None:
        """Write ``records`` under ``fingerprint`` (atomically); a directory that cannot be written warns."""
        recs = records.records
        meta = {
            "version": CACHE_VERSION,
            "code": _code_hash(),
            "key": self.key,
            "fingerprint": fingerprint,
            "class_names": list(records.class_names),
            "image_paths": [r.image_path for r in recs],
            "skipped": list(records.skipped.items()),
            "dropped": [[p, list(m)] for p, m in records.dropped.items()],
            "corners": bool(recs) and recs[0].corners is not None,  # rotated boxes (oriented-box readers)
        }
        k = recs[0].polygons.shape[1] if recs else 0
        arrays = {
            "meta": np.frombuffer(json.dumps(meta).encode("utf-8", "surrogateescape"), np.uint8),
            "image_id": np.asarray([r.image_id for r in recs], np.int64),
            "width": np.asarray([r.width for r in recs], np.int64),
            "height": np.asarray([r.height for r in recs], np.int64),
            "counts": np.asarray([len(r.classes) for r in recs], np.int64),
            "boxes": _concat([r.boxes for r in recs], (0, 4), np.float32),
            "classes": _concat([r.classes for r in recs], (0,), np.int32),
            "polygons": _concat([r.polygons for r in recs], (0, k, 2), np.float32),
            "has_polygon": _concat([r.has_polygon for r in recs], (0,), bool),
        }
        if meta["corners"]:
            arrays["corners"] = _concat([r.corners for r in recs], (0, 4, 2), np.float32)
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.stem + ".", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, self.path)
            tmp = None
        except OSError as err:
            warnings.warn(
                f"jaxdet: cannot write the label cache {self.path} ({type(err).__name__}: {err}); "
                "reading without it",
                stacklevel=3,
            )
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _concat(parts, empty_shape, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(empty_shape, dtype)


def _records_from(meta: dict, a: dict) -> RecordSet:
    counts = a["counts"]
    n = len(counts)
    paths = meta["image_paths"]
    if not (len(paths) == len(a["image_id"]) == len(a["width"]) == len(a["height"]) == n):
        raise ValueError("per-image arrays disagree in length")
    total = int(counts.sum())
    corners = a.get("corners")
    if not (len(a["boxes"]) == len(a["classes"]) == len(a["polygons"]) == len(a["has_polygon"]) == total) or (
        corners is not None and len(corners) != total
    ):
        raise ValueError("per-object arrays disagree with the counts")
    bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
    boxes, classes, polygons, has_polygon = a["boxes"], a["classes"], a["polygons"], a["has_polygon"]
    records = tuple(
        DetectionRecord(
            image_id=image_id,
            image_path=path,
            width=width,
            height=height,
            boxes=boxes[lo:hi],
            classes=classes[lo:hi],
            polygons=polygons[lo:hi],
            has_polygon=has_polygon[lo:hi],
            corners=None if corners is None else corners[lo:hi],
        )
        for image_id, path, width, height, lo, hi in zip(
            a["image_id"].tolist(), paths, a["width"].tolist(), a["height"].tolist(), bounds[:-1], bounds[1:]
        )
    )
    return RecordSet(
        records=records,
        class_names=tuple(meta["class_names"]),
        skipped={p: r for p, r in meta["skipped"]},
        dropped={p: tuple(m) for p, m in meta["dropped"]},
    )
