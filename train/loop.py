"""The training loop: ``run(config, workdir)``.

One process per host; every process runs this same loop over the same global mesh. Per step: this
process materialises its rows of the global batch (``train.data``), the rows become one global array
(``jax.make_array_from_process_local_data``), and the jitted step (``train.step``) updates the replicated,
donated state. Metrics go to ``metrics.jsonl`` + TensorBoard, checkpoints to ``<workdir>/checkpoints``
(resumed automatically), plots to ``<workdir>/plots``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from jaxdet.compile_options import compiler_options
from train import checkpoint as ckpt_lib
from train import batches as batches_lib
from train import data as data_lib
from train import eval_report
from train import mesh as mesh_lib
from train import metrics_log
from train import plots
from train import step as step_lib
from train import model_state as model_state_lib
from train.task import Task, make_task


def to_host(x) -> np.ndarray:
    """A replicated (possibly multi-process) array as numpy."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


class NonFiniteTrainingError(RuntimeError):
    """``train.max_consecutive_nonfinite`` steps in a row had a non-finite loss or gradients."""


class _StopFlag:
    """Set by SIGTERM or SIGINT (Ctrl-C); all processes agree on it before acting.

    The first signal asks the loop to save a checkpoint after the current step and exit; a second SIGINT exits
    at once (status 130) without saving.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.signal_name = None
        self._previous = {}

    def install(self):
        def handler(signum, frame):
            if self.requested and signum == signal.SIGINT:
                print("second SIGINT: exiting now, without saving", file=sys.stderr, flush=True)
                os._exit(130)
            self.requested = True
            self.signal_name = signal.Signals(signum).name

        try:
            self._previous = {s: signal.signal(s, handler) for s in self.SIGNALS}
        except ValueError:  # not the main thread
            self._previous = {}
        return self

    def uninstall(self):
        for s, previous in self._previous.items():
            signal.signal(s, previous)

    def agreed(self) -> bool:
        if jax.process_count() == 1:
            return self.requested
        flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
        return bool(np.any(flags))


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


def _config_json(config) -> Any:
    try:
        return json.loads(config.to_json_best_effort())
    except Exception:  # pragma: no cover - best effort only
        return str(config)


def run(
    config: ml_collections.ConfigDict, workdir: str, *, task: Task | None = None, return_state: bool = False
) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and returns a summary dict.

    The summary holds ``final_step``, ``compile_s``, ``images_per_sec``, ``eval`` (final metrics),
    ``stopped`` (True when SIGTERM ended the run early) and ``resumed_from``; with ``return_state`` also
    ``state`` (the final train state) and ``graphdef`` (the model's, for ``train.model_state.merge_model``).
    """
    t_start = time.perf_counter()
    is_main = jax.process_index() == 0
    if task is None:
        config, data = data_lib.prepare_data(config, workdir)
        task = make_task(config, data)
    if is_main:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(_config_json(config), f, indent=2)

    mesh = mesh_lib.make_mesh(config.mesh.shape, config.mesh.axes)
    tc = config.train
    total_steps = int(tc.steps)
    global_bs = int(tc.batch_size)
    rows = mesh_lib.process_rows(mesh, global_bs)
    _log(
        f"devices: {jax.device_count()} ({jax.devices()[0].platform}) in {jax.process_count()} process(es); "
        f"mesh {dict(mesh.shape)}; global batch {global_bs}"
    )

    # A cached synthetic split (or a folder's data.cache="ram") is filled in the background from here on: during
    # the model's initialisation, the checkpoint restore and the first step's compile, the CPU is mostly idle.
    # (The run's length decides; a resumed run's cache starts empty too.)
    filler = batches_lib.CacheFiller.start(task.train_source, examples_to_read=total_steps * global_bs,
                                        num_workers=int(config.data.get("num_workers", 0)))
    if filler is not None:
        verb = "decoding" if getattr(task.train_source, "records", None) is not None else "generating"
        _log(f"data: {verb} the {len(task.train_source)} training images in the background (kept in memory)")
    recipe, graphdef, init_fn = step_lib.make_recipe_init_fn(
        tc, task.build_model, seed=int(config.seed), init_loss_state=task.init_loss_state
    )
    _log(f"recipe: {recipe.description}")
    repl = mesh_lib.replicated(mesh)
    state_shapes = jax.eval_shape(init_fn)

    batches = batches_lib.make_train_batches(
        str(config.data.get("loader", "grain")),
        task.train_source,
        global_batch_size=global_bs,
        seed=int(config.data.seed),
        rows=rows,
        augment=task.augment,
        max_objects=int(config.data.max_objects),
        num_threads=int(config.data.get("num_threads", 2)),
        prefetch=int(config.data.get("prefetch", 8)),
        num_workers=int(config.data.get("num_workers", 0)),
    )
    checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=int(tc.keep_checkpoints))
    restored = checkpointer.restore_latest(step_lib.abstract_state(state_shapes, mesh), log=_log)
    latest = None if restored is None else restored[0]
    if restored is not None:
        _, state, meta = restored
        saved_bs = meta.get("data", {}).get("global_batch_size")
        if saved_bs is not None and saved_bs != global_bs:
            raise ValueError(
                f"the checkpoint in {checkpointer.directory} was written with train.batch_size="
                f"{saved_bs}; this run has {global_bs} (the data position would not match)"
            )
        batches.set_state(meta["data"])
        _log(
            f"resumed from {checkpointer.directory} step {latest} "
            f"(written on {meta.get('device_count')} device(s), {meta.get('process_count')} process(es))"
        )
    else:
        state = jax.jit(init_fn, out_shardings=repl)()
    dropped = batches_lib.DroppedBoxes(mesh, restored[2].get("dropped_boxes", 0) if restored is not None else 0)
    start_step = int(to_host(state["step"]))
    if batches.get_state()["step"] != start_step:
        raise RuntimeError(f"data position {batches.get_state()} does not match the state's step {start_step}")
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state["params"]))
    _log(f"model: {n_params:,} parameters; steps {start_step} -> {total_steps}")

    def meta_for(step: int) -> dict[str, Any]:
        return {
            "step": int(step),
            "data": batches.get_state(),
            "dropped_boxes": dropped.total(),
            "process_count": jax.process_count(),
            "device_count": jax.device_count(),
            "mesh": {k: int(v) for k, v in mesh.shape.items()},
            "config": _config_json(config),
            "time": time.time(),
        }

    writer = metrics_log.MetricWriter(workdir, enabled=is_main)
    evaluator = _Evaluator(config, task, graphdef, mesh)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(
            graphdef,
            loss_fn=task.loss_fn,
            tx=recipe.tx,
            lr_schedule=recipe.schedules["lr"],
            schedules=recipe.schedules,
            accumulate=recipe.accumulate,
            grad_scale=recipe.grad_scale,
            ema=recipe.ema,
        ),
        mesh,
    )

    summary: dict[str, Any] = {
        "resumed_from": latest,
        "stopped": False,
        "compile_s": None,
        "images_per_sec": None,
        "eval": None,
    }
    stop = _StopFlag().install()

    def fetch(step):
        assert batches.get_state()["step"] == step
        local = batches.next()
        if step == 0 and is_main and "boxes" in local:  # plots/train_batch.png: the first batch after augmentation
            plots.plot_train_batch(local, os.path.join(workdir, "plots", "train_batch.png"), title="training batch 0",
                                   class_names=getattr(task.train_source, "class_names", None))
        batch = mesh_lib.global_batch(mesh, local)
        dropped.add(batch)
        return batch

    step = start_step
    try:
        if step < total_steps:
            batch = fetch(step)
            t0 = time.perf_counter()
            options = compiler_options()
            compiled = train_step.lower(state, batch).compile(options)
            compile_s = time.perf_counter() - t0
            summary["compile_s"] = compile_s
            _log(f"first-step compile: {compile_s:.2f} s (compiler options {options or 'default'})")
        pbar = None
        if is_main and tc.get("progress_bar", True):
            from tqdm import tqdm

            pbar = tqdm(
                total=total_steps,
                initial=start_step,
                desc="train",
                dynamic_ncols=True,
                file=sys.stdout,
                mininterval=0.5,
            )
        log_every = max(int(tc.log_every), 1)
        max_nonfinite = int(tc.get("max_consecutive_nonfinite", 10))
        t_first_done = None
        excluded = 0.0  # eval/checkpoint time not counted in images/s
        t_log = time.perf_counter()
        steps_since_log = 0
        data_wait_s = 0.0  # steady state: time the loop waited for the loader
        while step < total_steps:
            if step != start_step:
                batch = fetch(step)
            state, metrics = compiled(state, batch)
            step += 1
            steps_since_log += 1
            if float(to_host(metrics["skipped"])):  # one scalar a step: name every skipped step
                run_length = int(to_host(state["nonfinite_run"]))
                terms = ", ".join(f"{k}={float(to_host(v)):.4g}" for k, v in sorted(metrics.items()))
                _log(f"step {step}: non-finite loss or gradients, update skipped ({run_length} in a row; params, "
                     f"optimizer, model and loss state unchanged): {terms}")
                if run_length >= max_nonfinite:
                    checkpointer.save(step, state, meta_for(step))
                    raise NonFiniteTrainingError(
                        f"{run_length} consecutive steps with a non-finite loss or gradients, the last at step "
                        f"{step}; saved the last good parameters (unchanged since step {step - run_length}) at step "
                        f"{step} in {checkpointer.directory}. Lower train.learning_rate, set train.grad_clip, or "
                        f"check the data (train.max_consecutive_nonfinite={max_nonfinite})"
                    )
            if t_first_done is None:
                jax.block_until_ready(state["step"])
                t_first_done = time.perf_counter()
                t_log = t_first_done
                steps_since_log = 0
                batches.stats.take()  # the loader's counters start with the steady state
                summary["first_step_s"] = t_first_done - t0
            last = step == total_steps
            if step % log_every == 0 or last:
                host = {k: float(to_host(v)) for k, v in metrics.items()}
                host["dropped_boxes"] = dropped.total()  # objects augmentation removed so far
                now = time.perf_counter()
                loader = batches.stats.take()  # the loader's own images/s and the loop's wait for it
                if steps_since_log:
                    host["images_per_sec"] = steps_since_log * global_bs / max(now - t_log, 1e-9)
                    host.update(loader)
                    data_wait_s += loader["data_wait_s"]
                t_log, steps_since_log = now, 0
                writer.write("train", step, host)
                if pbar is not None:
                    post = {"loss": f"{host['loss']:.4f}"}
                    if "alpha" in host:
                        post["alpha"] = f"{host['alpha']:.3f}"
                    if "images_per_sec" in host:
                        post["img/s"] = f"{host['images_per_sec']:.0f}"
                    if "loader_images_per_sec" in host:
                        post["loader img/s"] = f"{host['loader_images_per_sec']:.0f}"
                    if host["dropped_boxes"]:
                        post["dropped"] = host["dropped_boxes"]
                    pbar.set_postfix(post, refresh=False)
            if pbar is not None:
                pbar.update(1)
            t_pause = time.perf_counter()
            if int(tc.eval_every) > 0 and step % int(tc.eval_every) == 0 and not last:
                ev, _ = evaluator(state, step)
                if ev is not None:
                    writer.write("eval", step, ev)
                    if pbar is not None:
                        pbar.write(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in ev.items()))
            if int(tc.checkpoint_every) > 0 and step % int(tc.checkpoint_every) == 0 and not last:
                checkpointer.save(step, state, meta_for(step))
            if stop.agreed():
                _log(f"{stop.signal_name}: saving a checkpoint at step {step} (Ctrl-C again exits at once, without "
                     "saving)")
                checkpointer.save(step, state, meta_for(step))
                summary["stopped"] = True
                if pbar is not None:
                    pbar.close()
                    pbar = None
                _log(f"{stop.signal_name}: saved checkpoint at step {step} in {checkpointer.directory}; exiting.")
                break
            if t_first_done is not None:
                excluded += time.perf_counter() - t_pause
                t_log += time.perf_counter() - t_pause
        if pbar is not None:
            pbar.close()
        if t_first_done is not None and step - start_step > 1:
            jax.block_until_ready(state["step"])
            span = time.perf_counter() - t_first_done - excluded
            summary["images_per_sec"] = (step - start_step - 1) * global_bs / max(span, 1e-9)
            summary["data_wait_s"] = data_wait_s
            _log(
                f"steady-state throughput: {summary['images_per_sec']:.1f} images/s "
                f"({(step - start_step - 1)} steps after the first, {span:.1f} s, {data_wait_s:.1f} s of it "
                "waiting for the loader)"
            )
        checkpointer.save(step, state, meta_for(step))
        summary["final_step"] = step
        if not summary["stopped"]:
            ev, table = evaluator(state, step, collect_images=True)
            if ev is not None:
                writer.write("eval", step, ev)
                summary["eval"] = ev
                _log(f"final evaluation at step {step}:\n{table}")
                if is_main:
                    eval_report.write_report(workdir, evaluator.last_result, step=step)
                if is_main and evaluator.last_images is not None and task.draw_fn is not None:
                    images, dets, gt = evaluator.last_images
                    shown = dets._replace(
                        valid=dets.valid & (dets.scores >= float(config.eval.get("plot_score_threshold", 0.3)))
                    )
                    grid = task.draw_fn(images, shown, gt)
                    if grid is not None:
                        os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
                        plots.save_image(
                            grid,
                            os.path.join(workdir, "plots", "val_predictions.png"),
                            title=f"validation predictions, step {step}",
                        )
            writer.flush()
            if is_main:
                plots.plot_history(metrics_log.read_history(writer.path), os.path.join(workdir, "plots"))
                written = [os.path.join(d, f) for d in ("plots", "eval") if os.path.isdir(os.path.join(workdir, d))
                           for f in sorted(os.listdir(os.path.join(workdir, d)))]
                _log("plots and evaluation files: " + ", ".join(written))
        summary["wall_s"] = time.perf_counter() - t_start
        if is_main:
            with open(os.path.join(workdir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2, default=float)
            if summary["compile_s"] is not None:
                writer.write("info", step, {k: v for k, v in summary.items() if isinstance(v, (int, float))})
        if return_state:
            summary["state"], summary["graphdef"] = state, graphdef
        return summary
    finally:
        stop.uninstall()
        if filler is not None:
            filler.stop()
        batches.close()
        writer.close()
        checkpointer.close()


class _Evaluator:
    """Decodes the validation split with a jitted, sharded forward pass and scores it on the host."""

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

    def __call__(self, state, step, *, collect_images: bool = False):
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
