"""Where PyTorch's YOLOv1 train step is faster than jaxdet's: both profiled op by op on one CPU core.

``benchmarks/train_step.py`` times the whole step. This script splits it into parts on both sides, so the gap
at large batches can be put on the parts that make it. The process, every thread it has, is pinned to one core
(``--cpu``) before jax or torch starts a thread pool, and torch runs one thread. So every op runs alone, and the
op times add up to the step: no two ops overlap, and no convolution runs on threads the profiler does not see.
On two cores, ``jax.profiler`` sees little more than the dispatch of XLA:CPU's large, multi-threaded
convolutions.

For each case (batch × image of ``configs/yolov1_shapes.py``) the jaxdet step (``python -m train``'s, with
jaxdet's compiler options), torch eager and ``torch.compile`` of ``benchmarks/train_step.py`` are timed
interleaved, then profiled:

- jaxdet: ``jax.profiler`` events summed per HLO instruction (:func:`.train_step_profile.profile_ops`). The parts are
  the convolutions (forward; backward = input and kernel gradients), the **layout copies** (``copy`` and
  ``transpose`` fusions: mostly the ``[N, H, W, C] → [C, H, W, N]``-style copies XLA:CPU makes of each
  activation and gradient for a kernel-gradient convolution), the other fusions (normalisation, activations,
  loss, optimizer) and YNNPACK fusions (reductions and dots).
- torch: ``torch.profiler`` self time per aten op. The parts are ``aten::mkldnn_convolution`` (forward),
  ``aten::convolution_backward`` (both gradients, layout handling inside oneDNN), and everything else (eager
  aten kernels, or inductor's fused C++ kernels under ``torch.compile``).

    python -m benchmarks.investigations.train_step_gap       # writes benchmarks/results/train_step_gap.md
    python -m benchmarks.investigations.train_step_gap --cases 32x64 --out /tmp/gap.md
    python -m benchmarks.investigations.train_step_gap --quick --out /tmp/gap.md   # batch 2 × 32 px, eager only
"""

from __future__ import annotations

import argparse
import collections
import os
import platform

import jax
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks import _timing
from benchmarks import train_step as ts
from benchmarks.investigations import train_step_profile as tp
from jaxdet.parity.train_twins import make_batch


def _pin(cpu: int) -> None:
    """Restricts this process, every thread it has and every thread it starts from now on, to CPU ``cpu``."""
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("train_step_gap.py pins itself to one core with os.sched_setaffinity (Linux only)")
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise SystemExit(f"--cpu {cpu} is not one of this process's CPUs {sorted(allowed)}")
    for tid in os.listdir("/proc/self/task"):  # the threads the imports started (e.g. OpenBLAS's)
        os.sched_setaffinity(int(tid), {cpu})
    os.sched_setaffinity(0, {cpu})


QUICK = "smoke test: batch 2 × 32 px, 2 rounds, no torch.compile"
JAX_PARTS = ("convolution, forward", "convolution, backward", "layout copies", "other fusions", "YNNPACK fusion",
             "other")
TORCH_PARTS = ("convolution, forward", "convolution, backward", "everything else")
_TORCH_CONV = {"aten::mkldnn_convolution": "convolution, forward",
               "aten::convolution_backward": "convolution, backward"}


def jax_parts(profile: dict[str, dict[str, float]]) -> dict[str, float]:
    """``train_step_profile.profile_ops``'s per-op times (ms per step) summed into :data:`JAX_PARTS`."""
    parts: dict[str, float] = collections.defaultdict(float)
    for name, ms in profile["op"].items():
        kind = profile["kinds"][name]
        if kind == "elementwise / layout fusions":
            kind = "layout copies" if name.startswith(("copy", "transpose")) else "other fusions"
        parts[kind] += ms
    return {k: parts.get(k, 0.0) for k in JAX_PARTS}


def torch_parts(events, steps: int) -> dict[str, float]:
    """Self CPU time (ms per step) of ``torch.profiler``'s ``key_averages()`` summed into :data:`TORCH_PARTS`."""
    parts: dict[str, float] = collections.defaultdict(float)
    for e in events:
        parts[_TORCH_CONV.get(e.key, "everything else")] += e.self_cpu_time_total / 1e3 / steps
    return {k: parts.get(k, 0.0) for k in TORCH_PARTS}


