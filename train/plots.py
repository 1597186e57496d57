"""PNG plots of a run (matplotlib, Agg backend): the first training batch after augmentation at the start
(:func:`plot_train_batch`); at the end loss terms, α and learning rate, norms and validation mAP over training
(:func:`plot_history`, from ``metrics.jsonl``), the precision–recall curve of the final evaluation
(:func:`plot_pr_curve`) and image grids (:func:`save_image`, pixel for pixel). Counters (dropped boxes, skipped
steps) get their own linear panel below the log-scale losses; the mAP plot marks every evaluation, with AR."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from jaxdet.metrics import RECALL_THRESHOLDS
from train.drawing import draw_label, label_font, label_font_size
from train.tables import is_count


def _plt():
    import matplotlib  # noqa: PLC0415 - pyplot only once the Agg backend is chosen

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - pyplot only once the Agg backend is chosen

    return plt


_NOT_LOSS = {
    "kind", "step", "alpha", "lr", "grad_norm", "param_norm", "images_per_sec", "step_time",
    "loader_images_per_sec", "data_wait_s",
    "lr_bias", "momentum", "accumulate", "updated",  # the ultralytics recipe's hyper-parameters (train/recipe.py)
    "lr_cls", "lr_bias_cls",  # MuSGD's class-branch learning rates
    "o2m_weight",  # YOLO26's one-to-many weight (a schedule, jaxdet.schedules.one2many_schedule)
}


def split_train_keys(train: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The ``train`` records' numeric keys drawn by :func:`plot_history`: (loss terms, counters).

    Counters are :func:`train.tables.is_count` keys (``dropped_boxes``, ``skipped``, ``skipped_steps``, ...) and
    any other key whose values are all whole numbers, not all 0; they get their own linear panel. Loss terms are
    the rest, less hyper-parameters, timings, norms and cosines (drawn elsewhere). The recipe's ``accumulate``
    (batches per update) and ``updated`` (a 0/1 flag: this batch ended an update) are neither.
    """
    numeric: dict[str, list[float]] = {}
    for r in train:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step",):
                numeric.setdefault(k, []).append(float(v))
    counters, losses = [], []
    for k in sorted(numeric):
        if k in ("accumulate", "updated"):  # the recipe's accumulation: batches per update, and a 0/1 flag per step
            continue
        if is_count(k):
            counters.append(k)
        elif k not in _NOT_LOSS and "norm" not in k and "cos" not in k:
            vals = numeric[k]
            (counters if all(v.is_integer() for v in vals) and any(vals) else losses).append(k)
    return losses, counters


