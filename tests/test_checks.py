"""Argument errors: the one wording of :mod:`jaxdet._checks`, and every public function raising it.

Two parts:

- unit tests of ``_checks``: each kind of error (shape, dtype, value, choice, keys) has exactly one wording, which
  names the argument, what was expected and what was given;
- one bad argument per public function of the library (wrong shape, wrong dtype or a bad hyper-parameter): the
  ValueError starts with the argument's name in the wording of its kind and says what was expected. A coverage test
  keeps the list complete: a new public function needs a case here or an entry in ``EXEMPT`` with its reason.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdet
from jaxdet import (
    _checks,
    assign,
    boxes,
    gradients,
    measurements,
    metrics,
    models,
    musgd,
    nms,
    nms_free,
    polygons,
    rboxes,
    rotated_metrics,
    schedules,
    tal,
    tiling,
)
from jaxdet import data as D
from jaxdet.data import (
    augment,
    geometry,
    label_cache,
    letterbox,
    pipeline,
    pixels,
    records,
    rotated,
    synthetic,
    writers,
    yolo_augment,
)
from jaxdet.losses import focal, harmonic, hybrid, obb, ssd, vertex, yolo, yolo26, yolov8
from jaxdet.models import conv, detector, inputs, polygon_head, registry, ultralytics_io, yolov1_head
from train import drawing, tables

# --------------------------------------------------------------------------------------------- the wordings

#: One regular expression per kind of error; ``{arg}`` is the escaped argument name. A hint may follow.
WORDING = {
    "shape": r"{arg} must have shape .+; got shape \([\d, ]*\)\.",
    "dtype": r"{arg} must have an? \w+ dtype; got \w+\.",
    "value": r"{arg} must be .+; got .+\.",
    "choice": r"{arg} must be one of \(.+\); got .+\.",
    "keys": r"{arg} must (not )?contain .+",
}


def _assert_wording(message: str, argname: str, kind: str) -> None:
    pattern = WORDING[kind].format(arg=re.escape(argname))
    assert re.match(pattern, message), f"{message!r} is not the {kind} wording for {argname!r}"


# ------------------------------------------------------------------------------------------- unit: _checks


def test_fail_wordings_are_exact():
    assert str(_checks.fail_shape("boxes", "[..., 4]", jnp.zeros((2, 3)))) == (
        "boxes must have shape [..., 4]; got shape (2, 3)."
    )
    assert str(_checks.fail_shape("boxes", "[..., 4]", (5,), hint="Pad it.")) == (
        "boxes must have shape [..., 4]; got shape (5,). Pad it."
    )
    assert str(_checks.fail_dtype("labels", "integer", jnp.dtype("float32"))) == (
        "labels must have an integer dtype; got float32."
    )
    assert str(_checks.fail_dtype("x", "floating", jnp.dtype("int32"), hint="Cast it.")) == (
        "x must have a floating dtype; got int32. Cast it."
    )
    assert str(_checks.fail_value("eps", ">= 0", -1.0)) == "eps must be >= 0; got -1.0."
    assert str(_checks.fail_value("eps", ">= 0", -1.0, hint="Use 1e-7.")) == "eps must be >= 0; got -1.0. Use 1e-7."


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: _checks.floating(jnp.zeros((3, 5)), "boxes", last=4),
         "boxes must have shape [..., 4]; got shape (3, 5)."),
        (lambda: _checks.floating(jnp.zeros(()), "boxes", last=4), "boxes must have shape [..., 4]; got shape ()."),
        (lambda: _checks.floating(jnp.zeros(3), "x", min_ndim=2),
         "x must have shape with at least 2 axes; got shape (3,)."),
        (lambda: _checks.floating(jnp.zeros((1, 2)), "x", ndim=3), "x must have shape with 3 axes; got shape (1, 2)."),
        (
            lambda: _checks.floating(jnp.zeros((2, 4)), "anchors", shape="[A, 4]", ndim=3, last=4),
            "anchors must have shape [A, 4]; got shape (2, 4).",
        ),
        (lambda: _checks.floating(jnp.zeros(3, jnp.int32), "x"), "x must have a floating dtype; got int32."),
        (
            lambda: _checks.floating(jnp.zeros(4, jnp.int32), "b", last=4, hint="Cast it."),
            "b must have a floating dtype; got int32. Cast it.",
        ),
        (lambda: _checks.integer(jnp.zeros(3), "labels"), "labels must have an integer dtype; got float32."),
        (lambda: _checks.boolean(jnp.zeros(3), "valid"), "valid must have a bool dtype; got float32."),
        (lambda: _checks.dtype_is(np.zeros(3), "valid", "bool"), "valid must have a bool dtype; got float64."),
        (lambda: _checks.layout(np.zeros((3, 3)), "points", shape="[P, 2]", ndim=2, last=2),
         "points must have shape [P, 2]; got shape (3, 3)."),
        (lambda: _checks.shape_is(jnp.zeros(3), (2,), "gt_valid", "gt_boxes.shape[:-1]"),
         "gt_valid must have shape gt_boxes.shape[:-1] = (2,); got shape (3,)."),
        (lambda: _checks.shape_is(jnp.zeros(3), (2,), "sigmas"), "sigmas must have shape (2,); got shape (3,)."),
        (lambda: _checks.same_shape(jnp.zeros(2), jnp.zeros(3), "inputs", "targets"),
         "targets must have shape inputs.shape = (2,); got shape (3,)."),
        (lambda: _checks.broadcastable(jnp.zeros((2, 4)), (3, 4), "boxes2", "boxes1.shape"),
         "boxes2 must have shape broadcastable with boxes1.shape = (3, 4); got shape (2, 4)."),
        (
            lambda: _checks.broadcastable(
                jnp.zeros((3, 5, 4)), (2,), "b", "a.shape[:-2]", skip_last=2, shape="[..., M, 4] with leading axes"
            ),
            "b must have shape [..., M, 4] with leading axes broadcastable with a.shape[:-2] = (2,); "
            "got shape (3, 5, 4).",
        ),
        (lambda: _checks.broadcasts_to(jnp.zeros(4), (3,), "area", "pred.shape[:-2]"),
         "area must have shape broadcastable to pred.shape[:-2] = (3,); got shape (4,)."),
        (lambda: _checks.broadcasts_to(jnp.zeros((2, 3)), (3,), "area", "batch"),
         "area must have shape broadcastable to batch = (3,); got shape (2, 3)."),
        (lambda: _checks.choice("yxyx", "out_fmt", ("xyxy", "xywh")),
         "out_fmt must be one of ('xyxy', 'xywh'); got 'yxyx'."),
        (lambda: _checks.choice([1], "mode", ("a",)), "mode must be one of ('a',); got [1]."),
        (lambda: _checks.choice("x", "mode", ("a",), hint="See the docs."),
         "mode must be one of ('a',); got 'x'. See the docs."),
        (lambda: _checks.number("big", "eps"), "eps must be a number; got 'big'."),
        (lambda: _checks.number(-1, "eps", low=0.0), "eps must be >= 0.0; got -1."),
        (lambda: _checks.number(0.0, "t", low=0.0, low_open=True), "t must be > 0.0; got 0.0."),
        (lambda: _checks.number(2.0, "a", high=1.0), "a must be <= 1.0; got 2.0."),
        (lambda: _checks.number(1.0, "a", high=1.0, high_open=True), "a must be < 1.0; got 1.0."),
        (lambda: _checks.number(1.0, "f", low=0.0, high=1.0, low_open=True, high_open=True),
         "f must be in (0.0, 1.0); got 1.0."),
        (lambda: _checks.number(float("nan"), "f", low=0.0, high=1.0), "f must be in [0.0, 1.0]; got nan."),
        (lambda: _checks.number(float("inf"), "g"), "g must be a finite number; got inf."),
        (lambda: _checks.number(float("nan"), "g", finite=False), "g must be a number; got nan."),
        (lambda: _checks.positive_int(0, "grid_size"), "grid_size must be a positive int; got 0."),
        (lambda: _checks.positive_int(True, "grid_size"), "grid_size must be a positive int; got True."),
        (lambda: _checks.positive_int(7.0, "grid_size"), "grid_size must be a positive int; got 7.0."),
        (lambda: _checks.positive_int(2, "k", minimum=3), "k must be an int >= 3; got 2."),
        (lambda: _checks.keys_present({"a": 1}, ("a", "b"), "batch"), "batch must contain ['b']; got keys ['a']."),
        (lambda: _checks.keys_known({"a": 1, "z": 2}, {"a", "b"}, "kwargs"),
         "kwargs must not contain unknown keys ['z']; known: ['a', 'b']."),
    ],
)
def test_each_check_raises_its_one_wording(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_checks_pass_good_input_through():
    x = _checks.floating(np.zeros((2, 4), np.float32), "x", last=4, min_ndim=2)
    assert isinstance(x, jax.Array) and x.shape == (2, 4)
    assert _checks.integer([1, 2], "labels").dtype == jnp.int32
    points = np.zeros((3, 2))
    assert _checks.layout(points, "points", ndim=2, last=2) is None  # NumPy input is not converted
    _checks.dtype_is(points, "points", "float")
    _checks.shape_is(jnp.zeros((2, 3)), (2, 3), "x")
    _checks.same_shape(jnp.zeros(2), np.zeros(2), "a", "b")
    _checks.broadcastable(jnp.zeros((1, 4)), (3, 4), "b", "a.shape")
    _checks.broadcastable(jnp.zeros((7, 1, 5, 4)), (3,), "b", "a.shape[:-2]", skip_last=2)
    _checks.broadcasts_to(jnp.zeros((3, 1)), (2, 3, 4), "area", "batch")
    assert _checks.choice("xyxy", "fmt", ("xyxy",)) == "xyxy"
    assert _checks.number(1, "a", low=0.0, high=1.0) == 1.0 and isinstance(_checks.number(1, "a"), float)
    assert _checks.number(float("-inf"), "score_threshold", finite=False) == float("-inf")
    assert _checks.positive_int(np.int64(3), "n") == 3
    _checks.keys_present({"a": 1}, ("a",), "batch")
    _checks.keys_known({"a": 1}, ("a", "b"), "kwargs")


def test_checks_work_at_trace_time():
    @jax.jit
    def f(x, alpha):
        x = _checks.floating(x, "x", last=4)
        alpha = _checks.number(alpha, "alpha", low=0.0, high=1.0)  # traced: returned unchecked
        return x * alpha

    assert f(jnp.ones((2, 4)), 0.5).shape == (2, 4)
    assert float(f(jnp.ones((1, 4)), 3.0)[0, 0]) == 3.0  # a traced hyper-parameter cannot be checked eagerly
    with pytest.raises(ValueError, match=re.escape("x must have shape [..., 4]; got shape (2, 3).")):
        f(jnp.ones((2, 3)), 0.5)


# ----------------------------------------------------------------------------------- every public function

_B = jnp.asarray([[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.6, 0.9], [0.1, 0.3, 0.4, 0.5]])  # [3, 4]
_B_INT = jnp.zeros((3, 4), jnp.int32)
_SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
_POLY = jnp.asarray(np.stack([_SQUARE, _SQUARE * 0.5 + 0.2, _SQUARE + 0.1]), jnp.float32)  # [3, 4, 2]
_RBOX = jnp.asarray([[0.5, 0.5, 0.2, 0.1, 0.3], [0.4, 0.6, 0.3, 0.2, 0.0]])  # [2, 5]
_GT = jnp.asarray([[[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.9]]])  # [1, 2, 4]
_GT_CLS = jnp.asarray([[0, 1]], jnp.int32)
_GT_VALID = jnp.asarray([[True, False]])
_ANCHORS = jnp.asarray([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.2, 0.2, 0.6, 0.6]])  # [3, 4]
_SSD_LOGITS, _SSD_REG = jnp.zeros((1, 3, 3)), jnp.zeros((1, 3, 4))
_YOLO_PRED = jnp.full((1, 2, 2, 2 * 5 + 3), 0.5)  # S = 2, B = 2, C = 3
_LOGITS = jnp.zeros((3, 4))
_LABELS = jnp.zeros(3, jnp.int32)


def _example(num_objects: int = 1) -> dict:
    return {
        "image": np.zeros((8, 8, 3), np.uint8),
        "boxes": np.tile(np.array([[0.1, 0.1, 0.5, 0.5]], np.float32), (num_objects, 1)),
        "classes": np.zeros(num_objects, np.int32),
        "polygons": np.tile(geometry.canonical_polygon(_SQUARE * 0.4 + 0.1, 8)[None], (num_objects, 1, 1)),
        "image_id": 3,
    }


def _detections():
    n, d = 1, 2  # images, detection slots
    return nms.Detections(
        np.zeros((n, d, 4)), np.zeros((n, d)), np.zeros((n, d), np.int32), np.zeros((n, d), bool)
    )


_GT_BATCH = {"boxes": np.zeros((1, 1, 4)), "classes": np.zeros((1, 1), np.int32), "valid": np.zeros((1, 1), bool)}


def _case(fn, call, argname, kind, *fragments):
    name = fn.__module__ + "." + fn.__qualname__
    return pytest.param(name, call, argname, kind, fragments, id=f"{fn.__qualname__}-{argname}")


CASES = [
    # boxes
    _case(boxes.box_convert, lambda: boxes.box_convert(_B, "xyxy", "yxyx"), "out_fmt", "choice", "'cxcywh'"),
    _case(boxes.box_area, lambda: boxes.box_area(_B_INT), "boxes", "dtype", "floating", "astype(jnp.float32)"),
    _case(boxes.box_iou, lambda: boxes.box_iou(_B, _B[:2]), "boxes2", "shape", "broadcastable", "_pairwise"),
    _case(boxes.generalized_box_iou, lambda: boxes.generalized_box_iou(_B, _B, eps=-1.0), "eps", "value", ">= 0"),
    _case(boxes.distance_box_iou, lambda: boxes.distance_box_iou(jnp.zeros((3, 5)), _B), "boxes1", "shape", "[..., 4]"),
    _case(boxes.complete_box_iou, lambda: boxes.complete_box_iou(_B, _B, alpha_grad="detach"), "alpha_grad", "choice",
          "'stop', 'through'"),
    _case(boxes.box_iou_loss, lambda: boxes.box_iou_loss(_B_INT, _B), "boxes1", "dtype", "floating"),
    _case(boxes.generalized_box_iou_loss, lambda: boxes.generalized_box_iou_loss(_B, jnp.zeros((3, 3))), "boxes2",
          "shape", "[..., 4]"),
    _case(boxes.distance_box_iou_loss, lambda: boxes.distance_box_iou_loss(_B, _B, eps=float("nan")), "eps", "value"),
    _case(boxes.complete_box_iou_loss, lambda: boxes.complete_box_iou_loss(_B, _B, alpha_grad="x"), "alpha_grad",
          "choice"),
    _case(boxes.box_iou_pairwise, lambda: boxes.box_iou_pairwise(jnp.zeros(4), _B), "boxes1", "shape", "[..., N, 4]"),
    _case(boxes.generalized_box_iou_pairwise,
          lambda: boxes.generalized_box_iou_pairwise(jnp.zeros((2, 3, 4)), jnp.zeros((3, 5, 4))), "boxes2", "shape",
          "leading axes broadcastable with boxes1.shape[:-2] = (2,)"),
    _case(boxes.distance_box_iou_pairwise, lambda: boxes.distance_box_iou_pairwise(_B, _B_INT), "boxes2", "dtype"),
    _case(boxes.complete_box_iou_pairwise, lambda: boxes.complete_box_iou_pairwise(_B, _B, eps=-1e-3), "eps",
          "value"),
    # polygons
    _case(polygons.polygon_signed_area, lambda: polygons.polygon_signed_area(jnp.zeros((3, 3))), "polygon", "shape",
          "[..., K, 2]"),
    _case(polygons.polygon_area, lambda: polygons.polygon_area(_POLY.astype(jnp.int32)), "polygon", "dtype",
          "floating"),
    _case(polygons.sort_vertices_ccw, lambda: polygons.sort_vertices_ccw(_POLY, valid=jnp.ones((3, 4))), "valid",
          "dtype", "bool"),
    _case(polygons.rotated_box_corners, lambda: polygons.rotated_box_corners(jnp.zeros((2, 4))), "boxes", "shape",
          "[..., 5]"),
    _case(polygons.convex_polygon_iou,
          lambda: polygons.convex_polygon_iou(_POLY, _POLY, q_valid=jnp.ones((3, 3), bool)), "q_valid", "shape",
          "(3, 4)"),
    _case(polygons.mgiou, lambda: polygons.mgiou(_POLY.astype(jnp.int32), _POLY), "pred", "dtype", "floating"),
    _case(polygons.mgiou_loss, lambda: polygons.mgiou_loss(_POLY, jnp.zeros((3, 4, 3))), "target", "shape",
          "[..., K, 2]"),
    _case(polygons.mgiou_rotated, lambda: polygons.mgiou_rotated(_RBOX, jnp.zeros((2, 4))), "target", "shape",
          "[..., 5]"),
    _case(polygons.mgiou_rotated_loss, lambda: polygons.mgiou_rotated_loss(_RBOX.astype(jnp.int32), _RBOX), "pred",
          "dtype"),
    # assign
    _case(assign.yolov1_cell_index, lambda: assign.yolov1_cell_index(_GT, grid_size=0), "grid_size", "value",
          "positive int"),
    _case(assign.yolov1_grid_assign,
          lambda: assign.yolov1_grid_assign(_GT, _GT_CLS, _GT_VALID.astype(jnp.float32), grid_size=2), "gt_valid",
          "dtype", "bool"),
    _case(assign.yolov1_responsible_predictor, lambda: assign.yolov1_responsible_predictor(_B[0], _B[0]),
          "pred_boxes", "shape", "[..., B, 4]"),
    _case(assign.ssd_match, lambda: assign.ssd_match(_ANCHORS[None], _GT, _GT_VALID), "anchors", "shape", "[A, 4]"),
    _case(assign.ssd_encode, lambda: assign.ssd_encode(_B_INT, _ANCHORS), "gt_boxes", "dtype", "floating"),
    _case(assign.ssd_decode, lambda: assign.ssd_decode(_B, _ANCHORS, weights=(1.0, 1.0, 1.0)), "weights", "value",
          "four numbers"),
    # gradients
    _case(gradients.check_gradient_path, lambda: gradients.check_gradient_path("detach", argname="iou_target"),
          "iou_target", "choice", "Case 2"),
    _case(gradients.route_target, lambda: gradients.route_target(jnp.ones(()), "grad", argname="factor_grad"),
          "factor_grad", "choice"),
    _case(gradients.term_gradients, lambda: gradients.term_gradients(lambda p: {"v": p * 2}, jnp.ones(3)),
          "terms_fn's term 'v'", "shape", "scalar terms"),
    _case(gradients.gradient_cosine, lambda: gradients.gradient_cosine(jnp.ones(2), jnp.ones(2), eps=-1.0), "eps",
          "value"),
    _case(gradients.cosine_matrix, lambda: gradients.cosine_matrix({"a": jnp.ones(2), "b": jnp.ones(2)}, eps=-1.0),
          "eps", "value"),
    # schedules
    _case(schedules.static_alpha, lambda: schedules.static_alpha(1.5), "alpha", "value", "[0.0, 1.0]"),
    _case(schedules.cosine_alpha, lambda: schedules.cosine_alpha(total_epochs=0), "total_epochs", "value", "> 0"),
    _case(schedules.linear_alpha, lambda: schedules.linear_alpha(total_epochs=10, transition_fraction=0.0),
          "transition_fraction", "value", "(0.0, 1.0]"),
    _case(schedules.step_alpha, lambda: schedules.step_alpha(total_epochs=10, steps_per_epoch=0), "steps_per_epoch",
          "value", "positive int"),
    _case(schedules.exponential_alpha, lambda: schedules.exponential_alpha(rate=-0.1), "rate", "value", ">= 0"),
    _case(schedules.two_stage_alpha, lambda: schedules.two_stage_alpha(total_epochs=10, switch_fraction=1.5),
          "switch_fraction", "value"),
    _case(schedules.make_alpha_schedule, lambda: schedules.make_alpha_schedule("adaptive"), "name", "choice",
          "adaptive_alpha_update"),
    _case(schedules.adaptive_alpha_init, lambda: schedules.adaptive_alpha_init(alpha=2.0), "alpha", "value"),
    _case(schedules.adaptive_alpha_regime, lambda: schedules.adaptive_alpha_regime(0.5, thresholds=(0.1, 0.01)),
          "thresholds", "value", "0 < lo < hi"),
    _case(schedules.adaptive_alpha_update,
          lambda: schedules.adaptive_alpha_update(schedules.adaptive_alpha_init(), 1.0, 1.0, ema=1.0), "ema",
          "value", "[0.0, 1.0)"),
    # losses: focal
    _case(focal.binary_cross_entropy_with_logits,
          lambda: focal.binary_cross_entropy_with_logits(jnp.zeros(3, jnp.int32), jnp.zeros(3)), "logits", "dtype"),
    _case(focal.sigmoid_focal_loss, lambda: focal.sigmoid_focal_loss(_LOGITS, _LOGITS, alpha=2.0), "alpha", "value",
          "<= 1.0", "negative alpha disables"),
    _case(focal.softmax_focal_loss, lambda: focal.softmax_focal_loss(_LOGITS, _LABELS.astype(jnp.float32)), "labels",
          "dtype", "integer"),
    _case(focal.retinanet_prior_bias, lambda: focal.retinanet_prior_bias(1.0), "prior_prob", "value",
          "(0.0, 1.0)"),
    _case(focal.retinanet_bias_init, lambda: focal.retinanet_bias_init(0.0), "prior_prob", "value"),
    _case(focal.varifocal_loss, lambda: focal.varifocal_loss(_LOGITS, jnp.zeros(4)), "targets", "shape",
          "logits.shape = (3, 4)"),
    _case(focal.quality_focal_loss, lambda: focal.quality_focal_loss(_LOGITS, _LOGITS, beta=-1.0), "beta", "value"),
    # losses: harmonic
    _case(harmonic.smooth_l1_loss, lambda: harmonic.smooth_l1_loss(_B, _B, beta=-1.0), "beta", "value", ">= 0"),
    _case(harmonic.harmonic_iou_loss_from_iou,
          lambda: harmonic.harmonic_iou_loss_from_iou(jnp.zeros(3, jnp.int32)), "iou", "dtype"),
    _case(harmonic.harmonic_iou_loss, lambda: harmonic.harmonic_iou_loss(_B, _B, gamma=1.2), "gamma", "value",
          "allow_non_monotone", "non-monotone"),
    _case(harmonic.harmonic_weighting, lambda: harmonic.harmonic_weighting(jnp.zeros(3), jnp.zeros(2)), "reg_loss",
          "shape", "cls_loss.shape = (3,)"),
    _case(harmonic.harmonic_loss, lambda: harmonic.harmonic_loss(_LOGITS, _LABELS, _B, _B, positive=jnp.ones(3)),
          "positive", "dtype", "bool"),
    # losses: hybrid, vertex
    _case(hybrid.hybrid_components, lambda: hybrid.hybrid_components(jnp.zeros((3, 4, 3)), jnp.zeros((3, 4, 3))),
          "pred", "shape", "[..., K, 2]"),
    _case(hybrid.hybrid_polygon_loss, lambda: hybrid.hybrid_polygon_loss(_POLY, _POLY, alpha=1.5), "alpha", "value",
          "[0.0, 1.0]"),
    _case(vertex.box_area_of_polygon, lambda: vertex.box_area_of_polygon(jnp.zeros((3, 3))), "polygon", "shape"),
    _case(vertex.keypoint_loss, lambda: vertex.keypoint_loss(_POLY, _POLY, jnp.ones(3), variant="l2"), "variant",
          "choice", "'oks', 'seed'"),
    _case(vertex.vertex_l2_loss, lambda: vertex.vertex_l2_loss(_POLY, _POLY, visible=jnp.ones(3)), "visible",
          "shape", "pred.shape[:-1] = (3, 4)"),
    # losses: ssd, yolo
    _case(ssd.hard_negative_mask, lambda: ssd.hard_negative_mask(jnp.zeros((1, 3)), jnp.zeros((1, 3))), "positive",
          "dtype", "bool"),
    _case(ssd.ssd_multibox_loss_from_matches,
          lambda: ssd.ssd_multibox_loss_from_matches(_SSD_LOGITS, _SSD_REG, _ANCHORS, _GT, _GT_CLS,
                                                     jnp.zeros((1, 4), jnp.int32)), "matched_idxs", "shape", "[N, A]"),
    _case(ssd.ssd_multibox_loss,
          lambda: ssd.ssd_multibox_loss(jnp.zeros((1, 3, 1)), _SSD_REG, _ANCHORS, _GT, _GT_CLS, _GT_VALID),
          "cls_logits", "shape", "C >= 1"),
    _case(yolo.yolov1_cell_boxes, lambda: yolo.yolov1_cell_boxes(jnp.zeros((2, 2, 2)), jnp.zeros((2, 2, 2))), "xy",
          "shape", "[..., S, S, B, 2]"),
    _case(yolo.yolov1_loss, lambda: yolo.yolov1_loss(_YOLO_PRED, _GT, _GT_CLS, _GT_VALID, num_classes=0),
          "num_classes", "value", "positive int"),
    _case(yolo.yolov1_decode, lambda: yolo.yolov1_decode(_YOLO_PRED.astype(jnp.int32), num_classes=3), "pred",
          "dtype", "floating"),
    # nms
    _case(nms.nms, lambda: nms.nms(_B, jnp.zeros(2)), "scores", "shape", "boxes.shape[:-1] = (3,)"),
    _case(nms.select_detections,
          lambda: nms.select_detections(_B[None], jnp.zeros((1, 3)), jnp.zeros((1, 3), jnp.int32),
                                        max_detections=0), "max_detections", "value"),
    # metrics
    _case(metrics.match_detections,
          lambda: metrics.match_detections(np.zeros((1, 4)), np.zeros(1), np.zeros(1), np.zeros((1, 4)), np.zeros(1),
                                           iou_threshold=2.0), "iou_threshold", "value", "[0.0, 1.0]"),
    _case(metrics.coco_metrics,
          lambda: metrics.coco_metrics(_detections(), _GT_BATCH, image_size=8, polygon_metrics=True),
          "polygon_metrics", "value"),
    # train.tables, train.drawing
    _case(tables.format_metrics_table, lambda: tables.format_metrics_table({"mAP": 0.5}), "metrics", "keys",
          "'mAP50'"),
    _case(tables.per_class_rows, lambda: tables.per_class_rows({"mAP": 0.5, "mAP50": 0.5}), "metrics", "keys",
          "'per_class'"),
    _case(tables.format_per_class_table, lambda: tables.format_per_class_table({"mAP": 0.5}), "metrics", "keys",
          "'per_class'"),
    _case(drawing.draw_detections, lambda: drawing.draw_detections(np.zeros((2, 8, 8))), "images", "shape",
          "[N, H, W, 3]"),
    # data
    _case(augment.hflip, lambda: augment.hflip({"image": np.zeros((8, 8, 3))}), "example", "keys", "'boxes'"),
    _case(augment.flip_targets, lambda: augment.flip_targets({"boxes": np.zeros((0, 4))}), "example", "keys",
          "'polygons'"),
    _case(pixels.read_region, lambda: pixels.read_region(np.eye(2), (8, 8), (8, 8)), "matrix", "shape", "[3, 3]"),
    _case(pixels.warp_affine, lambda: pixels.warp_affine(np.zeros((8, 8, 3)), np.eye(3), (8, 8)), "image", "shape",
          "uint8 [H, W, 3]", "float64"),
    _case(pixels.warp_window,
          lambda: pixels.warp_window(np.zeros((8, 8), np.uint8), np.eye(3), (0, 0), (8, 8)), "window", "shape",
          "uint8 [H, W, 3]"),
    _case(pixels.resize, lambda: pixels.resize(np.zeros((8, 8, 4), np.uint8), (4, 4)), "image", "shape",
          "uint8 [H, W, 3]"),
    _case(pixels.flip_lr, lambda: pixels.flip_lr(np.zeros((8, 8, 3), np.int32)), "image", "shape", "int32"),
    _case(pixels.apply_hsv_lut,
          lambda: pixels.apply_hsv_lut(np.zeros((8, 8, 3), np.uint8), np.arange(256), np.arange(255), np.arange(256)),
          "lut_s", "shape", "(256,)"),
    _case(inputs.unit_images, lambda: inputs.unit_images(np.zeros((1, 8, 8, 3), np.int32)), "images", "dtype",
          "floating", "uint8 pixels"),
    _case(augment.scale_jitter,
          lambda: augment.scale_jitter(_example(), np.random.default_rng(0), scale_range=(2.0, 1.0)), "scale_range",
          "value", "0 < lo <= hi"),
    _case(augment.augment_example,
          lambda: augment.augment_example(_example(), np.random.default_rng(0), hflip_prob=2.0), "hflip_prob",
          "value"),
    _case(augment.make_augment, lambda: augment.make_augment(scale_range=(0.0, 1.0)), "scale_range", "value"),
    _case(yolo_augment.box_candidates, lambda: yolo_augment.box_candidates(np.zeros((2, 4)), np.zeros((3, 4))),
          "after", "shape"),
    _case(yolo_augment.mosaic4, lambda: yolo_augment.mosaic4([_example()] * 3, np.random.default_rng(0)),
          "examples", "value", "4 examples"),
    _case(yolo_augment.random_affine,
          lambda: yolo_augment.random_affine(_example(), np.random.default_rng(0), translate=0.7), "translate",
          "value"),
    _case(yolo_augment.hsv_jitter, lambda: yolo_augment.hsv_jitter(_example(), np.random.default_rng(0), sgain=-1.0),
          "sgain", "value", ">= 0"),
    _case(yolo_augment.apply_hsv_gains, lambda: yolo_augment.apply_hsv_gains(np.zeros((4, 4, 3)), (0, 0, 0)),
          "image", "dtype", "uint8"),
    _case(geometry.polygon_signed_area, lambda: geometry.polygon_signed_area(np.zeros((3, 3))), "points", "shape",
          "[P, 2]"),
    _case(geometry.polygon_bounds, lambda: geometry.polygon_bounds(np.zeros((0, 2))), "points", "shape", "P >= 1"),
    _case(geometry.canonical_polygon, lambda: geometry.canonical_polygon(_SQUARE, 2), "k", "value", "integer >= 3"),
    _case(geometry.canonical_order, lambda: geometry.canonical_order(np.zeros((2, 2))), "points", "shape", "k >= 3"),
    _case(geometry.canonical_polygons, lambda: geometry.canonical_polygons([_SQUARE], k=2.5), "k", "value"),
    _case(geometry.box_to_polygon, lambda: geometry.box_to_polygon([0.0, 0.0, 1.0]), "box", "shape", "[4]"),
    _case(geometry.clip_polygon, lambda: geometry.clip_polygon(np.zeros(4)), "points", "shape", "[P, 2]"),
    _case(pipeline.loader_length, lambda: pipeline.loader_length(10, batch_size=0), "batch_size", "value"),
    _case(pipeline.make_loader,
          lambda: pipeline.make_loader(D.SyntheticShapes("val", num_images=2, image_size=8), batch_size=2,
                                       max_objects=0), "max_objects", "value", "positive int"),
    _case(records.empty_example, lambda: records.empty_example((8, 8, 3), num_vertices=0), "num_vertices", "value"),
    _case(records.pad_example, lambda: records.pad_example(_example(2), 1), "max_objects", "value",
          "the 2 objects of image_id 3", "never truncated"),
    _case(records.collate, lambda: records.collate([]), "examples", "value", "non-empty"),
    _case(writers.export_synthetic,
          lambda: writers.export_synthetic(D.SyntheticShapes("val", num_images=1), "/nonexistent", fmt="xml"), "fmt",
          "choice", "'coco', 'voc', 'yolo'"),
    _case(synthetic.SyntheticShapes, lambda: synthetic.SyntheticShapes("validation"), "split", "choice", "'train'"),
    _case(rotated.corners_to_xywhr, lambda: rotated.corners_to_xywhr(np.zeros((2, 3))), "corners", "shape",
          "[n, P, 2]"),
    _case(rotated.xywhr_to_corners, lambda: rotated.xywhr_to_corners(np.zeros((2, 4))), "rboxes", "shape",
          "[..., 5]"),
    _case(rotated.clip_corners, lambda: rotated.clip_corners(np.zeros((1, 4, 2)), 0, 8), "width", "value", "> 0"),
    _case(records.DetectionSource, lambda: records.DetectionSource([], image_size=(0, 8)), "image_size", "value"),
    _case(letterbox.letterbox_params, lambda: letterbox.letterbox_params((0, 4), 8), "orig_size", "value"),
    _case(letterbox.identity_letterbox, lambda: letterbox.identity_letterbox((8,)), "size", "value"),
    _case(letterbox.letterbox_image, lambda: letterbox.letterbox_image(np.zeros((4, 4, 3)), 8), "image", "shape",
          "uint8 [h, w, 3]"),
    _case(letterbox.letterbox_points,
          lambda: letterbox.letterbox_points(np.zeros((2, 3)), orig_size=4, ratio_pad=np.ones(4), size=8), "points",
          "shape", "[..., 2]"),
    _case(letterbox.boxes_to_original,
          lambda: letterbox.boxes_to_original(np.zeros((2, 3, 4)), ratio_pad=np.ones((2, 4)), orig_size=np.ones((3, 2)),
                                              size=8), "orig_size", "shape", "[2, 2]"),
    _case(letterbox.points_to_original,
          lambda: letterbox.points_to_original(np.zeros((2, 3, 2)), ratio_pad=np.ones((3, 4)), size=8), "ratio_pad",
          "shape", "[2, 4]"),
    # measurements
    _case(measurements.full_image_polygon, lambda: measurements.full_image_polygon(2), "k", "value"),
    _case(measurements.ground_truth_polygons, lambda: measurements.ground_truth_polygons(num_images=0), "num_images",
          "value"),
    _case(measurements.prediction_sets, lambda: measurements.prediction_sets(np.zeros((4, 2))), "target", "shape",
          "[N, K, 2]"),
    _case(measurements.gradient_figures, lambda: measurements.gradient_figures(num_images=0), "num_images", "value"),
]


_MODEL_CFG = {"head": "yolov1", "grid_size": 2, "widths": (4,), "depths": (0,), "head_width": 4}
_RAW_BAD = jnp.zeros((1, 2, 3, 13))  # not a square grid
_POLY_GT = (jnp.zeros((1, 1, 4)), jnp.zeros((1, 1), jnp.int32), jnp.ones((1, 1), bool))

CASES += [
    # models
    _case(conv.conv2d, lambda: conv.conv2d(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 2, 5))), "kernel", "value",
          "x.shape[3] = 3"),
    _case(conv.conv2d, lambda: conv.conv2d(jnp.zeros((4, 4, 3)), jnp.zeros((3, 3, 3, 5))), "x", "shape",
          "[N, H, W, C]"),
    _case(conv.conv2d, lambda: conv.conv2d(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 3, 5)), stride=0), "stride",
          "value"),
    _case(conv.conv2d, lambda: conv.conv2d(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 3, 5)), padding="FULL"),
          "padding", "choice", "'SAME', 'VALID'"),
    _case(conv.space_to_depth_conv, lambda: conv.space_to_depth_conv(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 3, 5)),
                                                                     ((1, 1),)), "padding", "value", "(lo_w, hi_w)"),
    _case(registry.make_head, lambda: registry.make_head({"head": "ssd"}, num_classes=3), "model_cfg.head", "choice",
          "'yolov1', 'polygon'"),
    _case(registry.make_head, lambda: registry.make_head({"head": "yolov1"}, num_classes=0), "num_classes", "value"),
    _case(models.build_detector, lambda: models.build_detector(dict(_MODEL_CFG, head="rcnn"), num_classes=3, rngs=None),
          "model_cfg.head", "choice"),
    _case(detector.build_grid_detector,
          lambda: detector.build_grid_detector(dict(_MODEL_CFG, depths=(0, 1)), out_channels=5, rngs=None), "depths",
          "value", "as long as widths = (4,)"),
    _case(detector.Detector, lambda: detector.Detector(out_channels=5, widths=(), depths=(), rngs=None), "widths",
          "value", "non-empty"),
    _case(yolov1_head.prior_logit, lambda: yolov1_head.prior_logit(1.0), "p", "value", "(0.0, 1.0)"),
    _case(yolov1_head.YOLOv1Head, lambda: yolov1_head.YOLOv1Head(num_classes=3, iou_target="detach"), "iou_target",
          "choice", "'stop', 'through'"),
    _case(polygon_head.PolygonHead,
          lambda: polygon_head.PolygonHead(num_classes=3, normalization="l1", alpha_schedule=lambda s: 0.5),
          "normalization", "choice", "'grad_norm'"),
    _case(yolov1_head.yolov1_activate,
          lambda: yolov1_head.yolov1_activate(_RAW_BAD, num_boxes=2, num_classes=3), "outputs", "shape",
          "square grid"),
    _case(yolov1_head.yolov1_head_loss,
          lambda: yolov1_head.yolov1_head_loss(jnp.zeros((1, 2, 2, 7)), *_POLY_GT[:2], _POLY_GT[2], num_boxes=2,
                                               num_classes=3),
          "outputs", "shape", "[..., S, S, 13]"),
    _case(yolov1_head.yolov1_head_decode,
          lambda: yolov1_head.yolov1_head_decode(jnp.zeros(13), num_boxes=2, num_classes=3), "outputs", "shape"),
    _case(polygon_head.polygon_outputs,
          lambda: polygon_head.polygon_outputs(jnp.zeros((1, 2, 2, 9)), num_vertices=3, num_classes=3), "outputs",
          "shape", "K=3, C=3"),
    _case(polygon_head.polygon_cell_targets,
          lambda: polygon_head.polygon_cell_targets(*_POLY_GT, jnp.zeros((1, 1, 4, 2)), grid_size=2, num_vertices=8),
          "gt_polygons", "shape", "(1, 1, 8, 2)"),
    _case(polygon_head.polygon_head_loss,
          lambda: polygon_head.polygon_head_loss(_RAW_BAD, *_POLY_GT, jnp.zeros((1, 1, 8, 2)), num_vertices=8,
                                                 num_classes=3, alpha=0.5),
          "outputs", "shape"),
    _case(polygon_head.polygon_head_decode,
          lambda: polygon_head.polygon_head_decode(_RAW_BAD, num_vertices=8, num_classes=3), "outputs", "shape"),
]


_A = 4  # anchors
_PTS, _STRIDES = jnp.zeros((_A, 2)), jnp.ones((_A,))
_TAL_GT = (jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 2, 4)), jnp.ones((1, 2), bool))

CASES += [
    # task-aligned assignment and the YOLOv8 loss
    _case(tal.make_anchor_points, lambda: tal.make_anchor_points([(2, 2)], [8, 16]), "strides", "value",
          "one per level"),
    _case(tal.dist2bbox, lambda: tal.dist2bbox(jnp.zeros((3, 3)), jnp.zeros((3, 2))), "distances", "shape",
          "[..., 4]"),
    _case(tal.bbox2dist, lambda: tal.bbox2dist(jnp.zeros((3, 2)), jnp.zeros((3, 4)), max_distance=-1.0),
          "max_distance", "value", ">= 0"),
    _case(tal.dfl_expectation, lambda: tal.dfl_expectation(jnp.zeros((3, 5), jnp.int32)), "probs", "dtype",
          "floating"),
    _case(tal.dfl_decode, lambda: tal.dfl_decode(jnp.zeros((3, 63))), "pred_dist", "shape", "4·reg_max = 64"),
    _case(tal.task_aligned_assign, lambda: tal.task_aligned_assign(jnp.zeros((1, _A, 3)), jnp.zeros((1, _A, 4)),
                                                                   _PTS, *_TAL_GT, topk=0), "topk", "value"),
    _case(yolov8.dfl_loss, lambda: yolov8.dfl_loss(jnp.zeros((3, 4, 16)), jnp.zeros((3, 3))), "target", "shape",
          "pred_dist.shape[:-1] = (3, 4)"),
    _case(yolov8.yolov8_loss, lambda: yolov8.yolov8_loss(jnp.zeros((1, _A, 67)), _PTS, _STRIDES, *_TAL_GT, topk=2,
                                                         cls_loss="ce"), "cls_loss", "choice", "'varifocal'"),
    _case(yolov8.yolov8_loss_from_targets, lambda: yolov8.yolov8_loss_from_targets(
        jnp.zeros((1, _A, 67)), _PTS, _STRIDES, None, box_loss="l1"), "box_loss", "choice", "'harmonic_iou'"),
    # YOLO26: the end-to-end loss, its branch weights and the NMS-free decode
    _case(schedules.one2many_weight, lambda: schedules.one2many_weight(total_epochs=10, start=1.5), "start", "value",
          "[0.0, 1.0]"),
    _case(schedules.one2many_schedule, lambda: schedules.one2many_schedule("step", total_steps=10), "name",
          "choice", "'cosine'"),
    _case(yolo26.yolo26_loss, lambda: yolo26.yolo26_loss({"one2many": jnp.zeros((1, _A, 7))}, _PTS, _STRIDES,
                                                         *_TAL_GT), "outputs", "keys", "one2one"),
    _case(yolo26.yolo26_branch_weights, lambda: yolo26.yolo26_branch_weights(jnp.zeros(2, jnp.int32)), "step",
          "shape", "scalar"),
    _case(nms_free.nms_free_topk, lambda: nms_free.nms_free_topk(jnp.zeros((1, 3, 2)), max_det=0), "max_det",
          "value"),
    _case(nms_free.nms_free_decode, lambda: nms_free.nms_free_decode(jnp.zeros((1, _A, 4)), _PTS, _STRIDES),
          "outputs", "shape", "C >= 1"),
]

_RB = jnp.ones((3, 5))
_OBB_GT = (jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 2, 5)), jnp.ones((1, 2), bool))

CASES += [
    # rotated boxes, the rotated assignment and the OBB loss
    _case(rboxes.rbox_covariance, lambda: rboxes.rbox_covariance(_RB, floor=-0.01), "floor", "value", ">= 0"),
    _case(rboxes.probiou, lambda: rboxes.probiou(_RB, jnp.ones((2, 5))), "boxes2", "shape", "broadcastable"),
    _case(rboxes.probiou_pairwise, lambda: rboxes.probiou_pairwise(jnp.ones(5), _RB), "boxes1", "shape",
          "[..., N, 5]"),
    _case(rboxes.rbox_corners, lambda: rboxes.rbox_corners(jnp.ones((3, 4))), "rboxes", "shape", "[..., 5]"),
    _case(rboxes.regularize_rboxes, lambda: rboxes.regularize_rboxes(_RB.astype(jnp.int32)), "rboxes", "dtype",
          "floating"),
    _case(tal.dist2rbox, lambda: tal.dist2rbox(jnp.zeros((3, 4)), jnp.zeros((3, 2)), jnp.zeros((3, 2))), "angle",
          "shape", "[..., 1]"),
    _case(tal.rbox2dist, lambda: tal.rbox2dist(jnp.zeros((3, 2)), jnp.zeros((3, 4)), jnp.zeros((3, 1)),
                                               max_distance=-1.0), "max_distance", "value", ">= 0"),
    _case(tal.rotated_task_aligned_assign, lambda: tal.rotated_task_aligned_assign(
        jnp.zeros((1, _A, 3)), jnp.zeros((1, _A, 4)), _PTS, *_OBB_GT), "pred_boxes", "shape", "[B, A, 5]"),
    _case(obb.obb_decode, lambda: obb.obb_decode(jnp.zeros((1, _A, 67)), jnp.zeros((1, _A, 2)), _PTS, _STRIDES),
          "angles", "shape", "[B, A, 1]"),
    _case(obb.obb_loss, lambda: obb.obb_loss(jnp.zeros((1, _A, 67)), jnp.zeros((1, _A, 1)), _PTS, _STRIDES,
                                             *_OBB_GT, topk=2, box_loss="giou"), "box_loss", "choice", "'mgiou'"),
    _case(obb.obb_loss_from_targets, lambda: obb.obb_loss_from_targets(
        jnp.zeros((1, _A, 67)), jnp.zeros((1, _A, 1)), _PTS, _STRIDES, None, angle_activation="tanh"),
        "angle_activation", "choice", "'sigmoid'"),
    _case(obb.obb_e2e_loss, lambda: obb.obb_e2e_loss({"one2many": jnp.zeros((1, _A, 7))},
                                                     {"one2many": jnp.zeros((1, _A, 1))}, _PTS, _STRIDES, *_OBB_GT),
          "outputs", "keys", "one2one"),
]

CASES += [
    # ultralytics weights in and out, and the label cache's directory
    _case(ultralytics_io.load_ultralytics, lambda: ultralytics_io.load_ultralytics(3), "source", "value",
          "a DetectionModel or a .pt path"),
    _case(ultralytics_io.ultralytics_state_dict, lambda: ultralytics_io.ultralytics_state_dict([1.0]), "source",
          "value", "state dict"),
    _case(ultralytics_io.load_ultralytics, lambda: ultralytics_io.load_ultralytics({}, version="v8", task="seg"),
          "task", "choice", "'obb'"),
    _case(ultralytics_io.detect_task, lambda: ultralytics_io.detect_task({}, "v5"), "version", "choice", "'26'"),
    _case(label_cache.resolve_cache_dir, lambda: label_cache.resolve_cache_dir(3), "cache", "value",
          "a directory path"),
]

CASES += [
    # MuSGD
    _case(musgd.newton_schulz, lambda: musgd.newton_schulz(jnp.zeros((3,))), "x", "shape", "[..., m, n]"),
    _case(musgd.newton_schulz, lambda: musgd.newton_schulz(jnp.zeros((3, 3)), ns_dtype="int8"), "ns_dtype", "value",
          "'bfloat16'"),
    _case(musgd.muon_direction, lambda: musgd.muon_direction(jnp.zeros((3, 3, 3))), "update", "shape",
          "[kh, kw, I, O] or [I, O]"),
    _case(musgd.musgd, lambda: musgd.musgd(0.01, momentum=1.0), "momentum", "value", "[0.0, 1.0)"),
    _case(musgd.musgd, lambda: musgd.musgd(0.01, muon_mask=True).init({"b": jnp.zeros(3)}), "muon_mask", "value",
          "2-D or 4-D"),
]


_TILE_BOXES, _TILE_WINDOWS = np.zeros((2, 3, 4)), np.array([[0, 0, 8, 8], [4, 0, 12, 8]])
_TILE_REST = (np.zeros((2, 3)), np.zeros((2, 3), np.int64), np.ones((2, 3), bool), _TILE_WINDOWS)
CASES += [
    # tiled prediction
    _case(tiling.tile_windows, lambda: tiling.tile_windows(100, 100, size=64, overlap=1.0), "overlap", "value",
          "[0.0, 1.0)"),
    _case(tiling.tile_windows, lambda: tiling.tile_windows(0, 100, size=64, overlap=0.2), "height", "value",
          "positive int"),
    _case(tiling.tile_to_image, lambda: tiling.tile_to_image(np.zeros((2, 3, 6)), _TILE_WINDOWS), "boxes", "shape",
          "[K, D, 4] or [K, D, 5]"),
    _case(tiling.tile_to_image, lambda: tiling.tile_to_image(_TILE_BOXES, _TILE_WINDOWS[:1]), "windows", "shape",
          "K = boxes.shape[0]"),
    _case(tiling.merge_tiles, lambda: tiling.merge_tiles(_TILE_BOXES, *_TILE_REST[:2], _TILE_REST[2].astype(int),
                                                         _TILE_WINDOWS, iou_threshold=0.5), "valid", "dtype", "bool"),
    _case(tiling.merge_tiles, lambda: tiling.merge_tiles(_TILE_BOXES, _TILE_REST[0][:1], *_TILE_REST[1:],
                                                         iou_threshold=0.5), "scores", "shape", "boxes.shape[:-1]"),
    _case(tiling.merge_tiles, lambda: tiling.merge_tiles(_TILE_BOXES, *_TILE_REST, iou_threshold=1.5),
          "iou_threshold", "value", "[0.0, 1.0]"),
]


CASES += [
    # rotated NMS
    _case(nms.rotated_nms, lambda: nms.rotated_nms(_B, jnp.zeros(3)), "rboxes", "shape", "[..., A, 5]"),
    _case(nms.rotated_nms, lambda: nms.rotated_nms(jnp.zeros((3, 5)), jnp.zeros(3), iou="giou"), "iou", "choice",
          "'polygon'"),
    _case(nms.select_rotated_detections,
          lambda: nms.select_rotated_detections(jnp.zeros((1, 3, 5)), jnp.zeros((1, 3)), jnp.zeros((1, 3), jnp.int32),
                                                suppression="soft"), "suppression", "choice", "'greedy'"),
]


CASES += [
    # OBB metrics
    _case(rotated_metrics.match_predictions,
          lambda: rotated_metrics.match_predictions(np.zeros(2), np.zeros(1), np.zeros((2, 2))), "iou", "shape",
          "[G, P]"),
    _case(rotated_metrics.ap_per_class,
          lambda: rotated_metrics.ap_per_class(np.zeros((3, 10), bool), np.zeros(2), np.zeros(3), np.zeros(1)),
          "conf", "shape", "P = tp.shape[0]"),
    _case(rotated_metrics.obb_metrics, lambda: rotated_metrics.obb_metrics(_detections(), _GT_BATCH, image_size=64),
          "gt", "keys", "'rboxes'"),
]


@pytest.mark.parametrize("name, call, argname, kind, fragments", CASES)
def test_public_function_error_names_the_argument(name, call, argname, kind, fragments):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    _assert_wording(message, argname, kind)
    for fragment in fragments:
        assert fragment in message, f"{name}: {fragment!r} not in {message!r}"


#: Public functions without a bad-input case, and why.
EXEMPT = {
    "jaxdet.gradients.safe_global_norm": "any pytree of arrays is valid input",
    "jaxdet.gradients.gradient_norms": "any dict of pytrees is valid input",
    "jaxdet.losses.hybrid.hybrid_state_init": "takes only a dtype",
    "jaxdet.measurements.format_figures": "formats gradient_figures' own output",
    "jaxdet.measurements.main": "a command line: argparse reports bad flags (exit status 2)",
    "jaxdet.data.readers.read_coco": "file contents: DatasetFormatError names the file and record (test_data_readers)",
    "jaxdet.data.readers.read_voc": "file contents: DatasetFormatError names the file and record (test_data_readers)",
    "jaxdet.data.readers.voc_class_names": "file contents: DatasetFormatError names the file (test_data_readers)",
    "jaxdet.data.readers.read_yolo": "file contents: DatasetFormatError names the file and record (test_data_readers)",
    "jaxdet.data.readers.read_yolo_files": "file contents: DatasetFormatError names the file and record, as read_yolo",
    "jaxdet.data.readers.read_yolo_obb": "file contents: DatasetFormatError names the file and line (test_rotated)",
    "jaxdet.data.readers.read_dota": "file contents: DatasetFormatError names the file and line (test_rotated)",
    "jaxdet.data.readers.yolo_image_files": "paths: DatasetFormatError names the missing or image-less entry "
                                            "(tests/train/test_data_yaml.py)",
    "jaxdet.data.readers.yolo_label_path": "any path: without an images directory the label sits beside the image",
    "jaxdet.data.images.read_image": "file contents: BadImageError names the file (test_data_images)",
    "jaxdet.data.images.image_size": "file contents: BadImageError names the file (test_data_images)",
    "jaxdet.data.images.verify_image": "file contents: BadImageError names the file (test_data_images)",
    "jaxdet.data.records.check_image_size": "compares two sizes: DatasetFormatError names the file (test_data_images)",
    "jaxdet.data.writers.write_coco": "writes SyntheticShapes.annotation dicts; export_synthetic is the checked entry",
    "jaxdet.data.writers.write_voc": "writes SyntheticShapes.annotation dicts; export_synthetic is the checked entry",
    "jaxdet.data.writers.write_yolo": "writes SyntheticShapes.annotation dicts; export_synthetic is the checked entry",
    "jaxdet.models.default_model_config": "takes no arguments",
    "jaxdet.models.conv.xla_stride2_gradient": "takes no arguments",
    "jaxdet.models.base_head.model_field": "declares a dataclass field: any default is valid (the head checks values)",
    "jaxdet.models.base_head.loss_field": "declares a dataclass field: any default is valid (the head checks values)",
    "jaxdet.data.image_cache.available_memory": "takes no arguments",
    "jaxdet.data.label_cache.default_cache_dir": "takes no arguments",
    "jaxdet.data.label_cache.file_stat": "any path: a missing or unreadable file is (-1, -1) by design",
    "jaxdet.data.label_cache.stat_digest": "any paths: a missing file counts as (-1, -1) by design",
    "jaxdet.data.label_cache.listing_digest": "any folders: a missing one lists as empty by design",
    "jaxdet.compile_options.compiler_options": "any platform name: one without options gets {}",
    "jaxdet.models.ultralytics_io.tensor_name": "maps the variable paths of jaxdet's own YOLO",
    "jaxdet.models.ultralytics_io.export_ultralytics": "takes jaxdet's own YOLO (v8, 11 and 26 exported and "
                                                       "reloaded in tests/models/test_yolo.py)",
    "jaxdet.models.ultralytics_io.detect_version": "any mapping: one without a known Detect layer gives None",
    "jaxdet.models.yolo.scaled_channels": "ultralytics' yaml arithmetic on the built-in scales",
    "jaxdet.models.yolo.scaled_repeats": "ultralytics' yaml arithmetic on the built-in scales",
    "jaxdet.models.yolo.count_params": "any NNX module",
    "jaxdet.models.blocks.max_pool_same": "a layer of the network on its own activations",
    "train.drawing.label_font_size": "any image size: the size never drops below 12 px",
    "train.drawing.label_font": "any pixel size (label_font_size's output)",
    "train.drawing.text_colour": "any RGB colour",
    "train.drawing.draw_label": "draws the labels draw_detections has checked (tests/train/test_drawing.py)",
    "train.tables.is_count": "any metric name",
    "train.tables.format_metrics_line": "any mapping of metric names to numbers; a non-number prints as it is",
    "jaxdet.musgd.default_muon_mask": "any pytree: the mask is each leaf's ndim",
    "jaxdet.musgd.ultralytics_orientations": "the shapes of a group's Muon leaves, as musgd passes them",
    "jaxdet.data.image_cache.check_fits": "its error is a MemoryError naming the GiB (tests/data/test_image_cache.py)",
}


def _unimportable(name):
    raise ImportError(f"{name} does not import")


#: every module of the library, found by walking the package so that a new module is never missed
#: (``jaxdet.parity``, the PyTorch-reference harness behind ``python -m jaxdet.parity``, takes no user input),
#: and the trainer's modules that take a user's arrays (metrics tables, drawing).
_MODULES = sorted(
    info.name for info in pkgutil.walk_packages(jaxdet.__path__, "jaxdet.", onerror=_unimportable)
    if not info.name.startswith("jaxdet.parity") and not info.name.rpartition(".")[2].startswith("_")
) + ["jaxdet", "train.tables", "train.drawing"]


def _public_functions() -> set[str]:
    names = set()
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module_name:
                names.add(f"{module_name}.{name}")
    return names


def test_every_public_function_has_a_bad_input_case():
    covered = {param.values[0] for param in CASES}
    public = _public_functions()
    assert not public - covered - set(EXEMPT), "public functions without a case in CASES or an EXEMPT reason"
    assert not set(EXEMPT) & covered, "a function is both covered and exempt"
    assert set(EXEMPT) <= public, "EXEMPT names a function that is not public"
    # the whole curated API is covered too
    exported = [getattr(jaxdet, n) for n in jaxdet.__all__] + [getattr(D, n) for n in D.__all__]
    api = {f"{obj.__module__}.{obj.__qualname__}" for obj in exported if inspect.isfunction(obj)}
    assert not api - covered - set(EXEMPT)
