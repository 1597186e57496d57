"""A workdir belongs to one model (train/workdir.py): a config that changes the model stops with exit 2 and leaves the
run untouched; safe fields (train.steps, ...) change on resume and go to config_history.jsonl; train.resume=False
moves the previous run to previous-<time>/; a readable checkpoint of another model is never moved to
checkpoints.damaged/."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from tests.train import trainproc as tp
from train import workdir as workdir_lib

#: The tiny YOLOv1 run: 32 px, 4 x 4 cells, 16 validation images.
TINY = (
    *tp.YOLOV1, *tp.TINY_GRID_MODEL, "--config.data.image_size=32", "--config.train.batch_size=4",
    "--config.train.warmup_steps=1", "--config.train.progress_bar=False", "--config.train.log_every=1",
    "--config.data.val_size=16", "--config.eval.num_images=16", "--config.eval.batch_size=8",
)
OTHER_MODEL = ("--config.model.widths=(8, 32)", "--config.model.head_width=24")


def _train(workdir, *args):
    return subprocess.run([sys.executable, "-m", "train", *TINY, "--workdir", str(workdir), *args],
                          env=tp.env_for(1), cwd=tp.REPO, capture_output=True, text=True, timeout=300)


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _digests(workdir):
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------ unit


def test_only_unsafe_fields_stop_a_resume(tmp_path):
    (tmp_path / "checkpoints" / "4").mkdir(parents=True)
    old = {"seed": 0, "model": {"widths": [8, 16]}, "train": {"steps": 4, "eval_every": 2}, "eval": {"num_images": 8}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    new = json.loads(json.dumps(old))
    new["train"]["steps"], new["eval"]["num_images"], new["data"] = 9, 16, {"added_later": 1}
    assert workdir_lib.check_resume(tmp_path, new) == {"train.steps": (4, 9), "eval.num_images": (8, 16)}
    new["model"]["widths"], new["seed"] = [8, 32], 1
    with pytest.raises(workdir_lib.WorkdirConfigError) as e:
        workdir_lib.check_resume(tmp_path, new)
    assert "model.widths: (8, 16) -> (8, 32)" in str(e.value) and "seed: 0 -> 1" in str(e.value)
    assert "--workdir" in str(e.value) and "--config.train.resume=False" in str(e.value)
    assert "train.steps" not in str(e.value)
    assert workdir_lib.check_resume(tmp_path / "nothing", new) is None  # no checkpoints: nothing to resume


# ------------------------------------------------------------------------------------------------ runs


@pytest.mark.slow
def test_another_model_in_the_workdir_stops_with_exit_2_and_changes_nothing(tmp_path):
    work = tmp_path / "w"
    _ok(_train(work, "--config.train.steps=2"))
    before = _digests(work)
    assert "config.json" in before and "metrics.jsonl" in before and any(k.startswith("checkpoints/2/") for k in before)
    proc = _train(work, "--config.train.steps=2", *OTHER_MODEL)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "error: " in proc.stderr and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "model.widths: (8, 16) -> (8, 32)" in proc.stderr and "model.head_width: 16 -> 24" in proc.stderr
    assert "--config.train.resume=False" in proc.stderr and "--workdir" in proc.stderr
    assert "compile" not in proc.stdout
    assert _digests(work) == before  # checkpoints, config.json and metrics.jsonl byte for byte
    assert not (work / "checkpoints.damaged").exists()


@pytest.mark.slow
def test_a_readable_checkpoint_of_another_model_is_not_damage(tmp_path):
    """Without config.json to compare (an older workdir), the restore itself tells a mismatch from damage."""
    work = tmp_path / "w"
    _ok(_train(work, "--config.train.steps=2"))
    (work / "config.json").unlink()
    proc = _train(work, "--config.train.steps=2", *OTHER_MODEL)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"checkpoint {work / 'checkpoints' / '2'} is readable but holds another model's state" in proc.stderr
    assert "e.g. the checkpoint has float32[" in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert not (work / "checkpoints.damaged").exists() and tp.checkpoint_steps(work) == [2]


@pytest.mark.slow
def test_train_steps_can_be_raised_on_resume_and_is_recorded(tmp_path):
    work = tmp_path / "w"
    _ok(_train(work, "--config.train.steps=2"))
    config_json = (work / "config.json").read_bytes()
    out = _ok(_train(work, "--config.train.steps=4", "--config.train.eval_every=2")).stdout
    assert f"resumed from {work / 'checkpoints'} step 2" in out, out
    assert "train.steps 2 -> 4" in out
    assert sorted(r["step"] for r in tp.records(work) if r["kind"] == "train") == [1, 2, 3, 4]
    assert tp.checkpoint_steps(work)[-1] == 4
    assert (work / "config.json").read_bytes() == config_json  # it describes the checkpoints' model
    history = [json.loads(line) for line in (work / "config_history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["step"] == 2
    assert history[0]["changes"] == {"train.steps": [2, 4], "train.eval_every": [250, 2]}


@pytest.mark.slow
def test_resume_false_moves_the_previous_run_aside_and_starts_over(tmp_path):
    work = tmp_path / "w"
    _ok(_train(work, "--config.train.steps=2"))
    before = _digests(work)
    out = _ok(_train(work, "--config.train.steps=2", *OTHER_MODEL, "--config.train.resume=False")).stdout
    previous = [p for p in work.iterdir() if p.name.startswith("previous-")]
    assert len(previous) == 1, list(work.iterdir())
    assert f"moved the previous run to {previous[0]}" in out and "steps 0 -> 2" in out, out
    assert _digests(previous[0]) == before  # the whole previous run, unchanged
    assert sorted(r["step"] for r in tp.records(work) if r["kind"] == "train") == [1, 2]
    assert json.loads((work / "config.json").read_text())["model"]["widths"] == [8, 32]
    assert tp.checkpoint_steps(work) == [2]
