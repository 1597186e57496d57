"""Shared timing harness for the side-by-side benchmarks.

Every benchmark is a :class:`BenchSpec`: a name, a factory for the jaxdet step (a jitted forward + backward,
called with no arguments) and a factory for the PyTorch step (eager or ``torch.compile``). The harness times
each contender the same way (warm-up, then the median of ``repeats`` wall-clock runs) and renders one markdown
table with the ratios against PyTorch eager and torch.compile.

The PyTorch contenders run on :func:`torch_device` (``$JAXDET_TORCH_DEVICE``, else CUDA when available, else the
CPU); build their input tensors with :func:`to_torch`. JAX picks its default device (the GPU when present) by
itself. Every timed call of a step is followed by ``torch.cuda.synchronize()`` once CUDA is initialised, so
asynchronous CUDA kernels are inside the measured time.

Every timing script's command line is :func:`main`: the common flags (``--repeats``, ``--quick``, ``--no-compile``,
``--out``) and the script's own, then the script's ``run(args)``, whose markdown is printed and written to
``benchmarks/results/<name>.md`` (or ``--out``). The helpers :func:`host`, :func:`shared_cpu_note`,
:func:`torch_device_name` and :func:`cpu_model` word the machine the same way in every table's header.

torch is imported inside the functions that use it: the loader and label-cache benchmarks time jaxdet's side in
processes that must not load torch (its import and memory would be measured with them).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from jaxdet.compile_options import compiler_options
from jaxdet.models.conv import xla_stride2_gradient

RESULTS_DIR = Path(__file__).parent / "results"


def torch_device(name: str | None = None):
    """The device of the PyTorch contenders: ``name`` when given (a ``--torch-device`` flag), else
    ``$JAXDET_TORCH_DEVICE`` when set, else ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``."""
    import torch  # noqa: PLC0415 - lazy: label_cache's timed start-up processes import this module

    name = name or os.environ.get("JAXDET_TORCH_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_torch(array: np.ndarray):
    """A numpy array as a torch tensor on :func:`torch_device` (a copy there unless it is the CPU).

    Call ``.requires_grad_(True)`` on the result (it is a leaf), not before the move.
    """
    import torch  # noqa: PLC0415 - lazy: label_cache's timed start-up processes import this module

    return torch.from_numpy(np.ascontiguousarray(array)).to(torch_device())


def torch_device_label() -> str:
    """``"cuda:0 (NVIDIA H100 80GB HBM3)"`` or ``"cpu"``: the torch device named in the table headers."""
    import torch  # noqa: PLC0415 - lazy: label_cache's timed start-up processes import this module

    device = torch_device()
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def torch_device_name(device) -> str:
    """The GPU's name (``"NVIDIA H100 80GB HBM3"``) or ``"CPU (N thread(s))"``: a train step's torch device."""
    import torch  # noqa: PLC0415 - lazy: label_cache's timed start-up processes import this module

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} thread(s))"


def cpu_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def host() -> str:
    """``"x86_64, 2 cores"``: the processor and :func:`cpu_count`, as the tables' headers name the host."""
    return f"{platform.processor() or platform.machine()}, {cpu_count()} cores"


def shared_cpu_note(*loads: float) -> str:
    """``" (a CPU shared with other jobs)"`` when a load average above 1.5 was seen, else ``""``."""
    return " (a CPU shared with other jobs)" if max(loads) > 1.5 else ""


def cpu_model() -> str:
    """``lscpu``'s model name (else ``platform.processor()``, else the machine)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def jit(fn: Callable, **kwargs) -> Callable:
    """``jax.jit(fn, **kwargs)`` with ``jaxdet.compile_options.compiler_options()``, as the library compiles."""
    return jax.jit(fn, compiler_options=compiler_options(), **kwargs)


def options_line() -> str:
    """The header sentence naming the compiler options jaxdet's steps are compiled with."""
    return f"jaxdet compiler options (`jaxdet.compile_options.compiler_options()`): `{compiler_options() or {}}`."


#: label of the train-step contender built without jaxdet's CPU tuning (:func:`build_with_xla_defaults`).
XLA_DEFAULTS = "jaxdet, XLA defaults"
#: the header sentence that explains that contender.
XLA_DEFAULTS_NOTE = (f"The '{XLA_DEFAULTS}' column is the same step with XLA's defaults: compiled with `{{}}` and "
                     "XLA's own input gradient of stride-2 convolutions (`jaxdet.models.conv.xla_stride2_gradient`).")


