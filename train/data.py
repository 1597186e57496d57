"""``config.data`` → the training and validation sources, the augmentation and the class names.

:func:`prepare_data` turns ``config.data`` into :class:`Data` (sources, augmentation, class names) and the
config that records them. For ``data.name`` "coco" | "voc" | "yolo" (a user's annotated folder)
:func:`resolve_data_config` checks the ``data.*_path`` fields and reads the annotations (``python -m train``
calls it before training and prints a :class:`DataConfigError` naming the field). See ``train/README.md``.
The batches are drawn from the sources by :mod:`train.batches`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from jaxdet import _checks
from jaxdet.data import (
    INVALID_BOXES,
    ON_BAD_IMAGE,
    DatasetFormatError,
    DetectionSource,
    SyntheticShapes,
    make_augment,
    read_coco,
    read_voc,
    read_yolo,
    read_yolo_files,
    voc_class_names,
    yolo_image_files,
    yolo_label_path,
)
from jaxdet.data.image_cache import CACHE_MODES
from jaxdet.data.readers import IMAGE_EXTENSIONS
from jaxdet.data.synthetic import DENSE_SHAPES, SHAPE_CLASSES
from jaxdet.data.yolo_augment import YoloAugment, YoloRecipe
from jaxdet.models import HEADS

# ------------------------------------------------------------------------------------------------------------
# Annotated folders: COCO JSON / Pascal VOC XML / YOLO txt (``config.data.name`` = "coco" | "voc" | "yolo").
#
# Fields of ``config.data`` (defaults in ``configs/yolov1_shapes.py``; all ignored for ``name="shapes"``):
#   train_path, val_path        annotations: COCO JSON file | VOC dir of *.xml or ImageSets .txt | YOLO labels dir
#   train_images, val_images    image folders ("" = the format's default location, below)
#   class_names                 class order; () = from the data (COCO categories by id, the sorted VOC <name>s
#                               of both splits, YOLO classes.txt / obj.names)
#   on_bad_image                "error" | "skip": a missing, unreadable or corrupt image file (found when the
#                               annotations are read, jaxdet.data.verify_image) stops the run naming the
#                               files, or is left out and counted; a missing file is always an error
#                               (usually a wrong data.*_images)
#   invalid_boxes               "error" | "drop": objects with zero area or outside the image (rules in
#                               jaxdet.data.readers) stop the run, counted per file and the first named by
#                               file and record, or are dropped
#   cache                       "none" | "ram" | "disk": decoded images at the training size (jaxdet.data.image_cache).
#                               none: the recently used ones; ram: all, in shared memory (size checked against the
#                               available memory first); disk: one .npy file an image under data.cache_dir
#   cache_dir                   cache="disk": the folder ("" = <workdir>/image_cache)
#   mosaic_window               yolo recipe on a folder: mosaic partners come from the W consecutive positions of
#                               the shuffled stream holding the image (about one decode per image without a RAM
#                               cache); 0 = from the whole split (the synthetic splits always are)
#   label_cache                 True | False: COCO / YOLO labels parsed and images checked once are kept outside
#                               the dataset and reused while no file (name, size, mtime) and no reader option
#                               changed (jaxdet.data.label_cache); default True
#   label_cache_dir             where: "" = $JAXDET_CACHE_DIR, else $XDG_CACHE_HOME/jaxdet, else ~/.cache/jaxdet
#                               (files under its labels/); or a directory of your choice
# Skipped images and dropped objects are counted in the ``data:`` line and listed per file in
# ``<workdir>/data_report.json`` (:func:`data_report`).
# The class count is taken from the data: :func:`prepare_data` sets ``model.num_classes`` to
# ``len(class_names)`` in the config it returns. Images are letterboxed to ``data.image_size`` (aspect ratio kept,
# grey 114 padding; ``data.resize="stretch"`` resizes without keeping it), see jaxdet.data.letterbox.
# ------------------------------------------------------------------------------------------------------------

# An ultralytics dataset file (``config.data.yaml``, with ``data.name="yolo"``): ``path`` (the root; default the
# file's folder), ``train`` / ``val`` (or ``validation``) / ``test``: an image folder (searched recursively), a .txt
# list of images, or a list of those, relative to ``path``; ``names`` (a list, or a dict {index: name}) or ``nc``.
# Labels are found as ultralytics finds them (the last ``images`` directory of an image's path -> ``labels``).
# It replaces data.train_images / train_path / val_images / val_path / class_names, which must stay empty.
# One difference from ultralytics: a relative ``path`` that exists neither from the working directory nor from the
# file's folder is an error here; ultralytics would look under its ``datasets_dir`` setting (and download).

DATASET_NAMES = ("shapes", "dense_shapes", "coco", "voc", "yolo")
SYNTHETIC_NAMES = ("shapes", "dense_shapes")
FILE_FORMATS = ("coco", "voc", "yolo")
CLASS_FILES = ("classes.txt", "obj.names", "classes.names")  # YOLO class-name files (one name a line)


class DataConfigError(ValueError):
    """A problem with ``config.data`` (missing/wrong path, class count, ``max_objects``); the message names
    the field. ``python -m train`` prints it without a traceback and exits with status 2."""


_RECORD_CACHE: dict[tuple, Any] = {}


def _field(config, name: str, default=None):
    return config.data.get(name, default)


def _path_field(config, name: str) -> str:
    value = _field(config, name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataConfigError(f"data.{name} must be a path string, got {value!r}")
    return os.path.expanduser(value.strip())


class DataYaml(NamedTuple):
    """An ultralytics dataset file, resolved (:func:`read_data_yaml`).

    Attributes:
      file: the file's path; root: its ``path`` resolved.
      splits: ``{"train": [...], "val": [...], "test": [...]}``: each split's entries as absolute paths (only the
        splits the file names).
      class_names: in index order.
    """

    file: str
    root: str
    splits: dict[str, list[str]]
    class_names: tuple[str, ...]


_YAML_REPLACES = ("train_images", "train_path", "val_images", "val_path", "class_names")


def _yaml_class_names(file: str, data: dict) -> tuple[str, ...]:
    names, nc = data.get("names"), data.get("nc")
    if nc is not None:
        try:
            if float(nc) != int(float(nc)) or isinstance(nc, bool):
                raise ValueError
            nc = int(float(nc))
        except (TypeError, ValueError):
            raise DataConfigError(f"data.yaml: {file}: 'nc: {nc}' must be an integer") from None
    if names is None:
        if nc is None:
            raise DataConfigError(f"data.yaml: {file}: needs 'names' (a list or a dict index: name) or 'nc'")
        return tuple(f"class_{i}" for i in range(nc))
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise DataConfigError(f"data.yaml: {file}: 'names' must be a list or a dict, not {type(names).__name__}")
    try:
        by_index = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        raise DataConfigError(f"data.yaml: {file}: the keys of 'names' must be class indices, got "
                              f"{list(names)[:5]}") from None
    if not by_index or sorted(by_index) != list(range(len(by_index))):
        raise DataConfigError(f"data.yaml: {file}: 'names' must number the classes 0..{len(by_index) - 1}, got "
                              f"indices {sorted(by_index)[:10]}")
    if nc is not None and nc != len(by_index):
        raise DataConfigError(f"data.yaml: {file}: 'names' has {len(by_index)} entries but 'nc' is {nc}")
    return tuple(by_index[i] for i in range(len(by_index)))


def read_data_yaml(file: str) -> DataYaml:
    """Reads an ultralytics dataset file and resolves its paths as ultralytics' ``check_det_dataset`` does
    (module comment above).

    Raises:
      DataConfigError: naming ``data.yaml``, the file and the problem: a missing file, YAML that does not parse
        to a mapping, no ``train`` or ``val``, an entry of the wrong type, bad ``names`` / ``nc``, a root or
        split entry that does not exist.
    """
    import yaml  # noqa: PLC0415 - PyYAML is needed only by runs that read a data.yaml

    if not os.path.isfile(file):
        raise DataConfigError(f"data.yaml: {file!r} does not exist or is not a file")
    try:
        with open(file, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as err:
        raise DataConfigError(f"data.yaml: {file}: cannot be read as YAML ({err})") from None
    if not isinstance(data, dict):
        raise DataConfigError(f"data.yaml: {file}: expected a mapping with train, val and names; got "
                              f"{type(data).__name__}")
    if "val" not in data and "validation" in data:
        data["val"] = data.pop("validation")
    for key in ("train", "val"):
        if not data.get(key):
            raise DataConfigError(f"data.yaml: {file}: the '{key}:' entry is missing (train and val are required)")
    class_names = _yaml_class_names(file, data)
    here = pathlib.Path(file).resolve().parent
    root = pathlib.Path(str(data.get("path") or here))
    if not root.exists() and not root.is_absolute():
        root = here / root
    if not root.exists():
        raise DataConfigError(
            f"data.yaml: {file}: 'path: {data.get('path')}' does not exist (from the working directory or from the "
            "file's folder); give an absolute path (ultralytics would look under its datasets_dir setting)"
        )
    splits: dict[str, list[str]] = {}
    for key in ("train", "val", "test"):
        value = data.get(key)
        if not value:
            continue
        if isinstance(value, str):
            entry = (root / value).resolve()
            if not entry.exists() and value.startswith("../"):
                entry = (root / value[3:]).resolve()
            entries = [entry]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            entries = [(root / v).resolve() for v in value]
        else:
            raise DataConfigError(f"data.yaml: {file}: '{key}:' must be a path or a list of paths, got {value!r}")
        missing = [str(e) for e in entries if not e.exists()]
        if missing:
            raise DataConfigError(f"data.yaml: {file}: the {key} entry {missing[0]!r} does not exist (resolved "
                                  f"from path {str(root)!r})")
        splits[key] = [str(e) for e in entries]
    return DataYaml(os.path.abspath(file), str(root), splits, class_names)


def _yaml_paths(config, split: str) -> dict[str, Any]:
    """A split of ``data.yaml``: its image files (:func:`jaxdet.data.yolo_image_files`) and the file's names."""
    for name in _YAML_REPLACES:
        if _field(config, name, "" if name != "class_names" else ()):
            raise DataConfigError(
                f"data.yaml and data.{name} are both set; the dataset file gives the folders and the class names "
                f"(data.{', data.'.join(_YAML_REPLACES)} stay empty)"
            )
    spec = read_data_yaml(_path_field(config, "yaml"))
    try:
        files = yolo_image_files(spec.splits[split])
    except DatasetFormatError as err:
        raise DataConfigError(f"data.yaml: {spec.file}: {split}: {err}") from None
    where = spec.splits[split][0] if len(spec.splits[split]) == 1 else f"{len(spec.splits[split])} entries"
    return {"fmt": "yolo", "ann": "", "images": where, "xml_files": None, "files": files,
            "class_names": spec.class_names, "yaml": spec.file}


