"""PyTorch references for the detection losses: YOLOv1 (written here) and SSD (torchvision's own code).

The YOLOv1 reference is written from the paper and darknet's ``forward_detection_layer`` independently of
:mod:`jaxdet.losses.yolo`: targets are encoded by writing the ground-truth boxes into a dense ``[N, S, S, ·]``
tensor in reverse order (so the first box of a cell is written last and wins, as darknet's ``if (truth[index])
continue;``), and the loss is the usual masked sum of squares. The SSD reference calls torchvision's real
``SSD.compute_loss`` on a tiny ``SSD`` model object, and torchvision's ``box_iou`` + ``SSDMatcher`` for matching.

This module imports torch at the top: import it lazily (the parity cases do).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou

# ------------------------------------------------------------------------------------------------- YOLOv1


def yolov1_encode_targets(
    gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_valid: torch.Tensor, grid_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense YOLOv1 targets: ``(has_object [N, S, S] bool, box [N, S, S, 4] xyxy, class [N, S, S] long)``.

    Boxes are written one slot ``j`` at a time, for the whole batch, in reverse order, so the first valid box of
    a cell is written last and wins. Padded boxes are written to a spare cell ``S·S`` that is dropped at the end
    (fixed shapes, no data-dependent indexing, so ``torch.compile`` traces it whole).
    """
    n, m = gt_valid.shape
    s = grid_size
    cells = s * s
    has_object = torch.zeros((n, cells + 1), dtype=torch.bool, device=gt_boxes.device)
    box = torch.zeros((n, cells + 1, 4), dtype=gt_boxes.dtype, device=gt_boxes.device)
    cls = torch.zeros((n, cells + 1), dtype=torch.long, device=gt_boxes.device)
    batch = torch.arange(n, device=gt_boxes.device)
    gt_boxes = gt_boxes.detach()
    for j in reversed(range(m)):  # reverse order: the first box of a cell is written last
        b = gt_boxes[:, j]
        cx = (b[:, 0] + b[:, 2]) / 2
        cy = (b[:, 1] + b[:, 3]) / 2
        col = torch.clamp(torch.floor(cx * s).long(), 0, s - 1)
        row = torch.clamp(torch.floor(cy * s).long(), 0, s - 1)
        cell = torch.where(gt_valid[:, j].bool(), row * s + col, cells)
        has_object[batch, cell] = True
        box[batch, cell] = b
        cls[batch, cell] = gt_classes[:, j].long()
    return (
        has_object[:, :cells].reshape(n, s, s),
        box[:, :cells].reshape(n, s, s, 4),
        cls[:, :cells].reshape(n, s, s),
    )


def _iou(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter + eps)


def yolov1_loss_torch(
    pred: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_valid: torch.Tensor,
    *,
    num_boxes: int = 2,
    num_classes: int,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    iou_target: str = "stop",
    eps: float = 1e-7,
) -> dict[str, torch.Tensor]:
    """YOLOv1 loss per image: ``{"total", "coord_xy", "coord_wh", "obj", "noobj", "cls"}`` → ``[N]``.

    ``pred [N, S, S, B·5 + C]`` with per predictor ``(x, y, sqrt_w, sqrt_h, conf)`` (darknet's ``sqrt``
    parameterisation: ``w = sqrt_w²``), ``gt_boxes [N, M, 4]`` xyxy normalised, ``gt_classes [N, M]`` 0-based,
    ``gt_valid [N, M]``. ``iou_target="stop"`` detaches the IoU confidence target, ``"through"`` keeps it.
    """
    n, s = pred.shape[0], pred.shape[1]
    nb = num_boxes
    has_object, tbox, tcls = yolov1_encode_targets(gt_boxes, gt_classes, gt_valid, s)
    p = pred[..., : nb * 5].reshape(n, s, s, nb, 5)
    scores = pred[..., nb * 5 :]
    rows = torch.arange(s, dtype=pred.dtype, device=pred.device).view(1, s, 1, 1)
    cols = torch.arange(s, dtype=pred.dtype, device=pred.device).view(1, 1, s, 1)
    cx = (p[..., 0] + cols) / s
    cy = (p[..., 1] + rows) / s
    w = p[..., 2] * p[..., 2]
    h = p[..., 3] * p[..., 3]
    pbox = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)  # [N, S, S, B, 4]
    tb = tbox.unsqueeze(3)  # [N, S, S, 1, 4]
    iou = _iou(pbox, tb, eps)  # [N, S, S, B]

    with torch.no_grad():
        t_cx, t_cy = (tb[..., 0] + tb[..., 2]) / 2, (tb[..., 1] + tb[..., 3]) / 2
        t_w, t_h = tb[..., 2] - tb[..., 0], tb[..., 3] - tb[..., 1]
        p_cx, p_cy = (pbox[..., 0] + pbox[..., 2]) / 2, (pbox[..., 1] + pbox[..., 3]) / 2
        p_w, p_h = pbox[..., 2] - pbox[..., 0], pbox[..., 3] - pbox[..., 1]
        dist = (p_cx - t_cx) ** 2 + (p_cy - t_cy) ** 2 + (p_w - t_w) ** 2 + (p_h - t_h) ** 2
        best = torch.where(iou.max(-1).values > 0, iou.argmax(-1), dist.argmin(-1))  # [N, S, S]
        resp = torch.nn.functional.one_hot(best, nb).to(pred.dtype) * has_object.unsqueeze(-1).to(pred.dtype)

    conf_target = iou.detach() if iou_target == "stop" else iou
    t_x = (t_cx * s - cols) * has_object.unsqueeze(-1)  # [N, S, S, 1] centre offset in the cell
    t_y = (t_cy * s - rows) * has_object.unsqueeze(-1)
    coord_xy = lambda_coord * (resp * ((p[..., 0] - t_x) ** 2 + (p[..., 1] - t_y) ** 2)).sum(dim=(1, 2, 3))
    coord_wh = lambda_coord * (
        resp * ((p[..., 2] - torch.sqrt(t_w)) ** 2 + (p[..., 3] - torch.sqrt(t_h)) ** 2)
    ).sum(dim=(1, 2, 3))
    obj = (resp * (p[..., 4] - conf_target) ** 2).sum(dim=(1, 2, 3))
    noobj = lambda_noobj * ((1 - resp) * p[..., 4] ** 2).sum(dim=(1, 2, 3))
    onehot = torch.nn.functional.one_hot(tcls, num_classes).to(pred.dtype)
    cls = (has_object.to(pred.dtype) * ((scores - onehot) ** 2).sum(-1)).sum(dim=(1, 2))
    total = coord_xy + coord_wh + obj + noobj + cls
    return {"total": total, "coord_xy": coord_xy, "coord_wh": coord_wh, "obj": obj, "noobj": noobj, "cls": cls}


