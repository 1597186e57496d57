"""Parity cases of the detection losses: YOLOv1 (both IoU-target paths) and SSD multibox.

YOLOv1 is compared with the independent PyTorch reference :mod:`jaxdet.parity.torch_detection`; SSD with
torchvision's real ``SSD.compute_loss``, once with identical precomputed matches (from torchvision's
``SSDMatcher``) and once end to end (jaxdet's jit matching vs torchvision's matcher).
"""

from __future__ import annotations

import jax
import numpy as np

from jaxdet.losses.ssd import ssd_multibox_loss, ssd_multibox_loss_from_matches
from jaxdet.losses.yolo import yolov1_loss
from jaxdet.parity.core import ParityCase

YOLO_N, YOLO_S, YOLO_B, YOLO_C, YOLO_M = 4, 7, 2, 5, 8
SSD_N, SSD_C, SSD_M = 3, 4, 6


def yolov1_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``(pred [N, S, S, B·5+C], gt_boxes [N, M, 4], gt_classes [N, M] int32, gt_valid [N, M] bool)``.

    Predictions are near the targets' scale (offsets in [0, 1], √w in [0.1, 0.8]) so IoUs are non-trivial; each
    image has padding and two boxes sharing a cell (the first-wins rule is exercised).
    """
    n, s, b, c, m = YOLO_N, YOLO_S, YOLO_B, YOLO_C, YOLO_M
    pred = rng.normal(0.0, 0.5, (n, s, s, b * 5 + c))
    boxes = pred[..., : b * 5].reshape(n, s, s, b, 5)
    boxes[..., 0:2] = rng.uniform(0, 1, (n, s, s, b, 2))
    boxes[..., 2:4] = rng.uniform(0.1, 0.8, (n, s, s, b, 2))
    pred[..., : b * 5] = boxes.reshape(n, s, s, b * 5)
    centre = rng.uniform(0.02, 0.98, (n, m, 2))
    size = rng.uniform(0.05, 0.6, (n, m, 2))
    centre[:, 1] = centre[:, 0] + 0.001  # same cell as box 0 (with overwhelming probability), different box
    gt_boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    gt_classes = rng.integers(0, c, (n, m)).astype(np.int32)
    gt_valid = np.ones((n, m), bool)
    gt_valid[:, m - 2 :] = False
    gt_valid[1, 3] = False  # padding in the middle
    gt_valid[2] = False  # an image with no objects
    return pred, gt_boxes, gt_classes, gt_valid


def ssd_anchors(grid: int = 6, sizes: tuple[float, ...] = (0.2, 0.35)) -> np.ndarray:
    """Small SSD-like prior set ``[grid² · 3 · len(sizes), 4]`` xyxy in ``[0, 1]`` (aspect ratios 1, 2, 1/2)."""
    centres = (np.stack(np.meshgrid(np.arange(grid), np.arange(grid), indexing="xy"), -1).reshape(-1, 2) + 0.5) / grid
    anchors = []
    for size in sizes:
        for ratio in (1.0, 2.0, 0.5):
            wh = np.array([size * np.sqrt(ratio), size / np.sqrt(ratio)])
            anchors.append(np.concatenate([centres - wh / 2, centres + wh / 2], -1))
    return np.concatenate(anchors, 0)


def ssd_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``(cls_logits [N, A, C+1], box_regression [N, A, 4], anchors [A, 4], gt_boxes [N, M, 4], gt_classes
    [N, M] int32, gt_valid [N, M] bool)`` with padding (one image fully padded)."""
    anchors = ssd_anchors()
    a = anchors.shape[0]
    cls_logits = rng.normal(0.0, 2.0, (SSD_N, a, SSD_C + 1))
    box_regression = rng.normal(0.0, 1.0, (SSD_N, a, 4))
    centre = rng.uniform(0.1, 0.9, (SSD_N, SSD_M, 2))
    size = rng.uniform(0.1, 0.5, (SSD_N, SSD_M, 2))
    gt_boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    gt_classes = rng.integers(0, SSD_C, (SSD_N, SSD_M)).astype(np.int32)
    gt_valid = np.ones((SSD_N, SSD_M), bool)
    gt_valid[0, 2] = False
    gt_valid[0, 4:] = False
    gt_valid[SSD_N - 1] = False
    return cls_logits, box_regression, anchors, gt_boxes, gt_classes, gt_valid


