"""``train.experiments``: every experiment resolves to valid configs, the diagnostics are right, one runs end to end."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.assign import yolov1_grid_assign
from jaxdet.data.records import pad_example
from jaxdet.losses.yolo import yolov1_loss
from jaxdet.models import HEADS, PolygonHead
from jaxdet.models.yolov1_head import yolov1_activate
from train import batches as batches_lib
from train import data as data_lib
from train import experiments as ex
from train import recipe as recipe_lib
from train import step as step_lib
from train.batches import stack_examples
from train.task import make_head, make_task


def _alpha_at(config, step):
    """The polygon head's hybrid α at ``step`` (its schedule, or adaptive α's initial value)."""
    head = make_head(config)
    return float(head.alpha(jnp.int32(step), head.init_state()))


@pytest.mark.parametrize("scale", sorted(ex.SCALES))
def test_every_experiment_resolves_to_valid_configs(scale):

    assert set(ex.EXPERIMENTS) >= {
        "case_study", "static_alpha", "dynamic_alpha", "two_stage", "adaptive_alpha", "normalization",
        "grad_cosine", "pure_losses",
    }
    for exp in ex.EXPERIMENTS.values():
        assert exp.variants and len({v.name for v in exp.variants}) == len(exp.variants)
        keys = set()
        for variant in exp.variants:
            config = ex.resolve_config(variant, scale=scale, seed=2)
            assert config.seed == 2
            for dotted, value in ex.SCALES[scale]["overrides"].items():
                section, field = dotted.rsplit(".", 1)
                node = config
                for part in section.split("."):
                    node = node[part]
                assert node[field] == value, (exp.name, variant.name, dotted)
            assert config.model.head in ("yolov1", "polygon")
            assert set(HEADS[config.model.head].loss_defaults) <= set(config.loss), variant.name
            steps = int(config.train.steps)
            has_alpha = isinstance(make_head(config), PolygonHead)  # the YOLOv1 head has no α
            for step in (0, steps // 3, steps - 1) if has_alpha else ():
                a = _alpha_at(config, step)
                assert 0.0 <= a <= 1.0 and math.isfinite(a), (exp.name, variant.name, step, a)
            keys.add(ex.config_key(config))
        assert len(keys) == len(exp.variants), f"{exp.name}: two variants resolve to the same config"


def _variant(exp, name):
    return next(v for v in ex.EXPERIMENTS[exp].variants if v.name == name)


def test_schedules_follow_their_closed_forms():
    t = 300
    lin = ex.resolve_config(_variant("dynamic_alpha", "linear 1→0"), steps=t)
    assert _alpha_at(lin, 0) == pytest.approx(1.0) and _alpha_at(lin, t // 2) == pytest.approx(0.5)
    cos = ex.resolve_config(_variant("dynamic_alpha", "cosine 1→0.2"), steps=t)
    mid = int(0.35 * t)  # half of the 70 % transition: 0.2 + 0.8 * (1 + cos(pi/2)) / 2
    assert _alpha_at(cos, 0) == pytest.approx(1.0) and _alpha_at(cos, mid) == pytest.approx(0.6, abs=1e-6)
    assert _alpha_at(cos, t - 1) == pytest.approx(0.2)
    stp = ex.resolve_config(_variant("dynamic_alpha", "step 0.9/0.3"), steps=t)
    assert _alpha_at(stp, t // 2 - 1) == pytest.approx(0.9) and _alpha_at(stp, t // 2) == pytest.approx(0.3)
    exp_v = ex.resolve_config(_variant("dynamic_alpha", "exponential 0.9·e^(−0.05·epoch)"), steps=t)
    epoch = t // 100  # an "epoch" is 1 % of training
    assert _alpha_at(exp_v, 10 * epoch) == pytest.approx(0.9 * math.exp(-0.5), rel=1e-5)
    for share in (50, 70, 90):
        two = ex.resolve_config(_variant("two_stage", f"stage 1 = {share} %"), steps=t)
        switch = share * t // 100
        assert _alpha_at(two, switch - 1) == 1.0 and _alpha_at(two, switch) == 0.0
    for a in (0.1, 0.3, 0.5, 0.7, 0.9):
        cfg = ex.resolve_config(_variant("static_alpha", f"α={a}"), steps=t)
        assert _alpha_at(cfg, 0) == pytest.approx(a) and _alpha_at(cfg, t - 1) == pytest.approx(a)
    ada = ex.resolve_config(_variant("adaptive_alpha", "adaptive"), steps=t)
    assert ada.loss.alpha.name == "adaptive" and _alpha_at(ada, 0) == pytest.approx(0.9)


def test_unknown_scale_and_override_raise():
    v = ex.EXPERIMENTS["case_study"].variants[0]
    with pytest.raises(ValueError, match="scale"):
        ex.resolve_config(v, scale="huge")
    with pytest.raises(ValueError, match="no_such_field"):
        ex.resolve_config(ex.Variant("bad", "yolov1_shapes", {"loss.no_such_field": 1}))
    with pytest.raises(ValueError, match="unknown experiment"):
        ex.run_experiment("nope")


@pytest.mark.slow
@pytest.mark.parametrize("iou_target", ["stop", "through"])
def test_box_gradient_split_matches_per_term_grads_and_keeps_the_loss(iou_target):

    config = ex.resolve_config(_variant("case_study", "Case 2 (stop)"), scale="tiny")
    config.loss.iou_target = iou_target
    task = make_task(config)
    wrapped = ex.with_box_gradient_split(task.loss_fn, make_head(config))
    s, nb, nc = int(config.model.grid_size), int(config.model.num_boxes), int(config.model.num_classes)
    rng = np.random.default_rng(0)
    raw = jnp.asarray(rng.normal(0, 1.0, (3, s, s, nb * 5 + nc)), jnp.float32)
    example = [task.train_source[i] for i in range(3)]

    batch = {k: jnp.asarray(v) for k, v in
             stack_examples([pad_example(e, data_lib.max_objects(config)) for e in example]).items()}

    step, state = jnp.int32(0), task.init_loss_state()
    (l0, m0), g0 = jax.value_and_grad(lambda r: task.loss_fn(r, batch, step=step, state=state)[:2], has_aux=True)(raw)
    (l1, m1), g1 = jax.value_and_grad(lambda r: wrapped(r, batch, step=step, state=state)[:2], has_aux=True)(raw)
    np.testing.assert_array_equal(np.asarray(l0), np.asarray(l1))
    np.testing.assert_allclose(np.asarray(g0), np.asarray(g1), rtol=1e-6, atol=1e-7)
    assert set(m0) < set(m1)

    # Oracle: one jax.grad per term (no shared vjp), masked to the x, y, sqrt_w, sqrt_h channels by slicing.
    pred = yolov1_activate(raw, num_boxes=nb, num_classes=nc)

    def term(name):
        def f(p):
            res = yolov1_loss(p, batch["boxes"], batch["classes"], batch["valid"], num_boxes=nb, num_classes=nc,
                              lambda_coord=5.0, lambda_noobj=0.5, iou_target=iou_target)
            return jnp.mean(res.terms[name])

        g = jax.grad(f)(pred)
        return np.concatenate([np.asarray(g[..., b * 5: b * 5 + 4]).ravel() for b in range(nb)])

    g = {name: term(name) for name in ("coord_xy", "coord_wh", "obj", "noobj", "cls")}
    # C < IoU for a responsible predictor <=> d(obj)/dC = 2(C - IoU) < 0 (closed form of the squared error).

    conf = np.asarray(pred[..., 4: nb * 5: 5])  # [N, S, S, B]
    def obj_of(p):
        res = yolov1_loss(p, batch["boxes"], batch["classes"], batch["valid"], num_boxes=nb, num_classes=nc,
                          iou_target=iou_target)
        return jnp.mean(res.terms["obj"])

    dconf = np.asarray(jax.grad(obj_of)(pred)[..., 4: nb * 5: 5])
    n_img = raw.shape[0]
    target = conf - dconf * n_img / 2.0  # IoU target of the responsible predictors (dconf = 2(C - IoU)/N)
    resp = dconf != 0
    assert resp.sum() == int(np.asarray(yolov1_grid_assign(batch["boxes"], batch["classes"], batch["valid"],
                                                            grid_size=s).has_object).sum())
    assert np.all((target[resp] >= -1e-6) & (target[resp] <= 1 + 1e-6))  # an IoU
    np.testing.assert_allclose(float(m1["conf_below_iou_frac"]), np.mean(conf[resp] < target[resp]), atol=1e-6)
    coord = g["coord_xy"] + g["coord_wh"]
    np.testing.assert_allclose(float(m1["boxgrad_coord"]), np.linalg.norm(coord), rtol=1e-5)
    np.testing.assert_allclose(float(m1["boxgrad_obj"]), np.linalg.norm(g["obj"]), rtol=1e-5, atol=1e-9)
    assert float(m1["boxgrad_noobj"]) == 0.0 and float(m1["boxgrad_cls"]) == 0.0
    if iou_target == "stop":  # Case 2: the confidence term sends nothing to the box coordinates
        assert float(m1["boxgrad_obj"]) == 0.0 and float(m1["boxgrad_obj_share"]) == 0.0
    else:  # Case 1: it does
        assert np.linalg.norm(g["obj"]) > 1e-4
        cos = np.dot(g["obj"], coord) / (np.linalg.norm(g["obj"]) * np.linalg.norm(coord))
        np.testing.assert_allclose(float(m1["boxgrad_cos_obj_coord"]), cos, rtol=1e-4, atol=1e-6)


def test_polygon_prediction_stats_counts_ground_truth_cells():

    config = ex.resolve_config(_variant("pure_losses", "pure MGIoU (α=0)"), scale="tiny")
    task = make_task(config)
    tx, _ = recipe_lib.make_optimizer(config.train)
    graphdef, init_fn = step_lib.make_init_fn(task.build_model, tx, seed=0)
    state = init_fn()
    stats = ex.polygon_prediction_stats(config, task, make_head(config), state, graphdef=graphdef)
    # Independent count of the occupied cells: distinct (image, row, col) of the valid boxes' centres.
    s = int(config.model.grid_size)
    cells = 0
    for full, keep in batches_lib.eval_batches(task.val_source, num_images=int(config.eval.num_images),
                                            batch_size=int(config.eval.batch_size),
                                            max_objects=data_lib.max_objects(config)):
        for i in np.flatnonzero(keep):
            b = full["boxes"][i][full["valid"][i]]
            cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
            col = np.clip(np.floor(cx * s), 0, s - 1).astype(int)
            row = np.clip(np.floor(cy * s), 0, s - 1).astype(int)
            cells += len(set(zip(row.tolist(), col.tolist())))
    assert stats["gt_cells"] == cells > 0
    # At initialisation every cell predicts a regular octagon of radius one cell: nowhere near the full image.
    assert stats["gt_cells_full_image"] == 0 and stats["gt_cells_full_image_frac"] == 0.0
    assert 0.0 <= stats["cell_polygon_iou"] <= 1.0
    assert 0 <= stats["kept_full_image"] <= stats["kept"]


@pytest.mark.slow
def test_case_study_runs_end_to_end_and_writes_its_table(tmp_path):
    root, out = str(tmp_path / "runs"), str(tmp_path / "docs")
    logs: list[str] = []
    result = ex.run_experiment("case_study", scale="tiny", steps=3, root=root, out=out, log=logs.append)
    md = open(os.path.join(out, "case_study.md")).read()
    for variant in ex.EXPERIMENTS["case_study"].variants:
        assert f"| {variant.name} | 1 |" in md
    assert "‖g_obj‖" in md and "python -m train.experiments case_study" in md
    for png in ("case_study_gradients.png", "case_study_losses.png"):
        assert os.path.getsize(os.path.join(out, png)) > 1000
    runs = json.load(open(os.path.join(out, "case_study.json")))["runs"]
    assert [r["variant"] for r in runs] == [v.name for v in ex.EXPERIMENTS["case_study"].variants]
    for r in runs:
        assert r["steps"] == 3 and 0.0 <= r["eval"]["mAP50"] <= 1.0
    by = {r["variant"]: r for r in result["records"]}
    stop = [t["boxgrad_obj"] for t in by["Case 2 (stop)"]["train"]]
    through = [t["boxgrad_obj"] for t in by["Case 1 (through)"]["train"]]
    assert len(stop) == 3 and all(v == 0.0 for v in stop) and all(v > 0.0 for v in through)
    # An identical second call reuses the finished runs.
    logs.clear()
    ex.run_experiment("case_study", scale="tiny", steps=3, root=root, out=out, log=logs.append)
    assert sum(line.startswith("  reuse ") for line in logs) == 2
