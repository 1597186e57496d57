"""The loop's evaluator: the validation split decoded by a jitted, sharded forward pass and scored on the host.

:class:`Evaluator` runs every ``train.eval_every`` steps and once at the end of a run. Each call decodes
``eval.num_images`` validation images in batches of ``eval.batch_size`` (rounded to the data-axis size), with the
EMA's variables when the run keeps an EMA, and scores them with the task's ``evaluate_fn``
(:func:`jaxdet.metrics.coco_metrics` for the default task).
"""

from __future__ import annotations

import jax
import numpy as np

from jaxdet.compile_options import compiler_options
from train import batches as batches_lib
from train import mesh as mesh_lib
from train import model_state as model_state_lib
from train.mesh import to_host
from train.task import Task


class Evaluator:
    """Decodes the validation split with a jitted, sharded forward pass and scores it on the host.

    Attributes:
      enabled: False when the task has no ``decode_fn`` or no ``evaluate_fn`` (calls then return ``(None, "")``).
      batch_size: the global evaluation batch, ``eval.batch_size`` rounded down to a multiple of the data axis.
      last_result: the full result of the latest evaluation (per-class rows, PR arrays), for the final report.
      last_images: ``(images, detections, gt)`` of the first ``eval.num_plot_images`` images, when the latest
        call collected them.
    """

    def __init__(self, config, task: Task, graphdef, mesh):
        self.config = config
        self.task = task
        self.mesh = mesh
        self.last_images = None
        self.last_result = None  # the full result of the latest evaluation (per-class rows, PR arrays)
        ec = config.eval
        self.batch_size = int(ec.batch_size)
        dsize = mesh_lib.data_size(mesh)
        if self.batch_size % dsize:
            self.batch_size = max(dsize, (self.batch_size // dsize) * dsize)
        self.rows = mesh_lib.process_rows(mesh, self.batch_size)
        self.enabled = task.decode_fn is not None and task.evaluate_fn is not None
        if not self.enabled:
            return
        repl = mesh_lib.replicated(mesh)

        def predict(model_state, images):
            model = model_state_lib.merge_model(graphdef, model_state, train=False)
            return task.decode_fn(model(images))

        self._predict = jax.jit(
            predict,
            in_shardings=(repl, mesh_lib.batch_sharding(mesh)),
            out_shardings=repl,
            compiler_options=compiler_options(),
        )

    def __call__(self, state, step, *, collect_images: bool = False) -> tuple[dict[str, float] | None, str]:
        """Evaluates ``state`` (its EMA's variables when it has one): ``(scalar metrics, printable table)``, or
        ``(None, "")`` when disabled. Keeps the full result in ``last_result`` and, with ``collect_images``, the
        first images and their detections in ``last_images``."""
        if not self.enabled:
            return None, ""
        params, model_state = model_state_lib.eval_variables(state)  # the EMA's when train.ema
        variables = {"params": params, "model_state": model_state}
        dets, gts = [], []
        ec = self.config.eval
        n_plot = int(ec.get("num_plot_images", 16))
        for full, keep in batches_lib.eval_batches(
            self.task.val_source,
            num_images=int(ec.num_images),
            batch_size=self.batch_size,
            max_objects=int(self.config.data.max_objects),
        ):
            g_images = jax.make_array_from_process_local_data(
                mesh_lib.batch_sharding(self.mesh), full["image"][self.rows]
            )
            out = jax.tree.map(to_host, self._predict(variables, g_images))
            dets.append(jax.tree.map(lambda v: v[keep], out))
            gts.append({k: v[keep] for k, v in full.items()})
        det = jax.tree.map(lambda *parts: np.concatenate(parts), *dets)
        gt = {k: np.concatenate([g[k] for g in gts]) for k in gts[0]}
        metrics, table, self.last_result = self.task.evaluate_fn(det, gt)
        if collect_images:
            n = min(n_plot, len(gt["image"]))
            self.last_images = (gt["image"][:n], jax.tree.map(lambda v: v[:n], det), {k: v[:n] for k, v in gt.items()})
        return metrics, table
