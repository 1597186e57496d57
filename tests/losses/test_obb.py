"""jaxdet.losses.obb: the OBB loss against ultralytics' v8OBBLoss (values and gradients, on small images; the
E2ELoss of YOLO26-OBB), the two gradient paths of the soft target (Case 1 / Case 2) proven with jax.grad, the box
term switch (ProbIoU, MGIoU, the hybrid with its α schedule and state), the angle activations, the 2-px GT filter,
finiteness on degenerate rotated boxes (hypothesis) and argument errors.

The full parity rows (256-px images, G = 20, 300, a batch without objects, reg_max = 1; both dtypes) are in
jaxdet/parity/cases_obb.py and run in tests/parity/test_cases.py."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxdet import polygons, rboxes, schedules
from jaxdet.losses import hybrid as jhybrid
from jaxdet.losses.obb import obb_decode, obb_e2e_loss, obb_loss, obb_loss_from_targets
from jaxdet.parity import cases_obb
from jaxdet.parity.torch_yolov8 import default_dtype
from jaxdet.tal import make_anchor_points

IMAGE, CLASSES, BATCH, GTS = 64, 3, 2, 4
ANCHORS = make_anchor_points([(IMAGE // s, IMAGE // s) for s in (8, 16, 32)], (8, 16, 32))
A = int(ANCHORS.points.shape[0])


def small_inputs(seed=0, dtype=np.float32, reg_max=16):
    """``(outputs [2, 84, 4·reg_max + 3], angle logits [2, 84, 1], gt_labels [2, 4], gt_rboxes [2, 4, 5] px,
    valid [2, 4])`` on 64-px images."""
    rng = np.random.default_rng(seed)
    outputs = rng.normal(0, 1, (BATCH, A, 4 * reg_max + CLASSES))
    outputs[..., 4 * reg_max:] -= 1.0
    if reg_max == 1:
        outputs[..., :4] = rng.uniform(0.5, 4.0, (BATCH, A, 4))
    angles = rng.normal(0, 1.5, (BATCH, A, 1))
    size = rng.uniform(6, 40, (BATCH, GTS, 2))
    radius = np.broadcast_to(size.max(-1, keepdims=True) / 2, size.shape)
    centre = rng.uniform(radius, IMAGE - radius)
    boxes = np.concatenate([centre, size, rng.uniform(0, math.pi / 2, (BATCH, GTS, 1))], -1)
    labels = rng.integers(0, CLASSES, (BATCH, GTS)).astype(np.int32)
    valid = np.array([[True, True, False, True], [True, False, True, True]])
    boxes = np.where(valid[..., None], boxes, 0.0)
    return outputs.astype(dtype), angles.astype(dtype), labels, boxes.astype(dtype), valid


@functools.partial(jax.jit, static_argnames=("reg_max", "score_target", "box_loss", "hybrid_normalization",
                                             "angle_activation", "min_gt_size", "topk", "hybrid_alpha", "angle"))
def loss(x, angles, labels, boxes, valid, **kw):
    """:func:`obb_loss` on the 64-px anchors, jitted (hyper-parameters static, so their checks still run)."""
    points, strides = ANCHORS.points.astype(x.dtype), ANCHORS.strides.astype(x.dtype)
    kw.setdefault("image_size", (IMAGE, IMAGE))
    return obb_loss(x, angles, points, strides, labels, boxes, valid, **kw)


# ----------------------------------------------------------------------------------------- vs ultralytics


def _torch_grads(fn, *arrays):
    tensors = [torch.from_numpy(np.array(a)).requires_grad_(True) for a in arrays]
    out = fn(*tensors)
    out["total"].backward()
    return {k: float(v) for k, v in out.items()}, [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("reg_max", [16, 1])
def test_values_and_gradients_match_ultralytics(x64, reg_max):
    outputs, angles, labels, boxes, valid = small_inputs(1, np.float64, reg_max)
    activation = "sigmoid" if reg_max > 1 else "none"
    yaml = "yolov8n-obb.yaml" if reg_max > 1 else "yolo26n-obb.yaml"

    def torch_fn(x, a):
        return cases_obb.v8_obb_loss_torch(x, a, torch.from_numpy(labels), torch.from_numpy(boxes),
                                           torch.from_numpy(valid), image_size=IMAGE, reg_max=reg_max, yaml=yaml)

    theirs, (gx, ga) = _torch_grads(torch_fn, outputs, angles)
    ours = loss(outputs, angles, labels, boxes, valid, reg_max=reg_max, angle_activation=activation)
    assert set(ours.terms) == set(theirs) - {"total"}
    for name, value in ours.terms.items():
        np.testing.assert_allclose(float(value), theirs[name], rtol=1e-11, atol=1e-15, err_msg=name)
    grads = jax.grad(lambda x, a: loss(x, a, labels, boxes, valid, reg_max=reg_max,
                                       angle_activation=activation).total, argnums=(0, 1))(outputs, angles)
    np.testing.assert_allclose(grads[0], gx, rtol=0, atol=1e-10 * np.abs(gx).max())
    np.testing.assert_allclose(grads[1], ga, rtol=0, atol=1e-10 * np.abs(ga).max())
    assert float(ours.terms["angle"]) > 0 and bool(ours.targets.fg_mask.any())


@pytest.mark.slow
def test_e2e_loss_matches_ultralytics_e2e_of_v8obbloss(x64):
    """YOLO26-OBB: E2ELoss(OBBModel("yolo26n-obb.yaml"), v8OBBLoss) at its first weights (0.8 / 0.2), raw angles,
    reg_max = 1, against obb_e2e_loss at step 0."""
    from ultralytics.utils.loss import E2ELoss, v8OBBLoss  # noqa: PLC0415

    many, angles_many, labels, boxes, valid = small_inputs(2, np.float64, 1)
    one, angles_one, *_ = small_inputs(3, np.float64, 1)
    criterion = E2ELoss(cases_obb.obb_model(CLASSES, "yolo26n-obb.yaml"), v8OBBLoss)
    feats = [torch.zeros(BATCH, 1, IMAGE // s, IMAGE // s, dtype=torch.float64) for s in (8, 16, 32)]

    def branch(x, a):
        x, a = torch.from_numpy(x), torch.from_numpy(a)
        return {"boxes": x[..., :4].permute(0, 2, 1), "scores": x[..., 4:].permute(0, 2, 1),
                "angle": a.permute(0, 2, 1), "feats": feats}

    batch = cases_obb.ultralytics_obb_batch(*(torch.from_numpy(v) for v in (labels, boxes, valid)), IMAGE)
    with default_dtype(torch.float64):
        theirs, items = criterion({"one2many": branch(many, angles_many), "one2one": branch(one, angles_one)}, batch)
    points, strides = ANCHORS.points.astype(np.float64), ANCHORS.strides.astype(np.float64)
    ours = obb_e2e_loss({"one2many": many, "one2one": one}, {"one2many": angles_many, "one2one": angles_one},
                        points, strides, labels, boxes, valid, image_size=(IMAGE, IMAGE))
    np.testing.assert_allclose(float(ours.total) * BATCH, float(theirs.sum()), rtol=1e-12)
    np.testing.assert_allclose([float(ours.one2one.terms[k]) for k in ("box", "cls", "l1", "angle")],
                               [float(v) for v in items.values()], rtol=1e-12)
    np.testing.assert_allclose([float(ours.weights["one2many"]), float(ours.weights["one2one"])], [0.8, 0.2])


def test_per_level_outputs_equal_concatenated():
    outputs, angles, labels, boxes, valid = small_inputs()
    sizes = [(IMAGE // s) ** 2 for s in (8, 16, 32)]
    split = np.cumsum(sizes)[:-1]
    levels = [o.reshape(BATCH, IMAGE // s, IMAGE // s, -1) for o, s in zip(np.split(outputs, split, 1), (8, 16, 32))]
    angle_levels = [o.reshape(BATCH, IMAGE // s, IMAGE // s, 1)
                    for o, s in zip(np.split(angles, split, 1), (8, 16, 32))]
    points, strides = ANCHORS
    total = jax.jit(lambda x, a: obb_loss(x, a, points, strides, labels, boxes, valid))
    a, b = total(outputs, angles), total(levels, angle_levels)
    np.testing.assert_allclose(a.total, b.total, rtol=1e-6)


def test_decode_matches_ultralytics_bbox_decode(x64):
    from ultralytics.utils.loss import v8OBBLoss  # noqa: PLC0415

    outputs, angles, *_ = small_inputs(4, np.float64)
    rbox, logits = obb_decode(outputs, angles, ANCHORS.points.astype(np.float64), ANCHORS.strides)
    criterion = v8OBBLoss(cases_obb.obb_model(CLASSES))
    theta = (torch.from_numpy(angles).sigmoid() - 0.25) * math.pi
    with default_dtype(torch.float64):
        theirs = criterion.bbox_decode(torch.from_numpy(np.asarray(ANCHORS.points, np.float64)),
                                       torch.from_numpy(outputs[..., :64]), theta)
    np.testing.assert_allclose(rbox, theirs.numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(logits, outputs[..., 64:])


def test_angle_activation_none_takes_activated_angles():
    outputs, angles, labels, boxes, valid = small_inputs()
    activated = (jax.nn.sigmoid(angles) - 0.25) * math.pi
    a = loss(outputs, angles, labels, boxes, valid)
    b = loss(outputs, activated, labels, boxes, valid, angle_activation="none")
    for name in a.terms:
        np.testing.assert_allclose(a.terms[name], b.terms[name], rtol=1e-5, err_msg=name)


def test_gts_under_two_pixels_are_dropped():
    outputs, angles, labels, boxes, valid = small_inputs()
    tiny = boxes.copy()
    tiny[0, 0, 2] = 1.5
    dropped = valid.copy()
    dropped[0, 0] = False
    a = loss(outputs, angles, labels, tiny, valid)
    b = loss(outputs, angles, labels, tiny, dropped)
    np.testing.assert_array_equal(a.total, b.total)
    kept = loss(outputs, angles, labels, tiny, valid, min_gt_size=0.0)
    assert float(kept.total) != float(a.total)


# ------------------------------------------------------------------------------------ Case 1 and Case 2


def test_case2_stop_isolates_the_terms():
    """score_target="stop": the class term gives the box channels and the angles exactly zero gradient, and the
    box, DFL and angle terms give the class channels exactly zero gradient; the angle term moves the angles."""
    outputs, angles, labels, boxes, valid = small_inputs()
    grads = {name: jax.grad(lambda x, a, n=name: loss(x, a, labels, boxes, valid).terms[n], argnums=(0, 1))(
        outputs, angles) for name in ("box", "cls", "dfl", "angle")}
    assert float(jnp.abs(grads["cls"][0][..., :64]).max()) == 0.0
    assert float(jnp.abs(grads["cls"][1]).max()) == 0.0
    for name in ("box", "dfl", "angle"):
        assert float(jnp.abs(grads[name][0][..., 64:]).max()) == 0.0, name
    assert float(jnp.abs(grads["dfl"][1]).max()) == 0.0  # DFL: the distances' bins only
    assert float(jnp.abs(grads["angle"][1]).max()) > 0 and float(jnp.abs(grads["box"][1]).max()) > 0


@pytest.mark.slow
def test_case1_through_is_the_total_derivative_and_case2_the_partial(x64):
    """With L(x, t) the loss from targets t and t(x) the soft score: Case 2's gradient is ∂L/∂x at fixed t, Case 1's
    is ∂L/∂x + (∂t/∂x)ᵀ ∂L/∂t (x: the outputs and the angles); Case 1's class term moves the box channels and the
    angles (through the ProbIoU inside t)."""
    outputs, angles, labels, boxes, valid = small_inputs(dtype=np.float64)
    points, strides = ANCHORS.points.astype(np.float64), ANCHORS.strides.astype(np.float64)
    targets = loss(outputs, angles, labels, boxes, valid).targets

    @jax.jit
    def from_scores(x, a, scores):
        return obb_loss_from_targets(x, a, points, strides, targets._replace(scores=scores)).total

    @jax.jit
    def soft_scores(x, a):
        return loss(x, a, labels, boxes, valid, score_target="through").targets.scores

    px, pa, pt = jax.grad(from_scores, argnums=(0, 1, 2))(outputs, angles, targets.scores)
    _, scores_vjp = jax.vjp(soft_scores, outputs, angles)
    tx, ta = scores_vjp(pt)
    stop = jax.grad(lambda x, a: loss(x, a, labels, boxes, valid).total, argnums=(0, 1))(outputs, angles)
    through = jax.grad(lambda x, a: loss(x, a, labels, boxes, valid, score_target="through").total,
                       argnums=(0, 1))(outputs, angles)
    for got, want in ((stop[0], px), (stop[1], pa), (through[0], px + tx), (through[1], pa + ta)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(jnp.abs(want).max()))
    assert float(jnp.abs(tx[..., :64]).max()) > 0 and float(jnp.abs(ta).max()) > 0
    cls_through = jax.grad(lambda x, a: loss(x, a, labels, boxes, valid, score_target="through").terms["cls"],
                           argnums=(0, 1))(outputs, angles)
    assert float(jnp.abs(cls_through[0][..., :64]).max()) > 0 and float(jnp.abs(cls_through[1]).max()) > 0


# ------------------------------------------------------------------------------------------ box term switch


def _reference(outputs, angles, targets):
    """``(pred [B, A, 5] grid units, target [B, A, 5] grid units, fg, weight, N)`` from the library's pieces."""
    pred, _ = obb_decode(outputs, angles, ANCHORS.points, ANCHORS.strides)
    stride = ANCHORS.strides[:, None]
    target = jnp.concatenate([targets.boxes[..., :4] / stride, targets.boxes[..., 4:]], -1)
    weight = targets.scores.sum(-1)
    return pred, target, targets.fg_mask, weight, jnp.maximum(targets.scores.sum(), 1)


