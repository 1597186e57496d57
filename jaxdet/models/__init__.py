"""Flax NNX detectors and their heads (the model side of the training contract).

Public API:

- :class:`Head` — the head protocol (:mod:`jaxdet.models.base_head`): output channels and bias, ``build_model``,
  ``init_state``, ``loss(outputs, batch, *, step, state) -> (loss, metrics, state)`` and ``decode``; its
  config fields and their defaults (``Head.model_defaults``, ``Head.loss_defaults``) are its dataclass fields.
- :func:`make_head` ``(model_cfg, loss_cfg, *, num_classes, total_steps) -> Head`` from the :data:`HEADS`
  registry (``model.head``: "yolov1" | "polygon" | "yolov8" | "yolo11" | "yolo26"; :data:`DEFAULT_HEAD` "yolov8"
  when not given).
- :class:`YOLOv1Head`, :class:`PolygonHead`, :class:`YOLOv8Head`, :class:`YOLO11Head`, :class:`YOLO26Head` — the
  heads (the last three one family: :mod:`jaxdet.models.yolov8_head`, :mod:`jaxdet.models.yolo26_head`).
- :func:`build_detector` ``(model_cfg, *, num_classes, rngs)`` — the head's network; ``model(images
  [N, H, W, 3])`` returns the raw head tensor ``[N, S, S, D]``.
- :class:`YOLO` — the ultralytics YOLOv8 / YOLO11 / YOLO26 networks, ``YOLO(version="v8" | "11" | "26", scale=...)``,
  and their oriented-box forms with ``task="obb"`` (the ``-obb`` yamls: one raw angle channel more per level)
  (:mod:`jaxdet.models.yolo`, blocks in :mod:`jaxdet.models.blocks`);
  :func:`load_ultralytics` (state dict, ``DetectionModel`` or ``.pt`` -> :class:`YOLO`, version detected) and
  :func:`export_ultralytics` (-> an ultralytics state dict) in :mod:`jaxdet.models.ultralytics_io`.
- :func:`default_model_config` — every ``model`` field with its default (the head :data:`DEFAULT_HEAD`).

Config fields (``model_cfg``; anything missing takes its default): ``head`` ("yolov8"), ``grid_size`` (S=7),
``num_boxes`` (B=2, yolov1), ``num_vertices`` (K=8, polygon), ``widths``, ``depths``, ``head_width``,
``norm`` ("group" | "none"), ``groups``; yolov8, yolo11, yolo26: ``scale``, ``reg_max``, ``dtype``. The ``loss``
fields are each head's (see its module).
"""

from __future__ import annotations

import ml_collections
from flax import nnx

from jaxdet.models.base_head import Head
from jaxdet.models.detector import GRID_DETECTOR_DEFAULTS, Detector
from jaxdet.models.polygon_head import PolygonHead
from jaxdet.models.registry import DEFAULT_HEAD, HEADS, make_head
from jaxdet.models.ultralytics_io import export_ultralytics, load_ultralytics
from jaxdet.models.yolo import YOLO
from jaxdet.models.yolo26_head import YOLO26Head
from jaxdet.models.yolov1_head import CONFIDENCE_PRIOR, YOLOv1Head
from jaxdet.models.yolov8_head import YOLO11Head, YOLOv8Head

__all__ = [
    "CONFIDENCE_PRIOR",
    "DEFAULT_HEAD",
    "Detector",
    "HEADS",
    "Head",
    "PolygonHead",
    "YOLOv1Head",
    "YOLO",
    "YOLOv8Head",
    "YOLO11Head",
    "YOLO26Head",
    "build_detector",
    "export_ultralytics",
    "load_ultralytics",
    "default_model_config",
    "make_head",
]


def default_model_config():
    """``ml_collections.ConfigDict`` with every model field read by the heads and the detector, and its default;
    ``head`` is :data:`DEFAULT_HEAD`, whose defaults win for a field several heads read (``reg_max``: yolov8's 16,
    not yolo26's 1)."""
    fields = dict(GRID_DETECTOR_DEFAULTS)
    for head in (*HEADS.values(), HEADS[DEFAULT_HEAD]):
        fields.update(head.model_defaults)
    return ml_collections.ConfigDict({"head": DEFAULT_HEAD, **fields})


def build_detector(model_cfg, *, num_classes: int, rngs: nnx.Rngs, loss_cfg=None) -> nnx.Module:
    """The network of the head ``model_cfg.head`` with ``num_classes`` classes (``make_head(...).build_model``)."""
    return make_head(model_cfg, loss_cfg, num_classes=num_classes).build_model(model_cfg, rngs=rngs)
