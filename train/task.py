"""What the loop trains: the binding of a config to a jaxdet head, its model, the data and the evaluator.

:class:`Task` is the seam between the generic loop (``train.loop``) and the library; it knows no head name.
:func:`make_task` builds it from ``jaxdet.models.make_head`` and :func:`train.data.prepare_data`; tests may
pass their own :class:`Task` to ``train.loop.run``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import ml_collections
import numpy as np

from jaxdet import models
from jaxdet.metrics import coco_metrics
from train import drawing, tables
from train.data import DataConfigError, prepare_data


@dataclasses.dataclass
class Task:
    """Everything model/data specific the loop needs.

    Attributes:
      build_model: ``build_model(rngs) -> nnx.Module`` mapping images ``[N, H, W, 3]`` to outputs.
      loss_fn: ``loss_fn(outputs, batch, *, step, state) -> (loss, metrics, state)`` (jit-safe).
      train_source: random-access raw training examples (``jaxdet.data.records`` example dicts).
      val_source: random-access raw validation examples.
      init_loss_state: ``() -> loss_state`` (``{}`` when the loss has none).
      augment: optional ``augment(example, rng) -> example`` applied to training examples.
      decode_fn: optional ``decode_fn(outputs) -> jaxdet.nms.Detections`` (jit-safe).
      evaluate_fn: optional ``evaluate_fn(detections: Detections of numpy, gt: dict of numpy) -> (metrics, table,
        result)``: scalar metrics, a printable table, and the full result (``jaxdet.metrics.coco_metrics``'s,
        with ``class_names``) from which the final evaluation writes its per-class table and PR curve.
      draw_fn: optional ``draw_fn(images, detections: Detections, gt) -> uint8 image grid``.
    """

    build_model: Callable
    loss_fn: Callable
    train_source: Any
    val_source: Any
    init_loss_state: Callable[[], Any] = dict
    augment: Callable | None = None
    decode_fn: Callable | None = None
    evaluate_fn: Callable | None = None
    draw_fn: Callable | None = None


def make_head(config: ml_collections.ConfigDict):
    """The :class:`jaxdet.models.Head` of ``config`` (``model.head``, the ``loss`` section, ``train.steps``)."""

    return models.make_head(
        config.model, config.loss, num_classes=int(config.model.num_classes), total_steps=int(config.train.steps)
    )


#: optional ``eval`` fields passed to the head's ``decode`` when set (the yolov8 and yolo11 heads accept them; the
#: NMS-free yolo26 head does not).
DECODE_OPTIONS = ("multi_label", "pre_nms_top_k")


def decode_options(config: ml_collections.ConfigDict, head) -> dict[str, Any]:
    """The optional decode keywords of ``config.eval`` (``multi_label``, ``pre_nms_top_k``) that are set.

    Raises:
      ValueError: naming the field when it is set but ``head.decode`` does not take it.
    """

    accepted = inspect.signature(head.decode).parameters
    out = {}
    for name in DECODE_OPTIONS:
        value = config.eval.get(name, None)
        if value in (None, False, 0):
            continue
        if name not in accepted:
            having = [n for n, cls in models.HEADS.items() if name in inspect.signature(cls.decode).parameters]
            raise ValueError(
                f"eval.{name}={value!r}: the {config.model.head!r} head's decode has no {name} option "
                f"(heads that have it: {', '.join(having)}); remove the field"
            )
        out[name] = bool(value) if name == "multi_label" else int(value)
    return out


def make_task(config: ml_collections.ConfigDict, data=None) -> Task:
    """The default task: the head of ``config.model.head`` on the data of ``config.data``.

    Args:
      config: a config as returned by :func:`train.data.prepare_data` (``model.num_classes`` matches the data).
      data: its :class:`train.data.Data` (default: ``prepare_data(config)``).
    """

    if data is None:
        config, data = prepare_data(config)
    if int(config.model.num_classes) != data.num_classes:
        raise DataConfigError(
            f"model.num_classes={int(config.model.num_classes)} but the data has {data.num_classes} classes "
            f"{list(data.class_names)[:10]}; use the config returned by train.data.prepare_data"
        )
    head = make_head(config)
    ec = config.eval
    class_names = data.class_names

    def build_model(rngs):
        return head.build_model(config.model, rngs=rngs)

    options = decode_options(config, head)

    def decode_fn(outputs):
        return head.decode(
            outputs,
            score_threshold=float(ec.score_threshold),
            iou_threshold=float(ec.iou_threshold),
            max_detections=int(ec.max_detections),
            **options,
        )

    def evaluate_fn(detections, gt):
        result = coco_metrics(
            detections, gt, image_size=int(config.data.image_size), num_classes=data.num_classes,
            max_detections=int(ec.max_detections),
        )
        metrics = {k: float(v) for k, v in result.items() if np.ndim(v) == 0 and _is_number(v)}
        result["class_names"] = list(class_names)
        return metrics, tables.format_metrics_table(result, class_names=class_names), result

    def draw_fn(images, detections, gt):
        return drawing.draw_detections(images, detections, gt, class_names=class_names)

    return Task(
        build_model=build_model,
        loss_fn=head.loss,
        train_source=data.train_source,
        val_source=data.val_source,
        init_loss_state=head.init_state,
        augment=data.augment,
        decode_fn=decode_fn,
        evaluate_fn=evaluate_fn,
        draw_fn=draw_fn,
    )


def _is_number(v):
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False