def test_probiou_and_mgiou_box_terms():
    outputs, angles, labels, boxes, valid = small_inputs()
    base = loss(outputs, angles, labels, boxes, valid)
    pred, target, fg, weight, n = _reference(outputs, angles, base.targets)
    expected = 7.5 * jnp.sum(jnp.where(fg, (1 - rboxes.probiou(pred, target, floor=0.01)) * weight, 0)) / n
    np.testing.assert_allclose(base.terms["box"], expected, rtol=1e-5)
    mg = loss(outputs, angles, labels, boxes, valid, box_loss="mgiou")
    flip = jnp.array([1, 1, 1, 1, -1.0])
    per_anchor = polygons.mgiou_rotated_loss(pred * flip, target * flip)
    np.testing.assert_allclose(mg.terms["box"], 7.5 * jnp.sum(jnp.where(fg, per_anchor * weight, 0)) / n, rtol=1e-5)
    # MGIoU of the corners as polygons: the same rectangle, the same loss
    corners = polygons.mgiou_loss(rboxes.rbox_corners(pred), rboxes.rbox_corners(target))
    np.testing.assert_allclose(jnp.where(fg, per_anchor, 0), jnp.where(fg, corners, 0), atol=1e-5)
    for name in ("cls", "dfl", "angle"):
        np.testing.assert_array_equal(mg.terms[name], base.terms[name])


