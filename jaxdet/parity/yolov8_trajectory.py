"""Do jaxdet's YOLOv8n train step and ultralytics' follow the same SGD trajectory, step after step?

``benchmarks/yolo_train_step.py`` runs both libraries' step many times from the same weights on one fixed
batch, and after 14 steps their float32 losses were 1.5 % apart between two XLA compiler options, 4.5 % between
ultralytics eager and compiled, and 14 % between the libraries. This check tells a systematic difference
from float rounding amplified by the training dynamics. It runs, from the same ultralytics weights
(:func:`jaxdet.parity.torch_yolov8.ultralytics_weights`) on the same batch, ``--steps`` steps of the benchmark's
SGD (:data:`jaxdet.parity.train_twins.SGD`: momentum 0.937, Nesterov, weight decay 5e-4, lr 0.01) three times:

- **jaxdet**: ``train.step.make_train_step`` with the ``yolov8`` head's loss (what ``python -m train`` runs);
- **ultralytics**: ``DetectionModel`` in train mode + ``v8DetectionLoss(...)[0].sum() / B`` + ``torch.optim.SGD``;
- **jaxdet, perturbed**: jaxdet again from weights multiplied by ``1 + ε·N(0, 1)``, with ε the size of a few
  roundings: 1e-12 in float64 and 1e-6 in float32 (``--perturb64``, ``--perturb32``).

It does so in float64, and in float32 for comparison. The ground-truth boxes reach both sides in the run's dtype,
including ultralytics' normalised cxcywh labels. The benchmark builds those in float32, a rounding of its own.
After each step the script reports the largest absolute difference over all trained parameters, between jaxdet
and ultralytics and between jaxdet and its perturbed copy.

How to read the table: if the two libraries computed different functions, their float64 difference would
start large and stay there. If they compute the same one, it starts at float64 rounding and then grows at
the rate the perturbed copy's difference grows. That rate is the dynamics' own amplification, whatever the
libraries.

    python -m jaxdet.parity.yolov8_trajectory            # writes benchmarks/results/yolov8_trajectory.md
    python -m jaxdet.parity.yolov8_trajectory --steps 20 --batch 4 --image-size 128 --out /tmp/t.md
    python -m jaxdet.parity.yolov8_trajectory --quick --out /tmp/t.md   # 3 steps

Without ``--out`` the table goes to the checkout's ``benchmarks/results/yolov8_trajectory.md`` (beside the timing
results), and only where jaxdet runs from a checkout that has that folder; ``--quick`` writes nothing without
``--out``. ``tests/parity/test_yolov8_trajectory.py`` runs four float64 steps.

This module imports torch, ultralytics, ``train`` and ``configs`` at the top: import it lazily from library code.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # read by ultralytics when it is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import ultralytics  # noqa: E402
from ultralytics.utils.loss import v8DetectionLoss  # noqa: E402

from jaxdet.models import export_ultralytics, load_ultralytics  # noqa: E402
from jaxdet.parity.torch_yolov8 import default_dtype, torch_batch, train_mode_model, ultralytics_weights  # noqa: E402
from jaxdet.parity.train_twins import (  # noqa: E402
    NUM_CLASSES,
    make_batch,
    make_torch_optimizer,
    make_tx,
    yolov8n_config,
)
from train import model_state as model_state_lib  # noqa: E402
from train import step as step_lib  # noqa: E402
from train.task import make_head  # noqa: E402

DTYPES = ("float64", "float32")
#: where the table goes without ``--out``: the checkout's benchmarks/results/ (beside jaxdet/), when there is one.
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "yolov8_trajectory.md"


def _weights(weights, dtype: str, perturb: float, seed: int) -> dict[str, np.ndarray]:
    """The state dict as numpy arrays of ``dtype``; float tensors other than the DFL projection times
    ``1 + perturb·N(0, 1)`` when ``perturb`` is non-zero."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, tensor in weights.items():
        value = tensor.numpy()
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(dtype)
            if perturb and ".dfl." not in name:
                value = value * (1 + perturb * rng.standard_normal(value.shape))
        out[name] = value
    return out


