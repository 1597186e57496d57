"""Parity cases of the vertex losses (vs ultralytics ``KeypointLoss``) and the hybrid polygon loss (vs
:mod:`jaxdet.parity.torch_polygons`, whose MGIoU term is the ``mgiou`` package's ``MGIoU2DPlus``).

The hybrid rows compare gradients w.r.t. the predicted and target vertices, not the instance weights: jaxdet
replaces zero-weight (padding) instances by a stand-in polygon before computing them (double-where), so their
derivative w.r.t. their own weight reads a loss of 0 where the plain formula reads the padding's loss.

Polygons are well-formed convex octagons in canonical (counter-clockwise) order: the ``mgiou`` package has eps = 0
and NaNs on degenerate shapes, so parity is measured where it is defined.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxdet.losses.hybrid import HybridState, hybrid_polygon_loss
from jaxdet.losses.vertex import OKS_SIGMA, keypoint_loss
from jaxdet.parity.core import ParityCase

K = 8
N = 16
ALPHA = 0.35
EMA_BEFORE = (0.42, 0.27)  # (L2, MGIoU) loss EMAs carried into the "loss_ema" call


def random_convex_polygons(rng: np.random.Generator, n: int, k: int = K) -> np.ndarray:
    """``[n, k, 2]`` convex polygons in [0, 1]²: points on rotated ellipses at sorted angles (counter-clockwise)."""
    theta = np.sort(rng.uniform(0.0, 2.0 * np.pi, (n, k)), axis=-1)
    center = rng.uniform(0.35, 0.65, (n, 1, 2))
    radii = rng.uniform(0.05, 0.3, (n, 1, 2))
    phi = rng.uniform(0.0, np.pi, (n, 1))
    x, y = radii[..., 0] * np.cos(theta), radii[..., 1] * np.sin(theta)
    rotated = np.stack([x * np.cos(phi) - y * np.sin(phi), x * np.sin(phi) + y * np.cos(phi)], axis=-1)
    return center + rotated


def _keypoint_inputs(k: int, *, masked: bool):
    def make(rng):
        target = rng.uniform(0.0, 1.0, (N, k, 2))
        pred = target + rng.normal(0.0, 0.05, (N, k, 2))
        area = rng.uniform(0.01, 0.5, (N, 1))
        mask = rng.uniform(size=(N, k)) > 0.3 if masked else np.ones((N, k), bool)
        if masked:
            mask[0] = False  # an instance with no visible vertex
        return pred, target, area, mask

    return make


def _keypoint_jax(sigmas_kind: str, k: int):
    def fn(pred, target, area, mask):
        sigmas = OKS_SIGMA if sigmas_kind == "oks" else None
        return keypoint_loss(pred, target, area, visible=mask, sigmas=sigmas, reduction="mean")

    return fn


def _keypoint_torch(sigmas_kind: str, k: int):
    def fn(pred, target, area, mask):
        import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs
        from ultralytics.utils.loss import KeypointLoss  # noqa: PLC0415 - torch side: imported only when a comparison runs
        from ultralytics.utils.metrics import OKS_SIGMA as ULTRALYTICS_OKS_SIGMA  # noqa: PLC0415 - torch side: imported only when a comparison runs

        if sigmas_kind == "oks":
            sigmas = torch.from_numpy(np.asarray(ULTRALYTICS_OKS_SIGMA)).to(pred.dtype)
        else:
            sigmas = torch.ones(k, dtype=pred.dtype) / k
        # ultralytics computes K / (n_vis + 1e-9) as int64 + Python float, i.e. in torch's *default* dtype
        # (float32) even for float64 inputs: a 1e-8 relative quirk. Run the reference with the default dtype set
        # to the input dtype so float64 parity measures the formula, not that rounding.
        previous = torch.get_default_dtype()
        torch.set_default_dtype(pred.dtype)
        try:
            return KeypointLoss(sigmas=sigmas)(pred, target, mask, area)
        finally:
            torch.set_default_dtype(previous)

    return fn


def _seed_vertex_jax(pred, target, area, mask):
    return keypoint_loss(pred, target, area, visible=mask, variant="seed")


def _seed_vertex_torch(pred, target, area, mask):
    from jaxdet.parity import torch_polygons  # noqa: PLC0415 - torch side: imported only when a comparison runs

    return torch_polygons.seed_vertex_loss(pred, target, area, mask)


def _hybrid_inputs(rng):
    target = random_convex_polygons(rng, N)
    pred = random_convex_polygons(rng, N)
    half = N // 2  # the first half: similarity transforms of the target (overlapping, still convex)
    center = target[:half].mean(axis=1, keepdims=True)
    angle = rng.uniform(-0.3, 0.3, (half, 1))
    scale = rng.uniform(0.7, 1.3, (half, 1, 1))
    rel = target[:half] - center
    c, s = np.cos(angle), np.sin(angle)
    rot = np.stack([rel[..., 0] * c - rel[..., 1] * s, rel[..., 0] * s + rel[..., 1] * c], axis=-1)
    pred[:half] = center + scale * rot + rng.normal(0.0, 0.03, (half, 1, 2))
    weight = rng.uniform(0.2, 1.0, N)
    weight[-2:] = 0.0  # padded instances
    return pred, target, weight


def _hybrid_jax(normalization: str, *, with_state: bool = False):
    def fn(pred, target, weight):
        state = None
        if with_state:
            dtype = pred.dtype
            state = HybridState(
                l2_loss_ema=jnp.asarray(EMA_BEFORE[0], dtype),
                mgiou_loss_ema=jnp.asarray(EMA_BEFORE[1], dtype),
                l2_norm_ema=jnp.zeros((), dtype),
                mgiou_norm_ema=jnp.zeros((), dtype),
                count=jnp.ones((), jnp.int32),
            )
        out = hybrid_polygon_loss(
            pred, target, alpha=ALPHA, normalization=normalization, weight=weight, state=state,
            gradient_metrics=False,
        )
        return out.total

    return fn


def _hybrid_torch(normalization: str, *, with_state: bool = False):
    def fn(pred, target, weight):
        from jaxdet.parity import torch_polygons  # noqa: PLC0415 - torch side: imported only when a comparison runs

        emas = {}
        if with_state:
            emas = {"l2_loss_ema": EMA_BEFORE[0], "mgiou_loss_ema": EMA_BEFORE[1]}
        return torch_polygons.hybrid_polygon_loss(
            pred, target, ALPHA, weight, normalization=normalization, **emas
        )

    return fn


def cases() -> list[ParityCase]:
    return [
        ParityCase(
            name="keypoint_loss (oks, sigma=1/K, mask)",
            reference="ultralytics.utils.loss.KeypointLoss",
            jax_fn=_keypoint_jax("uniform", K),
            torch_fn=_keypoint_torch("uniform", K),
            make_inputs=_keypoint_inputs(K, masked=True),
            wrt=(0, 1, 2),
        ),
        ParityCase(
            name="keypoint_loss (oks, OKS_SIGMA, K=17)",
            reference="ultralytics.utils.loss.KeypointLoss",
            jax_fn=_keypoint_jax("oks", 17),
            torch_fn=_keypoint_torch("oks", 17),
            make_inputs=_keypoint_inputs(17, masked=False),
            wrt=(0, 1, 2),
        ),
        ParityCase(
            name="keypoint_loss (seed: e=d/area)",
            reference="jaxdet.parity.torch_polygons.seed_vertex_loss",
            jax_fn=_seed_vertex_jax,
            torch_fn=_seed_vertex_torch,
            make_inputs=_keypoint_inputs(K, masked=True),
            wrt=(0, 1, 2),
        ),
        ParityCase(
            name="hybrid_polygon_loss (none)",
            reference="torch_polygons.hybrid_polygon_loss + mgiou.MGIoU2DPlus",
            jax_fn=_hybrid_jax("none"),
            torch_fn=_hybrid_torch("none"),
            make_inputs=_hybrid_inputs,
            wrt=(0, 1),
        ),
        ParityCase(
            name="hybrid_polygon_loss (loss_ema, first call)",
            reference="torch_polygons.hybrid_polygon_loss + mgiou.MGIoU2DPlus",
            jax_fn=_hybrid_jax("loss_ema"),
            torch_fn=_hybrid_torch("loss_ema"),
            make_inputs=_hybrid_inputs,
            wrt=(0, 1),
        ),
        ParityCase(
            name="hybrid_polygon_loss (loss_ema, carried EMA)",
            reference="torch_polygons.hybrid_polygon_loss + mgiou.MGIoU2DPlus",
            jax_fn=_hybrid_jax("loss_ema", with_state=True),
            torch_fn=_hybrid_torch("loss_ema", with_state=True),
            make_inputs=_hybrid_inputs,
            wrt=(0, 1),
        ),
        ParityCase(
            name="hybrid_polygon_loss (grad_norm)",
            reference="torch_polygons.hybrid_polygon_loss (autograd.grad per term)",
            jax_fn=_hybrid_jax("grad_norm"),
            torch_fn=_hybrid_torch("grad_norm"),
            make_inputs=_hybrid_inputs,
            wrt=(0,),
        ),
    ]
