"""The 640 px training loader, per core: jaxdet against ultralytics' YOLODataset on the same folders.

Both sides load the same YOLO folders of real photographs (``benchmarks/loader_folders.py``: ``tiles48``, 48
PNG tiles of 416 px, and ``photos500``, 500 JPEG photographs of 480–800 px, cropped from the sample photographs
that ship in installed packages) with the same recipe: batch 16, 640 px, ultralytics' default augmentation
(mosaic 1.0, translate 0.1, scale 0.5, fliplr 0.5, HSV 0.015 / 0.7 / 0.4).

- jaxdet: the training loader exactly as ``python -m train`` builds it (``train.data.prepare_data``,
  ``train.task.make_task``, ``train.batches.make_train_batches``) from ``configs/yolov8n_coco.py`` with
  ``data.name="yolo"``, ``data.augment="yolo"``, ``data.close_mosaic=0``, ``data.cache`` and grain with
  ``data.num_threads=0`` and no workers (everything in the one process, on the calling thread).
- ultralytics: ``ultralytics.data.build_yolo_dataset`` (``augment=True``, ``get_cfg()`` defaults with
  ``imgsz=640``, ``cache=False`` or ``"ram"``), ``dataset[i]`` over a shuffled order of the files and
  ``YOLODataset.collate_fn`` on every 16: its training DataLoader without worker processes.

Every measurement is a fresh process (``python -m benchmarks.loader_child``) pinned to one core (``taskset -c 0``;
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` 1, XLA one thread, ``cv2.setNumThreads(1)``,
``torch.set_num_threads(1)``) that builds its loader (timed: the set-up, of which the cache fill), draws
``--warmup`` batches (with a RAM cache at least one epoch, so that a cache filled on first use is full) and
times ``--batches`` batches. The two sides alternate within each round (jaxdet first in even rounds); the table
gives the median images/s over ``--rounds`` rounds and their ratio. ``cache="none"`` runs against ultralytics'
``cache=False`` (which keeps the last ``min(n, 8 × batch, 1000)`` decoded images as its mosaic buffer) and
``cache="ram"`` against its ``cache="ram"``. Where jaxdet has no ``data.cache`` yet, its RAM rows are not run.

A second section times jaxdet alone with ``data.num_workers`` 1 and 2 grain worker processes on both cores
(``taskset -c 0,1``; one grain thread in each worker).

    python -m benchmarks.loader                       # writes benchmarks/results/loader.md
    python -m benchmarks.loader --rounds 3 --batches 20 --folders 48,500 --workers 1,2
    python -m benchmarks.loader --folders tiles:48,shapes:48 --caches none --workers none
    python -m benchmarks.loader --quick               # smoke test: 1 round, 3 batches, writes nothing
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from benchmarks import _timing, loader_folders
from benchmarks.loader_child import BATCH, IMAGE_SIZE, RESULT_PREFIX, ULTRALYTICS_CACHE
from configs import yolov8n_coco
from jaxdet.data import DetectionSource

ROOT = Path(__file__).resolve().parent.parent
CACHES = ("none", "ram")
#: the environment of every measured process: one thread everywhere.
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_PLATFORMS": "cpu",
    "YOLO_OFFLINE": "1",
    "YOLO_VERBOSE": "False",
    "TQDM_DISABLE": "1",
}


# ------------------------------------------------------------------------------------------------------------
# The driver
# ------------------------------------------------------------------------------------------------------------


def jaxdet_supports_cache() -> bool:
    """Whether this checkout's jaxdet has ``data.cache`` (in the config or ``DetectionSource``)."""
    return "cache" in yolov8n_coco.get_config().data or "cache" in inspect.signature(DetectionSource).parameters


