"""train.field_use: a field set on the command line that the run's choices do not read stops the run (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jaxdet.models import HEADS
from tests.train import trainproc as tp
from train import cli
from train.field_use import DATA_FIELD_USE, EXTRA_FIELD_USE, TRAIN_FIELD_USE, unread_overrides


def _unread(*argv):
    config = cli.parse_args(list(argv))[0]
    return unread_overrides(config, [a[len("--config."):].partition("=")[0] for a in argv if a.startswith("--config.")])


@pytest.mark.parametrize("argv, fragment", [
    (["--config.data.train_images=/nope"], "--config.data.train_images is read only when data.name is one of coco, "
                                           "voc, yolo; this run's data.name is 'shapes'"),
    (["--config.data.name=yolo", "--config.data.train_images=/x", "--config.data.train_size=5"],
     "--config.data.train_size is read only when data.name is one of shapes, dense_shapes; this run's data.name is "
     "'yolo'"),
    (["--config.data.name=voc", "--config.data.label_cache=False"], "data.name is one of coco, yolo"),
    (["--config.data.mosaic=0.5"], "--config.data.mosaic is read only when data.augment is one of yolo"),
    (["--config.data.augment=none", "--config.data.hflip_prob=0.2"], "data.augment is one of flip_scale, yolo"),
    (["--config", "configs/yolov1_shapes.py", "--config.train.lrf=0.1"],
     "--config.train.lrf is read only when train.recipe is one of ultralytics; this run's train.recipe is 'jaxdet'"),
    (["--config.train.end_lr_factor=0.1"], "train.recipe is one of jaxdet; this run's train.recipe is 'ultralytics'"),
    (["--config", "configs/yolov1_shapes.py", "--config.train.ema_tau=100"], "train.ema is one of True"),
    (["--config.train.optimizer=auto", "--config.train.learning_rate=0.02"],
     "--config.train.learning_rate is read only when train.optimizer is one of sgd, adamw, musgd; this run's "
     "train.optimizer is 'auto'"),
    (["--config.train.optimizer=auto", "--config.train.warmup_bias_lr=0.2"], "train.optimizer is one of sgd"),
    (["--config", "configs/yolov1_shapes.py", "--config.model.head=polygon", "--config.loss.iou_target=stop"],
     "--config.loss.iou_target is not read by the polygon head (model.head); the yolov1 head reads it"),
])
def test_an_unread_override_is_named_with_the_choice_that_reads_it(argv, fragment):
    messages = _unread(*argv)
    assert len(messages) == 1 and fragment in messages[0], messages


@pytest.mark.parametrize("argv", [
    ["--config.data.name=yolo", "--config.data.train_images=/x", "--config.data.label_cache=False"],
    ["--config.data.train_size=64", "--config.data.hflip_prob=0.0", "--config.train.lrf=0.1",
     "--config.train.ema_tau=100", "--config.loss.topk=13"],
    ["--config", "configs/polygon_hybrid.py", "--config.loss.alpha.name=static", "--config.loss.lambda_poly=2.0"],
    ["--config", "configs/yolov1_shapes.py", "--config.data.augment=yolo", "--config.data.mosaic=0.5",
     "--config.train.end_lr_factor=0.1"],
    ["--config.train.optimizer=musgd", "--config.train.learning_rate=0.02", "--config.train.warmup_bias_lr=0.0"],
])
def test_overrides_the_run_reads_pass(argv):
    assert _unread(*argv) == []


def test_the_tables_name_real_fields_and_every_head_field_is_read_by_its_head():
    base = cli.parse_args(["--config", "configs/yolov1_shapes.py"])[0]
    assert set(DATA_FIELD_USE) <= set(base.data.keys())
    assert set(TRAIN_FIELD_USE) <= set(base.train.keys())
    assert all(base[k.partition(".")[0]].get(k.partition(".")[2]) is not None for k in EXTRA_FIELD_USE)
    for name, head in HEADS.items():
        assert not unread_overrides(cli.parse_args([f"--config.model.head={name}"])[0],
                                    [f"loss.{f}" for f in (*head.loss_defaults, *head.extra_loss_fields)])


def test_the_command_exits_2_before_training():
    proc = subprocess.run([sys.executable, "-m", "train", "--config.data.train_images=/does/not/exist"],
                          env=tp.env_for(1), cwd=tp.REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: --config.data.train_images is read only when data.name is one of coco, voc, yolo" in proc.stderr
    assert "devices:" not in proc.stdout  # nothing was built
