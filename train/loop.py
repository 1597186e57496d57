"""The training loop: ``run(config, workdir)``.

One process per host; every process runs this same loop over the same global mesh. Per step: this
process materialises its rows of the global batch (``train.batches``), the rows become one global array
(``jax.make_array_from_process_local_data``), and the jitted step (``train.step``) updates the replicated,
donated state. Metrics go to ``metrics.jsonl`` + TensorBoard, checkpoints to ``<workdir>/checkpoints``
(resumed automatically), plots to ``<workdir>/plots``.

:func:`run` reads in sections: the task (:func:`_prepare_task`), the setup (:func:`_setup`: mesh, data,
state from a checkpoint or fresh, writers, evaluator, jitted step), the steps (:func:`_train`, one step's
bookkeeping in :func:`_after_step`), the final evaluation and its files (:func:`_final_evaluation`) and
the run's summary (:func:`_write_summary`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from jaxdet.compile_options import compiler_options
from train import batches as batches_lib
from train import checkpoint as ckpt_lib
from train import compile_cache, eval_report, init_weights, metrics_log, plots, tables
from train import data as data_lib
from train import freeze as freeze_lib
from train import mesh as mesh_lib
from train import step as step_lib
from train import workdir as workdir_lib
from train.evaluator import Evaluator
from train.mesh import to_host
from train.task import Task, make_task


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
    config, task = _prepare_task(config, workdir, task)
    r = _setup(config, workdir, task)
    summary: dict[str, Any] = {
        "resumed_from": r.latest,
        "stopped": False,
        "compile_s": None,
        "images_per_sec": None,
        "eval": None,
    }
    stop = _StopFlag().install()
    try:
        state, step = _train(r, stop, summary)
        r.checkpointer.save(step, state, r.meta_for(step))
        summary["final_step"] = step
        if not summary["stopped"]:
            _final_evaluation(r, state, step, summary)
        summary["wall_s"] = time.perf_counter() - t_start
        _write_summary(r, step, summary)
        if return_state:
            summary["state"], summary["graphdef"] = state, r.graphdef
        return summary
    finally:
        stop.uninstall()
        r.close()


# --------------------------------------------------------------------------------------------------- setup


def _prepare_task(config: ml_collections.ConfigDict, workdir: str, task: Task | None):
    """``(config, task)``: the data resolved (:func:`train.data.prepare_data`) and the default task built unless
    ``task`` is given; process 0 writes ``config.json`` in ``workdir``.

    A workdir with checkpoints is checked first (:mod:`train.workdir`): a config that differs from its
    ``config.json`` in a field that is not safe to change raises ``WorkdirConfigError``; safe changes go to
    ``config_history.jsonl`` and ``config.json`` is kept. ``train.resume=False`` moves the previous run aside."""
    if not bool(config.train.get("resume", True)):
        moved = workdir_lib.move_previous_run(workdir) if jax.process_index() == 0 else None
        _sync("previous run moved aside")
        if moved:
            _log(f"train.resume=False: moved the previous run to {moved}; training from step 0")
    data = None
    if task is None:
        config, data = data_lib.prepare_data(config, workdir)
    else:  # the task brings its sources; data.max_objects is resolved from the config's data section
        config = data_lib.with_object_slots(config, data_lib.object_slots(config, data_lib.resolve_data_config(config)))
    changes = workdir_lib.check_resume(workdir, _config_json(config))  # before the model is built
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        if changes is None:
            with open(os.path.join(workdir, "config.json"), "w") as f:
                json.dump(_config_json(config), f, indent=2)
        else:
            workdir_lib.record_changes(workdir, changes)
    shown = {k: v for k, v in (changes or {}).items() if k != "train.resume"}
    if shown:
        _log("config changes on resume (recorded in config_history.jsonl; config.json keeps the checkpoints'): "
             + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in shown.items()))
    if task is None:
        task = make_task(config, data)
    return config, task


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


@dataclasses.dataclass
class _Run:
    """What the sections of :func:`run` share: the built pieces of the run and the state to start from."""

    config: ml_collections.ConfigDict
    workdir: str
    task: Task
    mesh: jax.sharding.Mesh
    total_steps: int
    global_bs: int
    filler: batches_lib.CacheFiller | None
    graphdef: Any
    batches: Any  # train.batches.StepBatcher or LoaderBatches
    checkpointer: ckpt_lib.Checkpointer
    state: Any  # the restored or initial train state, until the steps take it (the step donates it)
    latest: int | None  # the restored checkpoint's step
    start_step: int
    dropped: batches_lib.DroppedBoxes
    writer: metrics_log.MetricWriter
    evaluator: Evaluator
    train_step: Callable

    @property
    def is_main(self) -> bool:
        return jax.process_index() == 0

    def meta_for(self, step: int) -> dict[str, Any]:
        """The checkpoint's metadata at ``step``: the data position, dropped boxes, the job's layout, the config."""
        return {
            "step": int(step),
            "data": self.batches.get_state(),
            "dropped_boxes": self.dropped.total(),
            "process_count": jax.process_count(),
            "device_count": jax.device_count(),
            "mesh": {k: int(v) for k, v in self.mesh.shape.items()},
            "config": _config_json(self.config),
            "time": time.time(),
        }

    def fetch(self, step: int) -> dict[str, jax.Array]:
        """The global batch of ``step``; the first batch of a run is drawn to ``plots/train_batch.png``."""
        assert self.batches.get_state()["step"] == step
        local = self.batches.next()
        if step == 0 and self.is_main and "boxes" in local:  # the first batch after augmentation
            plots.plot_train_batch(local, os.path.join(self.workdir, "plots", "train_batch.png"),
                                   title="training batch 0",
                                   class_names=getattr(self.task.train_source, "class_names", None))
        batch = mesh_lib.global_batch(self.mesh, local)
        self.dropped.add(batch)
        return batch

    def close(self) -> None:
        """Stops the cache filler and closes the batches, the metric writer and the checkpointer."""
        if self.filler is not None:
            self.filler.stop()
        self.batches.close()
        self.writer.close()
        self.checkpointer.close()


def _setup(config: ml_collections.ConfigDict, workdir: str, task: Task) -> _Run:
    """The mesh, the training data (with its background cache filler), the train state restored from the latest
    checkpoint or initialised, the metric writer, the evaluator and the jitted train step."""
    mesh = mesh_lib.make_mesh(config.mesh.shape, config.mesh.axes)
    tc = config.train
    total_steps = int(tc.steps)
    global_bs = int(tc.batch_size)
    rows = mesh_lib.process_rows(mesh, global_bs)
    _log(
        f"devices: {jax.device_count()} ({jax.devices()[0].platform}) in {jax.process_count()} process(es); "
        f"mesh {dict(mesh.shape)}; global batch {global_bs}"
    )
    filler = _start_cache_filler(config, task, examples_to_read=total_steps * global_bs)
    build_model = freeze_lib.with_frozen_batchnorms(task.build_model, tc.get("freeze", ""))  # train.freeze
    recipe, graphdef, init_fn = step_lib.make_recipe_init_fn(
        tc, build_model, seed=int(config.seed), init_loss_state=task.init_loss_state
    )
    _log(f"recipe: {recipe.description}")
    state_shapes = jax.eval_shape(init_fn)
    batches = _train_batches(config, task, global_bs=global_bs, rows=rows)
    checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=int(tc.keep_checkpoints))
    state, latest, meta = _restore_or_init(checkpointer, batches, init_fn, state_shapes, mesh, global_bs=global_bs,
                                           config=config, build_model=task.build_model)
    dropped = batches_lib.DroppedBoxes(mesh, meta.get("dropped_boxes", 0) if meta is not None else 0)
    start_step = int(to_host(state["step"]))
    if batches.get_state()["step"] != start_step:
        raise RuntimeError(f"data position {batches.get_state()} does not match the state's step {start_step}")
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state["params"]))
    _log(f"model: {n_params:,} parameters; steps {start_step} -> {total_steps}")
    writer = metrics_log.MetricWriter(workdir, enabled=jax.process_index() == 0)
    evaluator = Evaluator(config, task, graphdef, mesh)
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
    return _Run(
        config=config, workdir=workdir, task=task, mesh=mesh, total_steps=total_steps, global_bs=global_bs,
        filler=filler, graphdef=graphdef, batches=batches, checkpointer=checkpointer, state=state, latest=latest,
        start_step=start_step, dropped=dropped, writer=writer, evaluator=evaluator, train_step=train_step,
    )


def _start_cache_filler(config, task: Task, *, examples_to_read: int) -> batches_lib.CacheFiller | None:
    """Starts filling a cached training split in the background (None when there is nothing to fill).

    A cached synthetic split (or a folder's data.cache="ram") is filled in the background from here on: during
    the model's initialisation, the checkpoint restore and the first step's compile, the CPU is mostly idle.
    (The run's length decides; a resumed run's cache starts empty too.)
    """
    filler = batches_lib.CacheFiller.start(task.train_source, examples_to_read=examples_to_read,
                                           num_workers=int(config.data.get("num_workers", 0)))
    if filler is not None:
        verb = "decoding" if getattr(task.train_source, "records", None) is not None else "generating"
        _log(f"data: {verb} the {len(task.train_source)} training images in the background (kept in memory)")
    return filler


def _train_batches(config, task: Task, *, global_bs: int, rows: np.ndarray):
    """This process's rows of the training batches (:func:`train.batches.make_train_batches`) from step 0."""
    return batches_lib.make_train_batches(
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


def _restore_or_init(checkpointer, batches, init_fn, state_shapes, mesh, *, global_bs: int, config=None,
                     build_model=None):
    """``(state, step, meta)`` of the latest checkpoint, with the batches moved to its data position, or
    ``(initial state, None, None)`` when there is none: the fresh state, with ``model.init``'s weights
    (:mod:`train.init_weights`) when ``config`` sets it. A resumed run says that it ignored ``model.init``.

    Raises:
      ValueError: when the checkpoint was written with another ``train.batch_size``.
      train.init_weights.InitWeightsError: ``model.init`` cannot initialise this model (before any compile).
    """
    restored = checkpointer.restore_latest(step_lib.abstract_state(state_shapes, mesh), log=_log)
    init = init_weights.init_path(config) if config is not None else ""
    if restored is None:
        source = init_weights.load_checked(config, build_model) if init else None  # bad input: before compiling
        state = jax.jit(init_fn, out_shardings=mesh_lib.replicated(mesh))()
        if source is not None:
            state = init_weights.init_from_config(config, build_model, state, source, log=_log)
            state = jax.device_put(state, mesh_lib.replicated(mesh))
        return state, None, None
    latest, state, meta = restored
    if init:
        _log(f"model.init={init!r} ignored: the run resumes from its own checkpoint (step {latest}); model.init "
             "applies only when a run starts")
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
    return state, latest, meta


# --------------------------------------------------------------------------------------------------- steps


@dataclasses.dataclass
class _Clock:
    """The loop's timing: images/s between logs and over the steady state (after the first step), without the
    time spent in evaluations and checkpoints."""

    t0: float | None = None  # before the first step's compile
    first_done: float | None = None  # when the first step finished
    log: float = 0.0  # the last log (moved forward by pauses)
    steps_since_log: int = 0
    excluded: float = 0.0  # eval/checkpoint time not counted in images/s
    data_wait_s: float = 0.0  # steady state: time the loop waited for the loader


def _train(r: _Run, stop: _StopFlag, summary: dict[str, Any]) -> tuple[Any, int]:
    """Runs the steps from ``r.start_step`` to ``train.steps`` (compiling the step on the first batch); stops early
    on a signal (after saving). Returns the final state and step; sets the summary's timings."""
    tc = r.config.train
    state, r.state = r.state, None  # no reference to the initial state stays behind
    step = r.start_step
    clock = _Clock()
    if step < r.total_steps:
        batch = r.fetch(step)
        clock.t0 = time.perf_counter()
        options = compiler_options()
        _log("compiling the train step ...")
        with compile_cache.CacheHits() as hits:
            lowered = r.train_step.lower(state, batch)
            lower_s = time.perf_counter() - clock.t0
            compiled = lowered.compile(options)
        compile_s = time.perf_counter() - clock.t0
        summary["compile_s"] = compile_s
        summary["compile_cache_hit"] = bool(hits.count)
        _log(f"first-step compile: {compile_s:.2f} s (tracing {lower_s:.1f} s, XLA {compile_s - lower_s:.1f} s; "
             f"{_cache_note(hits)}; compiler options {options or 'default'})")
    pbar = None
    if r.is_main and tc.get("progress_bar", True):
        pbar = tqdm(
            total=r.total_steps,
            initial=r.start_step,
            desc="train",
            dynamic_ncols=True,
            file=sys.stdout,
            mininterval=0.5,
        )
    clock.log = time.perf_counter()
    while step < r.total_steps:
        if step != r.start_step:
            batch = r.fetch(step)
        state, metrics = compiled(state, batch)
        step += 1
        clock.steps_since_log += 1
        if not _after_step(r, state, metrics, step, clock, pbar, stop, summary):
            pbar = None  # closed on the way out
            break
    if pbar is not None:
        pbar.close()
    if clock.first_done is not None and step - r.start_step > 1:
        jax.block_until_ready(state["step"])
        span = time.perf_counter() - clock.first_done - clock.excluded
        summary["images_per_sec"] = (step - r.start_step - 1) * r.global_bs / max(span, 1e-9)
        summary["data_wait_s"] = clock.data_wait_s
        _log(
            f"steady-state throughput: {summary['images_per_sec']:.1f} images/s "
            f"({(step - r.start_step - 1)} steps after the first, {span:.1f} s, {clock.data_wait_s:.1f} s of it "
            "waiting for the loader)"
        )
    return state, step


def _cache_note(hits: compile_cache.CacheHits) -> str:
    """How the first step's executable was made, for the compile line."""
    where = compile_cache.current_dir()
    if where is None:
        return "persistent compilation cache off"
    if hits.count:
        return f"read from the persistent compilation cache {where} in {hits.retrieval_s:.1f} s"
    return f"compiled; saved to the persistent compilation cache {where} for the next run"


def _after_step(r: _Run, state, metrics, step: int, clock: _Clock, pbar, stop: _StopFlag,
                summary: dict[str, Any]) -> bool:
    """One step's bookkeeping after it ran: the non-finite check, the first step's timing, the metrics record and
    progress bar, the periodic evaluation and checkpoint, and a signal's save. False when the run stops here."""
    tc = r.config.train
    _check_finite(r, state, metrics, step)
    if clock.first_done is None:
        jax.block_until_ready(state["step"])
        clock.first_done = time.perf_counter()
        clock.log = clock.first_done
        clock.steps_since_log = 0
        r.batches.stats.take()  # the loader's counters start with the steady state
        summary["first_step_s"] = clock.first_done - clock.t0
    last = step == r.total_steps
    if step % max(int(tc.log_every), 1) == 0 or last:
        _log_train_metrics(r, metrics, step, clock, pbar)
    if pbar is not None:
        pbar.update(1)
    t_pause = time.perf_counter()
    if int(tc.eval_every) > 0 and step % int(tc.eval_every) == 0 and not last:
        ev, _ = r.evaluator(state, step)
        if ev is not None:
            r.writer.write("eval", step, ev)
            if pbar is not None:
                pbar.write(f"step {step}: " + tables.format_metrics_line(ev))
    if int(tc.checkpoint_every) > 0 and step % int(tc.checkpoint_every) == 0 and not last:
        r.checkpointer.save(step, state, r.meta_for(step))
    if stop.agreed():
        _log(f"{stop.signal_name}: saving a checkpoint at step {step} (Ctrl-C again exits at once, without "
             "saving)")
        r.checkpointer.save(step, state, r.meta_for(step))
        summary["stopped"] = True
        if pbar is not None:
            pbar.close()
        _log(f"{stop.signal_name}: saved checkpoint at step {step} in {r.checkpointer.directory}; exiting.")
        return False
    paused = time.perf_counter() - t_pause
    if clock.first_done is not None:
        clock.excluded += paused
        clock.log += paused
    if pbar is not None:
        _exclude_from_eta(pbar, paused)
    return True


def _exclude_from_eta(pbar, seconds: float) -> None:
    """Moves the progress bar's clocks forward by ``seconds`` (an evaluation or checkpoint), so that its rate and
    ETA count the steps only: without it the next update's rate takes the evaluation as one slow step."""
    pbar.start_t += seconds
    pbar.last_print_t += seconds


def _check_finite(r: _Run, state, metrics, step: int) -> None:
    """Names a skipped (non-finite) step; after ``train.max_consecutive_nonfinite`` in a row saves the last good
    parameters and raises :class:`NonFiniteTrainingError`."""
    if not float(to_host(metrics["skipped"])):  # one scalar a step: name every skipped step
        return
    max_nonfinite = int(r.config.train.get("max_consecutive_nonfinite", 10))
    run_length = int(to_host(state["nonfinite_run"]))
    terms = ", ".join(f"{k}={float(to_host(v)):.4g}" for k, v in sorted(metrics.items()))
    _log(f"step {step}: non-finite loss or gradients, update skipped ({run_length} in a row; params, "
         f"optimizer, model and loss state unchanged): {terms}")
    if run_length >= max_nonfinite:
        r.checkpointer.save(step, state, r.meta_for(step))
        raise NonFiniteTrainingError(
            f"{run_length} consecutive steps with a non-finite loss or gradients, the last at step "
            f"{step}; saved the last good parameters (unchanged since step {step - run_length}) at step "
            f"{step} in {r.checkpointer.directory}. Lower train.learning_rate, set train.grad_clip, or "
            f"check the data (train.max_consecutive_nonfinite={max_nonfinite})"
        )


def _log_train_metrics(r: _Run, metrics, step: int, clock: _Clock, pbar) -> None:
    """Writes the step's ``train`` record (metrics, dropped boxes, images/s and the loader's own figures since the
    last record) and shows its headline numbers on the progress bar."""
    host = {k: float(to_host(v)) for k, v in metrics.items()}
    host["dropped_boxes"] = r.dropped.total()  # objects augmentation removed so far
    now = time.perf_counter()
    loader = r.batches.stats.take()  # the loader's own images/s and the loop's wait for it
    if clock.steps_since_log:
        host["images_per_sec"] = clock.steps_since_log * r.global_bs / max(now - clock.log, 1e-9)
        host.update(loader)
        clock.data_wait_s += loader["data_wait_s"]
    clock.log, clock.steps_since_log = now, 0
    r.writer.write("train", step, host)
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


# --------------------------------------------------------------------------------------------------- the end


def _final_evaluation(r: _Run, state, step: int, summary: dict[str, Any]) -> None:
    """The final evaluation: its ``eval`` record and printed table, ``eval/`` (per-class table, PR curve),
    ``plots/val_predictions.png``, and the history plots of the whole run."""
    ev, table = r.evaluator(state, step, collect_images=True)
    if ev is not None:
        r.writer.write("eval", step, ev)
        summary["eval"] = ev
        _log(f"final evaluation at step {step}:\n{table}")
        if r.is_main:
            eval_report.write_report(r.workdir, r.evaluator.last_result, step=step)
        if r.is_main and r.evaluator.last_images is not None and r.task.draw_fn is not None:
            _plot_val_predictions(r, step)
    r.writer.flush()
    if r.is_main:
        plots.plot_history(metrics_log.read_history(r.writer.path), os.path.join(r.workdir, "plots"))
        written = [os.path.join(d, f) for d in ("plots", "eval") if os.path.isdir(os.path.join(r.workdir, d))
                   for f in sorted(os.listdir(os.path.join(r.workdir, d)))]
        _log("plots and evaluation files: " + ", ".join(written))


def _plot_val_predictions(r: _Run, step: int) -> None:
    """``plots/val_predictions.png``: the final evaluation's first images with their detections scoring at least
    ``eval.plot_score_threshold`` (0.3) and the ground truth."""
    images, dets, gt = r.evaluator.last_images
    shown = dets._replace(
        valid=dets.valid & (dets.scores >= float(r.config.eval.get("plot_score_threshold", 0.3)))
    )
    grid = r.task.draw_fn(images, shown, gt)
    if grid is not None:
        os.makedirs(os.path.join(r.workdir, "plots"), exist_ok=True)
        plots.save_image(
            grid,
            os.path.join(r.workdir, "plots", "val_predictions.png"),
            title=f"validation predictions, step {step}",
        )


def _write_summary(r: _Run, step: int, summary: dict[str, Any]) -> None:
    """Process 0 writes ``summary.json`` and, when this run trained, its numbers as an ``info`` record."""
    if r.is_main:
        with open(os.path.join(r.workdir, "summary.json"), "w") as f:
            json.dump({k: metrics_log.json_scalar(k, v) for k, v in summary.items()}, f, indent=2, default=float)
        if summary["compile_s"] is not None:
            r.writer.write("info", step, {k: v for k, v in summary.items() if isinstance(v, (int, float))})
