"""Metrics to JSONL (``metrics.jsonl``) and TensorBoard event files (tensorboardX), process 0 only.

Each JSONL line is ``{"kind": "train" | "eval" | "info", "step": int, ...scalars}``; a resumed run appends,
dropping nothing (``read_history`` keeps the last record per (kind, step)). Counts (:func:`train.tables.is_count`:
``num_images``, ``dropped_boxes``, ...) are written as JSON integers, other numbers as floats, and a non-finite
number as its string (``"nan"``), which JSON cannot hold.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from tensorboardX import SummaryWriter

from train.tables import is_count


def json_scalar(key: str, v: Any):
    """``v`` as JSON writes it under ``key``: an int for a whole count, a float for another number, ``"nan"`` /
    ``"inf"`` for a non-finite one; a mapping value converted key by key; anything else unchanged."""
    if isinstance(v, dict):
        return {k: json_scalar(k, x) for k, x in v.items()}
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    if not math.isfinite(f):
        return str(f)
    return int(f) if is_count(key) and f.is_integer() else f


class MetricWriter:
    def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
            if tensorboard:

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, kind: str, step: int, scalars: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": int(step)}
        record.update({k: json_scalar(k, v) for k, v in scalars.items()})
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{kind}/{k}", v, int(step))

    def flush(self) -> None:
        if self.enabled:
            self._file.flush()
            if self._tb is not None:
                self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self._tb is not None:
                self._tb.close()


def read_history(path: str) -> dict[str, list[dict[str, Any]]]:
    """Records by kind, sorted by step, later duplicates (after a resume) replacing earlier ones."""
    by_kind: dict[str, dict[int, dict]] = {}
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            by_kind.setdefault(rec.get("kind", "train"), {})[int(rec.get("step", 0))] = rec
    return {k: [v[s] for s in sorted(v)] for k, v in by_kind.items()}
