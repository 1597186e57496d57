"""The ultralytics training recipe and the model EMA (train/recipe.py, train/step.py).

- The whole recipe (parameter groups, warm-up of the LRs, the momentum and the accumulation, linear decay,
  nominal batch, weight-decay scaling, clipping, EMA) against ultralytics' own code path driven on a torch twin
  of a tiny model: ``BaseTrainer.build_optimizer``, torch SGD/AdamW, ``LambdaLR``, the warm-up block of
  ``BaseTrainer._do_train`` (written out below from its source) and ``ModelEMA``.
- Gradient accumulation over the nominal batch equals one step on the big batch.
- The weight-decay groups of the YOLOv8 and Detector models.
- The EMA of the parameters and the BatchNorm statistics against the ModelEMA formula by hand; a non-finite step
  leaves it alone.
"""

from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.utils.torch_utils import ModelEMA

from configs import yolov1_shapes, yolov8n_shapes
from tests.train.test_step_model_state import ConvBN
from train import model_state as model_state_lib
from train import recipe as recipe_lib
from train import step as step_lib
from train.task import make_head
from train.validate import ConfigError, check_recipe, validate_config

IN, HID, OUT = 5, 4, 2


class Tiny(nnx.Module):
    """Linear -> LayerNorm -> Linear: one parameter of each ultralytics group (kernels, a norm scale, biases)."""

    def __init__(self, rngs):
        self.fc = nnx.Linear(IN, HID, rngs=rngs)
        self.norm = nnx.LayerNorm(HID, epsilon=1e-5, rngs=rngs)
        self.out = nnx.Linear(HID, OUT, rngs=rngs)

    def __call__(self, x):
        return self.out(self.norm(self.fc(x)))


def _loss_fn(outputs, batch, *, step, state):
    loss = jnp.mean(jnp.sum((outputs - batch["target"]) ** 2, -1))  # normalised: mean over the batch
    return loss, {}, state


def _train_cfg(**over):
    tc = ml_collections.ConfigDict(dict(
        recipe="ultralytics", optimizer="sgd", steps=12, batch_size=4, learning_rate=0.05, lrf=0.01,
        momentum=0.937, weight_decay=5e-4, warmup_steps=6, warmup_bias_lr=0.1, warmup_momentum=0.8, nbs=16,
        grad_clip=10.0, ema=True, ema_decay=0.9999, ema_tau=2000.0, end_lr_factor=0.02,
    ))
    tc.update(over)
    return tc


def _data(n_batches, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2.0, (n_batches, batch_size, IN)).astype(np.float32)
    t = rng.normal(0, 1.0, (n_batches, batch_size, OUT)).astype(np.float32)
    return [{"image": x[i], "target": t[i]} for i in range(n_batches)]


def _run_jax(tc, batches, *more, build=Tiny, loss_fn=_loss_fn):
    """Our recipe on ``batches``: the final state and each step's metrics (a list of those pairs, one per sequence,
    if ``more`` sequences are given: the same compiled step runs them all)."""
    recipe = recipe_lib.make_recipe(tc, build)
    graphdef, init_fn = step_lib.make_init_fn(build, recipe.tx, seed=0, accumulate=recipe.accumulate is not None,
                                              ema=recipe.ema is not None)
    step = jax.jit(step_lib.make_train_step(
        graphdef, loss_fn=loss_fn, tx=recipe.tx, lr_schedule=recipe.schedules["lr"], schedules=recipe.schedules,
        accumulate=recipe.accumulate, grad_scale=recipe.grad_scale, ema=recipe.ema))
    results, init_fn = [], jax.jit(init_fn)  # (eager, its many small ops would each compile)
    for sequence in (batches, *more):
        state, log = init_fn(), []
        for b in sequence:
            state, metrics = step(state, b)
            log.append(jax.device_get(metrics))
        results.append((jax.device_get(state), log))
    return results if more else results[0]


