"""Validation-time NMS: jaxdet's fixed-size greedy NMS (jit) vs torchvision's ``batched_nms`` at ultralytics'
validation settings (conf 0.001, IoU 0.7, max_det 300).

Candidates are random boxes with random scores (a worst case: few are suppressed, so all 300 slots fill), per
image: the 8,400 anchors of a 640 px YOLOv8 (single-label), and its 8,400 × 80 (anchor, class) pairs capped to
the best 30,000 (multi-label, ultralytics' ``max_nms``). The torchvision contender does what ultralytics'
``non_max_suppression`` does per image: score filter, top 30,000 by score, ``batched_nms``, first 300.

    python -m benchmarks.nms            # writes benchmarks/results/nms.md
    python -m benchmarks.nms --quick    # smoke test
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision

from benchmarks import _timing
from benchmarks._timing import jit, options_line, time_interleaved, to_torch, torch_device_label
from jaxdet.nms import nms

CONF, IOU, MAX_DET, MAX_NMS = 0.001, 0.7, 300, 30000


def _case(batch: int, anchors: int, classes: int, multi_label: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 600, (batch, anchors, 2))
    wh = rng.uniform(4, 80, (batch, anchors, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    if multi_label:
        boxes = np.repeat(boxes, classes, axis=1)  # [B, A·C, 4], anchor-major
        scores = rng.uniform(0, 1, (batch, anchors * classes)).astype(np.float32) ** 4
        cls = np.tile(np.arange(classes), (batch, anchors))
    else:
        scores = rng.uniform(0, 1, (batch, anchors)).astype(np.float32)
        cls = rng.integers(0, classes, (batch, anchors))
    return boxes, scores, cls.astype(np.int32)


def _contenders(boxes, scores, cls):
    top_k = min(MAX_NMS, boxes.shape[1])
    ours = jit(lambda b, s, c: nms(b, s, c, iou_threshold=IOU, score_threshold=CONF, max_detections=MAX_DET,
                                   pre_nms_top_k=top_k))
    jb, js, jc = jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(cls)
    tb, ts, tc = to_torch(boxes), to_torch(scores), to_torch(cls)

    def torch_step():
        out = []
        for i in range(tb.shape[0]):
            keep = ts[i] > CONF
            b, s, c = tb[i][keep], ts[i][keep], tc[i][keep]
            if s.shape[0] > MAX_NMS:
                order = s.argsort(descending=True)[:MAX_NMS]
                b, s, c = b[order], s[order], c[order]
            out.append(torchvision.ops.batched_nms(b, s, c, IOU)[:MAX_DET])
        return out

    with torch.no_grad():
        torch_step()
    return {"jaxdet": lambda: ours(jb, js, jc), "torchvision": torch_step}


def run(args) -> str:
    cases = ([("640 px, single-label, 8,400 anchors", 2, 8400, 80, False)] if args.quick else
             [("640 px, single-label, 8,400 anchors", 8, 8400, 80, False),
              ("640 px, multi-label, 8,400 × 80 pairs (best 30,000)", 8, 8400, 80, True)])
    lines = []
    for label, batch, anchors, classes, multi in cases:
        t = time_interleaved(_contenders(*_case(batch, anchors, classes, multi)), repeats=args.repeats)
        ours, ref = t["jaxdet"], t["torchvision"]
        line = (f"| {label}, batch {batch} | {ours.median_s * 1e3:.1f} | {ref.median_s * 1e3:.1f} "
                f"| {ref.median_s / ours.median_s:.2f}× | {ours.first_s:.2f} |")
        print(line, flush=True)
        lines.append(line)
    return (
        "### Validation NMS: jaxdet fixed-size greedy NMS vs torchvision batched_nms (benchmarks/nms.py)\n\n"
        f"conf {CONF}, IoU {IOU}, max_det {MAX_DET}, max_nms {MAX_NMS}; random boxes and scores. Median of "
        f"{args.repeats} rounds, contenders interleaved. jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({_timing.host()}), torchvision on {torch_device_label()}. {options_line()} Load average at the end: "
        f"{os.getloadavg()[0]:.2f}.\n\n"
        "| case | jaxdet jit (ms) | torchvision (ms) | ratio | jaxdet first call (s) |\n"
        "|---|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="nms.md", argv=argv)


if __name__ == "__main__":
    main()