def build_with_xla_defaults(make: Callable[[dict], Any], options: dict) -> Any | None:
    """``make({})`` traced inside ``xla_stride2_gradient()``: jaxdet's step without its CPU tuning (compiler
    options, stride-2 input gradient). None where that is the same step: no options and not the CPU."""
    if not options and jax.default_backend() != "cpu":
        return None
    with xla_stride2_gradient():
        return make({})


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """One row of a benchmark table.

    Attributes:
      name: row label, e.g. ``"CIoU loss, 134,400 pairs"``.
      make_jax: returns a no-argument callable running the jitted jaxdet forward + backward.
      make_torch: ``make_torch(compiled: bool)`` returns a no-argument callable running the PyTorch forward +
        backward, wrapped in ``torch.compile`` when ``compiled``. ``None`` when there is no PyTorch contender.
    """

    name: str
    make_jax: Callable[[], Callable[[], Any]]
    make_torch: Callable[[bool], Callable[[], Any]] | None


@dataclasses.dataclass(frozen=True)
class Timing:
    first_s: float  # first call, including tracing/compilation
    median_s: float  # median of the timed repeats after warm-up


def time_callable(step: Callable[[], Any], *, repeats: int, warmup: int = 2) -> Timing:
    """Times ``step`` and returns first-call and median times.

    Each call is followed by :func:`_block`: JAX results are waited for, and CUDA is synchronised when torch is
    imported and CUDA initialised (a torch step returns before its kernels finish).
    """
    start = time.perf_counter()
    _block(step())
    first = time.perf_counter() - start
    for _ in range(warmup):
        _block(step())
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(step())
        samples.append(time.perf_counter() - start)
    return Timing(first_s=first, median_s=statistics.median(samples))


def time_interleaved(runs: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 2,
                     first_extra: dict[str, float] | None = None) -> dict[str, Timing]:
    """Times every contender in round robin, one call each per round, so the machine's drift and other jobs'
    load fall on all of them alike; returns each one's first call and median of ``repeats`` rounds after
    ``warmup`` rounds. ``first_extra`` adds seconds (an ahead-of-time compile) to a contender's first call."""
    first = {}
    for name, run in runs.items():
        start = time.perf_counter()
        _block(run())
        first[name] = time.perf_counter() - start + (first_extra or {}).get(name, 0.0)
    for _ in range(warmup):
        for run in runs.values():
            _block(run())
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            _block(run())
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(first_s=first[name], median_s=statistics.median(v)) for name, v in samples.items()}


def _block(result: Any) -> None:
    if _is_jax_tree(result):
        jax.block_until_ready(result)
    _torch_cuda_sync()


def _torch_cuda_sync() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _is_jax_tree(result: Any) -> bool:
    return any(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(result))


def run_specs(specs: list[BenchSpec], *, repeats: int, compile_torch: bool = True) -> list[dict[str, Any]]:
    """Runs every spec's contenders in this process, interleaved (:func:`time_interleaved`), and returns one
    dict of timings per row."""
    rows = []
    for spec in specs:
        runs = {"jaxdet": spec.make_jax()}
        if spec.make_torch is not None:
            runs["eager"] = spec.make_torch(False)
            if compile_torch:
                runs["compiled"] = spec.make_torch(True)
        row: dict[str, Any] = {"name": spec.name, **time_interleaved(runs, repeats=repeats)}
        rows.append(row)
        print(_format_row(row), flush=True)
    return rows


def _ms(timing: Timing | None) -> str:
    return "—" if timing is None else f"{timing.median_s * 1e3:.2f}"


def _ratio(other: Timing | None, ours: Timing) -> str:
    return "—" if other is None else f"{other.median_s / ours.median_s:.2f}×"


def _format_row(row: dict[str, Any]) -> str:
    ours = row["jaxdet"]
    return (
        f"| {row['name']} | {_ms(ours)} | {_ms(row.get('eager'))} | {_ms(row.get('compiled'))} "
        f"| {_ratio(row.get('eager'), ours)} | {_ratio(row.get('compiled'), ours)} "
        f"| {ours.first_s:.2f} |"
    )


def markdown_table(title: str, rows: list[dict[str, Any]], *, repeats: int) -> str:
    """Renders the rows as a markdown table with a header naming the machine and library versions."""
    import torch  # noqa: PLC0415 - lazy: label_cache's timed start-up processes import this module

    load = os.getloadavg()[0]
    header = (
        f"### {title}\n\n"
        f"Median of {repeats} rounds, forward + backward, the contenders interleaved (one call each per round). "
        f"Device: {jax.devices()[0].device_kind} ({host()}); jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, torch {torch.__version__} on {torch_device_label()}. "
        "Ratio = PyTorch time / jaxdet time (higher is better for jaxdet). "
        f"{options_line()} Load average at the end: {load:.2f}{shared_cpu_note(load)}.\n\n"
        "| case | jaxdet jit (ms) | torch eager (ms) | torch.compile (ms) | vs eager | vs compile "
        "| jaxdet first call (s) |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n"
    )
    return header + "\n".join(_format_row(row) for row in rows) + "\n"