def _torch_twin(params):

    p = nnx.to_pure_dict(params)
    model = torch.nn.Sequential(torch.nn.Linear(IN, HID), torch.nn.LayerNorm(HID, eps=1e-5), torch.nn.Linear(HID, OUT))
    with torch.no_grad():
        for i, name in ((0, "fc"), (2, "out")):
            model[i].weight.copy_(torch.from_numpy(np.asarray(p[name]["kernel"]).T.copy()))
            model[i].bias.copy_(torch.from_numpy(np.array(p[name]["bias"])))
        model[1].weight.copy_(torch.from_numpy(np.array(p["norm"]["scale"])))
        model[1].bias.copy_(torch.from_numpy(np.array(p["norm"]["bias"])))
    return model


def _as_torch_layout(params) -> dict[str, np.ndarray]:
    p = nnx.to_pure_dict(params)
    return {
        "0.weight": np.asarray(p["fc"]["kernel"]).T, "0.bias": np.asarray(p["fc"]["bias"]),
        "1.weight": np.asarray(p["norm"]["scale"]), "1.bias": np.asarray(p["norm"]["bias"]),
        "2.weight": np.asarray(p["out"]["kernel"]).T, "2.bias": np.asarray(p["out"]["bias"]),
    }


def _ultralytics_run(tc, init_params, batches):
    """ultralytics' trainer loop on the torch twin, one "epoch" per batch (this recipe's per-batch decay).

    Returns the final model, its ModelEMA and per batch ``(lr of each param_group, momentum, accumulate, whether
    it ended with an optimizer step)``.
    """

    model = _torch_twin(init_params)
    bs, nbs, steps, nw = int(tc.batch_size), int(tc.nbs), int(tc.steps), int(tc.warmup_steps)
    # _build_train_pipeline
    accumulate = max(round(nbs / bs), 1)
    weight_decay = float(tc.weight_decay) * bs * accumulate / nbs
    accumulate = min(accumulate, steps)
    # MuSGD reads the head as model.model[-1] (here one without class branches), unregistered: same state dict
    object.__setattr__(model, "model", [model[-1]])
    optimizer = BaseTrainer.build_optimizer(
        types.SimpleNamespace(), model, name={"sgd": "SGD", "adamw": "AdamW", "musgd": "MuSGD"}[tc.optimizer],
        lr=float(tc.learning_rate), momentum=float(tc.momentum), decay=weight_decay)
    lrf = float(tc.lrf)
    lf = lambda x: max(1 - x / steps, 0) * (1.0 - lrf) + lrf  # noqa: E731 - _setup_scheduler, linear
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    ema = ModelEMA(model, decay=float(tc.ema_decay), tau=float(tc.ema_tau))
    scheduler.last_epoch = -1
    # _do_train
    last_opt_step, acc0, log = -1, accumulate, []
    for ni, batch in enumerate(batches):
        epoch = ni
        scheduler.step()  # once per epoch, before its batches (the warning it gives is ultralytics', too)
        if nw and ni <= nw:
            xi = [0, nw]
            accumulate = max(1, int(np.interp(ni, xi, [1, acc0]).round()))
            for x in optimizer.param_groups:
                start = float(tc.warmup_bias_lr) if x.get("param_group") == "bias" else 0.0
                x["lr"] = float(np.interp(ni, xi, [start, x["initial_lr"] * lf(epoch)]))
                if "momentum" in x:
                    x["momentum"] = float(np.interp(ni, xi, [float(tc.warmup_momentum), float(tc.momentum)]))
        out = model(torch.from_numpy(batch["image"]))
        loss = ((out - torch.from_numpy(batch["target"])) ** 2).sum(-1).mean() * bs  # ultralytics' loss * B
        loss.backward()
        stepped = ni - last_opt_step >= accumulate
        log.append(({g["param_group"]: g["lr"] for g in optimizer.param_groups},
                    optimizer.param_groups[0].get("momentum"), accumulate, stepped))
        if stepped:  # optimizer_step
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=float(tc.grad_clip))
            optimizer.step()
            optimizer.zero_grad()
            ema.update(model)
            last_opt_step = ni
    return model, ema, log


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "musgd"])
def test_recipe_matches_ultralytics_trainer_driving_torch(optimizer):
    pytest.importorskip("ultralytics")
    lr0 = 0.05 if optimizer == "sgd" else 0.01
    # short tau: the EMA lags visibly; strong decay: a parameter in the wrong group shows
    tc = _train_cfg(optimizer=optimizer, learning_rate=lr0, weight_decay=0.05, ema_tau=3.0)
    batches = _data(12, 4)
    state, log = _run_jax(tc, batches)
    init_params = step_lib.make_init_fn(Tiny, optax.identity(), seed=0)[1]()["params"]  # eager: small
    model, ema, torch_log = _ultralytics_run(tc, init_params, batches)

    lr_tol = dict(rtol=1e-6, atol=1e-8)  # float32 values of an interpolation from 0.1 (its ulp: 7e-9)
    for i, (ours, (lrs, momentum, accumulate, stepped)) in enumerate(zip(log, torch_log, strict=True)):
        np.testing.assert_allclose(ours["lr"], lrs["weight"], **lr_tol, err_msg=f"lr, batch {i}")
        np.testing.assert_allclose(ours["lr"], lrs["bn"], **lr_tol, err_msg=f"norm lr, batch {i}")
        np.testing.assert_allclose(ours["lr_bias"], lrs["bias"], **lr_tol, err_msg=f"bias lr, batch {i}")
        if optimizer == "musgd":  # the two kernels are MuSGD's "muon" group
            np.testing.assert_allclose(ours["lr"], lrs["muon"], **lr_tol, err_msg=f"muon lr, batch {i}")
        if optimizer in ("sgd", "musgd"):
            np.testing.assert_allclose(ours["momentum"], momentum, rtol=1e-6, err_msg=f"momentum, batch {i}")
        assert int(ours["accumulate"]) == accumulate, (i, ours["accumulate"], accumulate)
        assert bool(ours["updated"]) == stepped, i
    # the warm-up really ramps (np.interp rounded half to even: 1.5 -> 2, 2.5 -> 2, 3.5 -> 4) up to nbs / batch = 4
    assert [a for _, _, a, _ in torch_log[:8]] == [1, 2, 2, 2, 3, 4, 4, 4]
    assert [int(m["updated"]) for m in log] == [1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0]

    want = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    want_ema = {k: v.detach().numpy() for k, v in ema.ema.state_dict().items()}
    got, got_ema = _as_torch_layout(state["params"]), _as_torch_layout(state["ema"]["params"])
    assert int(state["ema"]["updates"]) == ema.updates == 4
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=2e-6, err_msg=k)
        np.testing.assert_allclose(got_ema[k], want_ema[k], rtol=2e-5, atol=2e-6, err_msg=f"ema {k}")
        assert np.max(np.abs(want_ema[k] - want[k])) > 1e-3, k  # the EMA is not just the weights


