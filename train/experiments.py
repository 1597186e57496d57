"""The experiments of issue 6: seed 000's Case 1 / Case 2 study and seed 003's hybrid-loss questions.

Usage::

    python -m train.experiments list                         # the registry
    python -m train.experiments case_study                   # small scale (2-core CPU), default seeds
    python -m train.experiments static_alpha --seeds 3
    python -m train.experiments all --scale large            # GPU: more steps, images, a bigger batch
    python -m train.experiments pure_losses --steps 200      # override the scale's step count

Every experiment is a list of *variants* (config overrides on top of ``configs/yolov1_shapes.py`` or
``configs/polygon_hybrid.py``), each trained for every seed with ``train.loop.run``. Runs live in
``--workdir`` (default ``workdir/experiments``) under a name that includes a hash of the resolved config, so
an identical run (e.g. the default hybrid, used by three experiments) is trained once and reused; ``--force``
retrains. The experiment writes ``<out>/<name>.md`` (the results table, the exact command, the scale),
``<out>/<name>.json`` (every per-run number the table is made of) and ``<out>/<name>_*.png`` (plots); ``--out``
defaults to ``docs/experiments``.

**Seeds.** A seed is ``config.seed`` (model initialisation and the step RNG). The data (training order,
augmentation and the validation images) is the same for every seed (``data.seed = 0``), so the spread is
the spread over initialisations.

**What is recorded per run** besides the loop's own ``metrics.jsonl`` / ``summary.json``:

- yolov1 head (the case study): the loss function handed to the loop is wrapped
  (:func:`with_box_gradient_split`) so that every step also logs how the gradient with respect to the
  *box coordinates* of the activated head output (``x, y, sqrt_w, sqrt_h`` of every predictor, the layout of
  :func:`jaxdet.losses.yolo.yolov1_loss`) splits between the loss terms: one ``jax.vjp`` of the five terms
  (:func:`jaxdet.gradients.term_gradients`) on the training batch, restricted to the box channels. Keys
  ``boxgrad_<term>`` (norms), ``boxgrad_coord`` (coord_xy + coord_wh), ``boxgrad_obj_share``
  = ‖g_obj‖ / (‖g_coord‖ + ‖g_obj‖) and ``boxgrad_cos_obj_coord``. The wrapped loss returns the same loss
  value and gradient (the diagnostics are computed on ``stop_gradient`` outputs).
- polygon head: :func:`polygon_prediction_stats` on the final model over the validation images: the
  predictions at the ground-truth cells (the cells the loss trains) and the kept detections (score ≥ 0.3):
  how many are *near-full-image*, i.e. the bounding box of the predicted polygon, clipped to the image,
  covers more than 80 % of the image area (the synthetic objects cover at most 25 %), plus the mean exact
  convex IoU of the cell polygons with their ground truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import ml_collections

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: a polygon whose clipped bounding box covers more than this fraction of the image is "near-full-image".
FULL_IMAGE_AREA = 0.8
#: detections at or above this score count as kept predictions (as in the loop's prediction plot).
KEPT_SCORE = 0.3

# --------------------------------------------------------------------------------------------------------------
# scales
# --------------------------------------------------------------------------------------------------------------

#: ``--scale`` presets: config overrides (dotted) applied before the variant's own, plus the default seed count.
SCALES: dict[str, dict[str, Any]] = {
    # For tests: a few steps of a tiny model on 32-px images.
    "tiny": {
        "seeds": 1,
        "overrides": {
            "data.image_size": 32,
            "model.grid_size": 4,
            "model.widths": (8, 16),
            "model.depths": (0, 0),
            "model.head_width": 16,
            "data.train_size": 64,
            "data.val_size": 16,
            "eval.num_images": 16,
            "eval.batch_size": 8,
            "eval.max_detections": 8,
            "train.batch_size": 8,
            "train.steps": 6,
            "train.warmup_steps": 1,
            "train.log_every": 1,
            "train.eval_every": 0,
            "train.checkpoint_every": 0,
            "train.keep_checkpoints": 1,
            "train.progress_bar": False,
        },
    },
    # The 2-core CPU: the default model and data, fewer steps than `python -m train` (1000).
    "small": {
        "seeds": 3,
        "overrides": {
            "train.steps": 500,
            "train.warmup_steps": 50,
            "train.log_every": 10,
            "train.eval_every": 0,
            "train.checkpoint_every": 0,
            "train.keep_checkpoints": 1,
            "train.progress_bar": False,
            "eval.num_images": 256,
        },
    },
    # One GPU: 4x the data, a bigger batch, 10x the steps of small.
    "large": {
        "seeds": 5,
        "overrides": {
            "data.train_size": 16384,
            "data.val_size": 512,
            "eval.num_images": 512,
            "train.batch_size": 64,
            "train.steps": 3000,
            "train.warmup_steps": 200,
            "train.log_every": 25,
            "train.eval_every": 0,
            "train.checkpoint_every": 1000,
            "train.keep_checkpoints": 1,
            "train.progress_bar": False,
        },
    },
}

# --------------------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """One configuration of an experiment.

    Attributes:
      name: short label used in tables (e.g. ``"alpha=0.3"``).
      base: config module under ``configs/`` (``"yolov1_shapes"`` or ``"polygon_hybrid"``).
      overrides: dotted field -> value. A dict value replaces a whole section (e.g. ``"loss.alpha"``); a
        callable value is called with the config (after the scale's overrides) and its result is set.
    """

    name: str
    base: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named experiment: its variants, the question it answers and how its table is made."""

    name: str
    title: str
    question: str
    variants: tuple[Variant, ...]
    report: str  # "case_study" | "polygon" | "cosine" | "degeneration" | "adaptive"
    seeds: int | None = None  # default seed count at small scale (None: the scale's)


def _alpha(**fields) -> dict[str, Any]:
    return dict(fields)


def _exp_steps_per_epoch(config) -> int:
    """Seed 003's exponential schedule is per epoch; here an "epoch" is 1 % of training (100 epochs in all)."""
    return max(1, int(config.train.steps) // 100)


_HYBRID_DEFAULT = Variant("cosine 0.9→0.2 (default)", "polygon_hybrid")
_PURE_L2 = Variant("pure L2 (α=1)", "polygon_hybrid", {"loss.alpha": _alpha(name="static", alpha=1.0)})
_PURE_MGIOU = Variant("pure MGIoU (α=0)", "polygon_hybrid", {"loss.alpha": _alpha(name="static", alpha=0.0)})


def _registry() -> dict[str, Experiment]:
    exps = [
        Experiment(
            name="case_study",
            title="Seed 000: YOLOv1 Case 1 (IoU target through) vs Case 2 (IoU target detached)",
            question=(
                "Does letting the confidence term's IoU target carry gradient into the box coordinates (Case 1) "
                "train a better detector than detaching it (Case 2, darknet and every public YOLO)? How does the "
                "box-coordinate gradient split between the coordinate terms and the confidence term?"
            ),
            variants=(
                Variant("Case 1 (through)", "yolov1_shapes", {"loss.iou_target": "through"}),
                Variant("Case 2 (stop)", "yolov1_shapes", {"loss.iou_target": "stop"}),
            ),
            report="case_study",
        ),
        Experiment(
            name="static_alpha",
            title="Seed 003, experiment 1: static hybrid α ∈ {0.1, 0.3, 0.5, 0.7, 0.9}",
            question="Is there a fixed L2 weight α that beats the others, and does a mix beat the pure losses?",
            variants=tuple(
                Variant(f"α={a}", "polygon_hybrid", {"loss.alpha": _alpha(name="static", alpha=a)})
                for a in (0.1, 0.3, 0.5, 0.7, 0.9)
            ),
            report="polygon",
        ),
        Experiment(
            name="dynamic_alpha",
            title="Seed 003, experiment 2: dynamic α schedules",
            question="Do L2-first-then-MGIoU schedules beat a static α (experiment 1)? Which shape is best?",
            variants=(
                Variant(
                    "linear 1→0",
                    "polygon_hybrid",
                    {"loss.alpha": _alpha(name="linear", alpha_start=1.0, alpha_end=0.0, transition_fraction=1.0,
                                          per_epoch=False)},
                ),
                Variant(
                    "cosine 1→0.2",
                    "polygon_hybrid",
                    {"loss.alpha": _alpha(name="cosine", alpha_start=1.0, alpha_end=0.2, transition_fraction=0.7,
                                          per_epoch=False)},
                ),
                Variant(
                    "step 0.9/0.3",
                    "polygon_hybrid",
                    {"loss.alpha": _alpha(name="step", alpha_before=0.9, alpha_after=0.3, boundary_fraction=0.5)},
                ),
                Variant(
                    "exponential 0.9·e^(−0.05·epoch)",
                    "polygon_hybrid",
                    {
                        "loss.alpha": _alpha(name="exponential", alpha_start=0.9, rate=0.05, per_epoch=False,
                                             steps_per_epoch=1),
                        "loss.alpha.steps_per_epoch": _exp_steps_per_epoch,
                    },
                ),
            ),
            report="polygon",
            seeds=1,
        ),
        Experiment(
            name="two_stage",
            title="Seed 003, experiment 3: two-stage (pure L2, then pure MGIoU), stage-1 share ∈ {50, 70, 90} %",
            question="Does a hard switch from L2 to MGIoU work, and how long should the L2 stage be?",
            variants=tuple(
                Variant(
                    f"stage 1 = {int(f * 100)} %",
                    "polygon_hybrid",
                    {"loss.alpha": _alpha(name="two_stage", switch_fraction=f, alpha_first=1.0, alpha_second=0.0)},
                )
                for f in (0.5, 0.7, 0.9)
            ),
            report="polygon",
            seeds=1,
        ),
        Experiment(
            name="adaptive_alpha",
            title="Seed 003, experiment 4: adaptive α from the MGIoU/L2 gradient-norm ratio",
            question=(
                "Does α chosen from the gradient-norm ratio (0.9 if r<0.01, 0.3 if r>0.1, else 0.7; EMA + "
                "hysteresis) match or beat the hand-made cosine schedule?"
            ),
            variants=(
                Variant("adaptive", "polygon_hybrid", {"loss.alpha": _alpha(name="adaptive", alpha_start=0.9)}),
                _HYBRID_DEFAULT,
            ),
            report="adaptive",
            seeds=1,
        ),
        Experiment(
            name="normalization",
            title="Normalisation of the two hybrid terms: none vs loss_ema (seed 003's heuristic) vs grad_norm",
            question=(
                "Does rescaling the terms help? loss_ema divides each loss by an EMA of its own value (a loss "
                "rescaling); grad_norm scales each term's gradient w.r.t. the vertices to unit norm."
            ),
            variants=(
                Variant("none", "polygon_hybrid", {"loss.normalization": "none"}),
                Variant("loss_ema", "polygon_hybrid", {"loss.normalization": "loss_ema"}),
                Variant("grad_norm", "polygon_hybrid", {"loss.normalization": "grad_norm"}),
            ),
            report="polygon",
        ),
        Experiment(
            name="grad_cosine",
            title="Seed 003, question 1: cosine similarity of the L2 and MGIoU gradients over training",
            question=(
                "Seed 003 states the two gradients (w.r.t. the predicted vertices) have cosine similarity 0.5–0.8. "
                "Read from the metrics every run logs (grad_cosine)."
            ),
            variants=(_HYBRID_DEFAULT, _PURE_L2, _PURE_MGIOU),
            report="cosine",
            seeds=1,
        ),
        Experiment(
            name="pure_losses",
            title="Pure MGIoU (α=0) vs pure L2 (α=1): do predictions get stuck at full-image boxes?",
            question=(
                "Seed 003: MGIoU alone gets stuck with full-image boxes (a weak-gradient plateau). Count the "
                f"predicted polygons whose clipped bounding box covers > {FULL_IMAGE_AREA:.0%} of the image."
            ),
            variants=(_PURE_MGIOU, _PURE_L2, _HYBRID_DEFAULT),
            report="degeneration",
            seeds=1,
        ),
    ]
    return {e.name: e for e in exps}


EXPERIMENTS: dict[str, Experiment] = _registry()

# --------------------------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------------------------


def _load_base(base: str) -> ml_collections.ConfigDict:
    if _REPO_ROOT not in sys.path:
        sys.path.insert(0, _REPO_ROOT)
    from train import cli

    config, _ = cli.load_config(base)
    return config


def _set(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = config
    for i, part in enumerate(parts[:-1]):
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            raise ValueError(f"override {dotted!r}: no config section {'.'.join(parts[: i + 1])!r}")
        node = node[part]
    leaf = parts[-1]
    if callable(value):
        value = value(config)
    if isinstance(value, Mapping):
        node[leaf] = ml_collections.ConfigDict(dict(value))
        return
    if leaf not in node:
        raise ValueError(f"override {dotted!r}: unknown field {leaf!r} (fields: {sorted(node.keys())})")
    current = node[leaf]
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    node[leaf] = value


def resolve_config(
    variant: Variant, *, scale: str = "small", seed: int = 0, steps: int | None = None
) -> ml_collections.ConfigDict:
    """The full config of one run: base config, then the scale's overrides, ``steps``, the variant's, the seed."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    config = _load_base(variant.base)
    for dotted, value in SCALES[scale]["overrides"].items():
        _set(config, dotted, value)
    if steps is not None:
        _set(config, "train.steps", int(steps))
        _set(config, "train.warmup_steps", min(int(config.train.warmup_steps), max(1, int(steps) // 10)))
    for dotted, value in variant.overrides.items():
        _set(config, dotted, value)
    config.seed = int(seed)
    return config


def config_key(config: ml_collections.ConfigDict) -> str:
    """A short hash of the resolved config (identical runs share a work directory)."""
    text = config.to_json_best_effort(sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text.encode("ascii", "replace").decode())
    return "_".join(p for p in keep.split("_") if p)[:40]


# --------------------------------------------------------------------------------------------------------------
# per-run diagnostics
# --------------------------------------------------------------------------------------------------------------


def with_box_gradient_split(loss_fn: Callable, config: ml_collections.ConfigDict) -> Callable:
    """Wraps a yolov1 ``loss_fn`` so its metrics also hold the per-term split of the box-coordinate gradient.

    The extra metrics are computed on ``stop_gradient(outputs)`` (they change neither the loss nor its
    gradient): with ``pred = yolov1_activate(outputs)`` and the five batch-mean terms of
    :func:`jaxdet.losses.yolo.yolov1_loss` (same ``iou_target`` and λ as the training loss),
    :func:`jaxdet.gradients.term_gradients` gives each term's gradient w.r.t. ``pred``; it is restricted to the
    ``x, y, sqrt_w, sqrt_h`` channels of every predictor. Keys: ``boxgrad_<term>`` for the five terms,
    ``boxgrad_coord`` (norm of coord_xy + coord_wh), ``boxgrad_obj_share`` = ‖g_obj‖ / (‖g_coord‖ + ‖g_obj‖),
    ``boxgrad_cos_obj_coord`` (cosine of g_obj and g_coord), ``boxgrad_cos_total_coord`` and
    ``conf_below_iou_frac``: the fraction of responsible predictors whose confidence C is below its IoU target
    (read off the sign of ∂obj/∂C = 2(C − IoU)); there Case 1's confidence term pushes the IoU *down* towards C.
    """
    import jax
    import jax.numpy as jnp

    from jaxdet import gradients
    from jaxdet.losses.yolo import yolov1_loss
    from jaxdet.models.heads import yolov1_activate

    nb, nc = int(config.model.num_boxes), int(config.model.num_classes)
    kw = dict(
        num_boxes=nb,
        num_classes=nc,
        lambda_coord=float(config.loss.lambda_coord),
        lambda_noobj=float(config.loss.lambda_noobj),
        iou_target=str(config.loss.iou_target),
    )
    depth = nb * 5 + nc
    box_channels = [b * 5 + i for b in range(nb) for i in range(4)]

    def terms_fn(pred, boxes, classes, valid):
        res = yolov1_loss(pred, boxes, classes, valid, **kw)
        return {k: jnp.mean(v) for k, v in res.terms.items()}

    def wrapped(outputs, batch, *, alpha, **kwargs):
        out = loss_fn(outputs, batch, alpha=alpha, **kwargs)
        metrics = dict(out[1])
        mask = jnp.zeros((depth,), outputs.dtype).at[jnp.asarray(box_channels)].set(1.0)
        pred = yolov1_activate(jax.lax.stop_gradient(outputs), num_boxes=nb, num_classes=nc)
        _, grads = gradients.term_gradients(terms_fn, pred, batch["boxes"], batch["classes"], batch["valid"])
        g_conf = grads["obj"][..., jnp.asarray([b * 5 + 4 for b in range(nb)])]  # dobj/dC = 2(C - IoU)·w
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
        metrics = jax.lax.stop_gradient(metrics)
        return (out[0], metrics, *out[2:])

    return wrapped


def polygon_prediction_stats(config, task, state, *, graphdef) -> dict[str, float]:
    """Near-full-image counts and cell polygon IoU of a trained polygon model on the validation images.

    Returns:
      ``gt_cells`` (number of ground-truth cells), ``gt_cells_full_image`` (of them, predicted polygons whose
      clipped bounding box covers > :data:`FULL_IMAGE_AREA` of the image), ``gt_cells_full_image_frac``,
      ``gt_cells_box_full_image`` (the same for the box head's box), ``cell_polygon_iou`` (mean exact convex
      IoU of the cell's polygon with its ground truth), ``cell_bbox_area_median`` (median clipped bbox area of
      the cell polygons, image fraction), ``gt_bbox_area_median`` and ``kept`` / ``kept_full_image`` /
      ``kept_full_image_frac`` for the detections with score ≥ :data:`KEPT_SCORE` after NMS.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdet.assign import yolov1_grid_assign
    from jaxdet.models.heads import polygon_outputs
    from jaxdet.polygons import convex_polygon_iou
    from train import data as data_lib
    from train import step as step_lib

    k, c, s = int(config.model.num_vertices), int(config.model.num_classes), int(config.model.grid_size)
    model_state = {key: state[key] for key in ("params", "rest") if key in state}

    @jax.jit
    def forward(model_state, images, boxes, classes, valid, polygons):
        model = step_lib.merge_model(graphdef, model_state)
        raw = model(images)
        out = polygon_outputs(raw, num_vertices=k, num_classes=c)
        tg = yolov1_grid_assign(boxes, classes, valid, grid_size=s)
        idx = jnp.maximum(tg.gt_index, 0).reshape(raw.shape[0], s * s)
        tgt = jnp.take_along_axis(polygons, idx[..., None, None], axis=-3).reshape(raw.shape[0], s, s, k, 2)
        iou = convex_polygon_iou(out.vertices, tgt)
        clipped = jnp.clip(out.vertices, 0.0, 1.0)
        wh = jnp.max(clipped, axis=-2) - jnp.min(clipped, axis=-2)
        poly_area = wh[..., 0] * wh[..., 1]
        bclip = jnp.clip(out.boxes, 0.0, 1.0)
        box_area = (bclip[..., 2] - bclip[..., 0]) * (bclip[..., 3] - bclip[..., 1])
        twh = jnp.max(tgt, axis=-2) - jnp.min(tgt, axis=-2)
        dets = task.decode_fn(raw)
        dclip = jnp.clip(dets["polygons"], 0.0, 1.0)
        dwh = jnp.max(dclip, axis=-2) - jnp.min(dclip, axis=-2)
        return {
            "has": tg.has_object,
            "iou": iou,
            "poly_area": poly_area,
            "box_area": box_area,
            "gt_area": twh[..., 0] * twh[..., 1],
            "kept": dets["valid"] & (dets["scores"] >= KEPT_SCORE),
            "kept_area": dwh[..., 0] * dwh[..., 1],
        }

    acc: dict[str, list] = {key: [] for key in ("iou", "poly_area", "box_area", "gt_area", "kept_area")}
    for full, keep in data_lib.eval_batches(
        task.val_source,
        num_images=int(config.eval.num_images),
        batch_size=int(config.eval.batch_size),
        max_objects=int(config.data.max_objects),
    ):
        out = jax.device_get(
            forward(model_state, full["image"], full["boxes"], full["classes"], full["valid"], full["polygons"])
        )
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


# --------------------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------------------

#: train-history keys kept in a run record (the full history stays in the run's metrics.jsonl).
_HISTORY_KEYS = (
    "loss", "alpha", "lr", "grad_norm", "coord_xy", "coord_wh", "obj", "noobj", "cls", "box", "poly", "l2", "mgiou",
    "l2_grad_norm", "mgiou_grad_norm", "grad_cosine", "boxgrad_coord", "boxgrad_obj", "boxgrad_noobj",
    "boxgrad_cls", "boxgrad_coord_xy", "boxgrad_coord_wh", "boxgrad_obj_share", "boxgrad_cos_obj_coord",
    "boxgrad_cos_total_coord", "conf_below_iou_frac", "l2_scale", "mgiou_scale",
)


def run_variant(
    variant: Variant,
    seed: int,
    *,
    scale: str = "small",
    steps: int | None = None,
    root: str = os.path.join("workdir", "experiments"),
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains one (variant, seed) (or reuses an identical finished run) and returns its record."""
    config = resolve_config(variant, scale=scale, seed=seed, steps=steps)
    key = config_key(config)
    workdir = os.path.join(root, f"{variant.base}-{_slug(variant.name)}-s{seed}-{key}")
    record_path = os.path.join(workdir, "record.json")
    if not force:
        # An identical config may have been trained under another variant's name (same hash): reuse it.
        import glob

        found = [record_path] if os.path.exists(record_path) else sorted(
            glob.glob(os.path.join(glob.escape(root), f"{variant.base}-*-s{seed}-{key}", "record.json"))
        )
        if found:
            with open(found[0]) as f:
                record = json.load(f)
            record["variant"] = variant.name
            log(f"  reuse {variant.name!r} seed {seed}: {os.path.dirname(found[0])}")
            return record
    if force and os.path.isdir(workdir):
        import shutil

        shutil.rmtree(workdir)

    from train import loop
    from train import metrics_log
    from train import step as step_lib
    from train.task import make_task

    task = make_task(config)
    if config.model.head == "yolov1":
        task = dataclasses.replace(task, loss_fn=with_box_gradient_split(task.loss_fn, config))
    log(f"  train {variant.name!r} seed {seed} ({int(config.train.steps)} steps) -> {workdir}")
    t0 = time.perf_counter()
    summary = loop.run(config, workdir, task=task, return_state=True)
    state = summary.pop("state")
    extras: dict[str, Any] = {}
    if config.model.head == "polygon":
        tx, _ = step_lib.make_optimizer(config.train)
        graphdef, _ = step_lib.make_init_fn(task.build_model, tx, seed=int(config.seed))
        extras = polygon_prediction_stats(config, task, state, graphdef=graphdef)
    history = metrics_log.read_history(os.path.join(workdir, "metrics.jsonl"))
    train_hist = [
        {k: r[k] for k in ("step", *_HISTORY_KEYS) if isinstance(r.get(k), (int, float))}
        for r in history.get("train", [])
    ]
    record = {
        "variant": variant.name,
        "base": variant.base,
        "seed": int(seed),
        "scale": scale,
        "steps": int(config.train.steps),
        "config_key": key,
        "workdir": os.path.abspath(workdir),
        "eval": summary.get("eval") or {},
        "extras": extras,
        "wall_s": time.perf_counter() - t0,
        "compile_s": summary.get("compile_s"),
        "images_per_sec": summary.get("images_per_sec"),
        "train": train_hist,
    }
    with open(record_path, "w") as f:
        json.dump(record, f, default=float)
    ev = record["eval"]
    log(
        f"  done {variant.name!r} seed {seed} in {record['wall_s']:.0f} s: "
        + ", ".join(f"{k}={ev[k]:.4f}" for k in ("mAP", "mAP50", "polygon_mIoU", "segm_mAP50") if k in ev)
    )
    return record


def run_experiment(
    name: str,
    *,
    scale: str = "small",
    seeds: int | None = None,
    steps: int | None = None,
    root: str = os.path.join("workdir", "experiments"),
    out: str = os.path.join("docs", "experiments"),
    force: bool = False,
    command: str | None = None,
    variants: Sequence[str] | None = None,
    doc: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs every variant × seed of experiment ``name`` and writes its table, JSON and plots into ``out``.

    ``variants`` restricts the run to the named variants (default: all). ``doc``: a markdown file whose
    ``<!-- table:NAME -->`` block is refreshed with the new table (see
    :func:`train.experiment_report.update_doc`).

    Returns:
      ``{"markdown": str, "paths": [written files], "records": [run records]}``.
    """
    from train import experiment_report

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    exp = EXPERIMENTS[name]
    if variants is not None:
        unknown = set(variants) - {v.name for v in exp.variants}
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)} of {name!r}; known: {[v.name for v in exp.variants]}")
        exp = dataclasses.replace(exp, variants=tuple(v for v in exp.variants if v.name in set(variants)))
    n_seeds = seeds if seeds is not None else (exp.seeds if (exp.seeds is not None and scale == "small") else
                                               SCALES[scale]["seeds"])
    if scale == "tiny" and seeds is None:
        n_seeds = 1
    t0 = time.perf_counter()
    log(f"experiment {name}: {len(exp.variants)} variant(s) x {n_seeds} seed(s), scale {scale}")
    records = [
        run_variant(v, s, scale=scale, steps=steps, root=root, force=force, log=log)
        for v in exp.variants
        for s in range(n_seeds)
    ]
    meta = {
        "experiment": name,
        "title": exp.title,
        "question": exp.question,
        "scale": scale,
        "seeds": n_seeds,
        "steps": records[0]["steps"] if records else None,
        "command": command or f"python -m train.experiments {name} --scale {scale} --seeds {n_seeds}"
        + (f" --steps {steps}" if steps is not None else ""),
        "wall_s": time.perf_counter() - t0,
        "variants": [v.name for v in exp.variants],
    }
    result = experiment_report.write_report(exp.report, meta, records, out)
    if doc is not None:
        experiment_report.update_doc(doc, out)
    log(result["markdown"])
    return {**result, "records": records}


def enable_compile_cache(path: str) -> None:
    """JAX's persistent compilation cache: runs that differ only in the seed compile once."""
    import jax

    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m train.experiments", description="Run the issue-6 experiments (see the module doc)."
    )
    parser.add_argument("name", help="an experiment name, 'all', or 'list'")
    parser.add_argument("--scale", default="small", choices=sorted(SCALES))
    parser.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: per experiment/scale)")
    parser.add_argument("--steps", type=int, default=None, help="override the scale's train.steps")
    parser.add_argument("--workdir", default=os.path.join("workdir", "experiments"), help="root of the run dirs")
    parser.add_argument("--out", default=os.path.join("docs", "experiments"), help="where tables/plots go")
    parser.add_argument("--force", action="store_true", help="retrain even if an identical run exists")
    parser.add_argument(
        "--doc", default=os.path.join("docs", "EXPERIMENTS.md"),
        help="refresh this file's <!-- table:NAME --> block ('' to skip)",
    )
    parser.add_argument("--variants", nargs="+", default=None, help="only these variants (names as in 'list')")
    parser.add_argument(
        "--no-compile-cache", action="store_true", help="do not use JAX's persistent compilation cache (<workdir>/xla_cache)"
    )
    args = parser.parse_args(argv)
    if args.name == "list":
        for exp in EXPERIMENTS.values():
            print(f"{exp.name:16s} {exp.title}")
            for v in exp.variants:
                print(f"{'':18s}- {v.name}")
        return
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    for n in names:
        if n not in EXPERIMENTS:
            parser.error(f"unknown experiment {n!r}; known: {', '.join(EXPERIMENTS)}, all, list")
    if _REPO_ROOT not in sys.path:
        sys.path.insert(0, _REPO_ROOT)
    if not args.no_compile_cache:
        enable_compile_cache(os.path.join(args.workdir, "xla_cache"))
    for n in names:
        cmd = " ".join(["python -m train.experiments", n, *(argv if argv is not None else sys.argv[1:])[1:]])
        run_experiment(
            n,
            scale=args.scale,
            seeds=args.seeds,
            steps=args.steps,
            root=args.workdir,
            out=args.out,
            force=args.force,
            command=cmd,
            variants=args.variants,
            doc=args.doc or None,
        )


if __name__ == "__main__":
    main()
