"""Parity cases of the focal family and the Harmonic losses.

- ``sigmoid_focal_loss`` against ``torchvision.ops.sigmoid_focal_loss`` (reductions none/mean/sum, and α = −1).
- softmax focal, VFL, QFL, the Harmonic loss and the Harmonic IoU loss against the plain PyTorch references of
  :mod:`jaxdet.parity.torch_dense` (no upstream package ships them); VFL/QFL in both gradient paths and the
  Harmonic loss with differentiated and detached factors.
"""

from __future__ import annotations

import numpy as np

from jaxdet.losses import focal, harmonic
from jaxdet.parity.core import ParityCase


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(1, 50, (n, 2))
    return np.concatenate([xy, xy + wh], axis=-1)


def _jittered(rng: np.random.Generator, boxes: np.ndarray) -> np.ndarray:
    """Boxes near ``boxes`` (overlapping in most pairs, as a matched prediction would)."""
    wh = boxes[:, 2:] - boxes[:, :2]
    shift = rng.normal(0, 0.2, boxes.shape) * np.concatenate([wh, wh], axis=-1)
    out = boxes + shift
    return np.concatenate([np.minimum(out[:, :2], out[:, 2:] - 0.5), out[:, 2:]], axis=-1)


def _binary_inputs(rng: np.random.Generator):
    logits = rng.normal(0, 3, (64, 20))
    targets = (rng.random((64, 20)) < 0.3).astype(np.float64)
    return logits, targets


def _iou_score_inputs(rng: np.random.Generator):
    """Logits ``[8, 64, 10]`` and a dense IoU-aware target: an IoU in (0.05, 1) at ~25 % of entries, else 0."""
    shape = (8, 64, 10)
    logits = rng.normal(0, 3, shape)
    positive = rng.random(shape) < 0.25
    targets = np.where(positive, rng.uniform(0.05, 1.0, shape), 0.0)
    return logits, targets


def _softmax_inputs(rng: np.random.Generator):
    logits = rng.normal(0, 3, (128, 21))
    labels = rng.integers(0, 21, (128,)).astype(np.int64)
    return logits, labels


def _harmonic_offsets(rng: np.random.Generator):
    n, c = 256, 12
    logits = rng.normal(0, 2, (n, c))
    labels = rng.integers(0, c, (n,)).astype(np.int64)
    pred = rng.normal(0, 1.5, (n, 4))  # encoded offsets: both smooth-L1 branches are hit
    target = rng.normal(0, 1.5, (n, 4))
    positive = rng.random(n) < 0.7
    return logits, labels, pred, target, positive


def _harmonic_boxes(rng: np.random.Generator):
    n, c = 256, 12
    logits = rng.normal(0, 2, (n, c))
    labels = rng.integers(0, c, (n,)).astype(np.int64)
    target = _random_boxes(rng, n)
    pred = _jittered(rng, target)
    positive = rng.random(n) < 0.7
    return logits, labels, pred, target, positive


def _box_pairs(rng: np.random.Generator):
    target = _random_boxes(rng, 256)
    return _jittered(rng, target), target


def _tv_sigmoid_focal(**kwargs):
    def call(inputs, targets):
        import torchvision.ops  # noqa: PLC0415 - torch side: imported only when a comparison runs

        return torchvision.ops.sigmoid_focal_loss(inputs, targets, **kwargs)

    return call


def _ref(name: str, **kwargs):
    def call(*tensors):
        from jaxdet.parity import torch_dense  # noqa: PLC0415 - torch side: imported only when a comparison runs

        return getattr(torch_dense, name)(*tensors, **kwargs)

    return call


def _harmonic_jax(regression: str, factor_grad: str):
    def call(logits, labels, pred, target, positive):
        out = harmonic.harmonic_loss(logits, labels, pred, target, regression=regression,
                                     factor_grad=factor_grad, positive=positive)
        return out.total, out.terms

    return call


