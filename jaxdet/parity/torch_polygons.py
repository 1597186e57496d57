"""PyTorch reference of seed 003's hybrid polygon loss (no upstream package has it in reusable form).

Written independently of the JAX code, in plain torch: the seed's vertex "L2" (ultralytics ``KeypointLoss`` with
``e = d / area``), the MGIoU term through the ``mgiou`` package's ``MGIoU2DPlus`` (reduction ``"none"``; it sorts
vertices by angle, which keeps the edge set of a convex polygon), and the three normalisation modes of
:func:`jaxdet.losses.hybrid.hybrid_polygon_loss`. The ``grad_norm`` mode uses ``torch.autograd.grad`` for each
term and the straight-through identity ``value.detach() + s - s.detach()``, with
``s = α/‖g_L2‖·L2 + (1-α)/‖g_M‖·L_M`` (norms detached), whose gradient is exactly ``α ĝ_L2 + (1-α) ĝ_M``.

Only imported by the parity cases (imports torch at the top).

Glossary: seed 003: the hybrid L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation (the
``ultralytics-mgiou`` fork, on Le et al. 2025, "Marginalized Generalized IoU (MGIoU)", arXiv 2504.16443).
"""

from __future__ import annotations

import torch
from mgiou import MGIoU2DPlus

LOSS_EMA_EPS = 1e-6


def bbox_area(polygon: torch.Tensor) -> torch.Tensor:
    """``[N, K, 2] -> [N]``: width × height of the axis-aligned bounding box."""
    wh = polygon.amax(dim=-2) - polygon.amin(dim=-2)
    return wh[..., 0] * wh[..., 1]


def seed_vertex_loss(pred: torch.Tensor, target: torch.Tensor, area: torch.Tensor, mask: torch.Tensor | None = None):
    """Per-instance seed-003 vertex loss ``[N]``: ``K/(n_vis+1e-9) * mean_k((1 - exp(-d/(area+1e-9))) * v_k)``."""
    n, k = pred.shape[:2]
    if mask is None:
        mask = torch.ones(n, k, dtype=torch.bool, device=pred.device)
    d = (pred[..., 0] - target[..., 0]).pow(2) + (pred[..., 1] - target[..., 1]).pow(2)
    factor = k / (torch.sum(mask != 0, dim=1).to(pred.dtype) + 1e-9)  # in the input dtype (ultralytics: float32)
    e = d / (area.view(-1, 1) + 1e-9)
    return factor * ((1 - torch.exp(-e)) * mask).mean(dim=1)


def mgiou_per_instance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(1 - MGIoU) / 2`` per instance ``[N]`` from ``mgiou.MGIoU2DPlus(reduction="none")``."""
    module = MGIoU2DPlus(reduction="none").to(pred.device)  # its `_unit_square` buffer is created on the CPU
    return module(pred, target)


def hybrid_terms(pred, target, weight=None):
    """The two scalar terms (weighted means over instances), as ``jaxdet.losses.hybrid.hybrid_components``."""
    if weight is None:
        weight = torch.ones(pred.shape[0], dtype=pred.dtype, device=pred.device)
    weight = weight.to(pred.dtype)
    l2 = seed_vertex_loss(pred, target, bbox_area(target))
    mg = mgiou_per_instance(pred, target)
    denom = torch.clamp(weight.sum(), min=1e-12)
    return (l2 * weight).sum() / denom, (mg * weight).sum() / denom


def hybrid_polygon_loss(
    pred,
    target,
    alpha,
    weight=None,
    *,
    normalization: str = "none",
    l2_loss_ema=None,
    mgiou_loss_ema=None,
    decay: float = 0.9,
    rescale: bool = True,
):
    """Total hybrid loss (scalar) in one of the modes ``"none"``, ``"loss_ema"``, ``"grad_norm"``.

    ``l2_loss_ema``/``mgiou_loss_ema``: the EMAs before this call (``None``: first call, the EMA becomes the
    current value), for ``"loss_ema"``.
    """
    l2, mg = hybrid_terms(pred, target, weight)
    if normalization == "none":
        return alpha * l2 + (1 - alpha) * mg
    if normalization == "loss_ema":
        l2_now, mg_now = l2.detach(), mg.detach()
        l2_ema = l2_now if l2_loss_ema is None else decay * l2_loss_ema + (1 - decay) * l2_now
        mg_ema = mg_now if mgiou_loss_ema is None else decay * mgiou_loss_ema + (1 - decay) * mg_now
        combined = alpha * l2 / (l2_ema + LOSS_EMA_EPS) + (1 - alpha) * mg / (mg_ema + LOSS_EMA_EPS)
        return combined * l2_ema if rescale else combined
    if normalization == "grad_norm":
        g_l2, = torch.autograd.grad(l2, pred, retain_graph=True, create_graph=False)
        g_mg, = torch.autograd.grad(mg, pred, retain_graph=True, create_graph=False)
        n_l2, n_mg = g_l2.norm().detach(), g_mg.norm().detach()
        surrogate = alpha / n_l2 * l2 + (1 - alpha) / n_mg * mg
        value = alpha * l2 + (1 - alpha) * mg
        return value.detach() + surrogate - surrogate.detach()
    raise ValueError(f"unknown normalization {normalization!r}")
