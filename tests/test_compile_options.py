"""jaxdet.compile_options: the XLA:CPU convolution options change which kernels run, not the result; every
other backend, and a user's own XLA_FLAGS setting, get no options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdet import compile_options
from jaxdet.data import SyntheticShapes, collate
from jaxdet.models import default_model_config, make_head

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are for XLA:CPU")


def test_no_options_off_cpu():
    assert compile_options.compiler_options("gpu") == {}
    assert compile_options.compiler_options("tpu") == {}


def test_xla_flags_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=individual_dot")
    assert compile_options.compiler_options("cpu") == {}


@cpu_only
def test_returns_a_fresh_copy():
    options = compile_options.compiler_options()
    options["changed"] = "1"
    assert "changed" not in compile_options.compiler_options()


@pytest.mark.slow
@cpu_only
def test_train_step_loss_and_gradients_unchanged():
    """One detector forward + YOLOv1 loss + backward (the train step's arithmetic) compiled with the XLA
    defaults and with the options: convolutions leave YNNPACK, and the loss and every gradient agree to float32
    rounding."""
    options = compile_options.compiler_options()
    if not options:
        pytest.skip("this jaxlib runs no convolution through YNNPACK (nothing to change)")
    cfg = default_model_config()
    cfg.head = "yolov1"  # the grid detector and the YOLOv1 loss (the default head is yolov8)
    cfg.grid_size, cfg.widths, cfg.depths, cfg.head_width = 8, (16, 32), (1, 1), 32
    head = make_head(cfg, num_classes=5)
    model = head.build_model(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    data = SyntheticShapes("train", num_images=32, image_size=32)
    batch = {k: jnp.asarray(v) for k, v in collate([data[i] for i in range(32)], max_objects=6).items()}

    def loss(params):
        return head.loss(nnx.merge(graphdef, params)(batch["image"]), batch, step=0, state={})[0]

    lowered = jax.jit(jax.value_and_grad(loss)).lower(params)
    default, tuned = lowered.compile({}), lowered.compile(options)
    assert "__ynn_fusion" in default.as_text()  # the case the options are for
    assert default.as_text().count("__ynn_fusion") > tuned.as_text().count("__ynn_fusion")
    (l0, g0), (l1, g1) = default(params), tuned(params)
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(a))))
