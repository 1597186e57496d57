"""``train.predict``: a tiny run's checkpoint on non-square JPEG/PNG files -> annotated images and COCO results
that faster-coco-eval loads; the notebook function; clear errors; the final-evaluation report files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from faster_coco_eval import COCO, COCOeval_faster
from PIL import Image

from configs import yolov1_shapes
from jaxdet.metrics import coco_metrics
from jaxdet.nms import Detections
from tests.train import trainproc as tp
from train import checkpoint as ckpt_lib
from train import eval_report, loop
from train import predict as predict_lib
from train import recipe as recipe_lib
from train import step as step_lib
from train.data import prepare_data
from train.task import make_task


def _tiny_config():

    c = yolov1_shapes.get_config()
    c.data.image_size = 32
    c.model.grid_size = 4
    c.model.widths = (8,)
    c.model.depths = (0,)
    c.model.head_width = 8
    c.data.train_size = 8
    c.data.val_size = 8
    c.eval.max_detections = 8
    return c


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A workdir as ``python -m train`` leaves it (config.json, checkpoints/2), from the initial state."""

    work = tmp_path_factory.mktemp("run")
    config, data = prepare_data(_tiny_config())
    task = make_task(config, data)
    tx, _ = recipe_lib.make_optimizer(config.train)
    _, init_fn = step_lib.make_init_fn(task.build_model, tx, seed=int(config.seed),
                                       init_loss_state=task.init_loss_state)
    state = init_fn()  # eager: no compile for a tiny model
    state["step"] = state["step"] + 2
    with open(work / "config.json", "w") as f:
        json.dump(loop._config_json(config), f)
    ck = ckpt_lib.Checkpointer(str(work / "checkpoints"))
    ck.save(2, state, {"step": 2})
    ck.close()
    return work


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):

    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 90, 3), dtype=np.uint8)).save(d / "wide.png")
    Image.fromarray(rng.integers(0, 255, (70, 30, 3), dtype=np.uint8)).save(d / "tall.jpg")
    (d / "notes.txt").write_text("not an image")
    return d


def test_predict_command_writes_images_and_coco_results(run_dir, image_dir, tmp_path, capsys):

    out = tmp_path / "out"
    predict_lib.main(["--workdir", str(run_dir), "--images", str(image_dir), "--out", str(out),
                      "--score-threshold", "0.0"])  # `python -m train.predict ...`, in this process
    assert "checkpoint step 2" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["images.json", "predictions.json", "tall.jpg", "wide.png"]
    assert Image.open(out / "wide.png").size == (90, 40) and Image.open(out / "tall.jpg").size == (30, 70)

    images = json.loads((out / "images.json").read_text())
    assert [(im["file_name"], im["width"], im["height"]) for im in images["images"]] == [
        ("tall.jpg", 30, 70), ("wide.png", 90, 40)]
    preds = json.loads((out / "predictions.json").read_text())
    assert preds, "score threshold 0 keeps detections"
    coco = COCO(str(out / "images.json"))
    res = coco.loadRes(str(out / "predictions.json"))  # faster-coco-eval accepts the results
    assert len(res.getAnnIds()) == len(preds)
    sizes = {im["id"]: (im["width"], im["height"]) for im in images["images"]}
    for p in preds:  # boxes in original pixels, inside their image
        w, h = sizes[p["image_id"]]
        x, y, bw, bh = p["bbox"]
        assert 0 <= x and 0 <= y and bw >= 0 and bh >= 0 and x + bw <= w + 1e-3 and y + bh <= h + 1e-3
        assert 1 <= p["category_id"] <= 5


def test_predict_function_takes_paths_and_arrays(run_dir, image_dir):
    predictor = predict_lib.load_predictor(str(run_dir), score_threshold=0.0)
    by_path = predict_lib.predict(str(run_dir), str(image_dir), predictor=predictor, batch_size=1)
    assert [os.path.basename(r["file"]) for r in by_path] == ["tall.jpg", "wide.png"]
    arrays = [predict_lib.read_image(r["file"]) for r in by_path]
    by_array = predict_lib.predict(str(run_dir), arrays, predictor=predictor, batch_size=2)
    for a, b in zip(by_path, by_array):
        assert a["orig_size"] == b["orig_size"] == arrays[by_path.index(a)].shape[:2]
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-4)  # batch of 1 vs 2: same predictions
        np.testing.assert_array_equal(a["classes"], b["classes"])
        assert a["names"] == [predictor.class_names[c] for c in a["classes"]]