def test_gradient_accumulation_equals_one_big_batch_step():
    """4 batches of 4 with nbs=16 (2 updates over 8 batches) == 2 steps on the batches of 16 they make up."""
    base = dict(warmup_steps=0, lrf=1.0, grad_clip=0.0, nbs=16, steps=8, ema_tau=3.0)  # constant LR
    small = _data(8, 4, seed=3)
    big = [{k: np.concatenate([b[k] for b in small[4 * j: 4 * j + 4]]) for k in small[0]} for j in range(2)]
    a, log_a = _run_jax(_train_cfg(batch_size=4, **base), small)
    b, _ = _run_jax(_train_cfg(batch_size=16, **base), big)
    assert [int(m["updated"]) for m in log_a] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert int(a["ema"]["updates"]) == int(b["ema"]["updates"]) == 2
    for key in ("params", "ema"):
        for x, y in zip(jax.tree.leaves(a[key]), jax.tree.leaves(b[key])):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=key)  # float32
    assert not np.any(jax.tree.leaves(jax.tree.map(lambda v: np.any(v != 0), a["accum"]["grads"])))


def test_a_non_finite_batch_inside_an_accumulation_changes_nothing():
    """b0..b5 with a NaN batch after b2 (inside an accumulation of the warm-up ramp) == b0..b5: the accumulator,
    the optimizer, the EMA and the schedules' position skip it."""
    tc = _train_cfg(steps=8, warmup_steps=3)
    good = _data(6, 4, seed=5)
    nan = dict(good[0], image=np.full_like(good[0]["image"], np.nan))
    (a, log_a), (b, _) = _run_jax(tc, good[:3] + [nan] + good[3:], good)
    assert [float(m["skipped"]) for m in log_a] == [0, 0, 0, 1, 0, 0, 0]
    assert int(a["accum"]["count"]) == int(b["accum"]["count"]) and int(a["ema"]["updates"]) > 1
    for key in ("params", "opt_state", "accum", "ema"):
        la, lb = jax.tree.leaves(a[key]), jax.tree.leaves(b[key])
        assert len(la) == len(lb) > 0
        for x, y in zip(la, lb):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=key)


