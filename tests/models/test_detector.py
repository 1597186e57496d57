"""Tests for jaxdet.models: detector shapes/finiteness, both heads' losses (finite, differentiable, zero at
hand-built perfect outputs), decode consistency (perfect outputs decode to the GT, mAP 1), Case 1 vs Case 2,
and a few optimizer steps reducing the loss."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdet.metrics import coco_metrics
from jaxdet.models import (
    HEADS,
    build_detector,
    default_model_config,
    make_head,
)

S, B, K, C = 7, 2, 8, 3


def _cfg(head: str, **kw) -> ml_collections.ConfigDict:
    cfg = default_model_config()
    cfg.head = head
    # A tiny network keeps compile times short; the default one is covered by test_default_detector_shapes.
    cfg.widths, cfg.depths, cfg.head_width = (8, 16, 16), (0, 0, 1), 16
    cfg.update(kw)
    return cfg


def default_loss_config(head: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(HEADS[head].loss_defaults))


def detection_loss(raw, batch, *, model_cfg, loss_cfg, alpha=None, state=None):
    """``(loss, metrics)`` of the head of ``model_cfg`` (the polygon head at an explicit α), plus the new state
    when ``state`` is given."""
    head = make_head(model_cfg, loss_cfg, num_classes=C)
    if model_cfg.head == "yolov1":
        loss, metrics, new_state = head.loss(raw, batch, step=jnp.int32(0), state=state)
    else:
        loss, metrics, new_state = head.loss_at_alpha(raw, batch, alpha=alpha, hybrid_state=state)
    return (loss, metrics) if state is None else (loss, metrics, new_state)


def _logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _octagon_in(box):
    """A regular octagon-like polygon inscribed in a box, canonical order (CCW from the smallest angle)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    t = -np.pi + (np.arange(K) + 0.5) * 2 * np.pi / K
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], -1)


def _hand_batch():
    """3 images, 64 px: two with objects in distinct cells, one empty. Returns the batch (numpy)."""
    m = 4
    objs = [
        [([0.05, 0.10, 0.35, 0.40], 0), ([0.55, 0.50, 0.95, 0.85], 2)],
        [([0.30, 0.30, 0.70, 0.62], 1)],
        [],
    ]
    n = len(objs)
    batch = {
        "image": np.random.default_rng(0).uniform(0, 1, (n, 64, 64, 3)).astype(np.float32),
        "boxes": np.zeros((n, m, 4), np.float32),
        "classes": np.zeros((n, m), np.int32),
        "valid": np.zeros((n, m), bool),
        "polygons": np.zeros((n, m, K, 2), np.float32),
        "image_id": np.arange(n, dtype=np.int32),
    }
    for i, img in enumerate(objs):
        for j, (box, c) in enumerate(img):
            batch["boxes"][i, j], batch["classes"][i, j], batch["valid"][i, j] = box, c, True
            batch["polygons"][i, j] = _octagon_in(np.asarray(box))
    return batch


def _cells(batch):
    """(image, row, col, gt index) of every valid object: the cell holding its centre (independent of jaxdet)."""
    out = []
    for i, j in zip(*np.nonzero(batch["valid"])):
        b = batch["boxes"][i, j].astype(np.float64)
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        out.append((i, int(math.floor(cy * S)), int(math.floor(cx * S)), j))
    return out


def _perfect_yolov1(batch):
    n = batch["boxes"].shape[0]
    raw = np.zeros((n, S, S, B * 5 + C), np.float64)
    raw[..., 4:B * 5:5] = -30.0  # every confidence ~ 0
    for i, r, c, j in _cells(batch):
        b = batch["boxes"][i, j].astype(np.float64)
        cx, cy, w, h = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]
        raw[i, r, c, 0:5] = [*_logit([cx * S - c, cy * S - r, math.sqrt(w), math.sqrt(h)]), 30.0]
        raw[i, r, c, 5:10] = [0.0, 0.0, -12.0, -12.0, -30.0]  # predictor 1: a tiny box, not responsible
        raw[i, r, c, B * 5 + batch["classes"][i, j]] = 30.0
    return jnp.asarray(raw, jnp.float32)


