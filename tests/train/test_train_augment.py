"""The training augmentation recipes (data.augment): the default configs' batches unchanged, the yolo recipe
through the loop (dropped-box total in the metrics, plots/train_batch.png), config errors, the dense split."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from configs import yolov1_shapes, yolov8n_dense, yolov8n_shapes
from train import data as data_lib

# sha256[:16] of the first two global batches (keys image, boxes, classes, valid, polygons, image_id) of each
# default config, recorded at commit a805acb, before the recipes existed.
BEFORE = {
    ("yolov1_shapes", "grain"): ["b0e3440e1b46f9df", "4b41dabacb2130f0"],
    ("yolov1_shapes", "step"): ["f6754bcd3df82f02", "96928601118583a3"],
    ("yolov8n_shapes", "grain"): ["196202714d2c66a5", "78bcece2fee0b814"],
    ("yolov8n_shapes", "step"): ["ff71bb7242f0c3f8", "4d01dc26485605c9"],
}


def _fingerprint(batch):
    h = hashlib.sha256()
    for k in ("image", "boxes", "classes", "valid", "polygons", "image_id"):
        h.update(np.ascontiguousarray(batch[k]).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name,loader", sorted(BEFORE))
def test_default_configs_give_the_same_batches_as_before(name, loader):
    module = {"yolov1_shapes": yolov1_shapes, "yolov8n_shapes": yolov8n_shapes}[name]
    config, data = data_lib.prepare_data(module.get_config())
    assert config.data.augment == "flip_scale"
    bs = int(config.train.batch_size)
    batches = data_lib.make_train_batches(
        loader, data.train_source, global_batch_size=bs, seed=int(config.data.seed), rows=np.arange(bs),
        augment=data.augment, max_objects=int(config.data.max_objects),
    )
    try:
        got = [_fingerprint(batches.next()) for _ in range(2)]
    finally:
        batches.close()
    assert got == BEFORE[(name, loader)]


def test_yolo_recipe_trains_logs_dropped_boxes_and_plots_the_batch(tmp_path):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import standin  # the tiny stand-in model and loss of the loop tests

    from train import loop
    from train.task import Task

    config = standin.standin_config()
    config.data.image_size = 32
    config.data.max_objects = 24
    config.data.augment = "yolo"
    config.train.steps = 3
    assert config.data.close_mosaic == 0  # steps // 10 of 3 steps
    config.data.close_mosaic = 1
    config, data = data_lib.prepare_data(config)
    task = standin.standin_task(config)
    task = Task(build_model=task.build_model, loss_fn=task.loss_fn, train_source=data.train_source,
                val_source=data.val_source, augment=data.augment)
    loop.run(config, str(tmp_path), task=task)
    with open(tmp_path / "metrics.jsonl") as f:
        train = [r for r in map(json.loads, f) if r["kind"] == "train"]
    totals = [r["dropped_boxes"] for r in train]
    assert len(totals) == 3 and totals == sorted(totals) and totals[-1] > 0  # a running total
    with open(tmp_path / "checkpoints" / "3" / "meta" / "metadata") as f:
        assert json.load(f)["dropped_boxes"] == totals[-1]  # restored on resume (train.loop)
    assert os.path.getsize(tmp_path / "plots" / "train_batch.png") > 1000


def test_recipe_fields_are_checked_by_name():
    c = yolov1_shapes.get_config()
    c.data.augment = "mosaic"
    with pytest.raises(data_lib.DataConfigError, match="data.augment must be one of none, flip_scale, yolo"):
        data_lib.resolve_data_config(c)
    c.data.augment = "yolo"
    c.data.hsv_s = -1.0
    with pytest.raises(data_lib.DataConfigError, match="data.hsv_s"):
        data_lib.resolve_data_config(c)
    c.data.hsv_s = 0.7
    c.data.hflip_prob = 2.0
    with pytest.raises(data_lib.DataConfigError, match="data.hflip_prob"):
        data_lib.resolve_data_config(c)
    c.data.hflip_prob = 0.5
    c.data.close_mosaic = -3
    with pytest.raises(data_lib.DataConfigError, match="data.close_mosaic"):
        data_lib.resolve_data_config(c)


def test_dense_config_and_close_mosaic_follow_train_steps():
    c = yolov8n_dense.get_config()
    assert c.data.name == "dense_shapes" and c.data.augment == "yolo" and c.data.max_objects == 1000
    assert c.data.close_mosaic == c.train.steps // 10
    c.train.steps = 500
    assert c.data.close_mosaic == 50
    config, data = data_lib.prepare_data(c)
    assert data.augment.recipe.close_mosaic_at == 450
    assert data.train_source.image_size == (256, 256) and data.train_source.min_objects == 50
