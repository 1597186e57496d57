"""The train-step profiler (``benchmarks/investigations/train_step_profile.py``) files every convolution of a
compiled gradient under the right kind and finds the executed ops in a real ``jax.profiler`` trace."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.investigations import train_step_profile as profile
from jaxdet.compile_options import compiler_options
from jaxdet.models.conv import conv2d


def _loss(x, w):
    return jnp.sum(jnp.tanh(conv2d(x, w, stride=1)) ** 2)


def _compiled_grad(x, w, options):
    return jax.jit(jax.grad(_loss, argnums=(0, 1))).lower(x, w).compile(options)


def test_convolutions_of_a_gradient_are_split_into_forward_and_backward():
    x, w = jnp.ones((4, 16, 16, 8)), jnp.ones((3, 3, 8, 8))
    kinds = profile.instruction_categories(_compiled_grad(x, w, compiler_options()).as_text())
    assert set(kinds.values()) <= set(profile.CATEGORIES)
    convs = [k for k in kinds.values() if k.startswith("convolution")]
    # one forward convolution, and the input and kernel gradients (on XLA's kernels with jaxdet's options)
    assert convs.count("convolution, forward") == 1, kinds
    assert convs.count("convolution, backward") == 2, kinds


def test_profile_finds_the_executed_ops_in_the_trace():
    x, w = jnp.ones((4, 16, 16, 8)), jnp.ones((3, 3, 8, 8))
    compiled = _compiled_grad(x, w, compiler_options())
    result = profile.profile_ops(lambda: compiled(x, w), compiled.as_text(), steps=2)
    assert set(result["op"]) <= set(result["kinds"])
    assert result["category"]["convolution, forward"] > 0
    assert result["category"]["convolution, backward"] > 0
    assert abs(sum(result["category"].values()) - sum(result["op"].values())) < 1e-9