def run_table(title: str, specs: list[BenchSpec], args: argparse.Namespace) -> str:
    """:func:`run_specs` with the common flags (``--repeats``, ``--no-compile``), rendered by
    :func:`markdown_table`: the whole ``run`` of a script whose rows are :class:`BenchSpec` s."""
    rows = run_specs(specs, repeats=args.repeats, compile_torch=not args.no_compile)
    return markdown_table(title, rows, repeats=args.repeats)


def parse_args(
    description: str,
    *,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    check_args: Callable[[argparse.Namespace, argparse.ArgumentParser], None] | None = None,
    repeats: int | None = 20,
    torch_compile: bool = True,
    quick: str = "tiny sizes and 3 repeats: a smoke test",
    argv: list[str] | None = None,
) -> argparse.Namespace:
    """The common command line of the timing scripts, and the script's own flags.

    Args:
      description: the script's docstring (its first line is the ``--help`` description).
      add_arguments: ``add_arguments(parser)`` adds the script's own flags.
      check_args: ``check_args(args, parser)`` completes and checks the parsed flags (after ``--quick`` has
        capped ``--repeats``); it may call ``parser.error``.
      repeats: the default of ``--repeats`` (timed rounds, median reported; capped at 3 by ``--quick``); None: no
        ``--repeats`` flag (the script counts its rounds its own way).
      torch_compile: whether there is a ``--no-compile`` flag (skip the torch.compile contenders).
      quick: the help of ``--quick`` (the smoke test; it writes nothing unless ``--out`` is given).
      argv: the arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog=_prog(), description=description.strip().splitlines()[0])
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, help="timed runs per contender (median reported)")
    parser.add_argument("--quick", action="store_true", help=quick)
    if torch_compile:
        parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile contender")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown file for the table (default: benchmarks/results/, none with --quick)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick and repeats is not None:
        args.repeats = min(args.repeats, 3)
    if check_args is not None:
        check_args(args, parser)
    return args


def _prog() -> str | None:
    """``"python -m benchmarks.<name>"`` when the running script is one of this package's, else argparse's own."""
    try:
        script = Path(sys.argv[0]).resolve().relative_to(RESULTS_DIR.parent.parent)
    except (IndexError, ValueError):
        return None
    return f"python -m {'.'.join(script.with_suffix('').parts)}" if script.suffix == ".py" else None


def write_results(markdown: str, default_name: str, args: argparse.Namespace) -> Path | None:
    """Writes the table to ``args.out``, else to ``benchmarks/results/<default_name>``; a ``--quick`` smoke run
    without ``--out`` writes nothing, so it never replaces a recorded table."""
    if args.quick and args.out is None:
        print(f"\n--quick: not writing benchmarks/results/{default_name} (pass --out to keep the table)")
        return None
    path = Path(args.out or RESULTS_DIR / default_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    print(f"\nwrote {path}")
    return path


def main(
    description: str,
    run: Callable[[argparse.Namespace], str | None],
    *,
    results_name: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    check_args: Callable[[argparse.Namespace, argparse.ArgumentParser], None] | None = None,
    repeats: int | None = 20,
    torch_compile: bool = True,
    quick: str = "tiny sizes and 3 repeats: a smoke test",
    argv: list[str] | None = None,
) -> str | None:
    """The ``main()`` of every timing script: parse the command line (:func:`parse_args`, same keywords), run the
    benchmark, print its markdown and write it (:func:`write_results`: ``--out``, else
    ``benchmarks/results/<results_name>``; nothing for ``--quick`` without ``--out``).

    ``run(args)`` returns the markdown, or None when there is nothing to report (a measuring child process of
    the script). Before it runs, ``args.load_start`` holds the 1-minute load average, for headers that give the
    load at the start and at the end. Returns the markdown.
    """
    args = parse_args(description, add_arguments=add_arguments, check_args=check_args, repeats=repeats,
                      torch_compile=torch_compile, quick=quick, argv=argv)
    args.load_start = os.getloadavg()[0]
    markdown = run(args)
    if markdown is None:
        return None
    print()
    print(markdown)
    write_results(markdown, results_name, args)
    return markdown
