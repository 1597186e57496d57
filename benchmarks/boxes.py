"""GIoU / DIoU / CIoU loss, forward + backward on 134,400 box pairs: jaxdet jit vs torchvision eager and compiled.

    python -m benchmarks.boxes            # writes benchmarks/results/boxes.md
    python -m benchmarks.boxes --quick    # smoke test, tiny sizes
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision.ops

from benchmarks import _timing
from benchmarks._timing import BenchSpec, jit, to_torch
from jaxdet import boxes
from jaxdet.parity.cases_boxes import random_boxes

LOSSES = {
    "GIoU": (boxes.generalized_box_iou_loss, "generalized_box_iou_loss"),
    "DIoU": (boxes.distance_box_iou_loss, "distance_box_iou_loss"),
    "CIoU": (boxes.complete_box_iou_loss, "complete_box_iou_loss"),
}


def make_specs(num_pairs: int) -> list[BenchSpec]:
    rng = np.random.default_rng(0)
    pred = random_boxes(rng, (num_pairs,)).astype(np.float32)
    target = random_boxes(rng, (num_pairs,)).astype(np.float32)

    def spec(label: str, jax_loss, torch_name: str) -> BenchSpec:
        def make_jax():
            grad = jit(jax.grad(lambda p, t: jnp.sum(jax_loss(p, t))))
            p, t = jnp.asarray(pred), jnp.asarray(target)
            return lambda: grad(p, t)

        def make_torch(compiled: bool):
            fn = getattr(torchvision.ops, torch_name)

            def loss(p, t):
                return fn(p, t, reduction="sum")

            loss = torch.compile(loss) if compiled else loss
            p = to_torch(pred).requires_grad_(True)
            t = to_torch(target)

            def step():
                p.grad = None
                loss(p, t).backward()

            return step

        return BenchSpec(f"{label} loss, {num_pairs:,} pairs", make_jax, make_torch)

    return [spec(label, jax_loss, torch_name) for label, (jax_loss, torch_name) in LOSSES.items()]


def run(args) -> str:
    num_pairs = 1_344 if args.quick else 134_400
    return _timing.run_table("Box IoU losses (benchmarks/boxes.py)", make_specs(num_pairs), args)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="boxes.md", argv=argv)


if __name__ == "__main__":
    main()
