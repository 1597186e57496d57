"""ultralytics' ``val`` of ``python -m train.export``'s file against jaxdet's evaluation of the same model and images.

``python -m tests.train.val_compare RUN OUT [N]`` exports RUN's EMA weights, writes its first N validation images
(all by default) as a YOLO folder (PNG images, txt labels, data.yaml) under OUT, runs ``ultralytics.YOLO(file).val``
on it (conf 0.001, IoU 0.7, max_det 300, the run's image size; ``rect=False``: ultralytics' default
rectangular batches pad a square to ``ceil(S / 32 + 0.5) · 32``, 96 px for 64 px images, another input than
training's) and jaxdet's evaluation (the head's decode with the
run's ``eval`` settings, :func:`jaxdet.metrics.coco_metrics`) on the same PNGs, and prints both mAPs and their
difference. Measured on the default run (train/README.md, "Fine-tuning, freezing and export").
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from jaxdet.metrics import coco_metrics
from jaxdet.nms import Detections
from train import export as export_lib
from train.data import prepare_data
from train.task import decode_options


def write_yolo_folder(data, root: str, n: int | None = None) -> tuple[list[np.ndarray], list[dict], str]:
    """The first ``n`` validation examples as ``root/images/val/*.png`` and ``root/labels/val/*.txt`` plus
    ``root/data.yaml``; returns the images read back (uint8 RGB), the examples and the yaml path."""
    for sub in ("images/val", "labels/val"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    imgs, gts = [], []
    for i in range(len(data.val_source) if n is None else min(n, len(data.val_source))):
        ex = data.val_source[i]
        Image.fromarray(ex["image"]).save(f"{root}/images/val/{i:04d}.png")
        with open(f"{root}/labels/val/{i:04d}.txt", "w") as f:
            for (x0, y0, x1, y1), k in zip(np.asarray(ex["boxes"], np.float64), ex["classes"]):
                f.write(f"{int(k)} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}\n")
        imgs.append(np.asarray(Image.open(f"{root}/images/val/{i:04d}.png").convert("RGB")))
        gts.append(ex)
    yaml = f"{root}/data.yaml"
    with open(yaml, "w") as f:  # JSON is YAML
        json.dump({"path": root, "train": "images/val", "val": "images/val",
                   "names": dict(enumerate(data.class_names))}, f)
    return imgs, gts, yaml


def compare(run: str, out: str, n: int | None = None) -> dict[str, dict[str, float]]:
    """``{"ultralytics": {mAP, mAP50, mAP75}, "jaxdet": {...}}`` of RUN's exported EMA model on N images."""
    from ultralytics import YOLO  # noqa: PLC0415 - optional dependency

    os.makedirs(out, exist_ok=True)
    paths = export_lib.export(run, os.path.join(out, "model.pt"))
    config, head, model, _ = export_lib.restore_model(run)
    config, data = prepare_data(ml_collections.ConfigDict(config.to_dict()))
    imgs, gts, yaml = write_yolo_folder(data, os.path.join(out, "valset"), n)
    ec, size = config.eval, int(config.data.image_size)
    r = YOLO(paths["pt"], task="detect").val(data=yaml, imgsz=size, batch=32, conf=0.001, iou=0.7, max_det=300,
                                              device="cpu", plots=False, verbose=False, half=False,
                                              rect=False)  # rect=True pads 64 px squares to 96 px
    theirs = {"mAP": float(r.box.map), "mAP50": float(r.box.map50), "mAP75": float(r.box.map75)}
    opts = decode_options(config, head)

    @jax.jit
    def forward(images):
        return head.decode(model(images), score_threshold=float(ec.score_threshold),
                           iou_threshold=float(ec.iou_threshold), max_detections=int(ec.max_detections), **opts)

    dets = [forward(jnp.asarray(np.stack(imgs[s:s + 32]))) for s in range(0, len(imgs), 32)]
    det = Detections(*[np.concatenate([np.asarray(getattr(d, f)) for d in dets])
                       for f in ("boxes", "scores", "classes", "valid")])
    m = max(len(g["classes"]) for g in gts)
    gt = {"boxes": np.zeros((len(gts), m, 4), np.float32), "classes": np.zeros((len(gts), m), np.int32),
          "valid": np.zeros((len(gts), m), bool)}
    for i, g in enumerate(gts):
        k = len(g["classes"])
        gt["boxes"][i, :k], gt["classes"][i, :k], gt["valid"][i, :k] = g["boxes"], g["classes"], True
    res = coco_metrics(det, gt, image_size=size, num_classes=len(data.class_names),
                       max_detections=int(ec.max_detections))
    ours = {k: float(res[k]) for k in ("mAP", "mAP50", "mAP75")}
    return {"ultralytics": theirs, "jaxdet": ours}


if __name__ == "__main__":
    result = compare(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
    print("ultralytics val:", result["ultralytics"])
    print("jaxdet coco_metrics:", result["jaxdet"])
    print("difference (ultralytics - jaxdet):",
          {k: result["ultralytics"][k] - result["jaxdet"][k] for k in result["jaxdet"]})