def jax_trajectory(cfg, weights, batch_np: dict[str, np.ndarray], *, steps: int, dtype: str,
                   perturb: float = 0.0, seed: int = 1) -> tuple[list[float], list[dict[str, np.ndarray]]]:
    """``(losses, params)`` after each of ``steps`` jaxdet train steps: the logged loss of the step and the
    model's ultralytics state dict (``export_ultralytics``: every parameter and BatchNorm statistic under its
    ultralytics name and layout)."""
    with jax.enable_x64(dtype == "float64"):
        head = make_head(cfg)
        tx, lr = make_tx(cfg)
        state_dict = _weights(weights, dtype, perturb, seed)
        graphdef, init_fn = step_lib.make_init_fn(
            lambda rngs: load_ultralytics(state_dict, param_dtype=jnp.dtype(dtype)), tx, seed=0,
            init_loss_state=head.init_state)
        state = init_fn()
        step = jax.jit(step_lib.make_train_step(graphdef, loss_fn=head.loss, tx=tx, lr_schedule=lr))
        # uint8 images: the model scales them
        batch = {k: (v.astype(dtype) if k == "boxes" else v) for k, v in batch_np.items()}
        losses, params = [], []
        for _ in range(steps):
            state, metrics = step(state, batch)
            losses.append(float(metrics["loss"]))
            params.append(export_ultralytics(model_state_lib.merge_model(graphdef, state), as_torch=False))
    return losses, params


def torch_trajectory(cfg, weights, batch_np: dict[str, np.ndarray], *, steps: int, dtype: str
                     ) -> tuple[list[float], list[dict[str, np.ndarray]]]:
    """``(losses, params)`` after each of ``steps`` ultralytics train steps (forward, ``v8DetectionLoss / B``,
    backward, ``torch.optim.SGD``), every trained parameter by name."""
    tdtype = getattr(torch, dtype)
    with default_dtype(tdtype):  # ultralytics' loss makes its target tensors in the default dtype
        model = train_mode_model(weights, "cpu").to(tdtype)
        criterion = v8DetectionLoss(model)
        images, gt = torch_batch(dict(batch_np, boxes=batch_np["boxes"].astype(dtype)), "cpu")
        images = images.to(tdtype)
        trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        opt, update = make_torch_optimizer([p for _, p in trained], cfg)
        losses, params = [], []
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(images), gt)[0].sum() / images.shape[0]
            loss.backward()
            update()
            losses.append(float(loss.detach()))
            params.append({name: p.detach().numpy().copy() for name, p in trained})
    return losses, params


