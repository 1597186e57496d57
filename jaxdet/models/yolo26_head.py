"""The YOLO26 head (``model.head = "yolo26"``): the end-to-end network, its two-branch loss and the NMS-free decode.

:class:`YOLO26Head` is :class:`jaxdet.models.yolov8_head.YOLOv8Head` on the YOLO26 network (``version = "26"``,
``reg_max`` 1 by default, ``end2end``), with the loss and the decoding replaced:

- outputs: :class:`jaxdet.models.yolo.YOLO` returns ``{"one2many": levels, "one2one": levels}`` in train and in eval
  mode, each a tuple of three ``[N, H/s, W/s, 4·reg_max + C]`` arrays (strides 8, 16, 32; with ``reg_max = 1`` the
  four box values are the ``l, t, r, b`` distances in stride units, then the C class logits). In train mode the
  one-to-one levels come from ``stop_gradient``-ed features. :meth:`YOLO26Head.flatten` and
  :meth:`YOLO26Head.boxes` read the one-to-one branch of such a dict (or a branch's levels given alone).
- loss (:meth:`YOLO26Head.loss`): :func:`jaxdet.losses.yolo26.yolo26_loss`, ultralytics' ``E2ELoss``: both
  branches scored by the YOLOv8 loss against the same targets (one-to-many ``topk`` 10; one-to-one
  ``one2one_topk`` 7 with ``one2one_topk2`` 1), weighted :math:`w\\,L_{o2m} + \\max(1 - w, 0)\\,L_{o2o}` with
  :math:`w` the one-to-many weight at the training step, :func:`jaxdet.schedules.one2many_schedule` over the
  run's ``train.steps``.
- decoding (:meth:`YOLO26Head.decode`): ultralytics' evaluation of an end-to-end model, the one-to-one branch of the
  eval-mode outputs through :func:`jaxdet.nms_free.nms_free_decode` (the ``max_detections`` best (anchor, class)
  pairs, uncapped), then the pairs scoring above ``score_threshold`` (ultralytics' ``non_max_suppression`` with
  ``end2end``: ``conf > conf_thres``, no NMS). ``iou_threshold`` is accepted and not used.

Config fields (``model``): ``scale`` ("n" ... "x", yolo26.yaml's scales), ``reg_max`` (1; more gives DFL bins),
``dtype``. Loss fields: the gains ``box`` 7.5, ``cls`` 0.5 and ``dfl`` 1.5 (ultralytics' ``dfl``: the weight of
the L1 term with ``reg_max = 1``, of the DFL term otherwise), ``score_target`` ("stop"), ``topk`` (10, the
one-to-many assigner), ``one2one_topk`` (7) and ``one2one_topk2`` (1; 0 for none), ``tal_norm_eps`` (1e-9), and the
one-to-many weight: ``one2many`` ("linear" | "constant" | "cosine"), ``one2many_start`` (0.8),
``one2many_end`` (0.1), ``one2many_epochs`` (0: the weight moves every step; E: held within each of E equal
parts of the run, ultralytics' per-epoch staircase), see :func:`jaxdet.schedules.one2many_schedule`.

References:
  ultralytics 8.4.190 ``ultralytics/utils/loss.py`` (``E2ELoss``), ``ultralytics/nn/modules/head.py``
  (``Detect.postprocess``), ``ultralytics/utils/nms.py`` (``non_max_suppression`` with ``end2end``),
  ``ultralytics/cfg/models/26/yolo26.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.losses.yolo26 import YOLO26_BRANCHES, yolo26_loss
from jaxdet.models.base_head import loss_field, model_field
from jaxdet.models.yolov8_head import YOLOv8Head
from jaxdet.nms import Detections
from jaxdet.nms_free import nms_free_decode
from jaxdet.schedules import ONE2MANY_SCHEDULES, one2many_schedule

__all__ = ["YOLO26Head"]

#: metric-name prefixes of the two branches' terms.
_PREFIX = {"one2many": "o2m", "one2one": "o2o"}


@dataclasses.dataclass(frozen=True)
class YOLO26Head(YOLOv8Head):
    """The ultralytics YOLO26 detection head: end-to-end, NMS-free (module doc).

    Attributes:
      num_classes, scale, reg_max, dtype: as :class:`YOLOv8Head` (``reg_max`` 1 by default, at least 1).
      box, cls, dfl, score_target, topk, tal_norm_eps: the loss fields of both branches (``topk``: one-to-many).
      one2one_topk, one2one_topk2: the one-to-one assigner's ``topk`` and ``topk2`` (0: no second top-k).
      one2many, one2many_start, one2many_end, one2many_epochs: the one-to-many weight schedule.
      total_steps: the run's steps (``train.steps``), over which the weight schedule runs.
    """

    name: ClassVar[str] = "yolo26"
    version: ClassVar[str] = "26"
    min_reg_max: ClassVar[int] = 1
    reg_max: int = model_field(1)
    one2one_topk: int = loss_field(7)
    one2one_topk2: int = loss_field(1)
    one2many: str = loss_field("linear")
    one2many_start: float = loss_field(0.8)
    one2many_end: float = loss_field(0.1)
    one2many_epochs: int = loss_field(0)
    total_steps: int = 1

    def __post_init__(self):
        super().__post_init__()
        _checks.positive_int(self.one2one_topk, "loss.one2one_topk")
        _checks.positive_int(self.one2one_topk2, "loss.one2one_topk2", minimum=0)
        _checks.choice(self.one2many, "loss.one2many", ONE2MANY_SCHEDULES)
        _checks.number(self.one2many_start, "loss.one2many_start", low=0.0, high=1.0)
        _checks.number(self.one2many_end, "loss.one2many_end", low=0.0, high=1.0)
        _checks.positive_int(self.one2many_epochs, "loss.one2many_epochs", minimum=0)
        _checks.positive_int(self.total_steps, "total_steps")

    @classmethod
    def from_config(cls, model_cfg, loss_cfg, *, num_classes: int, total_steps: int) -> "YOLO26Head":
        """The head of the config sections, its one-to-many weight running over ``total_steps``."""
        return cls(num_classes=int(num_classes), total_steps=int(total_steps),
                   **cls.config_values(model_cfg, loss_cfg))

    def schedule(self):
        """``step -> w``, the one-to-many weight (:func:`jaxdet.schedules.one2many_schedule` of the fields)."""
        return one2many_schedule(self.one2many, total_steps=self.total_steps, start=self.one2many_start,
                                 end=self.one2many_end, epochs=self.one2many_epochs)

    def assignment_bytes(self, *, batch_size: int, max_objects: int, image_size: int) -> int:
        """Two task-aligned assignments (one per branch, the one-to-one one's ``topk2`` sorts per image without a
        ``[N, M, A]`` array): twice :meth:`YOLOv8Head.assignment_bytes`, ~80 bytes an ``[N, M, A]`` entry."""
        return 2 * super().assignment_bytes(batch_size=batch_size, max_objects=max_objects, image_size=image_size)

    # ------------------------------------------------------------------------------------------ views

    def levels(self, outputs, branch: str = "one2one") -> Sequence[jax.Array]:
        """The per-level arrays of ``branch`` of the model's ``{"one2many", "one2one"}`` outputs (the one-to-one
        branch by default: the one evaluated); a tuple of levels is returned as it is."""
        if isinstance(outputs, Mapping):
            _checks.keys_present(outputs, YOLO26_BRANCHES, "outputs")
            return outputs[branch]
        return outputs

    # ------------------------------------------------------------------------------------------ protocol

    def loss(self, outputs, batch, *, step, state):
        """:func:`jaxdet.losses.yolo26.yolo26_loss` of the two branches (the batch's boxes scaled to pixels).

        Metrics: ``loss``; ``box, cls, l1`` (``dfl`` with ``reg_max > 1``), the weighted sums of the branches'
        gain-scaled terms; ``o2m_box, o2m_cls, o2m_l1`` and ``o2o_box, ...``, each branch's own (unweighted;
        ultralytics logs the ``o2o_`` ones); ``o2m_weight``, the one-to-many weight :math:`w` of this step.
        """
        self.check_batch(batch)
        if not isinstance(outputs, Mapping):
            raise _checks.fail_value("outputs", 'the dict {"one2many": levels, "one2one": levels} of the YOLO26 model',
                                     type(outputs).__name__)
        raw = {b: self.flatten(self.levels(outputs, b)) for b in YOLO26_BRANCHES}
        _, points, strides, (h, w) = raw["one2many"]
        dtype = raw["one2many"][0].dtype
        scale = jnp.asarray([w, h, w, h], dtype)
        res = yolo26_loss(
            {b: raw[b][0] for b in YOLO26_BRANCHES}, points, strides, batch["classes"],
            batch["boxes"].astype(dtype) * scale, batch["valid"],
            step=step, schedule=self.schedule(), reg_max=self.reg_max, box=self.box, cls=self.cls, dfl=self.dfl,
            score_target=self.score_target, one2many_topk=self.topk, one2one_topk=self.one2one_topk,
            one2one_topk2=self.one2one_topk2 or None, norm_eps=self.tal_norm_eps, image_size=(h, w),
        )
        metrics = {"loss": res.total, **res.terms}
        for b in YOLO26_BRANCHES:
            metrics.update({f"{_PREFIX[b]}_{k}": v for k, v in getattr(res, b).terms.items()})
        metrics["o2m_weight"] = res.weights["one2many"]
        return res.total, metrics, state

    def decode(self, outputs, *, score_threshold: float = 0.05, iou_threshold: float = 0.5,
               max_detections: int = 100) -> Detections:
        """The NMS-free decode of the one-to-one branch (``polygons`` None); see the module doc.

        Args:
          outputs: the eval-mode model's ``{"one2many", "one2one"}`` (or the one-to-one levels alone).
          score_threshold: a detection needs a score above it (ultralytics' ``conf``).
          iou_threshold: not used (no NMS); accepted for the head protocol, so a config's ``eval.iou_threshold``
            is valid with this head.
          max_detections: D, ultralytics' ``max_det``: the top-D (anchor, class) pairs of
            :func:`jaxdet.nms_free.nms_free_decode` (an anchor may appear with several classes), no cap.

        Returns:
          :class:`Detections` ``[N, D, ...]`` in decreasing score, boxes normalised; the pairs at or below
          ``score_threshold`` and the slots past the ``A`` anchors (``D > A``) are invalid and zeroed.
        """
        del iou_threshold  # NMS-free
        max_detections = _checks.positive_int(max_detections, "max_detections")
        raw, points, strides, (h, w) = self.flatten(outputs)
        top = nms_free_decode(raw, points, strides, max_det=max_detections, reg_max=self.reg_max)
        scale = jnp.asarray([w, h, w, h], top.boxes.dtype)
        valid = top.scores > score_threshold
        pad = max_detections - valid.shape[1]  # k = min(D, A)

        def fit(x):
            return jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)) if pad else x

        return Detections(
            boxes=fit(jnp.where(valid[..., None], top.boxes / scale, 0.0)),
            scores=fit(jnp.where(valid, top.scores, 0.0)),
            classes=fit(jnp.where(valid, top.labels, 0)),
            valid=fit(valid),
            polygons=None,
        )
