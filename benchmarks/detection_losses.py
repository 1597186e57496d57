"""Benchmark: YOLOv1 and SSD multibox losses, forward + backward, jaxdet jit vs PyTorch eager and torch.compile.

Rows (full size): YOLOv1 at batch 64 (S=7, B=2, C=20, 20 padded objects per image) and SSD at batch 32 (8732
SSD300 priors, 21 classes, 20 padded objects per image). Both sides do the whole loss: target assignment
(YOLOv1 grid + responsible predictor; SSD prior matching), the loss terms, and the gradient with respect to the
predictions. The PyTorch contenders are jaxdet's independent YOLOv1 reference
(:mod:`jaxdet.parity.torch_detection`) and, for SSD, torchvision's ``box_iou`` + ``SSDMatcher`` +
``SSD.compute_loss`` (the training branch of ``SSD.forward``).

``benchmarks/losses.py`` imports :func:`specs`; run this file alone with
``python -m benchmarks.detection_losses [--quick] [--out FILE]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import _timing
from benchmarks._timing import BenchSpec, jit, to_torch
from jaxdet.losses.ssd import ssd_multibox_loss
from jaxdet.losses.yolo import yolov1_loss
from jaxdet.parity.torch_detection import ssd_multibox_loss_torch, yolov1_loss_torch


def ssd300_anchors() -> np.ndarray:
    """The 8732 SSD300 default boxes ``[8732, 4]`` xyxy in ``[0, 1]`` (feature maps 38, 19, 10, 5, 3, 1; scales
    0.1 then 0.2 → 0.9 as in the paper's VOC setup; aspect ratios {1, 1', 2, 1/2} plus {3, 1/3} on maps 2-4)."""
    fmaps = (38, 19, 10, 5, 3, 1)
    extra = (False, True, True, True, False, False)
    scales = [0.1] + [0.2 + (0.9 - 0.2) * k / (len(fmaps) - 2) for k in range(len(fmaps) - 1)] + [1.05]
    boxes = []
    for k, (f, more) in enumerate(zip(fmaps, extra)):
        s, s_next = scales[k], scales[k + 1]
        wh = [(s, s), (math.sqrt(s * s_next),) * 2]
        ratios = (2.0, 0.5, 3.0, 1 / 3) if more else (2.0, 0.5)
        wh += [(s * math.sqrt(r), s / math.sqrt(r)) for r in ratios]
        centres = (np.stack(np.meshgrid(np.arange(f), np.arange(f), indexing="xy"), -1).reshape(-1, 1, 2) + 0.5) / f
        size = np.asarray(wh)[None]  # [1, k, 2]
        boxes.append(np.concatenate([centres - size / 2, centres + size / 2], -1).reshape(-1, 4))
    return np.clip(np.concatenate(boxes, 0), 0.0, 1.0)


def _ground_truth(rng: np.random.Generator, n: int, m: int, num_classes: int):
    centre = rng.uniform(0.05, 0.95, (n, m, 2))
    size = rng.uniform(0.05, 0.5, (n, m, 2))
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0, 1).astype(np.float32)
    classes = rng.integers(0, num_classes, (n, m)).astype(np.int32)
    valid = np.arange(m)[None] < rng.integers(1, m + 1, (n, 1))  # 1..m objects per image, padding at the end
    return boxes, classes, valid


def _yolo_spec(n: int, s: int = 7, b: int = 2, c: int = 20, m: int = 20) -> BenchSpec:
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 0.5, (n, s, s, b * 5 + c)).astype(np.float32)
    gt, cls, valid = _ground_truth(rng, n, m, c)

    def make_jax():
        args = [jnp.asarray(x) for x in (pred, gt, cls, valid)]
        step = jit(jax.grad(lambda p, *a: yolov1_loss(p, *a, num_boxes=b, num_classes=c).total.sum()))
        return lambda: step(*args)

    def make_torch(compiled: bool):
        p = to_torch(pred).requires_grad_(True)
        targets = [to_torch(x) for x in (gt, cls, valid)]

        def loss(p, gt, cls, valid):
            return yolov1_loss_torch(p, gt, cls, valid, num_boxes=b, num_classes=c)["total"].sum()

        fn = torch.compile(loss) if compiled else loss  # the backward runs through compiled autograd graphs

        def step():
            p.grad = None
            fn(p, *targets).backward()

        return step

    return BenchSpec(f"YOLOv1 loss, batch {n} (S={s}, B={b}, C={c}, M={m})", make_jax, make_torch)


def _ssd_spec(n: int, anchors: np.ndarray, c: int = 20, m: int = 20) -> BenchSpec:
    rng = np.random.default_rng(1)
    a = anchors.shape[0]
    logits = rng.normal(0, 1, (n, a, c + 1)).astype(np.float32)
    reg = rng.normal(0, 1, (n, a, 4)).astype(np.float32)
    anchors = anchors.astype(np.float32)
    gt, cls, valid = _ground_truth(rng, n, m, c)

    def make_jax():
        args = [jnp.asarray(x) for x in (logits, reg, anchors, gt, cls, valid)]
        step = jit(jax.grad(lambda lg, rg, *rest: ssd_multibox_loss(lg, rg, *rest).total, argnums=(0, 1)))
        return lambda: step(*args)

    def make_torch(compiled: bool):
        lg = to_torch(logits).requires_grad_(True)
        rg = to_torch(reg).requires_grad_(True)
        rest = [to_torch(x) for x in (anchors, gt, cls, valid)]

        def loss(lg, rg, *rest):
            return ssd_multibox_loss_torch(lg, rg, *rest)["total"]

        fn = torch.compile(loss) if compiled else loss

        def step():
            lg.grad = rg.grad = None
            fn(lg, rg, *rest).backward()

        return step

    return BenchSpec(f"SSD multibox loss (match + loss), batch {n} × {a} priors × {c + 1} classes", make_jax,
                     make_torch)


def specs(quick: bool) -> list[BenchSpec]:
    """YOLOv1 at batch 64 and SSD at batch 32 with 8732 priors; ``quick``: batch 4 / 2 and 300 priors."""
    if quick:
        return [_yolo_spec(4), _ssd_spec(2, ssd300_anchors()[-300:])]
    return [_yolo_spec(64), _ssd_spec(32, ssd300_anchors())]


def run(args) -> str:
    return _timing.run_table("Detection losses (YOLOv1, SSD)", specs(args.quick), args)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="detection_losses.md", argv=argv)


if __name__ == "__main__":
    main()
