"""YOLOv1 loss (Redmon et al. 2016) with a selectable gradient path for the IoU confidence target.

**Layout.** ``pred [..., S, S, B·5 + C]``; cell ``(row, col)`` is ``pred[..., row, col, :]`` (first grid axis
``y``). Each cell holds ``B`` predictors ``(x, y, sqrt_w, sqrt_h, conf)`` and then ``C`` class scores:

- ``x, y``: the box centre as an offset inside the cell, in ``[0, 1]``: :math:`c_x = (\\mathrm{col} + x)/S`.
- ``sqrt_w, sqrt_h``: square roots of the box width and height as fractions of the image. This is darknet's
  parameterisation (``l.sqrt``): the network predicts :math:`\\sqrt{w}` directly and the box is decoded with
  :math:`w = \\mathrm{sqrt\\_w}^2`. No square root of a prediction is ever taken, so every gradient is finite,
  also at :math:`w = 0` (:math:`\\partial w/\\partial \\mathrm{sqrt\\_w} = 2\\,\\mathrm{sqrt\\_w}`). Ports that
  take ``sqrt(pred_w)`` have an infinite derivative at 0 and produce NaN there.
- ``conf`` and the class scores are used as given (no activation is applied inside the loss).

**Terms** (per image, each a sum over cells and predictors, multiplied by its λ):

.. math::
   \\lambda_{coord} \\sum_{i,j} 1^{obj}_{ij} [(x - \\hat x)^2 + (y - \\hat y)^2]
   + \\lambda_{coord} \\sum_{i,j} 1^{obj}_{ij} [(\\sqrt w - \\sqrt{\\hat w})^2 + (\\sqrt h - \\sqrt{\\hat h})^2]
   + \\sum_{i,j} 1^{obj}_{ij} (C - \\hat C)^2
   + \\lambda_{noobj} \\sum_{i,j} 1^{noobj}_{ij} C^2
   + \\sum_i 1^{obj}_i \\sum_c (p(c) - \\hat p(c))^2

with :math:`1^{obj}_{ij}` the responsible predictor ``j`` of an object cell ``i``, :math:`1^{noobj}_{ij} = 1 -
1^{obj}_{ij}` (so the non-responsible predictors of an object cell count as no-object, as in darknet), and
:math:`\\hat C = \\mathrm{IoU}(\\mathrm{box}_{ij}, \\mathrm{gt}_i)` of the responsible predictor. Assignment is
:func:`jaxdet.assign.yolov1_grid_assign` (first box wins a shared cell) and
:func:`jaxdet.assign.yolov1_responsible_predictor` (max IoU, darknet's distance fallback when all IoUs are 0).

**Gradient path** of :math:`\\hat C` (``iou_target``), with :math:`L = (C - \\mathrm{IoU})^2`:

- ``"stop"`` (default, Case 2 of seed 000; darknet, YOLOv3/v5, ultralytics):
  :math:`\\partial L/\\partial w = 2(C - \\mathrm{IoU})\\,\\partial C/\\partial w`; the box coordinates get exactly
  zero gradient from the ``obj`` term.
- ``"through"`` (Case 1): :math:`\\partial L/\\partial w = 2(C - \\mathrm{IoU})(\\partial C/\\partial w -
  \\partial \\mathrm{IoU}/\\partial w)`; the ``obj`` term also moves the responsible box.

**Reduction.** Nothing is averaged: every term is summed over the cells (and predictors) of one image and returned
per image, ``[...]`` (the leading axes of ``pred``); ``total`` is the sum of the five terms. Average over the batch
yourself (darknet sums over the batch too).

References:
  Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016, eq. (3).
  darknet ``src/detection_layer.c`` (``forward_detection_layer``) and ``src/data.c`` (``fill_truth_region``).

Glossary: seed 000: the gradient of YOLOv1's IoU confidence target (Redmon et al., "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016); Case 1: a target computed from the predictions keeps its gradient
(``"through"``); Case 2: its gradient is stopped (``"stop"``, what every public YOLO does).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.assign import yolov1_grid_assign, yolov1_responsible_predictor
from jaxdet.boxes import box_iou
from jaxdet.gradients import GradientPath, check_gradient_path, route_target

YOLOV1_TERMS: tuple[str, ...] = ("coord_xy", "coord_wh", "obj", "noobj", "cls")


class YoloV1Loss(NamedTuple):
    """Output of :func:`yolov1_loss`.

    Attributes:
      total: ``[...]`` per-image total, the sum of the terms.
      terms: ``{"coord_xy", "coord_wh", "obj", "noobj", "cls"}`` → ``[...]`` per-image terms, λ included.
    """

    total: jax.Array
    terms: dict[str, jax.Array]


def _check_pred(pred: jax.Array, num_boxes: int, num_classes: int) -> tuple[jax.Array, int]:
    """Float ``pred [..., S, S, B·5 + C]`` on a square grid; returns it and ``S``."""
    _checks.positive_int(num_boxes, "num_boxes")
    _checks.positive_int(num_classes, "num_classes")
    depth = num_boxes * 5 + num_classes
    shape = f"[..., S, S, num_boxes*5 + num_classes] = [..., S, S, {depth}]"
    pred = _checks.floating(pred, "pred", shape=shape, min_ndim=3, last=depth)
    if pred.shape[-3] != pred.shape[-2]:
        raise _checks.fail_shape("pred", shape, pred)
    return pred, pred.shape[-2]


def _split(pred: jax.Array, num_boxes: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """→ xy ``[..., S, S, B, 2]``, sqrt_wh ``[..., S, S, B, 2]``, conf ``[..., S, S, B]``,
    scores ``[..., S, S, C]``."""
    boxes = pred[..., : num_boxes * 5].reshape(*pred.shape[:-1], num_boxes, 5)
    return boxes[..., 0:2], boxes[..., 2:4], boxes[..., 4], pred[..., num_boxes * 5 :]


def yolov1_cell_boxes(xy: jax.Array, sqrt_wh: jax.Array) -> jax.Array:
    """Decodes the YOLOv1 cell layout: offsets in the cell and √w√h ``[..., S, S, B, 2]`` → xyxy normalised boxes
    ``[..., S, S, B, 4]``.

    .. math:: c_x = (\\mathrm{col} + x)/S,\\quad c_y = (\\mathrm{row} + y)/S,\\quad w = \\mathrm{sqrt\\_w}^2,\\quad
              h = \\mathrm{sqrt\\_h}^2

    The grid axes are ``-4`` (rows, ``y``) and ``-3`` (columns, ``x``) of a square ``S × S`` grid, and ``B`` the
    predictors of a cell (a head with one box per cell passes ``B = 1``). This is the one decoding of the layout,
    used by :func:`yolov1_loss`, :func:`yolov1_decode` and the grid heads (:mod:`jaxdet.models.yolov1_head`,
    :mod:`jaxdet.models.polygon_head`).
    """
    xy = _checks.floating(xy, "xy", shape="[..., S, S, B, 2]", min_ndim=4, last=2)
    sqrt_wh = jnp.asarray(sqrt_wh)
    _checks.same_shape(xy, sqrt_wh, "xy", "sqrt_wh")
    s = xy.shape[-3]
    col = jnp.arange(s, dtype=xy.dtype)[None, :, None]  # [1, S, 1] varies along the second grid axis (x)
    row = jnp.arange(s, dtype=xy.dtype)[:, None, None]  # [S, 1, 1] varies along the first grid axis (y)
    cx = (col + xy[..., 0]) / s
    cy = (row + xy[..., 1]) / s
    w = sqrt_wh[..., 0] ** 2
    h = sqrt_wh[..., 1] ** 2
    return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """√x for x ≥ 0 with a finite derivative at 0 (double where; ground-truth sizes only)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), 0)


