"""Running experiments: train every variant × seed (reusing identical finished runs), then write the report.

``python -m train.experiments`` is :func:`main`; see :mod:`train.experiments`.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shutil
import sys
import time
from typing import Any, Callable, Sequence

from train import compile_cache, loop, metrics_log
from train import data as data_lib
from train.experiments import diagnostics, report
from train.experiments.registry import _REPO_ROOT, EXPERIMENTS, SCALES, Variant, _slug, config_key, resolve_config
from train.task import make_head, make_task

#: train-history keys kept in a run record (the full history stays in the run's metrics.jsonl).
_HISTORY_KEYS = (
    "loss", "alpha", "lr", "grad_norm", "coord_xy", "coord_wh", "obj", "noobj", "cls", "box", "poly", "l2", "mgiou",
    "l2_grad_norm", "mgiou_grad_norm", "grad_cosine", "boxgrad_coord", "boxgrad_obj", "boxgrad_noobj",
    "boxgrad_cls", "boxgrad_coord_xy", "boxgrad_coord_wh", "boxgrad_obj_share", "boxgrad_cos_obj_coord",
    "boxgrad_cos_total_coord", "conf_below_iou_frac", "l2_scale", "mgiou_scale",
)


def run_variant(
    variant: Variant,
    seed: int,
    *,
    scale: str = "small",
    steps: int | None = None,
    root: str = os.path.join("workdir", "experiments"),
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains one (variant, seed) (or reuses an identical finished run) and returns its record."""
    config = resolve_config(variant, scale=scale, seed=seed, steps=steps)
    key = config_key(config)
    workdir = os.path.join(root, f"{variant.base}-{_slug(variant.name)}-s{seed}-{key}")
    record_path = os.path.join(workdir, "record.json")
    if not force:
        # An identical config may have been trained under another variant's name (same hash): reuse it.

        found = [record_path] if os.path.exists(record_path) else sorted(
            glob.glob(os.path.join(glob.escape(root), f"{variant.base}-*-s{seed}-{key}", "record.json"))
        )
        if found:
            with open(found[0]) as f:
                record = json.load(f)
            record["variant"] = variant.name
            log(f"  reuse {variant.name!r} seed {seed}: {os.path.dirname(found[0])}")
            return record
    if force and os.path.isdir(workdir):

        shutil.rmtree(workdir)


    config, data = data_lib.prepare_data(config)
    task = make_task(config, data)
    head = make_head(config)
    task = diagnostics.instrument(task, head)
    log(f"  train {variant.name!r} seed {seed} ({int(config.train.steps)} steps) -> {workdir}")
    t0 = time.perf_counter()
    summary = loop.run(config, workdir, task=task, return_state=True)
    extras = diagnostics.final_stats(config, task, head, summary.pop("state"), graphdef=summary.pop("graphdef"))
    history = metrics_log.read_history(os.path.join(workdir, "metrics.jsonl"))
    train_hist = [
        {k: r[k] for k in ("step", *_HISTORY_KEYS) if isinstance(r.get(k), (int, float))}
        for r in history.get("train", [])
    ]
    record = {
        "variant": variant.name,
        "base": variant.base,
        "seed": int(seed),
        "scale": scale,
        "steps": int(config.train.steps),
        "config_key": key,
        "workdir": os.path.abspath(workdir),
        "eval": summary.get("eval") or {},
        "extras": extras,
        "wall_s": time.perf_counter() - t0,
        "compile_s": summary.get("compile_s"),
        "images_per_sec": summary.get("images_per_sec"),
        "train": train_hist,
    }
    with open(record_path, "w") as f:
        json.dump(record, f, default=float)
    ev = record["eval"]
    log(
        f"  done {variant.name!r} seed {seed} in {record['wall_s']:.0f} s: "
        + ", ".join(f"{k}={ev[k]:.4f}" for k in ("mAP", "mAP50", "polygon_mIoU", "segm_mAP50") if k in ev)
    )
    return record