def plot_history(history: dict[str, list[dict[str, Any]]], out_dir: str) -> list[str]:
    """Writes ``loss_terms.png``, ``alpha_lr.png``, ``grad_norms.png`` and ``map.png``; returns the paths."""
    plt = _plt()
    os.makedirs(out_dir, exist_ok=True)
    written = []
    train = history.get("train", [])
    evals = history.get("eval", [])

    def series(records, key):
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (None, None)

    if train:
        loss_keys, counter_keys = split_train_keys(train)
        fig, axes = plt.subplots(2 if counter_keys else 1, 1, figsize=(8, 7 if counter_keys else 5), sharex=True,
                                 gridspec_kw={"height_ratios": [5, 2]} if counter_keys else None, squeeze=False)
        ax = axes[0, 0]
        for k in loss_keys:
            x, y = series(train, k)
            if x is not None:
                ax.plot(x, y, label=k, lw=2.0 if k == "loss" else 1.0)
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("loss terms")
        if counter_keys:  # counts on their own linear axis, not among the losses
            cax = axes[1, 0]
            for k in counter_keys:
                x, y = series(train, k)
                if x is not None:
                    cax.step(x, y, where="post", marker=".", label=k)
            cax.set_ylabel("count")
            cax.yaxis.get_major_locator().set_params(integer=True)
            cax.set_ylim(bottom=0)
            cax.grid(alpha=0.3)
            cax.legend(fontsize=8)
            cax.set_title("counters (running totals; skipped: this step)", fontsize=9)
        axes[-1, 0].set_xlabel("step")
        written.append(_save(fig, plt, out_dir, "loss_terms.png"))

        fig, ax1 = plt.subplots(figsize=(8, 4))
        xa, ya = series(train, "alpha")
        ax1.set_xlabel("step")
        ax1.grid(alpha=0.3)
        if xa is not None:
            ax1.plot(xa, ya, color="C0", label="alpha")
            ax1.set_ylabel("alpha", color="C0")
            ax2 = ax1.twinx()
        else:  # no alpha schedule (e.g. YOLOv1): the learning rate alone, no empty alpha axis
            ax2 = ax1
        x, y = series(train, "lr")
        if x is not None:
            ax2.plot(x, y, color="C1", label="lr")
        ax2.set_ylabel("learning rate", color="C1")
        ax1.set_title("alpha and learning rate" if xa is not None else "learning rate")
        written.append(_save(fig, plt, out_dir, "alpha_lr.png"))

        norm_keys = sorted({k for r in train for k in r if "norm" in k and isinstance(r.get(k), (int, float))})
        if norm_keys:
            fig, ax = plt.subplots(figsize=(8, 4))
            for k in norm_keys:
                x, y = series(train, k)
                ax.plot(x, y, label=k)
            ax.set_xlabel("step")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_title("gradient / parameter norms")
            written.append(_save(fig, plt, out_dir, "grad_norms.png"))

    if evals:
        keys = sorted(
            {
                k
                for r in evals
                for k in r
                if k.lower().startswith(("map", "polygon", "ar")) and isinstance(r.get(k), (int, float))
            },
            key=lambda k: (k.lower().startswith("ar"), k),  # mAPs first, then AR
        )
        fig, ax = plt.subplots(figsize=(8, 4))
        for i, k in enumerate(keys):
            x, y = series(evals, k)
            if x is None:
                continue
            ax.plot(x, y, marker="o", ms=5, ls="--" if k.lower().startswith("ar") else "-", color=f"C{i}",
                    label=f"{k} (last {y[-1]:.3f})")
        steps = sorted({r["step"] for r in evals})
        if len(steps) <= 12:
            ax.set_xticks(steps)  # one tick per evaluation
        ax.set_xlabel(f"step ({len(steps)} evaluation{'s' if len(steps) != 1 else ''})")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")  # the curves rise: their lower right stays empty
        ax.set_title("validation mAP and AR")
        written.append(_save(fig, plt, out_dir, "map.png"))
    return written


def plot_pr_curve(precision: np.ndarray, path: str, *, class_names=None, recall=None) -> str:
    """Writes the precision–recall curve at IoU 0.5 (as ultralytics' ``PR_curve.png``).

    One thin line per class with ground truth, labelled with its AP50 (legend when fewer than 21 classes), and
    the mean over those classes at each recall as a thick line labelled with mAP@0.5.

    Args:
      precision: ``[K, R]`` COCO interpolated precision per class at the recall thresholds (-1 for classes
        without ground truth), e.g. ``jaxdet.metrics.coco_metrics(...)["precision50"]``.
      path: the PNG to write.
      class_names: K names (default: the class indices).
      recall: ``[R]`` recall thresholds (default: COCO's 101, ``jaxdet.metrics.RECALL_THRESHOLDS``).
    """
    plt = _plt()
    precision = np.asarray(precision, np.float64)
    recall = RECALL_THRESHOLDS if recall is None else np.asarray(recall, np.float64)
    if precision.ndim != 2 or precision.shape[1] != recall.shape[0]:
        raise ValueError(f"precision: expected [K, {recall.shape[0]}], got shape {precision.shape}")
    names = [str(k) for k in range(precision.shape[0])] if class_names is None else [str(c) for c in class_names]
    have = np.flatnonzero(np.all(precision > -1, axis=1))
    fig, ax = plt.subplots(figsize=(9, 6))
    for k in have:
        ap50 = precision[k].mean()
        if len(have) < 21:
            ax.plot(recall, precision[k], lw=1, label=f"{names[k]} {ap50:.3f}")
        else:
            ax.plot(recall, precision[k], lw=1, color="gray")
    if len(have):
        mean = precision[have].mean(0)
        ax.plot(recall, mean, lw=3, color="blue", label=f"all classes {mean.mean():.3f} mAP@0.5")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if len(have):
        ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left", fontsize=8)
    ax.set_title("Precision-Recall Curve (IoU 0.5)")
    out_dir, name = os.path.split(path)
    os.makedirs(out_dir or ".", exist_ok=True)
    return _save(fig, plt, out_dir or ".", name)


