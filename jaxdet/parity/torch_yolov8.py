"""The ultralytics side of the YOLOv8 parity cases: ``TaskAlignedAssigner`` and ``v8DetectionLoss`` called on
jaxdet's padded inputs.

``v8DetectionLoss`` needs a model: :func:`detection_model` builds ``DetectionModel("yolov8n.yaml", nc=C)`` with
random weights (nothing is downloaded; set ``YOLO_OFFLINE=1``) and gives it ``args`` with the box/cls/dfl gains.
The loss allocates its result with ``torch.zeros(3)`` in the default dtype, so float64 runs set the default
dtype to the inputs' dtype for the call (otherwise the terms would be rounded to float32).

The YOLOv8n trajectory check (:mod:`jaxdet.parity.yolov8_trajectory`) starts both sides from
:func:`ultralytics_weights`, trains :func:`train_mode_model` and feeds it :func:`torch_batch`; the YOLO train-step
benchmark (``benchmarks/yolo_train_step.py``) uses :func:`torch_batch` and the same builders for every model
(``jaxdet.parity.train_twins.ultralytics_model_weights``, ``ultralytics_train_model``).

This module imports torch and ultralytics at the top: import it lazily (the parity cases do), with ``YOLO_OFFLINE=1``.
"""

from __future__ import annotations

import contextlib
import functools
import types

import numpy as np
import torch
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.loss import v8DetectionLoss
from ultralytics.utils.tal import TaskAlignedAssigner

STRIDES = (8, 16, 32)
GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}


@functools.lru_cache(maxsize=None)
def detection_model(num_classes: int):
    """A random-weight ``yolov8n`` ``DetectionModel`` with ``num_classes`` classes and ``args`` carrying the gains."""
    model = DetectionModel("yolov8n.yaml", nc=num_classes, verbose=False)
    model.args = types.SimpleNamespace(**GAINS)
    return model


def ultralytics_weights(num_classes: int = 80, seed: int = 0) -> dict:
    """The state dict of a seeded random-weight ``DetectionModel("yolov8n.yaml", nc=num_classes)`` (nothing is
    downloaded), as detached copies."""
    torch.manual_seed(seed)
    model = DetectionModel("yolov8n.yaml", nc=num_classes, verbose=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_mode_model(weights: dict, device, num_classes: int = 80):
    """``DetectionModel("yolov8n.yaml", nc=num_classes)`` holding ``weights``, in train mode on ``device``, with
    ``args`` carrying the loss gains (:data:`GAINS`, read by ``v8DetectionLoss``)."""
    model = DetectionModel("yolov8n.yaml", nc=num_classes, verbose=False)
    model.load_state_dict(weights, strict=True)
    model.args = types.SimpleNamespace(**GAINS)
    return model.to(device).train()


def torch_batch(batch_np: dict[str, np.ndarray], device) -> tuple:
    """``(images [B, 3, H, W], ultralytics batch dict)`` on ``device`` of a jaxdet batch (normalised xyxy boxes).

    uint8 images are scaled to [0, 1] as ultralytics' preprocess (and jaxdet's model) scale the loader's."""
    size = batch_np["image"].shape[1]
    gt = ultralytics_batch(torch.from_numpy(batch_np["classes"]), torch.from_numpy(batch_np["boxes"] * size),
                           torch.from_numpy(batch_np["valid"]), size)
    images = torch.from_numpy(np.ascontiguousarray(batch_np["image"].transpose(0, 3, 1, 2)))
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    return images.to(device), {k: v.to(device) for k, v in gt.items()}


@contextlib.contextmanager
def default_dtype(dtype):
    """Sets torch's default dtype to ``dtype`` inside the block."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def tal_torch(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, valid, *, topk=10, topk2=None):
    """ultralytics' ``TaskAlignedAssigner`` as v8DetectionLoss builds it (``topk2``: YOLO26's one-to-one
    branch) → the jaxdet result's fields as a dict."""
    num_classes = pred_scores.shape[-1]
    assigner = TaskAlignedAssigner(topk=topk, num_classes=num_classes, alpha=0.5, beta=6.0, stride=list(STRIDES),
                                   eps=1e-9, topk2=topk2)
    dtype = pred_scores.dtype
    labels, boxes, scores, fg_mask, gt_index = assigner(
        pred_scores, pred_boxes, anchor_points, gt_labels[..., None].to(dtype), gt_boxes, valid[..., None].to(dtype)
    )
    return {"labels": labels.int(), "boxes": boxes, "scores": scores, "fg_mask": fg_mask, "gt_index": gt_index.int()}


def ultralytics_batch(gt_labels, gt_boxes, valid, image_size: int) -> dict:
    """ultralytics' training batch (``batch_idx``, ``cls``, ``bboxes`` as normalised cxcywh) of the valid GTs."""
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