def _perfect_polygon(batch):
    n = batch["boxes"].shape[0]
    raw = np.zeros((n, S, S, 5 + 2 * K + C), np.float64)
    raw[..., 0] = -30.0
    for i, r, c, j in _cells(batch):
        b = batch["boxes"][i, j].astype(np.float64)
        cx, cy, w, h = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]
        raw[i, r, c, 0] = 30.0
        raw[i, r, c, 1:5] = _logit([cx * S - c, cy * S - r, math.sqrt(w), math.sqrt(h)])
        off = batch["polygons"][i, j].astype(np.float64) * S - np.array([c + 0.5, r + 0.5])
        raw[i, r, c, 5: 5 + 2 * K] = off.reshape(-1)
        raw[i, r, c, 5 + 2 * K + batch["classes"][i, j]] = 30.0
    return jnp.asarray(raw, jnp.float32)


@functools.cache
def _jitted_loss(head: str, normalization: str = "none"):
    """One compiled ``(raw, batch, alpha) -> (loss, metrics)`` per head/normalisation, shared by the tests."""
    cfg = _cfg(head)
    loss_cfg = default_loss_config(head)
    if head == "polygon":
        loss_cfg.normalization = normalization
    return jax.jit(lambda r, b, a: detection_loss(r, b, model_cfg=cfg, loss_cfg=loss_cfg, alpha=a))


@pytest.fixture(scope="module")
def batch():
    return _hand_batch()


# ------------------------------------------------------------------------------------------------ detector


@pytest.mark.slow
def test_default_detector_shapes_and_finite():
    cfg = default_model_config()
    cfg.head = "yolov1"  # the grid detector (the default head is yolov8)
    model = build_detector(cfg, num_classes=5, rngs=nnx.Rngs(0))
    fwd = nnx.jit(lambda m, x: m(x))
    # Noise, plus degenerate inputs (constant images make GroupNorm's variance 0; huge values).
    noise = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (64, 64, 3)), jnp.float32)
    x = jnp.stack([noise, jnp.zeros((64, 64, 3)), jnp.ones((64, 64, 3)), jnp.full((64, 64, 3), 1e4)])
    out = fwd(model, x)
    assert out.shape == (4, 7, 7, B * 5 + 5)
    assert bool(jnp.all(jnp.isfinite(out)))
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert 1e5 < n_params < 2e6


@pytest.mark.parametrize("head", ["yolov1", "polygon"])
def test_build_detector_heads(head):
    cfg = _cfg(head, grid_size=5)
    model = build_detector(cfg, num_classes=C, rngs=nnx.Rngs(0))
    out = nnx.jit(lambda m, x: m(x))(model, jnp.zeros((1, 48, 48, 3)))
    d = make_head(cfg, num_classes=C).channels
    assert out.shape == (1, 5, 5, d)
    assert d == (B * 5 + C if head == "yolov1" else 1 + 4 + 2 * K + C)
    if head == "polygon":
        # Initial vertices: a regular K-gon around each cell centre, counter-clockwise (positive shoelace).
        v = out[0, 2, 2, 5: 5 + 2 * K].reshape(K, 2)
        area = 0.5 * jnp.sum(v[:, 0] * jnp.roll(v[:, 1], -1) - jnp.roll(v[:, 0], -1) * v[:, 1])
        assert float(area) > 1.0


