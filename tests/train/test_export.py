"""The round trip of issue 27: an ultralytics .pt -> ``model.init`` -> a jaxdet workdir -> ``python -m train.export``
-> ``ultralytics.YOLO(file)``: the same detections as ``train.predict``, and the ``jax.export`` function's too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import yolov8n_shapes
from jaxdet.data.synthetic import SHAPE_CLASSES
from tests.train import trainproc as tp
from tests.train.test_init_weights import save_ultralytics
from train import checkpoint as ckpt_lib
from train import export as export_lib
from train import init_weights
from train import predict as predict_lib
from train import step as step_lib
from train import task as task_lib

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")


def make_workdir(tmp, pt, *, image_size=64):
    """A jaxdet workdir whose step-0 checkpoint holds ``pt``'s weights (``model.init``), without training."""
    c = yolov8n_shapes.get_config()
    c.model.init = str(pt)
    c.data.image_size = image_size
    head = task_lib.make_head(c)

    def build(rngs):
        return head.build_model(c.model, rngs=rngs)

    _, _, init_fn = step_lib.make_recipe_init_fn(c.train, build, seed=0)
    state = init_weights.init_from_config(c, build, init_fn(), log=lambda s: None)
    work = os.path.join(tmp, "run")
    os.makedirs(work)
    config = json.loads(c.to_json_best_effort())
    with open(os.path.join(work, "config.json"), "w") as f:
        json.dump(config, f)
    ckpt = ckpt_lib.Checkpointer(os.path.join(work, "checkpoints"))
    ckpt.save(0, state, {"step": 0, "config": config})
    ckpt.close()
    return work


def save_scoring_pt(pt):
    """A random-weight ultralytics YOLOv8n .pt whose class biases are near 0 (ultralytics' init puts them at -9),
    so that scores spread over (0, 1) and predict at conf 0.25 finds boxes."""
    model = save_ultralytics(pt)
    with torch.no_grad():
        for seq in model.model[-1].cv3:
            seq[-1].bias.add_(8.0)
    torch.save({"model": model, "ema": None, "train_args": {"task": "detect"}}, pt)


def ultralytics_predict_equals_jaxdet_predict(work, pt, images):
    from ultralytics import YOLO  # noqa: PLC0415 - optional dependency

    ours = predict_lib.predict(work, images, batch_size=len(images))
    yolo = YOLO(pt, task="detect")
    assert yolo.names == dict(enumerate(SHAPE_CLASSES))
    results = yolo.predict([im[..., ::-1] for im in images], imgsz=64, conf=0.25, iou=0.7, max_det=300,
                           verbose=False, device="cpu")
    for o, r in zip(ours, results):
        _match(o, r.boxes.xyxy.numpy().astype(np.float64), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int))


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roundtrip")
    pt = tmp / "source.pt"
    save_scoring_pt(pt)
    work = make_workdir(str(tmp), pt)
    paths = export_lib.export(work, str(tmp / "exported.pt"))
    images = [np.random.default_rng(k).integers(0, 256, (64, 64, 3), dtype=np.uint8) for k in range(4)]
    return work, paths, images


