"""jaxdet.losses.yolov8: DFL and the v8 loss against ultralytics (the batch-size scaling included), the two
gradient paths of the soft target (Case 1 / Case 2) proven with jax.grad, the pluggable terms built from the
library's own functions, finiteness on degenerate input (hypothesis) and argument errors.

The full parity rows (G = 20, 300, a batch without objects; both dtypes) run in tests/parity/test_cases.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ultralytics.utils.loss import DFLoss, v8DetectionLoss

from jaxdet import boxes as jboxes
from jaxdet.losses import focal, harmonic
from jaxdet.losses.yolov8 import dfl_loss, yolov8_loss, yolov8_loss_from_targets
from jaxdet.parity import cases_yolov8 as cases
from jaxdet.parity.torch_yolov8 import default_dtype, detection_model, ultralytics_batch
from jaxdet.tal import dfl_decode, dist2bbox, make_anchor_points

IMAGE, CLASSES, BATCH, GTS = 64, 3, 2, 4
ANCHORS = make_anchor_points([(IMAGE // s, IMAGE // s) for s in (8, 16, 32)], (8, 16, 32))


def small_inputs(seed=0, dtype=np.float32):
    """``(outputs [2, 84, 67], gt_labels [2, 4], gt_boxes [2, 4, 4] px, valid [2, 4])`` on 64-px images."""
    rng = np.random.default_rng(seed)
    outputs = rng.normal(0, 1, (BATCH, ANCHORS.points.shape[0], 64 + CLASSES)).astype(dtype)
    outputs[..., 64:] -= 1.0
    size = rng.uniform(6, 40, (BATCH, GTS, 2))
    centre = rng.uniform(size / 2, IMAGE - size / 2)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(dtype)
    labels = rng.integers(0, CLASSES, (BATCH, GTS)).astype(np.int32)
    valid = np.array([[True, True, False, True], [True, False, True, True]])
    return outputs, labels, boxes, valid


@functools.partial(jax.jit, static_argnames=("reg_max", "box", "cls", "dfl", "score_target", "cls_loss", "box_loss",
                                             "harmonic", "topk"))
def loss(x, labels, boxes, valid, **kw):
    """:func:`yolov8_loss` on the 64-px anchors, jitted (hyper-parameters static, so their checks still run)."""
    dtype = (x[0] if isinstance(x, list) else x).dtype
    points, strides = ANCHORS.points.astype(dtype), ANCHORS.strides.astype(dtype)
    return yolov8_loss(x, points, strides, labels, boxes, valid, **kw)


# ----------------------------------------------------------------------------------------- vs ultralytics


def test_dfl_loss_matches_ultralytics(x64):

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (50, 4, 16))
    target = rng.uniform(-1, 17, (50, 4))  # below 0 and above reg_max - 1: both clipped
    theirs = DFLoss(16)(torch.from_numpy(logits.reshape(200, 16)), torch.from_numpy(target.copy()))[:, 0]
    ours = dfl_loss(logits, target).mean(-1)  # DFLoss averages the 4 sides
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-13)


@pytest.mark.slow
def test_batch_size_scaling_of_ultralytics(x64):
    """ultralytics' __call__ returns the terms × B; jaxdet's terms are get_assigned_targets_and_loss's."""


    outputs, labels, boxes, valid = cases.loss_inputs(np.random.default_rng(1), 20)
    points, strides = cases.anchors_pixels()
    ours = yolov8_loss(outputs, points, strides, labels, boxes, valid)
    x = torch.from_numpy(outputs)
    preds = {"boxes": x[..., :64].permute(0, 2, 1), "scores": x[..., 64:].permute(0, 2, 1),
             "feats": [torch.zeros(outputs.shape[0], 1, cases.IMAGE // s, cases.IMAGE // s, dtype=x.dtype)
                       for s in (8, 16, 32)]}
    with default_dtype(torch.float64):
        scaled, _ = v8DetectionLoss(detection_model(cases.CLASSES))(
            preds, ultralytics_batch(*[torch.from_numpy(a) for a in (labels, boxes, valid)], cases.IMAGE))
    b = outputs.shape[0]
    np.testing.assert_allclose(scaled.numpy(), [b * float(ours.terms[k]) for k in ("box", "cls", "dfl")], rtol=1e-12)
    np.testing.assert_allclose(float(scaled.sum()), b * float(ours.total), rtol=1e-12)


def test_per_level_outputs_equal_concatenated():
    outputs, labels, boxes, valid = small_inputs()
    levels, start = [], 0
    for side in (8, 4, 2):
        levels.append(outputs[:, start : start + side * side].reshape(BATCH, side, side, -1))
        start += side * side
    whole = loss(outputs, labels, boxes, valid)
    split = loss(levels, labels, boxes, valid)
    for name in ("box", "cls", "dfl"):
        np.testing.assert_array_equal(split.terms[name], whole.terms[name])


# ------------------------------------------------------------------------------------ Case 1 and Case 2


@pytest.mark.slow
def test_case2_stop_isolates_the_terms():
    """score_target="stop": the class term gives the DFL (box) channels exactly zero gradient, and the box and DFL
    terms give the class channels exactly zero gradient."""
    outputs, labels, boxes, valid = small_inputs()
    grads = {name: jax.grad(lambda x, n=name: loss(x, labels, boxes, valid).terms[n])(outputs)
             for name in ("box", "cls", "dfl")}
    assert float(jnp.abs(grads["cls"][..., :64]).max()) == 0.0
    assert float(jnp.abs(grads["box"][..., 64:]).max()) == 0.0
    assert float(jnp.abs(grads["dfl"][..., 64:]).max()) == 0.0
    assert float(jnp.abs(grads["cls"][..., 64:]).max()) > 0 and float(jnp.abs(grads["box"][..., :64]).max()) > 0


@pytest.mark.slow
def test_case1_through_is_the_total_derivative_and_case2_the_partial(x64):
    """With L(x, t) the loss from targets t and t(x) the soft score: Case 2's gradient is ∂L/∂x at fixed t, Case 1's
    is ∂L/∂x + (∂t/∂x)ᵀ ∂L/∂t; and Case 1's class term moves the box channels."""
    outputs, labels, boxes, valid = small_inputs(dtype=np.float64)
    points, strides = ANCHORS.points.astype(np.float64), ANCHORS.strides.astype(np.float64)
    targets = loss(outputs, labels, boxes, valid).targets

    @jax.jit
    def from_scores(x, scores):
        return yolov8_loss_from_targets(x, points, strides, targets._replace(scores=scores)).total

    @jax.jit
    def soft_scores(x):
        return loss(x, labels, boxes, valid, score_target="through").targets.scores

    partial_x, partial_t = jax.grad(from_scores, argnums=(0, 1))(outputs, targets.scores)
    _, scores_vjp = jax.vjp(soft_scores, outputs)
    (through_target,) = scores_vjp(partial_t)
    stop = jax.grad(lambda x: loss(x, labels, boxes, valid).total)(outputs)
    through = jax.grad(lambda x: loss(x, labels, boxes, valid, score_target="through").total)(outputs)
    np.testing.assert_allclose(stop, partial_x, rtol=0, atol=1e-12 * float(jnp.abs(stop).max()))
    np.testing.assert_allclose(through, partial_x + through_target, rtol=0, atol=1e-12 * float(jnp.abs(through).max()))
    assert float(jnp.abs(through_target[..., :64]).max()) > 0  # the IoU inside the target moves the boxes
    cls_through = jax.grad(lambda x: loss(x, labels, boxes, valid, score_target="through").terms["cls"])(outputs)
    assert float(jnp.abs(cls_through[..., :64]).max()) > 0


# ---------------------------------------------------------------------------------------- pluggable terms


def _reference_terms(outputs, targets):
    """Pieces for the expected values, from the library's building blocks: logits, decoded boxes (grid units),
    target boxes (grid units), soft scores, foreground, weights and the normaliser."""

    stride = ANCHORS.strides[:, None]
    pred = dist2bbox(dfl_decode(outputs[..., :64]), ANCHORS.points)
    weight = targets.scores.sum(-1)
    return outputs[..., 64:], pred, targets.boxes / stride, targets.scores, targets.fg_mask, weight, jnp.maximum(
        targets.scores.sum(), 1)


@pytest.mark.parametrize(
    "name, fn",
    [
        ("varifocal", lambda x, t: focal.varifocal_loss(x, t)),
        ("quality_focal", lambda x, t: focal.quality_focal_loss(x, t)),
        ("focal", lambda x, t: focal.sigmoid_focal_loss(x, t)),
    ],
)
def test_cls_loss_options_are_the_focal_family(name, fn):
    outputs, labels, boxes, valid = small_inputs()
    out = loss(outputs, labels, boxes, valid, cls_loss=name)
    logits, _, _, scores, _, _, n = _reference_terms(outputs, out.targets)
    np.testing.assert_allclose(out.terms["cls"], 0.5 * jnp.sum(fn(logits, scores)) / n, rtol=1e-6)
    base = loss(outputs, labels, boxes, valid)
    np.testing.assert_array_equal(out.terms["box"], base.terms["box"])


@pytest.mark.parametrize(
    "name, fn",
    [
        ("giou", lambda p, t: jboxes.generalized_box_iou_loss(p, t, height_eps=1e-7)),
        ("diou", lambda p, t: jboxes.distance_box_iou_loss(p, t, height_eps=1e-7)),
        ("harmonic_iou", lambda p, t: harmonic.harmonic_iou_loss_from_iou(jboxes.box_iou(p, t, height_eps=1e-7))),
    ],
)
def test_box_loss_options_are_the_iou_family(name, fn):
    outputs, labels, boxes, valid = small_inputs()
    out = loss(outputs, labels, boxes, valid, box_loss=name)
    _, pred, target, _, fg, weight, n = _reference_terms(outputs, out.targets)
    expected = 7.5 * jnp.sum(jnp.where(fg, fn(pred, target) * weight, 0)) / n
    np.testing.assert_allclose(out.terms["box"], expected, rtol=1e-6)


@pytest.mark.parametrize("factor_grad", ["through", "stop"])
def test_harmonic_option_is_harmonic_weighting(factor_grad):
    outputs, labels, boxes, valid = small_inputs()
    out = loss(outputs, labels, boxes, valid, harmonic=factor_grad)
    logits, pred, target, scores, fg, weight, n = _reference_terms(outputs, out.targets)
    cls = focal.binary_cross_entropy_with_logits(logits, scores).sum(-1)
    reg = jnp.where(fg, jboxes.complete_box_iou_loss(pred, target, height_eps=1e-7), 0)
    hw = harmonic.harmonic_weighting(cls, reg, factor_grad=factor_grad, positive=fg)
    np.testing.assert_allclose(out.terms["cls"], 0.5 * jnp.sum((1 + hw.terms["beta_r"]) * cls) / n, rtol=1e-6)
    np.testing.assert_allclose(out.terms["box"], 7.5 * jnp.sum((1 + hw.terms["beta_c"]) * reg * weight) / n,
                               rtol=1e-6)
    np.testing.assert_array_equal(out.terms["dfl"], loss(outputs, labels, boxes, valid).terms["dfl"])


# ------------------------------------------------------------------------------- degenerate input (hypothesis)

CONFIGS = {
    "default": {},
    "through": {"score_target": "through"},
    "vfl+giou+harmonic": {"score_target": "through", "cls_loss": "varifocal", "box_loss": "giou",
                          "harmonic": "through"},
}
_GRADS = {
    name: jax.jit(jax.value_and_grad(lambda x, labels, b, v, kw=kw: loss(x, labels, b, v, **kw).total))
    for name, kw in CONFIGS.items()
}

FAMILIES = ("zero_width", "zero_height", "partly_outside", "wholly_outside", "identical", "zero_area", "normal")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(sorted(CONFIGS)),
    family=st.sampled_from(FAMILIES),
    valid_bits=st.integers(0, 2 ** (BATCH * GTS) - 1),
    logit_scale=st.sampled_from([0.0, 1.0, 30.0]),
    reg_max_edge=st.booleans(),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow
def test_finite_values_and_gradients(config, family, valid_bits, logit_scale, reg_max_edge, seed):
    rng = np.random.default_rng(seed)
    outputs, labels, boxes, _ = small_inputs(seed)
    outputs = (outputs * logit_scale).astype(np.float32)
    if reg_max_edge:  # every distribution at its last bin: distances at reg_max - 1
        bins = outputs[..., :64].reshape(BATCH, -1, 4, 16).copy()
        bins[..., 15] = 50.0
        outputs[..., :64] = bins.reshape(BATCH, -1, 64)
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
    value, grad = _GRADS[config](outputs, labels, boxes, valid)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(grad)))
    if not valid.any():  # a batch without objects: only the class term, against all-zero targets
        terms = loss(outputs, labels, boxes, valid, **CONFIGS[config]).terms
        assert float(terms["box"]) == 0.0 and float(terms["dfl"]) == 0.0


