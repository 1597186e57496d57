"""The input pipeline alone: images/s of the training loader of ``python -m train`` (no model, no step).

``train.data.make_train_batches`` (grain) on a synthetic split with an augmentation recipe, timed in two passes:
the first epoch (every image generated) and a later epoch (the split's examples cached by ``SyntheticShapes``,
only augmentation and batching left). ``--threads`` sets the grain threads, ``--recipes`` the ``data.augment``
recipes (``flip_scale`` is the default configs', ``yolo`` ultralytics' mosaic + affine + HSV + flip),
``--sizes`` the image sizes and ``--dataset`` the split (``shapes`` or ``dense_shapes``). Compare with the train
step's images/s (``benchmarks/train_step.py``): the slower of the two limits ``python -m train``.

    python benchmarks/loader.py                                  # writes benchmarks/results/loader.md
    python benchmarks/loader.py --recipes flip_scale yolo --sizes 256 640 --images 128 --threads 2
    python benchmarks/loader.py --dataset dense_shapes --sizes 256 --recipes none yolo --images 64
    python benchmarks/loader.py --quick                          # smoke test (64 images)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # configs, train

import numpy as np

import _timing


def _add_arguments(p) -> None:
    p.add_argument("--threads", type=int, nargs="+", default=[2], help="grain threads to compare")
    p.add_argument("--recipes", nargs="+", default=["flip_scale", "yolo"], help="data.augment recipes")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="data.image_size values")
    p.add_argument("--dataset", default="shapes", choices=["shapes", "dense_shapes"], help="data.name")
    p.add_argument("--images", type=int, default=512, help="images in the split (one epoch)")
    p.add_argument("--batch", type=int, default=32, help="global batch size")


def time_epochs(cfg, threads: int, cache: bool) -> tuple[float, float]:
    """``(first-epoch images/s, cached-epoch images/s)`` of a fresh loader with ``threads`` grain threads."""
    from train import data as data_lib

    cfg, data = data_lib.prepare_data(cfg)
    train = data.train_source
    if not cache:
        train._cache = None  # what SyntheticShapes(cache=False) does
    batch, n = int(cfg.train.batch_size), len(train)
    batches = data_lib.LoaderBatches(train, global_batch_size=batch, seed=0, rows=np.arange(batch),
                                     augment=data.augment or False, max_objects=int(cfg.data.max_objects),
                                     num_threads=threads)
    rates = []
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(n // batch):
            batches.next()
        rates.append((n // batch) * batch / (time.perf_counter() - t0))
    batches.close()
    return rates[0], rates[1]


def main() -> None:
    import configs.yolov1_shapes as default_config

    args = _timing.parse_args(__doc__.splitlines()[0], add_arguments=_add_arguments)
    if args.quick:
        args.images, args.threads, args.sizes = 64, args.threads[:1], args.sizes[:1]
    load0 = os.getloadavg()[0]
    rows = []
    for size in args.sizes:
        for recipe in args.recipes:
            for threads in args.threads:
                cfg = default_config.get_config()
                cfg.data.name = args.dataset
                cfg.data.image_size = size
                cfg.data.train_size = args.images
                cfg.data.augment = recipe
                cfg.train.batch_size = args.batch
                cfg.data.max_objects = 1200 if args.dataset == "dense_shapes" else 40
                for cache in (False, True):
                    first, later = time_epochs(cfg, threads, cache)
                    rows.append((size, recipe, threads, cache, first, later))
                    print(f"{size} px, {recipe}, threads {threads}, cache {cache}: epoch 1 {first:,.1f} images/s, "
                          f"epoch 2 {later:,.1f} images/s", flush=True)
    load = (load0, os.getloadavg()[0])
    lines = [
        "### Training loader alone (benchmarks/loader.py)\n",
        (f"`train.data.LoaderBatches` (grain) on the `{args.dataset}` synthetic split ({args.images} images), batch "
         f"{args.batch}, nothing else in the process. Host: {len(os.sched_getaffinity(0))} cores; load average "
         f"{load[0]:.2f} at the start, {load[1]:.2f} at the end"
         f"{' (a CPU shared with other jobs)' if max(load) > 1.5 else ''}.\n"),
        "| image size | recipe | grain threads | split cached | epoch 1 (images/s) | epoch 2 (images/s) |",
        "|---:|---|---:|---|---:|---:|",
    ]
    lines += [f"| {sz} | {r} | {t} | {'yes' if c else 'no'} | {a:,.1f} | {b:,.1f} |" for sz, r, t, c, a, b in rows]
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    _timing.write_results(table, "loader.md", args)


if __name__ == "__main__":
    main()