def test_bad_config_raises():
    with pytest.raises(ValueError, match="head"):
        build_detector(_cfg("ssd"), num_classes=C, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes"):
        build_detector(_cfg("yolov1"), num_classes=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="widths"):
        build_detector(_cfg("yolov1", depths=(0,)), num_classes=C, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="images"):
        build_detector(_cfg("yolov1"), num_classes=C, rngs=nnx.Rngs(0))(jnp.zeros((1, 32, 32)))


# ------------------------------------------------------------------------------------------------ losses


@pytest.mark.parametrize("head", ["yolov1", "polygon"])
def test_perfect_outputs_zero_loss_and_exact_decode(head, batch):
    cfg = _cfg(head)
    raw = _perfect_yolov1(batch) if head == "yolov1" else _perfect_polygon(batch)
    jb = {k: jnp.asarray(v) for k, v in batch.items()}
    loss, metrics = _jitted_loss(head)(raw, jb, 0.5)
    assert float(loss) == pytest.approx(0.0, abs=2e-5), metrics
    if head == "polygon":
        assert float(metrics["l2"]) == pytest.approx(0.0, abs=1e-6)
        assert float(metrics["mgiou"]) == pytest.approx(0.0, abs=1e-5)
        assert float(metrics["num_pos"]) == 3.0
    det = jax.jit(lambda r: make_head(cfg, num_classes=C).decode(
        r, score_threshold=0.5, iou_threshold=0.5, max_detections=5))(raw)
    det = jax.tree.map(np.asarray, det)
    for i in range(batch["boxes"].shape[0]):
        v = batch["valid"][i]
        assert det.valid[i].sum() == v.sum()
        got = det.boxes[i][det.valid[i]]
        order = np.lexsort(got.T[::-1])
        want = batch["boxes"][i][v]
        np.testing.assert_allclose(got[order], want[np.lexsort(want.T[::-1])], atol=2e-5)
        assert sorted(det.classes[i][det.valid[i]]) == sorted(batch["classes"][i][v])
        if head == "polygon":
            for p in det.polygons[i][det.valid[i]]:
                assert min(np.abs(p - q).max() for q in batch["polygons"][i][v]) < 2e-5
    res = coco_metrics(det, batch, image_size=64, num_classes=C)
    assert res["mAP"] == pytest.approx(1.0) and res["mAP50"] == pytest.approx(1.0)
    if head == "polygon":
        assert res["polygon_mIoU"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("head", ["yolov1", "polygon"])
def test_model_loss_finite_and_differentiable(head, batch):
    cfg = _cfg(head)
    loss_cfg = default_loss_config(head)
    model = build_detector(cfg, num_classes=C, rngs=nnx.Rngs(0))
    jb = {k: jnp.asarray(v) for k, v in batch.items()}

    @nnx.jit
    def loss_and_grad(model, b, alpha):
        def f(m):
            return detection_loss(m(b["image"]), b, model_cfg=cfg, loss_cfg=loss_cfg, alpha=alpha)

        return nnx.value_and_grad(f, has_aux=True)(model)

    (loss, metrics), grads = loss_and_grad(model, jb, jnp.float32(0.7))
    assert np.isfinite(float(loss)) and float(loss) > 0
    expected = {"loss", "coord_xy", "coord_wh", "obj", "noobj", "cls"} if head == "yolov1" else {
        "loss", "obj", "noobj", "cls", "box", "poly", "num_pos", "alpha", "l2", "mgiou", "l2_grad_norm",
        "mgiou_grad_norm", "grad_cosine"}
    assert set(metrics) == expected
    assert all(np.isfinite(float(v)) for v in metrics.values())
    terms = [k for k in metrics if k in ("coord_xy", "coord_wh", "obj", "noobj", "cls", "box", "poly")]
    assert float(loss) == pytest.approx(sum(float(metrics[k]) for k in terms), rel=1e-5)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.sum(g * g)) for g in leaves) > 0
    if head == "polygon":
        assert float(metrics["alpha"]) == pytest.approx(0.7)
        # All-empty batch: finite loss and gradients, no positives.
        empty = dict(jb, valid=jnp.zeros_like(jb["valid"]))
        (loss0, m0), g0 = loss_and_grad(model, empty, jnp.float32(0.7))
        assert np.isfinite(float(loss0)) and float(m0["num_pos"]) == 0.0
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(g0))