def ssd_inputs_with_matches(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """:func:`ssd_inputs` plus torchvision's own matches ``[N, A]`` int32 (indices into the padded ground truth)."""
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    from jaxdet.parity.torch_detection import torchvision_ssd_match  # noqa: PLC0415 - torch side: imported only when a comparison runs

    inputs = ssd_inputs(rng)
    _, _, anchors, gt_boxes, _, gt_valid = inputs
    matched = torchvision_ssd_match(torch.from_numpy(anchors), torch.from_numpy(gt_boxes), torch.from_numpy(gt_valid))
    return (*inputs, matched.numpy().astype(np.int32))


def _yolo_jax(iou_target: str):
    @jax.jit
    def fn(pred, gt_boxes, gt_classes, gt_valid):
        out = yolov1_loss(pred, gt_boxes, gt_classes, gt_valid, num_boxes=YOLO_B, num_classes=YOLO_C,
                          iou_target=iou_target)
        return {"total": out.total, **out.terms}

    return fn


def _yolo_torch(iou_target: str):
    def fn(pred, gt_boxes, gt_classes, gt_valid):
        from jaxdet.parity.torch_detection import yolov1_loss_torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

        return yolov1_loss_torch(pred, gt_boxes, gt_classes, gt_valid, num_boxes=YOLO_B, num_classes=YOLO_C,
                                 iou_target=iou_target)

    return fn


@jax.jit
def _ssd_matched_jax(cls_logits, box_regression, anchors, gt_boxes, gt_classes, gt_valid, matched_idxs):
    out = ssd_multibox_loss_from_matches(cls_logits, box_regression, anchors, gt_boxes, gt_classes, matched_idxs)
    return {"total": out.total, **out.terms}


def _ssd_matched_torch(*tensors):
    from jaxdet.parity.torch_detection import ssd_compute_loss_torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    return ssd_compute_loss_torch(*tensors)


@jax.jit
def _ssd_jax(cls_logits, box_regression, anchors, gt_boxes, gt_classes, gt_valid):
    out = ssd_multibox_loss(cls_logits, box_regression, anchors, gt_boxes, gt_classes, gt_valid)
    return {"total": out.total, **out.terms}


def _ssd_torch(*tensors):
    from jaxdet.parity.torch_detection import ssd_multibox_loss_torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    return ssd_multibox_loss_torch(*tensors)


def cases() -> list[ParityCase]:
    return [
        ParityCase(
            name='yolov1_loss (iou_target="stop")',
            reference="jaxdet.parity.torch_detection.yolov1_loss_torch",
            jax_fn=_yolo_jax("stop"),
            torch_fn=_yolo_torch("stop"),
            make_inputs=yolov1_inputs,
        ),
        ParityCase(
            name='yolov1_loss (iou_target="through")',
            reference="jaxdet.parity.torch_detection.yolov1_loss_torch",
            jax_fn=_yolo_jax("through"),
            torch_fn=_yolo_torch("through"),
            make_inputs=yolov1_inputs,
        ),
        ParityCase(
            name="ssd_multibox_loss_from_matches",
            reference="torchvision SSD.compute_loss (same matches)",
            jax_fn=_ssd_matched_jax,
            torch_fn=_ssd_matched_torch,
            make_inputs=ssd_inputs_with_matches,
            wrt=(0, 1),
        ),
        ParityCase(
            name="ssd_multibox_loss",
            reference="torchvision SSDMatcher + SSD.compute_loss",
            jax_fn=_ssd_jax,
            torch_fn=_ssd_torch,
            make_inputs=ssd_inputs,
            wrt=(0, 1),
        ),
    ]
