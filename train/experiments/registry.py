"""The experiments' registry: scales, experiments and their variants, and how a variant becomes a config.

See :mod:`train.experiments` for the experiments and how to run them.

Seeds and Cases: see the glossary of :mod:`train.experiments`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from typing import Any, Mapping

import ml_collections

from train import cli

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
    """A short hash of the resolved config (identical runs share a work directory). ``compile_cache`` changes no
    result and is left out."""
    if "compile_cache" in config:
        config = config.copy_and_resolve_references()
        with config.unlocked():
            del config["compile_cache"]
    text = config.to_json_best_effort(sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text.encode("ascii", "replace").decode())
    return "_".join(p for p in keep.split("_") if p)[:40]
