"""Flax NNX detectors and their losses/decoding (the model side of the training contract).

Public API:

- :func:`default_model_config` / :func:`default_loss_config` — the fields read here, with defaults.
- :func:`build_detector` ``(model_cfg, *, num_classes, rngs) -> Detector``; ``model(images [N, H, W, 3])``
  returns the raw head tensor ``[N, S, S, D]``. No batch statistics (GroupNorm), so there is no mutable state
  and train/eval behave the same.
- :func:`detection_loss` ``(outputs, batch, *, model_cfg, loss_cfg, alpha) -> (loss, metrics)`` — pure, jit-safe.
- :func:`decode_detections` ``(outputs, *, model_cfg, score_threshold, iou_threshold, max_detections)
  -> Detections`` with fixed-size NMS.

Config fields (``model_cfg``; anything missing takes the default of :func:`default_model_config`):
``head`` ("yolov1" | "polygon"), ``grid_size`` (S=7), ``num_boxes`` (B=2, yolov1), ``num_vertices`` (K=8,
polygon), ``widths``, ``depths``, ``head_width``, ``norm`` ("group" | "none"), ``groups``.
``loss_cfg``: yolov1: ``iou_target`` ("stop" = Case 2 | "through" = Case 1), ``lambda_coord``,
``lambda_noobj``; polygon: ``lambda_obj``, ``lambda_noobj``, ``lambda_cls``, ``lambda_box``, ``lambda_poly``,
``normalization`` (the hybrid's "none" | "loss_ema" | "grad_norm").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdet.evaluate import Detections, nms, select_detections
from jaxdet.models.detector import Detector, config_get, head_channels
from jaxdet.models.heads import (
    POLYGON_LOSS_DEFAULTS,
    YOLOV1_LOSS_DEFAULTS,
    polygon_head_decode,
    polygon_head_loss,
    polygon_outputs,
    yolov1_activate,
    yolov1_head_decode,
    yolov1_head_loss,
)

__all__ = [
    "Detector",
    "Detections",
    "build_detector",
    "decode_detections",
    "default_loss_config",
    "default_model_config",
    "detection_loss",
    "head_channels",
    "init_loss_state",
    "nms",
    "num_classes_of",
    "polygon_outputs",
    "yolov1_activate",
]

_MODEL_DEFAULTS: dict[str, Any] = {
    "head": "yolov1",
    "grid_size": 7,
    "num_boxes": 2,
    "num_vertices": 8,
    "widths": (16, 32, 64, 128),
    "depths": (0, 1, 1, 1),
    "head_width": 128,
    "norm": "group",
    "groups": 8,
}

#: initial confidence / objectness probability of every predictor (output bias = its logit).
CONFIDENCE_PRIOR = 0.05
#: radius, in cells, of the regular K-gon the polygon head predicts at initialisation.
INITIAL_POLYGON_RADIUS = 1.0


def default_model_config():
    """``ml_collections.ConfigDict`` with every model field read by this module and its default."""
    import ml_collections

    return ml_collections.ConfigDict(dict(_MODEL_DEFAULTS))


def default_loss_config(head: str = "yolov1"):
    """``ml_collections.ConfigDict`` of the loss fields for ``head`` with their defaults."""
    import ml_collections

    if head == "yolov1":
        return ml_collections.ConfigDict(dict(YOLOV1_LOSS_DEFAULTS))
    if head == "polygon":
        return ml_collections.ConfigDict(dict(POLYGON_LOSS_DEFAULTS))
    raise ValueError(f"head must be 'yolov1' or 'polygon', got {head!r}")


def _m(cfg, name):
    return config_get(cfg, name, _MODEL_DEFAULTS[name])


def _head(model_cfg) -> str:
    head = _m(model_cfg, "head")
    if head not in ("yolov1", "polygon"):
        raise ValueError(f"model_cfg.head must be 'yolov1' or 'polygon', got {head!r}")
    return head


def num_classes_of(outputs: jax.Array, *, model_cfg) -> int:
    """C recovered from the raw head tensor's last axis (``D = B·5 + C`` or ``1 + 4 + 2K + C``)."""
    d = outputs.shape[-1]
    c = d - 5 * int(_m(model_cfg, "num_boxes")) if _head(model_cfg) == "yolov1" else \
        d - 5 - 2 * int(_m(model_cfg, "num_vertices"))
    if c < 1:
        raise ValueError(f"outputs last axis {d} is too small for model_cfg (head={_head(model_cfg)!r})")
    return c


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def build_detector(model_cfg, *, num_classes: int, rngs: nnx.Rngs) -> Detector:
    """Builds the detector for ``model_cfg.head`` with ``num_classes`` classes.

    The output bias starts every confidence/objectness at :data:`CONFIDENCE_PRIOR`, and for the polygon head
    every cell's vertices on a regular K-gon of :data:`INITIAL_POLYGON_RADIUS` cells around the cell centre
    (canonical order: CCW from the smallest angle), so MGIoU never starts from a degenerate polygon.
    """
    head = _head(model_cfg)
    b, k = int(_m(model_cfg, "num_boxes")), int(_m(model_cfg, "num_vertices"))
    d = head_channels(head, num_classes=num_classes, num_boxes=b, num_vertices=k)
    bias = np.zeros((d,), np.float32)
    if head == "yolov1":
        bias[4: 5 * b: 5] = _logit(CONFIDENCE_PRIOR)
    else:
        bias[0] = _logit(CONFIDENCE_PRIOR)
        theta = -np.pi + (np.arange(k) + 0.5) * 2 * np.pi / k
        ring = INITIAL_POLYGON_RADIUS * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
        bias[5: 5 + 2 * k] = ring.reshape(-1)
    return Detector(
        out_channels=d,
        grid_size=int(_m(model_cfg, "grid_size")),
        widths=tuple(_m(model_cfg, "widths")),
        depths=tuple(_m(model_cfg, "depths")),
        head_width=int(_m(model_cfg, "head_width")),
        norm=str(_m(model_cfg, "norm")),
        groups=int(_m(model_cfg, "groups")),
        output_bias=jnp.asarray(bias),
        rngs=rngs,
    )


