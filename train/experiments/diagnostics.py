"""Per-run diagnostics of the experiments, through the head protocol (no head layout is re-derived here).

- :func:`instrument` and :func:`final_stats` pick the diagnostics of the run's head:
- :func:`with_box_gradient_split` (YOLOv1 head): every step also logs how the gradient w.r.t. the box
  coordinates splits between the loss terms.
- :func:`polygon_prediction_stats` (polygon head): near-full-image predictions and cell polygon IoU of a
  trained model on the validation images.

Seeds and Cases: see the glossary of :mod:`train.experiments`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import gradients
from jaxdet.models import PolygonHead, YOLOv1Head
from jaxdet.polygons import convex_polygon_iou
from train import batches as batches_lib
from train import data as data_lib
from train import model_state as model_state_lib
from train.experiments.registry import FULL_IMAGE_AREA, KEPT_SCORE


def instrument(task, head):
    """The task whose loss also logs the head's per-step diagnostics (YOLOv1: the box-gradient split)."""
    if isinstance(head, YOLOv1Head):
        return dataclasses.replace(task, loss_fn=with_box_gradient_split(task.loss_fn, head))
    return task


def final_stats(config, task, head, state, *, graphdef) -> dict[str, Any]:
    """The head's measurements of the trained model (polygon: :func:`polygon_prediction_stats`; else none)."""
    if isinstance(head, PolygonHead):
        return polygon_prediction_stats(config, task, head, state, graphdef=graphdef)
    return {}

def with_box_gradient_split(loss_fn: Callable, head) -> Callable:
    """Wraps a YOLOv1 ``loss_fn`` so its metrics also hold the per-term split of the box-coordinate gradient.

    The extra metrics are computed on ``stop_gradient(outputs)`` (they change neither the loss nor its
    gradient): with ``pred = head.activate(outputs)`` and the five batch-mean terms of ``head.loss_terms``
    (:func:`jaxdet.losses.yolo.yolov1_loss` with the head's ``iou_target`` and λ),
    :func:`jaxdet.gradients.term_gradients` gives each term's gradient w.r.t. ``pred``; it is restricted to the
    head's ``box_channels`` (``x, y, sqrt_w, sqrt_h`` of every predictor). Keys: ``boxgrad_<term>`` for the five
    terms, ``boxgrad_coord`` (norm of coord_xy + coord_wh), ``boxgrad_obj_share`` = ‖g_obj‖ / (‖g_coord‖ +
    ‖g_obj‖), ``boxgrad_cos_obj_coord`` (cosine of g_obj and g_coord), ``boxgrad_cos_total_coord`` and
    ``conf_below_iou_frac``: the fraction of responsible predictors whose confidence C is below its IoU target
    (read off the sign of ∂obj/∂C = 2(C − IoU)); there Case 1's confidence term pushes the IoU *down* towards C.

    Args:
      loss_fn: ``(outputs, batch, *, step, state) -> (loss, metrics, state)``.
      head: the :class:`jaxdet.models.YOLOv1Head` of the run.
    """


    box_channels = jnp.asarray(head.box_channels)
    confidence_channels = jnp.asarray(head.confidence_channels)

    def wrapped(outputs, batch, *, step, state):
        loss, metrics, state = loss_fn(outputs, batch, step=step, state=state)
        metrics = dict(metrics)
        mask = jnp.zeros((head.channels,), outputs.dtype).at[box_channels].set(1.0)
        pred = head.activate(jax.lax.stop_gradient(outputs))
        _, grads = gradients.term_gradients(lambda p: head.loss_terms(p, batch), pred)
        g_conf = grads["obj"][..., confidence_channels]  # dobj/dC = 2(C - IoU)·w
        responsible = g_conf != 0
        metrics["conf_below_iou_frac"] = jnp.sum(responsible & (g_conf < 0)) / jnp.maximum(jnp.sum(responsible), 1)
        grads = {k: v * mask for k, v in grads.items()}
        norms = gradients.gradient_norms(grads)
        coord = grads["coord_xy"] + grads["coord_wh"]
        total = sum(grads.values())
        g_coord = gradients.safe_global_norm(coord)
        for name, value in norms.items():
            metrics[f"boxgrad_{name}"] = value
        metrics["boxgrad_coord"] = g_coord
        metrics["boxgrad_obj_share"] = norms["obj"] / jnp.maximum(g_coord + norms["obj"], 1e-30)
        metrics["boxgrad_cos_obj_coord"] = gradients.gradient_cosine(grads["obj"], coord)
        metrics["boxgrad_cos_total_coord"] = gradients.gradient_cosine(total, coord)
        return loss, jax.lax.stop_gradient(metrics), state

    return wrapped


