"""``--config.data.yaml``: an ultralytics dataset file, resolved as ultralytics' own ``check_det_dataset`` resolves it.

A small YOLO dataset is written once; several ``data.yaml`` files describe it in the ways ultralytics accepts (an
absolute or missing ``path``, ``names`` as a list or a dict, ``nc``, a ``validation`` key, a ``../`` entry, a .txt
list of images with ``./`` lines, a list of folders, images in a subfolder). For each, the roots, split entries,
class names, image files and label files must equal ultralytics' (8.4.190) on the same file.
"""

from __future__ import annotations

import os
import shutil
import types

import numpy as np
import pytest
import yaml

from jaxdet.data import DatasetFormatError, SyntheticShapes, write_yolo, yolo_image_files, yolo_label_path
from train import cli
from train.data import DataConfigError, read_data_yaml, resolve_data_config
from train.field_use import unread_overrides

NAMES = ["ring", "star", "cross"]
SIZES = {"train": 10, "val": 4}

ultralytics_data_utils = pytest.importorskip("ultralytics.data.utils")
ultralytics_base = pytest.importorskip("ultralytics.data.base")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """``(root, objects per split)``: ``root/{train,val}/{images,labels}``, one training image moved to
    ``images/extra/`` (recursion)."""
    root = tmp_path_factory.mktemp("yolo_dataset")
    objects = {}
    for split, n in SIZES.items():
        ds = SyntheticShapes(split, num_images=n, image_size=32, seed=5, max_objects_per_image=3)
        anns = []
        for i in range(n):
            a = dict(ds.annotation(i))
            a["classes"] = np.asarray(a["classes"]) % len(NAMES)
            anns.append(a)
        write_yolo(anns, root / split, polygons=False)
        objects[split] = sum(len(a["classes"]) for a in anns)
    moved = sorted((root / "train" / "images").iterdir())[0]
    (root / "train" / "images" / "extra").mkdir()
    (root / "train" / "labels" / "extra").mkdir()
    shutil.move(moved, root / "train" / "images" / "extra" / moved.name)
    label = root / "train" / "labels" / (moved.stem + ".txt")
    if label.exists():
        shutil.move(label, root / "train" / "labels" / "extra" / label.name)
    val_images = sorted((root / "val" / "images").iterdir())
    with open(root / "val_list.txt", "w") as fh:
        fh.writelines(f"./val/images/{p.name}\n" for p in val_images)
    return root, objects


def _variants(root):
    r = str(root)
    return {
        "absolute path, names list": {"path": r, "train": "train/images", "val": "val/images", "names": NAMES},
        "no path, names dict": {"train": "train/images", "val": "val/images", "names": dict(enumerate(NAMES))},
        "nc and validation key": {"path": r, "train": "train/images", "validation": "val/images", "nc": 3,
                                  "names": NAMES},
        "../ entry": {"path": r, "train": "../train/images", "val": "val/images", "names": NAMES},
        "txt list and folder list": {"path": r, "train": ["train/images"], "val": "val_list.txt", "names": NAMES},
    }


def _write(root, name, content) -> str:
    path = root / f"{name.replace(' ', '_').replace('/', '')}.yaml"
    with open(path, "w") as fh:
        yaml.safe_dump(content, fh)
    return str(path)


def _as_list(value):
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _ultralytics_files(entries):
    dataset = types.SimpleNamespace(prefix="", fraction=1.0)  # what get_img_files reads of its dataset
    return ultralytics_base.BaseDataset.get_img_files(dataset, entries if len(entries) > 1 else entries[0])


@pytest.mark.parametrize("variant", list(_variants("R")))
def test_resolution_equals_ultralytics_check_det_dataset(dataset, variant):
    root, _ = dataset
    file = _write(root, variant, _variants(root)[variant])
    ours = read_data_yaml(file)
    theirs = ultralytics_data_utils.check_det_dataset(file, autodownload=False)
    assert ours.root == str(theirs["path"])
    assert list(ours.class_names) == list(theirs["names"].values())
    for split in ("train", "val"):
        assert ours.splits[split] == _as_list(theirs[split]), split
        files = [str(f) for f in yolo_image_files(ours.splits[split])]
        assert files == _ultralytics_files(_as_list(theirs[split])), split
        assert [str(yolo_label_path(f)) for f in files] == ultralytics_data_utils.img2label_paths(files)
    assert len(yolo_image_files(ours.splits["train"])) == SIZES["train"]  # the subfolder's image is found


