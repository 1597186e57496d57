"""``python -m train`` on a user's COCO / VOC / YOLO folder (``data.name`` + ``data.*_path`` fields).

A small synthetic dataset is exported in each format (its classes remapped to 3 names, so the class count
differs from the default config's 5), then trained for 3 steps with a tiny model in parallel subprocesses.
The same images and boxes in the three formats must give the same step-1 loss; the final evaluation must
count the validation objects that were written; ``model.num_classes`` must come from the data.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import yolov1_shapes
from jaxdet.data import SyntheticShapes, write_coco, write_voc, write_yolo
from tests.train import trainproc as tp
from train import cli
from train.data import DataConfigError, prepare_data, resolve_data_config

NAMES = ("alpha", "beta", "gamma")
SIZES = {"train": 16, "val": 8}

TINY = (
    *tp.YOLOV1,
    "--config.data.image_size=32",
    *tp.TINY_GRID_MODEL,
    "--config.eval.batch_size=8",
    "--config.eval.max_detections=8",
    "--config.train.batch_size=8",
    "--config.train.steps=3",
    "--config.train.warmup_steps=1",
    "--config.train.log_every=1",
    "--config.train.eval_every=0",
    "--config.train.progress_bar=false",
    "--config.model.num_classes=7",  # replaced by the data's 3 classes
)


def _annotations(split):

    ds = SyntheticShapes(split, num_images=SIZES[split], image_size=32, seed=3, max_objects_per_image=3)
    anns = []
    for i in range(len(ds)):
        a = dict(ds.annotation(i))
        a["classes"] = np.asarray(a["classes"]) % len(NAMES)
        anns.append(a)
    return anns


@pytest.fixture(scope="module")
def folders(tmp_path_factory):

    root = tmp_path_factory.mktemp("userdata")
    counts = {}
    for split in SIZES:
        anns = _annotations(split)
        counts[split] = sum(len(a["classes"]) for a in anns)
        write_coco(anns, root / "coco" / split, NAMES)
        write_voc(anns, root / "voc" / split, NAMES)
        # box lines (no polygons): the same boxes as the COCO bbox / VOC bndbox
        write_yolo(anns, root / "yolo" / split, polygons=False)
    return root, counts


def _flags(root, fmt):
    r = str(root)
    if fmt == "coco":
        return [
            "--config.data.name=coco",
            f"--config.data.train_path={r}/coco/train/annotations.json",
            f"--config.data.train_images={r}/coco/train/images",
            f"--config.data.val_path={r}/coco/val/annotations.json",
            f"--config.data.val_images={r}/coco/val/images",
        ]
    if fmt == "voc":  # images default to <xml dir>/../JPEGImages; class names = sorted <name>s
        return [
            "--config.data.name=voc",
            f"--config.data.train_path={r}/voc/train/Annotations",
            f"--config.data.val_path={r}/voc/val/Annotations",
        ]
    # yolo: labels default to images/ -> labels/; YOLO labels carry only indices, so the names are given
    return [
        "--config.data.name=yolo",
        f"--config.data.train_images={r}/yolo/train/images",
        f"--config.data.val_images={r}/yolo/val/images",
        "--config.data.class_names=" + repr(NAMES),
    ]


def _cmd(args):
    return [sys.executable, "-m", "train", *args]


# ``python -m train`` three times in one interpreter (``train.__main__`` is ``train.cli.main()``), so the
# imports are paid once; a persistent compilation cache lets the 2nd and 3rd runs reuse the 1st's executables.
_MULTI = """
import json, sys
import jax
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
from train.cli import main
for args in json.loads(sys.argv[2]):
    main(args)
