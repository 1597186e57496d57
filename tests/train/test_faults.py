"""Training that survives faults: non-finite steps are skipped, a damaged checkpoint falls back, Ctrl-C saves,
and a bad config is refused before anything compiles (exit status 2, the field named, no traceback)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxdet.data import SyntheticShapes, collate
from tests.train import trainproc as tp
from train import cli
from train import data as data_lib
from train import mesh as mesh_lib
from train import recipe as recipe_lib
from train import step as step_lib
from train.task import make_task

pytestmark = pytest.mark.slow  # trains in subprocesses

SMOKE = (
    "--config.train.steps=6",
    "--config.train.log_every=1",
)


# ------------------------------------------------------------------------------------ non-finite steps


def _tiny_task_and_batches(n_batches):

    config, _, _ = cli.parse_args([
        *tp.YOLOV1, "--config.data.image_size=32", *tp.TINY_GRID_MODEL, "--config.train.batch_size=4",
        "--config.train.warmup_steps=1", "--config.train.steps=10",
    ])
    config, data = data_lib.prepare_data(config)
    ds = SyntheticShapes("train", image_size=32, num_images=4 * n_batches)
    batches = [collate([ds[4 * b + i] for i in range(4)], max_objects=int(config.data.max_objects))
               for b in range(n_batches)]
    return config, make_task(config, data), batches


def test_a_non_finite_batch_changes_nothing_but_the_step():
    """Run A sees b0, b1, NaN, b2, b3; run B sees b0, b1, b2, b3: the same parameters and optimizer state, bit
    for bit, and A counts one skipped step."""

    config, task, batches = _tiny_task_and_batches(4)
    poisoned = dict(batches[1], image=batches[1]["image"].astype(np.float32) / 255.0)  # floats can carry a NaN
    poisoned["image"][0, 0, 0, 0] = np.nan
    tx, lr = recipe_lib.make_optimizer(config.train)
    graphdef, init_fn = step_lib.make_init_fn(task.build_model, tx, seed=0, init_loss_state=task.init_loss_state)
    mesh = mesh_lib.make_mesh((-1,), ("data",))
    step = jax.jit(step_lib.make_train_step(graphdef, loss_fn=task.loss_fn, tx=tx, lr_schedule=lr))

    def run(sequence):
        state = init_fn()
        log = []
        for b in sequence:
            state, metrics = step(state, mesh_lib.global_batch(mesh, b))
            log.append(jax.device_get(metrics))
        return jax.device_get(state), log

    a, log_a = run([batches[0], batches[1], poisoned, batches[2], batches[3]])
    b, _ = run(batches)
    assert [float(m["skipped"]) for m in log_a] == [0, 0, 1, 0, 0]
    assert not np.isfinite(float(log_a[2]["loss"]))
    assert int(a["skipped_steps"]) == 1 and int(a["nonfinite_run"]) == 0 and int(a["step"]) == 5
    assert int(b["skipped_steps"]) == 0 and int(b["step"]) == 4
    for key in ("params", "opt_state", "model_state", "loss_state"):
        la, lb = jax.tree.leaves(a[key]), jax.tree.leaves(b[key])
        assert len(la) == len(lb)
        for x, y in zip(la, lb):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=key)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(a["params"]))


def test_the_loop_skips_a_nan_batch_and_names_it(tmp_path):
    work = tmp_path / "nan"
    proc = tp.run(work, *SMOKE, extra=("--nan-at-steps", "3"))
    assert "step 4: non-finite loss or gradients, update skipped (1 in a row" in proc.stdout, proc.stdout[-3000:]
    train = [r for r in tp.records(work) if r["kind"] == "train"]
    assert [r["skipped"] for r in train] == [0, 0, 0, 1, 0, 0]
    assert train[-1]["skipped_steps"] == 1
    assert all(np.isfinite(v).all() for v in tp.params(work).values())


def test_consecutive_non_finite_steps_stop_the_run_after_saving(tmp_path):
    work = tmp_path / "allnan"
    proc = tp.run(work, *SMOKE, "--config.train.max_consecutive_nonfinite=3", extra=("--nan-at-steps", "1,2,3,4,5"),
                  check=False)
    assert proc.returncode != 0
    assert "3 consecutive steps with a non-finite loss or gradients, the last at step 4" in proc.stderr, \
        proc.stderr[-3000:]
    assert tp.checkpoint_steps(work) == [4]


# ------------------------------------------------------------------------------------ damaged checkpoints


def test_resume_falls_back_from_a_damaged_checkpoint_and_keeps_it(tmp_path):
    work = tmp_path / "damaged"
    tp.run(work, "--config.train.steps=4", "--config.train.checkpoint_every=2", "--config.train.keep_checkpoints=3")
    assert tp.checkpoint_steps(work) == [2, 4]
    state_dir = work / "checkpoints" / "4" / "state"
    files = sorted(p for p in state_dir.rglob("*") if p.is_file() and p.stat().st_size > 0)
    assert files
    for p in files:  # a full disk / a truncated copy: every file of the state item cut to nothing
        p.write_bytes(b"")
    resumed = tp.run(work, "--config.train.steps=6", "--config.train.checkpoint_every=2",
                     "--config.train.keep_checkpoints=3")
    out = resumed.stdout
    assert f"warning: checkpoint {work / 'checkpoints' / '4'} cannot be restored" in out, out[-3000:]
    assert f"resumed from {work / 'checkpoints'} step 2" in out
    kept = list((work / "checkpoints.damaged").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("4-") and any(kept[0].rglob("*"))
    assert tp.checkpoint_steps(work) == [2, 4, 6]
    assert sorted(r["step"] for r in tp.records(work) if r["kind"] == "train")[-2:] == [5, 6]


# ------------------------------------------------------------------------------------------------ Ctrl-C


def _wait_for(path, text, proc, timeout=200):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if text in open(path).read():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared:\n" + open(path).read()[-3000:])


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    work, log = tmp_path / "sigint", tmp_path / "sigint.txt"
    with tp.long_run(work, log) as proc:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    out = open(log).read()
    assert rc == 0, out[-3000:]
    steps = tp.checkpoint_steps(work)
    assert len(steps) == 1 and steps[0] >= 3
    assert f"SIGINT: saved checkpoint at step {steps[0]}" in out


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    work, log = tmp_path / "sigint2", tmp_path / "sigint2.txt"
    with tp.long_run(work, log, extra=("--save-delay", "30")) as proc:  # a slow save
        proc.send_signal(signal.SIGINT)
        _wait_for(log, "SIGINT: saving a checkpoint", proc)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    out = open(log).read()
    assert rc == 130, out[-3000:]
    assert "second SIGINT: exiting now, without saving" in out
    assert "saved checkpoint" not in out


# ------------------------------------------------------------------------------------ early config checks


def _train(args, devices=1):
    return subprocess.run([sys.executable, "-m", "train", *args], env=tp.env_for(devices), cwd=tp.REPO,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.train.batch_size=7"], "train.batch_size=7 must be divisible by the data-axis size 2"),
        (["--config.train.steps=0"], "train.steps must be an int > 0; got 0"),
        (["--config.train.learning_rate=-1"], "train.learning_rate must be a number > 0; got -1.0"),
        (["--config.data.image_size=0"], "data.image_size must be an int > 0; got 0"),
        (["--config.data.loader=threads"], "data.loader must be 'grain' or 'step', got 'threads'"),
        ([*tp.YOLOV1, "--config.loss.iou_target=both"], "iou_target must be one of ('stop', 'through'); got 'both'"),
        ([*tp.YOLOV1, "--config.model.widths=(32, 64, 128, 256, 512)"],
         "model: depths must be a sequence as long as widths = (32, 64, 128, 256, 512); got (0, 1, 1)"),
        ([*tp.YOLOV1, "--config.data.max_objects=1000000", "--config.train.batch_size=4096",
          "--config.model.grid_size=64"],
         "lower data.max_objects or train.batch_size"),
        (["--config.mesh.shape=(3,)"], "mesh.shape / mesh.axes"),
    ],
)
def test_bad_configs_stop_before_compiling(tmp_path, args, message):
    proc = _train([*args, "--workdir", str(tmp_path / "w")], devices=2)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "compile" not in proc.stdout


def test_unwritable_workdir_is_refused(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = _train(["--workdir", str(blocker / "run")])
    assert proc.returncode == 2 and f"--workdir {str(blocker / 'run')!r} is not writable" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
