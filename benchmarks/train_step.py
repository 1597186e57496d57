"""Train step of the YOLOv1 detector: jaxdet (jit, batch sharded over the local devices) vs PyTorch eager / compile.

One train step = forward + YOLOv1 loss + backward + global-norm clip + AdamW update (warmup-cosine LR), for the
detector and loss of ``configs/yolov1_shapes.py`` (S=8, B=2, C=5), at batch 16, 32, 64 and 128 of 64x64 images
and batch 16 of 256x256 images (``--cases`` to choose).

- **jaxdet**: the real train step of ``python -m train`` (``train.step.make_train_step`` +
  ``train.step.jit_train_step``: ``jax.jit`` with explicit ``NamedSharding``s, the batch split over the mesh's
  ``data`` axis of all local devices, the state replicated and donated), compiled ahead of time with
  ``jaxdet.compile_options.compiler_options()`` as ``python -m train`` does; the same step with XLA's defaults
  (compiled with ``{}``, XLA's own stride-2 input gradients) is a second contender (``--no-default-options``
  drops it). ``--step-builder local`` uses a self-contained equivalent (``jax.jit`` + ``nnx.split/merge`` +
  ``optax``) instead.
- **PyTorch**: the same architecture and loss in plain PyTorch (:mod:`jaxdet.parity.torch_detector`; parity with
  the NNX model is tested in ``tests/parity/test_torch_detector.py``), started from the *same* initial parameters
  (copied from the JAX state), with ``torch.optim.AdamW`` (fused on CUDA) + ``clip_grad_norm_`` + the same LR
  schedule (:func:`jaxdet.parity.train_twins.torch_adamw`);
  eager, and with ``torch.compile`` (inductor) on the forward + loss (its backward runs the AOTAutograd graph;
  the optimizer step stays eager).

All contenders of a case are built first and then timed in round robin (one step each per round, median over
the rounds), so a shared machine's drift falls on all of them alike. Both sides use the same fixed batch of
synthetic shapes (data loading is not timed). Reported: median step time, jaxdet's images/s, the speed ratios,
and the first step's time. On CUDA every torch step ends with ``torch.cuda.synchronize()``.

    python -m benchmarks.train_step                      # writes benchmarks/results/train_step.md
    python -m benchmarks.train_step --cases 32x64,16x256 --out /tmp/ts.md
    python -m benchmarks.train_step --batch-size 128 --image-size 128 --out /tmp/ts.md   # one case
    python -m benchmarks.train_step --quick --out /tmp/train_step.md    # smoke test, tiny sizes
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks import _timing
from jaxdet.compile_options import compiler_options
from jaxdet.models import YOLOv1Head
from jaxdet.parity.torch_detector import (
    build_torch_detector,
    head_loss_options,
    load_nnx_params,
    nchw,
    yolov1_head_loss_torch,
)
from jaxdet.parity.train_twins import make_batch, torch_adamw
from train import mesh as mesh_lib
from train import recipe as recipe_lib
from train import step as step_lib
from train.task import make_head

# ------------------------------------------------------------------------------------------------ config/data


def load_config(*, batch_size: int | None = None, image_size: int | None = None, config: str = "yolov1_shapes"):
    """The experiment config (``configs/<config>.py``) with the benchmark's overrides."""
    cfg = importlib.import_module(f"configs.{config}").get_config()
    if not isinstance(make_head(cfg), YOLOv1Head):
        raise ValueError(f"--config {config}: only the YOLOv1 head has a PyTorch twin, "
                         f"got model.head={cfg.model.head!r}")
    if batch_size is not None:
        cfg.train.batch_size = int(batch_size)
    if image_size is not None:
        cfg.model.image_size = int(image_size)
        cfg.data.image_size = int(image_size)
    return cfg


def _num_classes(cfg) -> int:
    return int(cfg.model.num_classes)


# ------------------------------------------------------------------------------------------------------ jaxdet


def _build_model(cfg):
    head = make_head(cfg)
    return lambda rngs: head.build_model(cfg.model, rngs=rngs)


def jax_step_from_train(cfg):
    """``(state, step_fn, to_global, graphdef, mesh)`` from ``train.step`` / ``train.mesh`` (``python -m train``'s)."""
    tx, lr = recipe_lib.make_optimizer(cfg.train)
    head = make_head(cfg)
    graphdef, init_fn = step_lib.make_init_fn(_build_model(cfg), tx, seed=int(cfg.seed),
                                              init_loss_state=head.init_state)
    mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape), tuple(cfg.mesh.axes))
    state = jax.jit(init_fn, out_shardings=mesh_lib.replicated(mesh))()
    step = step_lib.make_train_step(graphdef, loss_fn=head.loss, tx=tx, lr_schedule=lr)
    return state, step_lib.jit_train_step(step, mesh), (lambda b: mesh_lib.global_batch(mesh, b)), graphdef, mesh