def _expected_groups(params) -> dict[tuple, str]:
    """By name, independently of the code under test: ``bias``, the norms' ``scale``, the rest (kernels)."""
    out = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]:
        keys = tuple(k.key for k in path)
        out[keys] = {"bias": "bias", "scale": "norm"}.get(keys[-1], "weight")
        if out[keys] == "weight":
            assert keys[-1] == "kernel", keys
        if out[keys] == "norm":
            assert keys[-2] in ("bn", "norm"), keys
    return out


@pytest.mark.parametrize("head", ["yolov8", "yolov1"])
def test_no_weight_decay_on_biases_and_norm_scales(head):

    config = (yolov8n_shapes if head == "yolov8" else yolov1_shapes).get_config()
    build = lambda rngs: make_head(config).build_model(config.model, rngs=rngs)  # noqa: E731
    model = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
    _, params, _ = model_state_lib.split_model(model)
    labels = recipe_lib.param_labels(model)(params)
    got = {tuple(k.key for k in path[:-1]): v for path, v in jax.tree_util.tree_flatten_with_path(labels)[0]}
    want = _expected_groups(params)
    assert got == want
    assert {"weight", "norm", "bias"} == set(want.values())
    if head == "yolov1":  # the mask through the optimizer: zero gradients, so only the decay moves parameters
        tc = _train_cfg(warmup_steps=0, nbs=4, batch_size=4, weight_decay=0.01, learning_rate=0.1)
        tx, _ = recipe_lib.make_ultralytics_optimizer(tc, recipe_lib.param_labels(model))
        rng = np.random.default_rng(0)  # values for the abstract parameters (building the model takes long)
        p = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), params)
        zero_grad_update = jax.jit(lambda p: tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p, batch_index=0))
        updates, _ = zero_grad_update(p)
        for path, u in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(updates))[0]:
            keys = tuple(k.key for k in path)
            value = np.asarray(_get(nnx.to_pure_dict(p), keys))
            if want[keys] == "weight":  # torch SGD, first step: buf = wd p; p -= lr (1 + mu) wd p (Nesterov)
                np.testing.assert_allclose(np.asarray(u), -0.1 * (1 + 0.937) * 0.01 * value, rtol=1e-5, atol=1e-9)
            else:
                np.testing.assert_array_equal(np.asarray(u), 0.0)


def _get(tree, keys):
    for k in keys:
        tree = tree[k]
    return tree


def _bn_loss(outputs, batch, *, step, state):
    loss = jnp.mean((outputs - 1.0) ** 2)
    return loss, {}, state