def cases() -> list[ParityCase]:
    result = []
    for reduction in ("none", "mean", "sum"):
        result.append(ParityCase(
            name=f"sigmoid_focal_loss ({reduction})",
            reference="torchvision.ops.sigmoid_focal_loss",
            jax_fn=lambda x, t, r=reduction: focal.sigmoid_focal_loss(x, t, reduction=r),
            torch_fn=_tv_sigmoid_focal(reduction=reduction),
            make_inputs=_binary_inputs,
            wrt=(0, 1),
        ))
    result.append(ParityCase(
        name="sigmoid_focal_loss (alpha=-1, gamma=1.5)",
        reference="torchvision.ops.sigmoid_focal_loss",
        jax_fn=lambda x, t: focal.sigmoid_focal_loss(x, t, alpha=-1.0, gamma=1.5),
        torch_fn=_tv_sigmoid_focal(alpha=-1, gamma=1.5),
        make_inputs=_binary_inputs,
        wrt=(0, 1),
    ))
    alpha_vec = np.linspace(0.25, 1.0, 21)
    for label, alpha in (("alpha=None", None), ("alpha=0.25", 0.25), ("alpha=[C]", alpha_vec)):
        result.append(ParityCase(
            name=f"softmax_focal_loss ({label})",
            reference="jaxdet.parity.torch_dense.softmax_focal_loss",
            jax_fn=lambda z, y, a=alpha: focal.softmax_focal_loss(z, y, alpha=a),
            torch_fn=_softmax_focal_ref(alpha),
            make_inputs=_softmax_inputs,
        ))
    for path in ("stop", "through"):
        result.append(ParityCase(
            name=f"varifocal_loss (iou_target={path})",
            reference="jaxdet.parity.torch_dense.varifocal_loss",
            jax_fn=lambda x, t, p=path: focal.varifocal_loss(x, t, iou_target=p),
            torch_fn=_ref("varifocal_loss", detach_target=path == "stop"),
            make_inputs=_iou_score_inputs,
            wrt=(0, 1),
        ))
        result.append(ParityCase(
            name=f"quality_focal_loss (iou_target={path})",
            reference="jaxdet.parity.torch_dense.quality_focal_loss",
            jax_fn=lambda x, t, p=path: focal.quality_focal_loss(x, t, iou_target=p),
            torch_fn=_ref("quality_focal_loss", detach_target=path == "stop"),
            make_inputs=_iou_score_inputs,
            wrt=(0, 1),
        ))
    for regression, make_inputs in (("smooth_l1", _harmonic_offsets), ("giou", _harmonic_boxes),
                                    ("hiou", _harmonic_boxes)):
        for factor_grad in ("through", "stop"):
            if regression != "smooth_l1" and factor_grad == "stop":
                continue
            result.append(ParityCase(
                name=f"harmonic_loss ({regression}, factor_grad={factor_grad})",
                reference="jaxdet.parity.torch_dense.harmonic_loss",
                jax_fn=_harmonic_jax(regression, factor_grad),
                torch_fn=_ref("harmonic_loss", regression=regression, detach_factors=factor_grad == "stop"),
                make_inputs=make_inputs,
                wrt=(0, 2, 3),
            ))
    for gamma in (0.8, 0.5):
        result.append(ParityCase(
            name=f"harmonic_iou_loss (gamma={gamma})",
            reference="jaxdet.parity.torch_dense.harmonic_iou_loss",
            jax_fn=lambda b1, b2, g=gamma: harmonic.harmonic_iou_loss(b1, b2, gamma=g),
            torch_fn=_ref("harmonic_iou_loss", gamma=gamma),
            make_inputs=_box_pairs,
            wrt=(0, 1),
        ))
    return result


def _softmax_focal_ref(alpha):
    def call(logits, labels):
        import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

        from jaxdet.parity import torch_dense  # noqa: PLC0415 - torch side: imported only when a comparison runs

        a = alpha
        if a is not None and not np.isscalar(a):
            a = torch.as_tensor(a, dtype=logits.dtype)
        return torch_dense.softmax_focal_loss(logits, labels, alpha=a)

    return call