def test_yolov1_case1_vs_case2_gradients(batch):
    """Same loss value; Case 2 ("stop") gives the box coordinates no gradient from the obj term, Case 1 does."""
    cfg = _cfg("yolov1")
    jb = {k: jnp.asarray(v) for k, v in batch.items()}
    raw = jnp.asarray(np.random.default_rng(3).normal(0, 1, (3, S, S, B * 5 + C)), jnp.float32)

    def obj_term(r, path):
        return detection_loss(r, jb, model_cfg=cfg, loss_cfg={"iou_target": path})[1]["obj"]

    v_stop, g_stop = jax.jit(jax.value_and_grad(lambda r: obj_term(r, "stop")))(raw)
    v_thr, g_thr = jax.jit(jax.value_and_grad(lambda r: obj_term(r, "through")))(raw)
    assert float(v_stop) == pytest.approx(float(v_thr))
    coords = np.concatenate([np.arange(b * 5, b * 5 + 4) for b in range(B)])
    assert float(jnp.abs(g_stop[..., coords]).max()) == 0.0
    assert float(jnp.abs(g_thr[..., coords]).max()) > 0.0
    conf = np.arange(4, B * 5, 5)
    np.testing.assert_allclose(g_stop[..., conf], g_thr[..., conf], rtol=1e-6, atol=1e-8)


def test_polygon_loss_state_and_alpha(batch):
    cfg = _cfg("polygon")
    jb = {k: jnp.asarray(v) for k, v in batch.items()}
    raw = jnp.asarray(np.random.default_rng(4).normal(0, 1, (3, S, S, 5 + 2 * K + C)), jnp.float32)
    lc = default_loss_config("polygon")
    f = _jitted_loss("polygon")
    _, m1 = f(raw, jb, 1.0)
    _, m0 = f(raw, jb, 0.0)
    # α = 1: the vertex term is the L2 alone; α = 0: MGIoU alone (λ_poly = 2 by default).
    assert float(m1["poly"]) == pytest.approx(lc.lambda_poly * float(m1["l2"]), rel=1e-6)
    assert float(m0["poly"]) == pytest.approx(lc.lambda_poly * float(m0["mgiou"]), rel=1e-6)
    lc = default_loss_config("polygon")
    lc.normalization = "loss_ema"
    state = make_head(cfg, lc, num_classes=C).init_state()["hybrid"]
    loss, metrics, state2 = jax.jit(
        lambda r, b, s: detection_loss(r, b, model_cfg=cfg, loss_cfg=lc, alpha=0.5, state=s))(raw, jb, state)
    assert int(state2.count) == 1 and float(state2.l2_loss_ema) == pytest.approx(float(metrics["l2"]), rel=1e-6)
    # Real gradient normalisation (custom VJP inside the hybrid): finite gradients w.r.t. the raw outputs.
    lc_gn = default_loss_config("polygon")
    lc_gn.normalization = "grad_norm"
    g = jax.jit(jax.grad(lambda r: detection_loss(r, jb, model_cfg=cfg, loss_cfg=lc_gn, alpha=0.5)[0]))(raw)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g[..., 5: 5 + 2 * K]).max()) > 0
    with pytest.raises(ValueError, match="alpha"):
        make_head(cfg, {"alpha": {"name": "bogus"}}, num_classes=C)
    with pytest.raises(ValueError, match="polygons"):
        detection_loss(raw, {k: v for k, v in jb.items() if k != "polygons"}, model_cfg=cfg, loss_cfg=lc, alpha=0.5)


def test_optimizer_steps_reduce_loss(batch):
    cfg = _cfg("yolov1")
    loss_cfg = default_loss_config("yolov1")
    model = build_detector(cfg, num_classes=C, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    jb = {k: jnp.asarray(v) for k, v in batch.items()}

    @nnx.jit
    def step(model, opt, b):
        def f(m):
            return detection_loss(m(b["image"]), b, model_cfg=cfg, loss_cfg=loss_cfg)[0]

        loss, grads = nnx.value_and_grad(f)(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt, jb)) for _ in range(25)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
