"""Command line of ``python -m train``.

Usage::

    python -m train                                   # default: configs/yolov1_shapes.py
    python -m train --config configs/polygon_hybrid.py
    python -m train --config.train.steps=200 --config.model.widths='(8, 16, 32)'
    python -m train --workdir /tmp/run1               # default: workdir/<config name>

``--config`` takes a path to a Python file with ``get_config()`` (or a module name under ``configs``).
``--config.a.b=value`` overrides a field; the value is parsed as a Python literal and must match the
field's type (ints are accepted for float fields, ``true``/``false`` for bools, lists for tuples). An
unknown field is an error naming it and listing the valid fields. A run resumes automatically from the
latest checkpoint in ``--workdir``; SIGTERM saves a checkpoint and exits with status 0.

Multi-host: set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (see
``train.mesh``) and start the same command on every host.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from typing import Any, Sequence

import ml_collections

DEFAULT_CONFIG = "yolov1_shapes"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UsageError(Exception):
    """A command-line error: printed without a traceback, exit status 2."""


def load_config(spec: str | None) -> tuple[ml_collections.ConfigDict, str]:
    """Loads ``get_config()`` from a file path or a ``configs`` module name; returns (config, name)."""
    spec = spec or DEFAULT_CONFIG
    if _REPO_ROOT not in sys.path:
        sys.path.insert(0, _REPO_ROOT)  # so config files can ``from configs import ...``
    path = None
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        for candidate in (spec, os.path.join(_REPO_ROOT, spec)):
            if os.path.isfile(candidate):
                path = candidate
                break
        if path is None:
            raise UsageError(f"--config: no such file {spec!r}")
        name = os.path.splitext(os.path.basename(path))[0]
        mod_spec = importlib.util.spec_from_file_location(f"_jaxdet_config_{name}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        name = spec.split(".")[-1]
        try:
            module = importlib.import_module(spec if "." in spec else f"configs.{spec}")
        except ModuleNotFoundError as e:
            available = sorted(
                f[:-3]
                for f in os.listdir(os.path.join(_REPO_ROOT, "configs"))
                if f.endswith(".py") and not f.startswith("_")
            )
            raise UsageError(f"--config: unknown config {spec!r} ({e}); available: {', '.join(available)}") from None
    if not hasattr(module, "get_config"):
        raise UsageError(f"--config: {spec!r} has no get_config()")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise UsageError(f"--config: {spec!r}: get_config() must return an ml_collections.ConfigDict")
    if "name" in config:
        name = config.name
    return config, name


def _parse_value(text: str, current: Any, field: str) -> Any:
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise UsageError(f"--config.{field}: expected a bool (true/false), got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare string
    if current is None:
        return value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(current, tuple) and isinstance(value, (int, float, str)):
        return (value,)
    if isinstance(current, str) and not isinstance(value, str):
        return text
    if isinstance(current, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, type(current)):
        raise UsageError(
            f"--config.{field}: expected {type(current).__name__} (current value {current!r}), got {text!r}"
        )
    return value


def apply_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
    """Sets ``config.<dotted>`` from the string ``text``, checking the field exists."""
    parts = dotted.split(".")
    node = config
    for i, part in enumerate(parts):
        path = ".".join(parts[: i + 1])
        if not isinstance(node, ml_collections.ConfigDict):
            raise UsageError(f"--config.{dotted}: {'.'.join(parts[:i])} is a value, not a section")
        if part not in node:
            valid = ", ".join(sorted(node.keys()))
            where = "config" if i == 0 else "config." + ".".join(parts[:i])
            raise UsageError(f"--config.{dotted}: unknown config field {path!r}; valid fields of {where}: {valid}")
        if i < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
        raise UsageError(f"--config.{dotted}: is a section; set one of its fields: {', '.join(sorted(current))}")
    value = _parse_value(text, current, dotted)
    try:
        node[parts[-1]] = value
    except (TypeError, ValueError) as e:
        raise UsageError(f"--config.{dotted}: cannot set {value!r}: {e}") from None


def parse_args(argv: Sequence[str]) -> tuple[ml_collections.ConfigDict, str, str]:
    """``argv`` (without the program name) -> (config, config name, workdir)."""
    config_spec, workdir = None, None
    overrides: list[tuple[str, str]] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if not arg.startswith("--"):
            raise UsageError(f"unexpected argument {arg!r}; see --help")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if key.startswith("config.") or key in ("config", "workdir"):
                if i + 1 >= len(args):
                    raise UsageError(f"--{key} needs a value")
                value = args[i + 1]
                i += 1
        if key == "config":
            config_spec = value
        elif key == "workdir":
            workdir = value
        elif key.startswith("config."):
            overrides.append((key[len("config.") :], value))
        else:
            raise UsageError(f"unknown flag --{key}; flags: --config, --config.<field>=<value>, --workdir")
        i += 1
    config, name = load_config(config_spec)
    for dotted, value in overrides:
        apply_override(config, dotted, value)
    if workdir is None:
        workdir = os.path.join("workdir", name)
    return config, name, workdir


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        config, name, workdir = parse_args(argv)
        from train.data import DataConfigError, resolve_data_config

        try:
            resolve_data_config(config)  # COCO/VOC/YOLO folders: check paths, read, set model.num_classes
        except DataConfigError as e:
            raise UsageError(str(e)) from None
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    # Multi-host initialisation must come before any other JAX call.
    from train import mesh as mesh_lib

    mesh_lib.maybe_initialize_distributed()
    from train import loop
    import jax

    if jax.process_index() == 0:
        print(f"config {name} -> workdir {workdir}", flush=True)
    summary = loop.run(config, workdir)
    if jax.process_index() == 0 and summary.get("eval"):
        ev = summary["eval"]
        print("final: " + ", ".join(f"{k}={v:.4f}" for k, v in ev.items()), flush=True)
