"""Printable tables of :func:`jaxdet.metrics.coco_metrics`' result: the summary and the per-class table.

* :func:`format_metrics_table` — the summary rows (mAPs, AR, polygon metrics), then the per-class table;
* :func:`per_class_rows` — the per-class table as rows (also written by :mod:`train.eval_report`);
* :func:`format_per_class_table` — those rows in ultralytics' per-class layout;
* :func:`format_metrics_line` — ``k=v, ...`` for a printed line, counts (:func:`is_count`) as integers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jaxdet import _checks

__all__ = ["format_metrics_table", "per_class_rows", "format_per_class_table", "format_metrics_line", "is_count",
           "COUNT_KEYS"]

COUNT_KEYS = frozenset({"dropped_boxes", "skipped", "skipped_steps", "updated", "accumulate"})
"""Metrics that count things (logged as floats, as every scalar is): objects augmentation dropped, skipped
(non-finite) steps, accumulation flags. With the ``num_*`` keys of an evaluation (``num_images``, ``num_gt``,
``num_detections``) they print as integers and :func:`train.plots.plot_history` draws them on their own panel."""


def is_count(key: str) -> bool:
    """Whether the metric ``key`` counts things (:data:`COUNT_KEYS` or a ``num_*`` key)."""
    return key in COUNT_KEYS or key.startswith("num_")


def _format_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        return str(value)
    v = float(value)
    if (is_count(key) or isinstance(value, int)) and v.is_integer():
        return str(int(v))
    return f"{v:.4f}"


def format_metrics_line(metrics: Mapping[str, Any]) -> str:
    """``"mAP=0.0248, ..., num_images=256"``: each metric with 4 decimals, counts (:func:`is_count`, or Python
    ints) as integers."""
    return ", ".join(f"{k}={_format_value(k, v)}" for k, v in metrics.items())


def _ar_key(metrics: Mapping[str, Any]) -> str | None:
    keys = [k for k in metrics if k.startswith("AR") and k[2:].isdigit()]
    return keys[0] if keys else None


def format_metrics_table(metrics: Mapping[str, Any], *, class_names: Sequence[str] | None = None) -> str:
    """A printable table of :func:`jaxdet.metrics.coco_metrics` output: summary rows, then
    :func:`format_per_class_table`."""
    _checks.keys_present(metrics, ("mAP", "mAP50", "mAP75"), "metrics")
    rows = [("mAP@[.5:.95]", metrics["mAP"]), ("mAP@.5", metrics["mAP50"]), ("mAP@.75", metrics["mAP75"])]
    ar = _ar_key(metrics)
    if ar is not None:
        rows.append((f"AR@{ar[2:]}", metrics[ar]))
    for key, label in (("polygon_mIoU", "polygon mIoU (matched)"), ("polygon_recall50", "polygon recall@.5"),
                       ("segm_mAP", "mask mAP@[.5:.95]"), ("segm_mAP50", "mask mAP@.5")):
        if key in metrics:
            rows.append((label, metrics[key]))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric':<{width}} | value", f"{'-' * width}-|-------"]
    lines += [f"{name:<{width}} | {value:6.4f}" if value >= 0 else f"{name:<{width}} |    n/a"
              for name, value in rows]
    lines.append(f"({metrics.get('num_images', '?')} images, {metrics.get('num_gt', '?')} GT, "
                 f"{metrics.get('num_detections', '?')} detections)")
    if "per_class" in metrics:
        lines += ["", format_per_class_table(metrics, class_names=class_names)]
    return "\n".join(lines)


def per_class_rows(metrics: Mapping[str, Any], *, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The per-class table of :func:`jaxdet.metrics.coco_metrics` output as rows, ``"all"`` first, as ultralytics'
    ``DetectionValidator.print_results``: ``{"class": name, "images", "instances", "AP50", "AP50-95"}``.

    ``images`` counts the images holding at least one instance of the class (for "all": every image); the APs
    are COCO's (-1 for a class without ground truth). The "all" APs are the mean over the classes with ground
    truth (COCO's mAP@.5 and mAP@[.5:.95]).
    """
    _checks.keys_present(metrics, ("per_class", "mAP", "mAP50", "num_images", "num_gt"), "metrics")
    rows = [{"class": "all", "images": int(metrics["num_images"]), "instances": int(metrics["num_gt"]),
             "AP50": float(metrics["mAP50"]), "AP50-95": float(metrics["mAP"])}]
    for r in metrics["per_class"]:
        k = int(r["class"])
        name = class_names[k] if class_names is not None and k < len(class_names) else str(k)
        rows.append({"class": str(name), "images": r["images"], "instances": r["instances"], "AP50": r["AP50"],
                     "AP50-95": r["AP"]})
    return rows


def format_per_class_table(metrics: Mapping[str, Any], *, class_names: Sequence[str] | None = None) -> str:
    """:func:`per_class_rows` printed in ultralytics' layout (``%22s`` then ``%11`` columns; n/a without GT)."""
    head = ("%22s" + "%11s" * 4) % ("Class", "Images", "Instances", "mAP50", "mAP50-95")
    lines = [head]
    for r in per_class_rows(metrics, class_names=class_names):
        aps = "".join("%11.3g" % r[k] if r[k] >= 0 else "%11s" % "n/a" for k in ("AP50", "AP50-95"))
        lines.append(("%22s" + "%11i" * 2) % (r["class"][:22], r["images"], r["instances"]) + aps)
    return "\n".join(lines)