def jax_step_local(cfg):
    """The same step without ``train/``: ``jax.jit`` + ``nnx.split/merge`` + ``optax`` on a 1-axis ``data`` mesh."""
    t = cfg.train
    warmup = int(min(t.warmup_steps, max(int(t.steps) - 1, 0)))
    lr = optax.warmup_cosine_decay_schedule(0.0, float(t.learning_rate), warmup, max(int(t.steps), warmup + 1),
                                            float(t.learning_rate) * float(t.end_lr_factor))
    tx = optax.adamw(lr, weight_decay=float(t.weight_decay))
    if float(t.get("grad_clip", 0.0)) > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(t.grad_clip)), tx)
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    model = _build_model(cfg)(nnx.Rngs(params=int(cfg.seed), default=int(cfg.seed)))
    graphdef, params = nnx.split(model, nnx.Param)
    state = jax.device_put({"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}, repl)
    head = make_head(cfg)

    def train_step(state, batch):
        def loss_of(p):
            outputs = nnx.merge(graphdef, p)(batch["image"])
            return head.loss(outputs, batch, step=state["step"], state=head.init_state())[:2]

        (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, dict(metrics, loss=loss)

    step = jax.jit(train_step, in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=(0,))

    def to_global(b):
        return {k: jax.device_put(np.asarray(v), data) for k, v in b.items()}

    return state, step, to_global, graphdef, mesh


def make_jax_runner(cfg, batch_np: dict[str, np.ndarray], *, builder: str = "train",
                    options: dict[str, str] | None = None):
    """Returns ``(run_one_step, initial_nnx_model, info)``; ``run_one_step()`` advances the (donated) state.

    The step is compiled ahead of time with ``options`` as per-executable compiler options (default:
    ``jaxdet.compile_options.compiler_options()``, what ``python -m train`` uses; ``{}`` = XLA's defaults).
    """
    if builder == "train":
        state, step, to_global, graphdef, mesh = jax_step_from_train(cfg)
    elif builder == "local":
        state, step, to_global, graphdef, mesh = jax_step_local(cfg)
    else:
        raise ValueError(f"builder must be 'train' or 'local', got {builder!r}")
    n_dev = mesh.shape["data"]
    if int(cfg.train.batch_size) % n_dev:
        raise ValueError(f"--batch-size {cfg.train.batch_size} must be divisible by the {n_dev} local devices")
    # A host copy of the initial parameters (the state is donated by the first step).
    init_model = nnx.merge(graphdef, jax.device_get(state["params"]))
    batch = to_global(batch_np)
    options = compiler_options() if options is None else dict(options)
    step = step.lower(state, batch).compile(options)
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], batch)
        return holder["state"]["params"], metrics

    return run, init_model, {"devices": n_dev, "builder": builder, "options": options, "executable": step}


# ----------------------------------------------------------------------------------------------------- PyTorch


def sync(device) -> None:
    """``torch.cuda.synchronize(device)`` on CUDA: a timed torch step ends when its kernels have."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_torch_runner(cfg, batch_np: dict[str, np.ndarray], *, compiled: bool, device=None, init_model=None,
                      channels_last: bool = False):
    """Returns ``(run_one_step, model)``: one PyTorch train step per call (synchronised on CUDA).

    Every tensor of the step lives on ``device``: the inputs are moved there once, and the loss reference
    (``jaxdet.parity.torch_detection``) creates its own tensors on its input's device.

    Args:
      init_model: an NNX detector whose parameters are copied in (else PyTorch's own init).
      channels_last: NHWC memory format for the convolutions (often faster on CUDA).
    """
    device = device or _timing.torch_device()
    model = build_torch_detector(cfg.model, num_classes=_num_classes(cfg))
    if init_model is not None:
        load_nnx_params(model, init_model)
    model = model.to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    images = nchw(batch_np["image"]).to(device)
    images = images.contiguous(memory_format=fmt)
    boxes = torch.from_numpy(batch_np["boxes"]).to(device)
    classes = torch.from_numpy(batch_np["classes"]).to(device)
    valid = torch.from_numpy(batch_np["valid"]).to(device)
    kw = head_loss_options(cfg)

    def loss_part(raw, boxes, classes, valid):
        return yolov1_head_loss_torch(raw, boxes, classes, valid, **kw)[0]

    def forward_loss(images, boxes, classes, valid):
        return loss_part(model(images), boxes, classes, valid)

    fn = torch.compile(forward_loss) if compiled else forward_loss

    opt, update = torch_adamw(list(model.parameters()), cfg.train, fused=device.type == "cuda")

    def run():
        opt.zero_grad(set_to_none=True)
        loss = fn(images, boxes, classes, valid)
        loss.backward()
        update()
        sync(device)

    return run, model


# ------------------------------------------------------------------------------------------------------- report

#: (global batch, image side) of the full run: the 64 px YOLOv1 detector at four batch sizes, and a 256 px model.
CASES: tuple[tuple[int, int], ...] = ((16, 64), (32, 64), (64, 64), (128, 64), (16, 256))
QUICK_CASES: tuple[tuple[int, int], ...] = ((4, 32), (2, 64))

JAX = "jaxdet"
JAX_DEFAULT = _timing.XLA_DEFAULTS
EAGER = "torch eager"
COMPILED = "torch.compile"


def run_case(args, batch_size: int, image_size: int, tdev) -> dict[str, Any]:
    """Builds every contender for one (batch, image size) and times them interleaved."""
    cfg = load_config(batch_size=batch_size, image_size=image_size, config=args.config)
    batch_np = make_batch(cfg)
    runs, compile_s = {}, {}
    t0 = time.perf_counter()
    runs[JAX], init_model, info = make_jax_runner(cfg, batch_np, builder=args.step_builder)
    compile_s[JAX] = time.perf_counter() - t0
    if not args.no_default_options:
        t0 = time.perf_counter()
        built = _timing.build_with_xla_defaults(
            lambda options: make_jax_runner(cfg, batch_np, builder=args.step_builder, options=options),
            info["options"])
        if built is not None:
            runs[JAX_DEFAULT] = built[0]
            compile_s[JAX_DEFAULT] = time.perf_counter() - t0
    contenders = [(EAGER, False)] + ([] if args.no_compile else [(COMPILED, True)])
    n_params = 0
    for label, compiled in contenders:
        runs[label], model = make_torch_runner(cfg, batch_np, compiled=compiled, device=tdev, init_model=init_model,
                                               channels_last=args.channels_last)
        n_params = sum(p.numel() for p in model.parameters())
    timings = _timing.time_interleaved(runs, repeats=args.repeats, first_extra=compile_s)
    row = {"batch": batch_size, "image": image_size, "timings": timings, "cfg": cfg, "info": info,
           "n_params": n_params, "init_model": init_model, "batch_np": batch_np}
    print(_case_line(row), flush=True)
    return row


def _case_line(row) -> str:
    return f"batch {row['batch']}, {row['image']} px: " + ", ".join(
        f"{name} {tm.median_s * 1e3:.2f} ms" for name, tm in row["timings"].items())


def _cell_ms(timings, name) -> str:
    return f"{timings[name].median_s * 1e3:.2f}" if name in timings else "—"


def _cell_ratio(timings, name) -> str:
    return f"{timings[name].median_s / timings[JAX].median_s:.2f}×" if name in timings else "—"


def cases_table(title: str, rows: list[dict[str, Any]], *, repeats: int, header: str) -> str:
    """Markdown table, one line per (batch, image size): median step of every contender and the ratios."""
    lines = [
        f"### {title}\n",
        header,
        (f"\nMedian of {repeats} rounds after 2 warm-up rounds; in each round every contender runs one step in turn "
         "(interleaved, so drift and other jobs' load fall on all alike). Ratio = contender step time / jaxdet step "
         "time (above 1: jaxdet is faster). images/s = batch / jaxdet's median step. First step (s): jaxdet's "
         "ahead-of-time compile + first step; torch.compile's first call.\n"),
        f"| batch × image | {JAX} (ms) | {JAX_DEFAULT} (ms) | {EAGER} (ms) | {COMPILED} (ms) | jaxdet images/s "
        "| vs XLA defaults | vs eager | vs compile | first step jaxdet / compile (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        t = row["timings"]
        first_c = f"{t[COMPILED].first_s:.1f}" if COMPILED in t else "—"
        lines.append(
            f"| {row['batch']} × {row['image']} px | {_cell_ms(t, JAX)} | {_cell_ms(t, JAX_DEFAULT)} | "
            f"{_cell_ms(t, EAGER)} | {_cell_ms(t, COMPILED)} | {row['batch'] / t[JAX].median_s:,.0f} | "
            f"{_cell_ratio(t, JAX_DEFAULT)} | {_cell_ratio(t, EAGER)} | {_cell_ratio(t, COMPILED)} | "
            f"{t[JAX].first_s:.1f} / {first_c} |")
    return "\n".join(lines) + "\n"


def _device_header(cfg, info, tdev, n_params: int, losses: dict[str, float], args, load: tuple) -> str:
    m = cfg.model
    jdev = jax.devices()[0]
    return (
        f"Model: `configs/{args.config}.py` detector (widths {tuple(m.widths)}, depths {tuple(m.depths)}, head "
        f"{m.head_width}, GroupNorm, S={m.grid_size}, B={m.num_boxes}, C={m.num_classes}; {n_params:,} "
        f"parameters), YOLOv1 loss (iou_target={cfg.loss.iou_target!r}), AdamW + clip {cfg.train.grad_clip}, "
        f"float32; one fixed batch of synthetic shapes (data loading not timed).\n\n"
        f"Device: jax {jax.__version__} on {info['devices']} × {jdev.device_kind} ({jdev.platform}; step "
        f"builder `{info['builder']}`); torch {torch.__version__} on {_timing.torch_device_name(tdev)}. Host: "
        f"{_timing.host()}; load average {load[0]:.2f} at the start, "
        f"{load[1]:.2f} at the end{_timing.shared_cpu_note(*load)}.\n\n"
        f"jaxdet compiler options (`jaxdet.compile_options.compiler_options()`): `{info['options'] or {}}`. "
        f"{_timing.XLA_DEFAULTS_NOTE}\n\n"
        f"Same initial parameters on both sides; loss at the initial parameters (float32, CPU, batch "
        f"{cfg.train.batch_size} × {cfg.model.image_size} px): jaxdet {losses['jaxdet']:.6f}, torch "
        f"{losses['torch']:.6f}.\n"
    )


def parse_cases(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(tuple(int(v) for v in item.split("x")) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cases: expected BATCHxSIZE[,BATCHxSIZE...], got {text!r}") from None


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="yolov1_shapes", help="module under configs/ (yolov1 head)")
    p.add_argument("--cases", type=parse_cases, default=None,
                   help="BATCHxSIZE list, e.g. 32x64,16x256 (default: "
                   + ",".join(f"{b}x{i}" for b, i in CASES) + ")")
    p.add_argument("--batch-size", type=int, default=None, help="one case of this global batch (with --image-size)")
    p.add_argument("--image-size", type=int, default=None, help="one case of this image side (with --batch-size)")
    p.add_argument("--step-builder", choices=("train", "local"), default="train",
                   help="jaxdet step from train/step.py (default) or the self-contained equivalent")
    p.add_argument("--no-default-options", action="store_true",
                   help="skip the jaxdet contender with XLA's defaults")
    p.add_argument("--torch-device", default=None,
                   help="torch device (default: $JAXDET_TORCH_DEVICE, else cuda when available, else cpu)")
    p.add_argument("--channels-last", action="store_true", help="torch channels_last memory format")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's, all cores)")


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.batch_size or args.image_size:
        if args.cases:
            raise SystemExit("--cases cannot be combined with --batch-size/--image-size")
        args.cases = ((args.batch_size or 32, args.image_size or 64),)
    if args.cases is None:
        args.cases = QUICK_CASES if args.quick else CASES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _timing.parse_args(__doc__, add_arguments=_add_arguments, check_args=_check_args, argv=argv)


def run(args: argparse.Namespace) -> str:
    tdev = _timing.torch_device(args.torch_device)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    rows = [run_case(args, b, i, tdev) for b, i in args.cases]
    load = (args.load_start, os.getloadavg()[0])
    first = rows[0]
    losses = _initial_losses(first["cfg"], first["batch_np"], first["init_model"])
    header = _device_header(first["cfg"], first["info"], tdev, first["n_params"], losses, args, load)
    return cases_table("Train step: YOLOv1 detector, forward + loss + backward + AdamW "
                       "(benchmarks/train_step.py)", rows, repeats=args.repeats, header=header)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="train_step.md", add_arguments=_add_arguments,
                        check_args=_check_args, argv=argv)


def _initial_losses(cfg, batch_np, init_model) -> dict[str, float]:
    """The loss of the initial parameters on the batch, both sides (CPU torch, float32): same computation."""
    jbatch = {k: jnp.asarray(v) for k, v in batch_np.items()}
    jl = make_head(cfg).loss(init_model(jbatch["image"]), jbatch, step=jnp.int32(0), state={})[0]
    tm = load_nnx_params(build_torch_detector(cfg.model, num_classes=_num_classes(cfg)), init_model)
    with torch.no_grad():
        raw = tm(nchw(batch_np["image"]))
        tl, _ = yolov1_head_loss_torch(raw, *(torch.from_numpy(batch_np[k]) for k in ("boxes", "classes", "valid")),
                                       **head_loss_options(cfg))
    return {"jaxdet": float(jl), "torch": float(tl)}


if __name__ == "__main__":
    main()
