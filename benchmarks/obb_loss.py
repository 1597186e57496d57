"""OBB loss, rotated task-aligned assignment + loss forward + backward: jaxdet jit vs ultralytics v8OBBLoss.

Rows: batch 16, 640-px images (8,400 anchors at strides 8/16/32), 15 classes (DOTA), 10 / 100 / 300 rotated GT
boxes per image; jaxdet ``jax.jit(jax.value_and_grad(obb_loss(...).total))`` with respect to the raw head outputs
``[16, 8400, 64 + 15]`` and the angle logits ``[16, 8400, 1]``, against ultralytics 8.4.190's ``v8OBBLoss.loss`` +
``backward()`` (eager and ``torch.compile``) from the same raw outputs (the ``OBB`` head's angle activation applied
on the torch side) and the same ground truth, float32.

    python -m benchmarks.obb_loss            # writes benchmarks/results/obb_loss.md
    python -m benchmarks.obb_loss --quick    # smoke test: 2 images, 256 px, 5 classes, 3 repeats, nothing written

torch and ultralytics are imported inside :func:`torch_step` only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _timing
from benchmarks._timing import BenchSpec, to_torch
from jaxdet.losses.obb import obb_loss
from jaxdet.tal import make_anchor_points

STRIDES = (8, 16, 32)
REG_MAX = 16


def make_inputs(batch: int, image: int, classes: int, num_gt: int, seed: int = 0):
    """``(outputs [B, A, 64 + C], angle logits [B, A, 1], gt_labels [B, G], gt_rboxes [B, G, 5] px, valid [B, G])``,
    float32. Every image has exactly ``num_gt`` GTs with sides from 4 px to half the image (log-uniform), angles in
    ``[0, π/2)``, centres inside it."""
    rng = np.random.default_rng(seed)
    anchors = sum((image // s) ** 2 for s in STRIDES)
    outputs = rng.normal(0, 1, (batch, anchors, 4 * REG_MAX + classes)).astype(np.float32)
    outputs[..., 4 * REG_MAX:] -= 4.0
    angles = rng.normal(0, 1, (batch, anchors, 1)).astype(np.float32)
    size = np.exp(rng.uniform(np.log(4.0), np.log(image / 2), (batch, num_gt, 2)))
    centre = rng.uniform(size / 2, image - size / 2)
    boxes = np.concatenate([centre, size, rng.uniform(0, math.pi / 2, (batch, num_gt, 1))], -1).astype(np.float32)
    labels = rng.integers(0, classes, (batch, num_gt)).astype(np.int32)
    return outputs, angles, labels, boxes, np.ones((batch, num_gt), bool)


def jax_step(batch: int, image: int, classes: int, num_gt: int):
    """``(step, outputs, angles)``: the jitted jaxdet forward + backward and its arguments."""
    anchors = make_anchor_points([(image // s, image // s) for s in STRIDES], STRIDES)
    outputs, angles, labels, boxes, valid = (jnp.asarray(x) for x in make_inputs(batch, image, classes, num_gt))

    def total(x, a):
        return obb_loss(x, a, anchors.points, anchors.strides, labels, boxes, valid).total

    return jax.jit(jax.value_and_grad(total, argnums=(0, 1))), outputs, angles


def torch_step(batch: int, image: int, classes: int, num_gt: int, compiled: bool):
    """A no-argument ultralytics forward + backward on :func:`_timing.torch_device`."""
    import torch  # noqa: PLC0415
    from ultralytics.utils.loss import v8OBBLoss  # noqa: PLC0415

    from jaxdet.parity.cases_obb import obb_model, ultralytics_obb_batch  # noqa: PLC0415

    device = to_torch(np.zeros(1)).device
    outputs, angles, labels, boxes, valid = make_inputs(batch, image, classes, num_gt)
    criterion = v8OBBLoss(obb_model(classes).to(device))
    gt = ultralytics_obb_batch(torch.from_numpy(labels), torch.from_numpy(boxes), torch.from_numpy(valid), image)
    gt = {k: v.to(device) for k, v in gt.items()}
    feats = [torch.zeros(batch, 1, image // s, image // s, device=device) for s in STRIDES]
    x = to_torch(outputs).requires_grad_(True)
    a = to_torch(angles).requires_grad_(True)

    def loss(x, a):
        preds = {"boxes": x[..., : 4 * REG_MAX].permute(0, 2, 1), "scores": x[..., 4 * REG_MAX:].permute(0, 2, 1),
                 "angle": ((a.sigmoid() - 0.25) * math.pi).permute(0, 2, 1), "feats": feats}
        return criterion.loss(preds, gt)[0].sum()

    loss = torch.compile(loss) if compiled else loss

    def step():
        x.grad = a.grad = None
        value = loss(x, a)
        value.backward()
        return value

    return step


def specs(batch: int, image: int, classes: int, gts: tuple[int, ...]) -> list[BenchSpec]:
    anchors = sum((image // s) ** 2 for s in STRIDES)
    return [
        BenchSpec(
            f"rotated assign + OBB loss, B={batch}, {anchors:,} anchors, {classes} classes, {g} GT/image",
            lambda g=g: (lambda step, x, a: lambda: step(x, a))(*jax_step(batch, image, classes, g)),
            lambda compiled, g=g: torch_step(batch, image, classes, g, compiled),
        )
        for g in gts
    ]


def run(args) -> str:
    if args.quick:
        batch, image, classes, gts = 2, 256, 5, (10, 100)
    else:
        batch, image, classes, gts = 16, 640, 15, (10, 100, 300)
    title = "OBB loss: rotated task-aligned assignment + v8 OBB loss, forward + backward (benchmarks/obb_loss.py)"
    return _timing.run_table(title, specs(batch, image, classes, gts), args)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="obb_loss.md", argv=argv)


if __name__ == "__main__":
    main()
