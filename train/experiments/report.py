"""Tables (markdown + JSON) and plots (small PNGs) for ``train.experiments``.

:func:`write_report` turns the run records of one experiment into ``<out>/<name>.md``, ``<out>/<name>.json``
and ``<out>/<name>_*.png``. Numbers over seeds are ``mean ± sd`` (sample standard deviation, n = seeds) when
there are several seeds, the single value otherwise. "early / mid / late" are the means over the logged
training steps in the first, second and last third of training (then averaged over seeds).

Seeds and Cases: see the glossary of :mod:`train.experiments`.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Callable, Sequence

import numpy as np

from train.experiments.registry import FULL_IMAGE_AREA, KEPT_SCORE

# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def _finite(values) -> np.ndarray:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    return v[np.isfinite(v)]


def mean_sd(values: Sequence[float], fmt: str = ".3f") -> str:
    """``"m ± sd"`` (sample sd) for several values, ``"m"`` for one, ``"n/a"`` for none."""
    v = _finite(values)
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return format(v[0], fmt)
    return f"{format(v.mean(), fmt)} ± {format(v.std(ddof=1), fmt)}"


def _by_variant(meta, records) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {name: [] for name in meta["variants"]}
    for r in records:
        groups.setdefault(r["variant"], []).append(r)
    return [(k, v) for k, v in groups.items() if v]


def _series(record: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in record["train"] if isinstance(r.get(key), (int, float))]
    pts = [(s, y) for s, y in pts if math.isfinite(y)]
    if not pts:
        return np.zeros((0,)), np.zeros((0,))
    a = np.asarray(pts, np.float64)
    return a[:, 0], a[:, 1]


def phase_means(record: dict, key: str) -> tuple[float, float, float]:
    """Means of ``key`` over the logged steps in each third of training (nan where none)."""
    x, y = _series(record, key)
    total = max(int(record["steps"]), 1)
    out = []
    for lo, hi in ((0, total / 3), (total / 3, 2 * total / 3), (2 * total / 3, total + 1)):
        sel = (x > lo) & (x <= hi) if lo > 0 else (x <= hi)
        out.append(float(np.mean(y[sel])) if np.any(sel) else float("nan"))
    return tuple(out)  # type: ignore[return-value]


def _final(record: dict, key: str, last: int = 3) -> float:
    _, y = _series(record, key)
    return float(np.mean(y[-last:])) if y.size else float("nan")


def _phases_str(records: list[dict], key: str, fmt: str = ".3g") -> str:
    ph = np.asarray([phase_means(r, key) for r in records], np.float64)  # [seeds, 3]
    with np.errstate(all="ignore"):
        m = np.nanmean(ph, axis=0) if ph.size else [float("nan")] * 3
    return " / ".join("n/a" if not np.isfinite(v) else format(v, fmt) for v in m)


def _mean_curve(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    curves = [_series(r, key) for r in records]
    curves = [c for c in curves if c[0].size]
    if not curves:
        return np.zeros((0,)), np.zeros((0,))
    steps = curves[0][0]
    ys = [np.interp(steps, x, y) for x, y in curves]
    return steps, np.mean(ys, axis=0)


def _plt():
    import matplotlib  # noqa: PLC0415 - pyplot only once the Agg backend is chosen

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - pyplot only once the Agg backend is chosen

    return plt


def _save(fig, plt, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def _header(meta: dict) -> list[str]:
    return [
        f"### {meta['title']}",
        "",
        f"*Question.* {meta['question']}",
        "",
        f"Command: `{meta['command']}` — scale `{meta['scale']}`, {meta['steps']} steps per run, "
        f"{meta['seeds']} seed(s) per variant (model-init seeds 0..{meta['seeds'] - 1}, same data), "
        f"experiment wall time {meta['wall_s']:.0f} s (runs reused from earlier experiments cost ~0).",
        "",
    ]


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows
    ]


def _ev(records, key):
    return [r["eval"].get(key) for r in records]


def _ex(records, key):
    return [r["extras"].get(key) for r in records]


# --------------------------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------------------------


def _polygon_rows(groups) -> tuple[list[str], list[list[str]]]:
    header = [
        "variant", "n", "box mAP50", "mask mAP50", "mask mAP", "polygon mIoU (matched)", "cell polygon IoU",
        "final L2", "final MGIoU", f"near-full-image cells (>{FULL_IMAGE_AREA:.0%})",
    ]
    rows = []
    for name, recs in groups:
        full = sum(int(r["extras"].get("gt_cells_full_image", 0)) for r in recs)
        cells = sum(int(r["extras"].get("gt_cells", 0)) for r in recs)
        rows.append([
            name, str(len(recs)), mean_sd(_ev(recs, "mAP50")), mean_sd(_ev(recs, "segm_mAP50")),
            mean_sd(_ev(recs, "segm_mAP")), mean_sd(_ev(recs, "polygon_mIoU")), mean_sd(_ex(recs, "cell_polygon_iou")),
            mean_sd([_final(r, "l2") for r in recs], ".4f"), mean_sd([_final(r, "mgiou") for r in recs], ".4f"),
            f"{full} / {cells}",
        ])
    return header, rows


def _polygon_plots(meta, groups, out) -> list[str]:
    plt = _plt()
    name = meta["experiment"]
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    labels = [g[0] for g in groups]
    xs = np.arange(len(groups))
    for ax, (key, src, title) in zip(
        axes, (("segm_mAP50", "eval", "mask mAP@0.5"), ("cell_polygon_iou", "extras", "cell polygon IoU"))
    ):
        vals = [_finite([r[src].get(key) for r in recs]) for _, recs in groups]
        means = [v.mean() if v.size else np.nan for v in vals]
        sds = [v.std(ddof=1) if v.size > 1 else 0.0 for v in vals]
        ax.bar(xs, means, yerr=sds, capsize=3, color="C0")
        for i, v in enumerate(vals):
            ax.plot(np.full(v.size, i), v, "k.", ms=4)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    paths.append(_save(fig, plt, os.path.join(out, f"{name}_metrics.png")))

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for i, (label, recs) in enumerate(groups):
        for ax, key in zip(axes, ("alpha", "l2", "mgiou")):
            x, y = _mean_curve(recs, key)
            if x.size:
                ax.plot(x, y, color=f"C{i}", label=label, lw=1.2)
    for ax, title in zip(axes, ("α (L2 weight)", "L2 term (train batch)", "MGIoU term (train batch)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=6)
    paths.append(_save(fig, plt, os.path.join(out, f"{name}_curves.png")))
    return paths


def report_polygon(meta, records, out) -> tuple[list[str], list[str]]:
    groups = _by_variant(meta, records)
    header, rows = _polygon_rows(groups)
    md = _header(meta) + _table(header, rows)
    md += [
        "",
        "box mAP50 = the box head (GIoU-trained, the same loss in every variant); mask mAP = COCO mask AP of the "
        "predicted polygons; polygon mIoU = mean exact convex IoU of score-matched (box IoU ≥ 0.5) pairs; cell "
        "polygon IoU = mean exact convex IoU of the polygon predicted at every ground-truth cell (no detection "
        "or NMS involved); final L2 / MGIoU = the two hybrid terms on the last logged training batches.",
    ]
    paths = _polygon_plots(meta, groups, out)
    return md, paths


def report_adaptive(meta, records, out) -> tuple[list[str], list[str]]:
    md, paths = report_polygon(meta, records, out)
    rows = []
    for name, recs in _by_variant(meta, records):
        for r in recs:
            _, a = _series(r, "alpha")
            if not a.size:
                continue
            vals, counts = np.unique(np.round(a, 3), return_counts=True)
            dist = ", ".join(f"{v:g}: {c / a.size:.0%}" for v, c in zip(vals, counts)) if vals.size <= 4 else \
                f"{vals.size} distinct values, {a.min():.2f}–{a.max():.2f}"
            changes = int(np.sum(np.abs(np.diff(a)) > 1e-6))
            _, l2n = _series(r, "l2_grad_norm")
            _, mgn = _series(r, "mgiou_grad_norm")
            ratio = mgn / np.maximum(l2n, 1e-30) if l2n.size and l2n.size == mgn.size else np.zeros((0,))
            rows.append([
                name, str(r["seed"]), dist, str(changes), f"{a[-1]:.3g}",
                " / ".join(format(v, ".3g") for v in np.percentile(ratio, [10, 50, 90])) if ratio.size else "n/a",
            ])
    md += ["", "α over training (logged steps):", ""]
    md += _table(["variant", "seed", "share of logged steps at each α", "α changes", "final α",
                  "‖∇MGIoU‖/‖∇L2‖ 10th / 50th / 90th pct"], rows)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for i, (label, recs) in enumerate(_by_variant(meta, records)):
        x, y = _mean_curve(recs, "alpha")
        axes[0].plot(x, y, color=f"C{i}", label=label)
        xl, l2n = _mean_curve(recs, "l2_grad_norm")
        xm, mgn = _mean_curve(recs, "mgiou_grad_norm")
        if xl.size and xm.size:
            axes[1].plot(xl, mgn / np.maximum(l2n, 1e-30), color=f"C{i}", label=label)
    for t in (0.01, 0.1):
        axes[1].axhline(t, color="gray", ls=":", lw=1)
    axes[0].set_title("α", fontsize=9)
    axes[1].set_title("‖∇MGIoU‖ / ‖∇L2‖ (thresholds 0.01, 0.1)", fontsize=9)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    paths.append(_save(fig, plt, os.path.join(out, f"{meta['experiment']}_alpha.png")))
    return md, paths


def report_cosine(meta, records, out) -> tuple[list[str], list[str]]:
    groups = _by_variant(meta, records)
    rows = []
    for name, recs in groups:
        cos = np.concatenate([_series(r, "grad_cosine")[1] for r in recs])
        l2n = np.concatenate([_series(r, "l2_grad_norm")[1] for r in recs])
        mgn = np.concatenate([_series(r, "mgiou_grad_norm")[1] for r in recs])
        ratio = mgn / np.maximum(l2n, 1e-30) if l2n.size == mgn.size else np.zeros((0,))
        rows.append([
            name, str(len(recs)), _phases_str(recs, "grad_cosine", ".3f"),
            f"{np.mean((cos >= 0.5) & (cos <= 0.8)):.0%}" if cos.size else "n/a",
            f"{np.mean(cos < 0):.0%}" if cos.size else "n/a",
            _phases_str(recs, "l2_grad_norm"), _phases_str(recs, "mgiou_grad_norm"),
            f"{np.median(ratio):.3g}" if ratio.size else "n/a",
        ])
    md = _header(meta) + _table(
        ["variant", "n", "cos(∇L2, ∇MGIoU) early / mid / late", "logged steps with cos in [0.5, 0.8]",
         "logged steps with cos < 0", "‖∇L2‖ early / mid / late", "‖∇MGIoU‖ early / mid / late",
         "median ‖∇MGIoU‖/‖∇L2‖"],
        rows,
    )
    md += [
        "",
        "Gradients of the two hybrid terms (batch means over the positive cells) w.r.t. the predicted vertices of "
        "the training batch, logged by the loss at every logged step (`grad_cosine`, `l2_grad_norm`, "
        "`mgiou_grad_norm` in metrics.jsonl). Norms are of the batch-mean loss, so they shrink with the number of "
        "positive cells; the cosine and the ratio do not.",
    ]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for i, (label, recs) in enumerate(groups):
        x, y = _mean_curve(recs, "grad_cosine")
        axes[0].plot(x, y, color=f"C{i}", label=label, lw=1.2)
        xl, l2n = _mean_curve(recs, "l2_grad_norm")
        xm, mgn = _mean_curve(recs, "mgiou_grad_norm")
        if xl.size:
            axes[1].plot(xl, l2n, color=f"C{i}", lw=1.2, label=f"{label}: ‖∇L2‖")
            axes[1].plot(xm, mgn, color=f"C{i}", lw=1.2, ls="--", label=f"{label}: ‖∇MGIoU‖")
    axes[0].axhspan(0.5, 0.8, color="gray", alpha=0.15, label="seed 003 claim")
    axes[0].set_title("cos(∇L2, ∇MGIoU)", fontsize=9)
    axes[1].set_title("gradient norms", fontsize=9)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=6)
    paths = [_save(fig, plt, os.path.join(out, f"{meta['experiment']}.png"))]
    return md, paths


def report_degeneration(meta, records, out) -> tuple[list[str], list[str]]:
    groups = _by_variant(meta, records)
    rows = []
    for name, recs in groups:
        def tot(key):
            return sum(int(r["extras"].get(key, 0)) for r in recs)

        rows.append([
            name, str(len(recs)),
            f"{tot('gt_cells_full_image')} / {tot('gt_cells')}",
            f"{tot('kept_full_image')} / {tot('kept')}",
            f"{tot('gt_cells_box_full_image')} / {tot('gt_cells')}",
            mean_sd(_ex(recs, "cell_bbox_area_median"), ".3f") + " (GT " + mean_sd(_ex(recs, "gt_bbox_area_median"),
                                                                                   ".3f") + ")",
            mean_sd(_ex(recs, "cell_polygon_iou")), mean_sd(_ev(recs, "segm_mAP50")),
            mean_sd(_ev(recs, "polygon_mIoU")),
        ])
    md = _header(meta) + _table(
        ["variant", "n", f"near-full-image polygons at GT cells (>{FULL_IMAGE_AREA:.0%})",
         f"near-full-image kept detections (score ≥ {KEPT_SCORE})", "near-full-image boxes (box head) at GT cells",
         "median clipped bbox area of cell polygons (image fraction)", "cell polygon IoU", "mask mAP50",
         "polygon mIoU (matched)"],
        rows,
    )
    md += [
        "",
        f"A prediction is *near-full-image* when the axis-aligned bounding box of its polygon, clipped to the image, "
        f"covers more than {FULL_IMAGE_AREA:.0%} of the image area; the synthetic objects' boxes cover at most about "
        "25 %. Counts are summed over seeds and the validation images.",
    ]
    _, poly_rows = _polygon_rows(groups)
    paths = _polygon_plots(meta, groups, out)
    return md, paths


def report_case_study(meta, records, out) -> tuple[list[str], list[str]]:
    groups = _by_variant(meta, records)
    rows = []
    for name, recs in groups:
        rows.append([
            name, str(len(recs)), mean_sd(_ev(recs, "mAP")), mean_sd(_ev(recs, "mAP50")), mean_sd(_ev(recs, "mAP75")),
            mean_sd(_ev(recs, "AR100")),
            mean_sd([_final(r, "coord_xy") + _final(r, "coord_wh") for r in recs], ".4f"),
            mean_sd([_final(r, "obj") for r in recs], ".4f"),
        ])
    md = _header(meta) + _table(
        ["variant", "n", "mAP@[.5:.95]", "mAP@.5", "mAP@.75", "AR100", "final coord loss (xy+wh)", "final obj loss"],
        rows,
    )
    grow = []
    for name, recs in groups:
        grow.append([
            name, _phases_str(recs, "boxgrad_coord"), _phases_str(recs, "boxgrad_obj"),
            _phases_str(recs, "boxgrad_obj_share", ".3f"), _phases_str(recs, "boxgrad_cos_obj_coord", ".3f"),
            _phases_str(recs, "conf_below_iou_frac", ".2f"),
            _phases_str(recs, "boxgrad_noobj"), _phases_str(recs, "boxgrad_cls"),
        ])
    md += [
        "",
        "Gradient of the loss w.r.t. the box coordinates (x, y, √w, √h of every predictor, activated head "
        "output) split by term, on the training batch at every logged step (mean over seeds; early / mid / late "
        "thirds of training):",
        "",
    ]
    md += _table(
        ["variant", "‖g_coord‖ (xy+wh terms)", "‖g_obj‖ (confidence term)", "obj share ‖g_obj‖/(‖g_coord‖+‖g_obj‖)",
         "cos(g_obj, g_coord)", "responsible predictors with C < IoU", "‖g_noobj‖", "‖g_cls‖"],
        grow,
    )
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for i, (label, recs) in enumerate(groups):
        for key, ls in (("boxgrad_coord", "-"), ("boxgrad_obj", "--")):
            x, y = _mean_curve(recs, key)
            if x.size and np.any(y > 0):
                axes[0].plot(x, np.maximum(y, 1e-12), color=f"C{i}", ls=ls, lw=1.2,
                             label=f"{label}: {'coord' if key == 'boxgrad_coord' else 'obj'}")
        x, y = _mean_curve(recs, "boxgrad_obj_share")
        axes[1].plot(x, y, color=f"C{i}", label=label)
        x, y = _mean_curve(recs, "boxgrad_cos_obj_coord")
        axes[2].plot(x, y, color=f"C{i}", label=label)
    axes[0].set_yscale("log")
    axes[0].set_title("box-coordinate gradient norm by term", fontsize=9)
    axes[1].set_title("confidence-term share of it", fontsize=9)
    axes[2].set_title("cos(g_obj, g_coord)", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=6)
    paths = [_save(fig, plt, os.path.join(out, f"{meta['experiment']}_gradients.png"))]

    fig, ax = plt.subplots(figsize=(5, 3))
    for i, (label, recs) in enumerate(groups):
        for key, ls in (("coord_xy", "-"), ("coord_wh", "--"), ("obj", ":")):
            x, y = _mean_curve(recs, key)
            if x.size:
                ax.plot(x, y, color=f"C{i}", ls=ls, lw=1.0, label=f"{label}: {key}")
    ax.set_yscale("log")
    ax.set_xlabel("step", fontsize=8)
    ax.set_title("loss terms (train batch)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    paths.append(_save(fig, plt, os.path.join(out, f"{meta['experiment']}_losses.png")))
    return md, paths


_REPORTS: dict[str, Callable] = {
    "polygon": report_polygon,
    "adaptive": report_adaptive,
    "cosine": report_cosine,
    "degeneration": report_degeneration,
    "case_study": report_case_study,
}


def write_report(kind: str, meta: dict, records: list[dict], out: str) -> dict[str, Any]:
    """Writes ``<out>/<experiment>.md``, ``.json`` and the PNGs; returns ``{"markdown", "paths"}``."""
    if kind not in _REPORTS:
        raise ValueError(f"report kind must be one of {sorted(_REPORTS)}; got {kind!r}")
    os.makedirs(out, exist_ok=True)
    md, paths = _REPORTS[kind](meta, records, out)
    name = meta["experiment"]
    md = list(md) + ["", "Plots: " + ", ".join(f"`{os.path.basename(p)}`" for p in paths)]
    text = "\n".join(md) + "\n"
    md_path = os.path.join(out, f"{name}.md")
    with open(md_path, "w") as f:
        f.write(text)
    slim = [{k: v for k, v in r.items() if k != "train"} for r in records]
    json_path = os.path.join(out, f"{name}.json")
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "runs": slim}, f, indent=1, default=float)
    return {"markdown": text, "paths": [md_path, json_path, *paths]}


# --------------------------------------------------------------------------------------------------------------
# docs/EXPERIMENTS.md
# --------------------------------------------------------------------------------------------------------------


def update_doc(doc_path: str, tables_dir: str) -> list[str]:
    """Replaces every ``<!-- table:NAME -->`` … ``<!-- /table:NAME -->`` block of ``doc_path`` with the current
    ``tables_dir/NAME.md`` (image links rewritten relative to the doc). Returns the names updated."""

    if not os.path.exists(doc_path):
        return []
    with open(doc_path) as f:
        text = f.read()
    updated = []

    def sub(m):
        name = m.group(1)
        path = os.path.join(tables_dir, f"{name}.md")
        if not os.path.exists(path):
            return m.group(0)
        with open(path) as f:
            body = f.read().strip()
        rel = os.path.relpath(tables_dir, os.path.dirname(os.path.abspath(doc_path)) or ".")
        pngs = sorted(p for p in os.listdir(tables_dir) if p.startswith(f"{name}") and p.endswith(".png")
                      and (p == f"{name}.png" or p.startswith(f"{name}_")))
        images = "\n".join(f"![{p}]({rel}/{p})" for p in pngs)
        updated.append(name)
        return f"<!-- table:{name} -->\n{body}\n\n{images}\n<!-- /table:{name} -->"

    new = re.sub(r"<!-- table:(\w+) -->.*?<!-- /table:\1 -->", sub, text, flags=re.S)
    if new != text:
        with open(doc_path, "w") as f:
            f.write(new)
    return updated
