"""The ``reduction`` keyword shared by the losses that have one (as torchvision and ultralytics do)."""

import jax
import jax.numpy as jnp

REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")


def reduce_loss(loss: jax.Array, reduction: str) -> jax.Array:
    """``"none"`` returns ``loss`` unchanged; ``"mean"`` and ``"sum"`` reduce over every axis to a scalar."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}.")
