"""Why the train step's compile grew with the square of the model's parameter count (leaves), and the fix.

``train.step`` skips a batch whose loss or gradients are not finite. It used to compute every update and then
select, leaf by leaf, ``where(finite, new, old)``. ``finite`` is a scalar made from every gradient leaf (a chain of
``and``s over the per-leaf ``all(isfinite(g))``), and XLA duplicates such cheap scalar chains into each consumer's
fusion. So each of the ~3N update kernels (parameters, optimizer moments, EMA) carried an N-long chain: the
optimised program was quadratic in the number of leaves N. YOLOv8n has 184 leaves, YOLO26n 367, and YOLO26n's
step compiled ~4× slower than YOLOv8n's (246 s against 61 s at 64 px on a quiet 2-core CPU, where the networks'
forward+backward alone compile in 5 s and 8 s). A ``lax.cond(finite, learn, keep)`` computes ``finite`` once, as
the predicate, and the update kernels never see it. (``lax.optimization_barrier`` does not help: XLA:CPU removes
barriers before fusion.)

This script shows the effect on a stand-in parameter tree (N convolution-shaped leaves, SGD with Nesterov momentum,
an EMA) without a model: for each N it compiles the select and the cond versions and prints the size of XLA's
optimised program (lines of HLO) and the compile time.

    python -m benchmarks.investigations.step_compile_time                 # N = 100, 200, 400
    python -m benchmarks.investigations.step_compile_time --leaves 50,100
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from jaxdet.compile_options import compiler_options


def stand_in_params(n: int) -> dict[str, jax.Array]:
    """``n`` leaves shaped like a small network's kernels and biases (``[3, 3, c, c]`` and ``[c]``)."""
    shapes = [(3, 3, 16 * (1 + i % 4), 16 * (1 + i % 4)) if i % 2 == 0 else (16 * (1 + i % 4),) for i in range(n)]
    return {f"p{i:04d}": jnp.zeros(s) for i, s in enumerate(shapes)}


def make_step(guard: str):
    """A train-step tail: the update of params, momentum and EMA from ``grads``, skipped when not finite."""
    tx = optax.sgd(0.01, momentum=0.937, nesterov=True)

    def step(params, opt_state, ema, grads):
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))

        def learn():
            updates, new_opt = tx.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            return new_params, new_opt, jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, ema, new_params)

        def keep():
            return params, opt_state, ema

        if guard == "cond":
            return jax.lax.cond(finite, learn, keep)
        return jax.tree.map(lambda a, b: jnp.where(finite, a, b), learn(), keep())

    return tx, step


def measure(n: int, guard: str) -> tuple[int, float]:
    """``(lines of optimised HLO, compile seconds)`` of the tail for ``n`` leaves."""
    params = stand_in_params(n)
    tx, step = make_step(guard)
    lowered = jax.jit(step).lower(params, tx.init(params), params, params)
    t0 = time.perf_counter()
    compiled = lowered.compile(compiler_options())
    return compiled.as_text().count("\n"), time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leaves", default="100,200,400", help="comma-separated leaf counts")
    args = parser.parse_args(argv)
    print("| leaves | guard  | optimised HLO lines | compile s |")
    print("|-------:|--------|--------------------:|----------:|")
    for n in (int(v) for v in args.leaves.split(",")):
        for guard in ("select", "cond"):
            lines, seconds = measure(n, guard)
            print(f"| {n:6d} | {guard:6s} | {lines:19,d} | {seconds:9.1f} |", flush=True)


if __name__ == "__main__":
    main()
