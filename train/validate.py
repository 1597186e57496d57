"""Config checks that run before anything compiles: every error names the field (``python -m train`` exits 2).

:func:`validate_config` checks, in order:

- positive ``train.steps``, ``train.batch_size``, ``train.learning_rate``, ``data.image_size``,
  ``eval.batch_size`` and ``train.max_consecutive_nonfinite``; non-negative ``train.warmup_steps``,
  ``train.weight_decay``, ``train.grad_clip``;
- the recipe (:func:`check_recipe`): ``train.recipe``; for ``"ultralytics"`` ``train.optimizer``,
  ``train.momentum``, ``train.lrf``, ``train.warmup_bias_lr``, ``train.warmup_momentum``, ``train.nbs``; with
  ``train.ema`` ``train.ema_decay`` and ``train.ema_tau``;
- the head and its loss fields (``model.head``, e.g. ``loss.iou_target``), by building the head, and the
  optional decode fields ``eval.multi_label`` / ``eval.pre_nms_top_k`` against the head's ``decode``;
- the network, by tracing its construction abstractly (``nnx.eval_shape``: e.g. ``model.widths`` and
  ``model.depths`` of different lengths);
- the mesh against the devices, and ``train.batch_size`` divisible by the data-axis size;
- the memory of the head's target assignment against the device memory (dense data: ``data.max_objects``,
  resolved by :func:`train.data.max_objects`; skipped when the data cannot be read, which the data check reports);
- a writable ``--workdir``.

The ``data`` section (``data.name``, ``data.loader``, paths, ``data.max_objects`` against the annotations) is
checked by :func:`train.data.resolve_data_config`, which ``python -m train`` calls first.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import jax
import ml_collections
from flax import nnx

from jaxdet import _checks
from train import data as data_lib
from train import mesh as mesh_lib
from train import recipe as recipe_lib
from train.task import decode_options, make_head

#: the fraction of a device's memory the target assignment may use before a config is refused.
ASSIGNMENT_MEMORY_FRACTION = 0.5


class ConfigError(ValueError):
    """A config that cannot run; the message names the field. ``python -m train`` prints it and exits 2."""


def _positive(config, dotted: str, *, integer: bool, allow_zero: bool = False) -> None:
    section, field = dotted.split(".")
    value = config[section].get(field)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0) and (not integer or float(value).is_integer())
    if not ok:
        kind = "an int" if integer else "a number"
        raise ConfigError(f"{dotted} must be {kind} {'>= 0' if allow_zero else '> 0'}; got {value!r}")


def check_recipe(train: ml_collections.ConfigDict) -> None:
    """The ``train.recipe`` / ``train.ema`` fields (:mod:`train.recipe`); raises :class:`ConfigError`."""

    try:
        recipe = _checks.choice(train.get("recipe", "jaxdet"), "train.recipe", recipe_lib.RECIPES)
        if recipe == "ultralytics":
            fields = ("optimizer", "momentum", "lrf", "warmup_bias_lr", "warmup_momentum", "nbs")
            _checks.keys_present(train, fields, "config.train", hint='(needed by train.recipe="ultralytics")')
            _checks.choice(train.optimizer, "train.optimizer", recipe_lib.OPTIMIZERS)
            _checks.number(train.momentum, "train.momentum", low=0.0, high=1.0, high_open=True)
            _checks.number(train.lrf, "train.lrf", low=0.0, low_open=True)
            _checks.number(train.warmup_bias_lr, "train.warmup_bias_lr", low=0.0)
            _checks.number(train.warmup_momentum, "train.warmup_momentum", low=0.0, high=1.0, high_open=True)
            _checks.positive_int(train.nbs, "train.nbs")
        ema = train.get("ema", False)
        if not isinstance(ema, bool):
            raise _checks.fail_value("train.ema", "True or False", ema)
        if ema:
            _checks.keys_present(train, ("ema_decay", "ema_tau"), "config.train", hint="(needed by train.ema=True)")
            _checks.number(train.ema_decay, "train.ema_decay", low=0.0, high=1.0)
            _checks.number(train.ema_tau, "train.ema_tau", low=0.0, low_open=True)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def device_memory_bytes(device) -> int:
    """The memory a device may use: the runtime's ``bytes_limit`` (GPU/TPU), else the host's available RAM."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def validate_config(config: ml_collections.ConfigDict, workdir: str, *, devices: Any = None) -> None:
    """Raises :class:`ConfigError` (naming the field) if ``config`` cannot run on ``devices`` (default: all).

    Nothing is compiled: the network is only traced abstractly.
    """

    for dotted in ("train.steps", "train.batch_size", "data.image_size", "eval.batch_size"):
        _positive(config, dotted, integer=True)
    _positive(config, "train.learning_rate", integer=False)
    for dotted in ("train.warmup_steps",):
        _positive(config, dotted, integer=True, allow_zero=True)
    for dotted in ("train.weight_decay", "train.grad_clip"):
        if dotted.split(".")[1] in config.train:
            _positive(config, dotted, integer=False, allow_zero=True)
    if "max_consecutive_nonfinite" in config.train:
        _positive(config, "train.max_consecutive_nonfinite", integer=True)
    check_recipe(config.train)

    try:
        head = make_head(config)
    except ValueError as err:
        raise ConfigError(f"model.head={config.model.get('head')!r} / loss: {err}") from None
    try:
        decode_options(config, head)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        nnx.eval_shape(lambda: head.build_model(config.model, rngs=nnx.Rngs(0)))
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None

    devices = jax.devices() if devices is None else list(devices)
    try:
        mesh = mesh_lib.make_mesh(tuple(config.mesh.shape), tuple(config.mesh.axes))
    except ValueError as err:
        raise ConfigError(f"mesh.shape / mesh.axes: {err}") from None
    data_size = mesh_lib.data_size(mesh)
    batch = int(config.train.batch_size)
    if batch % data_size:
        raise ConfigError(
            f"train.batch_size={batch} must be divisible by the data-axis size {data_size} "
            f"(mesh {dict(mesh.shape)} on {len(devices)} device(s)); e.g. --config.train.batch_size="
            f"{max(data_size, batch // data_size * data_size)}"
        )

    try:
        max_objects = data_lib.max_objects(config)
    except data_lib.DataConfigError:  # the data section's own check (resolve_data_config, run first) reports it
        max_objects = None
    need = 0 if max_objects is None else head.assignment_bytes(
        batch_size=batch // data_size,
        max_objects=max_objects,
        image_size=int(config.data.image_size),
    )
    have = device_memory_bytes(devices[0])
    if need > ASSIGNMENT_MEMORY_FRACTION * have:
        raise ConfigError(
            f"the target assignment needs about {need / 2**30:.1f} GiB per device (data.max_objects="
            f"{max_objects}, {batch // data_size} images per device of train.batch_size={batch}, "
            f"data.image_size={int(config.data.image_size)}), more than {ASSIGNMENT_MEMORY_FRACTION:.0%} of the "
            f"{have / 2**30:.1f} GiB of {devices[0].platform} memory: lower data.max_objects or train.batch_size"
        )

    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"--workdir {workdir!r} is not writable: {err.strerror or err}") from None
