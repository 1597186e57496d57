"""Cost of checking and decoding image files: the readers' verification pass against a full decode.

Every reader checks each image file when the annotations are read (``jaxdet.data.verify_image``: Pillow's
header, ``Image.verify()``, a JPEG's end marker), so a bad file stops the run before training. This times that
check per file, next to ultralytics' own check (``ultralytics.data.utils.check_image``, what its
``verify_image_label`` runs) and the full decodes (``jaxdet.data.read_image``, ultralytics' ``imread``), on
generated 640x480 JPEG and PNG files, all contenders interleaved in one process.

    python -m benchmarks.image_checks            # writes benchmarks/results/image_checks.md
    python -m benchmarks.image_checks --quick    # smoke test (8 files per format)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from ultralytics.data.utils import check_image
from ultralytics.utils.patches import imread

from benchmarks import _timing
from jaxdet.data import read_image, verify_image

COCO_TRAIN_IMAGES = 118_287  # train2017, for the "whole dataset" column


def _add_arguments(p) -> None:
    p.add_argument("--files", type=int, default=64, help="files per format")


def _write_files(folder: Path, n: int, ext: str) -> list[str]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    paths = []
    for i in range(n):
        base = np.stack([xx * 255 // 640, yy * 255 // 480, (xx + yy + 40 * i) % 256], -1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)  # photo-like entropy
        path = folder / f"{i:04d}.{ext}"
        Image.fromarray(img).save(path, **({"quality": 90} if ext == "jpg" else {}))
        paths.append(str(path))
    return paths


def run(args) -> str:
    n = 8 if args.quick else args.files
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ext in ("jpg", "png"):
            paths = _write_files(Path(tmp), n, ext)
            runs = {
                "jaxdet verify_image": lambda: [verify_image(p) for p in paths],
                "ultralytics check_image": lambda: [check_image(p) for p in paths],
                "jaxdet read_image (decode)": lambda: [read_image(p) for p in paths],
                "ultralytics imread (decode)": lambda: [imread(p) for p in paths],
            }
            timings = _timing.time_interleaved(runs, repeats=args.repeats, warmup=1)
            for name, t in timings.items():
                per_file = t.median_s / n
                rows.append((ext, name, per_file * 1e3, per_file * COCO_TRAIN_IMAGES / 60))
    lines = [
        "# Checking and decoding image files (per file, median of interleaved rounds)",
        "",
        f"{n} generated 640x480 files per format; {args.repeats} rounds; {_timing.cpu_count()} CPU(s) "
        "(one thread). The last column scales the per-file time to COCO train2017's 118,287 images.",
        "",
        "| format | contender | ms / file | minutes for 118,287 files |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {ext} | {name} | {ms:.3f} | {minutes:.1f} |" for ext, name, ms, minutes in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="image_checks.md", add_arguments=_add_arguments,
                        torch_compile=False, quick="smoke test: 8 files per format, 3 repeats", argv=argv)


if __name__ == "__main__":
    main()
