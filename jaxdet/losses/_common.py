"""Numerics shared by the loss modules: the ``reduction`` keyword, the log-probability of a label (and a
reverse-mode-only cross-entropy with a cheaper gradient) and the smooth-L1 that is safe at zero. One copy each, so
every loss rounds and differentiates them the same way. The power that is safe at zero, which the task-aligned
assignment shares, is :func:`jaxdet._math.safe_pow`, below both."""

import jax
import jax.numpy as jnp

from jaxdet import _checks

REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")


def check_reduction(reduction: str) -> str:
    """The ``reduction`` keyword is one of :data:`REDUCTIONS` (checked before the loss is computed)."""
    return _checks.choice(reduction, "reduction", REDUCTIONS)


def check_class_logits(logits: jax.Array, labels: jax.Array, logits_name: str) -> tuple[jax.Array, jax.Array]:
    """Float class logits ``[..., C]`` and integer ``labels [...]`` of the logits' shape without the class axis."""
    logits = _checks.floating(logits, logits_name, shape="[..., C]", min_ndim=1)
    labels = _checks.integer(labels, "labels")
    _checks.shape_is(labels, logits.shape[:-1], "labels", f"{logits_name}.shape[:-1]")
    return logits, labels


def check_vertices(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Float polygon vertices ``pred [..., K, 2]`` and ``target`` of the same shape; returns ``pred`` as an array."""
    pred = _checks.floating(pred, "pred", shape="[..., K, 2]", min_ndim=2, last=2)
    _checks.same_shape(pred, target, "pred", "target")
    _checks.dtype_is(target, "target", "float")
    return pred


def reduce_loss(loss: jax.Array, reduction: str) -> jax.Array:
    """``"none"`` returns ``loss`` unchanged; ``"mean"`` and ``"sum"`` reduce over every axis to a scalar."""
    check_reduction(reduction)
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


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


@jax.custom_vjp
def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``−log_softmax(logits)[..., label]`` → ``[...]``, the value of ``-label_log_prob(logits, labels)`` with the
    same rounding, and a hand-written reverse-mode gradient ``g · (softmax − onehot(label))``.

    The forward pass keeps ``exp(logits − max)``, its only ``[..., C]`` intermediate, and the backward pass
    reuses it: automatic differentiation of :func:`label_log_prob` also keeps the shifted logits and the
    one-hot selection, one more ``[..., C]`` pass each way. On SSD's ``[32, 8732, 21]`` logits that made the
    multibox loss from given matches (forward + backward, XLA:CPU) 46.5 → 33.2 ms, with bit-identical gradients.
    The label's logit is gathered (a gather's own transpose, a scatter, is never used). Reverse mode only:
    ``jax.grad``/``jax.vjp`` work, ``jax.jvp`` does not (use :func:`label_log_prob` there).

    Args:
      logits: ``[..., C]`` float logits.
      labels: ``[...]`` integer classes in ``[0, C)``.
    """
    return _softmax_cross_entropy_fwd(logits, labels)[0]


def _softmax_cross_entropy_fwd(logits, labels):
    top = jnp.max(logits, axis=-1, keepdims=True)  # [..., 1] (never differentiated: the backward is ours)
    exp_shifted = jnp.exp(logits - top)  # [..., C]
    total = jnp.sum(exp_shifted, axis=-1)  # [...]
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0] - top[..., 0]  # [...]
    return jnp.log(total) - picked, (exp_shifted, total, labels)


def _softmax_cross_entropy_bwd(residuals, g):
    exp_shifted, total, labels = residuals
    onehot = jnp.arange(exp_shifted.shape[-1]) == labels[..., None]  # [..., C]
    return (g / total)[..., None] * exp_shifted - jnp.where(onehot, g[..., None], 0), None


softmax_cross_entropy.defvjp(_softmax_cross_entropy_fwd, _softmax_cross_entropy_bwd)


def smooth_l1(diff: jax.Array, beta: float) -> jax.Array:
    """Elementwise smooth-L1 of a difference (PyTorch's ``smooth_l1_loss`` with ``beta``, unreduced).

    .. math:: \\ell(d) = \\begin{cases} 0.5\\,d^2/\\beta & |d| < \\beta \\\\ |d| - 0.5\\,\\beta & \\text{otherwise}
              \\end{cases}

    ``beta = 0`` is the L1 loss :math:`|d|`.
    """
    absd = jnp.abs(diff)
    if beta == 0:
        return absd
    return jnp.where(absd < beta, 0.5 * diff * diff / beta, absd - 0.5 * beta)
