"""The YOLOv1 head (``model.head = "yolov1"``): ``B`` boxes with a confidence and one class distribution per cell.

Layout of the raw ``[N, S, S, D]`` outputs of the detector (:class:`jaxdet.models.detector.Detector`),
``D = B·5 + C``: per cell ``B × (x, y, sqrt_w, sqrt_h, conf)``, then ``C`` class scores. The network outputs raw,
unbounded values; the activations are applied here, identically for the loss and for decoding, so training and
inference see the same boxes:

- :func:`yolov1_activate` maps the raw tensor to the layout of :func:`jaxdet.losses.yolo.yolov1_loss`:
  ``sigmoid`` on all five box fields (``x, y`` offsets in the cell, ``sqrt_w, sqrt_h`` in (0, 1) so
  :math:`w = \\sigma(t_w)^2 \\in (0, 1)`, ``conf`` in (0, 1)) and ``softmax`` on the class scores (YOLOv1's
  class probabilities :math:`p(c)`, regressed with squared error by the loss).
  The √w parameterisation is darknet's: no square root of a prediction is taken, so gradients stay finite.
- :func:`yolov1_head_loss` = ``yolov1_loss(yolov1_activate(raw), ...)`` averaged over images; the head has no
  loss state.
- :func:`yolov1_head_decode` = ``yolov1_decode(yolov1_activate(raw))``: ``score = conf · max_c p(c)``.

Views for diagnostics: :meth:`YOLOv1Head.activate`, :attr:`YOLOv1Head.box_channels` (``x, y, sqrt_w, sqrt_h`` of
every predictor), :attr:`YOLOv1Head.confidence_channels` and :meth:`YOLOv1Head.loss_terms`.

Glossary: Case 1: the IoU confidence target's gradient flows through into the predicted boxes
(``iou_target="through"``); Case 2: it is stopped (``"stop"``, darknet's and every public YOLO's choice).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks
from jaxdet.losses.yolo import yolov1_decode, yolov1_loss
from jaxdet.models.base_head import Head, loss_field, model_field
from jaxdet.models.detector import GRID_DETECTOR_DEFAULTS
from jaxdet.nms import Detections, select_detections

__all__ = [
    "YOLOv1Head",
    "CONFIDENCE_PRIOR",
    "prior_logit",
    "yolov1_activate",
    "yolov1_head_loss",
    "yolov1_head_decode",
]

#: initial confidence / objectness probability of every predictor (output bias = its logit).
CONFIDENCE_PRIOR = 0.05


def prior_logit(p: float) -> float:
    """``log(p / (1 - p))``: the bias that makes a sigmoid output the prior probability ``p`` in (0, 1)."""
    p = _checks.number(p, "p", low=0.0, high=1.0, low_open=True, high_open=True)
    return math.log(p / (1.0 - p))


def yolov1_activate(raw: jax.Array, *, num_boxes: int, num_classes: int) -> jax.Array:
    """Raw ``[..., S, S, B·5 + C]`` → the layout of :func:`jaxdet.losses.yolo.yolov1_loss`.

    .. math:: (x, y, \\sqrt w, \\sqrt h, C) = \\sigma(t), \\qquad p(c) = \\mathrm{softmax}(s)_c
    """
    raw = _checks.square_grid(raw, "outputs", num_boxes * 5 + num_classes, f"B={num_boxes}, C={num_classes}")
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
    pred = yolov1_activate(raw, num_boxes=num_boxes, num_classes=num_classes)
    return yolov1_decode(pred, num_boxes=num_boxes, num_classes=num_classes)


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
    num_classes: int
    grid_size: int = model_field(GRID_DETECTOR_DEFAULTS["grid_size"])
    num_boxes: int = model_field(2)
    lambda_coord: float = loss_field(5.0)
    lambda_noobj: float = loss_field(0.5)
    iou_target: str = loss_field("stop")

    def __post_init__(self):
        _checks.positive_int(self.num_classes, "num_classes")
        _checks.positive_int(self.num_boxes, "num_boxes")
        _checks.positive_int(self.grid_size, "grid_size")
        _checks.choice(self.iou_target, "iou_target", ("stop", "through"))

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
        res = yolov1_loss(
            pred, batch["boxes"], batch["classes"], batch["valid"], num_boxes=self.num_boxes,
            num_classes=self.num_classes, lambda_coord=self.lambda_coord, lambda_noobj=self.lambda_noobj,
            iou_target=self.iou_target,
        )
        return {k: jnp.mean(v) for k, v in res.terms.items()}

    # ------------------------------------------------------------------------------------------ protocol

    def loss(self, outputs, batch, *, step, state):
        """:func:`yolov1_head_loss`; metrics ``loss, coord_xy, coord_wh, obj, noobj, cls``."""
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
