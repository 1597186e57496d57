"""``train.freeze`` (train.freeze): ultralytics' frozen tensors, no update through an optax mask, frozen BatchNorms in
eval mode, and the error when nothing is left to train."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import yolov8n_shapes
from train import freeze
from train import model_state as model_state_lib
from train import step as step_lib
from train import task as task_lib


def _config(value, **train):
    c = yolov8n_shapes.get_config()
    c.train.freeze = value if isinstance(value, str) else repr(value)  # a string field (the command line's)
    for k, v in train.items():
        c.train[k] = v
    return c


def _build(c):
    head = task_lib.make_head(c)
    return lambda rngs: head.build_model(c.model, rngs=rngs)


@pytest.mark.parametrize("value, items", [
    ("", []), (0, []), (None, []), ("0", []), (3, [0, 1, 2]), ("3", [0, 1, 2]), ([4, 7], [4, 7]),
    ("[0, 1, '22.cv2']", [0, 1, "22.cv2"]), ("0,1,22.cv2", [0, 1, "22.cv2"]), ("(5,)", [5]), ("22.cv3", ["22.cv3"]),
])
def test_parse_freeze_reads_ints_lists_and_strings(value, items):
    assert freeze.parse_freeze(value) == items


def test_parse_freeze_rejects_bad_values():
    with pytest.raises(freeze.FreezeError, match="train.freeze=-1"):
        freeze.parse_freeze(-1)
    with pytest.raises(freeze.FreezeError, match="train.freeze item"):
        freeze.parse_freeze([1.5])


@pytest.mark.parametrize("value", [10, [0, 3, "22.cv2"], "22"])
def test_the_frozen_tensors_are_ultralytics_trainers(value):
    """The same tensors as ``BaseTrainer._setup_train``'s ``any(x in k for x in freeze_layer_names)`` over
    ``named_parameters()``, less ``.dfl`` (a constant here, no parameter)."""
    pytest.importorskip("ultralytics")
    from ultralytics.nn.tasks import DetectionModel  # noqa: PLC0415 - optional dependency

    items = freeze.parse_freeze(value)
    names = [f"model.{x}." for x in items] + [".dfl"]
    theirs = {k for k, _ in DetectionModel("yolov8n.yaml", nc=5, verbose=False).named_parameters()
              if any(x in k for x in names)}
    c = _config(value)
    _, _, ours = freeze.count(nnx.eval_shape(lambda: _build(c)(nnx.Rngs(0))), value)
    assert set(ours) == {k for k in theirs if ".dfl" not in k} and ours


def test_freezing_everything_is_an_error():
    c = _config(23)  # YOLOv8's layers are model.0 .. model.22
    with pytest.raises(freeze.FreezeError, match=r"train.freeze=23 freezes all 183 parameter tensors: nothing is "
                                                 r"left to train"):
        step_lib.make_recipe_init_fn(c.train, _build(c), seed=0)


@pytest.mark.slow
def test_frozen_parameters_and_batchnorm_statistics_do_not_move():
    """Three SGD steps (momentum, weight decay 5e-4) with layers 0-9 frozen: their parameters and BatchNorm statistics
    are bit-identical to the start, the others moved; the optimizer holds no state for the frozen ones."""
    c = _config(10, steps=3, warmup_steps=0, nbs=2, batch_size=2, weight_decay=5e-4)
    c.data.image_size = 64
    build = freeze.with_frozen_batchnorms(_build(c), c.train.freeze)
    recipe, graphdef, init_fn = step_lib.make_recipe_init_fn(c.train, build, seed=0)
    assert "train.freeze=10: 81 of 183 parameter tensors frozen" in recipe.description
    state = init_fn()
    start = {part: model_state_lib.flat_variables(jax.device_get(state[part])) for part in ("params", "model_state")}

    def loss_fn(outputs, batch, *, step, state):
        loss = sum(jnp.mean(jnp.square(o)) for o in outputs)
        return loss, {}, state

    train_step = jax.jit(step_lib.make_train_step(graphdef, loss_fn=loss_fn, tx=recipe.tx,
                                                  lr_schedule=recipe.schedules["lr"], accumulate=recipe.accumulate,
                                                  grad_scale=recipe.grad_scale))
    rng = np.random.default_rng(0)
    for _ in range(3):
        state, _ = train_step(state, {"image": jnp.asarray(rng.integers(0, 255, (2, 64, 64, 3)), jnp.uint8)})
    pats = freeze.patterns(10)
    moved = {True: 0, False: 0}
    for part in ("params", "model_state"):
        end = model_state_lib.flat_variables(jax.device_get(state[part]))
        for path, value in end.items():
            frozen = freeze.is_frozen(model_state_lib.display_name(path), pats)
            same = np.array_equal(np.asarray(value), np.asarray(start[part][path]))
            if frozen:
                assert same, path
            moved[frozen] += not same
    assert moved[False] > 100
    opt_leaves = [x for x in jax.tree.leaves(state["opt_state"]) if np.ndim(x) > 0]
    trainable = [x for p, x in start["params"].items()
                 if not freeze.is_frozen(model_state_lib.display_name(p), pats) and np.ndim(x) > 0]
    assert sum(np.size(x) for x in opt_leaves) == sum(np.size(x) for x in trainable)  # momentum: trainable only
    model = model_state_lib.merge_model(graphdef, state)
    assert model.model[0].bn.use_running_average and not model.model[12].cv1.bn.use_running_average