def polygon_prediction_stats(config, task, head, state, *, graphdef) -> dict[str, float]:
    """Near-full-image counts and cell polygon IoU of a trained polygon model on the validation images.

    Args:
      config: the run's config (``eval`` and ``data.max_objects``).
      task: its :class:`train.task.Task` (validation source, ``decode_fn``).
      head: its :class:`jaxdet.models.PolygonHead` (``outputs`` and ``cell_targets`` views).
      state: the train state; graphdef: the model's graph definition.

    Returns:
      ``gt_cells`` (number of ground-truth cells), ``gt_cells_full_image`` (of them, predicted polygons whose
      clipped bounding box covers > :data:`FULL_IMAGE_AREA` of the image), ``gt_cells_full_image_frac``,
      ``gt_cells_box_full_image`` (the same for the box head's box), ``cell_polygon_iou`` (mean exact convex
      IoU of the cell's polygon with its ground truth), ``cell_bbox_area_median`` (median clipped bbox area of
      the cell polygons, image fraction), ``gt_bbox_area_median`` and ``kept`` / ``kept_full_image`` /
      ``kept_full_image_frac`` for the detections with score ≥ :data:`KEPT_SCORE` after NMS.
    """


    model_state = {key: state[key] for key in ("params", "model_state")}

    @jax.jit
    def forward(model_state, batch):
        model = model_state_lib.merge_model(graphdef, model_state, train=False)
        raw = model(batch["image"])
        out = head.outputs(raw)
        assignment, tgt = head.cell_targets(batch)
        iou = convex_polygon_iou(out.vertices, tgt)
        clipped = jnp.clip(out.vertices, 0.0, 1.0)
        wh = jnp.max(clipped, axis=-2) - jnp.min(clipped, axis=-2)
        poly_area = wh[..., 0] * wh[..., 1]
        bclip = jnp.clip(out.boxes, 0.0, 1.0)
        box_area = (bclip[..., 2] - bclip[..., 0]) * (bclip[..., 3] - bclip[..., 1])
        twh = jnp.max(tgt, axis=-2) - jnp.min(tgt, axis=-2)
        dets = task.decode_fn(raw)
        dclip = jnp.clip(dets.polygons, 0.0, 1.0)
        dwh = jnp.max(dclip, axis=-2) - jnp.min(dclip, axis=-2)
        return {
            "has": assignment.has_object,
            "iou": iou,
            "poly_area": poly_area,
            "box_area": box_area,
            "gt_area": twh[..., 0] * twh[..., 1],
            "kept": dets.valid & (dets.scores >= KEPT_SCORE),
            "kept_area": dwh[..., 0] * dwh[..., 1],
        }

    acc: dict[str, list] = {key: [] for key in ("iou", "poly_area", "box_area", "gt_area", "kept_area")}
    for full, keep in batches_lib.eval_batches(
        task.val_source,
        num_images=int(config.eval.num_images),
        batch_size=int(config.eval.batch_size),
        max_objects=data_lib.max_objects(config),
    ):
        batch = {k: full[k] for k in ("image", "boxes", "classes", "valid", "polygons")}
        out = jax.device_get(forward(model_state, batch))
        has = np.asarray(out["has"]) & keep[:, None, None]
        for key in ("iou", "poly_area", "box_area", "gt_area"):
            acc[key].append(np.asarray(out[key])[has])
        kept = np.asarray(out["kept"]) & keep[:, None]
        acc["kept_area"].append(np.asarray(out["kept_area"])[kept])
    cat = {key: np.concatenate(v) if v else np.zeros((0,)) for key, v in acc.items()}
    n = int(cat["poly_area"].size)
    n_kept = int(cat["kept_area"].size)
    full_cells = int(np.sum(cat["poly_area"] > FULL_IMAGE_AREA))
    full_kept = int(np.sum(cat["kept_area"] > FULL_IMAGE_AREA))
    return {
        "gt_cells": n,
        "gt_cells_full_image": full_cells,
        "gt_cells_full_image_frac": full_cells / max(n, 1),
        "gt_cells_box_full_image": int(np.sum(cat["box_area"] > FULL_IMAGE_AREA)),
        "cell_polygon_iou": float(np.mean(cat["iou"])) if n else float("nan"),
        "cell_bbox_area_median": float(np.median(cat["poly_area"])) if n else float("nan"),
        "gt_bbox_area_median": float(np.median(cat["gt_area"])) if n else float("nan"),
        "kept": n_kept,
        "kept_full_image": full_kept,
        "kept_full_image_frac": full_kept / max(n_kept, 1),
    }
