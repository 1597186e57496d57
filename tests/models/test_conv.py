"""jaxdet.models.conv: the space-to-depth form equals XLA's stride-2 convolution, conv2d's value and both
gradients equal lax.conv_general_dilated's (float64, so the comparison is exact up to summation order), and the
rewrite is off on other backends and inside xla_stride2_gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.models import conv

PADDINGS = ("SAME", "VALID", ((1, 1), (1, 1)), ((0, 2), (1, 0)))


def _xla(x, k, stride, padding):
    return jax.lax.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _inputs(shape, kernel, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal(kernel)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("size,k", [((2, 8, 8, 3), 3), ((1, 9, 7, 2), 3), ((2, 10, 10, 2), 1), ((1, 11, 12, 2), 5),
                                    ((1, 6, 6, 4), 2)])
def test_space_to_depth_conv_is_the_stride2_conv(padding, size, k):
    with jax.enable_x64(True):
        x, w = (jnp.asarray(a) for a in _inputs(size, (k, k, size[3], 3)))
        pads = padding if not isinstance(padding, str) else jax.lax.padtype_to_pads(size[1:3], (k, k), (2, 2), padding)
        want = _xla(x, w, 2, pads)
        got = conv.space_to_depth_conv(x, w, pads)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv2d_value_and_gradients_equal_xla(padding, stride):
    with jax.enable_x64(True):
        x, w = (jnp.asarray(a) for a in _inputs((2, 9, 10, 3), (3, 3, 3, 4), seed=stride))
        out_shape = _xla(x, w, stride, padding).shape
        g = jnp.asarray(np.random.default_rng(7).standard_normal(out_shape))

        def loss(fn):
            return lambda x_, w_: jnp.sum(fn(x_, w_) * g)

        want = jax.value_and_grad(loss(lambda a, b: _xla(a, b, stride, padding)), argnums=(0, 1))(x, w)
        got = jax.jit(jax.value_and_grad(loss(lambda a, b: conv.conv2d(a, b, stride=stride, padding=padding)),
                                         argnums=(0, 1)))(x, w)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
        for a, b in zip(got[1], want[1]):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


def _has_custom_vjp(fn, *args) -> bool:
    return "custom_vjp_call" in str(jax.make_jaxpr(fn)(*args))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rewrite is for XLA:CPU")
def test_rewrite_used_for_stride2_on_cpu_only_and_switchable():
    x, w = (jnp.asarray(a, jnp.float32) for a in _inputs((1, 8, 8, 2), (3, 3, 2, 2)))

    def stride2():  # a new function each time: the switch is read when tracing, and traces are cached
        return lambda a, b: conv.conv2d(a, b, stride=2)

    assert _has_custom_vjp(stride2(), x, w)
    assert not _has_custom_vjp(lambda a, b: conv.conv2d(a, b, stride=1), x, w)
    with conv.xla_stride2_gradient():
        assert not _has_custom_vjp(stride2(), x, w)
        jax.jvp(lambda a: stride2()(a, w), (x,), (jnp.ones_like(x),))  # forward mode works inside the switch
    assert _has_custom_vjp(stride2(), x, w)


def test_rewrite_off_on_other_backends(monkeypatch):
    x, w = (jnp.asarray(a, jnp.float32) for a in _inputs((1, 8, 8, 2), (3, 3, 2, 2)))
    monkeypatch.setattr(conv.jax, "default_backend", lambda: "gpu")
    assert not _has_custom_vjp(lambda a, b: conv.conv2d(a, b, stride=2), x, w)


def test_float32_gradients_match_xla_to_rounding():
    """The detector's case: float32, SAME, even sizes; the input gradient differs only by summation order."""
    x, w = (jnp.asarray(a, jnp.float32) for a in _inputs((4, 32, 32, 16), (3, 3, 16, 32)))
    g = jnp.asarray(np.random.default_rng(3).standard_normal((4, 16, 16, 32)), jnp.float32)
    want = jax.grad(lambda a, b: jnp.sum(_xla(a, b, 2, "SAME") * g), argnums=(0, 1))(x, w)
    got = jax.jit(jax.grad(lambda a, b: jnp.sum(conv.conv2d(a, b, stride=2) * g), argnums=(0, 1)))(x, w)
    scale = float(jnp.max(jnp.abs(want[0])))
    np.testing.assert_allclose(got[0], want[0], atol=1e-5 * scale)  # float32 eps 1.2e-7 x 144 terms
    np.testing.assert_array_equal(got[1], want[1])  # the kernel gradient is XLA's own
