"""The polygon head (``model.head = "polygon"``): objectness, box, ``K`` vertices and class logits per cell.

Layout, activations and loss formula: :mod:`jaxdet.models.heads` (``D = 1 + 4 + 2K + C``). The head owns the
hybrid loss's α: a schedule of the step (:func:`jaxdet.schedules.make_alpha_schedule`) or adaptive α
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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks, schedules
from jaxdet.losses.hybrid import NORMALIZATIONS
from jaxdet.nms import Detections, select_detections
from jaxdet.models.detector import GRID_DETECTOR_DEFAULTS
from jaxdet.models.head import BATCH_KEYS, Head, config_get
from jaxdet.models.heads import (
    PolygonOutputs,
    polygon_cell_targets,
    polygon_head_decode,
    polygon_head_loss,
    polygon_outputs,
)
from jaxdet.models.yolov1_head import CONFIDENCE_PRIOR, prior_logit

__all__ = ["PolygonHead", "POLYGON_LOSS_DEFAULTS", "INITIAL_POLYGON_RADIUS"]

#: radius, in cells, of the regular K-gon the polygon head predicts at initialisation.
INITIAL_POLYGON_RADIUS = 1.0
POLYGON_LOSS_DEFAULTS: dict[str, Any] = {
    "lambda_obj": 1.0,
    "lambda_noobj": 0.5,
    "lambda_cls": 1.0,
    "lambda_box": 2.0,
    "lambda_poly": 2.0,
    "normalization": "none",
}
#: the α schedule when ``loss.alpha`` is not given: seed 003's cosine 0.9 -> 0.2 over 70 % of the run.
DEFAULT_ALPHA: dict[str, Any] = {"name": "cosine", "alpha_start": 0.9, "alpha_end": 0.2, "transition_fraction": 0.7}
_ADAPTIVE_KEYWORDS = ("ema", "hysteresis", "thresholds", "alphas")


def _plain(value: Any) -> Any:
    """Config values as hashable Python values (lists -> tuples)."""
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


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
    #: the ``loss`` config fields this head reads, with their defaults.
    loss_defaults: ClassVar[Mapping[str, Any]] = POLYGON_LOSS_DEFAULTS
    num_classes: int
    grid_size: int = 7
    num_vertices: int = 8
    lambda_obj: float = 1.0
    lambda_noobj: float = 0.5
    lambda_cls: float = 1.0
    lambda_box: float = 2.0
    lambda_poly: float = 2.0
    normalization: str = "none"
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
        kw = {k: config_get(loss_cfg, k, v) for k, v in POLYGON_LOSS_DEFAULTS.items()}
        alpha_cfg = config_get(loss_cfg, "alpha", None) or DEFAULT_ALPHA
        alpha = dict(alpha_cfg.to_dict() if hasattr(alpha_cfg, "to_dict") else alpha_cfg)
        name = _checks.choice(alpha.pop("name", None), "loss_cfg.alpha.name", (*schedules.ALPHA_SCHEDULES, "adaptive"))
        schedule, adaptive, start = None, None, 0.9
        if name == "adaptive":
            opts = dict(alpha.pop("adaptive", None) or {})
            if set(opts) - set(_ADAPTIVE_KEYWORDS):
                raise _checks.fail_value("loss_cfg.alpha.adaptive", f"a section with fields from {_ADAPTIVE_KEYWORDS}",
                                         opts)
            adaptive = tuple(sorted((k, _plain(v)) for k, v in opts.items()))
            start = float(alpha.get("alpha_start", 0.9))
        else:
            alpha.pop("adaptive", None)
            if alpha.get("total_epochs") is None or float(alpha.get("total_epochs", 0)) <= 0:
                alpha["total_epochs"] = int(total_steps)
            schedule = schedules.make_alpha_schedule(name, **alpha)
        return cls(
            num_classes=int(num_classes),
            grid_size=int(config_get(model_cfg, "grid_size", GRID_DETECTOR_DEFAULTS["grid_size"])),
            num_vertices=int(config_get(model_cfg, "num_vertices", 8)),
            lambda_obj=float(kw["lambda_obj"]),
            lambda_noobj=float(kw["lambda_noobj"]),
            lambda_cls=float(kw["lambda_cls"]),
            lambda_box=float(kw["lambda_box"]),
            lambda_poly=float(kw["lambda_poly"]),
            normalization=str(kw["normalization"]),
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
        from jaxdet.losses.hybrid import hybrid_state_init

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
        """:func:`jaxdet.models.heads.polygon_head_loss` at an explicit ``alpha``:
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
