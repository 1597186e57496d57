"""The PyTorch twin of the YOLOv1 detector (:mod:`jaxdet.parity.torch_detector`, the contender of
``benchmarks/train_step.py``) computes what the NNX detector and the YOLOv1 head's loss compute.

The NNX parameters are copied into the torch model; forward outputs, every loss term and the parameter gradients
must agree in float32 (the train steps after a few updates: ``tests/benchmarks/test_train_step.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from configs import yolov1_shapes  # noqa: E402
from jaxdet import models  # noqa: E402
from jaxdet.parity.torch_detector import (  # noqa: E402
    build_torch_detector,
    head_loss_options,
    load_nnx_params,
    nchw,
    yolov1_head_loss_torch,
)
from jaxdet.parity.train_twins import make_batch  # noqa: E402
from train.task import make_head  # noqa: E402

GT_KEYS = ("boxes", "classes", "valid")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(image_size: int, grid_size: int, batch_size: int = 4):
    """``configs/yolov1_shapes.py`` at this batch, image size and grid."""
    cfg = yolov1_shapes.get_config()
    cfg.train.batch_size = batch_size
    cfg.model.image_size = cfg.data.image_size = image_size
    cfg.model.grid_size = grid_size
    return cfg


def _torch_loss(cfg, raw, batch):
    return yolov1_head_loss_torch(raw, *(torch.from_numpy(batch[k]) for k in GT_KEYS), **head_loss_options(cfg))


def _torch_grads_as_numpy(model) -> list[np.ndarray]:
    return [p.grad.detach().numpy().copy() for p in model.parameters()]


# (image, S): configs/yolov1_shapes.py (64 px -> 8x8 map, no resize); 64 px with S=7 (8x8 map antialias-resized to
# 7x7); 40 px with S=8 (40 -> 20 -> 10, stride-1 last stage, resized 10 -> 8).
CASES = [(64, 8), (64, 7), (40, 8)]


@pytest.mark.parametrize("image_size,grid_size", CASES)
def test_torch_twin_matches_nnx_forward_loss_and_grads(image_size, grid_size):
    cfg = _config(image_size, grid_size)
    batch = make_batch(cfg)
    jm = models.build_detector(cfg.model, num_classes=int(cfg.model.num_classes), rngs=nnx.Rngs(3))
    tm = load_nnx_params(build_torch_detector(cfg.model, num_classes=int(cfg.model.num_classes)), jm)
    jbatch = {k: jnp.asarray(v) for k, v in batch.items()}

    def loss_of(model):
        outputs = model(jbatch["image"])
        loss, metrics, _ = make_head(cfg).loss(outputs, jbatch, step=jnp.int32(0), state={})
        return loss, (metrics, outputs)

    (_, (metrics_j, out_j)), grads_j = nnx.jit(nnx.value_and_grad(loss_of, has_aux=True))(jm)

    # forward
    out_j = np.asarray(out_j)
    out_t = tm(nchw(batch["image"]))
    assert out_t.shape == out_j.shape == (4, grid_size, grid_size, int(cfg.model.num_boxes) * 5 + 5)
    np.testing.assert_allclose(out_t.detach().numpy(), out_j, rtol=1e-5, atol=1e-5)

    # loss and every term, through the network
    loss_t, metrics_t = _torch_loss(cfg, out_t, batch)
    assert set(metrics_t) == set(metrics_j)
    for key in metrics_t:
        np.testing.assert_allclose(float(metrics_t[key].detach()), float(metrics_j[key]), rtol=1e-5, atol=1e-6,
                                   err_msg=key)

    # parameter gradients: the JAX gradient state is loaded into a torch skeleton with the same mapping
    loss_t.backward()
    graphdef, _ = nnx.split(jm)
    gmodel = nnx.merge(graphdef, grads_j)
    skeleton = load_nnx_params(build_torch_detector(cfg.model, num_classes=int(cfg.model.num_classes)), gmodel)
    g_torch = _torch_grads_as_numpy(tm)
    g_jax = [p.detach().numpy() for p in skeleton.parameters()]
    assert len(g_torch) == len(g_jax) > 0
    for i, (gt, gj) in enumerate(zip(g_torch, g_jax)):
        scale = float(np.max(np.abs(gj)))
        assert scale > 0, f"parameter {i} has an all-zero gradient"
        np.testing.assert_allclose(gt, gj, rtol=1e-4, atol=1e-5 * scale, err_msg=f"parameter {i}")
