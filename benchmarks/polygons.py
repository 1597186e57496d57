"""MGIoU loss, forward + backward: jaxdet (jit) vs the ``mgiou`` package (``MGIoU2DPlus``), eager and compiled.

Inputs: 4,096 pairs of convex octagons in float32 (256 with ``--quick``); the gradient is taken w.r.t. the
predicted vertices of the summed per-pair loss. Also a rotated-box row: ``mgiou_rotated_loss`` vs
``MGIoU2D(representation="rect")`` (called with ``avg_factor=1`` so it returns the plain per-pair loss).

torch.compile wraps the reference's forward (the ``.backward()`` runs the AOTAutograd backward graph).
``MGIoU2DPlus`` runs ``torch.vmap`` over a Python loop on the axes; ``MGIoU2D`` routes all-zero targets through
boolean-mask indexing (``losses[mask] = ...``), on which inductor fails and dynamo adds a graph break
(``aten.nonzero``; the warnings it prints are expected). Both are measured as the package ships them.

    python -m benchmarks.polygons            # writes benchmarks/results/polygons.md
    python -m benchmarks.polygons --quick --out /tmp/polygons.md
"""

from __future__ import annotations

import jax
import mgiou
import numpy as np
import torch

from benchmarks import _timing
from benchmarks._timing import BenchSpec, jit, to_torch, torch_device
from jaxdet import polygons
from jaxdet.parity.cases_polygons import random_convex_polygons, random_rotated_boxes


def _jax_step(loss_fn, pred: np.ndarray, target: np.ndarray):
    def make():
        grad = jit(jax.grad(lambda p, t: loss_fn(p, t).sum()))
        p, t = jax.device_put(pred), jax.device_put(target)
        return lambda: grad(p, t)

    return make


def _torch_step(module_factory, pred: np.ndarray, target: np.ndarray):
    def make(compiled: bool):
        module = module_factory(torch_device())
        p = to_torch(pred).requires_grad_(True)
        t = to_torch(target)

        def loss(p, t):
            return module(p, t).sum()

        loss_fn = torch.compile(loss) if compiled else loss

        def step():
            p.grad = None
            loss_fn(p, t).backward()

        return step

    return make


def _mgiou_plus(device):
    return mgiou.MGIoU2DPlus(reduction="none").to(device)  # its `_unit_square` buffer is created on the CPU


def _mgiou_rect(device):
    module = mgiou.MGIoU2D(representation="rect", reduction="none").to(device)
    return lambda p, t: module(p, t, avg_factor=1.0)


def run(args) -> str:
    n = 256 if args.quick else 4096
    rng = np.random.default_rng(0)
    pred = random_convex_polygons(rng, n, 8).astype(np.float32)
    target = random_convex_polygons(rng, n, 8).astype(np.float32)
    boxes_pred = random_rotated_boxes(rng, n).astype(np.float32)
    boxes_target = random_rotated_boxes(rng, n).astype(np.float32)
    specs = [
        BenchSpec(
            name=f"MGIoU loss, {n:,} octagon pairs",
            make_jax=_jax_step(polygons.mgiou_loss, pred, target),
            make_torch=_torch_step(_mgiou_plus, pred, target),
        ),
        BenchSpec(
            name=f"rotated-box MGIoU loss, {n:,} pairs",
            make_jax=_jax_step(polygons.mgiou_rotated_loss, boxes_pred, boxes_target),
            make_torch=_torch_step(_mgiou_rect, boxes_pred, boxes_target),
        ),
    ]
    return _timing.run_table("MGIoU: jaxdet vs mgiou 0.1.0 (MGIoU2DPlus / MGIoU2D)", specs, args)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="polygons.md", argv=argv)


if __name__ == "__main__":
    main()
