"""The YOLO26 end-to-end loss: the one-to-many and one-to-one branches, each a YOLOv8 loss, weighted by a schedule.

ultralytics' ``E2ELoss`` (pinned: 8.4.190) in JAX. YOLO26's head has two copies of its branches; both see the same
targets, and each is scored by :func:`jaxdet.losses.yolov8.yolov8_loss` with ``reg_max = 1`` (raw ``ltrb``
distances and the L1 term instead of DFL):

- **one-to-many**: ``topk = 10``, YOLOv8's assignment (many positives per object, dense gradients);
- **one-to-one**: ``topk = 7, topk2 = 1``: the assignment keeps, per object, only the positive of largest
  alignment metric (:func:`jaxdet.tal.task_aligned_assign`'s ``topk2``), so this branch learns to fire once per
  object and its top-k needs no NMS (:func:`jaxdet.nms_free.nms_free_decode`).

.. math::
   L = w(s)\\, L_{\\mathrm{o2m}} + \\max(1 - w(s), 0)\\, L_{\\mathrm{o2o}}

with :math:`w` the one-to-many weight at training step :math:`s`, from an optax schedule: by default
:func:`jaxdet.schedules.one2many_weight` (ultralytics' linear decay 0.8 → 0.1 over the epochs, held within an
epoch), or any ``step -> w`` function (``optax.constant_schedule(0.5)``, a cosine, ...). Each term of the result
is the same combination of the branches' terms (ultralytics' loss vector), and both branches are returned whole.

**Batch size.** As :func:`jaxdet.losses.yolov8.yolov8_loss`: no factor ``B``. ``B * total`` is the sum of
ultralytics' ``E2ELoss`` loss vector; its logged items are the one-to-one branch's terms
(``result.one2one.terms``).

**Gradient paths and pluggable terms.** ``score_target`` (Case 1/Case 2), ``cls_loss``, ``box_loss`` and
``harmonic`` (with their keyword arguments) apply to both branches alike; see :mod:`jaxdet.losses.yolov8`. The
one-to-one branch of the network runs on detached features (the head's business, not the loss's): here each
branch's outputs get the gradient of their own weighted term only.

References:
  ultralytics 8.4.190 ``ultralytics/utils/loss.py`` (``E2ELoss``, ``v8DetectionLoss``, ``BboxLoss``),
  ``ultralytics/utils/tal.py`` (``TaskAlignedAssigner`` with ``topk2``), ``ultralytics/cfg/models/26/yolo26.yaml``.
  Wang et al., "YOLOv10: Real-Time End-to-End Object Detection", NeurIPS 2024 (consistent dual assignments).

Glossary: Case 1: a target computed from the predictions keeps its gradient (``"through"``); Case 2: its gradient is
stopped (``"stop"``, what every public YOLO does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxdet import _checks
from jaxdet.gradients import GradientPath
from jaxdet.losses.yolov8 import YoloV8Loss, yolov8_loss
from jaxdet.schedules import one2many_weight

__all__ = ["YOLO26_BRANCHES", "Yolo26Loss", "yolo26_loss", "yolo26_branch_weights"]

YOLO26_BRANCHES: tuple[str, ...] = ("one2many", "one2one")


class Yolo26Loss(NamedTuple):
    """Result of :func:`yolo26_loss`.

    Attributes:
      total: scalar, ``w · one2many.total + (1 − w) · one2one.total`` (the ``(1 − w)`` clipped at 0).
      terms: ``{"box", "cls", "l1"}`` (``"dfl"`` with ``reg_max > 1``), each the same weighted combination of the
        branches' gain-scaled terms.
      weights: ``{"one2many": w, "one2one": max(1 − w, 0)}``, scalars.
      one2many, one2one: each branch's :class:`jaxdet.losses.yolov8.YoloV8Loss` (unweighted terms and targets).
    """

    total: jax.Array
    terms: dict[str, jax.Array]
    weights: dict[str, jax.Array]
    one2many: YoloV8Loss
    one2one: YoloV8Loss


def yolo26_branch_weights(
    step: jax.typing.ArrayLike = 0, schedule: Callable[[jax.Array], jax.Array] | None = None
) -> dict[str, jax.Array]:
    """``{"one2many": w, "one2one": max(1 − w, 0)}`` with ``w = schedule(step)``.

    Args:
      step: the training step (an int or a traced integer scalar).
      schedule: ``step -> w``, an ``optax.Schedule``; ``None`` is :func:`jaxdet.schedules.one2many_weight` with
        its defaults (100 epochs of one step each: the step counts epochs, as ultralytics' ``E2ELoss.updates``).

    Returns:
      the two weights, scalars.
    """
    if schedule is None:
        schedule = one2many_weight()
    elif not callable(schedule):
        raise _checks.fail_value("schedule", "a step -> weight function (an optax.Schedule) or None", schedule)
    step = _checks.array(step, "step", ndim=0, shape="[] (a scalar step)")
    w = jnp.asarray(schedule(step))
    if w.ndim != 0:
        raise _checks.fail_shape("schedule", "a scalar weight per step", w)
    return {"one2many": w, "one2one": jnp.maximum(1 - w, 0)}


def yolo26_loss(
    outputs: Mapping[str, jax.Array | Sequence[jax.Array]],
    anchor_points: jax.Array,
    anchor_strides: jax.Array,
    gt_labels: jax.Array,
    gt_boxes: jax.Array,
    valid: jax.Array,
    *,
    step: jax.typing.ArrayLike = 0,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    reg_max: int = 1,
    box: float = 7.5,
    cls: float = 0.5,
    dfl: float = 1.5,
    score_target: GradientPath = "stop",
    cls_loss: Literal["bce", "varifocal", "quality_focal", "focal"] = "bce",
    box_loss: Literal["ciou", "giou", "diou", "harmonic_iou"] = "ciou",
    harmonic: GradientPath | None = None,
    cls_loss_kwargs: dict | None = None,
    box_loss_kwargs: dict | None = None,
    one2many_topk: int = 10,
    one2one_topk: int = 7,
    one2one_topk2: int | None = 1,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
    min_gt_side: float = 16.0,
    gt_chunk_size: int | None = None,
    norm_eps: float | None = None,
    image_size: tuple[float, float] | None = None,
) -> Yolo26Loss:
    """YOLO26's end-to-end loss (ultralytics ``E2ELoss``) from the raw outputs of both branches; see the module doc.

    .. math:: L = w\\, L_{\\mathrm{o2m}} + \\max(1 - w, 0)\\, L_{\\mathrm{o2o}},\\qquad w = \\mathrm{schedule}(s)

    Args:
      outputs: ``{"one2many": ..., "one2one": ...}``, each the raw outputs of one branch as
        :func:`jaxdet.losses.yolov8.yolov8_loss` takes them: ``[B, A, 4·reg_max + C]`` or one
        ``[B, H, W, 4·reg_max + C]`` map per level (with ``reg_max = 1``: 4 ``ltrb`` distances in grid units, then
        ``C`` class logits).
      anchor_points: ``[A, 2]`` grid-unit anchor points (:func:`jaxdet.tal.make_anchor_points`).
      anchor_strides: ``[A]`` the stride of each anchor.
      gt_labels: ``[B, G]`` int classes.
      gt_boxes: ``[B, G, 4]`` xyxy GT boxes in pixels, padded to ``G``.
      valid: ``[B, G]`` bool, False for padding.
      step: the training step at which ``schedule`` is read (an int or a traced integer scalar).
      schedule: ``step -> w`` (an ``optax.Schedule``), the one-to-many weight; ``None`` is
        :func:`jaxdet.schedules.one2many_weight` with its defaults, where the step counts epochs (build it with
        ``total_epochs`` and ``steps_per_epoch`` to count optimizer steps).
      reg_max: 1 (YOLO26); more gives DFL branches, as an end-to-end YOLOv8 would have.
      box, cls, dfl: the gains (7.5, 0.5, 1.5; ``dfl`` weights the L1 term with ``reg_max = 1``).
      score_target, cls_loss, box_loss, harmonic, cls_loss_kwargs, box_loss_kwargs: of
        :func:`jaxdet.losses.yolov8.yolov8_loss`, for both branches.
      one2many_topk: the one-to-many assigner's ``topk`` (10).
      one2one_topk, one2one_topk2: the one-to-one assigner's ``topk`` and ``topk2`` (7 and 1).
      alpha, beta, eps, min_gt_side, gt_chunk_size, norm_eps: of :func:`jaxdet.tal.task_aligned_assign`, both
        branches.
      image_size: ``(H, W)`` in pixels for the L1 term; ``None`` takes it from per-level outputs (required with
        ``[B, A, no]`` outputs and ``reg_max = 1``).

    Returns:
      :class:`Yolo26Loss` ``(total, terms, weights, one2many, one2one)``, not multiplied by the batch size.
    """
    if not isinstance(outputs, Mapping):
        raise _checks.fail_value("outputs", 'a mapping {"one2many": ..., "one2one": ...} of raw outputs',
                                 type(outputs).__name__)
    _checks.keys_present(outputs, YOLO26_BRANCHES, "outputs")
    _checks.keys_known(outputs, YOLO26_BRANCHES, "outputs")
    weights = yolo26_branch_weights(step, schedule)
    common = dict(
        reg_max=reg_max, box=box, cls=cls, dfl=dfl, score_target=score_target, cls_loss=cls_loss, box_loss=box_loss,
        harmonic=harmonic, cls_loss_kwargs=cls_loss_kwargs, box_loss_kwargs=box_loss_kwargs, alpha=alpha, beta=beta,
        eps=eps, min_gt_side=min_gt_side, gt_chunk_size=gt_chunk_size, norm_eps=norm_eps, image_size=image_size,
    )
    args = (anchor_points, anchor_strides, gt_labels, gt_boxes, valid)
    one2many = yolov8_loss(outputs["one2many"], *args, topk=one2many_topk, **common)
    one2one = yolov8_loss(outputs["one2one"], *args, topk=one2one_topk, topk2=one2one_topk2, **common)
    w_many, w_one = (weights[name].astype(one2many.total.dtype) for name in YOLO26_BRANCHES)
    terms = {name: w_many * one2many.terms[name] + w_one * one2one.terms[name] for name in one2many.terms}
    return Yolo26Loss(
        total=w_many * one2many.total + w_one * one2one.total,
        terms=terms,
        weights=weights,
        one2many=one2many,
        one2one=one2one,
    )
