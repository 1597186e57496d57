"""The PyTorch twins of the train steps' optimizers (:mod:`jaxdet.parity.train_twins`) make the optax updates.

From the same parameters and the same gradients, step after step: ``torch_adamw`` against
``train.recipe.make_optimizer`` (clip + AdamW + warmup-cosine LR, the YOLOv1 train-step benchmark's), and the SGD
recipe of the YOLOv8n comparisons (``make_torch_optimizer`` against ``make_tx``), in float32.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from configs import yolov1_shapes  # noqa: E402
from jaxdet.parity import train_twins  # noqa: E402
from train import recipe as recipe_lib  # noqa: E402

SHAPES = [(3, 3, 4, 8), (8,), (5,)]


def _run_both(tx, torch_update_of, grads, init):
    """Applies every gradient list of ``grads`` with optax (``tx``) and with the torch twin; returns
    ``(optax params, torch params)``."""
    p_jax = [jnp.asarray(x) for x in init]
    opt_state = tx.init(p_jax)
    params = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in init]
    update = torch_update_of(params)
    for gs in grads:
        updates, opt_state = tx.update([jnp.asarray(g) for g in gs], opt_state, p_jax)
        p_jax = optax.apply_updates(p_jax, updates)
        for p, g in zip(params, gs):
            p.grad = torch.from_numpy(g.copy())
        update()
    return p_jax, params


def test_torch_adamw_matches_train_optimizer_on_identical_gradients():
    """clip + AdamW + warmup-cosine LR of the torch contender == ``train.recipe.make_optimizer`` (optax)."""
    cfg = yolov1_shapes.get_config()
    cfg.train.warmup_steps, cfg.train.steps, cfg.train.grad_clip = 2, 6, 1.0
    rng = np.random.default_rng(0)
    init = [rng.normal(size=sh).astype(np.float32) for sh in SHAPES]
    grads = [[(rng.normal(size=sh) * scale).astype(np.float32) for sh in SHAPES] for scale in (0.01, 3.0) * 3]
    assert any(np.sqrt(sum(np.sum(g ** 2) for g in gs)) > 1.0 for gs in grads)  # the clip is active
    assert any(np.sqrt(sum(np.sum(g ** 2) for g in gs)) < 1.0 for gs in grads)  # and inactive

    tx, _ = recipe_lib.make_optimizer(cfg.train)
    p_jax, params = _run_both(tx, lambda ps: train_twins.torch_adamw(ps, cfg.train)[1], grads, init)
    for pt, pj, p0 in zip(params, p_jax, init):
        assert np.max(np.abs(np.asarray(pj) - p0)) > 1e-3  # moved by several lr-sized steps
        np.testing.assert_allclose(pt.detach().numpy(), np.asarray(pj), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_make_torch_optimizer_matches_make_tx(optimizer):
    """The YOLOv8n comparisons' optimizer on both sides: ultralytics' SGD recipe, or the AdamW of ``train``."""
    cfg = train_twins.yolov8n_config(batch=2, image_size=64, optimizer=optimizer)
    cfg.train.warmup_steps, cfg.train.steps = 1, 6
    rng = np.random.default_rng(1)
    init = [rng.normal(size=sh).astype(np.float32) for sh in SHAPES]
    grads = [[rng.normal(size=sh).astype(np.float32) for sh in SHAPES] for _ in range(5)]
    tx, _ = train_twins.make_tx(cfg)
    p_jax, params = _run_both(tx, lambda ps: train_twins.make_torch_optimizer(ps, cfg)[1], grads, init)
    for pt, pj, p0 in zip(params, p_jax, init):
        assert np.max(np.abs(np.asarray(pj) - p0)) > 1e-3
        np.testing.assert_allclose(pt.detach().numpy(), np.asarray(pj), rtol=1e-5, atol=1e-6)
