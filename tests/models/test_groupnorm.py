"""jaxdet.models.detector.GroupNorm (spatial-first statistics) against flax's nnx.GroupNorm: same parameters and
initialisation (checkpoints load both ways), same values and gradients (float64 to 1e-10, float32 to float
rounding), finite on constant maps, and the detector's parameter tree unchanged."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdet.models import build_detector, default_model_config, detector
from jaxdet.models.detector import GroupNorm


def _pair(channels: int, groups: int, dtype=jnp.float32):
    """A flax GroupNorm and ours with the same non-trivial scale and bias."""
    ref = nnx.GroupNorm(channels, num_groups=groups, rngs=nnx.Rngs(0), param_dtype=dtype)
    ours = GroupNorm(channels, num_groups=groups, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    scale, bias = rng.uniform(0.5, 2.0, channels), rng.normal(0, 1, channels)
    for m in (ref, ours):
        m.scale = nnx.Param(jnp.asarray(scale, dtype))
        m.bias = nnx.Param(jnp.asarray(bias, dtype))
    return ref, ours


def _values_and_grads(module, x, cotangent):
    graphdef, params = nnx.split(module, nnx.Param)

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x) * cotangent)

    y = module(x)
    g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
    return y, g_x, g_params["scale"][...], g_params["bias"][...]


@pytest.mark.parametrize("shape,groups", [((3, 9, 7, 16), 4), ((4, 10, 6), 3)])
def test_matches_flax_groupnorm_float64(x64, shape, groups):
    ref, ours = _pair(shape[-1], groups, jnp.float64)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(0.3, 1.5, shape))
    ct = jnp.asarray(rng.normal(0, 1, shape))
    names = ("output", "d/dx", "d/dscale", "d/dbias")
    for name, a, b in zip(names, _values_and_grads(ref, x, ct), _values_and_grads(ours, x, ct)):
        assert a.dtype == b.dtype == jnp.float64, name
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(a))), err_msg=name)


def test_matches_flax_groupnorm_float32():
    ref, ours = _pair(16, 8)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(0.5, 2.0, (8, 16, 16, 16)), jnp.float32)
    ct = jnp.asarray(rng.normal(0, 1, x.shape), jnp.float32)
    names = ("output", "d/dx", "d/dscale", "d/dbias")
    for name, a, b in zip(names, _values_and_grads(ref, x, ct), _values_and_grads(ours, x, ct)):
        assert b.dtype == jnp.float32, name
        err = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
        assert err < 2e-6, (name, err)


def test_same_parameters_and_initialisation_as_flax():
    ref = nnx.GroupNorm(32, num_groups=8, rngs=nnx.Rngs(5))
    ours = GroupNorm(32, num_groups=8, rngs=nnx.Rngs(5))
    ref_state, our_state = nnx.state(ref, nnx.Param), nnx.state(ours, nnx.Param)
    assert jax.tree.structure(ref_state) == jax.tree.structure(our_state)
    for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(our_state)):
        assert a.shape == b.shape == (32,) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # Both draw two parameter keys: the next layer initialised from the same Rngs gets the same kernel.
    r1, r2 = nnx.Rngs(7), nnx.Rngs(7)
    nnx.GroupNorm(4, num_groups=2, rngs=r1)
    GroupNorm(4, num_groups=2, rngs=r2)
    np.testing.assert_array_equal(jax.random.key_data(r1.params()), jax.random.key_data(r2.params()))


def test_checkpoint_of_flax_groupnorm_loads():
    """Parameters saved from nnx.GroupNorm (its nnx.State) update ours, and the outputs agree."""
    ref, _ = _pair(16, 4)
    ours = GroupNorm(16, num_groups=4, rngs=nnx.Rngs(9))
    nnx.update(ours, nnx.state(ref, nnx.Param))
    x = jnp.asarray(np.random.default_rng(4).normal(0, 1, (2, 6, 6, 16)), jnp.float32)
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_constant_map_is_finite_with_finite_gradients():
    _, ours = _pair(8, 2)
    x = jnp.full((2, 4, 4, 8), 3.0, jnp.float32)
    y, g_x, g_scale, g_bias = _values_and_grads(ours, x, jnp.ones_like(x))
    for name, a in (("y", y), ("d/dx", g_x), ("d/dscale", g_scale), ("d/dbias", g_bias)):
        assert bool(jnp.all(jnp.isfinite(a))), name
    np.testing.assert_allclose(y, jnp.broadcast_to(ours.bias[...], y.shape), atol=1e-3)


def test_rejects_bad_groups_and_channels():
    with pytest.raises(ValueError, match="num_groups"):
        GroupNorm(10, num_groups=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x must have shape \[N, \.\.\., 8\]"):
        GroupNorm(8, num_groups=2, rngs=nnx.Rngs(0))(jnp.zeros((2, 4, 4, 6)))


def test_detector_parameters_same_as_with_flax_groupnorm(monkeypatch):
    """The detector's parameter paths, shapes and initial values are those of the same detector built with
    nnx.GroupNorm (the previous version): its checkpoints load, and training starts from the same point."""

    cfg = default_model_config()
    cfg.head = "yolov1"  # the grid detector (the default head is yolov8)
    cfg.widths, cfg.depths, cfg.head_width = (8, 16), (0, 1), 16

    def build():
        return build_detector(cfg, num_classes=3, rngs=nnx.Rngs(0))

    def params():
        return nnx.state(build(), nnx.Param).flat_state()

    assert sum(isinstance(m, GroupNorm) for _, m in nnx.iter_graph(nnx.eval_shape(build))) == 4  # 1 + 2 + neck
    ours = params()
    monkeypatch.setattr(
        detector, "GroupNorm", lambda c, *, num_groups, rngs: nnx.GroupNorm(c, num_groups=num_groups, rngs=rngs)
    )
    assert sum(isinstance(m, nnx.GroupNorm) for _, m in nnx.iter_graph(nnx.eval_shape(build))) == 4
    theirs = params()
    assert [k for k, _ in ours] == [k for k, _ in theirs]
    for (key, a), (_, b) in zip(ours, theirs):
        assert a[...].shape == b[...].shape, key
        np.testing.assert_array_equal(a[...], b[...], err_msg=str(key))
