"""Detection heads: activations, losses and decoding for the raw ``[N, S, S, D]`` tensor of the detector.

The network (:class:`jaxdet.models.detector.Detector`) outputs raw, unbounded values. The activations are
applied here, identically for the loss and for decoding, so training and inference see the same boxes.

**YOLOv1 head** (``D = B·5 + C``), per cell ``B × (x, y, sqrt_w, sqrt_h, conf)`` then ``C`` class scores:

- :func:`yolov1_activate` maps the raw tensor to the layout of :func:`jaxdet.losses.yolo.yolov1_loss`:
  ``sigmoid`` on all five box fields (``x, y`` offsets in the cell, ``sqrt_w, sqrt_h`` in (0, 1) so
  :math:`w = \\sigma(t_w)^2 \\in (0, 1)`, ``conf`` in (0, 1)) and ``softmax`` on the class scores (YOLOv1's
  class probabilities :math:`p(c)`, regressed with squared error by the loss).
  The √w parameterisation is darknet's: no square root of a prediction is taken, so gradients stay finite.
- :func:`yolov1_head_loss` = ``yolov1_loss(yolov1_activate(raw), ...)`` averaged over images.
- :func:`yolov1_head_decode` = ``yolov1_decode(yolov1_activate(raw))``: ``score = conf · max_c p(c)``.

**Polygon head** (``D = 1 + 4 + 2K + C``), per cell ``(obj, x, y, sqrt_w, sqrt_h, v_1x, v_1y, …, v_Kx, v_Ky,
class logits)``:

- objectness :math:`\\sigma(o)`; box centre :math:`c_x = (\\mathrm{col} + \\sigma(t_x))/S`, size
  :math:`w = \\sigma(t_w)^2` (as the YOLOv1 head); class :math:`\\mathrm{softmax}`;
- vertex k: :math:`v_k = ((\\mathrm{col} + \\tfrac12 + o_{kx})/S, (\\mathrm{row} + \\tfrac12 + o_{ky})/S)`, an
  offset from the cell centre in cell units (linear, unbounded).
- Each ground truth is assigned to the cell holding its box centre (:func:`jaxdet.assign.yolov1_grid_assign`;
  the first one wins a shared cell). With :math:`P` the positive cells of the batch and
  :math:`n = \\max(1, |P|)`, the loss is

  .. math::
     L = \\frac{1}{n}\\Big[\\lambda_{obj}\\sum_{P}\\mathrm{BCE}(o, 1)
       + \\lambda_{noobj}\\sum_{\\bar P}\\mathrm{BCE}(o, 0)
       + \\lambda_{cls}\\sum_P \\mathrm{CE}(c)
       + \\lambda_{box}\\sum_P (1 - \\mathrm{GIoU}(b, \\hat b))\\Big]
       + \\lambda_{poly}\\,\\mathrm{Hybrid}_\\alpha(v, \\hat v)

  where :math:`\\mathrm{Hybrid}_\\alpha = \\alpha L_2 + (1-\\alpha)L_\\mathrm{MGIoU}` is
  :func:`jaxdet.losses.hybrid.hybrid_polygon_loss` (already a mean over the positive cells) with the α given
  by the caller's schedule.
- Decoding: ``score = σ(obj) · max_c softmax(c)`` per cell, then class-aware NMS.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.assign import YoloV1Targets, yolov1_grid_assign
from jaxdet.boxes import generalized_box_iou_loss
from jaxdet.losses._common import label_log_prob
from jaxdet.losses.focal import binary_cross_entropy_with_logits

__all__ = [
    "yolov1_activate",
    "yolov1_head_loss",
    "yolov1_head_decode",
    "PolygonOutputs",
    "polygon_outputs",
    "polygon_cell_targets",
    "polygon_head_loss",
    "polygon_head_decode",
]


def _check_raw(raw: jax.Array, depth: int, what: str) -> jax.Array:
    raw = _checks.array(raw, "outputs", shape=f"[..., S, S, {depth}] ({what})", min_ndim=3, last=depth)
    if raw.shape[-3] != raw.shape[-2]:
        raise _checks.fail_shape("outputs", f"[..., S, S, {depth}] ({what}): a square grid", raw.shape)
    return raw


# --------------------------------------------------------------------------------------------------- YOLOv1


def yolov1_activate(raw: jax.Array, *, num_boxes: int, num_classes: int) -> jax.Array:
    """Raw ``[..., S, S, B·5 + C]`` → the layout of :func:`jaxdet.losses.yolo.yolov1_loss`.

    .. math:: (x, y, \\sqrt w, \\sqrt h, C) = \\sigma(t), \\qquad p(c) = \\mathrm{softmax}(s)_c
    """
    raw = _check_raw(raw, num_boxes * 5 + num_classes, f"B={num_boxes}, C={num_classes}")
    box = jax.nn.sigmoid(raw[..., : num_boxes * 5])
    cls = jax.nn.softmax(raw[..., num_boxes * 5:], axis=-1)
    return jnp.concatenate([box, cls], axis=-1)


def yolov1_head_loss(
    raw: jax.Array,
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    gt_valid: jax.Array,
    *,
    num_boxes: int,
    num_classes: int,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    iou_target: str = "stop",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """YOLOv1 loss of the activated head, mean over images.

    Args:
      raw: ``[N, S, S, B·5 + C]`` raw head tensor.
      gt_boxes, gt_classes, gt_valid: ``[N, M, 4]``, ``[N, M]``, ``[N, M]`` padded ground truth.
      iou_target: "stop" (Case 2) or "through" (Case 1), see :func:`jaxdet.losses.yolo.yolov1_loss`.

    Returns:
      ``(loss scalar, {"loss", "coord_xy", "coord_wh", "obj", "noobj", "cls"})``, all means over images.
    """
    from jaxdet.losses.yolo import yolov1_loss

    pred = yolov1_activate(raw, num_boxes=num_boxes, num_classes=num_classes)
    res = yolov1_loss(
        pred, gt_boxes, gt_classes, gt_valid, num_boxes=num_boxes, num_classes=num_classes,
        lambda_coord=lambda_coord, lambda_noobj=lambda_noobj, iou_target=iou_target,
    )
    loss = jnp.mean(res.total)
    metrics = {"loss": loss, **{k: jnp.mean(v) for k, v in res.terms.items()}}
    return loss, metrics


def yolov1_head_decode(raw: jax.Array, *, num_boxes: int, num_classes: int):
    """``(boxes [..., S·S·B, 4] xyxy normalised, scores [..., S·S·B], classes [..., S·S·B])`` (no NMS)."""
    from jaxdet.losses.yolo import yolov1_decode

    pred = yolov1_activate(raw, num_boxes=num_boxes, num_classes=num_classes)
    return yolov1_decode(pred, num_boxes=num_boxes, num_classes=num_classes)


# -------------------------------------------------------------------------------------------------- polygon


class PolygonOutputs(NamedTuple):
    """Activated polygon-head outputs, ``[..., S, S, ...]``.

    Attributes:
      obj_logit: ``[..., S, S]`` objectness logit.
      boxes: ``[..., S, S, 4]`` xyxy normalised boxes.
      vertices: ``[..., S, S, K, 2]`` normalised (x, y) vertices.
      class_logits: ``[..., S, S, C]``.
    """

    obj_logit: jax.Array
    boxes: jax.Array
    vertices: jax.Array
    class_logits: jax.Array


def polygon_outputs(raw: jax.Array, *, num_vertices: int, num_classes: int) -> PolygonOutputs:
    """Splits and activates a raw ``[..., S, S, 1 + 4 + 2K + C]`` polygon-head tensor (layout in the module doc)."""
    from jaxdet.losses.yolo import yolov1_cell_boxes

    k = num_vertices
    raw = _check_raw(raw, 5 + 2 * k + num_classes, f"K={k}, C={num_classes}")
    s = raw.shape[-2]
    dtype = raw.dtype
    col = jnp.arange(s, dtype=dtype)[None, :]  # [1, S]: second grid axis is x
    row = jnp.arange(s, dtype=dtype)[:, None]  # [S, 1]
    t = jax.nn.sigmoid(raw[..., None, 1:5])  # [..., S, S, 1, 4]: one YOLOv1-layout box per cell
    boxes = yolov1_cell_boxes(t[..., :2], t[..., 2:])[..., 0, :]
    off = raw[..., 5: 5 + 2 * k].reshape(*raw.shape[:-1], k, 2)
    centre = jnp.stack(jnp.broadcast_arrays(col + 0.5, row + 0.5), axis=-1)[..., None, :]  # [S, S, 1, 2]
    vertices = (centre + off) / s
    return PolygonOutputs(raw[..., 0], boxes, vertices, raw[..., 5 + 2 * k:])


def polygon_cell_targets(
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    gt_valid: jax.Array,
    gt_polygons: jax.Array,
    *,
    grid_size: int,
    num_vertices: int,
) -> tuple[YoloV1Targets, jax.Array]:
    """The cell each ground truth trains and the polygon target of every cell.

    Each ground truth goes to the cell holding its box centre (:func:`jaxdet.assign.yolov1_grid_assign`; the first
    one wins a shared cell).

    Args:
      gt_boxes, gt_classes, gt_valid: ``[N, M, 4]``, ``[N, M]``, ``[N, M]`` padded ground truth.
      gt_polygons: ``[N, M, K, 2]`` canonical (CCW) normalised polygons.
      grid_size: S.
      num_vertices: K.

    Returns:
      ``(assignment, polygons [N, S, S, K, 2])``; cells without an object get GT 0's polygon (masked by
      ``assignment.has_object`` in the loss).
    """
    gt_polygons = jnp.asarray(gt_polygons)
    expected = (*jnp.shape(gt_boxes)[:-1], num_vertices, 2)
    if gt_polygons.shape != expected:
        raise _checks.fail_shape("gt_polygons", f"[N, M, K, 2] = {expected}", gt_polygons.shape)
    s = int(grid_size)
    tg = yolov1_grid_assign(gt_boxes, gt_classes, gt_valid, grid_size=s)
    lead = tg.has_object.shape[:-2]
    idx = jnp.maximum(tg.gt_index, 0).reshape(*lead, s * s)  # [N, S*S]
    polygons = jnp.take_along_axis(gt_polygons, idx[..., None, None], axis=-3)  # [N, S*S, K, 2]
    return tg, polygons.reshape(*lead, s, s, num_vertices, 2)


def polygon_head_loss(
    raw: jax.Array,
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    gt_valid: jax.Array,
    gt_polygons: jax.Array,
    *,
    num_vertices: int,
    num_classes: int,
    alpha: float | jax.Array,
    lambda_obj: float = 1.0,
    lambda_noobj: float = 0.5,
    lambda_cls: float = 1.0,
    lambda_box: float = 2.0,
    lambda_poly: float = 2.0,
    normalization: str = "none",
    state: Any = None,
    hybrid_kwargs: dict[str, Any] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array], Any]:
    """Objectness/class/box loss plus the hybrid L2 + MGIoU vertex loss (formula in the module doc).

    Args:
      raw: ``[N, S, S, 1 + 4 + 2K + C]`` raw head tensor.
      gt_boxes: ``[N, M, 4]`` xyxy normalised; gt_classes ``[N, M]`` int; gt_valid ``[N, M]`` bool.
      gt_polygons: ``[N, M, K, 2]`` canonical (CCW) normalised polygons.
      alpha: L2 weight of the hybrid (traced scalar from the schedule).
      lambda_*: term weights. normalization: the hybrid's ("none" | "loss_ema" | "grad_norm").
      state: :class:`jaxdet.losses.hybrid.HybridState` or None (fresh).
      hybrid_kwargs: further keywords for :func:`jaxdet.losses.hybrid.hybrid_polygon_loss`.

    Returns:
      ``(loss scalar, metrics, new hybrid state)``; metrics hold every term (weighted), the hybrid's ``alpha``,
      ``l2``, ``mgiou``, ``l2_grad_norm``, ``mgiou_grad_norm``, ``grad_cosine`` and ``num_pos``.
    """
    from jaxdet.losses.hybrid import hybrid_polygon_loss

    out = polygon_outputs(raw, num_vertices=num_vertices, num_classes=num_classes)
    tg, tgt_poly = polygon_cell_targets(
        gt_boxes, gt_classes, gt_valid, gt_polygons, grid_size=raw.shape[-2], num_vertices=num_vertices
    )
    tgt_poly = tgt_poly.astype(raw.dtype)
    pos = tg.has_object  # [N, S, S]
    posf = pos.astype(raw.dtype)
    n_pos = jnp.sum(posf)
    denom = jnp.maximum(n_pos, 1.0)

    obj_pos = jnp.sum(posf * binary_cross_entropy_with_logits(out.obj_logit, jnp.ones_like(posf))) / denom
    obj_neg = jnp.sum((1.0 - posf) * binary_cross_entropy_with_logits(out.obj_logit, jnp.zeros_like(posf))) / denom
    cls = jnp.sum(posf * -label_log_prob(out.class_logits, tg.classes)) / denom
    unit = jnp.asarray([0.0, 0.0, 1.0, 1.0], raw.dtype)
    gt_box = jnp.where(pos[..., None], tg.boxes.astype(raw.dtype), unit)  # well-formed target in empty cells
    box = jnp.sum(posf * generalized_box_iou_loss(out.boxes, gt_box)) / denom

    hybrid = hybrid_polygon_loss(
        out.vertices, tgt_poly, alpha=alpha, normalization=normalization, state=state, weight=posf,
        **(hybrid_kwargs or {}),
    )
    terms = {
        "obj": lambda_obj * obj_pos,
        "noobj": lambda_noobj * obj_neg,
        "cls": lambda_cls * cls,
        "box": lambda_box * box,
        "poly": lambda_poly * hybrid.total,
    }
    loss = sum(terms.values())
    metrics = {"loss": loss, **terms, "num_pos": n_pos}
    for key in ("alpha", "l2", "mgiou", "l2_grad_norm", "mgiou_grad_norm", "grad_cosine"):
        metrics[key] = hybrid.metrics[key]
    return loss, metrics, hybrid.state


def polygon_head_decode(raw: jax.Array, *, num_vertices: int, num_classes: int):
    """``(boxes [..., S·S, 4], scores [..., S·S], classes [..., S·S] int32, polygons [..., S·S, K, 2])``.

    ``score = σ(obj) · max_c softmax(c)``; cells ordered by row, then column (no NMS).
    """
    out = polygon_outputs(raw, num_vertices=num_vertices, num_classes=num_classes)
    lead = raw.shape[:-3]
    a = raw.shape[-3] * raw.shape[-2]
    prob = jax.nn.softmax(out.class_logits, axis=-1)
    scores = jax.nn.sigmoid(out.obj_logit) * jnp.max(prob, axis=-1)
    classes = jnp.argmax(prob, axis=-1).astype(jnp.int32)
    return (
        out.boxes.reshape(*lead, a, 4),
        scores.reshape(*lead, a),
        classes.reshape(*lead, a),
        out.vertices.reshape(*lead, a, num_vertices, 2),
    )