def _loss_kw(loss_cfg, defaults: Mapping[str, Any]) -> dict[str, Any]:
    return {k: config_get(loss_cfg, k, v) for k, v in defaults.items()}


def init_loss_state(model_cfg, loss_cfg=None) -> Any:
    """Initial loss state: a :class:`jaxdet.losses.hybrid.HybridState` for the polygon head, None for yolov1."""
    if _head(model_cfg) == "yolov1":
        return None
    from jaxdet.losses.hybrid import hybrid_state_init

    return hybrid_state_init()


def detection_loss(
    outputs: jax.Array,
    batch: Mapping[str, jax.Array],
    *,
    model_cfg,
    loss_cfg,
    alpha: float | jax.Array | None = None,
    state: Any = None,
):
    """Training loss of the raw head tensor against a contract batch (pure, jit-safe).

    - yolov1: :func:`jaxdet.losses.yolo.yolov1_loss` on :func:`yolov1_activate` ``(outputs)``, mean over
      images; ``alpha`` is ignored. Metrics: ``loss, coord_xy, coord_wh, obj, noobj, cls``.
    - polygon: :func:`jaxdet.models.heads.polygon_head_loss` with the hybrid's ``alpha`` (required). Metrics:
      ``loss, obj, noobj, cls, box, poly, num_pos, alpha, l2, mgiou, l2_grad_norm, mgiou_grad_norm,
      grad_cosine`` (gradient norms and cosine are of the two hybrid terms w.r.t. the predicted vertices).

    Args:
      outputs: ``[N, S, S, D]`` raw head tensor.
      batch: dict with ``boxes [N, M, 4]``, ``classes [N, M]``, ``valid [N, M]`` (and ``polygons
        [N, M, K, 2]`` for the polygon head).
      model_cfg, loss_cfg: config sections (see the module doc).
      alpha: hybrid L2 weight (polygon head).
      state: optional hybrid loss state (needed only for ``normalization="loss_ema"`` or a ``norm_ema``); when
        given, the new state is returned as a third element.

    Returns:
      ``(loss scalar, metrics dict of scalars)``, or ``(loss, metrics, new_state)`` when ``state`` is given.
    """
    head = _head(model_cfg)
    c = num_classes_of(outputs, model_cfg=model_cfg)
    for key in ("boxes", "classes", "valid"):
        if key not in batch:
            raise ValueError(f"batch must contain {key!r}; got keys {sorted(batch)}")
    if head == "yolov1":
        kw = _loss_kw(loss_cfg, YOLOV1_LOSS_DEFAULTS)
        loss, metrics = yolov1_head_loss(
            outputs, batch["boxes"], batch["classes"], batch["valid"],
            num_boxes=int(_m(model_cfg, "num_boxes")), num_classes=c, **kw,
        )
        return (loss, metrics) if state is None else (loss, metrics, state)
    if "polygons" not in batch:
        raise ValueError("batch must contain 'polygons' for the polygon head")
    if alpha is None:
        raise ValueError("alpha is required for the polygon head (the hybrid's L2 weight)")
    kw = _loss_kw(loss_cfg, POLYGON_LOSS_DEFAULTS)
    loss, metrics, new_state = polygon_head_loss(
        outputs, batch["boxes"], batch["classes"], batch["valid"], batch["polygons"],
        num_vertices=int(_m(model_cfg, "num_vertices")), num_classes=c, alpha=alpha, state=state, **kw,
    )
    return (loss, metrics) if state is None else (loss, metrics, new_state)


def decode_detections(
    outputs: jax.Array,
    *,
    model_cfg,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> Detections:
    """Raw ``[N, S, S, D]`` → fixed-size :class:`Detections` after class-aware NMS (jit-friendly).

    Returns boxes ``[N, D, 4]`` xyxy normalised, scores ``[N, D]``, classes ``[N, D]`` int32, valid
    ``[N, D]`` and polygons ``[N, D, K, 2]`` (polygon head) or None, with D = ``max_detections``.
    """
    head = _head(model_cfg)
    c = num_classes_of(outputs, model_cfg=model_cfg)
    if head == "yolov1":
        boxes, scores, classes = yolov1_head_decode(outputs, num_boxes=int(_m(model_cfg, "num_boxes")),
                                                    num_classes=c)
        polygons = None
    else:
        boxes, scores, classes, polygons = polygon_head_decode(
            outputs, num_vertices=int(_m(model_cfg, "num_vertices")), num_classes=c)
    return select_detections(
        boxes, scores, classes, polygons, iou_threshold=iou_threshold, score_threshold=score_threshold,
        max_detections=max_detections,
    )