def run_child(spec: dict, cores: str, timeout: float = 1800) -> dict:
    """Runs ``benchmarks.loader_child`` (:func:`benchmarks.loader_child.child_main`) in a fresh process under
    ``taskset -c cores`` with :data:`ONE_THREAD_ENV`; a failed measurement returns
    ``{**spec, "error": <its exception line>}``."""
    env = {**os.environ, **ONE_THREAD_ENV}
    cmd = [sys.executable, "-m", "benchmarks.loader_child", json.dumps(spec)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", cores, *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    errors = [line.strip() for line in proc.stderr.splitlines() if "Error" in line.split(":")[0]]
    error = errors[-1] if errors else f"exit status {proc.returncode}"
    if error not in _SEEN_ERRORS:  # the first traceback of each error, not one per round
        _SEEN_ERRORS.add(error)
        print(proc.stderr[-3000:], file=sys.stderr)
    return {**spec, "error": error}


_SEEN_ERRORS: set[str] = set()


def max_boxes(root) -> int:
    """The most label lines of one file of the folder."""
    return max(sum(1 for line in p.read_text().splitlines() if line.strip())
               for p in (Path(root) / "labels").glob("*.txt"))


def _spec(side, folder, cache, args, *, num_workers=0, num_threads=0) -> dict:
    return {"side": side, "folder": folder["name"], "images": folder["images"], "cache": cache,
            "max_objects": folder["max_objects"], "num_workers": num_workers, "num_threads": num_threads,
            "warmup": args.warmup,
            "batches": args.jaxdet_batches if side == "jaxdet" and args.jaxdet_batches else args.batches}


def _log(result: dict) -> None:
    extra = f", {result['num_workers']} worker(s)" if result.get("num_workers") else ""
    if "error" in result:
        print(f"  {result['side']:>11} {result['folder']} cache={result['cache']}{extra}: failed: {result['error']}")
        return
    fill = f", fill {result['fill_s']:.1f} s" if result.get("fill_s") is not None else ""
    print(f"  {result['side']:>11} {result['folder']} cache={result['cache']}{extra}: "
          f"{result['images_per_s']:7.1f} images/s (set-up {result['setup_s']:.1f} s{fill}, warm-up "
          f"{result['warmup']} batches at {result['warmup_images_per_s']:.1f} images/s)", flush=True)


def run_benchmark(args) -> dict:
    """All rounds of both sections; returns ``{"folders", "compare", "workers", "jaxdet_cache"}`` (raw results)."""
    folders = []
    for token in args.folders:
        kind, count = loader_folders.parse_spec(token)
        root = loader_folders.build_folder(kind, count, args.data_dir)
        folders.append({"name": root.name, "images": str(root / "images"), "max_objects": 4 * max_boxes(root),
                        "description": loader_folders.manifest(root)["description"]})
    supports_cache = jaxdet_supports_cache()
    compare, workers = [], []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for folder in folders:
            for cache in args.caches:
                sides = ["jaxdet", "ultralytics"]
                if cache != "none" and not supports_cache:
                    sides = ["ultralytics"]
                for side in sides if r % 2 == 0 else sides[::-1]:
                    result = run_child(_spec(side, folder, cache, args), "0")
                    compare.append({**result, "round": r})
                    _log(result)
    for r in range(args.rounds if args.workers else 0):
        print(f"workers, round {r + 1}/{args.rounds}", flush=True)
        for folder in folders:
            for cache in args.workers_caches:
                if cache != "none" and not supports_cache:
                    continue
                for n in args.workers if r % 2 == 0 else args.workers[::-1]:
                    spec = _spec("jaxdet", folder, cache, args, num_workers=n, num_threads=args.worker_threads)
                    result = run_child(spec, args.worker_cores)
                    workers.append({**result, "round": r})
                    _log(result)
    return {"folders": folders, "compare": compare, "workers": workers, "jaxdet_cache": supports_cache}


# ------------------------------------------------------------------------------------------------------------
# The tables
# ------------------------------------------------------------------------------------------------------------

#: the loader's speed targets (jaxdet / ultralytics per core; 2 workers / 1 worker).
TARGETS = {"none": 1.5, "ram": 1.0, "workers": 1.8}


def _median(results: list[dict], key: str = "images_per_s") -> float | None:
    values = [r[key] for r in results if r.get(key) is not None and "error" not in r]
    return statistics.median(values) if values else None


def _rate(results: list[dict]) -> str:
    """The median images/s, or the error of a measurement that failed in every round."""
    value = _median(results)
    if value is None and any("error" in r for r in results):
        return "failed: `" + next(r["error"] for r in results if "error" in r).replace("|", "/") + "`"
    return _fmt(value)


def _fmt(v: float | None, spec: str = ",.1f") -> str:
    return "—" if v is None else format(v, spec)


def _rounds(results: list[dict]) -> str:
    return ", ".join("failed" if "error" in r else f"{r['images_per_s']:.1f}"
                     for r in sorted(results, key=lambda r: r["round"]))


def _select(results: list[dict], **match) -> list[dict]:
    return [r for r in results if all(r.get(k) == v for k, v in match.items())]


def compare_table(results: dict) -> str:
    """The jaxdet-against-ultralytics rows (folder × cache) and the set-up/fill rows."""
    lines = [
        "| folder | cache: jaxdet / ultralytics | jaxdet (images/s) | ultralytics (images/s) | jaxdet / ultralytics "
        "| target | jaxdet rounds | ultralytics rounds |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    setup = [
        "| folder | cache | side | set-up (s) | of which cache fill (s) | warm-up (batches, images/s) "
        "| peak RSS (MiB) | minor page faults / image |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for folder in results["folders"]:
        name = folder["name"]
        for cache in dict.fromkeys(r["cache"] for r in results["compare"]):
            ours = _select(results["compare"], folder=name, cache=cache, side="jaxdet")
            theirs = _select(results["compare"], folder=name, cache=cache, side="ultralytics")
            a, b = _median(ours), _median(theirs)
            ratio = f"**{a / b:.2f}×**" if a and b else "—"
            target = f"≥ {TARGETS.get(cache, 1.0):.1f}×"
            note = "" if ours or results["jaxdet_cache"] else " (no `data.cache` at this commit)"
            lines.append(f"| {name} | `{cache}` / `{ULTRALYTICS_CACHE[cache]!r}` | {_rate(ours)}{note} "
                         f"| {_rate(theirs)} "
                         f"| {ratio} | {target} | {_rounds(ours) or '—'} | {_rounds(theirs) or '—'} |")
            for side, rs in (("jaxdet", ours), ("ultralytics", theirs)):
                rs = [r for r in rs if "error" not in r]
                if not rs:
                    continue
                fill = _median(rs, "fill_s")
                setup.append(f"| {name} | `{cache}` | {side} | {_fmt(_median(rs, 'setup_s'), '.2f')} "
                             f"| {_fmt(fill, '.2f')} | {rs[0]['warmup']}, {_fmt(_median(rs, 'warmup_images_per_s'))} "
                             f"| {_fmt(_median(rs, 'peak_rss_mib'), ',.0f')} "
                             f"| {_fmt(_median(rs, 'faults_per_image'), ',.0f')} |")
    return "\n".join(lines) + "\n\nSet-up (median over rounds; ultralytics fills its RAM cache in its constructor, " \
        "jaxdet in `prepare_data` or, where the source has `fill_cache`, as `train.batches.CacheFiller` does):\n\n" \
        + "\n".join(setup) + "\n"


def workers_table(results: dict) -> str:
    """jaxdet with 1 and 2 grain worker processes (rows folder × cache)."""
    counts = sorted({r["num_workers"] for r in results["workers"]})
    lines = [
        "| folder | cache | " + " | ".join(f"{n} worker{'s' * (n > 1)} (images/s)" for n in counts)
        + f" | {counts[-1]} / {counts[0]} | target | rounds |",
        "|---|---|" + "---:|" * len(counts) + "---:|---|---|",
    ]
    for folder in results["folders"]:
        for cache in dict.fromkeys(r["cache"] for r in results["workers"]):
            rows = {n: _select(results["workers"], folder=folder["name"], cache=cache, num_workers=n) for n in counts}
            if not any(rows.values()):
                continue
            rates = [_median(rows[n]) for n in counts]
            ratio = f"**{rates[-1] / rates[0]:.2f}×**" if rates[0] and rates[-1] else "—"
            spread = "; ".join(f"{n}: {_rounds(rows[n])}" for n in counts)
            lines.append(f"| {folder['name']} | `{cache}` | " + " | ".join(_rate(rows[n]) for n in counts)
                         + f" | {ratio} | ≥ {TARGETS['workers']:.1f}× | {spread} |")
    return "\n".join(lines) + "\n"


def _version(module: str) -> str:
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    """``git rev-parse --short HEAD``, with ``+ local changes`` when jaxdet/, train/ or configs/ differ from it
    (``unknown`` outside a git checkout: pass ``--commit``)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "jaxdet", "train", "configs"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + local changes" if dirty else "")


def render(results: dict, meta: dict) -> str:
    """The results file: header (date, commit, CPU, versions, method, folders) and both tables."""
    versions = ", ".join(f"{m} {_version(m)}" for m in ("ultralytics", "torch", "opencv-python", "numpy", "grain",
                                                         "pillow", "jax"))
    folders = "\n".join(f"- `{f['name']}`: {f['description']}." for f in results["folders"])
    wc = meta["worker_cores"]
    md = (
        "### Training loader at 640 px, per core: jaxdet against ultralytics (benchmarks/loader.py)\n\n"
        f"{meta['date']}, jaxdet commit `{meta['commit']}`; {meta['cpu']} ({meta['cores']} cores), Python "
        f"{platform.python_version()}; {versions}. Load average {meta['load'][0]:.2f} at the start, "
        f"{meta['load'][1]:.2f} at the end{_timing.shared_cpu_note(*meta['load'])}.\n\n"
        f"Batch {BATCH}, {IMAGE_SIZE} px, ultralytics' default augmentation on both sides (mosaic 1.0, translate "
        "0.1, scale 0.5, fliplr 0.5, HSV 0.015 / 0.7 / 0.4; jaxdet `data.augment=\"yolo\"`). Each number is a fresh "
        "process on one core (`taskset -c 0`, one thread) timing "
        f"{meta['batches']} batches (jaxdet {meta['jaxdet_batches']}) after {meta['warmup']} warm-up batches (with a "
        f"RAM cache after one epoch); median of {meta['rounds']} rounds, the sides interleaved. jaxdet: "
        "`prepare_data` + `make_task` + `make_train_batches` as `python -m train`, grain with 0 threads and no "
        "workers. ultralytics: `build_yolo_dataset(augment=True)`, `dataset[i]` in shuffled order + "
        "`YOLODataset.collate_fn`, no DataLoader workers.\n\n"
        f"Folders (`benchmarks/loader_folders.py`, under `{meta['data_dir']}`):\n\n{folders}\n\n"
        + compare_table(results)
    )
    if results["workers"]:
        md += (
            f"\n#### jaxdet with grain worker processes, both cores (`taskset -c {wc}`)\n\n"
            f"`data.num_workers` 1 and 2, `data.num_threads={meta['worker_threads']}` (in each worker), the same "
            "batches as above; the worker counts alternate within each round.\n\n" + workers_table(results)
        )
    return md


QUICK = "smoke test: 1 round, 3 batches; writes nothing without --out"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--batches", type=int, default=20, help="timed batches of 16 per measurement")
    p.add_argument("--jaxdet-batches", type=int, default=None, help="timed batches for jaxdet (default --batches)")
    p.add_argument("--warmup", type=int, default=4, help="warm-up batches (a RAM cache: at least one epoch)")
    p.add_argument("--folders", default="48,500",
                   help="comma list: a count (<= 100: tiles, else photos) or kind:count, kind tiles|photos|shapes")
    p.add_argument("--caches", default="none,ram", help="comma list of data.cache values to compare")
    p.add_argument("--workers", default="1,2", help="grain worker counts for the workers section ('none': skip)")
    p.add_argument("--workers-caches", default="none", help="data.cache values of the workers section")
    p.add_argument("--worker-threads", type=int, default=0, help="data.num_threads in the workers section")
    p.add_argument("--worker-cores", default="0,1", help="taskset cores of the workers section")
    p.add_argument("--data-dir", default="/tmp/jaxdet_loader_bench", help="where the folders are built")
    p.add_argument("--commit", default=None, help="the jaxdet commit measured (default: this checkout's HEAD)")


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.quick:
        args.rounds, args.batches, args.warmup = 1, 3, 1
        args.jaxdet_batches = min(args.jaxdet_batches or 3, 3)
    args.folders = [t for t in args.folders.split(",") if t]
    args.caches = [c for c in args.caches.split(",") if c]
    args.workers = [] if args.workers in ("", "none") else [int(n) for n in args.workers.split(",")]
    args.workers_caches = [c for c in args.workers_caches.split(",") if c]
    bad = [c for c in args.caches + args.workers_caches if c not in ULTRALYTICS_CACHE]
    if bad:
        parser.error(f"caches must be among {sorted(ULTRALYTICS_CACHE)}; got {bad}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _timing.parse_args(__doc__, add_arguments=_add_arguments, check_args=_check_args, repeats=None,
                              torch_compile=False, quick=QUICK, argv=argv)


def run(args: argparse.Namespace) -> str:
    results = run_benchmark(args)
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": args.commit or git_commit(),
        "cpu": _timing.cpu_model(),
        "cores": os.cpu_count(),
        "load": (args.load_start, os.getloadavg()[0]),
        "rounds": args.rounds,
        "batches": args.batches,
        "jaxdet_batches": args.jaxdet_batches or args.batches,
        "warmup": args.warmup,
        "data_dir": args.data_dir,
        "worker_cores": args.worker_cores,
        "worker_threads": args.worker_threads,
    }
    return render(results, meta)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="loader.md", add_arguments=_add_arguments,
                        check_args=_check_args, repeats=None, torch_compile=False, quick=QUICK, argv=argv)


if __name__ == "__main__":
    main()