def yolov1_loss(
    pred: jax.Array,
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    gt_valid: jax.Array,
    *,
    num_boxes: int = 2,
    num_classes: int,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    iou_target: GradientPath = "stop",
    eps: float = 1e-7,
) -> YoloV1Loss:
    """YOLOv1 sum-squared loss with five terms and a selectable IoU-target gradient path.

    See the module docstring for the layout, the formula, the ``√w`` parameterisation and the gradient cases.

    Args:
      pred: ``[..., S, S, B·5 + C]`` raw predictions.
      gt_boxes: ``[..., M, 4]`` xyxy ground truth normalised to ``[0, 1]``, padded to ``M``.
      gt_classes: ``[..., M]`` integer classes in ``[0, C)``.
      gt_valid: ``[..., M]`` bool mask of real boxes; padded boxes are ignored.
      num_boxes: ``B``, predictors per cell (2).
      num_classes: ``C``.
      lambda_coord: :math:`\\lambda_{coord}` (5).
      lambda_noobj: :math:`\\lambda_{noobj}` (0.5).
      iou_target: ``"stop"`` (Case 2, default, as darknet) or ``"through"`` (Case 1) for the IoU confidence target.
      eps: added to the IoU union (:func:`jaxdet.boxes.box_iou`).

    Returns:
      :class:`YoloV1Loss` ``(total [...], terms {name: [...]})``, per image, unreduced over the leading axes.
    """
    pred, s = _check_pred(pred, num_boxes, num_classes)
    check_gradient_path(iou_target, argname="iou_target")
    _checks.number(lambda_coord, "lambda_coord", low=0.0)
    _checks.number(lambda_noobj, "lambda_noobj", low=0.0)
    targets = yolov1_grid_assign(gt_boxes, gt_classes, gt_valid, grid_size=s)
    if targets.has_object.shape[:-2] != pred.shape[:-3]:
        lead = pred.shape[:-3]
        raise _checks.fail_shape("gt_boxes", f"[..., M, 4] with the leading axes of pred = {lead}", gt_boxes)
    dtype = pred.dtype
    has_obj = targets.has_object  # [..., S, S]
    # Empty cells get a dummy unit box so no IoU/sqrt is evaluated on a degenerate target (values masked anyway).
    unit = jnp.asarray([0.0, 0.0, 1.0, 1.0], dtype)
    gt = jnp.where(has_obj[..., None], targets.boxes.astype(dtype), unit)  # [..., S, S, 4]

    xy, sqrt_wh, conf, scores = _split(pred, num_boxes)
    boxes = yolov1_cell_boxes(xy, sqrt_wh)  # [..., S, S, B, 4]
    responsible, _ = yolov1_responsible_predictor(boxes, gt, eps=eps)  # [..., S, S]
    obj = jax.nn.one_hot(responsible, num_boxes, dtype=dtype) * has_obj[..., None].astype(dtype)  # [..., S, S, B]
    cell_obj = has_obj.astype(dtype)

    iou = box_iou(boxes, gt[..., None, :], eps=eps)  # [..., S, S, B]
    conf_target = route_target(iou, iou_target, argname="iou_target")

    target_xy = targets.offsets.astype(dtype)[..., None, :]  # [..., S, S, 1, 2]
    target_sqrt_wh = _safe_sqrt(gt[..., 2:] - gt[..., :2])[..., None, :]  # [..., S, S, 1, 2]
    onehot = jax.nn.one_hot(targets.classes, num_classes, dtype=dtype)  # [..., S, S, C]

    sum_cells = lambda x: jnp.sum(x, axis=(-3, -2, -1))  # noqa: E731  [..., S, S, B] → [...]
    terms = {
        "coord_xy": lambda_coord * sum_cells(obj * jnp.sum((xy - target_xy) ** 2, axis=-1)),
        "coord_wh": lambda_coord * sum_cells(obj * jnp.sum((sqrt_wh - target_sqrt_wh) ** 2, axis=-1)),
        "obj": sum_cells(obj * (conf - conf_target) ** 2),
        "noobj": lambda_noobj * sum_cells((1 - obj) * conf**2),
        "cls": jnp.sum(cell_obj * jnp.sum((scores - onehot) ** 2, axis=-1), axis=(-2, -1)),
    }
    total = terms["coord_xy"] + terms["coord_wh"] + terms["obj"] + terms["noobj"] + terms["cls"]
    return YoloV1Loss(total=total, terms=terms)


