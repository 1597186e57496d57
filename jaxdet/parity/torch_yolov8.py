"""The ultralytics side of the YOLOv8 parity cases: ``TaskAlignedAssigner`` and ``v8DetectionLoss`` called on
jaxdet's padded inputs (torch and ultralytics imported lazily).

``v8DetectionLoss`` needs a model: :func:`detection_model` builds ``DetectionModel("yolov8n.yaml", nc=C)`` with
random weights (nothing is downloaded; set ``YOLO_OFFLINE=1``) and gives it ``args`` with the box/cls/dfl gains.
The loss allocates its result with ``torch.zeros(3)`` in the default dtype, so float64 runs set the default
dtype to the inputs' dtype for the call (otherwise the terms would be rounded to float32).
"""

from __future__ import annotations

import contextlib
import functools
import types

import numpy as np

STRIDES = (8, 16, 32)
GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}


@functools.lru_cache(maxsize=None)
def detection_model(num_classes: int):
    """A random-weight ``yolov8n`` ``DetectionModel`` with ``num_classes`` classes and ``args`` carrying the gains."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=num_classes, verbose=False)
    model.args = types.SimpleNamespace(**GAINS)
    return model


@contextlib.contextmanager
def default_dtype(dtype):
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def tal_torch(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid, *, topk=10):
    """ultralytics' ``TaskAlignedAssigner`` as v8DetectionLoss builds it → the jaxdet result's fields as a dict."""
    from ultralytics.utils.tal import TaskAlignedAssigner

    num_classes = pred_scores.shape[-1]
    assigner = TaskAlignedAssigner(topk=topk, num_classes=num_classes, alpha=0.5, beta=6.0, stride=list(STRIDES),
                                   eps=1e-9)
    dtype = pred_scores.dtype
    labels, boxes, scores, fg_mask, gt_index = assigner(
        pred_scores, pred_boxes, anchor_points, gt_labels[..., None].to(dtype), gt_boxes, valid[..., None].to(dtype)
    )
    return {"labels": labels.int(), "boxes": boxes, "scores": scores, "fg_mask": fg_mask, "gt_index": gt_index.int()}


def ultralytics_batch(gt_labels, gt_boxes, valid, image_size: int) -> dict:
    """ultralytics' training batch (``batch_idx``, ``cls``, ``bboxes`` as normalised cxcywh) of the valid GTs."""
    import torch

    image, slot = np.nonzero(np.asarray(valid))
    boxes = gt_boxes[torch.from_numpy(image), torch.from_numpy(slot)]  # [N, 4] xyxy pixels
    xywhn = torch.stack(
        [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, boxes[:, 2] - boxes[:, 0],
         boxes[:, 3] - boxes[:, 1]], dim=-1
    ) / image_size
    labels = gt_labels[torch.from_numpy(image), torch.from_numpy(slot)]
    return {"batch_idx": torch.from_numpy(image).to(boxes.dtype), "cls": labels.to(boxes.dtype), "bboxes": xywhn}


def v8_detection_loss_torch(outputs, gt_labels, gt_boxes, valid, *, image_size: int, reg_max: int = 16):
    """``v8DetectionLoss.get_assigned_targets_and_loss`` on raw outputs ``[B, A, 4·reg_max + C]`` → the gain-scaled
    terms ``{"total", "box", "cls", "dfl"}`` (not multiplied by the batch size)."""
    import torch
    from ultralytics.utils.loss import v8DetectionLoss

    b, _, channels = outputs.shape
    num_classes = channels - 4 * reg_max
    criterion = v8DetectionLoss(detection_model(num_classes))
    preds = {
        "boxes": outputs[..., : 4 * reg_max].permute(0, 2, 1),
        "scores": outputs[..., 4 * reg_max :].permute(0, 2, 1),
        "feats": [torch.zeros(b, 1, image_size // s, image_size // s, dtype=outputs.dtype) for s in STRIDES],
    }
    with default_dtype(outputs.dtype):
        _, loss, _ = criterion.get_assigned_targets_and_loss(
            preds, ultralytics_batch(gt_labels, gt_boxes, valid, image_size)
        )
    return {"total": loss.sum(), "box": loss[0], "cls": loss[1], "dfl": loss[2]}