def profile_torch(run, steps: int) -> dict[str, float]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            run()
    return torch_parts(prof.key_averages(), steps)


def run_case(args, batch_size: int, image_size: int) -> dict:
    cfg = ts.load_config(batch_size=batch_size, image_size=image_size)
    batch_np = make_batch(cfg)
    jax_run, init_model, info = ts.make_jax_runner(cfg, batch_np)
    runs = {"jaxdet": jax_run, "torch eager": ts.make_torch_runner(cfg, batch_np, compiled=False,
                                                                   init_model=init_model)[0]}
    if not args.no_compile:
        runs["torch.compile"] = ts.make_torch_runner(cfg, batch_np, compiled=True, init_model=init_model)[0]
    timings = _timing.time_interleaved(runs, repeats=args.repeats)
    parts = {"jaxdet": jax_parts(tp.profile_ops(jax_run, info["executable"].as_text(), args.profile_steps))}
    for name in runs:
        if name != "jaxdet":
            parts[name] = profile_torch(runs[name], args.profile_steps)
    print(f"batch {batch_size} × {image_size} px: "
          + ", ".join(f"{k} {t.median_s * 1e3:.1f} ms" for k, t in timings.items()), flush=True)
    return {"case": (batch_size, image_size), "timings": timings, "parts": parts}


def case_table(row: dict) -> str:
    b, s = row["case"]
    names = list(row["timings"])
    lines = [f"#### batch {b} × {s} px", "", "| ms per step, one core | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names),
             "| **step (wall, median, no profiler)** | "
             + " | ".join(f"**{row['timings'][k].median_s * 1e3:.1f}**" for k in names) + " |"]
    labels = JAX_PARTS + TORCH_PARTS[2:]
    for label in labels:
        cells = [f"{row['parts'][k][label]:.1f}" if label in row["parts"][k] else "" for k in names]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| all profiled ops | " + " | ".join(f"{sum(row['parts'][k].values()):.1f}" for k in names) + " |")
    return "\n".join(lines) + "\n"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", default="32x64,128x64", help="comma-separated BATCHxIMAGE, e.g. 32x64,128x64")
    p.add_argument("--cpu", type=int, default=0, help="the CPU to pin the process to")
    p.add_argument("--profile-steps", type=int, default=5, help="profiled steps per contender")


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.quick:
        args.cases, args.repeats, args.profile_steps, args.no_compile = "2x32", 2, 2, True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _timing.parse_args(__doc__, add_arguments=_add_arguments, check_args=_check_args, repeats=10,
                              quick=QUICK, argv=argv)


def run(args: argparse.Namespace) -> str:
    _pin(args.cpu)  # before jax and torch create their thread pools
    torch.set_num_threads(1)
    rows = [run_case(args, b, s) for b, s in ts.parse_cases(args.cases)]
    return "\n".join([
        "### Train step op by op on one core: jaxdet vs PyTorch (benchmarks/investigations/train_step_gap.py)", "",
        "Model and step: `configs/yolov1_shapes.py`, the train step of `benchmarks/train_step.py` (forward + loss + "
        f"backward + AdamW) on both sides. jax {jax.__version__}, torch {torch.__version__} (1 thread); "
        f"host {platform.machine()}, the process pinned to CPU {args.cpu} of {os.cpu_count()}; load average "
        f"{args.load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.", "",
        f"{_timing.options_line()} Step: median of {args.repeats} interleaved rounds. Parts: {args.profile_steps} "
        "profiled steps per contender, ms per step (jaxdet: `jax.profiler` per HLO instruction; torch: "
        "`torch.profiler` self CPU time per aten op; the script's docstring says what each part holds). On one "
        "core nothing overlaps, so the parts add up to about the step.", "",
        *[case_table(row) for row in rows],
        f"Command: `python -m benchmarks.investigations.train_step_gap --cases {args.cases}`.", ""])


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="train_step_gap.md", add_arguments=_add_arguments,
                        check_args=_check_args, repeats=10, quick=QUICK, argv=argv)


if __name__ == "__main__":
    main()
