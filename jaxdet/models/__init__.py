"""Flax NNX detectors and their heads (the model side of the training contract).

Public API:

- :class:`Head` — the head protocol (:mod:`jaxdet.models.head`): output channels and bias, ``build_model``,
  ``init_state``, ``loss(outputs, batch, *, step, state) -> (loss, metrics, state)`` and ``decode``.
- :func:`make_head` ``(model_cfg, loss_cfg, *, num_classes, total_steps) -> Head`` from the :data:`HEADS`
  registry (``model.head``: "yolov1" | "polygon" | "yolov8").
- :class:`YOLOv1Head`, :class:`PolygonHead`, :class:`YOLOv8Head` — the heads.
- :func:`build_detector` ``(model_cfg, *, num_classes, rngs)`` — the head's network; ``model(images
  [N, H, W, 3])`` returns the raw head tensor ``[N, S, S, D]``.
- :class:`YOLOv8` — the ultralytics YOLOv8 network (:mod:`jaxdet.models.yolov8`);
  :func:`load_ultralytics` (state dict, ``DetectionModel`` or ``.pt`` -> :class:`YOLOv8`) and
  :func:`export_ultralytics` (-> an ultralytics state dict) in :mod:`jaxdet.models.ultralytics_io`.
- :func:`default_model_config` — every ``model`` field with its default.

Config fields (``model_cfg``; anything missing takes its default): ``head``, ``grid_size`` (S=7),
``num_boxes`` (B=2, yolov1), ``num_vertices`` (K=8, polygon), ``widths``, ``depths``, ``head_width``,
``norm`` ("group" | "none"), ``groups``; yolov8: ``scale``, ``reg_max``, ``dtype``. The ``loss`` fields are each head's (see its module).
"""

from __future__ import annotations

from flax import nnx

from jaxdet.models.detector import GRID_DETECTOR_DEFAULTS, Detector
from jaxdet.models.head import Head
from jaxdet.models.polygon_head import POLYGON_LOSS_DEFAULTS, PolygonHead
from jaxdet.models.registry import HEADS, make_head
from jaxdet.models.ultralytics_io import export_ultralytics, load_ultralytics
from jaxdet.models.yolov8 import YOLOv8
from jaxdet.models.yolov8_head import YOLOV8_MODEL_DEFAULTS, YOLOv8Head
from jaxdet.models.yolov1_head import CONFIDENCE_PRIOR, YOLOV1_LOSS_DEFAULTS, YOLOv1Head

__all__ = [
    "CONFIDENCE_PRIOR",
    "Detector",
    "HEADS",
    "Head",
    "POLYGON_LOSS_DEFAULTS",
    "PolygonHead",
    "YOLOV1_LOSS_DEFAULTS",
    "YOLOv1Head",
    "YOLOV8_MODEL_DEFAULTS",
    "YOLOv8",
    "YOLOv8Head",
    "build_detector",
    "export_ultralytics",
    "load_ultralytics",
    "default_model_config",
    "make_head",
]


def default_model_config():
    """``ml_collections.ConfigDict`` with every model field read by the heads and the detector, and its default."""
    import ml_collections

    return ml_collections.ConfigDict(
        {"head": "yolov1", "num_boxes": 2, "num_vertices": 8, **GRID_DETECTOR_DEFAULTS, **YOLOV8_MODEL_DEFAULTS}
    )


def build_detector(model_cfg, *, num_classes: int, rngs: nnx.Rngs, loss_cfg=None) -> nnx.Module:
    """The network of the head ``model_cfg.head`` with ``num_classes`` classes (``make_head(...).build_model``)."""
    return make_head(model_cfg, loss_cfg, num_classes=num_classes).build_model(model_cfg, rngs=rngs)