def save_image(grid: np.ndarray, path: str, *, title: str | None = None) -> str:
    """Saves a uint8/float image (e.g. a grid of validation images with predictions) as PNG, pixel for pixel,
    with ``title`` (if any) on a white band above it."""
    grid = np.asarray(grid)
    if grid.dtype != np.uint8:
        grid = np.clip(grid * (255.0 if grid.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if grid.ndim == 2:
        grid = np.repeat(grid[..., None], 3, axis=-1)
    im = Image.fromarray(grid[..., :3])
    if title:
        font = label_font(max(14, min(24, grid.shape[1] // 50)))
        left, top, right, bottom = ImageDraw.Draw(im).textbbox((0, 0), title, font=font)
        band = bottom - top + 12
        canvas = Image.new("RGB", (max(im.width, right - left + 12), im.height + band), (255, 255, 255))
        canvas.paste(im, (0, band))
        ImageDraw.Draw(canvas).text(((canvas.width - (right - left)) // 2 - left, 6 - top), title, fill=(0, 0, 0),
                                    font=font)
        im = canvas
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    im.save(path)
    return path


_CLASS_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                  (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def plot_train_batch(batch: dict[str, np.ndarray], path: str, *, class_names=None, max_images: int = 16,
                     title: str | None = None, max_labels: int = 20) -> str:
    """Draws a training batch as the model sees it, after augmentation (ultralytics' ``train_batch0.jpg``).

    Each object's box is drawn in its class colour, with its class name when the image has at most
    ``max_labels`` objects (dense scenes stay readable), its polygon as a thin outline.

    Args:
      batch: a (host) batch dict: ``image [N, H, W, 3]`` float in [0, 1] or uint8, ``boxes [N, M, 4]``,
        ``classes [N, M]``, ``valid [N, M]``, optional ``polygons [N, M, K, 2]``.
      path: PNG path.
      class_names: names for the labels and the legend (default: class indices).
      max_images: at most this many images (the first ones), on a square grid.
      title: optional title.
      max_labels: write class names only in images with at most this many objects.
    """

    images = np.asarray(batch["image"])[:max_images]
    if images.dtype != np.uint8:
        images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    n, h0, w0 = images.shape[:3]
    scale = max(1, 256 // max(h0, w0))
    h, w = h0 * scale, w0 * scale
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + 2), cols * (w + 2), 3), 255, np.uint8)
    font = label_font(label_font_size(w, h))

    def name(c):
        return class_names[c] if class_names is not None and c < len(class_names) else str(c)

    for i in range(n):
        im = Image.fromarray(images[i]).resize((w, h), Image.NEAREST)
        draw = ImageDraw.Draw(im)
        labels = []
        objects = np.flatnonzero(np.asarray(batch["valid"][i]))
        for m in objects:
            c = int(batch["classes"][i, m])
            colour = _CLASS_COLOURS[c % len(_CLASS_COLOURS)]
            box = (np.asarray(batch["boxes"][i, m], np.float64) * [w, h, w, h]).tolist()
            draw.rectangle(box, outline=colour, width=1)
            if batch.get("polygons") is not None and np.shape(batch["polygons"])[-2] >= 3:  # K = 0: no polygons
                pts = (np.asarray(batch["polygons"][i, m], np.float64) * [w, h]).ravel().tolist()
                draw.line(pts + pts[:2], fill=colour, width=1)
            if len(objects) <= max_labels:
                labels.append((box, name(c), colour))
        taken: list = []
        for box, text, colour in labels:  # after every box, so that no box is drawn over a label
            draw_label(draw, box, text, colour, font=font, image_size=(w, h), taken=taken)
        r, k = divmod(i, cols)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, k * (w + 2) + 1 : k * (w + 2) + 1 + w] = np.asarray(im)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return save_image(grid, path, title=title)


def _save(fig, plt, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
