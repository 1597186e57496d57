"""Plain PyTorch references for the dense classification losses and the Harmonic losses.

No upstream package on PyPI ships softmax focal loss, VFL, QFL, the Harmonic loss or the Harmonic IoU loss in a
form we can import here (mmdet/mmcv are not installed), so these are written from the papers' formulas, in the
most direct torch form (the way the official PyTorch code states them: ``1 - p``, ``.abs().pow()``,
``F.binary_cross_entropy_with_logits``), independently of the JAX implementation. A ``detach_*`` flag
reproduces the ``"stop"`` gradient path with ``.detach()``.

Imported lazily by :mod:`jaxdet.parity.cases_dense`; importing this module imports torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.ops


def softmax_focal_loss(logits, labels, alpha=None, gamma=2.0):
    """-α_y (1 - p_y)^γ log p_y over ``logits [..., C]``, ``labels [...]`` (int64). ``alpha``: None, a float or
    a ``[C]`` tensor."""
    log_p = F.log_softmax(logits, dim=-1)
    log_p_y = log_p.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    p_y = log_p_y.exp()
    loss = -((1 - p_y) ** gamma) * log_p_y
    if alpha is None:
        return loss
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 1:
        return alpha[labels.long()] * loss
    return alpha * loss


def varifocal_loss(pred, target, alpha=0.75, gamma=2.0, iou_weighted=True, detach_target=True):
    """VarifocalNet's loss as in its official code: BCE(pred, t) · (t·[t>0] + α|σ(pred) − t|^γ·[t≤0])."""
    if detach_target:
        target = target.detach()
    pred_sigmoid = pred.sigmoid()
    positive = (target > 0.0).to(pred.dtype)
    pos_weight = target if iou_weighted else torch.ones_like(target)
    focal_weight = pos_weight * positive + alpha * (pred_sigmoid - target).abs().pow(gamma) * (1 - positive)
    return F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight


def quality_focal_loss(pred, target, beta=2.0, detach_target=True):
    """Generalized Focal Loss's QFL, elementwise: |t − σ(pred)|^β · BCE(pred, t)."""
    if detach_target:
        target = target.detach()
    scale = (target - pred.sigmoid()).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(pred, target, reduction="none") * scale


def smooth_l1_sum(pred, target, beta=1.0):
    """``F.smooth_l1_loss`` summed over the last axis → ``[...]``."""
    return F.smooth_l1_loss(pred, target, reduction="none", beta=beta).sum(-1)


def box_iou_elementwise(boxes1, boxes2, eps=1e-7):
    """IoU of matched xyxy boxes ``[..., 4]`` → ``[...]``: inter / (union + eps)."""
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    return inter / (area1 + area2 - inter + eps)


def harmonic_iou_loss(boxes1, boxes2, gamma=0.8, eps=1e-7):
    """(1 + IoU)^γ (1 − IoU)."""
    iou = box_iou_elementwise(boxes1, boxes2, eps=eps)
    return (1 + iou) ** gamma * (1 - iou)


def harmonic_loss(cls_logits, labels, box_pred, box_target, positive=None, regression="smooth_l1",
                  detach_factors=False):
    """(1 + e^{−L_reg}) CE + (1 + e^{−CE}) L_reg; returns ``(total, {"beta_c", "beta_r", "cls", "reg"})``.

    ``regression``: ``"smooth_l1"`` (β = 1, summed over coordinates), ``"giou"`` (torchvision's
    ``generalized_box_iou_loss``) or ``"hiou"`` (γ = 0.8).
    """
    num_classes = cls_logits.shape[-1]
    ce = F.cross_entropy(cls_logits.reshape(-1, num_classes), labels.long().reshape(-1), reduction="none")
    ce = ce.reshape(labels.shape)
    if regression == "smooth_l1":
        reg = smooth_l1_sum(box_pred, box_target)
    elif regression == "giou":
        reg = torchvision.ops.generalized_box_iou_loss(box_pred, box_target, reduction="none")
    elif regression == "hiou":
        reg = harmonic_iou_loss(box_pred, box_target)
    else:
        raise ValueError(regression)
    beta_c = torch.exp(-ce)
    beta_r = torch.exp(-reg)
    if detach_factors:
        beta_c, beta_r = beta_c.detach(), beta_r.detach()
    if positive is not None:
        mask = positive.to(ce.dtype)
        reg, beta_c, beta_r = reg * mask, beta_c * mask, beta_r * mask
    total = (1 + beta_r) * ce + (1 + beta_c) * reg
    return total, {"beta_c": beta_c, "beta_r": beta_r, "cls": ce, "reg": reg}
