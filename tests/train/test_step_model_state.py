"""The generic train step writes back non-parameter model state: a toy model with BatchNorm.

The step knows no head; the BatchNorm statistics the forward pass updates must land in ``state["model_state"]``
(not be silently frozen), be restored from a checkpoint bit for bit, and evaluation must use them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from train import checkpoint as ckpt_lib
from train import mesh as mesh_lib
from train import model_state as model_state_lib
from train import step as step_lib

MOMENTUM = 0.9


class ConvBN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, momentum=MOMENTUM, rngs=rngs)

    def __call__(self, x):
        return self.bn(self.conv(x))


def _loss_fn(outputs, batch, *, step, state):
    loss = jnp.mean((outputs - 1.0) ** 2)
    return loss, {"loss": loss}, {"calls": state["calls"] + 1}


def _numpy(tree) -> dict:
    """An nnx.State as nested dicts of numpy arrays."""
    return jax.tree.map(np.asarray, nnx.to_pure_dict(tree))


def _batch(seed):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.normal(2.0, 3.0, (4, 8, 8, 3)), jnp.float32)}


def test_batch_statistics_are_written_back_and_restored(tmp_path):
    tx = optax.sgd(0.1)
    graphdef, init_fn = step_lib.make_init_fn(
        ConvBN, tx, seed=0, init_loss_state=lambda: {"calls": jnp.zeros((), jnp.int32)}
    )
    mesh = mesh_lib.make_mesh((-1,), ("data",))
    state = jax.jit(init_fn, out_shardings=mesh_lib.replicated(mesh))()
    before = _numpy(state["model_state"])
    params0 = _numpy(state["params"])
    np.testing.assert_array_equal(before["bn"]["mean"], np.zeros(4, np.float32))

    train_step = step_lib.make_train_step(graphdef, loss_fn=_loss_fn, tx=tx, lr_schedule=lambda s: 0.1)
    step = step_lib.jit_train_step(train_step, mesh)
    batch = _batch(1)
    state, metrics = step(state, mesh_lib.global_batch(mesh, {k: np.asarray(v) for k, v in batch.items()}))

    # Oracle: the running averages after one step, from the initial conv applied by hand.
    kernel, bias = params0["conv"]["kernel"], params0["conv"]["bias"]
    conv = jax.lax.conv_general_dilated(batch["image"], kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
    mean, var = np.asarray(jnp.mean(conv, (0, 1, 2))), np.asarray(jnp.var(conv, (0, 1, 2)))
    after = _numpy(state["model_state"])
    np.testing.assert_allclose(after["bn"]["mean"], (1 - MOMENTUM) * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after["bn"]["var"], MOMENTUM * 1.0 + (1 - MOMENTUM) * var, rtol=1e-5)
    assert int(state["loss_state"]["calls"]) == 1 and int(state["step"]) == 1

    # Checkpoint round trip restores the statistics exactly.
    ckpt = ckpt_lib.Checkpointer(str(tmp_path / "ckpt"), keep=1)
    ckpt.save(1, state, {"step": 1})
    shapes = jax.eval_shape(lambda: state)
    restored, _ = ckpt.restore(1, step_lib.abstract_state(shapes, mesh))
    ckpt.close()
    for a, b in zip(jax.tree.leaves(state["model_state"]), jax.tree.leaves(restored["model_state"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # Evaluation runs on the running averages (not the batch's statistics).
    model = model_state_lib.merge_model(graphdef, restored, train=False)
    assert model.bn.use_running_average
    x = _batch(2)["image"]
    conv_x = model.conv(x)
    expected = (conv_x - after["bn"]["mean"]) / np.sqrt(after["bn"]["var"] + model.bn.epsilon)
    expected = expected * np.asarray(model.bn.scale[...]) + np.asarray(model.bn.bias[...])
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(expected), rtol=1e-5, atol=1e-5)
