"""jaxdet.losses.yolo26 (and the reg_max = 1 path of yolov8_loss): the end-to-end loss against ultralytics'
E2ELoss at several points of its weight schedule, the schedule itself, swapping it, the Case 1/Case 2 switch and
the pluggable terms on both branches, finiteness on degenerate input (hypothesis) and argument errors.

The 256-px rows (terms of both branches, the total and the gradients w.r.t. both branches' outputs, float64 and
float32) are in ``python -m jaxdet.parity`` (``yolo26_loss``, ``yolov8_loss (reg_max=1 ...)``), run by
tests/parity/test_cases.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ultralytics.utils.loss import E2ELoss

from jaxdet.losses.yolo26 import yolo26_branch_weights, yolo26_loss
from jaxdet.losses.yolov8 import yolov8_loss
from jaxdet.parity.torch_yolo26 import detection_loss_torch, e2e_loss_torch, stub_model
from jaxdet.schedules import one2many_weight
from jaxdet.tal import make_anchor_points

IMAGE, CLASSES, BATCH, GTS = 64, 3, 2, 4
ANCHORS = make_anchor_points([(IMAGE // s, IMAGE // s) for s in (8, 16, 32)], (8, 16, 32))
A = ANCHORS.points.shape[0]


def small_inputs(seed=0, dtype=np.float32):
    """``(one2many [2, 84, 7], one2one [2, 84, 7], gt_labels [2, 4], gt_boxes [2, 4, 4] px, valid [2, 4])``:
    positive ltrb distances of a fresh head (grid units) and class logits around -1, on 64-px images."""
    rng = np.random.default_rng(seed)

    def branch():
        x = rng.normal(-1.0, 1.0, (BATCH, A, 4 + CLASSES))
        x[..., :4] = rng.uniform(0.3, 4.0, (BATCH, A, 4))
        return x.astype(dtype)

    size = rng.uniform(6, 40, (BATCH, GTS, 2))
    centre = rng.uniform(size / 2, IMAGE - size / 2)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(dtype)
    labels = rng.integers(0, CLASSES, (BATCH, GTS)).astype(np.int32)
    valid = np.array([[True, True, False, True], [True, False, True, True]])
    return branch(), branch(), labels, boxes, valid


@functools.partial(jax.jit, static_argnames=("schedule", "score_target", "cls_loss", "box_loss", "harmonic"))
def e2e(one2many, one2one, labels, boxes, valid, step=0, **kw):
    dtype = one2many.dtype
    points, strides = ANCHORS.points.astype(dtype), ANCHORS.strides.astype(dtype)
    return yolo26_loss({"one2many": one2many, "one2one": one2one}, points, strides, labels, boxes, valid, step=step,
                       image_size=(IMAGE, IMAGE), **kw)


def _torch(*arrays):
    return [torch.from_numpy(np.asarray(a)) for a in arrays]


# ----------------------------------------------------------------------------------------- vs ultralytics


@pytest.mark.parametrize("topk, topk2", [pytest.param(10, None, marks=pytest.mark.slow), (7, 1)])
def test_reg_max_1_loss_matches_ultralytics(x64, topk, topk2):
    """The L1 box term of ``BboxLoss(reg_max=1)`` and the rest of v8DetectionLoss on raw distances."""
    x, _, labels, boxes, valid = (a.astype(np.float64) if a.dtype == np.float32 else a for a in small_inputs(1))
    points, strides = np.asarray(ANCHORS.points, np.float64), np.asarray(ANCHORS.strides, np.float64)

    def ours(x):
        out = yolov8_loss(x, points, strides, labels, boxes, valid, reg_max=1, topk=topk, topk2=topk2,
                          image_size=(IMAGE, IMAGE))
        return out.total, out.terms

    (total, terms), grad = jax.jit(jax.value_and_grad(ours, has_aux=True))(x)
    xt = torch.from_numpy(x).requires_grad_()
    ref = detection_loss_torch(xt, *_torch(labels, boxes, valid), image_size=IMAGE, topk=topk, topk2=topk2)
    ref["total"].backward()
    assert set(terms) == {"box", "cls", "l1"}
    for name in terms:
        np.testing.assert_allclose(float(terms[name]), ref[name].item(), rtol=1e-12, err_msg=name)
    assert float(terms["l1"]) > 0
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=0, atol=1e-12 * np.abs(xt.grad.numpy()).max())


@pytest.mark.slow
@pytest.mark.parametrize("epoch, epochs", [(0, 5), (2, 5), (4, 5), (7, 5), (0, 1)])
def test_e2e_loss_matches_ultralytics_along_its_schedule(x64, epoch, epochs):
    o2m, o2o, labels, boxes, valid = (a.astype(np.float64) if a.dtype == np.float32 else a for a in small_inputs(2))
    schedule = one2many_weight(total_epochs=epochs)

    def ours(o2m, o2o):
        out = e2e(o2m, o2o, labels, boxes, valid, step=epoch, schedule=schedule)
        return out.total, out

    (total, out), grads = jax.value_and_grad(ours, argnums=(0, 1), has_aux=True)(o2m, o2o)
    tm, to = torch.from_numpy(o2m).requires_grad_(), torch.from_numpy(o2o).requires_grad_()
    ref = e2e_loss_torch(tm, to, *_torch(labels, boxes, valid), image_size=IMAGE, epoch=epoch, epochs=epochs)
    ref["total"].backward()
    np.testing.assert_allclose(float(total), ref["total"].item(), rtol=1e-12)
    for name in ("box", "cls", "l1"):
        np.testing.assert_allclose(float(out.terms[name]), ref[name].item(), rtol=1e-12, err_msg=name)
        for branch in ("one2many", "one2one"):
            np.testing.assert_allclose(float(getattr(out, branch).terms[name]), ref[branch][name].item(),
                                       rtol=1e-12, err_msg=f"{branch} {name}")
    for grad, t in zip(grads, (tm, to)):
        np.testing.assert_allclose(grad, t.grad.numpy(), rtol=0, atol=1e-12 * np.abs(t.grad.numpy()).max())


def test_one2one_branch_has_at_most_one_positive_per_gt():
    out = e2e(*small_inputs(3))
    for branch, most in ((out.one2one, 1), (out.one2many, 10)):
        fg, gt = np.asarray(branch.targets.fg_mask), np.asarray(branch.targets.gt_index)
        for b in range(BATCH):
            counts = np.bincount(gt[b][fg[b]], minlength=GTS)
            assert counts.max() <= most
    assert int(out.one2one.targets.fg_mask.sum()) < int(out.one2many.targets.fg_mask.sum())


# ------------------------------------------------------------------------------------------------ schedule


def test_one2many_weight_is_ultralytics_update_per_epoch():
    for epochs in (1, 2, 7, 100):
        criterion = E2ELoss(stub_model(CLASSES, 1, epochs))
        schedule = one2many_weight(total_epochs=epochs, steps_per_epoch=3)
        for epoch in range(epochs + 2):
            for step in range(3 * epoch, 3 * epoch + 3):
                weights = yolo26_branch_weights(step, schedule)
                np.testing.assert_allclose(float(weights["one2many"]), criterion.o2m, rtol=1e-6)
                np.testing.assert_allclose(float(weights["one2one"]), criterion.o2o, rtol=1e-6, atol=1e-7)
            criterion.update()


def test_one2many_weight_per_step_interpolates_and_jits():
    schedule = one2many_weight(total_epochs=11, steps_per_epoch=10, per_epoch=False)
    steps = jnp.arange(0, 120, 5)
    w = jax.jit(jax.vmap(schedule))(steps)
    np.testing.assert_allclose(w, np.maximum(1 - steps / 100, 0) * 0.7 + 0.1, rtol=1e-6)
    assert float(one2many_weight()(0)) == pytest.approx(0.8) and float(one2many_weight()(99)) == pytest.approx(0.1)


@pytest.mark.slow
def test_the_schedule_can_be_swapped_and_the_step_traced():
    o2m, o2o, labels, boxes, valid = small_inputs(4)
    half = e2e(o2m, o2o, labels, boxes, valid, schedule=optax.constant_schedule(0.5))
    np.testing.assert_allclose(float(half.total), 0.5 * float(half.one2many.total + half.one2one.total), rtol=1e-6)
    ramp = optax.linear_schedule(1.0, 0.0, 10)
    for step in (0, 5, 10, 20):
        out = e2e(o2m, o2o, labels, boxes, valid, step=jnp.asarray(step), schedule=ramp)  # one trace for all
        w = min(step / 10, 1.0)
        np.testing.assert_allclose(float(out.weights["one2one"]), w, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(float(out.total),
                                   (1 - w) * float(out.one2many.total) + w * float(out.one2one.total), rtol=1e-5)
    # a weight above 1 leaves the one-to-one branch at 0, as ultralytics' max(total - o2m, 0)
    assert float(yolo26_branch_weights(0, optax.constant_schedule(1.5))["one2one"]) == 0.0


# ------------------------------------------------------------------------- options on both branches


@pytest.mark.parametrize(
    "kw",
    [
        {"cls_loss": "varifocal", "box_loss": "giou"},
        {"cls_loss": "focal", "box_loss": "harmonic_iou", "harmonic": "stop"},
    ],
)
@pytest.mark.slow
def test_options_apply_to_both_branches(kw):
    o2m, o2o, labels, boxes, valid = small_inputs(5)
    out = e2e(o2m, o2o, labels, boxes, valid, step=3, **kw)
    points, strides = ANCHORS.points, ANCHORS.strides
    common = dict(reg_max=1, image_size=(IMAGE, IMAGE), **kw)
    many = yolov8_loss(o2m, points, strides, labels, boxes, valid, topk=10, **common)
    one = yolov8_loss(o2o, points, strides, labels, boxes, valid, topk=7, topk2=1, **common)
    np.testing.assert_allclose(float(out.one2many.total), float(many.total), rtol=1e-6)
    np.testing.assert_allclose(float(out.one2one.total), float(one.total), rtol=1e-6)
    default = e2e(o2m, o2o, labels, boxes, valid, step=3)
    assert float(out.one2many.total) != float(default.one2many.total)
    assert float(out.one2one.total) != float(default.one2one.total)


@pytest.mark.slow
def test_case1_through_moves_the_box_outputs_through_the_class_term():
    """Case 2 (stop): the class term gives the box channels of both branches exactly zero gradient; Case 1
    (through) does not, on either branch."""
    o2m, o2o, labels, boxes, valid = small_inputs(6)

    def cls_grads(score_target):
        def f(a, b):
            return e2e(a, b, labels, boxes, valid, score_target=score_target).terms["cls"]
        return jax.grad(f, argnums=(0, 1))(o2m, o2o)

    for grad in cls_grads("stop"):
        assert not np.any(np.asarray(grad)[..., :4])
    for grad in cls_grads("through"):
        assert np.any(np.asarray(grad)[..., :4])


@pytest.mark.slow
def test_per_level_outputs_give_the_image_size():
    o2m, o2o, labels, boxes, valid = small_inputs(7)

    def levels(x):
        out, start = [], 0
        for s in (8, 16, 32):
            n = (IMAGE // s) ** 2
            out.append(x[:, start:start + n].reshape(BATCH, IMAGE // s, IMAGE // s, -1))
            start += n
        return tuple(out)

    flat = e2e(o2m, o2o, labels, boxes, valid)
    per_level = yolo26_loss({"one2many": levels(o2m), "one2one": levels(o2o)}, ANCHORS.points, ANCHORS.strides,
                            labels, boxes, valid)
    np.testing.assert_allclose(float(per_level.total), float(flat.total), rtol=1e-6)
    with pytest.raises(ValueError, match="image_size"):
        yolo26_loss({"one2many": o2m, "one2one": o2o}, ANCHORS.points, ANCHORS.strides, labels, boxes, valid)


# ------------------------------------------------------------------------------- degenerate input (hypothesis)

CONFIGS = {
    "default": {},
    "through": {"score_target": "through"},
    "vfl+giou+harmonic": {"score_target": "through", "cls_loss": "varifocal", "box_loss": "giou",
                          "harmonic": "through"},
}
_GRADS = {
    name: jax.jit(jax.value_and_grad(lambda a, b, labels, bx, v, kw=kw: e2e(a, b, labels, bx, v, **kw).total,
                                     argnums=(0, 1)))
    for name, kw in CONFIGS.items()
}
FAMILIES = ("zero_width", "zero_height", "partly_outside", "wholly_outside", "identical", "zero_area", "normal")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(sorted(CONFIGS)),
    family=st.sampled_from(FAMILIES),
    valid_bits=st.integers(0, 2 ** (BATCH * GTS) - 1),
    logit_scale=st.sampled_from([0.0, 1.0, 30.0]),
    distances=st.sampled_from(["fresh", "zero", "negative", "huge"]),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow
def test_finite_values_and_gradients(config, family, valid_bits, logit_scale, distances, seed):
    rng = np.random.default_rng(seed)
    o2m, o2o, labels, boxes, _ = small_inputs(seed)
    for x in (o2m, o2o):
        x[..., 4:] *= logit_scale
        if distances == "zero":  # every predicted box a point at its anchor
            x[..., :4] = 0.0
        elif distances == "negative":  # inverted predicted boxes (raw distances have no activation)
            x[..., :4] *= -1.0
        elif distances == "huge":
            x[..., :4] *= 1e4
    valid = np.array([(valid_bits >> i) & 1 for i in range(BATCH * GTS)], bool).reshape(BATCH, GTS)
    x1, y1, x2, y2 = np.moveaxis(boxes, -1, 0)
    if family == "zero_width":
        x2 = x1.copy()
    elif family == "zero_height":
        y2 = y1.copy()
    elif family == "zero_area":
        x2, y2 = x1.copy(), y1.copy()
    elif family == "partly_outside":
        x1, y1 = x1 - 50, y1 - 50
    elif family == "wholly_outside":
        shift = rng.choice([-1, 1]) * 200.0
        x1, x2 = x1 + shift, x2 + shift
    elif family == "identical":
        x1, y1, x2, y2 = (np.broadcast_to(c[:, :1], c.shape).copy() for c in (x1, y1, x2, y2))
    boxes = np.stack([x1, y1, x2, y2], -1).astype(np.float32)
    value, grads = _GRADS[config](o2m, o2o, labels, boxes, valid)
    assert np.isfinite(float(value))
    for grad in grads:
        assert np.all(np.isfinite(np.asarray(grad)))
    if not valid.any():  # no objects: only the class terms, against all-zero targets
        out = e2e(o2m, o2o, labels, boxes, valid, **CONFIGS[config])
        assert float(out.terms["box"]) == 0.0 and float(out.terms["l1"]) == 0.0


def test_no_gt_slots_at_all():
    o2m, o2o, *_ = small_inputs(8)
    empty = (np.zeros((BATCH, 0), np.int32), np.zeros((BATCH, 0, 4), np.float32), np.zeros((BATCH, 0), bool))
    value, grads = jax.value_and_grad(lambda a, b: e2e(a, b, *empty).total, argnums=(0, 1))(o2m, o2o)
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(np.asarray(g))) for g in grads)


# ---------------------------------------------------------------------------------------------- arguments


def test_bad_arguments_name_the_argument():
    o2m, o2o, labels, boxes, valid = small_inputs()
    points, strides = ANCHORS.points, ANCHORS.strides
    args = (points, strides, labels, boxes, valid)
    good = {"one2many": o2m, "one2one": o2o}
    with pytest.raises(ValueError, match="^outputs must be a mapping"):
        yolo26_loss(o2m, *args, image_size=(IMAGE, IMAGE))
    with pytest.raises(ValueError, match="^outputs must contain"):
        yolo26_loss({"one2many": o2m}, *args, image_size=(IMAGE, IMAGE))
    with pytest.raises(ValueError, match="^outputs must not contain"):
        yolo26_loss({**good, "aux": o2m}, *args, image_size=(IMAGE, IMAGE))
    with pytest.raises(ValueError, match="^schedule must be"):
        yolo26_loss(good, *args, image_size=(IMAGE, IMAGE), schedule=0.8)
    with pytest.raises(ValueError, match="^step must have shape"):
        yolo26_loss(good, *args, image_size=(IMAGE, IMAGE), step=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="^image_size must be"):
        yolo26_loss(good, *args, image_size=(IMAGE, 0))
    with pytest.raises(ValueError, match="^topk2 must be"):
        yolo26_loss(good, *args, image_size=(IMAGE, IMAGE), one2one_topk2=0)
    with pytest.raises(ValueError, match="^total_epochs must be"):
        one2many_weight(total_epochs=0)
    with pytest.raises(ValueError, match="^start must be"):
        one2many_weight(start=1.5)
