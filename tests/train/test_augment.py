"""The training augmentation recipes (data.augment): the default configs' batches unchanged, the yolo recipe
through the loop (dropped-box total in the metrics, plots/train_batch.png), config errors, the dense split."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from configs import yolov1_shapes, yolov8n_dense, yolov8n_shapes
from tests.train import standin
from train import batches as batches_lib
from train import data as data_lib
from train import loop
from train.task import Task

# sha256[:16] of the first two global batches of each default config, in two parts:
# - the targets (boxes, classes, valid, image_id), computed by the loader of commit 8f49e77, whose full batches
#   matched those of commit a805acb (before the recipes existed): the targets have not changed since;
# - the images (uint8), recorded at the commit that moved the pixel work to OpenCV and the batches to uint8
#   (scale jitter's warp within 1 grey level of the Pillow one except along the image content's edge, where
#   OpenCV blends the edge pixels with the fill: tests/data/test_pixels.py). These configs' box heads read
#   no polygons, so their batches carry none (polygons [B, M, 0, 2]).
TARGETS = {
    ("yolov1_shapes", "grain"): ["826d4917274482f4", "0665ff246f42378e"],
    ("yolov1_shapes", "step"): ["cdb34cf1eac2b23e", "3bd50115850610a0"],
    ("yolov8n_shapes", "grain"): ["d5c15fec1abe6112", "712bb6b5aad5da32"],
    ("yolov8n_shapes", "step"): ["29e253a5121ba593", "ea970cb7cdecc63b"],
}
IMAGES = {
    ("yolov1_shapes", "grain"): ["0c156433e3e37b0a", "bebd7fc6e050e7b6"],
    ("yolov1_shapes", "step"): ["9302c984cfd4b2c7", "5e8ae94fcd806934"],
    ("yolov8n_shapes", "grain"): ["67364ab4842e9fe0", "05f1bac6c22124a3"],
    ("yolov8n_shapes", "step"): ["12f59e628cbc0002", "db2fe1420a672de5"],
}


def _fingerprint(batch, keys):
    h = hashlib.sha256()
    for k in keys:  # the first 6 object slots: the fingerprints were taken at data.max_objects=6 (now "auto": 32)
        h.update(np.ascontiguousarray(batch[k] if k in ("image", "image_id") else batch[k][:, :6]).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name,loader", sorted(TARGETS))
def test_default_configs_give_the_same_batches_as_before(name, loader):
    module = {"yolov1_shapes": yolov1_shapes, "yolov8n_shapes": yolov8n_shapes}[name]
    config, data = data_lib.prepare_data(module.get_config())
    assert config.data.augment == "flip_scale"
    bs = int(config.train.batch_size)
    batches = batches_lib.make_train_batches(
        loader, data.train_source, global_batch_size=bs, seed=int(config.data.seed), rows=np.arange(bs),
        augment=data.augment, max_objects=int(config.data.max_objects),
    )
    try:
        got = [batches.next() for _ in range(2)]
    finally:
        batches.close()
    assert [_fingerprint(b, ("boxes", "classes", "valid", "image_id")) for b in got] == TARGETS[(name, loader)]
    assert [_fingerprint(b, ("image",)) for b in got] == IMAGES[(name, loader)]
    assert all(b["image"].dtype == np.uint8 and b["polygons"].shape[2] == 0 for b in got)


def test_yolo_recipe_trains_logs_dropped_boxes_and_plots_the_batch(tmp_path):


    config = standin.standin_config()
    config.data.image_size = 32
    config.data.max_objects = "24"
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
    assert c.data.name == "dense_shapes" and c.data.augment == "yolo" and c.data.max_objects == "auto"
    assert c.data.close_mosaic == c.train.steps // 10
    c.train.steps = 500
    assert c.data.close_mosaic == 50
    config, data = data_lib.prepare_data(c)
    assert data.augment.recipe.close_mosaic_at == 450
    assert data.train_source.image_size == (256, 256) and data.train_source.min_objects == 50
