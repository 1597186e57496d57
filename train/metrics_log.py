"""Metrics to JSONL (``metrics.jsonl``) and TensorBoard event files (tensorboardX), process 0 only.

Each JSONL line is ``{"kind": "train" | "eval" | "info", "step": int, ...scalars}``; a resumed run appends,
dropping nothing (``read_history`` keeps the last record per (kind, step)).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from tensorboardX import SummaryWriter


def _scalar(v: Any):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else str(f)


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
        record.update({k: _scalar(v) for k, v in scalars.items()})
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("kind", "step") and isinstance(v, float):
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
