"""YOLOv8n / YOLOv8s under the generic train step: BatchNorm statistics trained, checkpointed, used in eval.

The loss here is a fixed quadratic of the raw outputs (the step's contract is any ``loss_fn``; the yolov8 loss
itself is tested in tests/test_yolov8_model.py and the sharded run in test_yolov8_sharding.py).
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jaxdet.models import make_head  # noqa: E402
from train import checkpoint as ckpt_lib  # noqa: E402
from train import mesh as mesh_lib  # noqa: E402
from train import step as step_lib  # noqa: E402


def _loss_fn(outputs, batch, *, step, state):
    loss = sum(jnp.mean(jnp.square(o - 0.5)) for o in outputs)
    return loss, {"loss": loss}, state


def _numpy(tree) -> dict:
    return jax.tree.map(np.asarray, nnx.to_pure_dict(tree))


@pytest.mark.parametrize("scale", ["n", "s"])
def test_train_steps_update_and_restore_batch_statistics(scale, tmp_path):
    head = make_head({"head": "yolov8", "scale": scale}, None, num_classes=3)
    tx = optax.sgd(1e-3)
    graphdef, init_fn = step_lib.make_init_fn(lambda rngs: head.build_model(None, rngs=rngs), tx, seed=0)
    mesh = mesh_lib.make_mesh((-1,), ("data",))
    state = jax.jit(init_fn, out_shardings=mesh_lib.replicated(mesh))()
    stats0, params0 = _numpy(state["model_state"]), _numpy(state["params"])
    step = step_lib.jit_train_step(
        step_lib.make_train_step(graphdef, loss_fn=_loss_fn, tx=tx, lr_schedule=lambda s: 1e-3), mesh
    )
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32) for _ in range(3)]
    losses = []
    for i, im in enumerate(images):
        state, metrics = step(state, mesh_lib.global_batch(mesh, {"image": im}))
        losses.append(float(metrics["loss"]))
        if i == 0:
            bn1 = _numpy(state["model_state"])["model"][0]["bn"]
    assert int(state["step"]) == 3 and np.all(np.isfinite(losses)) and losses[0] != losses[-1]

    # Oracle for the stem BatchNorm after the first step: momentum 0.03 towards the batch moments of the
    # initial stem conv (unbiased variance, as torch), computed here from the initial kernel.
    kernel = params0["model"][0]["conv"]["kernel"]
    conv = jax.lax.conv_general_dilated(images[0], kernel, (2, 2), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    mean = np.asarray(jnp.mean(conv, (0, 1, 2)))
    var = np.asarray(jnp.var(conv, (0, 1, 2), ddof=1))
    np.testing.assert_array_equal(stats0["model"][0]["bn"]["mean"], 0.0)
    np.testing.assert_allclose(bn1["mean"], 0.03 * mean, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bn1["var"], 0.97 + 0.03 * var, rtol=1e-5)

    # Checkpoint round trip: parameters and statistics bit for bit; eval uses the running statistics.
    ckpt = ckpt_lib.Checkpointer(str(tmp_path / "ckpt"), keep=1)
    ckpt.save(3, state, {"step": 3})
    restored, _ = ckpt.restore(3, step_lib.abstract_state(jax.eval_shape(lambda: state), mesh))
    ckpt.close()
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    @jax.jit
    def predict(st, x):
        model = step_lib.merge_model(graphdef, st, train=False)
        assert model.model[0].bn.use_running_average
        return model(x)[0], step_lib.merge_model(graphdef, st, train=True)(x)[0]

    x = jnp.asarray(images[1])
    eval_restored, train_restored = predict({k: restored[k] for k in ("params", "model_state")}, x)
    eval_saved, _ = predict({k: state[k] for k in ("params", "model_state")}, x)
    np.testing.assert_array_equal(np.asarray(eval_restored), np.asarray(eval_saved))
    assert not np.allclose(np.asarray(train_restored), np.asarray(eval_restored))  # running stats != batch stats