def test_command_exits_2_naming_the_problem(tmp_path):
    command = [sys.executable, "-m", "train.predict", "--workdir", str(tmp_path), "--images", str(tmp_path)]
    proc = subprocess.run(command, env=tp.env_for(1), cwd=tp.REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "holds no image files" in proc.stderr, proc.stderr[-2000:]


def test_clear_errors(run_dir, image_dir, tmp_path):
    with pytest.raises(predict_lib.PredictError, match="no config.json"):
        predict_lib.load_predictor(str(tmp_path))
    (tmp_path / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(predict_lib.PredictError, match="has no checkpoint"):
        predict_lib.load_predictor(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(predict_lib.PredictError, match="holds no image files"):
        predict_lib.list_images(str(empty))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(predict_lib.PredictError, match="broken.jpg"):
        predict_lib.read_image(str(bad))


def test_exif_orientation_is_applied(tmp_path):

    im = Image.fromarray(np.zeros((20, 50, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° when displayed
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert predict_lib.read_image(str(tmp_path / "rot.jpg")).shape == (50, 20, 3)


def test_final_report_files(tmp_path):
    """eval/per_class.* and the PR curve of a coco_metrics result; pr_curve.json equals faster-coco-eval's
    precision array at IoU 0.5 for a class, computed here independently."""

    gt = {"boxes": np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]]], np.float32),
          "classes": np.array([[0, 1]], np.int32), "valid": np.array([[True, True]])}
    boxes = np.array([[[0.1, 0.1, 0.4, 0.4], [0.52, 0.5, 0.9, 0.9], [0.0, 0.6, 0.3, 0.9], [0.0, 0.0, 0.2, 0.2]]],
                     np.float32)
    scores = np.array([[0.5, 0.9, 0.95, 0.97]], np.float32)  # each class: a false positive ranked first
    classes = np.array([[0, 1, 0, 1]], np.int32)
    res = coco_metrics(Detections(boxes, scores, classes, np.ones((1, 4), bool)), gt, image_size=100, num_classes=3)
    res["class_names"] = ["a", "b", "c"]
    paths = eval_report.write_report(str(tmp_path), res, step=7)
    assert os.path.getsize(tmp_path / "plots" / "PR_curve.png") > 1000 and len(paths) == 4
    rows = json.loads((tmp_path / "eval" / "per_class.json").read_text())["rows"]
    assert [r["class"] for r in rows] == ["all", "a", "b", "c"] and rows[3]["AP50"] == -1.0
    assert "| b | 1 | 1 |" in (tmp_path / "eval" / "per_class.md").read_text()
    curve = json.loads((tmp_path / "eval" / "pr_curve.json").read_text())
    assert sorted(curve["precision"]) == ["a", "b"]  # class c has no GT

    px = lambda b: [float(b[0] * 100), float(b[1] * 100), float((b[2] - b[0]) * 100), float((b[3] - b[1]) * 100)]  # noqa: E731
    coco = COCO({"images": [{"id": 1, "width": 100, "height": 100}],
                 "annotations": [{"id": j + 1, "image_id": 1, "category_id": int(gt["classes"][0, j]) + 1,
                                  "bbox": px(gt["boxes"][0, j]),
                                  "area": px(gt["boxes"][0, j])[2] * px(gt["boxes"][0, j])[3],
                                  "iscrowd": 0} for j in range(2)],
                 "categories": [{"id": k + 1} for k in range(3)]})
    dets = coco.loadRes([{"image_id": 1, "category_id": int(c) + 1, "bbox": px(b), "score": float(s)}
                         for b, s, c in zip(boxes[0], scores[0], classes[0])])
    ev = COCOeval_faster(coco, dets, iouType="bbox", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    want = ev.eval["precision"][0, :, 1, 0, -1]  # IoU 0.5, class b, all areas, maxDets 100
    assert 0 < want.mean() < 1  # not a trivial curve
    np.testing.assert_allclose(curve["precision"]["b"], want, atol=1e-12)
    np.testing.assert_allclose(curve["recall"], np.linspace(0, 1, 101), atol=1e-12)


@pytest.mark.parametrize("flag, enabled", [((), True), (("--compile-cache",), True), (("--no-compile-cache",), False)])
def test_predict_turns_the_compilation_cache_on_unless_told_not_to(monkeypatch, tmp_path, capsys, flag, enabled):
    calls = []
    monkeypatch.setattr(predict_lib.compile_cache, "enable", lambda *a, **k: calls.append(a) or "")
    with pytest.raises(SystemExit) as info:  # no images: predict stops after the cache decision, before compiling
        predict_lib.main(["--workdir", str(tmp_path), "--images", str(tmp_path / "none"), *flag])
    assert info.value.code == 2 and "error:" in capsys.readouterr().err
    assert calls == ([()] if enabled else [])


def _rows(r):
    """A result's detections as ``[class, score, x0, y0, x1, y1]`` rows in a fixed order (for set equality)."""
    rows = np.concatenate([np.asarray(r["classes"], np.float64)[:, None], np.asarray(r["scores"])[:, None],
                           np.asarray(r["boxes"])], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_tiled_predict_of_a_mosaic_equals_its_tiles(run_dir):
    """A 2 x 3 mosaic of 40 px images, cut at 40 px without overlap: its windows are the images, so its merged
    detections are the images' own detections shifted by their offsets (none suppressed: they cannot overlap)."""
    predictor = predict_lib.load_predictor(str(run_dir), score_threshold=0.0)
    rng = np.random.default_rng(1)
    tiles = rng.integers(0, 255, (2, 3, 40, 40, 3), dtype=np.uint8)
    mosaic = np.concatenate([np.concatenate(list(row), axis=1) for row in tiles], axis=0)  # [80, 120, 3]
    [merged] = predictor.predict_tiled([mosaic], tile=40, overlap=0.0, batch_size=6)
    per_tile = predictor.predict_arrays(list(tiles.reshape(6, 40, 40, 3)), batch_size=6)

    offsets = [np.array([40.0 * c, 40.0 * r] * 2) for r in range(2) for c in range(3)]
    want = {"classes": np.concatenate([t["classes"] for t in per_tile]),
            "scores": np.concatenate([t["scores"] for t in per_tile]),
            "boxes": np.concatenate([t["boxes"] + o for t, o in zip(per_tile, offsets)])}
    assert len(want["scores"]) >= 12, "score threshold 0: every tile has detections"
    assert merged["orig_size"] == (80, 120)
    np.testing.assert_array_equal(merged["windows"], [[40 * c, 40 * r, 40 * c + 40, 40 * r + 40]
                                                      for r in range(2) for c in range(3)])
    np.testing.assert_array_equal(_rows(merged), _rows(want))
    assert (np.diff(merged["scores"]) <= 0).all()
    assert merged["names"] == [predictor.class_names[c] for c in merged["classes"]]
    window_of = np.concatenate([np.full(len(t["scores"]), k) for k, t in enumerate(per_tile)])
    np.testing.assert_array_equal(np.sort(merged["window"]), np.sort(window_of))


def test_tiled_predict_command_writes_full_images(run_dir, tmp_path, capsys):
    images = tmp_path / "large"
    images.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (70, 150, 3), dtype=np.uint8)).save(images / "scene.png")
    out = tmp_path / "out"
    predict_lib.main(["--workdir", str(run_dir), "--images", str(images), "--out", str(out), "--score-threshold",
                      "0.0", "--tile", "48", "--overlap", "0.25"])
    assert "checkpoint step 2" in capsys.readouterr().out
    assert Image.open(out / "scene.png").size == (150, 70)
    preds = json.loads((out / "predictions.json").read_text())
    assert preds and all(0 <= p["bbox"][0] and p["bbox"][0] + p["bbox"][2] <= 150 + 1e-3 and
                         p["bbox"][1] + p["bbox"][3] <= 70 + 1e-3 for p in preds)
    assert any(p["bbox"][0] > 48 for p in preds), "detections from the windows right of the first"


@pytest.mark.parametrize("flags, message", [
    (("--tile", "0"), "--tile must be a positive int; got 0"),
    (("--tile", "64", "--overlap", "1.0"), "--overlap must be in [0.0, 1.0); got 1.0"),
    (("--tile", "64", "--overlap", "-0.1"), "--overlap must be in [0.0, 1.0)"),
    (("--overlap", "0.2"), "--overlap needs --tile SIZE"),
])
def test_bad_tiling_flags_exit_2_before_loading(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:  # checked before the workdir is read: no config.json here
        predict_lib.main(["--workdir", str(tmp_path), "--images", str(tmp_path), *flags])
    assert info.value.code == 2 and message in capsys.readouterr().err
