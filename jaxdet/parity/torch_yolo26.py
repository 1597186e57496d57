"""The ultralytics side of the YOLO26 loss and decode parity cases: ``v8DetectionLoss`` with ``reg_max=1`` and
``topk2``, ``E2ELoss`` at a given epoch of its weight schedule, and ``Detect.postprocess``, called on jaxdet's
padded inputs.

No network is built: the losses read only ``model.args`` (the gains and ``epochs``), ``model.model[-1]`` (the
head's ``stride``, ``nc`` and ``reg_max``) and the device of ``model.parameters()``, so :func:`stub_model` gives
them exactly that. ``Detect.postprocess`` runs on a bare ``Detect(nc, reg_max=1, end2end=True)`` with no input
channels. As in :mod:`jaxdet.parity.torch_yolov8`, float64 runs set torch's default dtype to the inputs' dtype
for the call (the losses allocate their result with ``torch.zeros(3)``).

This module imports torch and ultralytics at the top: import it lazily (the parity cases do), with
``YOLO_OFFLINE=1``.
"""

from __future__ import annotations

import types

import torch
from ultralytics.nn.modules.head import Detect
from ultralytics.utils.loss import E2ELoss, v8DetectionLoss
from ultralytics.utils.tal import dist2bbox, make_anchors

from jaxdet.parity.torch_yolov8 import GAINS, STRIDES, default_dtype, ultralytics_batch


class _Stub(torch.nn.Module):
    """What ``v8DetectionLoss``/``E2ELoss`` read of a ``DetectionModel``: ``args``, ``model[-1]`` and a parameter."""

    def __init__(self, num_classes: int, reg_max: int, epochs: int):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.args = types.SimpleNamespace(**GAINS, epochs=epochs)
        self.model = [types.SimpleNamespace(stride=torch.tensor(STRIDES, dtype=torch.float32), nc=num_classes,
                                            reg_max=reg_max)]


def stub_model(num_classes: int, reg_max: int = 1, epochs: int = 100) -> torch.nn.Module:
    """A stand-in for ``DetectionModel`` as the losses use it (gains of ``default.yaml``, ``epochs``)."""
    return _Stub(num_classes, reg_max, epochs)


def _preds(outputs, reg_max: int, image_size: int) -> dict:
    b = outputs.shape[0]
    return {
        "boxes": outputs[..., : 4 * reg_max].permute(0, 2, 1),
        "scores": outputs[..., 4 * reg_max :].permute(0, 2, 1),
        "feats": [torch.zeros(b, 1, image_size // s, image_size // s, dtype=outputs.dtype) for s in STRIDES],
    }


def _terms(loss, reg_max: int) -> dict:
    return {"total": loss.sum(), "box": loss[0], "cls": loss[1], "dfl" if reg_max > 1 else "l1": loss[2]}


def detection_loss_torch(outputs, gt_labels, gt_boxes, valid, *, image_size: int, reg_max: int = 1, topk: int = 10,
                         topk2: int | None = None) -> dict:
    """``v8DetectionLoss(model, tal_topk=topk, tal_topk2=topk2).get_assigned_targets_and_loss`` on raw outputs
    ``[B, A, 4·reg_max + C]`` → the gain-scaled terms ``{"total", "box", "cls", "l1" (or "dfl")}``, not multiplied
    by the batch size."""
    criterion = v8DetectionLoss(stub_model(outputs.shape[-1] - 4 * reg_max, reg_max), tal_topk=topk, tal_topk2=topk2)
    with default_dtype(outputs.dtype):
        _, loss, _ = criterion.get_assigned_targets_and_loss(
            _preds(outputs, reg_max, image_size), ultralytics_batch(gt_labels, gt_boxes, valid, image_size)
        )
    return _terms(loss, reg_max)


def e2e_loss_torch(one2many, one2one, gt_labels, gt_boxes, valid, *, image_size: int, epoch: int, epochs: int,
                   reg_max: int = 1) -> dict:
    """``E2ELoss`` after ``epoch`` calls of ``update()`` (the trainer's once per finished epoch) on raw outputs of
    both branches → ``{"total", "box", "cls", "l1", "one2many": {...}, "one2one": {...}}``: its loss vector and
    sum divided by the batch size, and each branch's gain-scaled terms (not multiplied by the batch size)."""
    criterion = E2ELoss(stub_model(one2many.shape[-1] - 4 * reg_max, reg_max, epochs))
    for _ in range(epoch):
        criterion.update()
    batch = ultralytics_batch(gt_labels, gt_boxes, valid, image_size)
    preds = {"one2many": _preds(one2many, reg_max, image_size), "one2one": _preds(one2one, reg_max, image_size)}
    b = one2many.shape[0]
    with default_dtype(one2many.dtype):
        loss, _ = criterion(preds, batch)
        branches = {
            name: _terms(branch.get_assigned_targets_and_loss(preds[name], batch)[1], reg_max)
            for name, branch in (("one2many", criterion.one2many), ("one2one", criterion.one2one))
        }
    return {**{k: v / b for k, v in _terms(loss, reg_max).items()}, **branches}


def e2e_weights_torch(epoch: int, epochs: int) -> tuple[float, float]:
    """``(o2m, o2o)`` of ``E2ELoss`` after ``epoch`` calls of ``update()``."""
    criterion = E2ELoss(stub_model(1, 1, epochs))
    for _ in range(epoch):
        criterion.update()
    return criterion.o2m, criterion.o2o


def postprocess_torch(outputs, *, image_size: int, max_det: int, reg_max: int = 1, agnostic: bool = False) -> dict:
    """``Detect.postprocess`` of the one-to-one outputs ``[B, A, 4·reg_max + C]`` as ``Detect.forward`` runs it
    in eval mode (decode to xyxy pixels, sigmoid, then the top ``max_det``) → ``{"boxes", "scores", "labels",
    "indices"}`` (the anchor indices from ``get_topk_index``)."""
    num_classes = outputs.shape[-1] - 4 * reg_max
    head = Detect(nc=num_classes, reg_max=reg_max, end2end=True, ch=(16, 16, 16)).to(outputs.dtype)
    head.max_det, head.agnostic_nms = max_det, agnostic
    preds = _preds(outputs, reg_max, image_size)
    anchors, strides = make_anchors(preds["feats"], torch.tensor(STRIDES, dtype=outputs.dtype), 0.5)
    boxes = head.dfl(preds["boxes"]) if reg_max > 1 else preds["boxes"]
    dbox = dist2bbox(boxes, anchors.transpose(0, 1).unsqueeze(0), xywh=False, dim=1) * strides.transpose(0, 1)
    y = torch.cat((dbox, preds["scores"].sigmoid()), 1).permute(0, 2, 1)  # [B, A, 4 + C], as Detect.forward
    out = head.postprocess(y)
    _, _, index = head.get_topk_index(y[..., 4:], max_det)
    return {"boxes": out[..., :4], "scores": out[..., 4], "labels": out[..., 5].long(), "indices": index}
