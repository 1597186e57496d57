"""Subprocess body of test_yolov8_sharding.py: YOLOv8n train steps with the yolov8 head's loss, on a 1-device and
on an 8-device data mesh of the same process (``XLA_FLAGS=--xla_force_host_platform_device_count=8``).

Usage: ``python -m tests.train.yolov8_devices OUT.npz [float64|float32] [sgd|adamw] [grads]`` — writes, for each
mesh (prefix ``d1/`` and ``d8/``), the losses of the steps, the parameters and BatchNorm statistics after the
first (``step1/``) and the last step, and with ``grads`` the gradients of the first step (``grad/``; one more
compilation per mesh). The state is initialised eagerly (compiling the random initialisation takes longer than
running it).

float64 (the test's default) separates rounding from a real difference: there the two meshes agree to 3.8e-11
normwise on every parameter and statistic after 3 steps (measured). In float32 (``... OUT.npz float32 sgd grads``,
measured): the first step's gradients on 1 and 8 devices agree to at most 1.1e-4 normwise per array (median
4.9e-5; the BatchNorm biases' gradients, small residuals of cancelling sums, are the worst), so the global-batch
statistics are right and only the reduction order differs; the losses of the three steps agree to 2e-5; but the
parameters after the third step differ by up to 35 % (BatchNorm biases up to 23 %, median 2 %), with plain SGD,
so this is not Adam's normalisation of tiny gradients. With lr 0.05 this loss rises over the three steps (9.1,
9.5, 17.2): an unstable trajectory, and the task-aligned assignment (top-k, argmax) is discontinuous, so float32
rounding differences are amplified; which of the two dominates was not isolated.
"""

from __future__ import annotations

import sys

import jax

DTYPE = sys.argv[2] if len(sys.argv) > 2 else "float64"
jax.config.update("jax_enable_x64", DTYPE == "float64")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import AxisType  # noqa: E402

from jaxdet.data import SyntheticShapes, collate  # noqa: E402
from jaxdet.models import YOLO, make_head  # noqa: E402
from train import mesh as mesh_lib  # noqa: E402
from train import model_state as model_state_lib  # noqa: E402
from train import step as step_lib  # noqa: E402

STEPS, BATCH, SIZE, CLASSES = 3, 8, 64, 5
LR = {"sgd": 0.05, "adamw": 1e-3}


def batches(dtype) -> list[dict[str, np.ndarray]]:
    """``STEPS`` batches of synthetic shapes (``SIZE`` px, up to 4 objects per image, 6 GT slots)."""
    ds = SyntheticShapes("train", image_size=SIZE, num_images=STEPS * BATCH, seed=0)
    out = []
    for s in range(STEPS):
        b = collate([ds[s * BATCH + i] for i in range(BATCH)], max_objects=6)
        out.append({k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v for k, v in b.items()})
    return out


def trajectory(mesh, tx, optimizer: str, *, with_grads: bool) -> dict[str, np.ndarray]:
    """Every step's loss, the parameters and statistics after the first and the last step, and (``with_grads``)
    the first step's gradients, on ``mesh``."""
    dtype = jnp.dtype(DTYPE)
    head = make_head({"head": "yolov8", "scale": "n"}, None, num_classes=CLASSES)
    graphdef, init_fn = step_lib.make_init_fn(
        lambda rngs: YOLO(version="v8", scale="n", num_classes=CLASSES, rngs=rngs, param_dtype=dtype), tx, seed=0)
    repl = mesh_lib.replicated(mesh)
    state = jax.device_put(init_fn(), repl)
    train_step = step_lib.make_train_step(graphdef, loss_fn=head.loss, tx=tx, lr_schedule=lambda s: LR[optimizer])
    flat = lambda tree: {"/".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(tree)}  # noqa: E731
    data = batches(dtype)
    out = {}
    if with_grads:
        def first_grads(state, batch):  # the gradient the first step applies (the train step's loss_of)
            def loss_of(params):
                model = model_state_lib.merge_model(graphdef, dict(state, params=params))
                return head.loss(model(batch["image"]), batch, step=0, state={})[0]

            return jax.grad(loss_of)(state["params"])

        grads = jax.jit(first_grads, in_shardings=(repl, mesh_lib.batch_sharding(mesh)), out_shardings=repl)(
            state, mesh_lib.global_batch(mesh, data[0]))
        out.update({f"grad/{k}": v for k, v in flat(grads).items()})
    step = step_lib.jit_train_step(train_step, mesh)
    losses = []
    for i, batch in enumerate(data):
        state, metrics = step(state, mesh_lib.global_batch(mesh, batch))
        losses.append(float(metrics["loss"]))
        if i == 0:
            out.update({f"step1/{k}": v for k, v in flat(state["params"]).items()})
    out.update(flat(nnx.State.merge(state["params"], state["model_state"])))
    return {"losses": np.asarray(losses), **out}


def main(out_path: str, optimizer: str = "sgd", grads: str = "") -> None:
    if jax.device_count() != 8:
        raise SystemExit(f"needs XLA_FLAGS=--xla_force_host_platform_device_count=8, found {jax.device_count()}")
    tx = optax.sgd(LR["sgd"]) if optimizer == "sgd" else optax.adamw(LR["adamw"], weight_decay=5e-4)
    out = {}
    for n in (1, 8):
        mesh = jax.make_mesh((n,), ("data",), axis_types=(AxisType.Auto,), devices=jax.devices()[:n])
        out.update({f"d{n}/{k}": v for k, v in trajectory(mesh, tx, optimizer, with_grads=grads == "grads").items()})
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], *sys.argv[3:5])
