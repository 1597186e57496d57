"""The model's variables in the train state: ``nnx.split`` into a static ``graphdef``, the ``nnx.Param``s and
every other variable (BatchNorm statistics), and back; the EMA's variables for evaluation."""

from __future__ import annotations

from typing import Any

from flax import nnx


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
