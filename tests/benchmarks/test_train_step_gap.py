"""The one-core gap profile (``benchmarks/investigations/train_step_gap.py``) puts every profiled op of both
libraries into one part: XLA's layout copies apart from the other fusions, oneDNN's convolutions apart from the
rest of torch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.investigations import train_step_gap as gap  # noqa: E402
from benchmarks.investigations import train_step_profile as profile  # noqa: E402
from jaxdet.compile_options import compiler_options  # noqa: E402
from jaxdet.models.conv import conv2d  # noqa: E402


def test_jax_parts_split_layout_copies_from_other_fusions():
    fake = {"op": {"transpose_copy_fusion.3": 2.0, "copy.7": 0.5, "add_divide_fusion": 1.0, "convolution.2": 3.0,
                   "conv_general_dilated.1": 4.0, "ynn_fusion.4": 0.25},
            "kinds": {"transpose_copy_fusion.3": "elementwise / layout fusions",
                      "copy.7": "elementwise / layout fusions",
                      "add_divide_fusion": "elementwise / layout fusions", "convolution.2": "convolution, backward",
                      "conv_general_dilated.1": "convolution, forward", "ynn_fusion.4": "YNNPACK fusion"}}
    assert gap.jax_parts(fake) == {"convolution, forward": 4.0, "convolution, backward": 3.0, "layout copies": 2.5,
                                   "other fusions": 1.0, "YNNPACK fusion": 0.25, "other": 0.0}


def test_jax_parts_of_a_real_profile_add_up():
    x, w = jnp.ones((4, 16, 16, 8)), jnp.ones((3, 3, 8, 8))
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.tanh(conv2d(x, w)) ** 2), argnums=(0, 1)))
    compiled = grad.lower(x, w).compile(compiler_options())
    result = profile.profile_ops(lambda: compiled(x, w), compiled.as_text(), steps=2)
    parts = gap.jax_parts(result)
    assert set(parts) == set(gap.JAX_PARTS)
    assert parts["convolution, forward"] > 0 and parts["convolution, backward"] > 0
    assert abs(sum(parts.values()) - sum(result["op"].values())) < 1e-9


def test_torch_parts_find_onednn_convolutions_in_a_real_profile():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU())
    x = torch.rand(2, 3, 16, 16)

    def step():
        model.zero_grad(set_to_none=True)
        model(x).square().sum().backward()

    step()
    parts = gap.profile_torch(step, steps=2)
    assert set(parts) == set(gap.TORCH_PARTS)
    assert parts["convolution, forward"] > 0
    assert parts["convolution, backward"] > 0
    assert parts["everything else"] > 0
