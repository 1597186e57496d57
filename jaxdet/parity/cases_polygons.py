"""Parity cases of ``jaxdet.polygons`` (MGIoU) against the ``mgiou`` package (PyPI ``mgiou`` 0.1.0).

Both sides compute the loss :math:`(1 - \\mathrm{MGIoU}) / 2` per sample (``reduction="none"``) on well-formed
shapes only: the package has ``_EPS = 0`` and NaNs on zero-length edges, which jaxdet masks out (see
tests/test_polygons.py for that comparison).

Notes on the reference's autograd path:

* ``MGIoU2DPlus`` (polygons) runs ``torch.vmap`` over a Python loop on the axes; autograd through it works as
  is. Its axes are unnormalized edge normals, jaxdet's are unit normals: the 1D GIoU is invariant to the scale
  and sign of the axis, so values and gradients agree as functions. At the structural ties (both ends of an
  edge project to the same extreme on that edge's normal) the two libraries may send the min/max gradient to a
  different end, but those two projections are the same function of the inputs, so the gradients agree too.
* ``MGIoU2D(representation="rect")`` writes the per-sample losses into a fresh ``new_zeros`` tensor in place
  (``losses[mask] = ...``, to route all-zero targets to an L1 fallback); autograd handles that in-place write.
  Its ``forward`` divides by ``avg_factor``, which defaults to the batch size even with ``reduction="none"``,
  so the reference here passes ``avg_factor=1.0`` to get the plain per-sample loss.
"""

from __future__ import annotations

import numpy as np

from jaxdet import polygons
from jaxdet.parity.core import ParityCase


def random_convex_polygons(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``[n, k, 2]`` convex polygons: ``k`` points at sorted random angles on a random ellipse.

    Angles are kept at least ``0.2 * 2π / k`` apart, so no edge is short and no vertex is nearly collinear
    with its neighbours (well-formed input for the eps-free reference).
    """
    gaps = rng.uniform(0.2, 1.0, (n, k))
    angles = np.cumsum(gaps, axis=1) / gaps.sum(axis=1, keepdims=True) * 2 * np.pi
    angles += rng.uniform(0, 2 * np.pi, (n, 1))
    radii = rng.uniform(0.5, 2.0, (n, 1, 2))
    tilt = rng.uniform(0, np.pi, (n, 1))
    local = radii * np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # [n, k, 2]
    c, s = np.cos(tilt)[..., None], np.sin(tilt)[..., None]
    rotated = np.concatenate([local[..., :1] * c - local[..., 1:] * s, local[..., :1] * s + local[..., 1:] * c], -1)
    return rotated + rng.normal(0.0, 1.0, (n, 1, 2))


def random_rotated_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``[n, 5]`` rotated boxes ``(cx, cy, w, h, theta)`` with sides in [0.5, 3) and theta in [-π, π)."""
    centers = rng.normal(0.0, 1.0, (n, 2))
    sizes = rng.uniform(0.5, 3.0, (n, 2))
    theta = rng.uniform(-np.pi, np.pi, (n, 1))
    return np.concatenate([centers, sizes, theta], axis=-1)


def _polygon_pairs(n: int, k: int):
    return lambda rng: (random_convex_polygons(rng, n, k), random_convex_polygons(rng, n, k))


def _box_pairs(n: int):
    return lambda rng: (random_rotated_boxes(rng, n), random_rotated_boxes(rng, n))


def _mgiou_plus(pred, target):
    import mgiou  # noqa: PLC0415 - torch side: imported only when a comparison runs

    return mgiou.MGIoU2DPlus(reduction="none")(pred, target)


def _mgiou_rect(pred, target):
    import mgiou  # noqa: PLC0415 - torch side: imported only when a comparison runs

    return mgiou.MGIoU2D(representation="rect", reduction="none")(pred, target, avg_factor=1.0)


def cases() -> list[ParityCase]:
    n = 256
    return [
        ParityCase(
            name="mgiou_loss (octagons)",
            reference="mgiou.MGIoU2DPlus",
            jax_fn=polygons.mgiou_loss,
            torch_fn=_mgiou_plus,
            make_inputs=_polygon_pairs(n, 8),
            wrt=(0, 1),
        ),
        ParityCase(
            name="mgiou_loss (quadrangles)",
            reference="mgiou.MGIoU2DPlus",
            jax_fn=polygons.mgiou_loss,
            torch_fn=_mgiou_plus,
            make_inputs=_polygon_pairs(n, 4),
            wrt=(0, 1),
        ),
        ParityCase(
            name="mgiou_rotated_loss",
            reference="mgiou.MGIoU2D(rect, avg_factor=1)",
            jax_fn=polygons.mgiou_rotated_loss,
            torch_fn=_mgiou_rect,
            make_inputs=_box_pairs(n),
            wrt=(0, 1),
        ),
    ]
