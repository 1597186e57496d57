"""The head registry: ``model.head`` name -> :class:`jaxdet.models.base_head.Head` class, and :func:`make_head`.

This is the only place where a head name is compared or dispatched on. :data:`DEFAULT_HEAD` is the head of a
``model`` section without ``head``, and of :func:`jaxdet.models.default_model_config`; it is also the head of
``python -m train``'s default config (``configs/yolov8n_shapes.py``).
"""

from __future__ import annotations

from jaxdet import _checks
from jaxdet.models.base_head import Head
from jaxdet.models.polygon_head import PolygonHead
from jaxdet.models.yolo26_head import YOLO26Head
from jaxdet.models.yolov1_head import YOLOv1Head
from jaxdet.models.yolov8_head import YOLO11Head, YOLOv8Head

__all__ = ["HEADS", "DEFAULT_HEAD", "make_head"]

#: ``model.head`` name -> head class.
HEADS: dict[str, type[Head]] = {
    cls.name: cls for cls in (YOLOv1Head, PolygonHead, YOLOv8Head, YOLO11Head, YOLO26Head)
}
#: the head of a ``model`` section that names none.
DEFAULT_HEAD = YOLOv8Head.name  # "yolov8"


def make_head(model_cfg, loss_cfg=None, *, num_classes: int, total_steps: int = 1) -> Head:
    """The :class:`Head` named by ``model_cfg.head`` (default :data:`DEFAULT_HEAD`, "yolov8"), built from the
    config sections.

    Args:
      model_cfg: the ``model`` config section (``head`` and the head's layout fields).
      loss_cfg: the ``loss`` config section (the head's loss fields; missing ones take the head's defaults).
      num_classes: C.
      total_steps: the run's number of steps (α schedules whose length is given as 0 use it).
    """
    name = _checks.config_get(model_cfg, "head", DEFAULT_HEAD)
    _checks.choice(name, "model_cfg.head", tuple(HEADS))
    _checks.positive_int(num_classes, "num_classes")
    return HEADS[name].from_config(model_cfg, loss_cfg, num_classes=num_classes, total_steps=int(total_steps))