def _config(*args):
    config, _, _ = cli.parse_args(list(args))
    return config


def test_the_yaml_selects_the_yolo_reader_and_reads_every_object(dataset):
    root, objects = dataset
    file = _write(root, "run", _variants(root)["txt list and folder list"])
    config = _config(f"--config.data.yaml={file}")
    assert config.data.name == "yolo"  # chosen by --config.data.yaml alone
    train, val = resolve_data_config(config)
    assert (len(train), len(val)) == (SIZES["train"], SIZES["val"])
    assert tuple(train.class_names) == tuple(NAMES)
    assert sum(len(r.classes) for r in train) == objects["train"]
    assert sum(len(r.classes) for r in val) == objects["val"]


@pytest.mark.parametrize("change, expected", [
    ({"train": None}, "the 'train:' entry is missing"),
    ({"names": {0: "a", 2: "c"}}, "'names' must number the classes 0..1"),
    ({"nc": 4}, "'names' has 3 entries but 'nc' is 4"),
    ({"nc": "many"}, "'nc: many' must be an integer"),
    ({"names": None}, "needs 'names'"),
    ({"val": "nowhere/images"}, "the val entry"),
    ({"path": "/nonexistent/root"}, "'path: /nonexistent/root' does not exist"),
    ({"train": {"a": 1}}, "'train:' must be a path or a list of paths"),
])
def test_a_malformed_yaml_names_the_file_and_the_problem(dataset, change, expected):
    root, objects = dataset
    content = {k: v for k, v in {**_variants(root)["absolute path, names list"], **change}.items() if v is not None}
    file = _write(root, "bad", content)
    with pytest.raises(DataConfigError) as info:
        resolve_data_config(_config(f"--config.data.yaml={file}"))
    msg = str(info.value)
    assert msg.startswith(f"data.yaml: {file}") and expected in msg, msg


def test_yaml_and_the_folder_fields_cannot_both_be_set(dataset):
    root, objects = dataset
    file = _write(root, "both", _variants(root)["absolute path, names list"])
    config = _config(f"--config.data.yaml={file}", f"--config.data.train_images={root}/train/images")
    with pytest.raises(DataConfigError, match="data.yaml and data.train_images are both set"):
        resolve_data_config(config)


def test_a_missing_yaml_and_another_data_name_are_refused(dataset, tmp_path):
    root, objects = dataset
    with pytest.raises(DataConfigError, match="data.yaml: .* does not exist"):
        resolve_data_config(_config(f"--config.data.yaml={tmp_path / 'none.yaml'}"))
    file = _write(root, "coco_named", _variants(root)["absolute path, names list"])
    config = _config(f"--config.data.yaml={file}", "--config.data.name=coco",
                     f"--config.data.train_path={tmp_path}/a.json", f"--config.data.val_path={tmp_path}/b.json")
    with pytest.raises(DataConfigError, match="data.yaml is read with data.name='yolo'; this run's data.name is"):
        resolve_data_config(config)
    unread = unread_overrides(_config(f"--config.data.yaml={file}", "--config.data.name=shapes"), ["data.yaml"])
    assert unread and "data.yaml is read only when data.name is one of yolo" in unread[0]


def test_the_label_files_of_a_list_are_found_as_ultralytics_finds_them():
    path = os.path.join(os.sep, "d", "images", "x", "images", "train", "a.b.jpg")
    assert str(yolo_label_path(path)) == os.path.join(os.sep, "d", "images", "x", "labels", "train", "a.b.txt")
    assert str(yolo_label_path(path)) == ultralytics_data_utils.img2label_paths([path])[0]
    flat = os.path.join(os.sep, "d", "pics", "a.png")
    assert str(yolo_label_path(flat)) == ultralytics_data_utils.img2label_paths([flat])[0]


def test_an_entry_that_is_missing_or_holds_no_images_is_named(tmp_path):
    with pytest.raises(DatasetFormatError, match="nowhere: does not exist"):
        yolo_image_files(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no images here")
    with pytest.raises(DatasetFormatError, match="empty: holds no images"):
        yolo_image_files([str(tmp_path / "empty")])
