"""``model.init`` (train.init_weights): ultralytics / jaxdet checkpoints into a run, by name and shape, class rows by
name (ultralytics 8.4.190 ``_remap_cls_by_names``), bad input named, and the run's use of it (resume ignores it)."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from configs import yolov8n_shapes
from jaxdet.data.synthetic import SHAPE_CLASSES
from tests.train import trainproc as tp
from train import init_weights
from train import step as step_lib
from train import task as task_lib
from train import workdir as workdir_lib

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

#: a small YOLOv8n run of python -m train at 64 px.
SMALL = (
    "--config.data.train_size=16", "--config.data.val_size=8", "--config.eval.num_images=8",
    "--config.eval.batch_size=8", "--config.train.batch_size=4", "--config.train.nbs=4",
    "--config.train.warmup_steps=1", "--config.train.log_every=1", "--config.train.eval_every=0",
    "--config.train.checkpoint_every=0", "--config.train.progress_bar=false",
)


def save_ultralytics(path, yaml="yolov8n.yaml", nc=5, names=SHAPE_CLASSES, seed=0, *, state_dict=False):
    """An ultralytics model built from its yaml with random weights and BatchNorm statistics, saved in ultralytics'
    checkpoint format (``{"model", "ema", "train_args", ...}``; float32, not half, for the float64 comparison)."""
    import ultralytics  # noqa: PLC0415 - the test skips without it
    from ultralytics.nn.tasks import DetectionModel, PoseModel, SegmentationModel  # noqa: PLC0415 - as above

    torch.manual_seed(seed)
    kind = SegmentationModel if "-seg" in yaml else PoseModel if "-pose" in yaml else DetectionModel
    model = kind(yaml, nc=nc, verbose=False)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    if names is not None:
        model.names = dict(enumerate(names))
    if state_dict:
        torch.save(model.state_dict(), path)
    else:
        task = {SegmentationModel: "segment", PoseModel: "pose"}.get(kind, "detect")
        torch.save({"model": model, "ema": None, "train_args": {"task": task}, "version": ultralytics.__version__},
                   path)
    return model


@pytest.fixture(scope="module")
def v8_pt(tmp_path_factory):
    path = tmp_path_factory.mktemp("pt") / "yolov8n_shapes.pt"
    model = save_ultralytics(path)
    return str(path), model


def _config(init="", **model):
    c = yolov8n_shapes.get_config()
    c.model.init = str(init)
    for k, v in model.items():
        c.model[k] = v
    return c


def _build(c):
    head = task_lib.make_head(c)
    return lambda rngs: head.build_model(c.model, rngs=rngs)


# ---------------------------------------------------------------------------------------------- class rows


def test_class_index_follows_ultralytics_remap_rules():
    a = ("cat", "dog", "bird")
    assert init_weights.class_index(a, a) is None  # same names, same order: a plain copy
    assert init_weights.class_index(a, ("0", "1", "2")) is None  # placeholder names: nothing to match on
    assert init_weights.class_index(("0", "1"), a) is None
    assert init_weights.class_index(a, ("fish",)) is None  # nothing in common
    assert init_weights.class_index(a, None) is None
    np.testing.assert_array_equal(init_weights.class_index(a, (" Dog", "fish", "CAT")), [1, -1, 0])
    np.testing.assert_array_equal(init_weights.class_index(a, ("bird", "dog", "cat")), [2, 1, 0])


def test_transfer_copies_by_name_and_shape_and_class_rows_by_name():
    rng = np.random.default_rng(0)
    cls_k, cls_b = ("model", "22", "cv3", "0", "2", "kernel"), ("model", "22", "cv3", "0", "2", "bias")
    hidden = ("model", "22", "cv3", "0", "1", "conv", "kernel")
    box = ("model", "22", "cv2", "0", "2", "bias")
    target = {cls_k: rng.normal(size=(1, 1, 8, 2)).astype(np.float32), cls_b: np.zeros(2, np.float32),
              hidden: np.zeros((3, 3, 8, 8), np.float32), box: np.zeros(64, np.float32),
              ("model", "0", "conv", "kernel"): np.zeros((3, 3, 3, 16), np.float32)}
    src_vars = {cls_k: rng.normal(size=(1, 1, 8, 3)), cls_b: np.array([1.0, 2.0, 3.0]), hidden: np.ones((3, 3, 8, 8)),
                box: np.ones(64), ("model", "0", "conv", "kernel"): np.ones((3, 3, 3, 8))}
    source = init_weights.Source("x.pt", "ultralytics", "test", src_vars, ("cat", "dog", "bird"), {})
    new, report = init_weights.transfer(target, source, target_names=("bird", "fish"))
    np.testing.assert_array_equal(new[cls_b], [3.0, 0.0])  # row "bird" from source row 2; "fish" stays fresh
    np.testing.assert_allclose(new[cls_k][..., 0], src_vars[cls_k][..., 2].astype(np.float32))
    np.testing.assert_array_equal(new[cls_k][..., 1], target[cls_k][..., 1])
    assert new[hidden].dtype == np.float32 and np.all(new[hidden] == 1)
    assert (report.transferred, report.total, report.remapped_tensors, report.remapped_rows) == (4, 5, 2, 1)
    assert report.reinitialised == ["model.0.conv.weight"]  # ultralytics' names; the stem's width differs
    line = report.line(source)
    assert "transferred 4/5 tensors" in line and "remapped 1/2 class rows by name" in line
    # without names (or with the same ones) the class tensors transfer only when their shapes fit
    _, report = init_weights.transfer(target, source, target_names=None, num_classes=2)
    assert report.remapped_tensors == 0 and "model.22.cv3.0.2.bias" in report.reinitialised


# ---------------------------------------------------------------------------------------------- ultralytics .pt


def _levels(preds, n):
    sizes = [int(f.shape[2] * f.shape[3]) for f in preds["feats"]]
    return [torch.cat([b, s], 1).reshape(n, -1, f.shape[2], f.shape[3]).permute(0, 2, 3, 1).numpy()
            for b, s, f in zip(preds["boxes"].split(sizes, -1), preds["scores"].split(sizes, -1), preds["feats"])]


def test_step_0_outputs_equal_ultralytics_float64(v8_pt):
    """``model.init`` of an ultralytics .pt: the run's model at step 0 gives ultralytics' outputs (float64)."""
    path, torch_model = v8_pt
    with jax.enable_x64(True):
        c = _config(path)
        source = init_weights.read_source(path, param_dtype=np.float64)
        target = nnx.eval_shape(lambda: _build(c)(nnx.Rngs(0)))
        init_weights.check_compatible(source, c, target)
        from jaxdet.models.yolo import YOLO  # noqa: PLC0415 - the float64 twin of the run's model

        model = YOLO(version=target.version, scale=target.scale, num_classes=target.num_classes, rngs=nnx.Rngs(1),
                     param_dtype=np.float64)
        graphdef, params, stats = nnx.split(model, nnx.Param, ...)
        state, report = init_weights.initial_state({"params": params, "model_state": stats}, source,
                                                   target_names=init_weights.run_class_names(c))
        assert report.transferred == report.total and not report.reinitialised
        model = nnx.merge(graphdef, state["params"], state["model_state"])
        model.eval()
        images = np.random.default_rng(0).uniform(size=(2, 64, 64, 3))
        ours = [np.asarray(o) for o in model(images)]
    ref = torch_model.double().eval()
    with torch.no_grad():
        theirs = _levels(ref(torch.from_numpy(images).permute(0, 3, 1, 2))[1], 2)
    torch_model.float()
    for a, b in zip(ours, theirs):
        assert np.max(np.abs(a - b)) <= 1e-10 * max(1.0, np.max(np.abs(b)))


def test_initial_state_restarts_the_ema_from_the_loaded_weights_and_keeps_the_optimizer_fresh(v8_pt):
    path, torch_model = v8_pt
    c = _config(path)
    build = _build(c)
    _, _, init_fn = step_lib.make_recipe_init_fn(c.train, build, seed=0)
    fresh = init_fn()
    state = init_weights.init_from_config(c, build, fresh, log=lambda s: None)
    sd = torch_model.state_dict()
    kernel = np.asarray(state["params"]["model"][0]["conv"]["kernel"][...])
    np.testing.assert_allclose(kernel, sd["model.0.conv.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_allclose(np.asarray(state["model_state"]["model"][0]["bn"]["var"][...]),
                               sd["model.0.bn.running_var"].numpy())  # BatchNorm statistics come with the weights
    np.testing.assert_allclose(np.asarray(state["ema"]["params"]["model"][0]["conv"]["kernel"][...]), kernel)
    np.testing.assert_allclose(np.asarray(state["ema"]["model_state"]["model"][0]["bn"]["var"][...]),
                               sd["model.0.bn.running_var"].numpy())
    assert int(state["ema"]["updates"]) == 0
    for a, b in zip(jax.tree.leaves(state["opt_state"]), jax.tree.leaves(fresh["opt_state"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_another_class_count_transfers_all_but_the_class_logits_and_remaps_overlapping_names(tmp_path):
    """Fine-tuning to 3 classes from a 5-class .pt: the 6 class-logit tensors (cv3.<i>.2 weight and bias) are the
    only ones re-initialised without names; with two overlapping names their rows come from the source."""
    path = tmp_path / "five.pt"
    torch_model = save_ultralytics(path)
    sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    c = _config(path, num_classes=3)
    build = _build(c)
    fresh = {"params": nnx.split(build(nnx.Rngs(0)), nnx.Param, ...)[1]}
    fresh["model_state"] = nnx.split(build(nnx.Rngs(0)), nnx.Param, ...)[2]
    source = init_weights.load_checked(c, build)
    _, report = init_weights.initial_state(fresh, source, target_names=("a", "b", "c"))
    cls = sorted(f"model.22.cv3.{i}.2.{w}" for i in range(3) for w in ("weight", "bias"))
    assert sorted(report.reinitialised) == cls and report.transferred == report.total - 6
    names = ("triangle", "dog", "RECTANGLE")  # rows 3 and 0 of the source
    state, report = init_weights.initial_state(fresh, source, target_names=names)
    assert not report.reinitialised and report.remapped_tensors == 6 and report.remapped_rows == 2
    bias = np.asarray(state["params"]["model"][22]["cv3"][1][2]["bias"][...])
    np.testing.assert_allclose(bias[[0, 2]], sd["model.22.cv3.1.2.bias"][[3, 0]])
    np.testing.assert_array_equal(bias[1], np.asarray(fresh["params"]["model"][22]["cv3"][1][2]["bias"][...])[1])
    kernel = np.asarray(state["params"]["model"][22]["cv3"][0][2]["kernel"][...])
    np.testing.assert_allclose(kernel[0, 0, :, 0], sd["model.22.cv3.0.2.weight"][3, :, 0, 0])


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("yaml, found", [
    ("yolov8n-seg.yaml", "SegmentationModel (task 'segment')"),
    ("yolov8n-pose.yaml", "PoseModel (task 'pose')"),
    ("yolo11n.yaml", "yolo11n detection model; this run builds yolov8n"),
    ("yolov8s.yaml", "yolov8s detection model; this run builds yolov8n"),
])
def test_a_checkpoint_of_another_task_version_or_scale_is_named(tmp_path, yaml, found):
    path = tmp_path / "other.pt"
    save_ultralytics(path, yaml=yaml, names=None)
    c = _config(path)
    with pytest.raises(init_weights.InitWeightsError) as err:
        init_weights.load_checked(c, _build(c))
    assert str(err.value).startswith(f"model.init={str(path)!r}: ") and found in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_file_a_non_checkpoint_and_a_bare_state_dict(tmp_path):
    c = _config(tmp_path / "nope.pt")
    with pytest.raises(init_weights.InitWeightsError, match="model.init=.*nope.pt.*no such file or directory"):
        init_weights.load_checked(c, _build(c))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    c = _config(tmp_path / "junk.pt")
    with pytest.raises(init_weights.InitWeightsError, match="not a torch checkpoint"):
        init_weights.load_checked(c, _build(c))
    save_ultralytics(tmp_path / "sd.pt", state_dict=True)  # a state dict: no names, weights all transfer
    c = _config(tmp_path / "sd.pt")
    source = init_weights.load_checked(c, _build(c))
    assert source.class_names is None and source.model["version"] == "v8"


def test_a_jaxdet_checkpoint_of_another_head_is_named(tmp_path):
    from train.checkpoint import Checkpointer  # noqa: PLC0415 - only this test writes a checkpoint

    ckpt = Checkpointer(str(tmp_path / "run" / "checkpoints"))
    ckpt.save(3, {"params": {"w": np.zeros(3, np.float32)}, "model_state": {}},
              {"config": {"model": {"head": "yolov1", "num_classes": 5}, "data": {"name": "shapes"}}})
    ckpt.close()
    c = _config(tmp_path / "run")
    with pytest.raises(init_weights.InitWeightsError, match=r"model.init=.*: is a jaxdet checkpoint of "
                                                            r"model.head='yolov1'; this run's model.head is 'yolov8'"):
        init_weights.load_checked(c, _build(c))
    with pytest.raises(init_weights.InitWeightsError, match="without jaxdet checkpoints"):
        init_weights.read_source(str(tmp_path))


def test_model_init_is_safe_to_change_on_resume():
    assert workdir_lib.is_safe("model.init")  # ignored on resume: it cannot change the checkpoints' model


# ---------------------------------------------------------------------------------------------- the run


def _train(args, timeout=600):
    return subprocess.run([sys.executable, "-m", "train", *args], env=tp.env_for(1, {"YOLO_OFFLINE": "1"}),
                          cwd=tp.REPO, capture_output=True, text=True, timeout=timeout)


def test_bad_model_init_exits_2_before_compiling(tmp_path):
    proc = _train([*SMALL, "--config.train.steps=1", f"--config.model.init={tmp_path / 'missing.pt'}",
                   "--workdir", str(tmp_path / "w")], timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model.init=") and "no such file or directory" in last
    assert "compiling" not in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_python_m_train_fine_tunes_from_a_pt_and_a_resume_ignores_model_init(tmp_path, v8_pt):
    """One step from the .pt; the same run again (nothing left to train: no train step compiled) with another
    model.init resumes and says it ignored model.init."""
    path, _ = v8_pt
    work = str(tmp_path / "w")
    proc = _train([*SMALL, "--config.train.steps=1", f"--config.model.init={path}", "--workdir", work], timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"model.init: transferred 354/354 tensors from {path} (ultralytics yolov8n, 5 classes)" in proc.stdout
    proc = _train([*SMALL, "--config.train.steps=1", f"--config.model.init={path}x", "--workdir", work],
                  timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"model.init='{path}x' ignored: the run resumes from its own checkpoint (step 1)" in proc.stdout


@pytest.mark.parametrize("config, yaml, cls_tensors", [("yolo11n_shapes", "yolo11n.yaml", 6),
                                                       ("yolo26n_shapes", "yolo26n.yaml", 12)])
def test_every_yolo_version_goes_through_the_same_path(tmp_path, config, yaml, cls_tensors):
    """YOLO11 and YOLO26 (its one2one_cv3 class branches too): everything transfers, and to 3 classes with two
    overlapping names the class-logit tensors are remapped; export rebuilds the version's DetectionModel."""
    import importlib  # noqa: PLC0415 - the config module by name

    from train import export as export_lib  # noqa: PLC0415 - this test only

    save_ultralytics(tmp_path / "v.pt", yaml=yaml)
    c = importlib.import_module(f"configs.{config}").get_config()
    c.model.init = str(tmp_path / "v.pt")
    build = _build(c)
    source = init_weights.load_checked(c, build)
    graphdef, params, stats = nnx.split(build(nnx.Rngs(0)), nnx.Param, ...)
    state, report = init_weights.initial_state({"params": params, "model_state": stats}, source,
                                               target_names=init_weights.run_class_names(c))
    assert report.transferred == report.total and not report.reinitialised
    ckpt = export_lib.ultralytics_checkpoint(nnx.merge(graphdef, state["params"], state["model_state"]),
                                             SHAPE_CLASSES, image_size=64)
    assert ckpt["train_args"]["model"] == yaml and ckpt["ema"].names == dict(enumerate(SHAPE_CLASSES))
    c.model.num_classes = 3
    build = _build(c)
    _, params, stats = nnx.split(build(nnx.Rngs(0)), nnx.Param, ...)
    _, report = init_weights.initial_state({"params": params, "model_state": stats}, source,
                                           target_names=("triangle", "dog", "RECTANGLE"))
    assert report.remapped_tensors == cls_tensors and report.remapped_rows == 2 and not report.reinitialised