# ---------------------------------------------------------------------------------------------------- SSD


class _TinyBackbone(nn.Module):
    out_channels = [8]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never run
        return x


_TINY_SSD: list[nn.Module] = []


def tiny_ssd() -> nn.Module:
    """A real ``torchvision.models.detection.SSD`` (one feature map, built once); only its loss machinery is used."""
    if not _TINY_SSD:
        _TINY_SSD.append(SSD(_TinyBackbone(), DefaultBoxGenerator([[2]]), (32, 32), num_classes=2))
    return _TINY_SSD[0]


def _targets(gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_valid: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Padded ground truth → torchvision's per-image target dicts (labels 1-based: class c → c + 1)."""
    return [
        {"boxes": boxes[valid.bool()], "labels": classes[valid.bool()].long() + 1}
        for boxes, classes, valid in zip(gt_boxes, gt_classes, gt_valid)
    ]


def torchvision_ssd_match(anchors: torch.Tensor, gt_boxes: torch.Tensor, gt_valid: torch.Tensor) -> torch.Tensor:
    """torchvision's matching (``box_iou`` + ``SSDMatcher``, as in ``SSD.forward``), as padded indices ``[N, A]``."""
    ssd = tiny_ssd()
    out = []
    for boxes, valid in zip(gt_boxes, gt_valid):
        valid = valid.bool()
        if not valid.any():
            out.append(torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device))
            continue
        compact = ssd.proposal_matcher(box_iou(boxes[valid], anchors))  # indices into the valid boxes
        padded_index = torch.nonzero(valid)[:, 0]
        out.append(torch.where(compact >= 0, padded_index[compact.clamp(min=0)], compact))
    return torch.stack(out)


def ssd_compute_loss_torch(
    cls_logits: torch.Tensor,
    box_regression: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_valid: torch.Tensor,
    matched_idxs: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """torchvision ``SSD.compute_loss`` on padded inputs; ``matched_idxs [N, A]`` index the padded ground truth."""
    ssd = tiny_ssd()
    compact_matches = []
    for matches, valid in zip(matched_idxs.long(), gt_valid):
        remap = torch.cumsum(valid.long(), 0) - 1  # padded index → index among the valid boxes
        compact_matches.append(torch.where(matches >= 0, remap[matches.clamp(min=0)], matches))
    targets = _targets(gt_boxes, gt_classes, gt_valid)
    head = {"cls_logits": cls_logits, "bbox_regression": box_regression}
    anchors_list = [anchors.to(box_regression.dtype)] * cls_logits.shape[0]
    losses = ssd.compute_loss(targets, head, anchors_list, compact_matches)
    return {"total": losses["bbox_regression"] + losses["classification"], **losses}


def ssd_multibox_loss_torch(
    cls_logits: torch.Tensor,
    box_regression: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_valid: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """torchvision's matching followed by ``SSD.compute_loss``, the training branch of ``SSD.forward``."""
    matched = torchvision_ssd_match(anchors, gt_boxes, gt_valid)
    return ssd_compute_loss_torch(cls_logits, box_regression, anchors, gt_boxes, gt_classes, gt_valid, matched)
