"""GIoU / DIoU / CIoU loss, forward + backward on 134,400 box pairs: jaxdet jit vs torchvision eager and compiled.

    python benchmarks/boxes.py            # writes benchmarks/results/boxes.md
    python benchmarks/boxes.py --quick    # smoke test, tiny sizes
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxdet import boxes
from jaxdet.parity.cases_boxes import random_boxes

from _timing import (
    BenchSpec,
    jit,
    markdown_table,
    parse_args,
    run_specs,
    to_torch,
    write_results,
)

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
            import torch
            import torchvision.ops

            fn = getattr(torchvision.ops, torch_name)
            loss = lambda p, t: fn(p, t, reduction="sum")
            loss = torch.compile(loss) if compiled else loss
            p = to_torch(pred).requires_grad_(True)
            t = to_torch(target)

            def step():
                p.grad = None
                loss(p, t).backward()

            return step

        return BenchSpec(f"{label} loss, {num_pairs:,} pairs", make_jax, make_torch)

    return [spec(label, jax_loss, torch_name) for label, (jax_loss, torch_name) in LOSSES.items()]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    num_pairs = 1_344 if args.quick else 134_400
    rows = run_specs(make_specs(num_pairs), repeats=args.repeats, compile_torch=not args.no_compile)
    table = markdown_table("Box IoU losses (benchmarks/boxes.py)", rows, repeats=args.repeats)
    print(table)
    write_results(table, "boxes.md", args)


if __name__ == "__main__":
    main()