def test_ema_of_params_and_batch_statistics_is_modelema_and_skips_non_finite_steps():
    decay, tau = 0.9, 2.0  # short ramp: d_1..3 = 0.35, 0.57, 0.70
    tx = optax.sgd(0.1)
    graphdef, init_fn = step_lib.make_init_fn(ConvBN, tx, seed=0, ema=True)
    step = jax.jit(step_lib.make_train_step(graphdef, loss_fn=_bn_loss, tx=tx, lr_schedule=lambda s: 0.1,
                                            ema=(decay, tau)))
    state = jax.device_get(init_fn())
    flat = lambda s: [np.asarray(x, np.float64) for x in jax.tree.leaves((s["params"], s["model_state"]))]  # noqa
    expected = flat(state)
    rng = np.random.default_rng(0)
    for u in (1, 2, 3):
        batch = {"image": rng.normal(2.0, 3.0, (4, 8, 8, 3)).astype(np.float32)}
        state, _ = step(state, batch)
        state = jax.device_get(state)
        d = decay * (1 - math.exp(-u / tau))
        expected = [d * e + (1 - d) * m for e, m in zip(expected, flat(state))]
        assert int(state["ema"]["updates"]) == u
    got = [np.asarray(x) for x in jax.tree.leaves((state["ema"]["params"], state["ema"]["model_state"]))]
    assert len(got) == len(expected) == 6  # conv kernel and bias, BatchNorm scale and bias, mean and var
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state["ema"]["model_state"])[0]]
    assert any("mean" in n for n in names) and any("var" in n for n in names)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)
    ema_state, raw_state = nnx.to_pure_dict(state["ema"]["model_state"]), nnx.to_pure_dict(state["model_state"])
    for name in ("mean", "var"):  # really an average of the statistics, not their current values
        assert np.max(np.abs(np.asarray(ema_state["bn"][name]) - np.asarray(raw_state["bn"][name]))) > 1e-2, name
    ema_bias, raw_bias = (np.asarray(nnx.to_pure_dict(s["params"])["bn"]["bias"]) for s in (state["ema"], state))
    assert np.max(np.abs(ema_bias - raw_bias)) > 1e-2  # (the kernel hardly moves: BatchNorm follows it)
    for a, b in zip(jax.tree.leaves(model_state_lib.eval_variables(state)), got, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)  # evaluation and predict get the EMA

    poisoned = {"image": np.full((4, 8, 8, 3), np.nan, np.float32)}
    after, metrics = step(state, poisoned)
    after = jax.device_get(after)
    assert float(metrics["skipped"]) == 1.0
    assert int(after["ema"]["updates"]) == 3
    for x, y in zip(jax.tree.leaves(after["ema"]), jax.tree.leaves(state["ema"])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_eval_variables_without_ema_are_the_raw_ones():
    graphdef, init_fn = step_lib.make_init_fn(ConvBN, optax.sgd(0.1), seed=0)
    state = init_fn()
    params, model_state = model_state_lib.eval_variables(state)
    assert params is state["params"] and model_state is state["model_state"]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("recipe", "yolo", "train.recipe must be one of ('jaxdet', 'ultralytics'); got 'yolo'."),
        ("optimizer", "adam", "train.optimizer must be one of ('sgd', 'adamw', 'musgd', 'auto'); got 'adam'."),
        ("momentum", 1.0, "train.momentum must be in [0.0, 1.0); got 1.0."),
        ("lrf", 0.0, "train.lrf must be > 0.0; got 0.0."),
        ("warmup_bias_lr", -0.1, "train.warmup_bias_lr must be >= 0.0; got -0.1."),
        ("warmup_momentum", 1.5, "train.warmup_momentum must be in [0.0, 1.0); got 1.5."),
        ("nbs", 0, "train.nbs must be a positive int; got 0."),
        ("ema", 1, "train.ema must be True or False; got 1."),
        ("ema_decay", 1.5, "train.ema_decay must be in [0.0, 1.0]; got 1.5."),
        ("ema_tau", 0.0, "train.ema_tau must be > 0.0; got 0.0."),
    ],
)
def test_bad_recipe_fields_are_refused_naming_the_field(field, value, message):

    check_recipe(_train_cfg())  # the valid base
    tc = ml_collections.ConfigDict(dict(_train_cfg().to_dict(), **{field: value}))  # (a config file's own types)
    with pytest.raises(ConfigError) as err:
        check_recipe(tc)
    assert str(err.value) == message


def test_validate_config_checks_the_recipe(tmp_path):

    config = yolov8n_shapes.get_config()
    validate_config(config, str(tmp_path))
    config.train.optimizer = "lion"
    with pytest.raises(ConfigError, match=r"train.optimizer must be one of \('sgd', 'adamw', 'musgd', 'auto'\); "
                                          r"got 'lion'"):
        validate_config(config, str(tmp_path))
