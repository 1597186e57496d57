"""Where the YOLOv1 detector's XLA train step spends its time, op by op, under each CPU tuning choice.

For each case (``--cases``, batch × image size of ``configs/yolov1_shapes.py``) the script builds the train step
of ``benchmarks/train_step.py`` (the real ``python -m train`` step) four ways, the 2 × 2 of jaxdet's two XLA:CPU
tunings:

- compiler options: ``jaxdet.compile_options.compiler_options()`` (convolutions on XLA's own kernels) or ``{}``
  (XLA's defaults: convolutions as YNNPACK fusions);
- stride-2 input gradient: jaxdet's space-to-depth rewrite (``jaxdet.models.conv``) or XLA's own
  (traced inside ``xla_stride2_gradient()``).

It times the four interleaved (median step, no profiler), then runs each for ``--profile-steps`` steps under
``jax.profiler.trace`` and sums the trace's per-thunk events by the HLO instruction they execute (the names
are looked up in the executable's optimized HLO). Ops are grouped as

- *convolution, forward* / *convolution, backward*: XLA convolutions outside / inside a transpose (gradient)
  of the jaxpr, by the instruction's ``op_name`` metadata. Convolutions without metadata are XLA's rewrites
  of weight gradients (e.g. ``convolution-window-dilated``, a kernel-shaped output) and count as backward;
- *YNNPACK fusion*: ``__ynn_fusion`` custom fusions (dots, reductions and, under XLA's defaults, convolutions);
- *elementwise / layout fusions*: XLA loop and input fusions, copies and transposes;
- *other*: everything else (reductions, gathers, scatters, ...).

The op times are thread time: XLA:CPU runs independent thunks on both cores at once and splits a convolution
over its intra-op threads, so the column sums are not the step's wall time. Also reported: the host time of
one dispatch of an executable that takes and returns the same state and batch and computes nothing (the
pytree flattening and argument handling every step pays).

    python -m benchmarks.investigations.train_step_profile     # writes benchmarks/results/train_step_profile.md
    python -m benchmarks.investigations.train_step_profile --cases 16x64 --out /tmp/p.md
    python -m benchmarks.investigations.train_step_profile --quick --out /tmp/p.md  # smoke test, tiny sizes
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import jax

from benchmarks import _timing
from benchmarks import train_step as ts
from jaxdet.compile_options import compiler_options
from jaxdet.models.conv import xla_stride2_gradient
from jaxdet.parity.train_twins import make_batch

QUICK = "smoke test: batch 2 × 32 px, 3 rounds"
CATEGORIES = ("convolution, forward", "convolution, backward", "YNNPACK fusion", "elementwise / layout fusions",
              "other")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = \S+ (\w[\w\-]*)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def variants():
    """``{label: (compiler options, use XLA's stride-2 input gradient)}``, jaxdet's choice first."""
    options = compiler_options()
    return {
        "jaxdet (options + rewrite)": (options, False),
        "options, XLA's stride-2 gradient": (options, True),
        "XLA default options + rewrite": ({}, False),
        "XLA defaults": ({}, True),
    }


def instruction_categories(hlo_text: str) -> dict[str, str]:
    """``{instruction name: category}`` for every instruction of an optimized HLO module."""
    out = {}
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, opcode = m.group(1), m.group(2)
        op_name = _OP_NAME.search(line)
        # forward: traced from the model's own conv; else a gradient or XLA's rewrite of one
        if opcode == "convolution":
            forward = op_name is not None and "transpose(" not in op_name.group(1)
            out[name] = "convolution, forward" if forward else "convolution, backward"
        elif "__ynn_fusion" in line:
            out[name] = "YNNPACK fusion"
        elif opcode in ("fusion", "copy", "transpose", "bitcast", "broadcast"):
            out[name] = "elementwise / layout fusions"
        else:
            out[name] = "other"
    return out


def profile_ops(run, hlo_text: str, steps: int) -> dict[str, dict[str, float]]:
    """Runs ``run()`` ``steps`` times under the JAX profiler; per-step thread time (ms) by category and by op."""
    categories = instruction_categories(hlo_text)
    with tempfile.TemporaryDirectory() as log_dir:
        with jax.profiler.trace(log_dir):
            for _ in range(steps):
                jax.block_until_ready(run())
        trace_file = next(Path(log_dir).rglob("*.trace.json.gz"))
        events = json.load(gzip.open(trace_file))["traceEvents"]
    by_category: dict[str, float] = collections.defaultdict(float)
    by_op: dict[str, float] = collections.defaultdict(float)
    for e in events:
        cat = categories.get(e.get("name", "")) if e.get("ph") == "X" else None
        if cat is not None:
            by_category[cat] += e["dur"] / 1e3 / steps
            by_op[e["name"]] += e["dur"] / 1e3 / steps
    return {"category": dict(by_category), "op": dict(by_op), "kinds": categories}


def dispatch_ms(cfg, batch_np, repeats: int = 200) -> float:
    """Host time (ms) of one step of an executable that returns the train state untouched (donated)."""
    state, _, to_global, _, _ = ts.jax_step_from_train(cfg)
    batch = to_global(batch_np)
    nothing = jax.jit(lambda s, b: s, donate_argnums=(0,)).lower(state, batch).compile()
    for _ in range(10):
        state = nothing(state, batch)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(repeats):
        state = nothing(state, batch)
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / repeats * 1e3


def run_case(args, batch_size: int, image_size: int) -> dict:
    cfg = ts.load_config(batch_size=batch_size, image_size=image_size)
    batch_np = make_batch(cfg)
    runs, hlo = {}, {}
    for label, (options, xla_gradient) in variants().items():
        with xla_stride2_gradient() if xla_gradient else contextlib.nullcontext():
            run, _, info = ts.make_jax_runner(cfg, batch_np, options=options)
        runs[label], hlo[label] = run, info["executable"].as_text()
    timings = _timing.time_interleaved(runs, repeats=args.repeats)
    profiles = {label: profile_ops(run, hlo[label], args.profile_steps) for label, run in runs.items()}
    return {"case": (batch_size, image_size), "timings": timings, "profiles": profiles,
            "dispatch_ms": dispatch_ms(cfg, batch_np)}


def case_tables(row: dict, top: int) -> str:
    b, s = row["case"]
    labels = list(row["timings"])
    lines = [f"#### batch {b} × {s} px (host dispatch of the state alone: {row['dispatch_ms']:.2f} ms per step)", "",
             "| ms per step | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels),
             "| **step (wall, median, no profiler)** | "
             + " | ".join(f"**{row['timings'][k].median_s * 1e3:.2f}**" for k in labels) + " |"]
    for cat in CATEGORIES:
        lines.append(f"| {cat} (thread time) | "
                     + " | ".join(f"{row['profiles'][k]['category'].get(cat, 0.0):.2f}" for k in labels) + " |")
    lines.append("| all ops (thread time) | "
                 + " | ".join(f"{sum(row['profiles'][k]['category'].values()):.2f}" for k in labels) + " |")
    ours = row["profiles"][labels[0]]
    lines += ["", f"Top {top} ops of `{labels[0]}` (thread time per step):", "", "| op | kind | ms |", "|---|---|---:|"]
    for name, ms in sorted(ours["op"].items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| `{name}` | {ours['kinds'][name]} | {ms:.3f} |")
    return "\n".join(lines) + "\n"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", default="16x64,128x64", help="comma-separated BATCHxIMAGE, e.g. 16x64,128x64")
    p.add_argument("--profile-steps", type=int, default=10, help="steps per variant under the profiler")
    p.add_argument("--top", type=int, default=12, help="ops listed per case")


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.quick:
        args.cases, args.repeats, args.profile_steps = "2x32", 3, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _timing.parse_args(__doc__, add_arguments=_add_arguments, check_args=_check_args, torch_compile=False,
                              quick=QUICK, argv=argv)


def run(args: argparse.Namespace) -> str:
    rows = [run_case(args, b, s) for b, s in ts.parse_cases(args.cases)]
    cfg = ts.load_config()
    return "\n".join([
        "### Train step profile: YOLOv1 detector, op by op (benchmarks/investigations/train_step_profile.py)", "",
        f"Model and step: `configs/yolov1_shapes.py`, the train step of `benchmarks/train_step.py` "
        f"(S={cfg.model.grid_size}, widths {tuple(cfg.model.widths)}). jax {jax.__version__} on "
        f"{jax.devices()[0].platform}; host {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{args.load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.", "",
        f"{_timing.options_line()} Columns: the 2 × 2 of compiler options × stride-2 input gradient. Step times: "
        f"median of {args.repeats} interleaved rounds. Op times: {args.profile_steps} profiled steps per column, "
        "summed per HLO instruction from the `jax.profiler` trace (thread time: ops on the two cores overlap, so "
        "they do not add up to the wall time).", "",
        *[case_tables(row, args.top) for row in rows],
        f"Command: `python -m benchmarks.investigations.train_step_profile --cases {args.cases}`.", ""])


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="train_step_profile.md", add_arguments=_add_arguments,
                        check_args=_check_args, torch_compile=False, quick=QUICK, argv=argv)


if __name__ == "__main__":
    main()
