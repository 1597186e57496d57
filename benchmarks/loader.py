"""The input pipeline alone: images/s of the training loader of ``python -m train`` (no model, no step).

``train.data.make_train_batches`` on the default config's synthetic split (4096 images of 64x64, flip + scale
jitter, batch 32), timed in two passes: the first epoch (every image generated) and a later epoch (the split's
examples cached by ``SyntheticShapes``, only augmentation and batching left). ``--threads`` sets the grain
threads. Compare with the train step's images/s (``benchmarks/train_step.py``): the slower of the two limits
``python -m train``.

    python benchmarks/loader.py                 # writes benchmarks/results/loader.md
    python benchmarks/loader.py --quick         # smoke test (512 images)
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
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4], help="grain threads to compare")


def time_epochs(cfg, threads: int, cache: bool) -> tuple[float, float]:
    """``(first-epoch images/s, cached-epoch images/s)`` of a fresh loader with ``threads`` grain threads."""
    from train import data as data_lib
    from train.task import make_sources

    train, _, augment = make_sources(cfg)
    if not cache:
        train._cache = None  # what SyntheticShapes(cache=False) does
    batch, n = int(cfg.train.batch_size), len(train)
    batches = data_lib.LoaderBatches(train, global_batch_size=batch, seed=0, rows=np.arange(batch), augment=augment,
                                     max_objects=int(cfg.data.max_objects), num_threads=threads)
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
    cfg = default_config.get_config()
    if args.quick:
        cfg.data.train_size = 512
        args.threads = args.threads[:1]
    load0 = os.getloadavg()[0]
    rows = []
    for threads in args.threads:
        for cache in (False, True):
            first, later = time_epochs(cfg, threads, cache)
            rows.append((threads, cache, first, later))
            print(f"threads {threads}, cache {cache}: epoch 1 {first:,.0f} images/s, epoch 2 {later:,.0f} images/s",
                  flush=True)
    load = (load0, os.getloadavg()[0])
    lines = [
        "### Training loader alone (benchmarks/loader.py)\n",
        (f"`train.data.LoaderBatches` (grain) on `configs/yolov1_shapes.py`'s synthetic split ({cfg.data.train_size} "
         f"images of {cfg.data.image_size}×{cfg.data.image_size}, flip + scale jitter, padded to "
         f"{cfg.data.max_objects} objects), batch {cfg.train.batch_size}, nothing else in the process. Host: "
         f"{len(os.sched_getaffinity(0))} cores; load average {load[0]:.2f} at the start, {load[1]:.2f} at the end"
         f"{' (a CPU shared with other jobs)' if max(load) > 1.5 else ''}.\n"),
        "| grain threads | split cached | epoch 1 (images/s) | epoch 2 (images/s) |",
        "|---:|---|---:|---:|",
    ]
    lines += [f"| {t} | {'yes' if c else 'no'} | {a:,.0f} | {b:,.0f} |" for t, c, a, b in rows]
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    _timing.write_results(table, "loader.md", args)


if __name__ == "__main__":
    main()
