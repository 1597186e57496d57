"""The experiments: seed 000's Case 1 / Case 2 study and seed 003's hybrid-loss questions (glossary below).

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

**Seeds.** A seed is ``config.seed`` (the model initialisation). The data (training order,
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

The package, by purpose: :mod:`~train.experiments.registry` (scales, experiments, variants, configs),
:mod:`~train.experiments.diagnostics` (per-run measurements, through the head protocol),
:mod:`~train.experiments.runner` (training the runs, the command line) and :mod:`~train.experiments.report`
(tables and plots). Each imports only the ones before it.

Glossary: seed 000: the gradient of YOLOv1's IoU confidence target (Redmon et al., "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016); Case 1: a target computed from the predictions keeps its gradient
(``"through"``); Case 2: its gradient is stopped (``"stop"``, what every public YOLO does); seed 003: the hybrid
L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation (the ``ultralytics-mgiou`` fork, on Le et al.
2025, "Marginalized Generalized IoU (MGIoU)", arXiv 2504.16443).
"""

from train.experiments.diagnostics import polygon_prediction_stats, with_box_gradient_split
from train.experiments.registry import (
    EXPERIMENTS,
    FULL_IMAGE_AREA,
    KEPT_SCORE,
    SCALES,
    Experiment,
    Variant,
    config_key,
    resolve_config,
)
from train.experiments.runner import enable_compile_cache, main, run_experiment, run_variant

__all__ = [
    "EXPERIMENTS",
    "FULL_IMAGE_AREA",
    "KEPT_SCORE",
    "SCALES",
    "Experiment",
    "Variant",
    "config_key",
    "enable_compile_cache",
    "main",
    "polygon_prediction_stats",
    "resolve_config",
    "run_experiment",
    "run_variant",
    "with_box_gradient_split",
]
