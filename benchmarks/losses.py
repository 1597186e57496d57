"""The issue-3 losses, forward + backward: jaxdet jit vs the PyTorch reference eager and torch.compile.

Rows: sigmoid focal / VFL / QFL on 4×8400×80 logits, the Harmonic loss on 4×8400 anchors with 80 classes
(smooth-L1 and GIoU regression), plus the YOLOv1 and SSD rows of ``benchmarks/detection_losses.py``.

    python -m benchmarks.losses            # writes benchmarks/results/losses.md
    python -m benchmarks.losses --quick    # smoke test, tiny sizes
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision.ops

from benchmarks import _timing, detection_losses
from benchmarks._timing import BenchSpec, jit, to_torch
from jaxdet.losses import focal, harmonic
from jaxdet.parity import torch_dense


def dense_inputs(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logits, binary targets, IoU-like scores)`` float32 of ``shape``: about 1 % positives (seed 0)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, shape).astype(np.float32)
    binary = (rng.random(shape) < 0.01).astype(np.float32)
    scores = np.where(rng.random(shape) < 0.01, rng.uniform(0.05, 1.0, shape), 0.0).astype(np.float32)
    return logits, binary, scores


def _dense_spec(label: str, jax_loss, torch_loss, logits: np.ndarray, targets: np.ndarray) -> BenchSpec:
    def make_jax():
        grad = jit(jax.grad(lambda x, t: jnp.sum(jax_loss(x, t))))
        x, t = jnp.asarray(logits), jnp.asarray(targets)
        return lambda: grad(x, t)

    def make_torch(compiled: bool):
        loss = torch_loss()
        loss = torch.compile(loss) if compiled else loss
        x = to_torch(logits).requires_grad_(True)
        t = to_torch(targets)

        def step():
            x.grad = None
            loss(x, t).backward()

        return step

    return BenchSpec(label, make_jax, make_torch)


def torch_sigmoid_focal():
    """torchvision's ``sigmoid_focal_loss``, summed: the PyTorch contender of the sigmoid focal loss."""
    return lambda x, t: torchvision.ops.sigmoid_focal_loss(x, t, reduction="sum")


def torch_dense_loss(name: str):
    """A factory of ``jaxdet.parity.torch_dense.<name>``, summed: the PyTorch contender of VFL / QFL."""

    def factory():
        fn = getattr(torch_dense, name)
        return lambda x, t: fn(x, t).sum()

    return factory


def _harmonic_inputs(batch: int, anchors: int, classes: int):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (batch, anchors, classes)).astype(np.float32)
    labels = rng.integers(0, classes, (batch, anchors)).astype(np.int64)
    xy = rng.uniform(0, 600, (batch, anchors, 2))
    target = np.concatenate([xy, xy + rng.uniform(8, 200, (batch, anchors, 2))], -1).astype(np.float32)
    pred = (target + rng.normal(0, 6, target.shape)).astype(np.float32)
    positive = rng.random((batch, anchors)) < 0.1
    return logits, labels, pred, target, positive


def _harmonic_spec(label: str, regression: str, inputs) -> BenchSpec:
    logits, labels, pred, target, positive = inputs

    def make_jax():
        def loss(z, b, y, t, m):
            return jnp.sum(harmonic.harmonic_loss(z, y, b, t, regression=regression, positive=m).total)

        grad = jit(jax.grad(loss, argnums=(0, 1)))
        args = [jnp.asarray(a) for a in (logits, pred, labels.astype(np.int32), target, positive)]
        return lambda: grad(*args)

    def make_torch(compiled: bool):
        def loss(z, b, y, t, m):
            return torch_dense.harmonic_loss(z, y, b, t, positive=m, regression=regression)[0].sum()

        loss = torch.compile(loss) if compiled else loss
        z = to_torch(logits).requires_grad_(True)
        b = to_torch(pred).requires_grad_(True)
        y, t, m = to_torch(labels), to_torch(target), to_torch(positive)

        def step():
            z.grad = None
            b.grad = None
            loss(z, b, y, t, m).backward()

        return step

    return BenchSpec(label, make_jax, make_torch)


def dense_specs(quick: bool) -> list[BenchSpec]:
    batch, anchors, classes = (1, 84, 80) if quick else (4, 8400, 80)
    size = f"{batch}×{anchors}×{classes}"
    logits, binary, scores = dense_inputs((batch, anchors, classes))
    specs = [
        _dense_spec(f"sigmoid focal, {size}", lambda x, t: focal.sigmoid_focal_loss(x, t),
                    torch_sigmoid_focal, logits, binary),
        _dense_spec(f"varifocal (stop), {size}", lambda x, t: focal.varifocal_loss(x, t),
                    torch_dense_loss("varifocal_loss"), logits, scores),
        _dense_spec(f"quality focal (stop), {size}", lambda x, t: focal.quality_focal_loss(x, t),
                    torch_dense_loss("quality_focal_loss"), logits, scores),
    ]
    inputs = _harmonic_inputs(batch, anchors, classes)
    size = f"{batch}×{anchors}, {classes} classes"
    specs += [
        _harmonic_spec(f"Harmonic (smooth-L1), {size}", "smooth_l1", inputs),
        _harmonic_spec(f"Harmonic (GIoU), {size}", "giou", inputs),
    ]
    return specs


def run(args) -> str:
    specs = detection_losses.specs(args.quick) + dense_specs(args.quick)
    return _timing.run_table("Detection losses (python -m benchmarks.losses)", specs, args)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="losses.md", argv=argv)


if __name__ == "__main__":
    main()