# ---------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs, argname",
    [
        ({"reg_max": 0}, "reg_max"),
        ({"reg_max": 1}, "image_size"),  # the L1 term of reg_max = 1 needs the image size with [B, A, no] outputs
        ({"reg_max": 17}, "outputs"),  # 67 channels hold no class at reg_max = 17
        ({"box": -1.0}, "box"),
        ({"cls": float("inf")}, "cls"),
        ({"dfl": "x"}, "dfl"),
        ({"score_target": "detach"}, "score_target"),
        ({"cls_loss": "softmax"}, "cls_loss"),
        ({"box_loss": "iou"}, "box_loss"),
        ({"harmonic": True}, "harmonic"),
        ({"topk": 0}, "topk"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        loss(*small_inputs(), **kwargs)


def test_bad_inputs_name_the_argument():
    outputs, labels, boxes, valid = small_inputs()
    points, strides = ANCHORS
    with pytest.raises(ValueError, match="outputs"):
        yolov8_loss(outputs[0], points, strides, labels, boxes, valid)
    with pytest.raises(ValueError, match="outputs"):
        yolov8_loss(outputs.astype(np.int32), points, strides, labels, boxes, valid)
    with pytest.raises(ValueError, match="anchor_points"):
        yolov8_loss(outputs, points[:-1], strides, labels, boxes, valid)
    with pytest.raises(ValueError, match="anchor_strides"):
        yolov8_loss(outputs, points, strides[:-1], labels, boxes, valid)
    with pytest.raises(ValueError, match="gt_boxes"):
        yolov8_loss(outputs, points, strides, labels, boxes[..., :3], valid)
    with pytest.raises(ValueError, match="valid"):
        yolov8_loss(outputs, points, strides, labels, boxes, valid.astype(np.float32))
    with pytest.raises(ValueError, match="target"):
        dfl_loss(np.zeros((3, 16)), np.zeros(4))
    with pytest.raises(ValueError, match="pred_dist"):
        dfl_loss(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="margin"):
        dfl_loss(np.zeros((3, 16)), np.zeros(3), margin=-0.1)
