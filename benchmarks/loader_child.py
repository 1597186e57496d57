"""The measured side of the loader benchmark (``benchmarks/loader.py``): one measurement per process.

    python -m benchmarks.loader_child '{"side": "jaxdet", "images": ..., "cache": "none", ...}'

builds the loader of one side for the spec (:func:`build_jaxdet`: ``python -m train``'s; :func:`build_ultralytics`:
ultralytics' training dataset and collate), draws the warm-up batches, times the measured ones and prints one
line, :data:`RESULT_PREFIX` + JSON. ``benchmarks/loader.py`` starts it under ``taskset`` with one thread
everywhere. Each side's libraries are imported inside its builder, so that a process loads only its own side's
(the jaxdet side no torch or ultralytics, the ultralytics side no jax, train or grain): their imports, threads and
memory would otherwise be measured with the other side.
"""

from __future__ import annotations

import json
import math
import random
import resource
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from configs import yolov8n_coco

BATCH = 16
IMAGE_SIZE = 640
#: ultralytics' ``cache`` value for each jaxdet ``data.cache``.
ULTRALYTICS_CACHE = {"none": False, "ram": "ram", "disk": "disk"}
RESULT_PREFIX = "LOADER_RESULT "


def _one_thread() -> None:
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def jaxdet_config(images_dir: str, *, cache: str, max_objects: int, num_workers: int = 0, num_threads: int = 0,
                  seed: int = 0):
    """``configs/yolov8n_coco.py`` on a YOLO folder: batch 16, 640 px, the ``yolo`` recipe with mosaic to the
    end, ``data.cache = cache`` (added to the config where it has no such field yet)."""
    cfg = yolov8n_coco.get_config()
    d = cfg.data
    d.name = "yolo"
    d.train_images = d.val_images = str(images_dir)
    d.class_names = ()  # classes.txt beside images/ and labels/
    d.image_size = IMAGE_SIZE
    d.augment = "yolo"
    d.close_mosaic = 0
    d.invalid_boxes = "error"
    d.max_objects = str(int(max_objects))  # the field's default is "auto", a string (ml_collections keeps the type)
    d.num_threads = int(num_threads)
    d.num_workers = int(num_workers)
    d.seed = int(seed)
    if "cache" in d:
        d.cache = cache
    else:
        with cfg.unlocked():
            d.cache = cache
    cfg.train.batch_size = BATCH
    return cfg


def build_jaxdet(spec: dict):
    """``(next_batch, info)``: the loader of ``python -m train`` (``train.loop.run``) for ``spec``."""
    from train import batches as batches_lib  # noqa: PLC0415 - only this side's libraries
    from train import data as data_lib  # noqa: PLC0415 - only this side's libraries
    from train.task import make_task  # noqa: PLC0415 - only this side's libraries

    cfg = jaxdet_config(spec["images"], cache=spec["cache"], max_objects=spec["max_objects"],
                        num_workers=spec["num_workers"], num_threads=spec["num_threads"])
    t0 = time.perf_counter()
    cfg, data = data_lib.prepare_data(cfg)
    task = make_task(cfg, data)
    fill_s = None
    source = task.train_source
    if getattr(source, "cached", False) and hasattr(source, "fill_cache"):  # what train.batches.CacheFiller runs
        t1 = time.perf_counter()
        source.fill_cache(threading.Event())
        fill_s = time.perf_counter() - t1
    batches = batches_lib.make_train_batches(
        str(cfg.data.get("loader", "grain")), source, global_batch_size=int(cfg.train.batch_size),
        seed=int(cfg.data.seed), rows=np.arange(int(cfg.train.batch_size)), augment=task.augment,
        max_objects=int(cfg.data.max_objects), num_threads=int(cfg.data.get("num_threads", 2)),
        prefetch=int(cfg.data.get("prefetch", 8)), num_workers=int(cfg.data.get("num_workers", 0)))
    setup_s = time.perf_counter() - t0
    return batches.next, {"setup_s": setup_s, "fill_s": fill_s, "num_images": len(source)}


def build_ultralytics(spec: dict):
    """``(next_batch, info)``: ultralytics' training dataset for ``spec`` and its collate over a shuffled order."""
    import torch  # noqa: PLC0415 - only this side's libraries

    torch.set_num_threads(1)
    from ultralytics.cfg import get_cfg  # noqa: PLC0415 - only this side's libraries
    from ultralytics.data import build_yolo_dataset  # noqa: PLC0415 - only this side's libraries
    from ultralytics.data.base import BaseDataset  # noqa: PLC0415 - only this side's libraries
    from ultralytics.data.dataset import YOLODataset  # noqa: PLC0415 - only this side's libraries

    names = Path(spec["images"]).parent.joinpath("classes.txt").read_text().split()
    cfg = get_cfg(overrides={"imgsz": IMAGE_SIZE, "cache": ULTRALYTICS_CACHE[spec["cache"]], "rect": False,
                             "batch": BATCH, "task": "detect", "mode": "train", "workers": 0})
    data = {"names": dict(enumerate(names)), "nc": len(names), "channels": 3}
    fill = {}
    cache_images = BaseDataset.cache_images

    def timed_cache_images(self):  # the RAM fill ultralytics does in its constructor
        t = time.perf_counter()
        cache_images(self)
        fill["s"] = time.perf_counter() - t

    BaseDataset.cache_images = timed_cache_images
    random.seed(0)
    t0 = time.perf_counter()
    dataset = build_yolo_dataset(cfg, spec["images"], BATCH, data, mode="train")
    setup_s = time.perf_counter() - t0
    BaseDataset.cache_images = cache_images
    rng = np.random.default_rng(0)
    order: list[int] = []

    def next_batch():
        items = []
        for _ in range(BATCH):
            if not order:
                order.extend(rng.permutation(len(dataset)).tolist())
            items.append(dataset[order.pop()])
        return YOLODataset.collate_fn(items)

    info = {"setup_s": setup_s, "fill_s": fill.get("s"), "num_images": len(dataset),
            "buffer": int(dataset.max_buffer_length)}
    return next_batch, info


def measure(next_batch, *, warmup: int, batches: int) -> dict:
    """Draws ``warmup`` batches, then times ``batches`` more: their images/s, the warm-up's, and the minor page
    faults per image while timed (memory the allocator maps afresh, e.g. a freed heap given back to the OS)."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        next_batch()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t1 = time.perf_counter()
    for _ in range(batches):
        next_batch()
    t2 = time.perf_counter()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"warmup_s": t1 - t0, "warmup_images_per_s": warmup * BATCH / max(t1 - t0, 1e-9),
            "measure_s": t2 - t1, "images_per_s": batches * BATCH / (t2 - t1),
            "faults_per_image": faults / (batches * BATCH)}


def child_main(spec: dict) -> dict:
    """One measurement (``spec``: side, images, cache, warmup, batches, ...): built, warmed up and timed."""
    _one_thread()
    build = build_jaxdet if spec["side"] == "jaxdet" else build_ultralytics
    next_batch, info = build(spec)
    _one_thread()  # torch and cv2 may have been imported since
    warmup = int(spec["warmup"])
    if spec["cache"] != "none":  # one epoch at least: a cache filled on first use is then full
        warmup = max(warmup, math.ceil(info["num_images"] / BATCH))
    out = {**spec, **info, "warmup": warmup, **measure(next_batch, warmup=warmup, batches=int(spec["batches"]))}
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


if __name__ == "__main__":
    print(RESULT_PREFIX + json.dumps(child_main(json.loads(sys.argv[1]))), flush=True)
