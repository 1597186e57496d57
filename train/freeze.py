"""``train.freeze``: layers that training leaves as they are, as ultralytics' ``freeze`` (engine/trainer.py, 8.4.190).

The field is an int ``N`` (the first N top-level layers, ``model.0`` .. ``model.N-1``), or a list of layer indices
and name prefixes (``[0, 1, "22.cv2"]``); on the command line a string: ``--config.train.freeze=10``,
``--config.train.freeze="[0, 1, '22.cv2']"`` or ``--config.train.freeze=0,1,22.cv2``. ``0`` / ``""`` / ``[]``
freeze nothing (the default). As ultralytics, each item ``x`` becomes the name pattern ``model.<x>.`` (an item that
already starts with ``model.`` is kept), and a tensor is frozen when its ultralytics state-dict name
(``model.22.cv2.0.0.conv.weight``, :func:`train.model_state.display_name`) contains a pattern.

What freezing does, as ultralytics' trainer:

- **No update.** The frozen parameters go to an ``optax.set_to_zero()`` branch of an ``optax.partition`` (labels
  ``"train"`` / ``"frozen"``): their update is exactly zero, no weight decay and no momentum, and the optimizer keeps
  no state for them; they are left out of the gradient clipping's global norm (ultralytics' frozen tensors have no
  gradient). (The gradient is still computed by ``jax.grad``; the logged ``grad_norm`` includes it.)
- **BatchNorm statistics.** ultralytics' ``_model_train`` puts every BatchNorm of a frozen layer in eval mode at the
  start of each epoch: it normalises with its running statistics and does not update them. Here the frozen
  BatchNorms are built with ``use_running_average=True`` (:func:`freeze_batchnorms`), so the train step's forward
  pass does the same, and their ``num_batches_tracked`` stays put (torch's eval mode does not count either).
- **DFL.** ultralytics always freezes ``.dfl`` (its projection ``arange(reg_max)``); in jaxdet the DFL projection
  is a constant of the decoding, not a parameter, so there is nothing to freeze.
- A freeze that leaves no parameter to train is an error naming ``train.freeze`` (ultralytics raises too).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import nnx

from train.model_state import display_name, flat_variables


class FreezeError(ValueError):
    """``train.freeze`` cannot be read, or freezes every parameter."""


def parse_freeze(value: Any) -> list[int | str]:
    """The layer items of ``train.freeze``: ``N`` (int or digits) -> ``[0, ..., N-1]``; a list / tuple / its string
    (``"[0, 1]"``, ``"0,1,22.cv2"``) -> its items (ints stay ints); ``""``, ``0``, None, ``[]`` -> ``[]``."""
    if value is None or value == "" or value == 0:
        return []
    if isinstance(value, str):
        text = value.strip()
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = [part.strip().strip("'\"") for part in text.strip("[]()").split(",") if part.strip()]
    if isinstance(value, bool):
        raise FreezeError(f"train.freeze={value!r}: expected an int or a list of layer indices / name prefixes")
    if isinstance(value, int):
        if value < 0:
            raise FreezeError(f"train.freeze={value}: the number of layers to freeze must be >= 0")
        return list(range(value))
    if isinstance(value, str):
        value = [value]
    items = []
    for item in value:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if not isinstance(item, (int, str)) or isinstance(item, bool):
            raise FreezeError(f"train.freeze item {item!r}: expected a layer index or a name prefix")
        items.append(item)
    return items


def patterns(value: Any) -> list[str]:
    """ultralytics' ``freeze_layer_names`` without ``.dfl``: ``model.<x>.`` for every item."""
    out = []
    for item in parse_freeze(value):
        text = str(item).strip(".")
        out.append((text if text.startswith("model.") else f"model.{text}") + ".")
    return out


def is_frozen(name: str, pats) -> bool:
    return any(p in name for p in pats)


def frozen_labels(value: Any) -> Callable[[Any], Any]:
    """``params -> labels`` (``"frozen"`` / ``"train"``) of ``train.freeze`` for an ``optax.partition``."""
    pats = patterns(value)

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "frozen" if is_frozen(display_name(_keys(path)), pats) else "train", params)

    return labels


def _keys(path) -> tuple[str, ...]:
    keys = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                keys.append(str(getattr(k, attr)))
                break
    while keys and keys[-1] in ("value", "raw_value"):
        keys.pop()
    return tuple(keys)


def freeze_tx(tx: optax.GradientTransformation, value: Any) -> optax.GradientTransformation:
    """``tx`` on the trainable parameters, ``optax.set_to_zero()`` on the frozen ones (:func:`frozen_labels`)."""
    return optax.partition({"train": tx, "frozen": optax.set_to_zero()}, frozen_labels(value))


def count(model: nnx.Module, value: Any) -> tuple[int, int, list[str]]:
    """``(frozen, total, frozen names)`` of the model's parameter tensors under ``train.freeze``.

    Raises:
      FreezeError: when every parameter is frozen (nothing to train), naming the field.
    """
    pats = patterns(value)
    names = [display_name(p) for p in flat_variables(nnx.state(model, nnx.Param))]
    frozen = [n for n in names if is_frozen(n, pats)]
    if pats and len(frozen) == len(names):
        raise FreezeError(f"train.freeze={value} freezes all {len(names)} parameter tensors: nothing is left to "
                          "train; freeze fewer layers (an int N freezes model.0 .. model.N-1) or list the layers")
    return len(frozen), len(names), frozen


def freeze_batchnorms(model: nnx.Module, value: Any) -> nnx.Module:
    """Puts the BatchNorms of frozen layers in eval mode (``use_running_average=True``, module docstring); returns
    ``model``."""
    pats = patterns(value)
    if not pats:
        return model
    for path, module in nnx.iter_modules(model):
        if hasattr(module, "use_running_average") and is_frozen(".".join(str(p) for p in path) + ".", pats):
            module.use_running_average = True
    return model


def with_frozen_batchnorms(build_model: Callable[[nnx.Rngs], nnx.Module], value: Any):
    """``build_model`` whose models have the frozen layers' BatchNorms in eval mode (:func:`freeze_batchnorms`)."""
    if not patterns(value):
        return build_model
    return lambda rngs: freeze_batchnorms(build_model(rngs), value)
