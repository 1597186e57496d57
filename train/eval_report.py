"""Files of the final evaluation: the per-class table and the precision–recall curve, in the workdir.

:func:`write_report` writes, from the result of ``jaxdet.metrics.coco_metrics`` (with ``class_names``):

* ``eval/per_class.json`` — ``{"step", "rows": [{"class", "images", "instances", "AP50", "AP50-95"}, ...]}``,
  ``"all"`` first (:func:`train.tables.per_class_rows`; -1 for a class without ground truth);
* ``eval/per_class.md`` — the same as a Markdown table;
* ``eval/pr_curve.json`` — ``{"step", "iou": 0.5, "recall": [101], "precision": {class name: [101]}}``,
  COCO's interpolated precision at IoU 0.5 (all areas, the last maxDets) for every class with ground truth;
* ``plots/PR_curve.png`` — :func:`train.plots.plot_pr_curve` of those arrays.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from jaxdet.metrics import RECALL_THRESHOLDS
from train import plots
from train.tables import per_class_rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    def ap(v):
        return f"{v:.4f}" if v >= 0 else "n/a"

    lines = ["| class | images | instances | AP50 | AP50-95 |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['class']} | {r['images']} | {r['instances']} | {ap(r['AP50'])} | {ap(r['AP50-95'])} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def write_report(workdir: str, result: dict[str, Any], *, step: int) -> list[str]:
    """Writes the files listed in the module docstring; returns their paths."""
    names = result.get("class_names") or None
    eval_dir, plot_dir = os.path.join(workdir, "eval"), os.path.join(workdir, "plots")
    os.makedirs(eval_dir, exist_ok=True)
    rows = per_class_rows(result, class_names=names)
    paths = [os.path.join(eval_dir, "per_class.json"), os.path.join(eval_dir, "per_class.md"),
             os.path.join(eval_dir, "pr_curve.json")]
    with open(paths[0], "w") as f:
        json.dump({"step": int(step), "rows": rows}, f, indent=2)
    with open(paths[1], "w") as f:
        f.write(f"Final evaluation at step {step} (COCO APs in original image pixels)\n\n" + _markdown(rows))
    precision = np.asarray(result["precision50"], np.float64)  # [K, R]
    labels = [r["class"] for r in rows[1:]]
    with open(paths[2], "w") as f:
        json.dump({"step": int(step), "iou": 0.5, "recall": RECALL_THRESHOLDS.tolist(),
                   "precision": {labels[k]: precision[k].tolist() for k in range(len(labels))
                                 if np.all(precision[k] > -1)}}, f)
    paths.append(plots.plot_pr_curve(precision, os.path.join(plot_dir, "PR_curve.png"), class_names=labels))
    return paths
