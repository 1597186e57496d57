"""``python -m train`` command line: config loading, overrides, errors, and tiny end-to-end runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.train import trainproc as tp
from train import cli
from train.data import DataConfigError, resolve_data_config

#: a tiny grid-head run (compiles in seconds; the default YOLOv8n runs in test_readme_yolov8_commands.py)
TINY = (
    "--config.data.image_size=32",
    *tp.TINY_GRID_MODEL,
    "--config.data.train_size=64",
    "--config.data.val_size=16",
    "--config.eval.num_images=16",
    "--config.eval.batch_size=8",
    "--config.train.batch_size=8",
    "--config.train.warmup_steps=1",
    "--config.train.log_every=1",
    "--config.eval.max_detections=8",
)


def _train(args, devices=1, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "train", *args],
        env=tp.env_for(devices),
        cwd=tp.REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "flag, field, listed",
    [
        ("--config.train.nonexistent=1", "'train.nonexistent'", "config.train: batch_size"),
        ("--config.modle.head=polygon", "'modle'", "valid fields of config: compile_cache, data, eval, loss"),
    ],
)
def test_unknown_field_is_rejected_with_a_clear_message(flag, field, listed):
    proc = _train([flag, "--workdir", "/nonexistent/never-created"], timeout=120)
    assert proc.returncode == 2
    assert f"unknown config field {field}" in proc.stderr, proc.stderr
    assert listed in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists("/nonexistent/never-created")


def test_overrides_parse_to_the_field_type():
    config, name, workdir = cli.parse_args(
        [
            *tp.YOLOV1,
            "--config.train.steps=7",
            "--config.train.learning_rate=1",
            "--config.model.widths=[4, 8]",
            "--config.train.progress_bar=false",
            "--config.loss.iou_target",
            "through",
            "--config.data.image_size=48",
        ]
    )
    assert name == "yolov1_shapes" and workdir == os.path.join("workdir", "yolov1_shapes")
    assert config.train.steps == 7 and isinstance(config.train.steps, int)
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.model.widths == (4, 8)
    assert config.train.progress_bar is False
    assert config.loss.iou_target == "through"
    assert config.model.image_size == 48  # shared field reference
    with pytest.raises(cli.UsageError, match=r"--config.train.steps: expected int"):
        cli.parse_args(["--config.train.steps=fast"])
    with pytest.raises(cli.UsageError, match=r"is a section"):
        cli.parse_args(["--config.train=1"])
    with pytest.raises(cli.UsageError, match=r"unknown flag --steps"):
        cli.parse_args(["--steps=3"])


@pytest.mark.parametrize(
    "path, head, iou_target, alpha",
    [
        ("configs/yolov1_shapes.py", "yolov1", "stop", None),
        ("configs/yolov1_shapes_case1.py", "yolov1", "through", None),
        ("configs/polygon_hybrid.py", "polygon", None, "cosine"),
        ("configs/polygon_two_stage.py", "polygon", None, "two_stage"),
        ("configs/yolov8n_shapes.py", "yolov8", None, None),
        ("configs/yolo11n_shapes.py", "yolo11", None, None),
        ("configs/yolo26n_shapes.py", "yolo26", None, None),
        ("configs/yolo11n_dense.py", "yolo11", None, None),
        ("configs/yolo26n_dense.py", "yolo26", None, None),
    ],
)
def test_configs_load(path, head, iou_target, alpha):
    config, name, workdir = cli.parse_args(["--config", path, "--workdir=/tmp/x"])
    assert name == os.path.basename(path)[:-3] and workdir == "/tmp/x"
    assert config.model.head == head
    if alpha is None:  # the YOLOv1 head has no hybrid α
        assert "alpha" not in config.loss
    else:
        assert config.loss.alpha.name == alpha
    if iou_target is not None:
        assert config.loss.iou_target == iou_target
    for section in ("model", "data", "loss", "train", "eval", "mesh"):
        assert section in config


def test_the_default_config_is_yolov8n_on_the_shapes():
    config, name, workdir = cli.parse_args([])
    assert (name, workdir) == ("yolov8n_shapes", os.path.join("workdir", "yolov8n_shapes"))
    assert (config.model.head, config.model.scale, config.data.name) == ("yolov8", "n", "shapes")
    assert (config.train.recipe, config.train.steps, config.train.batch_size, config.train.nbs) == (
        "ultralytics", 2000, 16, 16)
    assert config.train.ema and (config.eval.max_detections, config.eval.iou_threshold) == (300, 0.7)


@pytest.mark.slow
def test_yolov1_run_end_to_end(tmp_path):
    work = tmp_path / "run"
    proc = _train(
        [
            *tp.YOLOV1,
            *TINY,
            "--config.train.steps=4",
            "--config.train.eval_every=2",
            "--config.train.checkpoint_every=2",
            "--workdir",
            str(work),
        ],
        devices=2,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    assert "config yolov1_shapes" in out and "devices: 2 (cpu)" in out
    assert "first-step compile:" in out and "steady-state throughput:" in out
    assert "mAP@.5" in out and "final evaluation at step 4" in out
    assert tp.checkpoint_steps(work) == [2, 4]
    records = [json.loads(line) for line in open(work / "metrics.jsonl")]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for key in ("loss", "coord_xy", "coord_wh", "obj", "noobj", "cls", "lr", "grad_norm"):
        assert all(math.isfinite(r[key]) for r in train), key
    assert [r["step"] for r in records if r["kind"] == "eval"] == [2, 4]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(work / "tensorboard"))
    for png in ("loss_terms.png", "alpha_lr.png", "map.png", "val_predictions.png"):
        assert (work / "plots" / png).stat().st_size > 1000, png

    # Running again resumes from the final checkpoint and has nothing left to train.
    again = _train([*tp.YOLOV1, *TINY, "--config.train.steps=4", "--workdir", str(work)], devices=1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "step 4 (written on 2 device(s), 1 process(es))" in again.stdout


@pytest.mark.slow
def test_polygon_hybrid_trains_with_the_cosine_alpha(tmp_path):
    work = tmp_path / "poly"
    steps = 4
    proc = _train(
        [
            "--config",
            "configs/polygon_hybrid.py",
            *TINY,
            f"--config.train.steps={steps}",
            "--config.train.eval_every=0",
            "--workdir",
            str(work),
        ],
        devices=1,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "polygon mIoU" in proc.stdout
    train = [r for r in map(json.loads, open(work / "metrics.jsonl")) if r["kind"] == "train"]
    assert len(train) == steps
    for r in train:
        s = r["step"] - 1  # α used by the step that ended at r["step"]
        expected = 0.2 + 0.7 * 0.5 * (1 + math.cos(math.pi * min(s / (0.7 * steps), 1.0)))
        assert r["alpha"] == pytest.approx(expected, rel=1e-6)
        for key in ("loss", "l2", "mgiou", "poly", "obj"):
            assert math.isfinite(r[key]), key


def test_a_repeated_override_takes_the_last_value():
    config, _, _ = cli.parse_args(
        [*tp.YOLOV1, "--config.model.widths=(8, 16, 32)", "--config.train.steps", "5", "--config.model.widths=(4,)",
         "--config.train.steps=6"]
    )
    assert config.model.widths == (4,) and config.train.steps == 6


def test_coco_config_has_ultralytics_schedule_and_asks_for_its_paths():

    config, name, _ = cli.parse_args(["--config", "configs/yolov8n_coco.py", "--workdir=/tmp/x"])
    assert name == "yolov8n_coco" and config.model.head == "yolov8"
    assert config.data.image_size == config.model.image_size == 640
    per_epoch = 118_287 // 64
    assert (config.train.steps, config.data.close_mosaic, config.train.warmup_steps) == (
        100 * per_epoch, 10 * per_epoch, 3 * per_epoch)
    assert (config.train.recipe, config.train.ema, config.data.augment) == ("ultralytics", True, "yolo")
    assert (config.train.batch_size, config.train.nbs) == (64, 64)
    with pytest.raises(DataConfigError, match="data.train_path"):
        resolve_data_config(config)
