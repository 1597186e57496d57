"""Checkpoint/resume: SIGKILL mid-training then resume is bit-identical (EMA included); SIGTERM saves and exits 0."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from tests.train import trainproc as tp

pytestmark = pytest.mark.slow  # trains in subprocesses

STEPS = 12
KILL_AT = 7  # SIGKILL when the 8th batch is requested: after the checkpoint of step 6, step 7 in flight


#: Run with ultralytics' recipe and the model EMA on the stand-in with BatchNorm, the state with the most parts:
#: parameters, batch statistics, SGD momentum (injected hyper-parameters per group), the gradient accumulator (2
#: batches of 8 per update, nbs 16: the kill falls inside an accumulation) and the EMA (parameters, statistics,
#: update count) must all come back from the checkpoint. (The jaxdet recipe's state, params + AdamW moments, is a
#: subset, saved and restored by the same code; test_train_sharding continues it on another device count.)
RECIPE = (
    "--config.train.recipe=ultralytics",
    "--config.train.learning_rate=0.01",
    "--config.train.nbs=16",
    "--config.train.warmup_steps=2",
    "--config.train.ema=True",
    "--config.train.ema_tau=4",
    "--config.model.norm=batch",
)


def test_sigkill_then_resume_is_bit_identical_ema_included(tmp_path):
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    overrides = (
        f"--config.train.steps={STEPS}",
        "--config.train.checkpoint_every=2",
        "--config.train.keep_checkpoints=2",
        *RECIPE,
    )
    tp.run(ref, *overrides, devices=2)

    killed = tp.run(crashed, *overrides, devices=2, extra=("--sigkill-at-step", str(KILL_AT)), check=False)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    saved = tp.checkpoint_steps(crashed)
    assert saved and 4 <= max(saved) < STEPS, saved
    assert len(saved) <= 2  # keep_checkpoints
    assert not os.path.exists(crashed / "final_params.npz")

    resumed = tp.run(crashed, *overrides, devices=2)
    assert f"resumed from {crashed / 'checkpoints'} step {max(saved)}" in resumed.stdout, resumed.stdout

    p_ref, p_res = tp.params(ref), tp.params(crashed)
    assert sorted(p_ref) == sorted(p_res) and p_ref
    ema_keys = [k for k in p_ref if k.startswith("ema")]  # the EMA is compared: params, statistics, update count
    assert any("mean" in k for k in ema_keys) and any("updates" in k for k in ema_keys), ema_keys
    assert int(p_ref["ema['updates']"]) == STEPS // 2  # one update every 2 batches after the warm-up
    for k in p_ref:
        assert p_ref[k].dtype == p_res[k].dtype
        np.testing.assert_array_equal(p_res[k], p_ref[k], err_msg=k)  # bit-identical
    l_ref, l_res = tp.losses(ref), tp.losses(crashed)
    assert sorted(l_res) == list(range(1, STEPS + 1))
    assert all(l_res[s] == l_ref[s] for s in l_ref), (l_ref, l_res)
    assert tp.checkpoint_steps(crashed)[-1] == STEPS


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    work = tmp_path / "term"
    total = 1_000_000
    with tp.long_run(work, tmp_path / "out.txt") as proc:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    out = open(tmp_path / "out.txt").read()
    assert rc == 0, out[-3000:]
    steps = tp.checkpoint_steps(work)
    assert len(steps) == 1 and 3 <= steps[0] < total, steps
    assert f"SIGTERM: saved checkpoint at step {steps[0]}" in out
    with open(work / "checkpoints" / str(steps[0]) / "meta" / "metadata") as f:
        meta = json.load(f)
    assert meta["step"] == steps[0] and meta["data"]["samples_seen"] == steps[0] * 8
