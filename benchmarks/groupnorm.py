"""GroupNorm forward + backward: jaxdet's spatial-first GroupNorm and flax's nnx.GroupNorm vs torch.nn.GroupNorm.

Shapes are the default detector's GroupNorm inputs at batch 32 (``configs/yolov1_shapes.py``: 32×32×16 after the
first conv, 16×16×32, 8×8×64; 8 groups). The gradient is taken with respect to the input, scale and bias, with a
fixed random cotangent. The jaxdet rows are the same function (``tests/models/test_groupnorm.py``).

    python -m benchmarks.groupnorm            # writes benchmarks/results/groupnorm.md
    python -m benchmarks.groupnorm --quick    # smoke test
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from benchmarks import _timing
from benchmarks._timing import BenchSpec, jit, to_torch
from jaxdet.models.detector import GroupNorm


def _spec(label: str, module_cls, shape: tuple[int, ...], groups: int) -> BenchSpec:
    rng = np.random.default_rng(0)
    x_np = rng.normal(0.2, 1.0, shape).astype(np.float32)
    ct_np = rng.normal(0, 1, shape).astype(np.float32)

    def make_jax():
        graphdef, params = nnx.split(module_cls(shape[-1], num_groups=groups, rngs=nnx.Rngs(0)), nnx.Param)
        x, ct = jnp.asarray(x_np), jnp.asarray(ct_np)
        grad = jit(jax.grad(lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x) * ct), argnums=(0, 1)))
        return lambda: grad(params, x)

    def make_torch(compiled: bool):
        norm = torch.nn.GroupNorm(groups, shape[-1], eps=1e-6).to(to_torch(x_np).device)
        fn = torch.compile(norm) if compiled else norm
        x = to_torch(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))).requires_grad_(True)
        ct = to_torch(np.ascontiguousarray(ct_np.transpose(0, 3, 1, 2)))

        def step():
            x.grad = None
            norm.zero_grad(set_to_none=True)
            (fn(x) * ct).sum().backward()

        return step

    n, h, w, c = shape
    return BenchSpec(f"{label}, {n}×{h}×{w}×{c}, {groups} groups", make_jax, make_torch)


def specs(quick: bool) -> list[BenchSpec]:
    shapes = [(2, 8, 8, 16)] if quick else [(32, 32, 32, 16), (32, 16, 16, 32), (32, 8, 8, 64)]
    out = []
    for shape in shapes:
        out += [_spec("jaxdet GroupNorm (spatial-first)", GroupNorm, shape, 8),
                _spec("flax nnx.GroupNorm", nnx.GroupNorm, shape, 8)]
    return out


def run(args) -> str:
    return _timing.run_table("GroupNorm forward + backward (benchmarks/groupnorm.py)", specs(args.quick), args)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="groupnorm.md", argv=argv)


if __name__ == "__main__":
    main()
