"""``data.max_objects="auto"`` and the up-front check of an explicit value (``train.data.object_slots``).

The bound is the most objects one image of a batch can hold: the densest image, or with ultralytics' 4-image
mosaic four times the densest training image (partners are drawn with replacement). "auto" rounds it up to a
multiple of 32; an explicit value below it stops ``python -m train`` with exit 2 before JAX loads, instead of
a traceback from the loader on the first dense mosaic.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from configs import yolov1_dense, yolov8n_dense, yolov8n_shapes
from jaxdet.data import SyntheticShapes, write_yolo
from jaxdet.data.synthetic import DENSE_SHAPES
from jaxdet.data.yolo_augment import YoloAugment, YoloRecipe
from tests.train import trainproc as tp
from train import cli
from train.data import DataConfigError, max_objects, object_slots, prepare_data, resolve_data_config

NAMES = ("a", "b", "c")
PER_IMAGE = 7  # the synthetic folder's most objects per image


def _shapes(**data):
    config = yolov8n_shapes.get_config()
    for k, v in data.items():
        config.data[k] = v
    return config


def test_auto_is_the_densest_image_rounded_up_to_32():
    slots = object_slots(_shapes(), None)  # flip_scale: no mosaic
    assert (slots.value, slots.bound, slots.auto) == (32, 4, True)
    assert "data.max_objects_per_image" in slots.why


def test_auto_with_the_mosaic_counts_four_images():
    slots = object_slots(_shapes(augment="yolo"), None)
    assert (slots.value, slots.bound) == (32, 16)
    assert "4-image mosaic" in slots.why
    assert object_slots(_shapes(augment="yolo", mosaic=0.0), None).bound == 4  # mosaic off: one image


@pytest.mark.parametrize("module", [yolov8n_dense, yolov1_dense])
def test_dense_configs_hold_a_mosaic_of_four_full_images(module):
    config = module.get_config()
    assert config.data.max_objects == "auto"
    bound = 4 * DENSE_SHAPES["max_objects_per_image"]
    assert object_slots(config, None).value == 1216 == -(-bound // 32) * 32


def test_an_explicit_value_the_mosaic_can_exceed_is_refused_with_the_number_to_use():
    with pytest.raises(DataConfigError) as info:
        resolve_data_config(_shapes(augment="yolo", max_objects="6"))
    msg = str(info.value)
    assert msg.startswith("data.max_objects=6 is smaller than the 16 objects one image can hold: a 4-image mosaic")
    assert "--config.data.max_objects=16" in msg
    assert object_slots(_shapes(augment="yolo", max_objects="16"), None).value == 16  # exactly the bound is enough


@pytest.mark.parametrize("value", ["many", "0", "-3", "2.5"])
def test_a_value_that_is_neither_auto_nor_a_positive_int_is_refused(value):
    with pytest.raises(DataConfigError, match=r"data.max_objects must be 'auto' or an int >= 1"):
        object_slots(_shapes(max_objects=value), None)


def test_prepare_data_records_an_int_and_prints_how_it_was_found(capsys):
    config = _shapes(train_size=8, val_size=4)
    resolved, _ = prepare_data(config)
    assert resolved.data.max_objects == 32 and isinstance(resolved.data.max_objects, int)
    assert config.data.max_objects == "auto"  # the input config is not changed
    assert "max_objects=32 (auto: the 4 objects of data.max_objects_per_image" in capsys.readouterr().out


def test_the_mosaic_bound_holds_and_one_image_is_not_enough():
    """Augmented examples never exceed the bound, and do exceed one image's count (what the old check used)."""
    source = SyntheticShapes("train", num_images=4, image_size=64, seed=0, min_objects=4, max_objects_per_image=4)
    augment = YoloAugment(source, YoloRecipe(scale=0.5))
    counts = [len(augment(source[i % 4], np.random.default_rng(i))["classes"]) for i in range(200)]
    assert max(counts) <= object_slots(_shapes(augment="yolo"), None).bound
    assert max(counts) > 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense_folder")
    for split, n in (("train", 6), ("val", 3)):
        ds = SyntheticShapes(split, num_images=n, image_size=64, seed=1, min_objects=1,
                             max_objects_per_image=PER_IMAGE, size_range=(0.05, 0.1))
        anns = []
        for i in range(n):
            a = dict(ds.annotation(i))
            a["classes"] = np.asarray(a["classes"]) % len(NAMES)
            anns.append(a)
        write_yolo(anns, root / split, polygons=False)
    return root


def _folder_args(root, *extra):
    return ["--config.data.name=yolo", f"--config.data.train_images={root}/train/images",
            f"--config.data.val_images={root}/val/images", "--config.data.class_names=" + repr(NAMES), *extra]


def test_a_folder_names_its_densest_image(folder):
    config, _, _ = cli.parse_args(_folder_args(folder, "--config.data.augment=yolo"))
    train, _ = resolve_data_config(config)
    densest = max(len(r.classes) for r in train)
    slots = object_slots(config, (train, resolve_data_config(config)[1]))
    assert slots.bound == 4 * densest and max_objects(config) == slots.value == 32 * -(-4 * densest // 32)
    assert "image_id" in slots.why and "train split" in slots.why


def test_cli_exits_2_before_compiling_when_a_mosaic_can_exceed_max_objects(folder):
    config, _, _ = cli.parse_args(_folder_args(folder))
    densest = max(len(r.classes) for r in resolve_data_config(config)[0])
    args = _folder_args(folder, "--config.data.augment=yolo", f"--config.data.max_objects={densest}")
    proc = subprocess.run([sys.executable, "-m", "train", *args], capture_output=True, text=True, cwd=tp.REPO,
                          env=tp.env_for(1), timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: data.max_objects={densest} is smaller than the {4 * densest} objects")
    assert f"--config.data.max_objects={4 * densest}" in lines[0]
