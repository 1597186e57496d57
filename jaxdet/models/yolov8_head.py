"""The YOLOv8 head family: ``model.head = "yolov8"`` and ``"yolo11"``, the ultralytics networks with their DFL box
decoding, loss and NMS.

:class:`YOLOv8Head` is parameterised by its class attribute ``version``, the :class:`jaxdet.models.yolo.YOLO` version
it builds; :class:`YOLO11Head` is the same head on the YOLO11 network (``version = "11"``: C3k2 blocks, C2PSA,
the depthwise class branch), with the same loss, decoding and fields, as ultralytics trains and validates YOLO11 with
``v8DetectionLoss`` and NMS. YOLO26 (``"yolo26"``, :mod:`jaxdet.models.yolo26_head`) derives from it too and
replaces the loss and the decoding.

Outputs layout: the model (:class:`jaxdet.models.yolo.YOLO`, version "v8" or "11") returns a **tuple of three
per-level arrays** ``[N, H/s, W/s, 4·reg_max + C]`` for the strides ``s = 8, 16, 32``; the last axis holds the DFL
logits of the four box sides (``l, t, r, b``, ``reg_max`` bins each, side-major) then the C class logits.
:meth:`YOLOv8Head.flatten` concatenates the levels row-major into ``[N, A, 4·reg_max + C]`` (ultralytics'
anchor order, ``A = Σ H/s · W/s``), which is what the loss and decoding read.

Decoding (:meth:`YOLOv8Head.decode`):

.. math::
    d_k = \\sum_{j=0}^{R-1} j \\, \\mathrm{softmax}(z_k)_j, \\qquad
    \\text{box} = s \\cdot (a_x - d_l,\\; a_y - d_t,\\; a_x + d_r,\\; a_y + d_b) / (W, H, W, H)

with the anchor point ``a`` at the cell centre (grid units) and the image size ``W = W_l · s``; the score of
an anchor is its largest class sigmoid (ultralytics' single-label NMS of its predictor), or with
``multi_label=True`` every (anchor, class) pair is a candidate (its validator), then the fixed-size
class-aware NMS of :func:`jaxdet.nms.select_detections`. Boxes are normalised to ``[0, 1]``.

Loss: :func:`jaxdet.losses.yolov8.yolov8_loss` (ultralytics' ``v8DetectionLoss``, normalised: no factor B),
loss fields ``box, cls, dfl`` (gains 7.5, 0.5, 1.5), ``score_target`` ("stop"), ``topk`` (10),
``tal_norm_eps`` (1e-9, the assigner's score normaliser ε, :func:`jaxdet.tal.task_aligned_assign`'s
``norm_eps``; ``configs/yolov8n_dense.py`` sets 0 for its 6–15 px objects).

Config fields (``model``): ``scale`` ("n" | "s" | "m" | "l" | "x", default "n"), ``reg_max`` (16, at least 2;
YOLO26's 1 makes the four box values the distances themselves, :meth:`YOLOv8Head.boxes` reads both), ``dtype``
(compute dtype: "float32" | "bfloat16"). ``model.image_size`` must be a multiple of 32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdet import _checks
from jaxdet.losses.yolov8 import yolov8_loss
from jaxdet.models.base_head import Head, loss_field, model_field
from jaxdet.models.yolo import VERSIONS, YOLO
from jaxdet.nms import Detections, select_detections
from jaxdet.tal import dfl_decode, dist2bbox, make_anchor_points

__all__ = ["YOLOv8Head", "YOLO11Head", "STRIDES"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
STRIDES = (8, 16, 32)


@dataclasses.dataclass(frozen=True)
class YOLOv8Head(Head):
    """The ultralytics YOLOv8 detection head, and the base of the family (:attr:`version` picks the network).

    Attributes:
      num_classes: C.
      scale: model scale ("n", "s", ...).
      reg_max: DFL bins per box side (16).
      dtype: compute dtype name ("float32" | "bfloat16"); parameters stay float32.
      box, cls, dfl, score_target, topk, tal_norm_eps: the loss fields (module doc).
    """

    name: ClassVar[str] = "yolov8"
    #: the :class:`jaxdet.models.yolo.YOLO` version the head builds ("v8", "11", "26").
    version: ClassVar[str] = "v8"
    #: the smallest ``model.reg_max``: 2 (DFL bins) for v8 and 11, 1 (no bins) for YOLO26.
    min_reg_max: ClassVar[int] = 2
    num_classes: int
    scale: str = model_field("n")
    reg_max: int = model_field(16)
    dtype: str = model_field("float32")
    # the loss (jaxdet.losses.yolov8.yolov8_loss), ultralytics' defaults
    box: float = loss_field(7.5)
    cls: float = loss_field(0.5)
    dfl: float = loss_field(1.5)
    score_target: str = loss_field("stop")
    topk: int = loss_field(10)
    tal_norm_eps: float = loss_field(1e-9)

    def __post_init__(self):
        _checks.positive_int(self.num_classes, "num_classes")
        _checks.choice(self.scale, "model.scale", tuple(VERSIONS[self.version].scales))
        _checks.positive_int(self.reg_max, "model.reg_max", minimum=self.min_reg_max)
        _checks.choice(self.dtype, "model.dtype", tuple(_DTYPES))
        _checks.choice(self.score_target, "loss.score_target", ("stop", "through"))
        _checks.positive_int(self.topk, "loss.topk")
        _checks.number(self.tal_norm_eps, "loss.tal_norm_eps", low=0)

    @property
    def channels(self) -> int:
        return 4 * self.reg_max + self.num_classes

    @staticmethod
    def num_anchors(image_size: int) -> int:
        """A: anchor points of a square ``image_size`` input (``Σ_s (image_size / s)²`` over the strides)."""
        return sum((int(image_size) // s) ** 2 for s in STRIDES)

    def assignment_bytes(self, *, batch_size: int, max_objects: int, image_size: int) -> int:
        """Task-aligned assignment: about ten ``[N, M, A]`` float32/bool arrays (pairwise CIoU, class scores,
        alignment metric, in-box, top-k and positive masks and their intermediates): ~40 bytes an entry."""
        return 40 * batch_size * max_objects * self.num_anchors(image_size)

    def output_bias(self) -> np.ndarray:
        """The stride-8 level's initial bias: 2.0 on the box logits, ``log(5 / C / 80²)`` on the classes
        (the stride-16/32 levels use ``log(5 / C / (640 / s)²)``, see :class:`jaxdet.models.blocks.Detect`)."""
        bias = np.full((self.channels,), 2.0, np.float32)
        bias[4 * self.reg_max:] = math.log(5 / self.num_classes / (640 / STRIDES[0]) ** 2)
        return bias

    def build_model(self, model_cfg, *, rngs: nnx.Rngs) -> nnx.Module:
        """:class:`jaxdet.models.yolo.YOLO` of the head's :attr:`version` at ``model.scale`` (parameters float32,
        compute ``model.dtype``)."""
        return YOLO(version=self.version, scale=self.scale, num_classes=self.num_classes, reg_max=self.reg_max,
                    rngs=rngs, dtype=_DTYPES[self.dtype])

    # ------------------------------------------------------------------------------------------ views

    def levels(self, outputs) -> Sequence[jax.Array]:
        """The per-level arrays that :meth:`flatten` reads: the model's outputs themselves (YOLO26: a branch's)."""
        return outputs

    def flatten(self, outputs: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array, tuple[int, int]]:
        """Per-level outputs -> ``(raw [N, A, 4·reg_max + C], anchor points [A, 2], strides [A], (H, W))``.

        ``(H, W)`` is the input image size in pixels (level 0's size times its stride).
        """
        outputs = self.levels(outputs)
        if len(outputs) != len(STRIDES):
            raise _checks.fail_value("outputs", f"a tuple of {len(STRIDES)} per-level arrays", type(outputs))
        for i, o in enumerate(outputs):
            _checks.floating(o, f"outputs[{i}]", min_ndim=4, last=self.channels, shape="[N, H, W, 4·reg_max + C]")
        shapes = [tuple(int(d) for d in o.shape[1:3]) for o in outputs]
        raw = jnp.concatenate([o.reshape(o.shape[0], -1, o.shape[-1]) for o in outputs], axis=1)
        points, strides = make_anchor_points(shapes, STRIDES, dtype=jnp.promote_types(raw.dtype, jnp.float32))
        return raw, points, strides, (shapes[0][0] * STRIDES[0], shapes[0][1] * STRIDES[0])

    def boxes(self, outputs: Sequence[jax.Array]) -> jax.Array:
        """Decoded ``[N, A, 4]`` xyxy boxes normalised by the image size (``reg_max = 1``: the raw distances)."""
        raw, points, strides, (h, w) = self.flatten(outputs)
        raw = raw.astype(jnp.promote_types(raw.dtype, jnp.float32))
        dist = raw[..., :4] if self.reg_max == 1 else dfl_decode(raw[..., : 4 * self.reg_max], reg_max=self.reg_max)
        xyxy = dist2bbox(dist, points) * strides[:, None]
        return xyxy / jnp.asarray([w, h, w, h], raw.dtype)

    # ------------------------------------------------------------------------------------------ protocol

    def loss(self, outputs, batch, *, step, state):
        """:func:`jaxdet.losses.yolov8.yolov8_loss` (the batch's normalised boxes scaled to pixels); metrics
        ``loss, box, cls, dfl`` (gain-scaled, not multiplied by the batch size as ultralytics' are)."""
        self.check_batch(batch)
        raw, points, strides, (h, w) = self.flatten(outputs)
        scale = jnp.asarray([w, h, w, h], raw.dtype)
        res = yolov8_loss(
            raw, points, strides, batch["classes"], batch["boxes"].astype(raw.dtype) * scale, batch["valid"],
            reg_max=self.reg_max, box=self.box, cls=self.cls, dfl=self.dfl, score_target=self.score_target,
            topk=self.topk, norm_eps=self.tal_norm_eps,
        )
        return res.total, {"loss": res.total, **res.terms}, state

    def decode(self, outputs, *, score_threshold: float = 0.05, iou_threshold: float = 0.5,
               max_detections: int = 100, multi_label: bool = False, pre_nms_top_k: int | None = None) -> Detections:
        """DFL boxes and class sigmoids, then class-aware NMS (``polygons`` None).

        Single-label (default, ultralytics' predictor): one candidate per anchor, score = its largest class
        sigmoid, class = the argmax. ``multi_label=True`` (ultralytics' validator): one candidate per
        (anchor, class) pair, ``A · C`` of them, each with that class's sigmoid. ``pre_nms_top_k`` caps the
        candidates entering NMS to the best-scoring ones (ultralytics' ``max_nms`` = 30,000).
        """
        raw, _, _, _ = self.flatten(outputs)
        cls = jax.nn.sigmoid(raw[..., 4 * self.reg_max:].astype(jnp.promote_types(raw.dtype, jnp.float32)))
        boxes = self.boxes(outputs)  # [N, A, 4]
        if multi_label:
            n, a, c = cls.shape
            boxes = jnp.broadcast_to(boxes[:, :, None, :], (n, a, c, 4)).reshape(n, a * c, 4)
            scores = cls.reshape(n, a * c)  # anchor-major, class-minor, as ultralytics' torch.where
            classes = jnp.broadcast_to(jnp.arange(c, dtype=jnp.int32), (n, a, c)).reshape(n, a * c)
        else:
            scores, classes = jnp.max(cls, -1), jnp.argmax(cls, -1).astype(jnp.int32)
        return select_detections(
            boxes, scores, classes, None, iou_threshold=iou_threshold, score_threshold=score_threshold,
            max_detections=max_detections, pre_nms_top_k=pre_nms_top_k,
        )


@dataclasses.dataclass(frozen=True)
class YOLO11Head(YOLOv8Head):
    """The ultralytics YOLO11 detection head (``model.head = "yolo11"``): :class:`YOLOv8Head` on the YOLO11 network.

    ultralytics trains YOLO11 with ``v8DetectionLoss`` (DFL, ``reg_max`` 16, ``topk`` 10) and validates it with
    NMS, so the loss, the decoding and every field are YOLOv8's; only :attr:`version` differs.
    """

    name: ClassVar[str] = "yolo11"
    version: ClassVar[str] = "11"