"""


def _with_bad_files(root, dest):
    """A copy of the YOLO folder whose training split also holds a corrupt image and a zero-area box."""

    shutil.copytree(root / "yolo", dest / "yolo")
    train = dest / "yolo" / "train"
    (train / "images" / "zzz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    (train / "labels" / "zzz_corrupt.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with open(train / "labels" / "000000.txt", "a") as fh:
        fh.write("1 0.5 0.5 0 0.25\n")  # zero width
    return str(train / "images" / "zzz_corrupt.jpg"), str(train / "images" / "000000.png")


@pytest.mark.slow
def test_train_on_coco_voc_yolo_folders(folders, tmp_path):
    """The three formats, and the YOLO folder with a corrupt image and a zero-area box under
    ``on_bad_image=skip`` / ``invalid_boxes=drop`` ("yolo_bad": the same training data once they are left out)."""
    root, counts = folders
    corrupt, with_zero_area = _with_bad_files(root, tmp_path / "bad")
    runs = {fmt: tmp_path / fmt for fmt in ("coco", "voc", "yolo", "yolo_bad")}
    flags = {fmt: _flags(root, fmt) for fmt in ("coco", "voc", "yolo")}
    flags["yolo_bad"] = [*_flags(tmp_path / "bad", "yolo"), "--config.data.on_bad_image=skip",
                         "--config.data.invalid_boxes=drop"]  # fmt: skip
    argvs = [[*TINY, *flags[fmt], "--workdir", str(w)] for fmt, w in runs.items()]
    proc = subprocess.run(
        [sys.executable, "-c", _MULTI, str(tmp_path / "jax_cache"), json.dumps(argvs)],
        env=tp.env_for(1),
        cwd=tp.REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"runs failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    logs = dict(zip(runs, proc.stdout.split("config yolov1_shapes -> workdir ")[1:]))
    assert len(logs) == 4, proc.stdout
    first_loss = {}
    for run, workdir in runs.items():
        fmt, out = run.split("_")[0], logs[run]
        assert out.startswith(str(workdir)), out
        assert f"data: {fmt} train {SIZES['train']} images" in out, out
        assert "model.num_classes=3" in out, out
        config = json.loads((workdir / "config.json").read_text())
        assert config["model"]["num_classes"] == 3
        assert tuple(config["data"]["class_names"]) == NAMES
        assert tp.checkpoint_steps(workdir) == [3]
        records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        train = {r["step"]: r for r in records if r["kind"] == "train"}
        assert sorted(train) == [1, 2, 3]
        assert all(np.isfinite(r["loss"]) for r in train.values())
        assert train[1]["coord_xy"] > 0 and train[1]["obj"] > 0  # real (non-empty) targets reached the loss
        evals = [r for r in records if r["kind"] == "eval"]
        assert len(evals) == 1 and evals[0]["step"] == 3
        ev = evals[0]
        assert 0.0 <= ev["mAP"] <= ev["mAP50"] <= 1.0
        assert ev["num_images"] == SIZES["val"] and ev["num_gt"] == counts["val"]
        assert os.path.exists(workdir / "plots" / "val_predictions.png")
        first_loss[run] = train[1]
    # Skipped and dropped: counted in the data: line, listed per file in data_report.json.
    assert "train 1 bad image(s) skipped, 1 invalid object(s) dropped in 1 file(s); val 0 bad image(s)" in logs[
        "yolo_bad"], logs["yolo_bad"]  # fmt: skip
    assert "train 0 bad image(s) skipped, 0 invalid object(s) dropped; val 0" in logs["yolo"], logs["yolo"]
    report = json.loads((runs["yolo_bad"] / "data_report.json").read_text())
    assert list(report["train"]["skipped_images"]) == [corrupt]
    assert list(report["train"]["dropped_objects"]) == [with_zero_area]
    assert "[line 2]" in report["train"]["dropped_objects"][with_zero_area][0]
    assert report["val"]["num_skipped"] == report["val"]["num_dropped"] == 0
    # Same images, boxes and classes in three formats (and with the bad entries left out) -> the same first
    # step (the COCO run is the oracle).
    for fmt in ("voc", "yolo", "yolo_bad"):
        for key in ("loss", "coord_xy", "coord_wh", "obj", "noobj", "cls"):
            np.testing.assert_allclose(first_loss[fmt][key], first_loss["coco"][key], rtol=1e-4, err_msg=f"{fmt} {key}")


def test_wrong_path_is_a_clear_cli_error(folders, tmp_path):
    root, _ = folders
    workdir = tmp_path / "never"
    bad = f"{root}/coco/train/no_such.json"
    args = _flags(root, "coco")
    args[1] = f"--config.data.train_path={bad}"
    proc = subprocess.run(
        _cmd([*args, "--workdir", str(workdir)]),
        env=tp.env_for(1),
        cwd=tp.REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"error: data.train_path: the COCO annotation file {bad!r} does not exist" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not workdir.exists()


# ------------------------------------------------------------------------------ in-process config checks
def _config(root, fmt, **data):

    config, _, _ = cli.parse_args(list(_flags(root, fmt)))  # the default config (YOLOv8n) with the folder's flags
    for k, v in data.items():
        config.data[k] = v
    return config


def _error(config) -> str:

    with pytest.raises(DataConfigError) as info:
        resolve_data_config(config)
    return str(info.value)


def test_default_shapes_config_is_untouched():

    config = yolov1_shapes.get_config()
    before = config.to_json()
    assert resolve_data_config(config) is None
    assert config.to_json() == before and config.model.num_classes == 5


@pytest.mark.parametrize(
    "fmt, change, expected",
    [
        ("coco", {"val_path": ""}, "data.val_path is empty"),
        ("coco", {"train_images": "/nonexistent/imgs"}, "data.train_images: the image folder '/nonexistent/imgs'"),
        ("coco", {"name": "kitti"}, "data.name must be one of shapes, dense_shapes, coco, voc, yolo; got 'kitti'"),
        ("voc", {"val_path": "/nonexistent/Annotations"}, "data.val_path: '/nonexistent/Annotations' does not"),
        ("yolo", {"class_names": ()}, "data.class_names is empty and no class-name file"),
        ("yolo", {"train_images": "", "train_path": ""}, "data.train_images and data.train_path are both empty"),
        ("coco", {"max_objects": "1"}, "data.max_objects=1 is smaller than the"),
    ],
)
def test_config_errors_name_the_field(folders, fmt, change, expected):
    root, _ = folders
    assert expected in _error(_config(root, fmt, **change))


def test_coco_images_in_the_wrong_folder(folders):
    root, _ = folders
    msg = _error(_config(root, "coco", train_images=f"{root}/coco/val/images"))
    # the val folder holds 8 of the 16 training file names
    assert msg.startswith("data.train_images: 8 of the 16 images of data.train_path are missing"), msg


def test_yolo_labels_in_the_wrong_folder(folders):
    root, _ = folders
    msg = _error(_config(root, "yolo", train_path=f"{root}/coco/train/images"))
    assert msg.startswith("data.train_path: none of the 16 images"), msg


def test_voc_imagesets_list_and_yolo_classes_file(folders, tmp_path):
    """A Pascal VOC ``ImageSets/Main/<split>.txt`` list, and a YOLO ``classes.txt``, as the readers'
    inputs: the same records as the XML folder / explicit names."""

    root, counts = folders
    main = root / "voc" / "train" / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(0, SIZES["train"], 2)]
    (main / "train.txt").write_text("\n".join(ids) + "\n")
    config = _config(root, "voc", train_path=str(main / "train.txt"))
    train, _ = resolve_data_config(config)
    full, _ = resolve_data_config(_config(root, "voc"))
    assert len(train) == len(ids)
    for rec in train:
        same = [r for r in full if os.path.basename(r.image_path) == os.path.basename(rec.image_path)]
        np.testing.assert_array_equal(rec.boxes, same[0].boxes)
        np.testing.assert_array_equal(rec.classes, same[0].classes)


    yolo = tmp_path / "yolo"
    shutil.copytree(root / "yolo", yolo)
    (yolo / "train" / "labels" / "classes.txt").write_text("\n".join(NAMES) + "\n")
    config = _config(tmp_path, "yolo", class_names=())
    train, val = resolve_data_config(config)
    prepared, data = prepare_data(config)  # the run's config records the data's classes
    assert prepared.data.class_names == NAMES and prepared.model.num_classes == len(NAMES) == data.num_classes
    assert sum(len(r.classes) for r in val) == counts["val"]


def test_bad_images_and_invalid_boxes_in_the_config(folders, tmp_path):
    """``data.on_bad_image="error"`` names the bad file, ``data.invalid_boxes="error"`` counts the invalid objects
    per file and names the first's file and line, each with the override that skips / drops; unknown values of
    either field are refused naming it."""
    root, _ = folders
    corrupt, with_zero_area = _with_bad_files(root, tmp_path)
    msg = _error(_config(tmp_path, "yolo", invalid_boxes="drop"))
    assert msg.startswith("data.train_images: 1 of the 17 images cannot be read: " + corrupt), msg
    assert "--config.data.on_bad_image=skip" in msg
    msg = _error(_config(tmp_path, "yolo", on_bad_image="skip"))

    label = pathlib.Path(with_zero_area).parent.parent / "labels" / "000000.txt"
    image = pathlib.Path(with_zero_area)
    assert msg.startswith(f"data.train_path: 1 invalid object(s) in 1 image(s) ({image}: 1); the first: "
                          f"{label} [line 2]: box has zero or negative width/height"), msg  # fmt: skip
    assert "--config.data.invalid_boxes=drop" in msg
    for field in ("on_bad_image", "invalid_boxes"):
        msg = _error(_config(tmp_path, "yolo", **{field: "maybe"}))
        assert msg.startswith(f"data.{field} must be one of"), msg
