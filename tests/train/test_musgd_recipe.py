"""``train.optimizer = "musgd" | "auto"`` of the ultralytics recipe (train/recipe.py) against ultralytics 8.4.190.

- MuSGD's eight parameter groups (Muon / weight / norm / bias, each with the 3× lr class branches) of YOLOv8n and
  YOLO26n equal those ``BaseTrainer.build_optimizer(name="MuSGD")`` builds for ``DetectionModel``, tensor by
  tensor. (The whole MuSGD recipe against ultralytics' trainer loop: tests/train/test_recipe.py.)
- ``"auto"`` picks what ``build_optimizer(name="auto")`` picks (optimizer, lr0, momentum) on both sides of
  10,000 iterations, with the iterations counted as ultralytics counts them.
- A short ``--config.train.optimizer=musgd`` run of the stand-in task trains, logs the class-branch lrs and
  resumes bit-identically after a SIGKILL.
"""

from __future__ import annotations

import math
import signal
import types

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.nn.tasks import DetectionModel

from configs import yolov8n_shapes
from jaxdet.models.ultralytics_io import tensor_name
from jaxdet.models.yolo import YOLO
from tests.train import trainproc as tp
from train import model_state as model_state_lib
from train import recipe as recipe_lib

NC = 5
TORCH_GROUP = {"muon": "muon", "weight": "weight", "bn": "norm", "bias": "bias"}


def _ultralytics_groups(version: str) -> dict[str, str]:
    """torch name -> our label, from the groups ``build_optimizer(name="MuSGD")`` builds."""
    model = DetectionModel(f"yolo{version}n.yaml", nc=NC, verbose=False)
    optimizer = BaseTrainer.build_optimizer(types.SimpleNamespace(), model, name="MuSGD", lr=0.01, momentum=0.9,
                                            decay=5e-4)
    name_of = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for g in optimizer.param_groups:
        boosted = math.isclose(g["lr"], 0.03)
        for p in g["params"]:
            out[name_of[id(p)]] = TORCH_GROUP[g["param_group"]] + ("_cls" if boosted else "")
    return out


@pytest.mark.parametrize("version", ["v8", "26"])
def test_musgd_groups_are_build_optimizers(version):
    model = nnx.eval_shape(lambda: YOLO(version=version, scale="n", num_classes=NC, rngs=nnx.Rngs(0)))
    params = model_state_lib.split_model(model)[1]
    labels = recipe_lib.param_labels(model, "musgd")(params)
    ours = {tensor_name(tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))): label
            for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]}
    theirs = _ultralytics_groups(version.removeprefix("v") if version == "26" else version)
    # ultralytics' DFL conv (a frozen 4-D weight in the muon group, never updated) has no parameter here
    assert set(theirs) - set(ours) <= {"model.22.dfl.conv.weight", "model.23.dfl.conv.weight"}, set(theirs) - set(ours)
    assert ours == {k: v for k, v in theirs.items() if k in ours}
    expected = {"muon", "norm", "bias", "muon_cls", "norm_cls", "bias_cls"}  # no 1-D weight outside BN in YOLO
    assert set(ours.values()) == expected
    if version == "26":  # the one-to-one class branch is boosted too
        assert ours["model.23.one2one_cv3.0.2.weight"] == "muon_cls"


def _auto_ultralytics(iterations, nc):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    object.__setattr__(model, "model", [model[-1]])  # the head MuSGD reads, unregistered
    stub = types.SimpleNamespace(args=types.SimpleNamespace(lr0=0.01, warmup_bias_lr=0.1, optimizer="auto"),
                                 data={"nc": nc})
    opt = BaseTrainer.build_optimizer(stub, model, name="auto", lr=0.01, momentum=0.937, decay=5e-4,
                                      iterations=iterations)
    g = opt.param_groups[-1]
    momentum = g["momentum"] if "momentum" in g else g["betas"][0]
    return type(opt).__name__, g["lr"], momentum, stub.args.warmup_bias_lr


@pytest.mark.parametrize("steps, expected", [(40_000, "AdamW"), (40_001, "MuSGD"), (10, "AdamW")])
def test_auto_picks_what_ultralytics_picks(steps, expected):
    tc = yolov8n_shapes.get_config().train
    tc.steps, tc.batch_size, tc.nbs, tc.optimizer = steps, 16, 64, "auto"
    iterations = recipe_lib.ultralytics_iterations(tc)
    # ultralytics: ceil(len(dataset) / max(batch, nbs)) * epochs, here one epoch of steps * batch images
    assert iterations == math.ceil(steps * 16 / max(16, 64)) * 1
    name, lr, momentum, warmup_bias_lr = _auto_ultralytics(iterations, NC)
    choice = recipe_lib.auto_optimizer(tc, NC)
    assert name == expected
    assert {"AdamW": "adamw", "MuSGD": "musgd"}[name] == choice["optimizer"]
    assert lr == choice["learning_rate"] and momentum == choice["momentum"]
    assert warmup_bias_lr == choice["warmup_bias_lr"] == 0.0
    assert f"{iterations} iterations" in choice["why"]


def test_auto_without_warmup_keeps_the_built_momentum():
    tc = yolov8n_shapes.get_config().train
    tc.optimizer, tc.steps, tc.batch_size, tc.nbs = "auto", 50_000, 16, 16
    choice = recipe_lib.auto_optimizer(tc, NC)
    assert choice["optimizer"] == "musgd"
    i = np.int32(20_000)
    tc.warmup_steps = 0
    assert float(recipe_lib.ultralytics_schedules(tc, choice)["momentum"](i)) == np.float32(0.9)
    tc.warmup_steps = 100  # the warm-up lands on train.momentum, and it stays there (ultralytics' _do_train)
    assert float(recipe_lib.ultralytics_schedules(tc, choice)["momentum"](i)) == np.float32(0.937)


RUN = (
    "--config.train.recipe=ultralytics",
    "--config.train.optimizer=musgd",
    "--config.train.learning_rate=0.01",
    "--config.train.nbs=8",
    "--config.train.warmup_steps=2",
    "--config.model.norm=batch",
)


@pytest.mark.slow
def test_musgd_run_trains_and_resumes_bit_identically(tmp_path):
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    overrides = ("--config.train.steps=6", "--config.train.checkpoint_every=2", *RUN)
    done = tp.run(ref, *overrides)
    assert "MuSGD(muon 0.2" in done.stdout, done.stdout[-3000:]
    recs = [r for r in tp.records(ref) if "loss" in r]
    assert recs and all(np.isfinite(r["loss"]) for r in recs)
    logged = [r for r in recs if "lr_cls" in r]  # the class-branch lrs are logged (3x after the warm-up)
    assert len(logged) == 6 and all(np.isclose(r["lr_cls"], 3 * r["lr"], rtol=1e-6) for r in logged[2:]), logged

    killed = tp.run(crashed, *overrides, extra=("--sigkill-at-step", "4"), check=False)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    tp.run(crashed, *overrides)
    p_ref, p_res = tp.params(ref), tp.params(crashed)
    assert sorted(p_ref) == sorted(p_res) and p_ref
    for k in p_ref:
        np.testing.assert_array_equal(p_res[k], p_ref[k], err_msg=k)
