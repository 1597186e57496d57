"""The train-step benchmark compares the same computation: the PyTorch twin of the YOLOv1 detector
(``benchmarks/torch_detector.py``) against the NNX detector and the YOLOv1 head's loss.

The NNX parameters are copied into the torch model; forward outputs, every loss term, the parameter gradients
and the parameters after a few full train steps (clip + AdamW + LR schedule, as timed by
``benchmarks/train_step.py``) must agree in float32.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import jax
import jax.numpy as jnp
import train_step as bench
from flax import nnx
from torch_detector import build_torch_detector, load_nnx_params, yolov1_head_loss_torch

from jaxdet import models

GT_KEYS = ("boxes", "classes", "valid")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny convolutions: one torch thread avoids OpenMP spin-wait stalls on a shared CPU (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(image_size: int, grid_size: int, batch_size: int = 4):
    cfg = bench.load_config(batch_size=batch_size, image_size=image_size)
    cfg.model.grid_size = grid_size
    return cfg


def _nchw(images: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _torch_loss(cfg, raw, batch):
    return yolov1_head_loss_torch(
        raw, *(torch.from_numpy(batch[k]) for k in GT_KEYS), num_boxes=int(cfg.model.num_boxes),
        num_classes=int(cfg.model.num_classes), lambda_coord=float(cfg.loss.lambda_coord),
        lambda_noobj=float(cfg.loss.lambda_noobj), iou_target=str(cfg.loss.iou_target))


def _torch_grads_as_numpy(model) -> list[np.ndarray]:
    return [p.grad.detach().numpy().copy() for p in model.parameters()]


# (image, S): configs/yolov1_shapes.py (64 px -> 8x8 map, no resize); 64 px with S=7 (8x8 map antialias-resized to
# 7x7); 40 px with S=8 (40 -> 20 -> 10, stride-1 last stage, resized 10 -> 8).
CASES = [(64, 8), (64, 7), (40, 8)]


@pytest.mark.parametrize("image_size,grid_size", CASES)
def test_torch_twin_matches_nnx_forward_loss_and_grads(image_size, grid_size):
    cfg = _config(image_size, grid_size)
    batch = bench.make_batch(cfg)
    jm = models.build_detector(cfg.model, num_classes=int(cfg.model.num_classes), rngs=nnx.Rngs(3))
    tm = load_nnx_params(build_torch_detector(cfg.model, num_classes=int(cfg.model.num_classes)), jm)
    jbatch = {k: jnp.asarray(v) for k, v in batch.items()}

    def loss_of(model):
        outputs = model(jbatch["image"])
        loss, metrics, _ = bench.make_head(cfg).loss(outputs, jbatch, step=jnp.int32(0), state={})
        return loss, (metrics, outputs)

    (_, (metrics_j, out_j)), grads_j = nnx.jit(nnx.value_and_grad(loss_of, has_aux=True))(jm)

    # forward
    out_j = np.asarray(out_j)
    out_t = tm(_nchw(batch["image"]))
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


def test_torch_optimizer_matches_train_optimizer_on_identical_gradients():
    """clip + AdamW + warmup-cosine LR of the torch contender == ``train.step.make_optimizer`` (optax)."""
    import optax

    from train import step as step_lib

    cfg = _config(32, 8)
    cfg.train.warmup_steps, cfg.train.steps, cfg.train.grad_clip = 2, 6, 1.0
    rng = np.random.default_rng(0)
    shapes = [(3, 3, 4, 8), (8,), (5,)]
    init = [rng.normal(size=sh).astype(np.float32) for sh in shapes]
    grads = [[(rng.normal(size=sh) * scale).astype(np.float32) for sh in shapes] for scale in (0.01, 3.0) * 3]
    assert any(np.sqrt(sum(np.sum(g ** 2) for g in gs)) > 1.0 for gs in grads)  # the clip is active
    assert any(np.sqrt(sum(np.sum(g ** 2) for g in gs)) < 1.0 for gs in grads)  # and inactive

    tx, _ = step_lib.make_optimizer(cfg.train)
    p_jax = [jnp.asarray(x) for x in init]
    opt_state = tx.init(p_jax)
    params = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in init]
    _, update = bench.make_torch_optimizer(params, cfg.train)
    for gs in grads:
        updates, opt_state = tx.update([jnp.asarray(g) for g in gs], opt_state, p_jax)
        p_jax = optax.apply_updates(p_jax, updates)
        for p, g in zip(params, gs):
            p.grad = torch.from_numpy(g.copy())
        update()
    for pt, pj, p0 in zip(params, p_jax, init):
        assert np.max(np.abs(np.asarray(pj) - p0)) > 1e-3  # moved by several lr-sized steps
        np.testing.assert_allclose(pt.detach().numpy(), np.asarray(pj), rtol=1e-6, atol=1e-7)


def test_benchmark_train_steps_match_after_three_steps():
    """The timed steps do the same thing: jaxdet (train/step.py and the local builder) vs torch eager.

    Adam divides each gradient element by its own running RMS, so elements with a near-zero gradient turn
    float32 rounding of the gradient into differences of a fraction of ``lr``; the parameters are therefore
    compared as a whole (the discrepancy is a tiny fraction of the distance moved) and the losses per step.
    """
    cfg = _config(32, 8, batch_size=4)
    cfg.train.warmup_steps = 1  # a non-zero learning rate from the second step on
    cfg.train.steps = 4
    cfg.train.grad_clip = 0.5  # small enough that the clip is active
    batch = bench.make_batch(cfg)

    final, losses = {}, {}
    for builder in ("train", "local"):
        run, init_model, _ = bench.make_jax_runner(cfg, batch, builder=builder)
        losses[builder] = []
        for _ in range(4):
            params, metrics = run()
            losses[builder].append(float(metrics["loss"]))
        final[builder] = params
    trun, tmodel = bench.make_torch_runner(cfg, batch, compiled=False, device=torch.device("cpu"),
                                           init_model=init_model)
    initial = np.concatenate([p.detach().numpy().ravel().copy() for p in tmodel.parameters()])
    losses["torch"] = []
    for _ in range(4):
        with torch.no_grad():
            losses["torch"].append(float(_torch_loss(cfg, tmodel(_nchw(batch["image"])), batch)[0]))
        trun()
    after_torch = np.concatenate([p.detach().numpy().ravel() for p in tmodel.parameters()])

    assert losses["torch"][-1] < losses["torch"][0]
    graphdef, _ = nnx.split(init_model)
    for builder, params in final.items():
        np.testing.assert_allclose(losses["torch"], losses[builder], rtol=1e-5, err_msg=builder)
        skeleton = load_nnx_params(build_torch_detector(cfg.model, num_classes=int(cfg.model.num_classes)),
                                   nnx.merge(graphdef, jax.device_get(params)))
        after_jax = np.concatenate([p.detach().numpy().ravel() for p in skeleton.parameters()])
        moved = np.linalg.norm(after_jax - initial)
        assert moved > 1e-2, f"{builder}: the parameters did not move"
        assert np.linalg.norm(after_torch - after_jax) < 1e-3 * moved, builder