def max_difference(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """The largest absolute difference over every parameter of ``reference`` (``ours`` must hold them all)."""
    missing = sorted(set(reference) - set(ours))
    if missing:
        raise ValueError(f"parameters missing on the jaxdet side: {missing[:5]}")
    return max(float(np.max(np.abs(ours[k].astype(np.float64) - v.astype(np.float64))))
               for k, v in reference.items())


def run_dtype(cfg, weights, batch_np, *, steps: int, dtype: str, perturb: float) -> list[dict[str, float]]:
    """One row per step: both libraries' losses and the two differences over the trained parameters (the
    names torch trains; jaxdet's state dicts also hold the BatchNorm statistics)."""
    j_loss, j_params = jax_trajectory(cfg, weights, batch_np, steps=steps, dtype=dtype)
    t_loss, t_params = torch_trajectory(cfg, weights, batch_np, steps=steps, dtype=dtype)
    _, p_params = jax_trajectory(cfg, weights, batch_np, steps=steps, dtype=dtype, perturb=perturb)
    initial = {k: v.numpy() for k, v in weights.items() if k in t_params[0]}
    rows = []
    for i in range(steps):
        rows.append({"step": i + 1, "jax_loss": j_loss[i], "torch_loss": t_loss[i],
                     "vs_torch": max_difference(j_params[i], t_params[i]),
                     "vs_perturbed": max_difference(j_params[i], {k: p_params[i][k] for k in t_params[i]}),
                     "moved": max_difference(t_params[i], initial)})
        print(f"{dtype} step {i + 1}: " + ", ".join(f"{k} {v:.3e}" for k, v in rows[-1].items() if k != "step"),
              flush=True)
    return rows


def table(dtype: str, perturb: float, rows: list[dict[str, float]]) -> str:
    lines = [f"#### {dtype} (perturbed copy: weights × (1 + {perturb:g}·N(0, 1)))", "",
             "| step | loss, jaxdet | loss, ultralytics | max \\|Δθ\\| jaxdet − ultralytics | "
             "max \\|Δθ\\| jaxdet − jaxdet perturbed | max \\|θ − θ₀\\| (ultralytics) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['jax_loss']:.7f} | {r['torch_loss']:.7f} | {r['vs_torch']:.2e} | "
                     f"{r['vs_perturbed']:.2e} | {r['moved']:.2e} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jaxdet.parity.yolov8_trajectory",
                                description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=14, help="SGD steps per trajectory")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--perturb64", type=float, default=1e-12, help="float64: relative weight perturbation, third run")
    p.add_argument("--perturb32", type=float, default=1e-6, help="float32: relative weight perturbation, third run")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated subset of float64,float32")
    p.add_argument("--quick", action="store_true", help="smoke test: 3 steps")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown output (default: the checkout's benchmarks/results/yolov8_trajectory.md)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = 3
    args.dtypes = tuple(d for d in args.dtypes.split(",") if d)
    bad = [d for d in args.dtypes if d not in DTYPES]
    if bad or not args.dtypes:
        p.error(f"--dtypes must be a comma-separated subset of {DTYPES}, got {bad or args.dtypes}")
    return args


def write_results(markdown: str, args: argparse.Namespace) -> Path | None:
    """Writes the table to ``--out``, else to :data:`RESULTS` where that folder exists; ``--quick`` without
    ``--out`` writes nothing."""
    path = args.out or (None if args.quick or not RESULTS.parent.is_dir() else RESULTS)
    if path is None:
        print("\nnot written (pass --out to keep the table)")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    print(f"\nwrote {path}")
    return path


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    cfg = yolov8n_config(batch=args.batch, image_size=args.image_size, optimizer="sgd")
    batch_np = make_batch(cfg)
    weights = ultralytics_weights(NUM_CLASSES)
    perturb = {"float64": args.perturb64, "float32": args.perturb32}
    tables = [table(d, perturb[d], run_dtype(cfg, weights, batch_np, steps=args.steps, dtype=d, perturb=perturb[d]))
              for d in args.dtypes]
    header = (
        "### YOLOv8n SGD trajectory: jaxdet vs ultralytics, step by step (jaxdet/parity/yolov8_trajectory.py)\n\n"
        f"`yolov8n.yaml`, {NUM_CLASSES} classes, the same seeded random ultralytics weights on every side, "
        f"one fixed batch of {args.batch} synthetic {args.image_size}-px images "
        f"({int(batch_np['valid'].sum())} objects), {args.steps} steps of SGD (lr 0.01, momentum 0.937, Nesterov, "
        f"weight decay 5e-4) on that batch. Third run: jaxdet from slightly perturbed weights. "
        "Δθ: the largest absolute difference over all trained parameters after the step; the loss is the step's "
        "own (before its update; jaxdet logs it in float32).\n\n"
        f"jax {jax.__version__}, torch {torch.__version__}, ultralytics {ultralytics.__version__}, on "
        f"{jax.default_backend()}; host {platform.machine()}.\n\n"
        f"Command: `python -m jaxdet.parity.yolov8_trajectory{' ' + ' '.join(argv) if argv else ''}`.\n\n"
    )
    markdown = header + "\n\n".join(tables) + "\n"
    print()
    print(markdown)
    write_results(markdown, args)
    return markdown


if __name__ == "__main__":
    main(sys.argv[1:])