@pytest.mark.parametrize("normalization", ["none", "loss_ema", "grad_norm"])
def test_hybrid_box_term_is_hybrid_polygon_loss_on_the_corners(normalization):
    outputs, angles, labels, boxes, valid = small_inputs()
    schedule = schedules.linear_alpha(alpha_start=0.9, alpha_end=0.1, total_epochs=10)
    out = loss(outputs, angles, labels, boxes, valid, box_loss="hybrid", hybrid_alpha=schedule,
               hybrid_normalization=normalization, step=4)
    pred, target, fg, weight, n = _reference(outputs, angles, out.targets)
    w = jnp.where(fg, weight, 0)
    ref = jhybrid.hybrid_polygon_loss(rboxes.rbox_corners(pred), rboxes.rbox_corners(target), alpha=schedule(4),
                                      normalization=normalization, weight=w)
    np.testing.assert_allclose(out.terms["box"], 7.5 * ref.total * jnp.sum(w) / n, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["alpha"], schedule(4), rtol=1e-6)
    assert int(out.state.count) == 1
    again = loss(outputs, angles, labels, boxes, valid, box_loss="hybrid", hybrid_alpha=schedule,
                 hybrid_normalization=normalization, step=4, state=out.state)
    assert int(again.state.count) == 2
    if normalization == "grad_norm":  # the box term's gradient w.r.t. the corners is the unit-norm combination
        g = jax.grad(lambda x: loss(x, angles, labels, boxes, valid, box_loss="hybrid", hybrid_alpha=0.5,
                                    hybrid_normalization="grad_norm").terms["box"])(outputs)
        assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0


