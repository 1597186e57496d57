"""Parity cases of ``jaxdet.boxes`` against torchvision.ops.

The ``*_loss`` functions use the default ``eps=1e-7`` on both sides. torchvision's pairwise metrics have no eps
in the IoU (``box_iou``, ``generalized_box_iou``) or take it as an argument (``distance_box_iou``,
``complete_box_iou``), so those rows run both sides with ``eps=0``.
"""

from __future__ import annotations

import numpy as np

from jaxdet import boxes
from jaxdet.parity.core import ParityCase


def random_boxes(rng: np.random.Generator, shape: tuple[int, ...], *, max_xy: float = 100.0) -> np.ndarray:
    """Well-formed xyxy boxes ``[*shape, 4]``: top-left in ``[0, max_xy)``, sides in ``[1, max_xy / 2)``."""
    xy = rng.uniform(0, max_xy, (*shape, 2))
    wh = rng.uniform(1, max_xy / 2, (*shape, 2))
    return np.concatenate([xy, xy + wh], axis=-1)


def _pair(n: int):
    return lambda rng: (random_boxes(rng, (n,)), random_boxes(rng, (n,)))


def _pairwise(n: int, m: int):
    return lambda rng: (random_boxes(rng, (n,)), random_boxes(rng, (m,)))


def _tv(name: str, **kwargs):
    def call(*tensors):
        import torchvision.ops  # noqa: PLC0415 - torch side: imported only when a comparison runs

        return getattr(torchvision.ops, name)(*tensors, **kwargs)

    return call


def cases() -> list[ParityCase]:
    n, m = 256, 64
    elementwise = [
        ("generalized_box_iou_loss", boxes.generalized_box_iou_loss),
        ("distance_box_iou_loss", boxes.distance_box_iou_loss),
        ("complete_box_iou_loss", boxes.complete_box_iou_loss),
    ]
    pairwise = [
        ("box_iou", boxes.box_iou_pairwise, {}),
        ("generalized_box_iou", boxes.generalized_box_iou_pairwise, {}),
        ("distance_box_iou", boxes.distance_box_iou_pairwise, {"eps": 0.0}),
        ("complete_box_iou", boxes.complete_box_iou_pairwise, {"eps": 0.0}),
    ]
    result = [
        ParityCase(
            name=name,
            reference=f"torchvision.ops.{name}",
            jax_fn=fn,
            torch_fn=_tv(name, reduction="none"),
            make_inputs=_pair(n),
            wrt=(0, 1),
        )
        for name, fn in elementwise
    ]
    result += [
        ParityCase(
            name=f"{fn.__name__} (eps=0)",
            reference=f"torchvision.ops.{name}",
            jax_fn=lambda b1, b2, fn=fn: fn(b1, b2, eps=0.0),
            torch_fn=_tv(name, **torch_kwargs),
            make_inputs=_pairwise(n, m),
            wrt=(0, 1),
        )
        for name, fn, torch_kwargs in pairwise
    ]
    return result
