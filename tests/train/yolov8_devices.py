"""Subprocess body of test_yolov8_sharding.py: a few YOLOv8n train steps on however many devices XLA_FLAGS gives.

Usage: python tests/train/yolov8_devices.py OUT.npz — writes the losses, parameters and BatchNorm statistics.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jaxdet.models import make_head  # noqa: E402
from train import mesh as mesh_lib  # noqa: E402
from train import step as step_lib  # noqa: E402

STEPS, BATCH, SIZE = 3, 8, 32


def loss_fn(outputs, batch, *, step, state):
    """A fixed quadratic of the raw outputs (the sharding property does not depend on the loss)."""
    loss = sum(jnp.mean(jnp.square(o - 0.5)) for o in outputs)
    return loss, {"loss": loss}, state


def main(out_path: str) -> None:
    head = make_head({"head": "yolov8", "scale": "n"}, None, num_classes=3)
    tx = optax.sgd(0.05)  # SGD: the trajectory is linear in rounding differences (Adam's g/|g| amplifies them)
    graphdef, init_fn = step_lib.make_init_fn(lambda rngs: head.build_model(None, rngs=rngs), tx, seed=0)
    mesh = mesh_lib.make_mesh((-1,), ("data",))
    state = jax.jit(init_fn, out_shardings=mesh_lib.replicated(mesh))()
    train_step = step_lib.make_train_step(graphdef, loss_fn=loss_fn, tx=tx, lr_schedule=lambda s: 0.05)
    step = step_lib.jit_train_step(train_step, mesh)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(STEPS):
        batch = {"image": rng.uniform(0, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32)}
        state, metrics = step(state, mesh_lib.global_batch(mesh, batch))
        losses.append(float(metrics["loss"]))
    flat = {"/".join(map(str, p)): np.asarray(v[...]) for p, v in
            nnx.to_flat_state(nnx.State.merge(state["params"], state["model_state"]))}
    np.savez(out_path, losses=np.asarray(losses), devices=len(jax.devices()), **flat)


if __name__ == "__main__":
    main(sys.argv[1])
