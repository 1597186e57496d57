"""Vertex (keypoint) losses for polygon regression: ultralytics' OKS-style ``KeypointLoss`` and seed 003's variant.

Both compare predicted and ground-truth vertices one by one, so they know nothing about the shape the vertices
span (that is what MGIoU adds, see :mod:`jaxdet.losses.hybrid`). Their gradients are strong far from the target,
which is why seed 003 starts training on them.

- ``variant="oks"`` is ultralytics ``KeypointLoss`` exactly (parity-tested against
  ``ultralytics.utils.loss.KeypointLoss``):

  .. math:: e_k = \\frac{d_k}{(2\\sigma_k)^2 \\, (A + \\epsilon) \\cdot 2}, \\qquad
            L = \\frac{K}{n_\\mathrm{vis} + \\epsilon} \\cdot \\frac{1}{K} \\sum_k v_k \\,(1 - e^{-e_k})

  with :math:`d_k` the squared distance of vertex k, :math:`A` the area of the ground-truth box, :math:`v_k` the
  visibility mask and :math:`\\sigma_k` the COCO OKS sigmas (``OKS_SIGMA``, for 17 keypoints) or ``1/K``.
- ``variant="seed"`` is the vertex "L2" of seed 003 (the public ``ultralytics-mgiou`` fork, ``PolygonLoss`` in L2
  mode): the same expression with :math:`e_k = d_k / (A + \\epsilon)`, i.e. no sigma and no factor 2.
  It is the L2 term of :func:`jaxdet.losses.hybrid.hybrid_polygon_loss`.
- :func:`vertex_l2_loss` is the plain mean squared vertex distance, for comparison.

Ultralytics reduces with a mean over instances *and* vertices; since the :math:`K/n_\\mathrm{vis}` factor is per
instance, that equals the mean over instances of the per-instance values returned here with
``reduction="none"``. So ``keypoint_loss(..., reduction="mean")`` is ultralytics' number.

Glossary: seed 003: the hybrid L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation (the
``ultralytics-mgiou`` fork, on Le et al. 2025, "Marginalized Generalized IoU (MGIoU)", arXiv 2504.16443).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks
from jaxdet.losses._common import check_reduction, check_vertices, reduce_loss

__all__ = ["OKS_SIGMA", "keypoint_loss", "vertex_l2_loss", "box_area_of_polygon"]

#: COCO keypoint OKS sigmas (17 person keypoints), as in ultralytics ``utils/metrics.py`` and pycocotools.
OKS_SIGMA = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89],
        dtype=np.float32,
    )
    / 10.0
)

VertexVariant = Literal["oks", "seed"]
Reduction = Literal["none", "mean", "sum"]


def box_area_of_polygon(polygon: jax.Array, *, valid: jax.Array | None = None) -> jax.Array:
    """Area ``w * h`` of the axis-aligned bounding box of a polygon (the ``area`` ultralytics passes).

    Args:
      polygon: ``[..., K, 2]`` vertices (x, y).
      valid: optional ``[..., K]`` bool; invalid vertices are ignored. A polygon with no valid vertex has area 0.

    Returns:
      ``[...]`` the bounding-box area.
    """
    polygon = _checks.floating(polygon, "polygon", shape="[..., K, 2]", min_ndim=2, last=2)
    if valid is None:
        lo = jnp.min(polygon, axis=-2)
        hi = jnp.max(polygon, axis=-2)
    else:
        _checks.shape_is(valid, polygon.shape[:-1], "valid", "polygon.shape[:-1]")
        valid = jnp.asarray(valid, bool)[..., None]
        lo = jnp.min(jnp.where(valid, polygon, jnp.inf), axis=-2)
        hi = jnp.max(jnp.where(valid, polygon, -jnp.inf), axis=-2)
        any_valid = jnp.any(valid, axis=-2)
        lo = jnp.where(any_valid, lo, 0.0)
        hi = jnp.where(any_valid, hi, 0.0)
    wh = hi - lo
    return wh[..., 0] * wh[..., 1]


def keypoint_loss(
    pred: jax.Array,
    target: jax.Array,
    area: jax.Array,
    *,
    visible: jax.Array | None = None,
    sigmas: jax.Array | np.ndarray | None = None,
    variant: VertexVariant = "oks",
    eps: float = 1e-9,
    reduction: Reduction = "none",
) -> jax.Array:
    """OKS-style vertex loss of ultralytics ``KeypointLoss`` (``variant="oks"``) or seed 003 (``"seed"``).

    .. math::
        L = \\frac{K}{n_\\mathrm{vis} + \\epsilon} \\cdot \\frac{1}{K}\\sum_{k} v_k\\,(1 - e^{-e_k}),\\quad
        e_k = \\begin{cases} d_k / \\big((2\\sigma_k)^2 (A+\\epsilon)\\, 2\\big) & \\text{oks} \\\\
                              d_k / (A+\\epsilon) & \\text{seed} \\end{cases}

    Every term lies in [0, 1) and the loss is bounded; ``1 - exp(-e)`` saturates, so gradients fade far from the
    target (not an unbounded L2). Values and gradients are finite for zero area (the eps) and zero visible
    vertices (the eps in :math:`n_\\mathrm{vis} + \\epsilon` gives a zero loss there).

    Args:
      pred: ``[..., K, 2]`` predicted vertices (x, y).
      target: ``[..., K, 2]`` ground-truth vertices; not differentiated through in training, but gradients
        w.r.t. it are exact (the expression is symmetric).
      area: ``[...]`` (or ``[..., 1]``, ultralytics' shape) area of the ground-truth box, in the squared units
        of the vertices. :func:`box_area_of_polygon` gives the polygon's bounding-box area.
      visible: optional ``[..., K]`` visibility mask (bool or numbers; nonzero = visible, as ultralytics'
        ``kpt_mask``). Default: all visible.
      sigmas: ``[K]`` OKS sigmas (``variant="oks"`` only). Default ``1/K`` for every vertex, as ultralytics uses
        for non-pose keypoints; pass :data:`OKS_SIGMA` for COCO person keypoints.
      variant: ``"oks"`` (ultralytics ``KeypointLoss``) or ``"seed"`` (seed 003's ``e = d / area``).
      eps: 1e-9, ultralytics' value, added to the area and to :math:`n_\\mathrm{vis}`.
      reduction: ``"none"`` (``[...]``, one value per instance), ``"mean"`` (ultralytics' scalar) or ``"sum"``.

    Returns:
      ``[...]`` per-instance losses, or a scalar when reduced.

    References:
      ultralytics ``ultralytics/utils/loss.py::KeypointLoss``; COCO OKS (cocoeval);
      seed 003 / ``ultralytics-mgiou`` ``PolygonLoss`` (L2 mode).
    """
    check_vertices(pred, target)
    _checks.choice(variant, "variant", ("oks", "seed"))
    check_reduction(reduction)
    _checks.number(eps, "eps", low=0.0)
    num_vertices = pred.shape[-2]
    dtype = jnp.result_type(pred, target)
    area = jnp.asarray(area, dtype)
    batch_shape = pred.shape[:-2]
    if area.ndim == len(batch_shape) + 1 and area.shape[-1:] == (1,):
        area = area[..., 0]  # ultralytics passes [N, 1]
    _checks.broadcasts_to(area, batch_shape, "area", "pred.shape[:-2]", hint=f"Or pass it as {(*batch_shape, 1)}.")
    area = jnp.broadcast_to(area, batch_shape)
    if visible is None:
        mask = jnp.ones(pred.shape[:-1], dtype)
    else:
        visible = jnp.asarray(visible)
        _checks.shape_is(visible, pred.shape[:-1], "visible", "pred.shape[:-1]")
        mask = (visible != 0).astype(dtype)

    d = jnp.sum(jnp.square(pred - target), axis=-1)  # [..., K]
    if variant == "oks":
        if sigmas is None:
            sigmas = jnp.full((num_vertices,), 1.0 / num_vertices, dtype)
        sigmas = jnp.asarray(sigmas, dtype)
        _checks.shape_is(sigmas, (num_vertices,), "sigmas", "[K]")
        denom = jnp.square(2.0 * sigmas) * (area[..., None] + eps) * 2.0  # [..., K]
    else:
        if sigmas is not None:
            raise _checks.fail_value("sigmas", "None for variant='seed'", sigmas, hint="Only 'oks' uses sigmas.")
        denom = area[..., None] + eps  # [..., 1]
    e = d / denom  # [..., K]
    n_visible = jnp.sum(mask, axis=-1)  # [...]
    factor = num_vertices / (n_visible + eps)  # [...]
    loss = factor * jnp.mean((1.0 - jnp.exp(-e)) * mask, axis=-1)  # [...], as the reference (not expm1)
    return reduce_loss(loss, reduction)


def vertex_l2_loss(
    pred: jax.Array,
    target: jax.Array,
    *,
    visible: jax.Array | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    """Plain squared vertex distance, averaged over the visible vertices of each instance.

    .. math:: L = \\frac{1}{\\max(n_\\mathrm{vis}, 1)} \\sum_k v_k \\, \\|p_k - t_k\\|^2

    Args:
      pred: ``[..., K, 2]`` predicted vertices.
      target: ``[..., K, 2]`` ground-truth vertices.
      visible: optional ``[..., K]`` mask (nonzero = counted).
      reduction: ``"none"`` (``[...]``), ``"mean"`` or ``"sum"``.

    Returns:
      ``[...]`` per-instance losses, or a scalar when reduced.
    """
    check_vertices(pred, target)
    check_reduction(reduction)
    dtype = jnp.result_type(pred, target)
    d = jnp.sum(jnp.square(pred - target), axis=-1)  # [..., K]
    if visible is None:
        loss = jnp.mean(d, axis=-1)
    else:
        visible = jnp.asarray(visible)
        _checks.shape_is(visible, pred.shape[:-1], "visible", "pred.shape[:-1]")
        mask = (visible != 0).astype(dtype)
        loss = jnp.sum(d * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
    return reduce_loss(loss, reduction)
