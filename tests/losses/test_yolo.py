"""Tests of jaxdet.losses.yolo: the five terms by hand, seed 000's Case 1 / Case 2 gradients, decode, errors,
finiteness on degenerate input (hypothesis) and parity with the independent PyTorch reference."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxdet.assign import yolov1_grid_assign
from jaxdet.boxes import box_iou
from jaxdet.gradients import term_gradients
from jaxdet.losses.yolo import YOLOV1_TERMS, yolov1_decode
from jaxdet.losses.yolo import yolov1_loss as _yolov1_loss_eager
from jaxdet.parity import run_case
from jaxdet.parity.cases_detection import cases

# Jitted once per shape/dtype: much faster than op-by-op eager dispatch on a loaded CPU.
yolov1_loss = jax.jit(_yolov1_loss_eager, static_argnames=("num_boxes", "num_classes", "iou_target"))

# ---------------------------------------------------------------------------------------- values by hand


def test_five_terms_by_hand(x64):
    s, b, c = 2, 2, 2
    pred = np.full((s, s, b * 5 + c), 5.0)  # class scores of empty cells must not count
    pred[..., 4] = 0.1
    pred[..., 9] = 0.1
    # Cell (0, 0) holds the object [0, 0, 0.5, 0.5] (centre (0.25, 0.25), offsets (0.5, 0.5), class 1).
    pred[0, 0, 0:5] = [0.6, 0.5, 0.6, 0.7, 0.8]  # box [0.12, 0.005, 0.48, 0.495], inside the object
    pred[0, 0, 5:10] = [0.0, 0.0, 0.0, 0.0, 0.3]  # zero-area box at the corner: IoU 0
    pred[0, 0, 10:12] = [0.2, 0.9]
    gt = np.array([[0.0, 0.0, 0.5, 0.5]])
    out = yolov1_loss(pred, gt, np.array([1], np.int32), np.array([True]), num_boxes=b, num_classes=c)
    iou = (0.36 * 0.49) / (0.25 + 1e-7)
    want = {
        "coord_xy": 5 * (0.1**2 + 0.0**2),
        "coord_wh": 5 * ((0.6 - math.sqrt(0.5)) ** 2 + (0.7 - math.sqrt(0.5)) ** 2),
        "obj": (0.8 - iou) ** 2,
        "noobj": 0.5 * (0.3**2 + 6 * 0.1**2),
        "cls": 0.2**2 + (0.9 - 1) ** 2,
    }
    for name in YOLOV1_TERMS:
        np.testing.assert_allclose(out.terms[name], want[name], rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(out.total, sum(want.values()), rtol=1e-12)


def test_perfect_prediction_decodes_to_ground_truth(x64):
    """Predictions built from the targets decode back to the boxes: the grid, offset and √w conventions agree."""
    s, b, c = 4, 2, 3
    gt = np.array([[0.1, 0.6, 0.3, 0.8], [0.55, 0.05, 0.95, 0.25], [0.0, 0.0, 1.0, 1.0]])
    classes = np.array([2, 0, 1], np.int32)
    valid = np.array([True, True, False])
    t = yolov1_grid_assign(gt, classes, valid, grid_size=s)
    pred = np.zeros((s, s, b * 5 + c))
    wh = np.asarray(t.boxes[..., 2:] - t.boxes[..., :2])
    for k in range(b):
        pred[..., k * 5 : k * 5 + 2] = t.offsets
        pred[..., k * 5 + 2 : k * 5 + 4] = np.sqrt(wh)
        pred[..., k * 5 + 4] = np.where(t.has_object, 1.0, 0.0) if k == 0 else 0.0
    pred[..., b * 5 :] = np.asarray(jax.nn.one_hot(t.classes, c)) * np.asarray(t.has_object)[..., None]
    out = yolov1_loss(pred, gt, classes, valid, num_boxes=b, num_classes=c)
    for name in ("coord_xy", "coord_wh", "cls"):
        np.testing.assert_allclose(out.terms[name], 0.0, atol=1e-20)
    # Both objects are predicted exactly; the confidence target is IoU = area / (area + eps), areas 0.04 and 0.08.
    want_obj = (1 - 0.04 / (0.04 + 1e-7)) ** 2 + (1 - 0.08 / (0.08 + 1e-7)) ** 2
    np.testing.assert_allclose(out.terms["obj"], want_obj, rtol=1e-6)
    np.testing.assert_allclose(out.terms["noobj"], 0.0, atol=1e-20)
    boxes, scores, labels = yolov1_decode(pred, num_boxes=b, num_classes=c)
    # Object cells: (row 2, col 0) and (row 0, col 3); predictor 0 is entry (row·S + col)·B.
    for (row, col), k in (((2, 0), 0), ((0, 3), 1)):
        i = (row * s + col) * b
        np.testing.assert_allclose(boxes[i], gt[k], atol=1e-12)
        assert float(scores[i]) == 1.0 and int(labels[i]) == classes[k]


def test_decode_hand_case():
    s, b, c = 2, 1, 2
    pred = np.zeros((s, s, b * 5 + c), np.float32)
    pred[1, 0] = [0.5, 0.5, 0.5, 0.5, 0.5, 0.2, 0.8]
    boxes, scores, labels = yolov1_decode(pred, num_boxes=b, num_classes=c)
    assert boxes.shape == (4, 4) and scores.shape == (4,) and labels.shape == (4,)
    np.testing.assert_allclose(boxes[2], [0.125, 0.625, 0.375, 0.875], rtol=1e-6)
    np.testing.assert_allclose(scores[2], 0.4, rtol=1e-6)
    assert int(labels[2]) == 1


# ------------------------------------------------------------------------- seed 000: Case 1 and Case 2


S, B, C = 3, 2, 2


def _case_inputs(seed: int):
    """One object; both predictors of its cell overlap it with different IoUs."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.1, 0.9, 2)
    size = rng.uniform(0.2, 0.5, 2)
    gt = np.concatenate([centre - size / 2, centre + size / 2])[None]
    col, row = np.floor(centre * S).astype(int)
    pred = rng.normal(0, 0.5, (S, S, B * 5 + C))
    for k in range(B):
        pred[row, col, k * 5 : k * 5 + 2] = centre * S - [col, row] + rng.normal(0, 0.05, 2)
        pred[row, col, k * 5 + 2 : k * 5 + 4] = np.sqrt(size) + rng.normal(0, 0.1, 2)
    return pred, gt, np.array([1], np.int32), np.array([True]), row, col


