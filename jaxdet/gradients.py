"""Gradient-path control and diagnostics: the vocabulary every jaxdet loss uses.

**Case 1 / Case 2.** Many detection losses use a quantity computed *from the predictions* as a regression
target, most often the IoU between a predicted box and its ground truth (YOLO's confidence target, VFL/QFL's
soft label, CIoU's α). With :math:`L = (C - \\mathrm{IoU})^2`:

- Case 1, ``"through"``: the target stays in the graph,
  :math:`\\partial L/\\partial w = 2(C - \\mathrm{IoU})(\\partial C/\\partial w - \\partial \\mathrm{IoU}/\\partial w)`.
- Case 2, ``"stop"``: the target is a constant (``lax.stop_gradient``),
  :math:`\\partial L/\\partial w = 2(C - \\mathrm{IoU})\\,\\partial C/\\partial w`; the box coordinates then get no
  gradient from this term. Every public YOLO implementation does this.

A loss exposes the choice as a keyword typed :data:`GradientPath` and applies it with :func:`route_target`.

**Per-term gradients.** :func:`term_gradients` differentiates every named term of a loss with respect to the
predictions from a single forward pass (one ``jax.vjp``, one backward pass per term), and
:func:`gradient_norms`, :func:`gradient_cosine` and :func:`cosine_matrix` summarise how the terms pull.

Glossary: Case 1 and Case 2 are the two gradient paths of seed 000: the gradient of YOLOv1's IoU confidence
target (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Literal, get_args

import jax
import jax.numpy as jnp

from jaxdet import _checks

GradientPath = Literal["stop", "through"]
GRADIENT_PATHS: tuple[str, ...] = get_args(GradientPath)

PyTree = Any


def check_gradient_path(path: str, *, argname: str) -> None:
    """Raises ValueError naming ``argname`` unless ``path`` is ``"stop"`` or ``"through"``."""
    _checks.choice(
        path,
        argname,
        GRADIENT_PATHS,
        hint="'stop' is Case 2 (the target is a constant), 'through' Case 1 (the gradient flows through the target).",
    )


def route_target(target: PyTree, path: GradientPath, *, argname: str = "iou_target") -> PyTree:
    """Applies a gradient path to a target computed from the predictions.

    Args:
      target: any pytree of arrays, e.g. an IoU ``[...]``.
      path: ``"through"`` (Case 1) returns ``target`` unchanged; ``"stop"`` (Case 2) returns
        ``lax.stop_gradient(target)``: the same values with zero derivative.
      argname: the caller's keyword name, used in the error message.

    Returns:
      ``target`` with the requested gradient path.
    """
    check_gradient_path(path, argname=argname)
    return target if path == "through" else jax.lax.stop_gradient(target)


def term_gradients(
    terms_fn: Callable[..., dict[str, jax.Array]], preds: PyTree, *args: Any
) -> tuple[dict[str, jax.Array], dict[str, PyTree]]:
    """Gradient of each named loss term with respect to the predictions, from one forward pass.

    ``jax.vjp`` runs ``terms_fn`` once and keeps its residuals; each term's gradient is then one backward pass
    with a one-hot cotangent, so the forward pass is not repeated per term. The sum of the per-term gradients is
    the gradient of the sum of the terms.

    Args:
      terms_fn: ``terms_fn(preds, *args) -> dict[str, scalar]``, the loss terms (each a scalar).
      preds: the pytree of predictions to differentiate with respect to.
      *args: further arguments to ``terms_fn`` (targets, masks), not differentiated.

    Returns:
      ``(terms, grads)``: the term values, and for each term a pytree shaped like ``preds``.
    """
    terms, vjp_fn = jax.vjp(lambda p: terms_fn(p, *args), preds)
    for name, value in terms.items():
        if jnp.ndim(value) != 0:
            raise _checks.fail_shape(f"terms_fn's term {name!r}", "() (terms_fn must return scalar terms)", value)
    grads = {}
    for name in terms:
        cotangent = {other: jnp.zeros_like(value) for other, value in terms.items()}
        cotangent[name] = jnp.ones_like(terms[name])
        (grads[name],) = vjp_fn(cotangent)
    return terms, grads


def safe_global_norm(tree: PyTree) -> jax.Array:
    """Global L2 norm of a pytree whose own derivative is finite (zero) at the zero tree."""
    squared = sum((jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(tree)), jnp.zeros(()))
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def gradient_norms(grads: dict[str, PyTree]) -> dict[str, jax.Array]:
    """Global L2 norm of each term's gradient pytree: ``{name: scalar}``."""
    return {name: safe_global_norm(grad) for name, grad in grads.items()}


def _tree_dot(a: PyTree, b: PyTree) -> jax.Array:
    leaves = jax.tree_util.tree_map(lambda x, y: jnp.vdot(x, y).real, a, b)
    return sum(jax.tree_util.tree_leaves(leaves), jnp.zeros(()))


def gradient_cosine(grad1: PyTree, grad2: PyTree, *, eps: float = 1e-12) -> jax.Array:
    """Cosine similarity between two gradient pytrees, flattened.

    .. math:: \\cos(g_1, g_2) = \\frac{\\langle g_1, g_2 \\rangle}{\\max(\\|g_1\\| \\|g_2\\|, \\epsilon)}

    Args:
      grad1, grad2: pytrees of the same structure and shapes.
      eps: floor of the norm product; a zero gradient gives cosine 0, with a finite derivative.

    Returns:
      Scalar in ``[-1, 1]``.
    """
    _checks.number(eps, "eps", low=0.0)
    norm_product = safe_global_norm(grad1) * safe_global_norm(grad2)
    return _tree_dot(grad1, grad2) / jnp.maximum(norm_product, eps)


def cosine_matrix(grads: dict[str, PyTree], *, eps: float = 1e-12) -> dict[tuple[str, str], jax.Array]:
    """Cosine similarity of every unordered pair of terms: ``{(name_a, name_b): scalar}``."""
    return {
        (a, b): gradient_cosine(grads[a], grads[b], eps=eps) for a, b in itertools.combinations(grads, 2)
    }
