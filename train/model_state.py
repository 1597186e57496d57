"""The model's variables in the train state: ``nnx.split`` into a static ``graphdef``, the ``nnx.Param``s and
every other variable (BatchNorm statistics), and back; the EMA's variables for evaluation."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from jaxdet.models import ultralytics_io

#: a variable's path in the model's state, as strings (``("model", "22", "cv3", "0", "2", "kernel")``).
Path = tuple[str, ...]


def split_model(model: nnx.Module):
    """``graphdef, params, model_state``: the Params and every other variable (an empty State if none)."""
    return nnx.split(model, nnx.Param, ...)


def merge_model(graphdef, state: dict[str, Any], *, train: bool = True) -> nnx.Module:
    """The model of a train state, in train mode (batch statistics updated) or eval mode (running averages)."""
    # copy: fresh Variables in the current trace, so a train-mode forward pass may update batch statistics.
    model = nnx.merge(graphdef, state["params"], state["model_state"], copy=True)
    if not train:
        model.eval()
    return model


def eval_variables(state: dict[str, Any]) -> tuple[Any, Any]:
    """``(params, model_state)`` to evaluate or predict with: the EMA's when the state has one, else the raw ones.

    ``nnx.merge(graphdef, *eval_variables(state))`` is the model (call ``.eval()`` on it for inference).
    """
    source = state.get("ema", state)
    return source["params"], source["model_state"]


def _key(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def flat_variables(tree: Any) -> dict[Path, Any]:
    """``{path: leaf}`` of an ``nnx.State`` or a nested dict (an orbax restore), the paths as strings without the
    Variables' trailing ``value``."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = tuple(_key(k) for k in path)
        while keys and keys[-1] in ("value", "raw_value"):
            keys = keys[:-1]
        out[keys] = leaf
    return out


def display_name(path: Path) -> str:
    """The ultralytics state-dict name of a variable path (``model.22.cv3.0.2.weight``), else the dotted path."""
    try:
        return ultralytics_io.tensor_name(path)
    except KeyError:
        return ".".join(path)