def _independent_iou(p, row, col, k, gt):
    """IoU of predictor ``k`` of cell (row, col), decoded here by hand from the paper's parameterisation."""
    x, y, sw, sh = p[row, col, k * 5], p[row, col, k * 5 + 1], p[row, col, k * 5 + 2], p[row, col, k * 5 + 3]
    cx, cy, w, h = (col + x) / S, (row + y) / S, sw**2, sh**2
    return box_iou(jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), jnp.asarray(gt[0]))


@functools.partial(jax.jit, static_argnames="path")
def _obj_grad(pred, gt, cls, valid, path):
    def obj(p):
        return yolov1_loss(p, gt, cls, valid, num_boxes=B, num_classes=C, iou_target=path).terms["obj"]

    return jax.grad(obj)(pred)


@pytest.mark.parametrize("seed", range(4))
def test_case1_and_case2_gradients_match_seed000(seed, x64):
    pred, gt, cls, valid, row, col = _case_inputs(seed)
    ious = [float(_independent_iou(jnp.asarray(pred), row, col, k, gt)) for k in range(B)]
    assert min(ious) > 0 and abs(ious[0] - ious[1]) > 1e-6
    k = int(np.argmax(ious))  # the responsible predictor
    conf_index = (row, col, k * 5 + 4)
    conf, iou = pred[conf_index], ious[k]
    dc_dw = np.zeros_like(pred)
    dc_dw[conf_index] = 1.0  # ∂C/∂w
    iou_grad = jax.jit(jax.grad(lambda p: _independent_iou(p, row, col, k, gt)))
    diou_dw = np.asarray(iou_grad(jnp.asarray(pred)))  # ∂IoU/∂w

    def obj_grad(path):
        return np.asarray(_obj_grad(jnp.asarray(pred), gt, cls, valid, path))

    np.testing.assert_allclose(obj_grad("through"), 2 * (conf - iou) * (dc_dw - diou_dw), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(obj_grad("stop"), 2 * (conf - iou) * dc_dw, rtol=1e-10, atol=1e-14)


def test_obj_term_box_gradient_zero_in_case2_nonzero_in_case1(x64):
    pred, gt, cls, valid, row, col = _case_inputs(7)
    coords = np.zeros(B * 5 + C, bool)
    for k in range(B):
        coords[k * 5 : k * 5 + 4] = True

    def terms_fn(path):
        return lambda p: {
            name: value.sum()
            for name, value in yolov1_loss(p, gt, cls, valid, num_boxes=B, num_classes=C, iou_target=path).terms.items()
        }

    for path in ("stop", "through"):
        terms, grads = jax.jit(lambda p, path=path: term_gradients(terms_fn(path), p))(jnp.asarray(pred))
        obj_coord_grad = np.asarray(grads["obj"])[..., coords]
        if path == "stop":
            assert (obj_coord_grad == 0).all()  # exactly zero: the IoU target is a constant
        else:
            assert np.abs(obj_coord_grad[row, col]).max() > 1e-6
            assert (np.delete(obj_coord_grad.reshape(S * S, -1), row * S + col, axis=0) == 0).all()
        total_grad = jax.jit(jax.grad(lambda p: yolov1_loss(p, gt, cls, valid, num_boxes=B, num_classes=C,
                                                    iou_target=path).total.sum()))(jnp.asarray(pred))
        np.testing.assert_allclose(sum(grads.values()), total_grad, rtol=1e-12, atol=1e-14)


def test_gradient_finite_and_exact_at_zero_width(x64):
    """√w is predicted directly: at sqrt_w = 0 the coord_wh gradient is the closed form 2·λ·(0 − √ŵ)."""
    pred, gt, cls, valid, row, col = _case_inputs(3)
    pred[row, col, 2] = pred[row, col, 7] = 0.0  # both predictors: zero width
    grad = jax.jit(jax.grad(lambda p: yolov1_loss(p, gt, cls, valid, num_boxes=B, num_classes=C,
                                                  iou_target="through").total.sum()))(jnp.asarray(pred))
    assert np.isfinite(np.asarray(grad)).all()
    wh_term = lambda p: yolov1_loss(p, gt, cls, valid, num_boxes=B, num_classes=C).terms["coord_wh"].sum()  # noqa: E731
    g_wh = jax.jit(jax.grad(wh_term))(jnp.asarray(pred))
    width = gt[0, 2] - gt[0, 0]
    responsible = np.nonzero(np.asarray(g_wh)[row, col, [2, 7]])[0]
    assert responsible.size == 1
    np.testing.assert_allclose(g_wh[row, col, [2, 7][responsible[0]]], 2 * 5.0 * (0.0 - math.sqrt(width)), rtol=1e-12)


def test_leading_axes_and_jit_equal_per_image():
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 0.5, (2, 3, S, S, B * 5 + C)).astype(np.float32)
    xy = rng.uniform(0, 0.7, (2, 3, 4, 2))
    gt = np.concatenate([xy, xy + 0.3], -1).astype(np.float32)
    cls = rng.integers(0, C, (2, 3, 4)).astype(np.int32)
    valid = rng.uniform(size=(2, 3, 4)) < 0.7
    fn = jax.jit(lambda *a: yolov1_loss(*a, num_boxes=B, num_classes=C))
    out = fn(pred, gt, cls, valid)
    assert out.total.shape == (2, 3) and all(v.shape == (2, 3) for v in out.terms.values())
    for i in range(2):
        for j in range(3):
            single = yolov1_loss(pred[i, j], gt[i, j], cls[i, j], valid[i, j], num_boxes=B, num_classes=C)
            np.testing.assert_allclose(out.total[i, j], single.total, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ errors


def test_errors_name_the_argument():
    pred = jnp.zeros((S, S, B * 5 + C))
    gt, cls, valid = jnp.zeros((2, 4)), jnp.zeros(2, jnp.int32), jnp.ones(2, bool)
    yolov1_loss = _yolov1_loss_eager
    with pytest.raises(ValueError, match="pred"):
        yolov1_loss(jnp.zeros((S, S, 11)), gt, cls, valid, num_boxes=B, num_classes=C)
    with pytest.raises(ValueError, match="pred"):
        yolov1_loss(jnp.zeros((S, S + 1, B * 5 + C)), gt, cls, valid, num_boxes=B, num_classes=C)
    with pytest.raises(ValueError, match="iou_target"):
        yolov1_loss(pred, gt, cls, valid, num_boxes=B, num_classes=C, iou_target="detach")
    with pytest.raises(ValueError, match="gt_valid"):
        yolov1_loss(pred, gt, cls, jnp.ones(3, bool), num_boxes=B, num_classes=C)
    with pytest.raises(ValueError, match="gt_classes"):
        yolov1_loss(pred, gt, jnp.zeros(2), valid, num_boxes=B, num_classes=C)
    with pytest.raises(ValueError, match="gt_boxes"):
        yolov1_loss(jnp.zeros((2, S, S, B * 5 + C)), jnp.zeros((3, 2, 4)), jnp.zeros((3, 2), jnp.int32),
                    jnp.ones((3, 2), bool), num_boxes=B, num_classes=C)
    with pytest.raises(ValueError, match="num_classes"):
        yolov1_decode(pred, num_boxes=B, num_classes=0)


# ------------------------------------------------------------------------------- degenerate input (hypothesis)


@jax.jit
def _values_and_grads(pred, gt, cls, valid):
    def loss(p, path):
        out = yolov1_loss(p, gt, cls, valid, num_boxes=B, num_classes=C, iou_target=path)
        return out.total.sum(), out

    results = {}
    for path in ("stop", "through"):
        (_, out), grad = jax.value_and_grad(loss, has_aux=True)(pred, path)
        results[path] = (out, grad)
    return results


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    zero_area_gt=st.booleans(),
    all_padded=st.booleans(),
    zero_pred_size=st.booleans(),
    scale=st.sampled_from([1.0, 100.0]),
    identical=st.booleans(),
)
def test_finite_values_and_gradients_on_degenerate_input(seed, zero_area_gt, all_padded, zero_pred_size, scale,
                                                         identical):
    rng = np.random.default_rng(seed)
    n, m = 2, 4
    pred = (rng.choice([-1.0, 0.0, 1.0], (n, S, S, B * 5 + C)) * scale * rng.uniform(0, 1, (n, S, S, 1))).astype(
        np.float32
    )
    if zero_pred_size:
        pred[..., [2, 3, 7, 8]] = 0.0
    xy = rng.uniform(0, 1, (n, m, 2))
    wh = np.zeros((n, m, 2)) if zero_area_gt else rng.uniform(0, 1 - xy)
    gt = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    if identical:  # every ground-truth box identical: duplicates share one cell
        gt[:] = gt[:, :1]
    cls = rng.integers(0, C, (n, m)).astype(np.int32)
    valid = np.zeros((n, m), bool) if all_padded else rng.uniform(size=(n, m)) < 0.8
    for path, (out, grad) in _values_and_grads(pred, gt, cls, valid).items():
        assert np.isfinite(np.asarray(out.total)).all(), path
        assert all(np.isfinite(np.asarray(v)).all() for v in out.terms.values()), path
        assert np.isfinite(np.asarray(grad)).all(), path
        if all_padded:
            for name in ("coord_xy", "coord_wh", "obj", "cls"):
                assert (np.asarray(out.terms[name]) == 0).all()


# --------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("path", ["stop", "through"])
def test_parity_with_torch_reference_float64(path):

    case = next(c for c in cases() if c.name == f'yolov1_loss (iou_target="{path}")')
    report = run_case(case, dtypes=("float64",))
    assert report.passed(), report.table()