def yolov1_decode(
    pred: jax.Array, *, num_boxes: int = 2, num_classes: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Decodes YOLOv1 predictions into boxes, class-specific scores and classes (no NMS).

    .. math:: \\mathrm{score}_{ij} = C_{ij} \\cdot \\max_c p_i(c),\\quad \\mathrm{class}_{ij} = \\arg\\max_c p_i(c)

    Args:
      pred: ``[..., S, S, B·5 + C]`` predictions (layout in the module docstring).
      num_boxes: ``B``.
      num_classes: ``C``.

    Returns:
      ``(boxes [..., S·S·B, 4] xyxy normalised, scores [..., S·S·B], classes [..., S·S·B] int32)``, ordered by
      row, then column, then predictor.
    """
    pred, s = _check_pred(pred, num_boxes, num_classes)
    xy, sqrt_wh, conf, scores = _split(pred, num_boxes)
    boxes = yolov1_cell_boxes(xy, sqrt_wh)  # [..., S, S, B, 4]
    best_score = jnp.max(scores, axis=-1, keepdims=True)  # [..., S, S, 1]
    best_class = jnp.argmax(scores, axis=-1, keepdims=True).astype(jnp.int32)
    lead = pred.shape[:-3]
    n = s * s * num_boxes
    return (
        boxes.reshape(*lead, n, 4),
        (conf * best_score).reshape(*lead, n),
        jnp.broadcast_to(best_class, conf.shape).reshape(*lead, n),
    )
