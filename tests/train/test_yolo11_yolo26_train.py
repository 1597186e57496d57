"""YOLO11n and YOLO26n through ``python -m train`` (``configs/yolo11n_shapes.py``, ``configs/yolo26n_shapes.py``)
at 64 px, batches of 4: four steps with an evaluation, a SIGKILL after the checkpoint of step 2 and a bit-identical
resume, then ``train.predict`` on the checkpoint (YOLO26: the NMS-free decode, equal to
:func:`jaxdet.nms_free.nms_free_decode` of the one-to-one branch, duplicates kept).

The runs compile the whole train step (10-16 minutes each on the loaded 2-core CPU of their first run); the
stand-in runner does not turn on ``train.compile_cache``, so the three runs of a model share JAX's persistent
compilation cache through ``JAX_COMPILATION_CACHE_DIR`` instead, and only the first compiles.
"""

from __future__ import annotations

import signal

import jax
import numpy as np
import pytest

from jaxdet.nms_free import nms_free_decode
from tests.train import trainproc as tp
from train import model_state as model_state_lib
from train import predict as predict_lib
from train import step as step_lib
from train.task import make_head

pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # compiles YOLO11n / YOLO26n train steps in subprocesses

STEPS, KILL_AT = 4, 3  # SIGKILL when the batch of step index 3 is requested: after the checkpoint of step 2
FLAGS = (
    f"--config.train.steps={STEPS}", "--config.train.batch_size=4", "--config.train.nbs=4",
    "--config.train.warmup_steps=1", "--config.train.eval_every=4", "--config.train.checkpoint_every=2",
    "--config.data.train_size=16", "--config.data.val_size=8", "--config.eval.num_images=8",
    "--config.eval.batch_size=4", "--config.train.log_every=1", "--config.train.progress_bar=false",
)
TIMEOUT = 1800  # a cold compile of the train step on a loaded 2-core CPU


def _train_kill_resume(name, tmp_path, monkeypatch):
    """``(ref workdir, train records)`` after checking that the killed and resumed run equals the reference."""
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "xla"))  # the subprocesses inherit it
    config = ("--config", f"configs/{name}_shapes.py")
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    tp.run(ref, *config, *FLAGS, task="real", timeout=TIMEOUT)
    killed = tp.run(crashed, *config, *FLAGS, task="real", extra=("--sigkill-at-step", str(KILL_AT)), check=False,
                    timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    assert tp.checkpoint_steps(crashed) == [2]
    resumed = tp.run(crashed, *config, *FLAGS, task="real", timeout=TIMEOUT)
    assert f"resumed from {crashed / 'checkpoints'} step 2" in resumed.stdout, resumed.stdout[-3000:]
    p_ref, p_res = tp.params(ref), tp.params(crashed)
    assert sorted(p_ref) == sorted(p_res) and any(k.startswith("ema") for k in p_ref)
    for k in p_ref:
        np.testing.assert_array_equal(p_res[k], p_ref[k], err_msg=k)  # bit-identical, EMA included
    l_ref, l_res = tp.losses(ref), tp.losses(crashed)
    assert sorted(l_ref) == sorted(l_res) == list(range(1, STEPS + 1)) and l_ref == l_res, (l_ref, l_res)
    records = tp.records(ref)
    train = [r for r in records if r["kind"] == "train"]
    assert all(np.isfinite(r["loss"]) for r in train)
    (evaluation,) = [r for r in records if r["kind"] == "eval"]
    assert evaluation["step"] == STEPS and evaluation["num_images"] == 8 and 0 <= evaluation["mAP"] <= 1
    return ref, train


def _images():
    return list(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8))  # 64 px: no letterbox


def test_yolo11n_trains_resumes_and_predicts(tmp_path, monkeypatch):
    ref, train = _train_kill_resume("yolo11n", tmp_path, monkeypatch)
    assert {"box", "cls", "dfl"} <= set(train[0])
    predictor = predict_lib.load_predictor(str(ref), score_threshold=0.0, max_detections=50)
    assert predictor.config.model.head == "yolo11" and predictor.step == STEPS
    results = predictor.predict_arrays(_images(), batch_size=2)
    assert all(0 < len(r["scores"]) <= 50 and np.all(np.diff(r["scores"]) <= 0) for r in results)


def test_yolo26n_trains_resumes_and_predicts_without_nms(tmp_path, monkeypatch):
    ref, train = _train_kill_resume("yolo26n", tmp_path, monkeypatch)
    terms = ("box", "cls", "l1")
    assert {*terms, *(f"{b}_{t}" for b in ("o2m", "o2o") for t in terms), "o2m_weight"} <= set(train[0])
    # the one-to-many weight decays linearly over the run's steps, 0.8 at the first and 0.1 at the last
    np.testing.assert_allclose([r["o2m_weight"] for r in train], [0.8, 0.8 - 0.7 / 3, 0.8 - 1.4 / 3, 0.1],
                               rtol=1e-5)

    predictor = predict_lib.load_predictor(str(ref), score_threshold=0.0, max_detections=50)
    images = _images()
    results = predictor.predict_arrays(images, batch_size=2)
    # the same model, in eval mode: its one-to-one branch through nms_free_decode
    config = predictor.config
    head = make_head(config)
    _, graphdef, _ = step_lib.make_recipe_init_fn(config.train, lambda rngs: head.build_model(config.model, rngs=rngs),
                                                  seed=int(config.seed), init_loss_state=head.init_state)
    model = model_state_lib.merge_model(graphdef, jax.device_get(predictor._variables), train=False)
    raw, points, strides, _ = head.flatten(model(np.stack(images)))
    ref_dets = nms_free_decode(raw, points, strides, max_det=50)
    for i, r in enumerate(results):
        assert len(r["scores"]) == 50  # score > 0 everywhere: all 50 kept, no NMS
        np.testing.assert_allclose(r["scores"], np.asarray(ref_dets.scores[i]), rtol=1e-5)
        np.testing.assert_array_equal(r["classes"], np.asarray(ref_dets.labels[i]))
        np.testing.assert_allclose(r["boxes"], np.clip(np.asarray(ref_dets.boxes[i]), 0, 64), atol=1e-3)
