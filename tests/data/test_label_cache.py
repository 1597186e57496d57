"""The label cache of the YOLO and COCO readers (jaxdet.data.label_cache): a cached read equals a fresh one bit for
bit, opens no image and parses no label, and any changed file or argument gives a fresh read."""

import json
import os
import re
import warnings

import numpy as np
import pytest

import jaxdet.data.readers as readers
from configs import yolov1_shapes
from jaxdet.data import SHAPE_CLASSES, DatasetFormatError, SyntheticShapes, read_coco, read_yolo, write_coco, write_yolo
from jaxdet.data.label_cache import default_cache_dir, resolve_cache_dir
from train import data as train_data


def _annotations():
    ds = SyntheticShapes("val", num_images=6, image_size=(48, 64), max_objects_per_image=4, seed=3)
    anns = [ds.annotation(i) for i in range(len(ds))]
    anns[2] = dict(anns[2], classes=anns[2]["classes"][:0], outlines=[], boxes_px=np.zeros((0, 4)))  # empty image
    return anns


@pytest.fixture
def yolo(tmp_path):
    """A YOLO folder with polygons, box lines, an empty image, a corrupt image (skipped) and an invalid object
    (dropped)."""
    images = write_yolo(_annotations(), tmp_path / "yolo")
    labels = images.parent / "labels"
    (labels / "000001.txt").write_text("1 0.5 0.5 0.25 0.5\n" + (labels / "000001.txt").read_text())  # a box line
    with open(labels / "000003.txt", "a") as fh:
        fh.write("0 0.5 0.5 0.0 0.2\n")  # zero width: dropped
    (images / "000004.png").write_bytes(b"not a png")  # corrupt: skipped
    return images


@pytest.fixture
def coco(tmp_path):
    path = write_coco(_annotations(), tmp_path / "coco", SHAPE_CLASSES)
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 999, "image_id": data["images"][3]["id"], "category_id": 1,
                                "bbox": [10, 10, 0, 5]})  # fmt: skip
    data["annotations"].append({"id": 1000, "image_id": data["images"][0]["id"], "category_id": 2,
                                "bbox": [4, 6, 20, 10]})  # a box without segmentation  # fmt: skip
    path.write_text(json.dumps(data))
    (path.parent / "images" / data["images"][4]["file_name"]).write_bytes(b"not a png")
    return path


def _read(fmt, where, **kw):
    options = dict(on_bad_image="skip", invalid_boxes="drop") | kw
    if fmt == "yolo":
        return read_yolo(where, **({"class_names": SHAPE_CLASSES} | options))
    return read_coco(where, image_dir=where.parent / "images", **options)


def _read_again(fmt, where, cache, count_verify, **kw):
    """Whether a cached read read afresh (checked images again); its result equals a fresh read and is then
    cached (the next cached read checks none)."""
    before = len(count_verify)
    out = _read(fmt, where, cache=cache, **kw)
    missed = len(count_verify) > before
    assert_identical(out, _read(fmt, where, **kw))
    before = len(count_verify)
    assert_identical(out, _read(fmt, where, cache=cache, **kw))
    assert len(count_verify) == before
    return missed


def assert_identical(a, b):
    assert a.class_names == b.class_names
    assert list(a.skipped.items()) == list(b.skipped.items())
    assert list(a.dropped.items()) == list(b.dropped.items())
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert (ra.image_id, ra.image_path, ra.width, ra.height, ra.image) == (rb.image_id, rb.image_path, rb.width,
                                                                               rb.height, rb.image)  # fmt: skip
        assert type(ra.image_id) is type(rb.image_id) is int and type(ra.width) is type(rb.width) is int
        for name in ("boxes", "classes", "polygons", "has_polygon"):
            x, y = getattr(ra, name), getattr(rb, name)
            assert (x.dtype, x.shape) == (y.dtype, y.shape) and x.tobytes() == y.tobytes(), name


@pytest.fixture
def no_reading(monkeypatch):
    """Makes opening an image or validating an object fail: a read that still returns came from the cache."""

    def fail(*args, **kwargs):
        raise AssertionError("the cache was not used")

    def block():
        for name in ("verify_image", "image_size", "_finalise_object"):
            monkeypatch.setattr(readers, name, fail)
        monkeypatch.setattr(readers.json, "load", fail)

    return block


@pytest.fixture
def count_verify(monkeypatch):
    calls = []
    verify = readers.verify_image

    def counted(path):
        calls.append(path)
        return verify(path)

    monkeypatch.setattr(readers, "verify_image", counted)
    return calls


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_cached_read_is_identical_and_opens_nothing(fmt, yolo, coco, tmp_path, no_reading):
    where = yolo if fmt == "yolo" else coco
    cache = tmp_path / "cache"
    fresh = _read(fmt, where)
    assert fresh.skipped and fresh.dropped and any(r.has_polygon.any() for r in fresh)
    assert any(len(r.classes) == 0 for r in fresh) and any(not r.has_polygon.all() for r in fresh)
    first = _read(fmt, where, cache=cache)
    assert_identical(fresh, first)
    (file,) = cache.iterdir()
    assert file.name.startswith(f"{fmt}-") and file.suffix == ".npz"
    with np.load(file, allow_pickle=False) as z:  # no object arrays
        assert all(z[k].dtype != object for k in z.files)
    no_reading()
    assert_identical(fresh, _read(fmt, where, cache=cache))


