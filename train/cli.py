"""Command line of ``python -m train``.

Usage::

    python -m train                                   # default: configs/yolov8n_shapes.py
    python -m train --config configs/polygon_hybrid.py
    python -m train --config.train.steps=500 --config.model.scale=s
    python -m train --workdir /tmp/run1               # default: workdir/<config name>

``--config`` takes a path to a Python file with ``get_config()`` (or a module name under ``configs``).
``--config.a.b=value`` overrides a field (``ml_collections.config_flags``): the value must parse as the
field's type (ints are accepted for float fields, ``true``/``false`` for bools, ``(4, 8)`` or ``4`` for
tuples); when a field is given twice the last value wins. An unknown field is an error naming it and
listing the valid fields (exit status 2). A run resumes automatically from the
latest checkpoint in ``--workdir`` (falling back to an older one if the latest cannot be restored); a config
that differs from the workdir's ``config.json`` in a field that changes the model, loss or data exits with
status 2 naming the fields (``train/workdir.py``; ``--config.train.resume=False`` starts over);
SIGTERM or Ctrl-C saves a checkpoint and exits with status 0, a second Ctrl-C exits at once. The config is
checked before anything compiles (``train.validate``): a bad value exits with status 2 naming the field.

Multi-host: set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (see
``train.mesh``) and start the same command on every host.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import textwrap
from typing import Any, Sequence

import ml_collections

DEFAULT_CONFIG = "yolov8n_shapes"
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


def _pop_config_spec(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Takes ``--config X`` / ``--config=X`` (the base config) out of ``argv``; the rest goes to absl."""
    spec, rest = None, []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--config":
            if i + 1 >= len(args):
                raise UsageError("--config needs a value")
            spec, i = args[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            spec = arg[len("--config="):]
        else:
            rest.append(arg)
        i += 1
    return spec, rest


def _last_overrides(argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--config.<field> value`` written ``--config.<field>=value`` and only the last
    override of a field kept: later flags win (``config_flags`` would concatenate repeated tuple flags)."""
    args, joined = list(argv), []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--config.") and "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("--"):
            arg, i = f"{arg}={args[i + 1]}", i + 1
        joined.append(arg)
        i += 1
    last = {_field_of(a): j for j, a in enumerate(joined) if a.startswith("--config.")}
    return [a for j, a in enumerate(joined) if not a.startswith("--config.") or last[_field_of(a)] == j]


def _field_of(override: str) -> str:
    return override[len("--config."):].partition("=")[0]


def check_override(config: ml_collections.ConfigDict, dotted: str) -> Any:
    """The current value of ``config.<dotted>``; a :class:`UsageError` naming the valid fields if it is unknown,
    or if it is a section rather than a field."""
    parts = dotted.split(".")
    node = config
    for i, part in enumerate(parts):
        path = ".".join(parts[: i + 1])
        if not isinstance(node, ml_collections.ConfigDict):
            raise UsageError(f"--config.{dotted}: {'.'.join(parts[:i])} is a value, not a section")
        if part not in node:
            valid = ", ".join(sorted(node.keys()))
            where = "config" if i == 0 else "config." + ".".join(parts[:i])
            guess = suggest_field(config, dotted)
            hint = f" (did you mean `{guess}`?)" if guess else ""
            raise UsageError(
                f"--config.{dotted}: unknown config field {path!r}{hint}; valid fields of {where}: {valid}"
            )
        node = node[part]
    if isinstance(node, ml_collections.ConfigDict):
        raise UsageError(f"--config.{dotted}: is a section; set one of its fields: {', '.join(sorted(node))}")
    return node


def field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every field of ``config`` as a dotted name (``train.steps``), sections walked depth first."""
    names = []
    for key in config.keys():
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            names.extend(field_names(value, f"{prefix}{key}."))
        else:
            names.append(prefix + key)
    return names


def suggest_field(config: ml_collections.ConfigDict, dotted: str) -> str | None:
    """The valid dotted field name nearest to ``dotted`` (``difflib``), matching the whole name first and then the
    last part alone (``steps`` -> ``train.steps``); None when nothing is close."""
    names = field_names(config)
    close = difflib.get_close_matches(dotted, names, n=1, cutoff=0.6)
    if close:
        return close[0]
    by_leaf: dict[str, str] = {}
    for name in names:
        by_leaf.setdefault(name.rpartition(".")[2], name)
    close = difflib.get_close_matches(dotted.rpartition(".")[2], list(by_leaf), n=1, cutoff=0.75)
    return by_leaf[close[0]] if close else None


def config_help(config: ml_collections.ConfigDict, name: str, width: int = 100) -> str:
    """The ``--help`` listing of ``config``: each section with its fields, compactly (nested sections as
    ``section.sub.field``), and how to set one."""
    lines = [f"Config sections of {name} (set a field with --config.<section>.<field>=value, e.g. "
             "--config.train.steps=500):"]
    top = [k for k in config.keys() if not isinstance(config[k], ml_collections.ConfigDict)]
    sections = [("(top level)", top)] + [
        (k, field_names(config[k])) for k in config.keys() if isinstance(config[k], ml_collections.ConfigDict)
    ]
    for section, fields in sections:
        lines.extend(textwrap.wrap(", ".join(fields), width=width, initial_indent=f"  {section}: ",
                                   subsequent_indent="      ", break_on_hyphens=False))
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> tuple[ml_collections.ConfigDict, str, str]:
    """``argv`` (without the program name) -> (config, config name, workdir).

    The base config comes from :func:`load_config`; the overrides are parsed by ``ml_collections.config_flags``
    (on a private ``absl.flags.FlagValues``), which type-checks each value against its field. Unknown fields,
    sections, values of the wrong type and unknown flags become a :class:`UsageError` naming the field.
    ``--config.data.yaml`` without ``--config.data.name`` selects ``data.name="yolo"``.
    """
    from absl import flags  # noqa: PLC0415 - absl loaded only to parse, so --help answers at once
    from ml_collections import config_flags  # noqa: PLC0415 - absl loaded only to parse, so --help answers at once

    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        spec, _ = _pop_config_spec([a for a in argv if a not in ("-h", "--help")])
        print(config_help(*load_config(spec)))
        raise SystemExit(0)
    spec, rest = _pop_config_spec(argv)
    rest = _last_overrides(rest)
    config, name = load_config(spec)
    current = {_field_of(a): check_override(config, _field_of(a)) for a in rest if a.startswith("--config.")}
    command = ["python -m train", *rest]
    values = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "run directory (default: workdir/<config name>)", flag_values=values)
    try:
        config_flags.DEFINE_config_dict(
            "config", config, "the experiment config", flag_values=values, lock_config=True, sys_argv=command
        )
        positional = values(command)[1:]
    except flags.UnrecognizedFlagError as e:
        raise UsageError(f"unknown flag --{e.flagname}; flags: --config, --config.<field>=<value>, --workdir") from None
    except flags.IllegalFlagValueError as e:
        match = re.search(r"flag --config\.([\w.]+)=(.*?): ", str(e))
        if match is None or match.group(1) not in current:
            raise UsageError(str(e)) from None
        field, text = match.groups()
        raise UsageError(
            f"--config.{field}: expected {type(current[field]).__name__} (current value {current[field]!r}), "
            f"got {text!r}"
        ) from None
    except flags.Error as e:
        raise UsageError(str(e)) from None
    if positional:
        raise UsageError(f"unexpected argument {positional[0]!r}; see --help")
    workdir = values["workdir"].value or os.path.join("workdir", name)
    config = values["config"].value
    if "data.yaml" in current and "data.name" not in current:  # an ultralytics dataset file is a YOLO folder
        config.data.name = "yolo"
    return config, name, workdir


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        config, name, workdir = parse_args(argv)
        from train.data import DataConfigError, resolve_data_config  # noqa: PLC0415 - JAX and the trainer load after parsing: --help and usage errors answer in a second, not four
        from train.field_use import unread_overrides  # noqa: PLC0415 - as above

        unread = unread_overrides(config, [_field_of(a) for a in argv if a.startswith("--config.")])
        if unread:  # a field the run's choices do not read would be silently ignored
            raise UsageError("\n".join(unread))

        try:
            resolve_data_config(config)  # COCO/VOC/YOLO folders: check the paths and read the annotations
        except DataConfigError as e:
            raise UsageError(str(e)) from None
    except UsageError as e:
        _exit_with_error(e, 2)
    # Multi-host initialisation must come before any other JAX call.
    from train import mesh as mesh_lib  # noqa: PLC0415 - JAX and the trainer load after parsing: --help and usage errors answer in a second, not four

    mesh_lib.maybe_initialize_distributed()
    import jax  # noqa: PLC0415 - JAX and the trainer load after parsing: --help and usage errors answer in a second, not four

    from train import compile_cache, loop  # noqa: PLC0415 - JAX and the trainer load after parsing: --help and usage errors answer in a second, not four
    from train.checkpoint import CheckpointMismatchError  # noqa: PLC0415 - as above
    from train.freeze import FreezeError  # noqa: PLC0415 - as above
    from train.init_weights import InitWeightsError  # noqa: PLC0415 - as above
    from train.validate import ConfigError, validate_config  # noqa: PLC0415 - JAX and the trainer load after parsing: --help and usage errors answer in a second, not four
    from train.workdir import WorkdirConfigError  # noqa: PLC0415 - as above

    try:
        validate_config(config, workdir)  # before anything compiles
    except ConfigError as e:
        _exit_with_error(e, 2)
    if jax.process_index() == 0:
        print(f"config {name} -> workdir {workdir}", flush=True)
    compile_cache.enable_for(config)  # before the first compile: one compile per machine (config.compile_cache)
    try:
        summary = loop.run(config, workdir)
    except loop.NonFiniteTrainingError as e:
        _exit_with_error(e, 1)
    except (WorkdirConfigError, CheckpointMismatchError, InitWeightsError, FreezeError) as e:  # nothing trained
        _exit_with_error(e, 2)
    if jax.process_index() == 0 and summary.get("eval"):
        ev = summary["eval"]
        from train.tables import format_metrics_line  # noqa: PLC0415 - JAX and the trainer load after parsing

        print("final: " + format_metrics_line(ev), flush=True)  # counts (num_images, ...) as integers


def _exit_with_error(err: Exception, status: int) -> None:
    """Prints ``error: ...`` (no traceback) and exits with ``status``."""
    print(f"error: {err}", file=sys.stderr, flush=True)
    raise SystemExit(status)