def run_experiment(
    name: str,
    *,
    scale: str = "small",
    seeds: int | None = None,
    steps: int | None = None,
    root: str = os.path.join("workdir", "experiments"),
    out: str = os.path.join("docs", "experiments"),
    force: bool = False,
    command: str | None = None,
    variants: Sequence[str] | None = None,
    doc: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs every variant × seed of experiment ``name`` and writes its table, JSON and plots into ``out``.

    ``variants`` restricts the run to the named variants (default: all). ``doc``: a markdown file whose
    ``<!-- table:NAME -->`` block is refreshed with the new table (see
    :func:`train.experiments.report.update_doc`).

    Returns:
      ``{"markdown": str, "paths": [written files], "records": [run records]}``.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    exp = EXPERIMENTS[name]
    if variants is not None:
        unknown = set(variants) - {v.name for v in exp.variants}
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)} of {name!r}; known: {[v.name for v in exp.variants]}")
        exp = dataclasses.replace(exp, variants=tuple(v for v in exp.variants if v.name in set(variants)))
    n_seeds = seeds if seeds is not None else (exp.seeds if (exp.seeds is not None and scale == "small") else
                                               SCALES[scale]["seeds"])
    if scale == "tiny" and seeds is None:
        n_seeds = 1
    t0 = time.perf_counter()
    log(f"experiment {name}: {len(exp.variants)} variant(s) x {n_seeds} seed(s), scale {scale}")
    records = [
        run_variant(v, s, scale=scale, steps=steps, root=root, force=force, log=log)
        for v in exp.variants
        for s in range(n_seeds)
    ]
    meta = {
        "experiment": name,
        "title": exp.title,
        "question": exp.question,
        "scale": scale,
        "seeds": n_seeds,
        "steps": records[0]["steps"] if records else None,
        "command": command or f"python -m train.experiments {name} --scale {scale} --seeds {n_seeds}"
        + (f" --steps {steps}" if steps is not None else ""),
        "wall_s": time.perf_counter() - t0,
        "variants": [v.name for v in exp.variants],
    }
    result = report.write_report(exp.report, meta, records, out)
    if doc is not None:
        report.update_doc(doc, out)
    log(result["markdown"])
    return {**result, "records": records}


def enable_compile_cache(path: str) -> None:
    """JAX's persistent compilation cache: runs that differ only in the seed compile once."""
    compile_cache.enable(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m train.experiments", description="Run the issue-6 experiments (see the module doc)."
    )
    parser.add_argument("name", help="an experiment name, 'all', or 'list'")
    parser.add_argument("--scale", default="small", choices=sorted(SCALES))
    parser.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: per experiment/scale)")
    parser.add_argument("--steps", type=int, default=None, help="override the scale's train.steps")
    parser.add_argument("--workdir", default=os.path.join("workdir", "experiments"), help="root of the run dirs")
    parser.add_argument("--out", default=os.path.join("docs", "experiments"), help="where tables/plots go")
    parser.add_argument("--force", action="store_true", help="retrain even if an identical run exists")
    parser.add_argument(
        "--doc", default=os.path.join("docs", "EXPERIMENTS.md"),
        help="refresh this file's <!-- table:NAME --> block ('' to skip)",
    )
    parser.add_argument("--variants", nargs="+", default=None, help="only these variants (names as in 'list')")
    parser.add_argument(
        "--no-compile-cache", action="store_true",
        help="do not use JAX's persistent compilation cache (<workdir>/xla_cache)",
    )
    args = parser.parse_args(argv)
    if args.name == "list":
        for exp in EXPERIMENTS.values():
            print(f"{exp.name:16s} {exp.title}")
            for v in exp.variants:
                print(f"{'':18s}- {v.name}")
        return
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    for n in names:
        if n not in EXPERIMENTS:
            parser.error(f"unknown experiment {n!r}; known: {', '.join(EXPERIMENTS)}, all, list")
    if _REPO_ROOT not in sys.path:
        sys.path.insert(0, _REPO_ROOT)
    if not args.no_compile_cache:
        enable_compile_cache(os.path.join(args.workdir, "xla_cache"))
    for n in names:
        cmd = " ".join(["python -m train.experiments", n, *(argv if argv is not None else sys.argv[1:])[1:]])
        run_experiment(
            n,
            scale=args.scale,
            seeds=args.seeds,
            steps=args.steps,
            root=args.workdir,
            out=args.out,
            force=args.force,
            command=cmd,
            variants=args.variants,
            doc=args.doc or None,
        )