def test_yolo_changes_invalidate(yolo, tmp_path, count_verify):
    cache = tmp_path / "cache"
    labels = yolo.parent / "labels"
    _read("yolo", yolo, cache=cache)
    n = len(count_verify)
    assert n == 6
    _read("yolo", yolo, cache=cache)
    assert len(count_verify) == n  # a hit

    def changed(**kw):
        return _read_again("yolo", yolo, cache, count_verify, **kw)

    (labels / "000000.txt").write_text("2 0.5 0.5 0.5 0.5\n")  # content (and size)
    assert changed()
    st = os.stat(labels / "000001.txt")
    os.utime(labels / "000001.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # mtime only
    assert changed()
    (labels / "000000.txt").unlink()  # a label file removed
    assert changed()
    (labels / "000009.txt").write_text("0 0.5 0.5 0.5 0.5\n")  # a label file without image
    assert changed()
    os.link(yolo / "000000.png", yolo / "000007.png")  # an image added (a hard link to another)
    (labels / "000007.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    assert changed()
    assert _read("yolo", yolo, cache=cache)[-1].image_path == str(yolo / "000007.png")
    (yolo / "000005.png").unlink()  # an image removed
    assert changed()
    assert changed(num_vertices=6)  # a reader argument
    assert changed(class_names=SHAPE_CLASSES + ("extra",))
    assert changed(tolerance=0.01)


def test_coco_changes_invalidate(coco, tmp_path, count_verify):
    cache = tmp_path / "cache"
    _read("coco", coco, cache=cache)
    n = len(count_verify)
    _read("coco", coco, cache=cache)
    assert len(count_verify) == n

    def changed(**kw):
        return _read_again("coco", coco, cache, count_verify, **kw)

    data = json.loads(coco.read_text())
    data["annotations"] = data["annotations"][1:]
    coco.write_text(json.dumps(data))  # the JSON
    assert changed()
    image = coco.parent / "images" / data["images"][0]["file_name"]
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an image touched
    assert changed()
    bad = coco.parent / "images" / data["images"][4]["file_name"]  # the skipped image repaired
    bad.write_bytes(image.read_bytes())
    assert not _read("coco", coco).skipped
    assert changed()
    image.unlink()  # an image removed: now skipped
    assert changed()
    assert changed(include_crowd=True)
    assert changed(num_vertices=6)


def test_failed_reads_are_not_cached(yolo, coco, tmp_path):
    """A read that raises writes nothing, so the next one raises the same error (file and record) again."""
    cache = tmp_path / "cache"
    (yolo.parent / "labels" / "000005.txt").write_text("0 x 0.5 0.5 0.5\n")
    cases = [
        (lambda: _read("yolo", yolo, cache=cache, on_bad_image="error"), "000004.png"),
        (lambda: _read("yolo", yolo, cache=cache), "000005.txt [line 1]"),
        (lambda: _read("coco", coco, cache=cache, invalid_boxes="error"), "annotation id 999"),
    ]
    for read, where in cases:
        messages = []
        for _ in range(2):
            with pytest.raises(DatasetFormatError, match=re.escape(where)) as info:
                read()
            messages.append((type(info.value), str(info.value)))
        assert messages[0] == messages[1]
    assert not cache.exists() or not list(cache.iterdir())


@pytest.mark.parametrize("garbage", [b"", b"PK\x03\x04 truncated", b"not a zip at all"])
def test_corrupt_cache_file_is_rebuilt(yolo, tmp_path, garbage, count_verify):
    cache = tmp_path / "cache"
    fresh = _read("yolo", yolo, cache=cache)
    (file,) = cache.iterdir()
    file.write_bytes(garbage)
    with pytest.warns(UserWarning, match="unreadable label cache"):
        assert_identical(fresh, _read("yolo", yolo, cache=cache))
    before = len(count_verify)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_identical(fresh, _read("yolo", yolo, cache=cache))  # rewritten: a silent hit
    assert len(count_verify) == before


def test_cache_argument_and_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXDET_CACHE_DIR", str(tmp_path / "c"))
    assert resolve_cache_dir(True) == tmp_path / "c" / "labels"
    monkeypatch.delenv("JAXDET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "jaxdet"
    assert resolve_cache_dir(None) is None and resolve_cache_dir(False) is None
    assert resolve_cache_dir(tmp_path / "d") == tmp_path / "d"
    with pytest.raises(ValueError, match="cache must be None, True, False or a directory path"):
        read_yolo(tmp_path, class_names=("a",), cache=3)


def test_unwritable_cache_dir_warns_and_reads(yolo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="cannot write the label cache"):
        assert_identical(_read("yolo", yolo), _read("yolo", yolo, cache=blocker / "sub"))


def test_training_reads_through_the_cache(yolo, tmp_path, monkeypatch):

    def config(**data):
        c = yolov1_shapes.get_config()
        c.data.name = "yolo"
        c.data.train_images = c.data.val_images = str(yolo)
        c.data.on_bad_image, c.data.invalid_boxes = "skip", "drop"
        c.data.class_names, c.data.max_objects = SHAPE_CLASSES, "8"
        c.data.update(data)
        return c

    monkeypatch.setattr(train_data, "_RECORD_CACHE", {})
    monkeypatch.setenv("JAXDET_CACHE_DIR", str(tmp_path / "user"))
    train, _ = train_data.resolve_data_config(config())
    assert len(list((tmp_path / "user" / "labels").iterdir())) == 1
    monkeypatch.setattr(train_data, "_RECORD_CACHE", {})
    assert_identical(train, train_data.resolve_data_config(config(label_cache_dir=str(tmp_path / "mine")))[0])
    assert len(list((tmp_path / "mine").iterdir())) == 1
    monkeypatch.setattr(train_data, "_RECORD_CACHE", {})
    train_data.resolve_data_config(config(label_cache=False, label_cache_dir=str(tmp_path / "off")))
    assert not (tmp_path / "off").exists()
