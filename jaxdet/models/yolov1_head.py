"""The YOLOv1 head (``model.head = "yolov1"``): ``B`` boxes with a confidence and one class distribution per cell.

Layout of the raw ``[N, S, S, D]`` outputs, ``D = B·5 + C``: per cell ``B × (x, y, sqrt_w, sqrt_h, conf)``, then
``C`` class scores; the activations are :func:`jaxdet.models.heads.yolov1_activate` (sigmoid on the box
fields, softmax on the classes), shared by the loss and decoding. The loss is
:func:`jaxdet.losses.yolo.yolov1_loss` averaged over images; the head has no loss state.

Views for diagnostics: :meth:`YOLOv1Head.activate`, :attr:`YOLOv1Head.box_channels` (``x, y, sqrt_w, sqrt_h`` of
every predictor), :attr:`YOLOv1Head.confidence_channels` and :meth:`YOLOv1Head.loss_terms`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks
from jaxdet.nms import Detections, select_detections
from jaxdet.models.detector import GRID_DETECTOR_DEFAULTS
from jaxdet.models.head import Head, config_get
from jaxdet.models.heads import yolov1_activate, yolov1_head_decode, yolov1_head_loss

__all__ = ["YOLOv1Head", "CONFIDENCE_PRIOR", "YOLOV1_LOSS_DEFAULTS"]

#: initial confidence / objectness probability of every predictor (output bias = its logit).
CONFIDENCE_PRIOR = 0.05
YOLOV1_LOSS_DEFAULTS: dict[str, Any] = {"lambda_coord": 5.0, "lambda_noobj": 0.5, "iou_target": "stop"}


def prior_logit(p: float) -> float:
    """``log(p / (1 - p))``: the bias that makes a sigmoid output the prior probability ``p`` in (0, 1)."""
    p = _checks.number(p, "p", low=0.0, high=1.0, low_open=True, high_open=True)
    return math.log(p / (1.0 - p))


@dataclasses.dataclass(frozen=True)
class YOLOv1Head(Head):
    """YOLOv1 grid head.

    Attributes:
      num_classes: C.
      grid_size: S (the output grid).
      num_boxes: B predictors per cell.
      lambda_coord, lambda_noobj: the loss weights (5, 0.5).
      iou_target: "stop" (Case 2, darknet) or "through" (Case 1) for the confidence target.
    """

    name: ClassVar[str] = "yolov1"
    #: the ``loss`` config fields this head reads, with their defaults.
    loss_defaults: ClassVar[Mapping[str, Any]] = YOLOV1_LOSS_DEFAULTS
    num_classes: int
    grid_size: int = 7
    num_boxes: int = 2
    lambda_coord: float = 5.0
    lambda_noobj: float = 0.5
    iou_target: str = "stop"

    def __post_init__(self):
        _checks.positive_int(self.num_classes, "num_classes")
        _checks.positive_int(self.num_boxes, "num_boxes")
        _checks.positive_int(self.grid_size, "grid_size")
        _checks.choice(self.iou_target, "iou_target", ("stop", "through"))

    @classmethod
    def from_config(cls, model_cfg, loss_cfg, *, num_classes: int, total_steps: int) -> "YOLOv1Head":
        kw = {k: config_get(loss_cfg, k, v) for k, v in YOLOV1_LOSS_DEFAULTS.items()}
        return cls(
            num_classes=int(num_classes),
            grid_size=int(config_get(model_cfg, "grid_size", GRID_DETECTOR_DEFAULTS["grid_size"])),
            num_boxes=int(config_get(model_cfg, "num_boxes", 2)),
            lambda_coord=float(kw["lambda_coord"]),
            lambda_noobj=float(kw["lambda_noobj"]),
            iou_target=str(kw["iou_target"]),
        )

    def assignment_bytes(self, *, batch_size: int, max_objects: int, image_size: int) -> int:
        """The grid assignment's ``[N, M, S·S]`` cell-membership mask and its first-match index: ~8 bytes an entry."""
        return 8 * batch_size * max_objects * self.grid_size**2

    @property
    def channels(self) -> int:
        return self.num_boxes * 5 + self.num_classes

    def output_bias(self) -> np.ndarray:
        """Every confidence starts at :data:`CONFIDENCE_PRIOR`; the other channels at 0."""
        bias = np.zeros((self.channels,), np.float32)
        bias[self.confidence_channels] = prior_logit(CONFIDENCE_PRIOR)
        return bias

    # ------------------------------------------------------------------------------------------ views

    @property
    def box_channels(self) -> np.ndarray:
        """Indices of ``x, y, sqrt_w, sqrt_h`` of every predictor in the last axis (``[B·4]`` int)."""
        return np.asarray([b * 5 + i for b in range(self.num_boxes) for i in range(4)])

    @property
    def confidence_channels(self) -> np.ndarray:
        """Indices of every predictor's confidence in the last axis (``[B]`` int)."""
        return np.arange(self.num_boxes) * 5 + 4

    def activate(self, outputs: jax.Array) -> jax.Array:
        """Raw ``[..., S, S, D]`` -> the layout of :func:`jaxdet.losses.yolo.yolov1_loss` (same shape)."""
        return yolov1_activate(outputs, num_boxes=self.num_boxes, num_classes=self.num_classes)

    def loss_terms(self, pred: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The five image-mean terms of :func:`jaxdet.losses.yolo.yolov1_loss` of *activated* ``pred``."""
        from jaxdet.losses.yolo import yolov1_loss

        res = yolov1_loss(
            pred, batch["boxes"], batch["classes"], batch["valid"], num_boxes=self.num_boxes,
            num_classes=self.num_classes, lambda_coord=self.lambda_coord, lambda_noobj=self.lambda_noobj,
            iou_target=self.iou_target,
        )
        return {k: jnp.mean(v) for k, v in res.terms.items()}

    # ------------------------------------------------------------------------------------------ protocol

    def loss(self, outputs, batch, *, step, state):
        """:func:`jaxdet.models.heads.yolov1_head_loss`; metrics ``loss, coord_xy, coord_wh, obj, noobj, cls``."""
        self.check_batch(batch)
        loss, metrics = yolov1_head_loss(
            outputs, batch["boxes"], batch["classes"], batch["valid"], num_boxes=self.num_boxes,
            num_classes=self.num_classes, lambda_coord=self.lambda_coord, lambda_noobj=self.lambda_noobj,
            iou_target=self.iou_target,
        )
        return loss, metrics, state

    def decode(self, outputs, *, score_threshold: float = 0.05, iou_threshold: float = 0.5,
               max_detections: int = 100) -> Detections:
        """``score = conf · max_c p(c)`` per predictor, then class-aware NMS; ``polygons`` is None."""
        boxes, scores, classes = yolov1_head_decode(outputs, num_boxes=self.num_boxes, num_classes=self.num_classes)
        return select_detections(
            boxes, scores, classes, None, iou_threshold=iou_threshold, score_threshold=score_threshold,
            max_detections=max_detections,
        )
