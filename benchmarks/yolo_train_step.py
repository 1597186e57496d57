"""YOLO train step (YOLOv8n, YOLO11n, YOLO26n): jaxdet (train/step.py, jit) vs ultralytics DetectionModel + its loss.

One train step = train-mode forward (BatchNorm statistics updated) + the model's loss (task-aligned assignment,
box, class and DFL/L1 terms) + backward + optimizer update, for ``<model>.yaml`` with 80 classes, for each model
of ``--models`` (default ``yolov8n,yolo11n,yolo26n``):

- **jaxdet**: ``python -m train``'s step (``train.step.make_train_step``, ``train.step.jit_train_step``: explicit
  shardings over the local devices, state donated) of :class:`jaxdet.models.yolo.YOLO` imported from the
  ultralytics weights, with the loss of :func:`jaxdet.parity.train_twins.jax_loss_fn`: the ``yolov8`` head's
  :func:`jaxdet.losses.yolov8.yolov8_loss` for yolov8n and yolo11n, :func:`jaxdet.losses.yolo26.yolo26_loss` of
  both heads for yolo26n; compiled ahead of time with ``jaxdet.compile_options.compiler_options()``. The same
  step with XLA's defaults (compiled with ``{}``, XLA's own stride-2 input gradients) is a second contender on
  the CPU (``--no-default-options`` drops it).
- **ultralytics**: ``DetectionModel(f"{model}.yaml", nc=80)`` in train mode + its ``init_criterion()``
  (``v8DetectionLoss`` for yolov8n/yolo11n, ``E2ELoss`` for yolo26n) on the ultralytics batch dict (``batch_idx``,
  ``cls``, normalised cxcywh ``bboxes``) of the same ground truth, ``backward()`` and the optimizer step; eager,
  and with ``torch.compile`` (inductor) on the forward + loss (the assigner's data-dependent shapes become graph
  breaks; the optimizer step stays eager).

Both sides start from the **same weights**: the ultralytics model's random initialisation (seeded), imported into
the NNX model with :func:`jaxdet.models.load_ultralytics`, and take the same fixed batch of synthetic shapes
(data loading not timed). The torch loss is ``criterion(...)[0].sum() / B``: ultralytics multiplies its loss by
the batch size B, jaxdet's loss is the per-image mean; dividing makes both steps minimise the same function, so
the same optimizer gives the same update. YOLO26's ``E2ELoss`` weights its branches 0.8 / 0.2 until the trainer
calls its ``update()`` at the end of the first epoch, which no step here does; the jaxdet loss reads its schedule
at step 0 (the same weights). **Same work**: the first step's loss of every contender must equal jaxdet's within
``--loss-rtol`` (relative, default 1e-3: float32 rounding, see :data:`LOSS_RTOL`): for ultralytics eager the
script stops before timing; another contender that differs is left out of the timing and named under the table
(torch 2.14.1's inductor on the CPU gives yolo26n at 2 × 64 px the loss 0.157 where eager, dynamo's ``eager`` and
``aot_eager`` backends and jaxdet give 10.397; yolo11n 6.043 where eager and jaxdet give 0.210). The table lists
the losses of the first and the last timed steps.

Optimizer (``--optimizer``): ``sgd`` (default; ultralytics' recipe: SGD, momentum 0.937, Nesterov, weight decay
5e-4 on every parameter, constant lr 0.01; optax ``add_decayed_weights`` + ``sgd(nesterov=True)`` =
``torch.optim.SGD(nesterov=True, weight_decay=...)``) or ``adamw`` (``train.recipe.make_optimizer`` against its
torch twin, :func:`jaxdet.parity.train_twins.torch_adamw`).

Contenders are built first and then timed in round robin (one step each per round, median over the rounds), so a
shared machine's drift falls on all of them alike; one model and case at a time. Reported: median step time,
images/s, the ratios, and the first step's time (jaxdet: ahead-of-time compile + first step; torch.compile: its
first call, compiling).

``--breakdown`` adds a second table of the same step in parts, each a separately compiled jaxdet function timed
against its eager torch twin (interleaved): the train-mode forward, the forward + backward of a plain sum of the
outputs (no loss), and the loss alone (assignment + loss + its gradient w.r.t. the outputs).

    python -m benchmarks.yolo_train_step                  # 8 x 320 px, 3 models: benchmarks/results/yolo_train_step.md
    python -m benchmarks.yolo_train_step --models yolo26n --cases 8x320,16x320 --breakdown --out /tmp/y.md
    python -m benchmarks.yolo_train_step --batch 16 --image-size 640 --out /tmp/y.md   # one case
    python -m benchmarks.yolo_train_step --quick --out /tmp/y.md    # smoke test: batch 2 of 64 px, 3 repeats
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import ultralytics
from flax import nnx

from benchmarks import _timing
from benchmarks.train_step import parse_cases, sync
from jaxdet.compile_options import compiler_options
from jaxdet.models import load_ultralytics
from jaxdet.parity.torch_yolov8 import torch_batch
from jaxdet.parity.train_twins import (
    NUM_CLASSES,
    YOLO_MODELS,
    jax_loss_fn,
    make_batch,
    make_torch_optimizer,
    make_tx,
    ultralytics_model_weights,
    ultralytics_train_model,
    yolov8n_config,
)
from train import mesh as mesh_lib
from train import step as step_lib

RESULTS_NAME = "yolo_train_step.md"

JAX = "jaxdet"
JAX_DEFAULT = _timing.XLA_DEFAULTS
EAGER = "ultralytics eager"
COMPILED = "ultralytics torch.compile"

#: (batch, image side): the CPU default and the ``--quick`` smoke case.
CASES: tuple[tuple[int, int], ...] = ((8, 320),)
QUICK_CASES: tuple[tuple[int, int], ...] = ((2, 64),)
#: the largest relative difference allowed between a contender's first-step loss and jaxdet's (``--loss-rtol``):
#: float32 rounding, mostly torch's float32 ``binary_cross_entropy_with_logits`` at an untrained detector's class
#: logits (about -11.5): 2.5e-4 relative on the 2 x 64 px batch (benchmarks/README.md, "YOLOv8n SGD trajectory").
LOSS_RTOL = 1e-3

#: each model's loss on the two sides, for the table's header.
LOSSES = {
    "yolov8n": "`yolov8_loss` vs `v8DetectionLoss`",
    "yolo11n": "`yolov8_loss` vs `v8DetectionLoss`",
    "yolo26n": "`yolo26_loss` (step 0: one-to-many 0.8, one-to-one 0.2, reg_max 1) vs `E2ELoss` (epoch 0)",
}


# ------------------------------------------------------------------------------------------------------ jaxdet


def make_jax_runner(name: str, cfg, weights, batch_np: dict[str, np.ndarray], *, options: dict[str, str] | None = None):
    """``(run_one_step, info)``: the ``python -m train`` step of model ``name`` from the imported weights, with
    :func:`jaxdet.parity.train_twins.jax_loss_fn`.

    ``run_one_step()`` advances the (donated) state and returns ``(params, metrics)``. Compiled ahead of time
    with ``options`` (default: ``jaxdet.compile_options.compiler_options()``; ``{}`` = XLA's defaults).
    """
    tx, lr = make_tx(cfg)
    numpy_weights = {k: v.numpy() for k, v in weights.items()}
    graphdef, init_fn = step_lib.make_init_fn(lambda rngs: load_ultralytics(numpy_weights), tx, seed=0)
    mesh = mesh_lib.make_mesh((-1,), ("data",))
    n_dev = mesh.shape["data"]
    if int(cfg.train.batch_size) % n_dev:
        raise ValueError(f"--batch {cfg.train.batch_size} must be divisible by the {n_dev} local devices")
    state = jax.device_put(init_fn(), mesh_lib.replicated(mesh))  # eager: compiling the import would take longer
    step = step_lib.jit_train_step(
        step_lib.make_train_step(graphdef, loss_fn=jax_loss_fn(name, int(cfg.model.num_classes)), tx=tx,
                                 lr_schedule=lr), mesh)
    batch = mesh_lib.global_batch(mesh, batch_np)
    options = compiler_options() if options is None else dict(options)
    step = step.lower(state, batch).compile(options)
    holder = {"state": state, "loss": None}

    def run():
        holder["state"], metrics = step(holder["state"], batch)
        holder["loss"] = metrics["loss"]
        return holder["state"]["params"], metrics

    run.last_loss = lambda: float(holder["loss"])
    return run, {"devices": n_dev, "options": options}


# ----------------------------------------------------------------------------------------------------- PyTorch


def make_torch_runner(name: str, cfg, weights, batch_np: dict[str, np.ndarray], *, compiled: bool, device):
    """``run_one_step()``: ultralytics' forward + ``init_criterion()`` + backward + optimizer step."""
    model = ultralytics_train_model(name, weights, device, int(cfg.model.num_classes))
    criterion = model.init_criterion()
    images, gt = torch_batch(batch_np, device)
    n = images.shape[0]

    def forward_loss(images):
        return criterion(model(images), gt)[0].sum() / n  # ultralytics' loss is B × the per-image mean

    fn = torch.compile(forward_loss) if compiled else forward_loss
    params = [p for p in model.parameters() if p.requires_grad]  # the DFL projection is frozen
    opt, update = make_torch_optimizer(params, cfg)
    holder = {"loss": None}

    def run():
        opt.zero_grad(set_to_none=True)
        loss = fn(images)
        loss.backward()
        update()
        sync(device)
        holder["loss"] = loss.detach()

    run.last_loss = lambda: float(holder["loss"])
    return run


# ------------------------------------------------------------------------------------------------------ breakdown


def _torch_heads(preds) -> dict[str, dict]:
    """ultralytics' train-mode output as ``{branch: {"boxes", "scores", "feats"}}`` (one branch, ``""``, but for
    YOLO26's ``one2many``/``one2one``)."""
    return {k: preds[k] for k in ("one2many", "one2one")} if "one2one" in preds else {"": preds}


def breakdown_runs(name: str, cfg, weights, batch_np, device) -> dict[str, dict[str, Any]]:
    """The step's parts, each ``{"jaxdet": run, "ultralytics eager": run}``: train-mode forward; forward +
    backward of ``Σ outputs`` (no loss); the loss alone with its gradient w.r.t. the raw outputs."""
    loss_fn = jax_loss_fn(name, int(cfg.model.num_classes))
    model = load_ultralytics({k: v.numpy() for k, v in weights.items()})
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    jbatch = {k: jnp.asarray(v) for k, v in batch_np.items()}

    def forward(p, s, images):
        m = nnx.merge(graphdef, p, s, copy=True)
        return m(images), nnx.state(m, nnx.BatchStat)

    def forward_backward(p, s, images):
        return jax.grad(lambda p: sum(jnp.sum(o) for o in jax.tree.leaves(forward(p, s, images)[0])))(p)

    outputs, _ = jax.jit(forward)(params, stats, jbatch["image"])

    def loss_grad(outputs):
        return jax.value_and_grad(lambda o: loss_fn(o, jbatch, step=0, state={})[0])(outputs)

    def jit(f, *a):
        return jax.jit(f).lower(*a).compile(compiler_options())

    f_fwd, f_fb = jit(forward, params, stats, jbatch["image"]), jit(forward_backward, params, stats, jbatch["image"])
    f_loss = jit(loss_grad, outputs)

    tmodel = ultralytics_train_model(name, weights, device, int(cfg.model.num_classes))
    criterion = tmodel.init_criterion()
    images, gt = torch_batch(batch_np, device)
    n = images.shape[0]
    with torch.no_grad():
        heads = _torch_heads(tmodel(images))
    raw = {b: {k: h[k].detach().clone().requires_grad_(True) for k in ("boxes", "scores")} for b, h in heads.items()}
    leaves = [v for r in raw.values() for v in r.values()]

    def t_forward():
        with torch.no_grad():
            return tmodel(images)

    def t_forward_backward():
        tmodel.zero_grad(set_to_none=True)
        out = _torch_heads(tmodel(images)).values()
        sum(h["boxes"].sum() + h["scores"].sum() for h in out).backward()

    def t_loss():
        for v in leaves:
            v.grad = None
        preds = {b: {**raw[b], "feats": heads[b]["feats"]} for b in raw}
        (criterion(preds.get("", preds), gt)[0].sum() / n).backward()

    return {
        "train-mode forward (+ BN statistics)": {JAX: lambda: f_fwd(params, stats, jbatch["image"]),
                                                 EAGER: t_forward},
        "forward + backward of Σ outputs (no loss)": {JAX: lambda: f_fb(params, stats, jbatch["image"]),
                                                      EAGER: t_forward_backward},
        "loss + its gradient w.r.t. the outputs": {JAX: lambda: f_loss(outputs), EAGER: t_loss},
    }


def breakdown_table(row: dict[str, Any], repeats: int) -> str:
    lines = [
        f"\nThe {row['model']} step in parts (batch {row['batch']} × {row['image']} px; each part a separately "
        f"compiled jaxdet function, timed interleaved with its ultralytics eager twin, median of {repeats} rounds):\n",
        f"| part | {JAX} (ms) | {EAGER} (ms) | vs eager |",
        "|---|---:|---:|---:|",
    ]
    for part, t in row["parts"].items():
        lines.append(f"| {part} | {t[JAX].median_s * 1e3:.1f} | {t[EAGER].median_s * 1e3:.1f} "
                     f"| {t[EAGER].median_s / t[JAX].median_s:.2f}× |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------- report


def check_same_loss(losses: dict[str, float], *, rtol: float, what: str) -> float:
    """The largest relative difference of ``losses`` from ``losses["jaxdet"]``; raises when it is above ``rtol``
    (then the contenders would not time the same work)."""
    ref = losses[JAX]
    worst = float(np.max([abs(v - ref) / max(abs(ref), 1e-12) for v in losses.values()]))  # NaN propagates
    if not worst <= rtol:
        raise RuntimeError(f"{what}: the first step's losses differ by {worst:.2e} relative (above --loss-rtol "
                           f"{rtol:g}), so the contenders do not do the same work: "
                           + ", ".join(f"{k} {v:.7f}" for k, v in losses.items()))
    return worst


def run_case(args, name: str, batch: int, image: int, tdev, weights) -> dict[str, Any]:
    """Builds every contender for one model and (batch, image size), checks that their first steps' losses agree,
    and times them interleaved."""
    cfg = yolov8n_config(batch=batch, image_size=image, optimizer=args.optimizer)
    batch_np = make_batch(cfg)
    runs, compile_s = {}, {}
    t0 = time.perf_counter()
    runs[JAX], info = make_jax_runner(name, cfg, weights, batch_np)
    compile_s[JAX] = time.perf_counter() - t0
    if not args.no_default_options:
        t0 = time.perf_counter()
        built = _timing.build_with_xla_defaults(
            lambda options: make_jax_runner(name, cfg, weights, batch_np, options=options), info["options"])
        if built is not None:
            runs[JAX_DEFAULT] = built[0]
            compile_s[JAX_DEFAULT] = time.perf_counter() - t0
    runs[EAGER] = make_torch_runner(name, cfg, weights, batch_np, compiled=False, device=tdev)
    if not args.no_compile:
        runs[COMPILED] = make_torch_runner(name, cfg, weights, batch_np, compiled=True, device=tdev)
    first_losses = {}
    for contender, run in runs.items():  # the first step of every contender, to compare the losses
        t0 = time.perf_counter()
        _timing._block(run())
        compile_s[contender] = compile_s.get(contender, 0.0) + time.perf_counter() - t0
        first_losses[contender] = run.last_loss()
    what = f"{name}, batch {batch} × {image} px"
    dropped = {}
    for contender in [k for k in runs if k not in (JAX, EAGER)]:  # jaxdet vs eager must agree; others are left out
        try:
            check_same_loss({JAX: first_losses[JAX], contender: first_losses[contender]}, rtol=args.loss_rtol,
                            what=what)
        except RuntimeError as err:
            print(f"leaving out {contender}: {err}", flush=True)
            dropped[contender] = first_losses.pop(contender)
            del runs[contender]
    worst = check_same_loss(first_losses, rtol=args.loss_rtol, what=what)
    print(f"{what}: first-step losses agree to {worst:.1e} relative: "
          + ", ".join(f"{k} {v:.6f}" for k, v in first_losses.items()), flush=True)
    timings = _timing.time_interleaved(runs, repeats=args.repeats)
    timings = {k: _timing.Timing(first_s=compile_s[k], median_s=v.median_s) for k, v in timings.items()}
    row = {"model": name, "batch": batch, "image": image, "timings": timings, "info": info, "cfg": cfg,
           "first_losses": first_losses, "loss_rdiff": worst, "dropped": dropped,
           "last_losses": {k: r.last_loss() for k, r in runs.items()}, "steps": 1 + 1 + 2 + args.repeats}
    print(f"{what}: " + ", ".join(f"{k} {t.median_s * 1e3:.1f} ms" for k, t in timings.items()), flush=True)
    return row


def _cell_ms(t, name) -> str:
    return f"{t[name].median_s * 1e3:.1f}" if name in t else "—"


def _cell_ratio(t, name) -> str:
    return f"{t[name].median_s / t[JAX].median_s:.2f}×" if name in t else "—"


def cases_table(rows: list[dict[str, Any]], *, args, tdev, load: tuple[float, float],
                param_counts: dict[str, int]) -> str:
    cfg, info = rows[0]["cfg"], rows[0]["info"]
    jdev = jax.devices()[0]
    opt = ("SGD lr 0.01, momentum 0.937, Nesterov, weight decay 5e-4" if args.optimizer == "sgd" else
           f"AdamW + clip {cfg.train.grad_clip} + warmup-cosine LR (`train.recipe.make_optimizer`)")
    models = list(dict.fromkeys(row["model"] for row in rows))
    lines = [
        "### YOLO train step vs ultralytics: forward + loss + backward + optimizer "
        "(benchmarks/yolo_train_step.py)\n",
        "Models: " + ", ".join(f"`{m}.yaml` ({param_counts[m]:,} parameters)" for m in models)
        + ", 80 classes, the same random ultralytics weights on both sides (imported with `load_ultralytics`); "
        "losses (gains 7.5 / 0.5 / 1.5; ultralytics' loss divided by B, see the script): "
        + "; ".join(f"{m}: {LOSSES[m]}" for m in models)
        + f"; optimizer: {opt}; float32, train-mode BatchNorm; one fixed batch of synthetic shapes (up to "
        f"{cfg.data.max_objects_per_image} objects per image, as many GT slots), data loading not timed.\n",
        f"Device: jax {jax.__version__} on {info['devices']} × {jdev.device_kind} ({jdev.platform}); torch "
        f"{torch.__version__} on {_timing.torch_device_name(tdev)}; ultralytics {ultralytics.__version__}. Host: "
        f"{_timing.host()}; load average {load[0]:.2f} at the start, {load[1]:.2f} at the end"
        f"{_timing.shared_cpu_note(*load)}.\n",
        f"{_timing.options_line()} {_timing.XLA_DEFAULTS_NOTE}\n",
        f"Median of {args.repeats} rounds after 2 warm-up rounds; in each round every contender runs one step in turn "
        "(interleaved, so drift and other jobs' load fall on all alike; one model and case at a time). Ratio = "
        "contender step time / jaxdet step time (above 1: jaxdet is faster). images/s = batch / median step. First "
        "step (s): jaxdet's ahead-of-time compile + first step; ultralytics' first step (torch.compile: compiling).\n",
        f"| model | batch × image | {JAX} (ms) | {JAX_DEFAULT} (ms) | {EAGER} (ms) | {COMPILED} (ms) "
        "| jaxdet images/s | ultralytics eager images/s | vs XLA defaults | vs eager | vs compile "
        "| first step jaxdet / eager / compile (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        t = row["timings"]
        firsts = " / ".join(f"{t[k].first_s:.1f}" if k in t else "—" for k in (JAX, EAGER, COMPILED))
        lines.append(
            f"| {row['model']} | {row['batch']} × {row['image']} px | {_cell_ms(t, JAX)} | {_cell_ms(t, JAX_DEFAULT)} "
            f"| {_cell_ms(t, EAGER)} | {_cell_ms(t, COMPILED)} | {row['batch'] / t[JAX].median_s:,.1f} | "
            f"{row['batch'] / t[EAGER].median_s:,.1f} | {_cell_ratio(t, JAX_DEFAULT)} | {_cell_ratio(t, EAGER)} | "
            f"{_cell_ratio(t, COMPILED)} | {firsts} |")
    lines.append(f"\nSame computation: the loss of each contender's first step (checked equal to jaxdet's within "
                 f"{args.loss_rtol:g} relative) and of its last timed step (every contender ran the same number of "
                 "steps):\n")
    for row in rows:
        lines.append(f"- {row['model']}, batch {row['batch']} × {row['image']} px: first " + ", ".join(
            f"{k} {v:.6f}" for k, v in row["first_losses"].items()) + f" (largest difference "
            f"{row['loss_rdiff']:.1e}); step {row['steps']}: " + ", ".join(
            f"{k} {v:.6f}" for k, v in row["last_losses"].items()) + ".")
        for k, v in row.get("dropped", {}).items():
            lines.append(f"- **{row['model']}, batch {row['batch']} × {row['image']} px: {k} left out**: its "
                         f"first-step loss {v:.6f} is not jaxdet's {row['first_losses'][JAX]:.6f} (a different "
                         "computation; not timed).")
    text = "\n".join(lines) + "\n"
    for row in rows:
        if "parts" in row:
            text += breakdown_table(row, args.repeats)
    return text


def _parse_models(text: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in models if m not in YOLO_MODELS]
    if unknown or not models:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of {', '.join(YOLO_MODELS)}")
    return tuple(dict.fromkeys(models))


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", type=_parse_models, default=YOLO_MODELS,
                   help="comma-separated, timed in this order (default: " + ",".join(YOLO_MODELS) + ")")
    p.add_argument("--cases", type=parse_cases, default=None,
                   help="BATCHxSIZE list, e.g. 8x320,16x320 (default: "
                   + ",".join(f"{b}x{i}" for b, i in CASES) + ")")
    p.add_argument("--batch", type=int, default=None, help="one case of this global batch (with --image-size)")
    p.add_argument("--image-size", type=int, default=None, help="one case of this image side, a multiple of 32")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="the same on both sides")
    p.add_argument("--no-default-options", action="store_true",
                   help="skip the jaxdet contender with XLA's defaults")
    p.add_argument("--breakdown", action="store_true", help="also time the step's parts (forward, backward, loss)")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--loss-rtol", type=float, default=LOSS_RTOL,
                   help=f"largest relative difference of a contender's first-step loss from jaxdet's (default "
                   f"{LOSS_RTOL:g}); above it the script stops before timing")


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.batch or args.image_size:
        if args.cases:
            raise SystemExit("--cases cannot be combined with --batch/--image-size")
        args.cases = ((args.batch or CASES[0][0], args.image_size or CASES[0][1]),)
    if args.cases is None:
        args.cases = QUICK_CASES if args.quick else CASES
    for _, size in args.cases:
        if size % 32:
            raise SystemExit(f"image size {size}: must be a multiple of 32 (the YOLO strides)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _timing.parse_args(__doc__, add_arguments=_add_arguments, check_args=_check_args, argv=argv)


def run(args: argparse.Namespace) -> str:
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    tdev = _timing.torch_device()
    weights = {m: ultralytics_model_weights(m, NUM_CLASSES) for m in args.models}
    param_counts = {m: sum(p.numel() for p in ultralytics_train_model(m, w, "cpu").parameters())
                    for m, w in weights.items()}
    rows = [run_case(args, m, b, i, tdev, weights[m]) for m in args.models for b, i in args.cases]

    def table():
        return cases_table(rows, args=args, tdev=tdev, load=(args.load_start, os.getloadavg()[0]),
                           param_counts=param_counts)

    if args.breakdown:
        _timing.write_results(table(), RESULTS_NAME, args)  # kept if the breakdown fails
        for row in rows:
            parts = breakdown_runs(row["model"], row["cfg"], weights[row["model"]], make_batch(row["cfg"]), tdev)
            row["parts"] = {part: _timing.time_interleaved(r, repeats=args.repeats) for part, r in parts.items()}
    return table()


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name=RESULTS_NAME, add_arguments=_add_arguments,
                        check_args=_check_args, argv=argv)


if __name__ == "__main__":
    main()
