"""The YOLOv1 train-step benchmark (``benchmarks/train_step.py``) times the same computation on both sides: its
jaxdet steps (``train/step.py``'s and the self-contained local builder) and its torch eager step, from the same
parameters on the same batch, agree after a few full steps (clip + AdamW + LR schedule) in float32.

The torch twin itself (forward, loss terms, gradients) is tested in ``tests/parity/test_torch_detector.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import train_step as bench  # noqa: E402
from jaxdet.parity.torch_detector import (  # noqa: E402
    build_torch_detector,
    head_loss_options,
    load_nnx_params,
    nchw,
    yolov1_head_loss_torch,
)
from jaxdet.parity.train_twins import make_batch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(image_size: int, grid_size: int, batch_size: int = 4):
    cfg = bench.load_config(batch_size=batch_size, image_size=image_size)
    cfg.model.grid_size = grid_size
    return cfg


def _torch_loss(cfg, raw, batch):
    gt = (torch.from_numpy(batch[k]) for k in ("boxes", "classes", "valid"))
    return yolov1_head_loss_torch(raw, *gt, **head_loss_options(cfg))


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
    batch = make_batch(cfg)

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
            losses["torch"].append(float(_torch_loss(cfg, tmodel(nchw(batch["image"])), batch)[0]))
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