def test_hybrid_needs_alpha():
    with pytest.raises(ValueError, match="hybrid_alpha"):
        loss(*small_inputs(), box_loss="hybrid")


# ------------------------------------------------------------------------------- degenerate input (hypothesis)

CONFIGS = {
    "default": {},
    "through": {"score_target": "through"},
    "mgiou": {"box_loss": "mgiou", "score_target": "through"},
    "hybrid_grad_norm": {"box_loss": "hybrid", "hybrid_alpha": 0.5, "hybrid_normalization": "grad_norm"},
    "hybrid_loss_ema": {"box_loss": "hybrid", "hybrid_alpha": 0.3, "hybrid_normalization": "loss_ema"},
    "reg_max_1_raw": {"reg_max": 1, "angle_activation": "none"},
}
_GRADS = {
    name: jax.jit(jax.value_and_grad(
        lambda x, a, labels, b, v, kw=kw: loss(x, a, labels, b, v, min_gt_size=0.0, **kw).total, argnums=(0, 1)))
    for name, kw in CONFIGS.items()
}
FAMILIES = ("zero_width", "zero_height", "point", "identical", "right_angle", "far_apart", "huge_angle",
            "garbage_padding", "normal")


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(sorted(CONFIGS)),
    family=st.sampled_from(FAMILIES),
    valid_bits=st.integers(0, 2 ** (BATCH * GTS) - 1),
    logit_scale=st.sampled_from([0.0, 1.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_finite_values_and_gradients_on_degenerate_rotated_boxes(config, family, valid_bits, logit_scale, seed):
    rng = np.random.default_rng(seed)
    reg_max = CONFIGS[config].get("reg_max", 16)
    outputs, angles, labels, boxes, _ = small_inputs(seed, reg_max=reg_max)
    outputs[..., 4 * reg_max:] *= logit_scale
    angles = angles * logit_scale
    if reg_max == 1 and logit_scale == 30.0:
        outputs[..., :4] = -outputs[..., :4]  # YOLO26's raw distances may be negative (inverted boxes)
    valid = np.array([(valid_bits >> i) & 1 for i in range(BATCH * GTS)], bool).reshape(BATCH, GTS)
    if family == "zero_width":
        boxes[..., 2] = 0.0
    elif family == "zero_height":
        boxes[..., 3] = 0.0
    elif family == "point":
        boxes[..., 2:4] = 0.0
    elif family == "identical":
        boxes[:] = boxes[:, :1]
    elif family == "right_angle":
        boxes[..., 4] = rng.choice([math.pi / 2, -math.pi / 2], boxes.shape[:2])
    elif family == "far_apart":
        boxes[..., :2] += rng.choice([-1, 1], boxes.shape[:2] + (2,)) * 500.0
    elif family == "huge_angle":
        boxes[..., 4] = rng.uniform(-50, 50, boxes.shape[:2])
    elif family == "garbage_padding":
        boxes = np.where(valid[..., None], boxes, rng.uniform(-1e3, 1e3, boxes.shape)).astype(np.float32)
    value, grads = _GRADS[config](outputs, angles, labels, boxes, valid)
    assert np.isfinite(float(value))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    if not valid.any():  # a batch without objects: only the class term, against all-zero targets
        terms = loss(outputs, angles, labels, boxes, valid, min_gt_size=0.0, **CONFIGS[config]).terms
        assert all(float(v) == 0.0 for k, v in terms.items() if k != "cls")


# ---------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs, argname",
    [
        ({"reg_max": 0}, "reg_max"),
        ({"angle": -1.0}, "angle"),
        ({"angle_activation": "tanh"}, "angle_activation"),
        ({"box_loss": "ciou"}, "box_loss"),
        ({"hybrid_normalization": "l2"}, "hybrid_normalization"),
        ({"box_loss": "hybrid", "hybrid_alpha": 1.5}, "hybrid_alpha"),
        ({"score_target": "detach"}, "score_target"),
        ({"min_gt_size": -1.0}, "min_gt_size"),
        ({"topk": 0}, "topk"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        loss(*small_inputs(), **kwargs)


def test_bad_inputs_name_the_argument():
    outputs, angles, labels, boxes, valid = small_inputs()
    points, strides = ANCHORS
    with pytest.raises(ValueError, match="angles"):
        obb_loss(outputs, angles[..., :0], points, strides, labels, boxes, valid)
    with pytest.raises(ValueError, match="angles"):
        obb_loss(outputs, angles[:, :-1], points, strides, labels, boxes, valid)
    with pytest.raises(ValueError, match="gt_rboxes"):
        obb_loss(outputs, angles, points, strides, labels, boxes[..., :4], valid)
    with pytest.raises(ValueError, match="valid"):
        obb_loss(outputs, angles, points, strides, labels, boxes, valid[:, :-1])
    with pytest.raises(ValueError, match="targets.boxes"):
        targets = loss(outputs, angles, labels, boxes, valid).targets
        obb_loss_from_targets(outputs, angles, points, strides, targets._replace(boxes=targets.boxes[..., :4]))
    with pytest.raises(ValueError, match="angles"):
        obb_e2e_loss({"one2many": outputs, "one2one": outputs}, angles, points, strides, labels, boxes, valid)
