"""What the loop trains: the binding of a config to jaxdet's model, loss, decoder, metrics and data.

:class:`Task` is the seam between the generic loop (``train.loop``) and the library. :func:`make_task`
builds it from ``jaxdet.models`` / ``jaxdet.evaluate`` / ``jaxdet.data`` / ``jaxdet.schedules``; tests may
pass their own :class:`Task` to ``train.loop.run``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import ml_collections


@dataclasses.dataclass
class Task:
    """Everything model/data specific the loop needs.

    Attributes:
      build_model: ``build_model(rngs) -> nnx.Module`` mapping images ``[N, H, W, 3]`` to outputs.
      loss_fn: ``loss_fn(outputs, batch, *, alpha) -> (loss, metrics)`` (jit-safe).
      train_source: random-access raw training examples (``jaxdet.data.records`` example dicts).
      val_source: random-access raw validation examples.
      augment: optional ``augment(example, rng) -> example`` applied to training examples.
      loss_init: optional ``() -> loss_state``; then ``loss_fn(..., state=) -> (loss, metrics, state)``.
      alpha_fn: ``alpha_fn(step, alpha_state) -> alpha`` (jit-safe).
      alpha_init: optional ``() -> alpha_state`` (adaptive α).
      alpha_update: optional ``(alpha_state, metrics) -> alpha_state`` (adaptive α).
      decode_fn: optional ``decode_fn(outputs) -> dict of arrays [N, D, ...]`` (jit-safe).
      evaluate_fn: optional ``evaluate_fn(detections: dict of numpy, gt: dict of numpy) -> (metrics, table)``.
      draw_fn: optional ``draw_fn(images, detections, gt) -> uint8 image grid``.
    """

    build_model: Callable
    loss_fn: Callable
    train_source: Any
    val_source: Any
    augment: Callable | None = None
    loss_init: Callable | None = None
    alpha_fn: Callable = lambda step, state: 1.0
    alpha_init: Callable | None = None
    alpha_update: Callable | None = None
    decode_fn: Callable | None = None
    evaluate_fn: Callable | None = None
    draw_fn: Callable | None = None


def make_sources(config: ml_collections.ConfigDict):
    """Raw training/validation sources and the augmentation for ``config.data``."""
    d = config.data
    if d.name != "shapes":  # a COCO / VOC / YOLO folder; also sets model.num_classes from the data
        from train.data import make_file_sources

        return make_file_sources(config)
    from jaxdet.data import SyntheticShapes, make_augment

    common = dict(
        image_size=int(d.image_size),
        seed=int(d.seed),
        num_vertices=int(d.num_vertices),
        min_objects=int(d.min_objects),
        max_objects_per_image=int(d.max_objects_per_image),
    )
    train = SyntheticShapes("train", num_images=int(d.train_size), **common)
    val = SyntheticShapes("val", num_images=int(d.val_size), **common)
    augment = None
    if d.augment:
        augment = make_augment(hflip_prob=float(d.hflip_prob), scale_range=tuple(d.scale_range) or None)
    return train, val, augment


def make_alpha(config: ml_collections.ConfigDict):
    """``(alpha_fn, alpha_init, alpha_update)`` from ``config.loss.alpha``.

    ``config.loss.alpha.name`` is one of ``jaxdet.schedules.ALPHA_SCHEDULES`` or ``"adaptive"``; the other
    fields are the schedule's keywords. ``total_epochs`` <= 0 means ``train.steps`` (with
    ``steps_per_epoch=1`` a step is an epoch). For ``"adaptive"``, ``alpha_start`` is the initial α and an
    optional ``adaptive`` sub-dict holds ``jaxdet.schedules.adaptive_alpha_update`` keywords.
    """
    from jaxdet import schedules

    a = config.loss.alpha.to_dict()
    name = a.pop("name")
    if name == "adaptive":
        opts = dict(a.pop("adaptive", {}) or {})
        init_alpha = float(a.get("alpha_start", 0.9))
        l2_key = opts.pop("l2_grad_norm_key", "l2_grad_norm")
        mg_key = opts.pop("mgiou_grad_norm_key", "mgiou_grad_norm")

        def alpha_update(state, metrics):
            if l2_key not in metrics or mg_key not in metrics:
                raise ValueError(
                    f"loss.alpha.name='adaptive' needs the loss metrics {l2_key!r} and {mg_key!r}; "
                    f"the loss returned {sorted(metrics)}"
                )
            return schedules.adaptive_alpha_update(state, metrics[l2_key], metrics[mg_key], **opts)

        return (lambda step, state: state.alpha, lambda: schedules.adaptive_alpha_init(alpha=init_alpha), alpha_update)
    a.pop("adaptive", None)
    if a.get("total_epochs", 0) is None or float(a.get("total_epochs", 0)) <= 0:
        a["total_epochs"] = int(config.train.steps)
    sched = schedules.make_alpha_schedule(name, **a)
    return (lambda step, state: sched(step)), None, None


def make_task(config: ml_collections.ConfigDict) -> Task:
    """The default task: ``jaxdet.models`` detector + loss on ``jaxdet.data`` sources."""
    from jaxdet import models

    train_source, val_source, augment = make_sources(config)  # first: may set model.num_classes from the data
    num_classes = int(config.model.num_classes)
    model_cfg, loss_cfg, eval_cfg = config.model, config.loss, config.eval

    def build_model(rngs):
        return models.build_detector(model_cfg, num_classes=num_classes, rngs=rngs)

    def loss_fn(outputs, batch, *, alpha, state=None):
        return models.detection_loss(outputs, batch, model_cfg=model_cfg, loss_cfg=loss_cfg, alpha=alpha, state=state)

    def loss_init():
        return models.init_loss_state(model_cfg, loss_cfg)

    def decode_fn(outputs):
        dets = models.decode_detections(
            outputs,
            model_cfg=model_cfg,
            score_threshold=float(eval_cfg.score_threshold),
            iou_threshold=float(eval_cfg.iou_threshold),
            max_detections=int(eval_cfg.max_detections),
        )
        out = {k: getattr(dets, k) for k in ("boxes", "scores", "classes", "valid")}
        if getattr(dets, "polygons", None) is not None:
            out["polygons"] = dets.polygons
        return out

    def evaluate_fn(detections, gt):
        from jaxdet import evaluate

        result = evaluate.coco_metrics(
            evaluate.Detections(**detections), gt, image_size=int(config.data.image_size), num_classes=num_classes
        )
        metrics = {k: float(v) for k, v in result.items() if np.ndim(v) == 0 and _is_number(v)}
        return metrics, evaluate.format_metrics_table(result, class_names=_class_names(config))

    def draw_fn(images, detections, gt):
        from jaxdet import evaluate

        return evaluate.draw_detections(images, evaluate.Detections(**detections), gt, class_names=_class_names(config))

    alpha_fn, alpha_init, alpha_update = make_alpha(config)
    return Task(
        build_model=build_model,
        loss_fn=loss_fn,
        train_source=train_source,
        val_source=val_source,
        augment=augment,
        loss_init=loss_init,
        alpha_fn=alpha_fn,
        alpha_init=alpha_init,
        alpha_update=alpha_update,
        decode_fn=decode_fn,
        evaluate_fn=evaluate_fn,
        draw_fn=draw_fn,
    )


def _class_names(config):
    if config.data.name == "shapes":
        from jaxdet.data.synthetic import SHAPE_CLASSES

        return SHAPE_CLASSES
    return tuple(config.data.get("class_names", ())) or None


def _is_number(v):
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False