def _split_paths(config, split: str) -> dict[str, Any]:
    """Checks and resolves the paths of one split: ``{"fmt", "ann", "images", "xml_files"}`` (a ``data.yaml``
    split also has ``"files"``, its images, ``"class_names"`` and ``"yaml"``)."""
    fmt = config.data.name
    if fmt == "yolo" and _path_field(config, "yaml"):
        return _yaml_paths(config, split)
    if _path_field(config, "yaml"):
        raise DataConfigError(f"data.yaml is read with data.name='yolo'; this run's data.name is {fmt!r}")
    pf, imf = f"{split}_path", f"{split}_images"
    ann, images = _path_field(config, pf), _path_field(config, imf)
    where = f"(data.name={fmt!r})"

    def need_dir(path, field, what):
        if not os.path.exists(path):
            raise DataConfigError(f"data.{field}: {what} {path!r} does not exist {where}")
        if not os.path.isdir(path):
            raise DataConfigError(f"data.{field}: {what} {path!r} is not a directory {where}")

    out: dict[str, Any] = {"fmt": fmt, "ann": ann, "images": images or None, "xml_files": None}
    if fmt == "coco":
        if not ann:
            raise DataConfigError(
                f"data.{pf} is empty: set it to the COCO annotation JSON of the {split} split, e.g. "
                f"--config.data.{pf}=/data/annotations/instances_{split}.json"
            )
        if not os.path.exists(ann):
            raise DataConfigError(f"data.{pf}: the COCO annotation file {ann!r} does not exist")
        if os.path.isdir(ann):
            raise DataConfigError(f"data.{pf}: {ann!r} is a directory; for data.name='coco' give the JSON file")
        if images:
            need_dir(images, imf, "the image folder")
        return out
    if fmt == "voc":
        if not ann:
            raise DataConfigError(
                f"data.{pf} is empty: set it to the folder of VOC XML files (e.g. VOC2007/Annotations) or to "
                f"an ImageSets list (e.g. VOC2007/ImageSets/Main/{split}.txt)"
            )
        if not os.path.exists(ann):
            raise DataConfigError(f"data.{pf}: {ann!r} does not exist {where}")
        if os.path.isdir(ann):
            xml_files = sorted(pathlib.Path(ann).glob("*.xml"))
            if not xml_files:
                raise DataConfigError(f"data.{pf}: the folder {ann!r} holds no *.xml annotation files")
        else:
            # Pascal VOC ImageSets/Main/<split>.txt: one image id a line -> <root>/Annotations/<id>.xml
            root = pathlib.Path(ann).resolve().parent.parent.parent
            with open(ann) as fh:
                ids = [line.split()[0] for line in fh if line.strip()]
            if not ids:
                raise DataConfigError(f"data.{pf}: the image list {ann!r} is empty")
            xml_files = [root / "Annotations" / f"{i}.xml" for i in ids]
            missing = [p for p in xml_files if not p.is_file()]
            if missing:
                raise DataConfigError(
                    f"data.{pf}: {len(missing)} of the {len(ids)} ids listed in {ann!r} have no XML file, "
                    f"e.g. {str(missing[0])!r} (an ImageSets list is read relative to <VOC root>/Annotations)"
                )
        out["xml_files"] = xml_files
        if images:
            need_dir(images, imf, "the image folder")
        return out
    # yolo: the reader is keyed on the image folder; labels default to images/ -> labels/.
    if not ann and not images:
        raise DataConfigError(
            f"data.{imf} and data.{pf} are both empty: for data.name='yolo' set data.{imf} to the image "
            f"folder (e.g. /data/images/{split}) and optionally data.{pf} to its label folder "
            f"(default: the image folder with its last 'images' component replaced by 'labels')"
        )
    if ann:
        need_dir(ann, pf, "the YOLO label folder")
    if not images:
        parts = list(pathlib.Path(ann).parts)
        if "labels" not in parts:
            raise DataConfigError(
                f"data.{imf} is empty and cannot be derived from data.{pf}={ann!r} (no 'labels' component to "
                f"replace by 'images'); set data.{imf} to the image folder"
            )
        idx = len(parts) - 1 - parts[::-1].index("labels")
        images = str(pathlib.Path(*parts[:idx], "images", *parts[idx + 1 :]))
        if not os.path.isdir(images):
            raise DataConfigError(
                f"data.{imf} is empty and the folder derived from data.{pf}, {images!r}, does not exist; "
                f"set data.{imf} to the image folder"
            )
        out["images"] = images
    else:
        need_dir(images, imf, "the image folder")
    if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in pathlib.Path(out["images"]).iterdir()):
        raise DataConfigError(
            f"data.{imf}: the folder {out['images']!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return out


def _yolo_label_dir(paths) -> str:
    """The label folder ``read_yolo`` uses for these paths (its own default when ``ann`` is empty)."""
    if paths["ann"]:
        return paths["ann"]
    parts = list(pathlib.Path(paths["images"]).parts)
    if "images" in parts:
        idx = len(parts) - 1 - parts[::-1].index("images")
        cand = pathlib.Path(*parts[:idx], "labels", *parts[idx + 1 :])
        if cand.is_dir():
            return str(cand)
    return paths["images"]


def _default_class_names(config, paths, val_paths) -> tuple[str, ...] | None:
    """Class names when ``data.class_names`` is empty (None: let the reader decide, COCO categories)."""
    fmt = paths["fmt"]
    if fmt == "coco":
        return None
    if "class_names" in paths:  # data.yaml
        return paths["class_names"]
    if fmt == "voc":
        try:
            names = voc_class_names(paths["xml_files"], val_paths["xml_files"])
        except DatasetFormatError as err:
            raise DataConfigError(f"data.train_path: {err}") from None
        if not names:
            raise DataConfigError(
                "data.class_names is empty and the XMLs name no objects; set data.class_names"
            )
        return names
    label_dir = pathlib.Path(_yolo_label_dir(paths))
    for cand in [label_dir / f for f in CLASS_FILES] + [label_dir.parent / f for f in CLASS_FILES]:
        if cand.is_file():
            with open(cand) as fh:
                names = tuple(line.strip() for line in fh if line.strip())
            if names:
                return names
    raise DataConfigError(
        "data.class_names is empty and no class-name file (" + ", ".join(CLASS_FILES) + f") was found in "
        f"{str(label_dir)!r} or its parent: YOLO labels hold only class indices, so set e.g. "
        "--config.data.class_names='(\"cat\", \"dog\")' (index 0 first)"
    )


def _read_records(config, paths, class_names, split: str):
    """The split's :class:`jaxdet.data.RecordSet`, read with bad images skipped and invalid objects dropped
    (``skipped`` / ``dropped`` list them): :func:`_check_records` applies ``data.on_bad_image`` and
    ``data.invalid_boxes``, so an error can count and name every bad file at once."""
    k = int(config.data.num_vertices)
    names_key = None if class_names is None else tuple(class_names)
    key = (paths["fmt"], paths["ann"], paths["images"], names_key, k)
    if key in _RECORD_CACHE:
        return _RECORD_CACHE[key]
    options = dict(class_names=class_names, num_vertices=k, on_bad_image="skip", invalid_boxes="drop")
    label_cache = _field(config, "label_cache", True)
    if not isinstance(label_cache, bool):
        raise DataConfigError(f"data.label_cache must be True or False, got {label_cache!r}")
    label_cache = label_cache and (_path_field(config, "label_cache_dir") or True)
    try:
        if paths["fmt"] == "coco":
            records = read_coco(paths["ann"], image_dir=paths["images"], cache=label_cache, **options)
        elif paths["fmt"] == "voc":
            records = read_voc(paths["xml_files"], image_dir=paths["images"], **options)
        elif "files" in paths:  # data.yaml
            records = read_yolo_files(paths["files"], cache=label_cache, **options)
        else:
            records = read_yolo(paths["images"], label_dir=paths["ann"] or None, cache=label_cache, **options)
    except DatasetFormatError as err:
        raise DataConfigError(f"data.{split}_path: {err}") from None
    _RECORD_CACHE[key] = records
    _RECORD_CACHE[key[:3] + (tuple(records.class_names), k)] = records  # the same read with explicit names
    return records


def _check_objects(config, records, split: str) -> None:
    """Applies ``data.invalid_boxes="error"`` to the objects the reader dropped: their count per file."""
    dropped = records.dropped
    if not dropped or _field(config, "invalid_boxes", "error") != "error":
        return
    counts = ", ".join(f"{p}: {len(m)}" for p, m in list(dropped.items())[:5])
    more = f", and {len(dropped) - 5} more files" if len(dropped) > 5 else ""
    first = next(iter(dropped.values()))[0]
    raise DataConfigError(
        f"data.{split}_path: {records.num_dropped} invalid object(s) in {len(dropped)} image(s) ({counts}{more}); "
        f"the first: {first}. Set --config.data.invalid_boxes=drop to train without them (counted and listed)"
    )


def _check_images(config, records, paths, split: str) -> None:
    """Applies ``data.on_bad_image`` to the images the reader skipped (a missing file is always an error)."""
    skipped = records.skipped
    total = len(records) + len(skipped)
    missing = [p for p in skipped if not os.path.exists(p)]
    if missing:
        raise DataConfigError(
            f"data.{split}_images: {len(missing)} of the {total} images of data.{split}_path are missing, "
            f"e.g. {missing[0]!r}; set data.{split}_images to the folder that holds them"
        )
    if skipped and _field(config, "on_bad_image", "error") == "error":
        listed = "; ".join(f"{p}: {reason}" for p, reason in list(skipped.items())[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise DataConfigError(
            f"data.{split}_images: {len(skipped)} of the {total} images cannot be read: {listed}{more}. "
            "Set --config.data.on_bad_image=skip to train without them (they are counted and listed)"
        )
    if not records and skipped:
        raise DataConfigError(
            f"data.{split}_images: all {total} images of the {split} split are unreadable, e.g. "
            f"{next(iter(skipped.items()))}"
        )


def _check_records(config, records, paths, split: str) -> None:
    fmt = paths["fmt"]
    _check_images(config, records, paths, split)
    _check_objects(config, records, split)
    if len(records) == 0:
        raise DataConfigError(f"data.{split}_path: the {split} split {paths['ann'] or paths['images']!r} has no images")
    if "files" in paths:  # data.yaml: labels beside images/ as ultralytics finds them
        if not any(yolo_label_path(r.image_path).is_file() for r in records):
            raise DataConfigError(
                f"data.yaml: {paths['yaml']}: none of the {len(records)} {split} images has a label file; e.g. "
                f"{records[0].image_path!r} -> {str(yolo_label_path(records[0].image_path))!r} (the last 'images' "
                "directory of an image's path becomes 'labels')"
            )
    elif fmt == "yolo":
        label_dir = pathlib.Path(_yolo_label_dir(paths))
        stems = (os.path.splitext(os.path.basename(r.image_path))[0] for r in records)  # lazy: stops at a hit
        if not any(os.path.isfile(label_dir / f"{s}.txt") for s in stems):
            field = f"data.{split}_path" if paths["ann"] else f"data.{split}_path (derived from data.{split}_images)"
            raise DataConfigError(
                f"{field}: none of the {len(records)} images in {paths['images']!r} has a label file "
                f"(<stem>.txt) in {str(label_dir)!r}"
            )


def resolve_data_config(config) -> Any:
    """Checks ``config.data`` and, for a COCO/VOC/YOLO folder, reads both splits (the config is not changed).

    For ``data.name="shapes" | "dense_shapes"`` nothing is read. For ``"coco" | "voc" | "yolo"`` the train and
    validation
    annotations are read (cached per process, so :func:`prepare_data` does not read them again) with one class
    order: ``data.class_names``, or the data's own (COCO categories by id, the sorted VOC ``<name>``s of both
    splits, YOLO ``classes.txt`` / ``obj.names``).

    Returns:
      ``(train_records, val_records)`` (``jaxdet.data.RecordSet``, each with its ``class_names``), or None for
      the synthetic ``"shapes"`` and ``"dense_shapes"``.

    Every image file is checked while reading (``jaxdet.data.verify_image``); ``data.on_bad_image`` and
    ``data.invalid_boxes`` say what happens to a bad file or an invalid object (error or skip / drop; the
    records' ``skipped`` and ``dropped`` list them).

    Raises:
      DataConfigError: naming the field: unknown ``data.name``, an empty or non-existent path, a folder
        without annotations or images, a missing image file, a malformed annotation (the reader's message:
        file and record), an invalid object under ``data.invalid_boxes="error"``, unreadable images under
        ``data.on_bad_image="error"`` (the files and reasons), ``data.max_objects`` not "auto" and below the most
        objects an image (or a 4-image mosaic) can hold (:func:`object_slots`), an unknown ``data.loader``,
        ``data.on_bad_image``, ``data.invalid_boxes`` or ``data.augment``, or a recipe field out of range.
    """
    name = _field(config, "name", "shapes")
    if name not in DATASET_NAMES:
        raise DataConfigError(f"data.name must be one of {', '.join(DATASET_NAMES)}; got {name!r}")
    loader = _field(config, "loader", "grain")
    if loader not in ("grain", "step"):
        raise DataConfigError(f"data.loader must be 'grain' or 'step', got {loader!r}")
    for field, options in (("on_bad_image", ON_BAD_IMAGE), ("invalid_boxes", INVALID_BOXES)):
        try:
            _checks.choice(_field(config, field, options[0]), f"data.{field}", options)
        except ValueError as err:
            raise DataConfigError(str(err)) from None
    augment_recipe(config)  # checks data.augment and the recipe's fields
    _check_cache_fields(config, name)
    if name in SYNTHETIC_NAMES:
        object_slots(config, None)  # an explicit data.max_objects the generator or the mosaic can exceed
        return None
    train_paths = _split_paths(config, "train")
    val_paths = _split_paths(config, "val")
    given = tuple(str(c) for c in (_field(config, "class_names", ()) or ()))
    class_names = given or _default_class_names(config, train_paths, val_paths)
    train = _read_records(config, train_paths, class_names, "train")
    val = _read_records(config, val_paths, tuple(train.class_names), "val")
    if not train.class_names:
        raise DataConfigError(f"data.train_path: {train_paths['ann']!r} defines no classes")
    _check_records(config, train, train_paths, "train")
    _check_records(config, val, val_paths, "val")
    object_slots(config, (train, val))  # an explicit data.max_objects an image or a mosaic can exceed
    return train, val


# ------------------------------------------------------------------------------------------------------------
# ``data.max_objects``: the object slots of each image in a batch (ground truth padded to a fixed size, so that
# one compiled step serves every batch). "auto" (the default) derives it from the data and the augmentation; an
# int is checked against the same bound before anything compiles, so the loader never meets an image it cannot
# pad.
#   bound    the most objects one training or validation image can hold: the densest image's count; with
#            ultralytics' 4-image mosaic (data.augment="yolo", data.mosaic > 0) four times the training split's
#            densest count, since the three partners are drawn with replacement (the densest image can fill
#            every tile, and a zoomed-out affine keeps all four tiles in view)
#   auto     the bound rounded up to a multiple of 32, so that nearby datasets share compiled steps
# ------------------------------------------------------------------------------------------------------------

MAX_OBJECTS_MULTIPLE = 32
MOSAIC_TILES = 4


class ObjectSlots(NamedTuple):
    """``data.max_objects`` resolved.

    Attributes:
      value: object slots per image (``M`` of the padded batches).
      bound: the most objects one image of a batch can hold (``value >= bound``).
      auto: whether ``value`` was derived ("auto") or given.
      why: where ``bound`` comes from, for the ``data:`` line and errors.
    """

    value: int
    bound: int
    auto: bool
    why: str


def _max_objects_setting(config) -> int | None:
    """``data.max_objects`` as an int, or None for "auto" (a command-line number arrives as a string when the
    config's default is "auto")."""
    value = _field(config, "max_objects", "auto")
    if value == "auto":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataConfigError(f"data.max_objects must be 'auto' or an int >= 1 (object slots per image); got {value!r}")
    return value


def _densest(config, records) -> tuple[int, str]:
    """``(count, where)``: the most objects of one image of a split (``records`` None: the synthetic split's
    generator limit)."""
    if records is None:
        if config.data.name == "dense_shapes":
            return int(DENSE_SHAPES["max_objects_per_image"]), "the dense_shapes generator's limit"
        return int(config.data.max_objects_per_image), "data.max_objects_per_image"
    counts = np.asarray([len(r.classes) for r in records])
    if not counts.size:
        return 0, "no image"
    i = int(np.argmax(counts))
    return int(counts[i]), f"image_id {records[i].image_id} ({records[i].image_path})"


def object_slots(config, resolved=None) -> ObjectSlots:
    """``data.max_objects`` resolved against the data and the augmentation (module comment above).

    Args:
      config: the run's config (``data.name``, ``data.augment``, ``data.mosaic``, ``data.max_objects``).
      resolved: :func:`resolve_data_config`'s ``(train_records, val_records)`` for a folder, or None for the
        synthetic splits.

    Raises:
      DataConfigError: ``data.max_objects`` neither "auto" nor a positive int, or smaller than the bound (the
        message gives the number to use).
    """
    train, val = resolved if resolved is not None else (None, None)
    train_max, train_where = _densest(config, train)
    val_max, val_where = _densest(config, val)
    mosaic = augment_recipe(config) == "yolo" and float(_field(config, "mosaic", 1.0)) > 0
    train_bound = MOSAIC_TILES * train_max if mosaic else train_max
    if mosaic:
        why = (f"a {MOSAIC_TILES}-image mosaic (data.augment='yolo') can show {MOSAIC_TILES} x the {train_max} "
               f"objects of {train_where} in the train split")
    else:
        why = f"the {train_max} objects of {train_where} in the train split"
    bound = train_bound
    if val_max > train_bound:
        bound, why = val_max, f"the {val_max} objects of {val_where} in the val split"
    setting = _max_objects_setting(config)
    if setting is None:
        value = MAX_OBJECTS_MULTIPLE * max(1, math.ceil(bound / MAX_OBJECTS_MULTIPLE))
        return ObjectSlots(value, bound, True, why)
    if setting < bound:
        raise DataConfigError(
            f"data.max_objects={setting} is smaller than the {bound} objects one image can hold: {why}. Set "
            f"--config.data.max_objects={bound} (or more), or 'auto'"
        )
    return ObjectSlots(setting, bound, False, why)


def max_objects(config) -> int:
    """The object slots per image of ``config`` (:func:`object_slots`; a folder's annotations are read once per
    process)."""
    return object_slots(config, resolve_data_config(config)).value


def with_object_slots(config, slots: ObjectSlots):
    """A copy of ``config`` with ``data.max_objects`` set to ``slots.value`` (an int, also where the config's
    field holds "auto")."""
    config = config.copy_and_resolve_references()
    with config.unlocked():  # ml_collections keeps a field's type: "auto" (a str) cannot take an int
        del config.data["max_objects"]
        config.data.max_objects = int(slots.value)
    return config


def object_slots_text(slots: ObjectSlots) -> str:
    """The ``data:`` line's account of ``data.max_objects``."""
    if slots.auto:
        return (f"max_objects={slots.value} (auto: {slots.why}; {slots.bound} rounded up to a multiple of "
                f"{MAX_OBJECTS_MULTIPLE})")
    return f"max_objects={slots.value} (given; at most {slots.bound}: {slots.why})"


# ------------------------------------------------------------------------------------------------------------
# Training augmentation (``config.data.augment``): "none" | "flip_scale" | "yolo".
#   flip_scale   scale jitter in data.scale_range, then a horizontal flip with data.hflip_prob (jaxdet.data.augment)
#   yolo         ultralytics' recipe (jaxdet.data.yolo_augment): data.mosaic, data.close_mosaic (steps),
#                data.degrees, data.translate, data.scale, data.shear, data.hsv_h / hsv_s / hsv_v, data.hflip_prob
# True / False (the old boolean field) mean "flip_scale" / "none".
# ------------------------------------------------------------------------------------------------------------

AUGMENT_RECIPES = ("none", "flip_scale", "yolo")


def augment_recipe(config) -> str:
    """The recipe ``data.augment`` names ("none" | "flip_scale" | "yolo"), its fields checked.

    Raises:
      DataConfigError: naming the field.
    """
    value = _field(config, "augment", "flip_scale")
    value = {True: "flip_scale", False: "none", "True": "flip_scale", "False": "none"}.get(value, value)
    if value not in AUGMENT_RECIPES:
        raise DataConfigError(f"data.augment must be one of {', '.join(AUGMENT_RECIPES)}; got {value!r}")
    if value == "yolo":
        _yolo_recipe(config)
    return value


def _yolo_recipe(config):
    close = _field(config, "close_mosaic", 0)
    if isinstance(close, bool) or not isinstance(close, int) or close < 0:
        raise DataConfigError(f"data.close_mosaic must be an int >= 0 (steps without mosaic at the end); got {close!r}")
    steps = int(config.train.steps)
    not_data_fields = ("close_mosaic_at", "fliplr")
    defaults = {f.name: f.default for f in dataclasses.fields(YoloRecipe) if f.name not in not_data_fields}
    values = {k: _field(config, k, v) for k, v in defaults.items()}
    values["fliplr"] = _field(config, "hflip_prob", 0.5)
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DataConfigError(f"data.{'hflip_prob' if k == 'fliplr' else k} must be a number; got {v!r}")
    try:
        return YoloRecipe(**{k: float(v) for k, v in values.items()},
                          close_mosaic_at=max(steps - close, 0) if close else None)
    except ValueError as err:  # the recipe's own check names the field
        msg = str(err)
        field_msg = "hflip_prob" + msg[len("fliplr"):] if msg.startswith("fliplr") else msg
        raise DataConfigError("data." + field_msg) from None


def _check_cache_fields(config, name: str) -> None:
    """Checks ``data.cache``, ``data.cache_dir`` and ``data.mosaic_window`` (module comment above)."""
    cache = _field(config, "cache", "none")
    if cache not in CACHE_MODES:
        raise DataConfigError(f"data.cache must be one of {', '.join(CACHE_MODES)}; got {cache!r}")
    if cache != "none" and name in SYNTHETIC_NAMES:
        raise DataConfigError(
            f"data.cache={cache!r} applies to image folders (data.name coco | voc | yolo); the synthetic "
            f"{name!r} split is generated in memory. Remove the field"
        )
    _path_field(config, "cache_dir")  # a path string
    window = _field(config, "mosaic_window", 16)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise DataConfigError(
            f"data.mosaic_window must be an int >= 0 (0: partners from the whole split); got {window!r}"
        )


def make_train_augment(config, source) -> Callable | None:
    """The training augmentation ``data.augment`` names, over ``source`` (the mosaic draws its partners there:
    from ``data.mosaic_window`` positions of the stream for a folder, from the whole split for synthetic data)."""
    recipe = augment_recipe(config)
    d = config.data
    if recipe == "none":
        return None
    if recipe == "flip_scale":
        return make_augment(hflip_prob=float(d.hflip_prob), scale_range=tuple(d.scale_range) or None)
    window = int(_field(config, "mosaic_window", 16)) if isinstance(source, DetectionSource) else 0
    return YoloAugment(source, _yolo_recipe(config), partner_window=window or None)


@dataclasses.dataclass(frozen=True)
class Data:
    """The data a config describes.

    Attributes:
      train_source, val_source: random-access raw examples (see the module doc).
      augment: ``augment(example, rng) -> example`` for training examples, or None.
      class_names: the class order (``classes`` index into it).
      report: for a COCO/VOC/YOLO folder, :func:`data_report` of its splits (empty for synthetic data).
    """

    train_source: Any
    val_source: Any
    augment: Callable | None
    class_names: tuple[str, ...]
    report: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


DATA_REPORT = "data_report.json"


def data_report(config, train, val) -> dict[str, Any]:
    """What reading a folder left out, per split and per file (JSON-serialisable)::

        {"on_bad_image": ..., "invalid_boxes": ...,
         "train": {"images": N, "skipped_images": {path: reason}, "dropped_objects": {path: [message, ...]},
                   "num_skipped": int, "num_dropped": int},
         "val": {...}}
    """
    out: dict[str, Any] = {
        "on_bad_image": str(_field(config, "on_bad_image", "error")),
        "invalid_boxes": str(_field(config, "invalid_boxes", "error")),
    }
    for split, records in (("train", train), ("val", val)):
        out[split] = {
            "images": len(records),
            "num_skipped": len(records.skipped),
            "num_dropped": records.num_dropped,
            "skipped_images": dict(records.skipped),
            "dropped_objects": {path: list(messages) for path, messages in records.dropped.items()},
        }
    return out


def _report_line(report: dict[str, Any], workdir: str | None) -> str:
    """The ``data:`` line's account of skipped images and dropped objects."""
    parts = []
    for split in ("train", "val"):
        r = report[split]
        files = len(r["dropped_objects"])
        parts.append(
            f"{split} {r['num_skipped']} bad image(s) skipped, {r['num_dropped']} invalid object(s) dropped"
            + (f" in {files} file(s)" if files else "")
        )
    where = f" (per file: {os.path.join(workdir, DATA_REPORT)})" if workdir else ""
    return "; ".join(parts) + where


def head_reads_polygons(config) -> bool:
    """Whether the head of ``config.model.head`` reads the batches' polygons (its ``batch_keys``); the sources
    of a head that does not carry none (``[n, 0, 2]``), and the augmentation skips clipping and resampling them."""
    head = HEADS.get(str(config.model.get("head", "")))
    return head is None or "polygons" in head.batch_keys


def _folder_sources(config, train, val, workdir, *, polygons: bool):
    """The :class:`jaxdet.data.DetectionSource` of each split of a folder, with ``data.cache``.

    Raises:
      DataConfigError: ``data.cache="ram"`` for more than fits in memory (both splits together: the second
        cache is checked with what the first has still to fill), or ``data.cache="disk"`` with neither
        ``data.cache_dir`` nor a workdir.
    """
    d = config.data
    cache = str(_field(config, "cache", "none"))
    common = dict(image_size=int(d.image_size), resize=str(d.get("resize", "letterbox")), cache=cache)
    if cache == "disk":
        folder = _path_field(config, "cache_dir") or (os.path.join(workdir, "image_cache") if workdir else "")
        if not folder:
            raise DataConfigError("data.cache='disk' needs data.cache_dir (a folder for the .npy files) or a workdir")
        common["cache_dir"] = folder
    try:
        return DetectionSource(train, polygons=polygons, **common), DetectionSource(val, **common)
    except MemoryError as err:
        raise DataConfigError(f"data.cache: {err}") from None


def prepare_data(config, workdir: str | None = None) -> tuple[Any, Data]:
    """``(config, data)``: the sources of ``config.data`` and a copy of the config that records them.

    The returned config is ``config`` with ``data.class_names`` and ``model.num_classes`` set to the data's
    class order and ``data.max_objects`` resolved to an int (:func:`object_slots`; the input config is not
    changed), so the run's recorded config tells what was trained.
    Images of a COCO/VOC/YOLO folder are letterboxed to ``data.image_size`` (``data.resize``). For a folder,
    the ``data:`` line printed by process 0 counts the skipped images and dropped objects of each split, and
    with ``workdir`` their per-file list is written to ``<workdir>/data_report.json`` (``data.report``).
    """
    d = config.data
    resolved = resolve_data_config(config)
    slots = object_slots(config, resolved)
    polygons = head_reads_polygons(config)
    if resolved is None:
        common = dict(image_size=int(d.image_size), seed=int(d.seed), num_vertices=int(d.num_vertices))
        if d.name == "dense_shapes":
            common.update(DENSE_SHAPES)
        else:
            common.update(min_objects=int(d.min_objects), max_objects_per_image=int(d.max_objects_per_image))
        train = SyntheticShapes("train", num_images=int(d.train_size), polygons=polygons, **common)
        data = Data(
            train,
            SyntheticShapes("val", num_images=int(d.val_size), **common),
            make_train_augment(config, train),
            tuple(SHAPE_CLASSES),
        )
    else:
        train, val = resolved
        report = data_report(config, train, val)
        train_source, val_source = _folder_sources(config, train, val, workdir, polygons=polygons)
        data = Data(train_source, val_source, make_train_augment(config, train_source), tuple(train.class_names),
                    report)
        if jax.process_index() == 0:
            names = list(data.class_names)
            print(
                f"data: {d.name} train {len(train)} images ({d.train_path or d.train_images or d.get('yaml')}), val "
                f"{len(val)} images ({d.val_path or d.val_images or d.get('yaml')}); {len(names)} classes {names[:10]}"
                f"{' ...' if len(names) > 10 else ''} -> model.num_classes={len(names)}; "
                + _report_line(report, workdir) + "; " + object_slots_text(slots),
                flush=True,
            )
            if train_source.cache != "none":
                where = "in shared memory" if train_source.cache == "ram" else f"under {train_source.cache_dir}"
                gib = (train_source.cache_bytes + val_source.cache_bytes) / 1024**3
                h, w = train_source.image_size
                print(f"data: cache={train_source.cache}: {len(train_source) + len(val_source)} decoded images at "
                      f"{w}x{h} px, {gib:.2f} GiB {where}", flush=True)
            if workdir:
                os.makedirs(workdir, exist_ok=True)
                with open(os.path.join(workdir, DATA_REPORT), "w") as fh:
                    json.dump(report, fh, indent=2)
    if resolved is None and jax.process_index() == 0:
        print(f"data: {d.name} (synthetic) train {len(data.train_source)} images, val {len(data.val_source)} "
              f"images; " + object_slots_text(slots), flush=True)
    config = with_object_slots(config, slots)
    if resolved is not None:
        config.data.class_names = data.class_names
    config.model.num_classes = data.num_classes
    return config, data