def _match(ours, boxes, scores, classes):
    order = np.argsort(-ours["scores"], kind="stable")
    theirs = np.argsort(-scores, kind="stable")
    assert len(order) == len(theirs) > 0
    np.testing.assert_allclose(ours["scores"][order], scores[theirs], rtol=0, atol=2e-6)
    np.testing.assert_allclose(ours["boxes"][order], boxes[theirs], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(ours["classes"][order], classes[theirs])


def test_ultralytics_predict_of_the_export_equals_jaxdet_predict(roundtrip):
    """``ultralytics.YOLO(file).predict`` on the letterboxed (64 px) images gives jaxdet's boxes, scores and classes
    (float32: scores to 2e-6, boxes to 1e-3 px) and the class names travel in the file."""
    work, paths, images = roundtrip
    ultralytics_predict_equals_jaxdet_predict(work, paths["pt"], images)


def test_the_jax_export_function_runs_without_the_training_code(roundtrip):
    """``jax.export.deserialize`` of the ``.jax_export`` file in a fresh interpreter (no jaxdet import) gives
    jaxdet predict's detections."""
    work, paths, images = roundtrip
    info = json.load(open(paths["json"]))
    assert info["class_names"] == list(SHAPE_CLASSES) and info["image_size"] == 64 and info["batch_size"] == 1
    np.save(os.path.join(work, "im.npy"), images[0][None])
    code = (
        "import jax, numpy as np, sys\n"
        f"exp = jax.export.deserialize(open({paths['function']!r}, 'rb').read())\n"
        f"out = exp.call(np.load({os.path.join(work, 'im.npy')!r}))\n"
        f"np.savez({os.path.join(work, 'out.npz')!r}, *[np.asarray(o) for o in out])\n"
        "assert not any(m.startswith(('jaxdet', 'train', 'flax')) for m in sys.modules), 'imported the library'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=tp.env_for(1), cwd="/", capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(os.path.join(work, "out.npz"))
    boxes, scores, classes, valid = (out[f"arr_{k}"] for k in range(4))
    ours = predict_lib.predict(work, images[:1], batch_size=1)[0]
    keep = valid[0]
    _match(ours, boxes[0][keep].astype(np.float64), scores[0][keep], classes[0][keep])


def test_export_errors_name_the_problem(tmp_path, roundtrip):
    with pytest.raises(export_lib.ExportError, match="has no config.json"):
        export_lib.export(str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "train.export", "--workdir", str(tmp_path)], env=tp.env_for(1),
                          cwd=tp.REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --workdir") and "Traceback" not in proc.stderr
    assert jax.device_count() >= 1


def test_a_jaxdet_workdir_initialises_a_run_with_its_ema_weights(roundtrip):
    """``model.init`` = a jaxdet workdir: its latest checkpoint's EMA, every tensor transferred."""
    work, _, _ = roundtrip
    c = yolov8n_shapes.get_config()
    c.model.init = work
    head = task_lib.make_head(c)

    def build(rngs):
        return head.build_model(c.model, rngs=rngs)

    source = init_weights.load_checked(c, build)
    assert source.kind == "jaxdet" and "EMA weights" in source.description and source.class_names == SHAPE_CLASSES
    _, _, init_fn = step_lib.make_recipe_init_fn(c.train, build, seed=1)
    lines = []
    init_weights.init_from_config(c, build, init_fn(), source, log=lines.append)
    assert lines[0].startswith(f"model.init: transferred 354/354 tensors from {work} (jaxdet yolov8 checkpoint step 0")


@pytest.mark.slow
def test_ultralytics_val_and_jaxdet_evaluation_of_the_export_run_on_the_same_folder(roundtrip, tmp_path):
    """Both evaluations run on the same 32 images (``tests.train.val_compare``). With the random-weight model both
    mAPs are near 0; the trained default run's measured difference is in train/README.md."""
    from tests.train import val_compare  # noqa: PLC0415 - ultralytics and the folder writer, this test only

    work, _, _ = roundtrip
    result = val_compare.compare(work, str(tmp_path / "val"), 32)
    for k in ("mAP", "mAP50"):
        assert abs(result["ultralytics"][k] - result["jaxdet"][k]) <= 0.01, result


@pytest.mark.slow
def test_model_init_a_few_jaxdet_steps_export_and_ultralytics_predict(tmp_path):
    """The whole round trip on the command line: a .pt -> ``python -m train --config.model.init`` (2 steps) ->
    ``python -m train.export`` -> ``ultralytics.YOLO(file).predict`` equals ``train.predict`` of the run."""
    from tests.train.test_init_weights import SMALL  # noqa: PLC0415 - the small run's flags

    pt, work = tmp_path / "source.pt", str(tmp_path / "w")
    save_scoring_pt(pt)
    env = tp.env_for(1, {"YOLO_OFFLINE": "1"})
    proc = subprocess.run([sys.executable, "-m", "train", *SMALL, "--config.train.steps=2",
                           f"--config.model.init={pt}", "--workdir", work], env=env, cwd=tp.REPO,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model.init: transferred 354/354 tensors" in proc.stdout
    out = str(tmp_path / "exported.pt")
    proc = subprocess.run([sys.executable, "-m", "train.export", "--workdir", work, "--out", out], env=env,
                          cwd=tp.REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checkpoint step 2 (ema weights)" in proc.stdout and os.path.isfile(out[:-3] + ".jax_export")
    images = [np.random.default_rng(k).integers(0, 256, (64, 64, 3), dtype=np.uint8) for k in range(4)]
    ultralytics_predict_equals_jaxdet_predict(work, out, images)
