"""jaxdet.losses._common.softmax_cross_entropy: the value of -label_log_prob, and its hand-written gradient
equals automatic differentiation of -label_log_prob; finite on extreme logits; reverse mode only."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdet.losses._common import label_log_prob, softmax_cross_entropy


def _both(logits, labels, cotangent):
    ours, vjp = jax.vjp(lambda x: softmax_cross_entropy(x, labels), logits)
    ref, ref_vjp = jax.vjp(lambda x: -label_log_prob(x, labels), logits)
    return ours, ref, vjp(cotangent)[0], ref_vjp(cotangent)[0]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_value_and_gradient_equal_autodiff_of_label_log_prob(dtype, x64):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(3, 50, 21)) * 4, dtype)
    labels = jnp.asarray(rng.integers(0, 21, (3, 50)), jnp.int32)
    cotangent = jnp.asarray(rng.uniform(-1, 2, (3, 50)), dtype)
    ours, ref, grad, ref_grad = _both(logits, labels, cotangent)
    assert ours.dtype == grad.dtype == dtype
    np.testing.assert_array_equal(ours, ref)  # the same expression, the same rounding
    f32 = dtype == jnp.float32
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6 if f32 else 1e-13, atol=1e-7 if f32 else 1e-15)
    # d/dlogits = g * (softmax - onehot): each row's gradient sums to 0
    np.testing.assert_allclose(jnp.sum(grad, -1), 0, atol=1e-5 if dtype == jnp.float32 else 1e-12)


#: logits up to 1e38 in size: their differences (up to 2e38) stay below float32's largest value
_BIG = float(np.float32(1e38))


@settings(max_examples=40, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (4, 6), elements=st.floats(-_BIG, _BIG, width=32)),
    labels=hnp.arrays(np.int32, (4,), elements=st.integers(0, 5)),
)
def test_finite_value_and_gradient_on_any_finite_logits(logits, labels):
    value, vjp = jax.vjp(lambda x: softmax_cross_entropy(x, jnp.asarray(labels)), jnp.asarray(logits))
    (grad,) = vjp(jnp.ones(4, jnp.float32))
    assert np.isfinite(np.asarray(value)).all() and np.isfinite(np.asarray(grad)).all()
    assert (np.asarray(value) >= 0).all()


def test_batched_under_vmap_and_jit_and_forward_mode_is_refused():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(5, 7, 4)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, (5, 7)), jnp.int32)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(softmax_cross_entropy(x, labels))))(logits)
    per_row = jax.vmap(jax.grad(lambda x, y: jnp.sum(softmax_cross_entropy(x, y))))(logits, labels)
    np.testing.assert_allclose(grad, per_row, rtol=1e-6, atol=1e-7)
    with pytest.raises(TypeError, match="jvp"):
        jax.jvp(lambda x: softmax_cross_entropy(x, labels), (logits,), (logits,))
