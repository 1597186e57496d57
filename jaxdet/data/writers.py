"""Export annotated images to COCO JSON, Pascal VOC XML and YOLO txt (the inverse of :mod:`readers`).

Used to export the synthetic dataset and by the tests that check the readers agree. Each writer takes a list
of *annotations*, dicts with::

    {"image": uint8 [H, W, 3], "image_id": int, "classes": int [n],
     "boxes_px": float [n, 4] (xyxy continuous pixels), "outlines": list of [P_i, 2] pixel polygons or None}

(:meth:`jaxdet.data.synthetic.SyntheticShapes.annotation` returns exactly this). Images are written as
lossless PNG named ``{image_id:06d}.png``. Coordinates are written with full float precision.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from jaxdet import _checks

__all__ = ["write_coco", "write_voc", "write_yolo", "export_synthetic"]


def _save_image(arr, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)


def _name(ann) -> str:
    return f"{int(ann['image_id']):06d}.png"


def _outlines(ann):
    outs = ann.get("outlines")
    n = len(ann["classes"])
    return [None] * n if outs is None else list(outs)


def write_coco(annotations, out_dir, class_names, *, json_name="annotations.json") -> Path:
    """Write ``out_dir/images/*.png`` and ``out_dir/<json_name>``; returns the JSON path.

    Category ids are ``1 .. C`` in ``class_names`` order, annotation ids start at 1, ``bbox`` is xywh,
    ``segmentation`` holds the outline (omitted when it is None), ``area`` is the box area.
    """
    out_dir = Path(out_dir)
    images, anns = [], []
    ann_id = 1
    for ann in annotations:
        h, w = np.asarray(ann["image"]).shape[:2]
        name = _name(ann)
        _save_image(ann["image"], out_dir / "images" / name)
        images.append({"id": int(ann["image_id"]), "file_name": name, "width": int(w), "height": int(h)})
        for cls, box, outline in zip(ann["classes"], ann["boxes_px"], _outlines(ann)):
            x0, y0, x1, y1 = (float(v) for v in box)
            a = {
                "id": ann_id,
                "image_id": int(ann["image_id"]),
                "category_id": int(cls) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
            if outline is not None:
                a["segmentation"] = [[float(v) for v in np.asarray(outline, np.float64).reshape(-1)]]
            anns.append(a)
            ann_id += 1
    cats = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(class_names)]
    path = out_dir / json_name
    with open(path, "w") as fh:
        json.dump({"images": images, "annotations": anns, "categories": cats}, fh)
    return path


def write_voc(annotations, out_dir, class_names) -> Path:
    """Write ``out_dir/JPEGImages/*.png`` and ``out_dir/Annotations/*.xml``; returns the annotation dir.

    ``bndbox`` uses VOC's 1-based convention (``xmin = x0 + 1``, ``xmax = x1``); outlines go into a
    ``<polygon>`` element with 1-based ``x1, y1, x2, y2, ...`` children.
    """
    out_dir = Path(out_dir)
    ann_dir = out_dir / "Annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    for ann in annotations:
        h, w = np.asarray(ann["image"]).shape[:2]
        name = _name(ann)
        _save_image(ann["image"], out_dir / "JPEGImages" / name)
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = "JPEGImages"
        ET.SubElement(root, "filename").text = name
        size = ET.SubElement(root, "size")
        ET.SubElement(size, "width").text = str(int(w))
        ET.SubElement(size, "height").text = str(int(h))
        ET.SubElement(size, "depth").text = "3"
        for cls, box, outline in zip(ann["classes"], ann["boxes_px"], _outlines(ann)):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = class_names[int(cls)]
            ET.SubElement(obj, "difficult").text = "0"
            bnd = ET.SubElement(obj, "bndbox")
            x0, y0, x1, y1 = (float(v) for v in box)
            for tag, val in (("xmin", x0 + 1.0), ("ymin", y0 + 1.0), ("xmax", x1), ("ymax", y1)):
                ET.SubElement(bnd, tag).text = repr(val)
            if outline is not None:
                poly = ET.SubElement(obj, "polygon")
                for i, (x, y) in enumerate(np.asarray(outline, np.float64), start=1):
                    ET.SubElement(poly, f"x{i}").text = repr(float(x) + 1.0)
                    ET.SubElement(poly, f"y{i}").text = repr(float(y) + 1.0)
        ET.ElementTree(root).write(ann_dir / (Path(name).stem + ".xml"))
    return ann_dir


def write_yolo(annotations, out_dir, *, polygons: bool = True) -> Path:
    """Write ``out_dir/images/*.png`` and ``out_dir/labels/*.txt``; returns the images dir.

    With ``polygons=True`` an object with an outline becomes a polygon line (``cls x1 y1 ...``, normalised),
    otherwise a box line (``cls cx cy w h``). Note that YOLO polygon lines carry no separate box: readers use
    the polygon's tight box. An image without objects gets an empty label file.
    """
    out_dir = Path(out_dir)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    for ann in annotations:
        h, w = np.asarray(ann["image"]).shape[:2]
        name = _name(ann)
        _save_image(ann["image"], out_dir / "images" / name)
        lines = []
        for cls, box, outline in zip(ann["classes"], ann["boxes_px"], _outlines(ann)):
            if polygons and outline is not None:
                pts = np.asarray(outline, np.float64) / np.array([w, h])
                lines.append(" ".join([str(int(cls))] + [repr(float(v)) for v in pts.reshape(-1)]))
            else:
                x0, y0, x1, y1 = np.asarray(box, np.float64) / np.array([w, h, w, h])
                vals = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
                lines.append(" ".join([str(int(cls))] + [repr(float(v)) for v in vals]))
        with open(out_dir / "labels" / (Path(name).stem + ".txt"), "w") as fh:
            fh.write("\n".join(lines) + ("\n" if lines else ""))
    return out_dir / "images"


def export_synthetic(dataset, out_dir, *, fmt: str = "coco", indices=None) -> Path:
    """Export (part of) a :class:`~jaxdet.data.synthetic.SyntheticShapes` split in ``fmt``
    (``"coco"``, ``"voc"`` or ``"yolo"``). Returns what the writer returns."""
    _checks.choice(fmt, "fmt", ("coco", "voc", "yolo"))
    indices = range(len(dataset)) if indices is None else indices
    anns = [dataset.annotation(int(i)) for i in indices]
    if fmt == "coco":
        return write_coco(anns, out_dir, dataset.class_names)
    if fmt == "voc":
        return write_voc(anns, out_dir, dataset.class_names)
    return write_yolo(anns, out_dir)
