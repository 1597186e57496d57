"""PNG plots written at the end of a run (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_NOT_LOSS = {
    "kind", "step", "alpha", "lr", "grad_norm", "param_norm", "images_per_sec", "step_time",
    "loader_images_per_sec", "data_wait_s",
    "lr_bias", "momentum", "accumulate", "updated",  # the ultralytics recipe's hyper-parameters (train/recipe.py)
}


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
        keys = sorted(
            {
                k
                for r in train
                for k in r
                if k not in _NOT_LOSS and "norm" not in k and "cos" not in k and isinstance(r.get(k), (int, float))
            }
        )
        fig, ax = plt.subplots(figsize=(8, 5))
        for k in keys:
            x, y = series(train, k)
            if x is not None:
                ax.plot(x, y, label=k, lw=2.0 if k == "loss" else 1.0)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("loss terms")
        written.append(_save(fig, plt, out_dir, "loss_terms.png"))

        fig, ax1 = plt.subplots(figsize=(8, 4))
        x, y = series(train, "alpha")
        if x is not None:
            ax1.plot(x, y, color="C0", label="alpha")
        ax1.set_xlabel("step")
        ax1.set_ylabel("alpha", color="C0")
        ax1.grid(alpha=0.3)
        ax2 = ax1.twinx()
        x, y = series(train, "lr")
        if x is not None:
            ax2.plot(x, y, color="C1", label="lr")
        ax2.set_ylabel("learning rate", color="C1")
        ax1.set_title("alpha and learning rate")
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
                if k.lower().startswith(("map", "polygon")) and isinstance(r.get(k), (int, float))
            }
        )
        fig, ax = plt.subplots(figsize=(8, 4))
        for k in keys:
            x, y = series(evals, k)
            ax.plot(x, y, marker="o", label=k)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("validation metrics")
        written.append(_save(fig, plt, out_dir, "map.png"))
    return written


def save_image(grid: np.ndarray, path: str, *, title: str | None = None) -> str:
    """Saves a uint8/float image (e.g. a grid of validation images with predictions) as PNG."""
    plt = _plt()
    grid = np.asarray(grid)
    if grid.dtype != np.uint8:
        grid = np.clip(grid * (255.0 if grid.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    h, w = grid.shape[:2]
    fig = plt.figure(figsize=(max(w / 100, 4), max(h / 100, 4)), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1] if title is None else [0, 0, 1, 0.95])
    ax.imshow(grid, interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _save(fig, plt, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
