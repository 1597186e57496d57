"""Subprocess body of test_yolov8_sharding.py: a few YOLOv8n train steps on however many devices XLA_FLAGS gives.

Usage: python tests/train/yolov8_devices.py OUT.npz — writes the losses, parameters and BatchNorm statistics.

Runs in float64: in float32 the gradients of the BatchNorm biases are small residuals of cancelling sums (the
next BatchNorm removes most of a bias shift), so two reduction orders (1 vs 8 devices) differ by about 2 % in
those parameters after 3 steps while the losses agree to 4e-6 (measured); float64 separates rounding from a
real difference.
"""

from __future__ import annotations

import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jaxdet.models import YOLOv8  # noqa: E402
from train import mesh as mesh_lib  # noqa: E402
from train import step as step_lib  # noqa: E402

STEPS, BATCH, SIZE = 3, 8, 32


def loss_fn(outputs, batch, *, step, state):
    """A fixed quadratic of the raw outputs (the sharding property does not depend on the loss)."""
    loss = sum(jnp.mean(jnp.square(o - 0.5)) for o in outputs)
    return loss, {"loss": loss}, state


def main(out_path: str) -> None:
    tx = optax.sgd(0.05)  # SGD: the trajectory is linear in rounding differences (Adam's g/|g| amplifies them)
    graphdef, init_fn = step_lib.make_init_fn(
        lambda rngs: YOLOv8(scale="n", num_classes=3, rngs=rngs, param_dtype=jnp.float64), tx, seed=0)
    mesh = mesh_lib.make_mesh((-1,), ("data",))
    state = jax.jit(init_fn, out_shardings=mesh_lib.replicated(mesh))()
    train_step = step_lib.make_train_step(graphdef, loss_fn=loss_fn, tx=tx, lr_schedule=lambda s: 0.05)
    step = step_lib.jit_train_step(train_step, mesh)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(STEPS):
        batch = {"image": rng.uniform(0, 1, (BATCH, SIZE, SIZE, 3))}
        state, metrics = step(state, mesh_lib.global_batch(mesh, batch))
        losses.append(float(metrics["loss"]))
    flat = {"/".join(map(str, p)): np.asarray(v[...]) for p, v in
            nnx.to_flat_state(nnx.State.merge(state["params"], state["model_state"]))}
    np.savez(out_path, losses=np.asarray(losses), devices=len(jax.devices()), **flat)


if __name__ == "__main__":
    main(sys.argv[1])
