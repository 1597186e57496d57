"""The polygon head (``model.head = "polygon"``): objectness, box, ``K`` vertices and class logits per cell.

Layout of the raw ``[N, S, S, D]`` outputs of the detector (:class:`jaxdet.models.detector.Detector`),
``D = 1 + 4 + 2K + C``: per cell ``(obj, x, y, sqrt_w, sqrt_h, v_1x, v_1y, …, v_Kx, v_Ky, class logits)``. The
activations (:func:`polygon_outputs`) are the same for the loss and for decoding:

- objectness :math:`\\sigma(o)`; box centre :math:`c_x = (\\mathrm{col} + \\sigma(t_x))/S`, size
  :math:`w = \\sigma(t_w)^2` (as the YOLOv1 head); class :math:`\\mathrm{softmax}`;
- vertex k: :math:`v_k = ((\\mathrm{col} + \\tfrac12 + o_{kx})/S, (\\mathrm{row} + \\tfrac12 + o_{ky})/S)`, an
  offset from the cell centre in cell units (linear, unbounded).
- Each ground truth is assigned to the cell holding its box centre (:func:`jaxdet.assign.yolov1_grid_assign`;
  the first one wins a shared cell; :func:`polygon_cell_targets`). With :math:`P` the positive cells of the batch
  and :math:`n = \\max(1, |P|)`, the loss (:func:`polygon_head_loss`) is

  .. math::
     L = \\frac{1}{n}\\Big[\\lambda_{obj}\\sum_{P}\\mathrm{BCE}(o, 1)
       + \\lambda_{noobj}\\sum_{\\bar P}\\mathrm{BCE}(o, 0)
       + \\lambda_{cls}\\sum_P \\mathrm{CE}(c)
       + \\lambda_{box}\\sum_P (1 - \\mathrm{GIoU}(b, \\hat b))\\Big]
       + \\lambda_{poly}\\,\\mathrm{Hybrid}_\\alpha(v, \\hat v)

  where :math:`\\mathrm{Hybrid}_\\alpha = \\alpha L_2 + (1-\\alpha)L_\\mathrm{MGIoU}` is
  :func:`jaxdet.losses.hybrid.hybrid_polygon_loss` (already a mean over the positive cells) with the α given
  by the head's schedule.
- Decoding (:func:`polygon_head_decode`): ``score = σ(obj) · max_c softmax(c)`` per cell, then class-aware NMS.

The head owns the hybrid loss's α: a schedule of the step (:func:`jaxdet.schedules.make_alpha_schedule`) or adaptive α
(:func:`jaxdet.schedules.adaptive_alpha_update`, read from the hybrid's gradient norms after every step). Its loss
state is ``{"hybrid": HybridState}`` plus ``"alpha": AdaptiveAlphaState`` for adaptive α.

Config (``loss`` section): ``lambda_obj, lambda_noobj, lambda_cls, lambda_box, lambda_poly``, ``normalization``
(the hybrid's "none" | "loss_ema" | "grad_norm") and ``alpha``: ``name`` (a schedule name or "adaptive") and the
schedule's keywords; ``total_epochs`` <= 0 means the run's length (with ``steps_per_epoch=1`` a step is an
epoch). For "adaptive", ``alpha_start`` is the first α and an optional ``adaptive`` sub-section holds the
update's keywords (``ema``, ``hysteresis``, ``thresholds``, ``alphas``). Without ``alpha`` the head uses
:data:`DEFAULT_ALPHA`.

Views for diagnostics: :meth:`PolygonHead.outputs` (the activated :class:`PolygonOutputs`) and
:meth:`PolygonHead.cell_targets` (which ground-truth polygon each cell is trained towards).

Glossary: seed 003: the hybrid L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation (the
``ultralytics-mgiou`` fork, on Le et al. 2025, "Marginalized Generalized IoU (MGIoU)", arXiv 2504.16443).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks, schedules
from jaxdet.assign import YoloV1Targets, yolov1_grid_assign
from jaxdet.boxes import generalized_box_iou_loss
from jaxdet.losses._common import label_log_prob
from jaxdet.losses.focal import binary_cross_entropy_with_logits
from jaxdet.losses.hybrid import NORMALIZATIONS, hybrid_polygon_loss, hybrid_state_init
from jaxdet.losses.yolo import yolov1_cell_boxes
from jaxdet.models.base_head import BATCH_KEYS, Head, loss_field, model_field
from jaxdet.models.detector import GRID_DETECTOR_DEFAULTS
from jaxdet.models.yolov1_head import CONFIDENCE_PRIOR, prior_logit
from jaxdet.nms import Detections, select_detections

__all__ = [
    "PolygonHead",
    "INITIAL_POLYGON_RADIUS",
    "PolygonOutputs",
    "polygon_outputs",
    "polygon_cell_targets",
    "polygon_head_loss",
    "polygon_head_decode",
]

#: radius, in cells, of the regular K-gon the polygon head predicts at initialisation.
INITIAL_POLYGON_RADIUS = 1.0
#: the α schedule when ``loss.alpha`` is not given: seed 003's cosine 0.9 -> 0.2 over 70 % of the run.
DEFAULT_ALPHA: dict[str, Any] = {"name": "cosine", "alpha_start": 0.9, "alpha_end": 0.2, "transition_fraction": 0.7}
_ADAPTIVE_KEYWORDS = ("ema", "hysteresis", "thresholds", "alphas")


def _plain(value: Any) -> Any:
    """Config values as hashable Python values (lists -> tuples)."""
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


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
    k = num_vertices
    raw = _checks.square_grid(raw, "outputs", 5 + 2 * k + num_classes, f"K={k}, C={num_classes}")
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


@dataclasses.dataclass(frozen=True)
class PolygonHead(Head):
    """Polygon head with the hybrid L2 + MGIoU vertex loss.

    Attributes:
      num_classes: C.
      grid_size: S (the output grid).
      num_vertices: K.
      lambda_obj, lambda_noobj, lambda_cls, lambda_box, lambda_poly: term weights.
      normalization: the hybrid's "none" | "loss_ema" | "grad_norm".
      alpha_schedule: ``step -> α`` (None for adaptive α).
      adaptive_alpha: the keywords of :func:`jaxdet.schedules.adaptive_alpha_update` as ``((name, value), ...)``,
        or None for a schedule.
      alpha_start: the first α of adaptive α.
    """

    name: ClassVar[str] = "polygon"
    batch_keys: ClassVar[tuple[str, ...]] = (*BATCH_KEYS, "polygons")
    extra_loss_fields: ClassVar[tuple[str, ...]] = ("alpha",)
    num_classes: int
    grid_size: int = model_field(GRID_DETECTOR_DEFAULTS["grid_size"])
    num_vertices: int = model_field(8)
    lambda_obj: float = loss_field(1.0)
    lambda_noobj: float = loss_field(0.5)
    lambda_cls: float = loss_field(1.0)
    lambda_box: float = loss_field(2.0)
    lambda_poly: float = loss_field(2.0)
    normalization: str = loss_field("none")
    # from the ``loss.alpha`` sub-section (:meth:`from_config`)
    alpha_schedule: Callable[[Any], Any] | None = None
    adaptive_alpha: tuple[tuple[str, Any], ...] | None = None
    alpha_start: float = 0.9

    def __post_init__(self):
        _checks.positive_int(self.num_classes, "num_classes")
        _checks.positive_int(self.num_vertices, "num_vertices", minimum=3)
        _checks.positive_int(self.grid_size, "grid_size")
        _checks.choice(self.normalization, "normalization", NORMALIZATIONS)
        if (self.alpha_schedule is None) == (self.adaptive_alpha is None):
            raise _checks.fail_value("alpha_schedule", "given exactly when adaptive_alpha is None",
                                     self.alpha_schedule)

    @classmethod
    def from_config(cls, model_cfg, loss_cfg, *, num_classes: int, total_steps: int) -> "PolygonHead":
        """The base head's fields (:meth:`~jaxdet.models.base_head.Head.config_values`) and the α of
        ``loss.alpha`` (a schedule over ``total_steps`` when its ``total_epochs`` is missing or <= 0, or adaptive)."""
        alpha_cfg = _checks.config_get(loss_cfg, "alpha", None) or DEFAULT_ALPHA
        alpha = dict(alpha_cfg.to_dict() if hasattr(alpha_cfg, "to_dict") else alpha_cfg)
        name = _checks.choice(alpha.pop("name", None), "loss_cfg.alpha.name", (*schedules.ALPHA_SCHEDULES, "adaptive"))
        default_start = next(f.default for f in dataclasses.fields(cls) if f.name == "alpha_start")
        schedule, adaptive, start = None, None, default_start
        if name == "adaptive":
            opts = dict(alpha.pop("adaptive", None) or {})
            if set(opts) - set(_ADAPTIVE_KEYWORDS):
                raise _checks.fail_value("loss_cfg.alpha.adaptive", f"a section with fields from {_ADAPTIVE_KEYWORDS}",
                                         opts)
            adaptive = tuple(sorted((k, _plain(v)) for k, v in opts.items()))
            start = float(alpha.get("alpha_start", default_start))
        else:
            alpha.pop("adaptive", None)
            if alpha.get("total_epochs") is None or float(alpha.get("total_epochs", 0)) <= 0:
                alpha["total_epochs"] = int(total_steps)
            schedule = schedules.make_alpha_schedule(name, **alpha)
        return cls(
            num_classes=int(num_classes),
            **cls.config_values(model_cfg, loss_cfg),
            alpha_schedule=schedule,
            adaptive_alpha=adaptive,
            alpha_start=start,
        )

    def assignment_bytes(self, *, batch_size: int, max_objects: int, image_size: int) -> int:
        """The grid assignment's ``[N, M, S·S]`` cell-membership mask and its first-match index: ~8 bytes an entry."""
        return 8 * batch_size * max_objects * self.grid_size**2

    @property
    def channels(self) -> int:
        return 1 + 4 + 2 * self.num_vertices + self.num_classes

    def output_bias(self) -> np.ndarray:
        """Objectness at :data:`CONFIDENCE_PRIOR`; the vertices on a regular K-gon of
        :data:`INITIAL_POLYGON_RADIUS` cells around the cell centre (canonical order: CCW from the smallest
        angle), so MGIoU never starts from a degenerate polygon."""
        k = self.num_vertices
        bias = np.zeros((self.channels,), np.float32)
        bias[0] = prior_logit(CONFIDENCE_PRIOR)
        theta = -np.pi + (np.arange(k) + 0.5) * 2 * np.pi / k
        ring = INITIAL_POLYGON_RADIUS * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
        bias[5: 5 + 2 * k] = ring.reshape(-1)
        return bias

    # ------------------------------------------------------------------------------------------ views

    def outputs(self, raw: jax.Array) -> PolygonOutputs:
        """The activated outputs of raw ``[N, S, S, D]``: objectness logit, boxes, vertices, class logits."""
        return polygon_outputs(raw, num_vertices=self.num_vertices, num_classes=self.num_classes)

    def cell_targets(self, batch: Mapping[str, jax.Array]):
        """``(assignment, polygons [N, S, S, K, 2])``: the YOLOv1 grid assignment of the batch and the ground-truth
        polygon each cell is trained towards (that of GT 0 where the cell has no object)."""
        return polygon_cell_targets(
            batch["boxes"], batch["classes"], batch["valid"], batch["polygons"], grid_size=self.grid_size,
            num_vertices=self.num_vertices,
        )

    # ------------------------------------------------------------------------------------------ protocol

    def init_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"hybrid": hybrid_state_init()}
        if self.adaptive_alpha is not None:
            state["alpha"] = schedules.adaptive_alpha_init(alpha=self.alpha_start)
        return state

    def alpha(self, step: jax.Array, state: Mapping[str, Any]) -> jax.Array:
        """The hybrid's α for ``step``: the schedule's value, or the adaptive state's current α."""
        if self.adaptive_alpha is not None:
            return state["alpha"].alpha
        return self.alpha_schedule(step)

    def loss_at_alpha(self, outputs, batch, *, alpha, hybrid_state=None):
        """:func:`polygon_head_loss` at an explicit ``alpha``:
        ``(loss, metrics, new HybridState)``."""
        self.check_batch(batch)
        return polygon_head_loss(
            outputs, batch["boxes"], batch["classes"], batch["valid"], batch["polygons"],
            num_vertices=self.num_vertices, num_classes=self.num_classes, alpha=alpha,
            lambda_obj=self.lambda_obj, lambda_noobj=self.lambda_noobj, lambda_cls=self.lambda_cls,
            lambda_box=self.lambda_box, lambda_poly=self.lambda_poly, normalization=self.normalization,
            state=hybrid_state,
        )

    def loss(self, outputs, batch, *, step, state):
        """The loss at this step's α; adaptive α is updated from the step's gradient norms of the two hybrid
        terms. Metrics: ``loss, obj, noobj, cls, box, poly, num_pos, alpha, l2, mgiou, l2_grad_norm,
        mgiou_grad_norm, grad_cosine``."""
        alpha = self.alpha(step, state)
        loss, metrics, hybrid_state = self.loss_at_alpha(outputs, batch, alpha=alpha, hybrid_state=state["hybrid"])
        new_state = dict(state, hybrid=hybrid_state)
        if self.adaptive_alpha is not None:
            new_state["alpha"] = schedules.adaptive_alpha_update(
                state["alpha"], jax.lax.stop_gradient(metrics["l2_grad_norm"]),
                jax.lax.stop_gradient(metrics["mgiou_grad_norm"]), **dict(self.adaptive_alpha),
            )
        return loss, metrics, new_state

    def decode(self, outputs, *, score_threshold: float = 0.05, iou_threshold: float = 0.5,
               max_detections: int = 100) -> Detections:
        """``score = σ(obj) · max_c softmax(c)`` per cell, then class-aware NMS; with ``polygons``."""
        boxes, scores, classes, polygons = polygon_head_decode(
            outputs, num_vertices=self.num_vertices, num_classes=self.num_classes)
        return select_detections(
            boxes, scores, classes, polygons, iou_threshold=iou_threshold, score_threshold=score_threshold,
            max_detections=max_detections,
        )
