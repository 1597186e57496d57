"""YOLOv8n / YOLOv8s under the generic train step: BatchNorm statistics trained, checkpointed, used in eval.

The loss here is a fixed quadratic of the raw outputs (the step's contract is any ``loss_fn``; the yolov8 loss
itself is tested in tests/models/test_yolo.py and, through this train step on 1 and 8 devices, in
test_yolov8_sharding.py). 32-px images keep the compilations small; the n model's three steps are shared by the
tests through a module fixture, and the s model is built and takes one step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdet.models import make_head
from train import checkpoint as ckpt_lib
from train import mesh as mesh_lib
from train import model_state as model_state_lib
from train import step as step_lib

pytestmark = pytest.mark.slow  # compiles full YOLOv8 train steps

SIZE, BATCH = 32, 2


def _loss_fn(outputs, batch, *, step, state):
    loss = sum(jnp.mean(jnp.square(o - 0.5)) for o in outputs)
    return loss, {"loss": loss}, state


def _numpy(tree) -> dict:
    return jax.tree.map(np.asarray, nnx.to_pure_dict(tree))


def _train(scale: str, steps: int):
    """``(graphdef, mesh, initial params and model state as numpy, final state, images, losses, model state after
    the first step)`` after ``steps`` SGD steps."""
    head = make_head({"head": "yolov8", "scale": scale}, None, num_classes=3)
    tx = optax.sgd(1e-3)
    graphdef, init_fn = step_lib.make_init_fn(lambda rngs: head.build_model(None, rngs=rngs), tx, seed=0)
    mesh = mesh_lib.make_mesh((-1,), ("data",))
    state = jax.device_put(init_fn(), mesh_lib.replicated(mesh))  # eager: faster than compiling the init
    initial = {k: _numpy(state[k]) for k in ("params", "model_state")}
    step = step_lib.jit_train_step(
        step_lib.make_train_step(graphdef, loss_fn=_loss_fn, tx=tx, lr_schedule=lambda s: 1e-3), mesh
    )
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32) for _ in range(steps)]
    losses, after_first = [], None
    for i, im in enumerate(images):
        state, metrics = step(state, mesh_lib.global_batch(mesh, {"image": im}))
        losses.append(float(metrics["loss"]))
        if i == 0:
            after_first = _numpy(state["model_state"])
    return graphdef, mesh, initial, state, images, losses, after_first


@pytest.fixture(scope="module")
def trained_n():
    return _train("n", steps=3)


def test_yolov8n_steps_update_batch_statistics_as_torch(trained_n):
    graphdef, mesh, initial, state, images, losses, after_first = trained_n
    assert int(state["step"]) == 3 and np.all(np.isfinite(losses)) and losses[0] != losses[-1]
    # Oracle for the stem BatchNorm after the first step: momentum 0.03 towards the batch moments of the
    # initial stem conv (unbiased variance, as torch), computed here from the initial kernel.
    bn1 = after_first["model"][0]["bn"]
    kernel = initial["params"]["model"][0]["conv"]["kernel"]
    conv = jax.lax.conv_general_dilated(images[0], kernel, (2, 2), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    mean = np.asarray(jnp.mean(conv, (0, 1, 2)))
    var = np.asarray(jnp.var(conv, (0, 1, 2), ddof=1))
    np.testing.assert_array_equal(initial["model_state"]["model"][0]["bn"]["mean"], 0.0)
    np.testing.assert_allclose(bn1["mean"], 0.03 * mean, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bn1["var"], 0.97 + 0.03 * var, rtol=1e-5)
    assert int(bn1["num_batches_tracked"]) == 1
    assert int(_numpy(state["model_state"])["model"][0]["bn"]["num_batches_tracked"]) == 3


def test_yolov8n_checkpoint_restores_statistics_and_eval_uses_them(trained_n, tmp_path):
    graphdef, mesh, _, state, images, _, _ = trained_n
    # Checkpoint round trip: parameters and statistics bit for bit; eval uses the running statistics.
    ckpt = ckpt_lib.Checkpointer(str(tmp_path / "ckpt"), keep=1)
    ckpt.save(3, state, {"step": 3})
    restored, _ = ckpt.restore(3, step_lib.abstract_state(jax.eval_shape(lambda: state), mesh))
    ckpt.close()
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    @jax.jit
    def predict(st, x):
        model = model_state_lib.merge_model(graphdef, st, train=False)
        assert model.model[0].bn.use_running_average
        return model(x)[0], model_state_lib.merge_model(graphdef, st, train=True)(x)[0]

    x = jnp.asarray(images[1])
    eval_restored, train_restored = predict({k: restored[k] for k in ("params", "model_state")}, x)
    eval_saved, _ = predict({k: state[k] for k in ("params", "model_state")}, x)
    np.testing.assert_array_equal(np.asarray(eval_restored), np.asarray(eval_saved))
    assert not np.allclose(np.asarray(train_restored), np.asarray(eval_restored))  # running stats != batch stats


def test_yolov8s_builds_and_takes_a_step():
    _, _, initial, state, _, losses, _ = _train("s", steps=1)
    assert np.isfinite(losses[0]) and int(state["step"]) == 1
    stem = _numpy(state["model_state"])["model"][0]["bn"]
    assert stem["mean"].shape == (32,) and np.abs(stem["mean"]).max() > 0  # s: stem width 32, statistics moved
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), _numpy(state["params"]), initial["params"])
    assert max(jax.tree.leaves(moved)) > 0
