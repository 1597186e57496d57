"""A workdir belongs to one model: the resume check, ``config_history.jsonl`` and ``train.resume=False``.

A workdir that holds checkpoints and a ``config.json`` is resumed. Before anything is built, :func:`check_resume`
compares the saved ``config.json`` (which describes the checkpoints and is never rewritten on resume) with the
new run's config, field by field:

- Fields that are safe to change on resume (:data:`SAFE_ON_RESUME`) are allowed. Their changes are appended as one
  record to ``<workdir>/config_history.jsonl``: ``{"time", "step" (the latest checkpoint), "changes": {field: [old,
  new]}}`` (old: the value the previous resume set, else ``config.json``'s; a field already at its recorded value is
  not recorded again). Safe are: the run's length and its bookkeeping (``train.steps``, ``train.log_every``,
  ``train.eval_every``, ``train.checkpoint_every``, ``train.keep_checkpoints``, ``train.progress_bar``,
  ``train.max_consecutive_nonfinite``), ``data.close_mosaic`` (it follows ``train.steps``), the loader's parallelism
  and caches (``data.num_workers``, ``data.num_threads``, ``data.prefetch``, ``data.cache``, ``data.cache_dir``,
  ``data.label_cache``, ``data.label_cache_dir``), every ``eval.*`` field, every ``mesh.*`` field (checkpoints
  restore onto any mesh), ``compile_cache``, ``name``, and ``model.init`` (the initial weights: read only when a
  run starts, so a resumed run ignores it and says so; changing it cannot change the checkpoints' model).
- Every other difference (``model``, ``loss``, ``data``, the rest of ``train``, ``seed``) raises
  :class:`WorkdirConfigError` (``python -m train`` exits with status 2), listing each field ``old -> new`` and
  how to go on: another ``--workdir``, or ``--config.train.resume=False``.

A field present on only one side (a field added to jaxdet since the workdir was written) is not compared.

``train.resume=False`` (:func:`move_previous_run`) moves the previous run's files into
``<workdir>/previous-<YYYYmmdd-HHMMSS>/`` and the run starts from step 0; nothing is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

#: Fields that may change when a run resumes; a name ending in ``.`` covers a whole section.
SAFE_ON_RESUME = (
    "name",
    "compile_cache",
    "model.init",
    "train.resume",
    "train.steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.progress_bar",
    "train.max_consecutive_nonfinite",
    "data.close_mosaic",
    "data.num_workers",
    "data.num_threads",
    "data.prefetch",
    "data.cache",
    "data.cache_dir",
    "data.label_cache",
    "data.label_cache_dir",
    "eval.",
    "mesh.",
)

#: What ``train.resume=False`` leaves in place: caches that do not describe a run, and earlier moved runs.
_KEPT_IN_PLACE = ("image_cache",)
HISTORY = "config_history.jsonl"


class WorkdirConfigError(ValueError):
    """The workdir's checkpoints were written with a config that differs in a field that is not safe to change."""


def is_safe(field: str) -> bool:
    return any(field == s or (s.endswith(".") and field.startswith(s)) for s in SAFE_ON_RESUME)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` of a config's JSON (nested dicts); lists stay values."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def diff(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """``{field: (old, new)}`` of the fields present in both configs (as JSON) whose values differ."""
    a, b = flatten(old), flatten(new)
    return {k: (a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k]}


def checkpoint_steps(workdir: str) -> list[int]:
    d = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, list) else "(" + ", ".join(json.dumps(v) for v in value) + ")"


def check_resume(workdir: str, new_config: dict) -> dict[str, tuple[Any, Any]] | None:
    """Compares ``<workdir>/config.json`` with ``new_config`` (the new run's config as JSON) when the workdir
    holds checkpoints; returns the (safe) changes, or None when there is nothing to resume.

    Raises:
      WorkdirConfigError: when a field outside :data:`SAFE_ON_RESUME` differs, naming each one.
    """
    path = os.path.join(workdir, "config.json")
    steps = checkpoint_steps(workdir)
    if not steps or not os.path.isfile(path):
        return None
    with open(path) as f:
        old = json.load(f)
    if not isinstance(old, dict):
        return None
    changes = diff(old, new_config)
    unsafe = {k: v for k, v in changes.items() if not is_safe(k)}
    if not unsafe:  # the safe fields as the last resume set them: each change is recorded once
        current = _as_last_resumed(workdir)
        changes = {k: v for k, v in changes.items() if current.get(k, v[0]) != v[1]}
        changes = {k: (current.get(k, a), b) for k, (a, b) in changes.items()}
    if unsafe:
        lines = "\n".join(f"  {k}: {_show(a)} -> {_show(b)}" for k, (a, b) in unsafe.items())
        raise WorkdirConfigError(
            f"{workdir} holds checkpoints (step {steps[-1]}) of another config; these fields differ from its "
            f"config.json:\n{lines}\n"
            f"To train this config, pass another --workdir, or --config.train.resume=False to start over in "
            f"{workdir} (the previous run is moved to {os.path.join(workdir, 'previous-<time>')}/)."
        )
    return changes


def _as_last_resumed(workdir: str) -> dict[str, Any]:
    """``{field: value}`` of the safe fields as ``config_history.jsonl``'s records left them."""
    current: dict[str, Any] = {}
    path = os.path.join(workdir, HISTORY)
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    current.update({k: v[1] for k, v in json.loads(line).get("changes", {}).items()})
    return current


def record_changes(workdir: str, changes: dict[str, tuple[Any, Any]]) -> None:
    """Appends one record of the safe ``changes`` to ``<workdir>/config_history.jsonl`` (nothing if empty)."""
    changes = {k: v for k, v in changes.items() if k != "train.resume"}
    if not changes:
        return
    steps = checkpoint_steps(workdir)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "step": steps[-1] if steps else None,
        "changes": {k: [a, b] for k, (a, b) in changes.items()},
    }
    with open(os.path.join(workdir, HISTORY), "a") as f:
        f.write(json.dumps(record) + "\n")


def move_previous_run(workdir: str) -> str | None:
    """Moves every entry of ``workdir`` (checkpoints, config.json, metrics.jsonl, plots, eval, summary,
    tensorboard, config_history.jsonl, ...) but earlier ``previous-*`` runs and caches into
    ``<workdir>/previous-<YYYYmmdd-HHMMSS>/``; returns that folder, or None when there was nothing to move."""
    if not os.path.isdir(workdir):
        return None
    entries = [e for e in sorted(os.listdir(workdir)) if not e.startswith("previous-") and e not in _KEPT_IN_PLACE]
    if not entries:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    dest = os.path.join(workdir, f"previous-{stamp}")
    n = 1
    while os.path.exists(dest):
        n += 1
        dest = os.path.join(workdir, f"previous-{stamp}-{n}")
    os.makedirs(dest)
    for e in entries:
        shutil.move(os.path.join(workdir, e), os.path.join(dest, e))
    return dest
