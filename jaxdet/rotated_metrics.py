"""Host-side metrics of oriented boxes, as ultralytics' ``OBBValidator`` computes them.

* :func:`obb_metrics` — mAP@0.5, mAP@0.5:0.95, per-class AP, precision and recall and the precision–recall
  curve of rotated detections (:func:`jaxdet.nms.select_rotated_detections`) against a batch's ``rboxes``;
* :func:`match_predictions` — one image's detections matched to its ground truth at the ten IoU thresholds
  (``DetectionValidator.match_predictions``);
* :func:`ap_per_class` — AP, precision, recall and F1 per class from the matches of every image
  (``utils/metrics.py::ap_per_class``).

The steps are ultralytics 8.4.190's (``models/yolo/obb/val.py``, ``engine/validator.py``, ``utils/metrics.py``):

1. per image, the IoU of every (ground truth, detection) pair is ProbIoU
   (:func:`jaxdet.rboxes.probiou_pairwise`, ``batch_probiou``), in pixels of the network input (the normalised
   ``(cx, cy, w, h)`` times ``(W, H, W, H)``, as ``OBBValidator._prepare_batch``), and 0 across classes;
2. the detections, by decreasing score, each take the unclaimed ground truth of highest IoU, at each threshold
   :math:`t \\in \\{0.5, 0.55, \\dots, 0.95\\}` separately; a detection is a true positive at ``t`` when that
   IoU is :math:`\\ge t`;
3. over all images, per class with ground truth: the cumulative precision and recall by decreasing score, AP the
   101-point integral (trapezoids, COCO's recall grid) of the precision envelope,

   .. math:: \\mathrm{AP} = \\int_0^1 \\max_{r' \\ge r} p(r')\\, dr;

   mAP@0.5 and mAP@0.5:0.95 the means over those classes (a class with ground truth and no detection has AP
   0; classes without ground truth do not count). Precision and recall are read at the confidence of the
   highest smoothed mean F1.

Unlike :func:`jaxdet.metrics.coco_metrics` (COCO's evaluation in original pixels) everything stays in the
network input's pixels, and an evaluation without ground truth has mAP 0 (ultralytics' convention), not -1.
Everything here is numpy on the host except the ProbIoU, computed by JAX in the arrays' precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxdet import _checks
from jaxdet.metrics import RECALL_THRESHOLDS
from jaxdet.nms import Detections
from jaxdet.rboxes import probiou_pairwise

__all__ = ["IOU_THRESHOLDS", "CURVE_POINTS", "APResult", "match_predictions", "ap_per_class", "obb_metrics"]

#: The ten IoU thresholds 0.5:0.05:0.95, float32 as ultralytics' ``validator.iouv``.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).astype(np.float32)
#: The x axis of ultralytics' curves (confidence for P, R, F1; recall for the PR curve).
CURVE_POINTS = np.linspace(0.0, 1.0, 1000)


def match_predictions(
    pred_classes: np.ndarray, gt_classes: np.ndarray, iou: np.ndarray, *, iou_thresholds: np.ndarray = IOU_THRESHOLDS
) -> np.ndarray:
    """Which detections of one image are true positives at each IoU threshold (greedy by score).

    Detection ``j`` (in the given order, which must be decreasing score) takes, at each threshold separately,
    the ground truth of highest IoU not yet claimed at that threshold (the first on ties); it is correct there
    when that IoU is :math:`\\ge t`, and only then claims it. IoUs across classes count as 0.

    Args:
      pred_classes: ``[P]`` detection classes, by decreasing score.
      gt_classes: ``[G]`` ground-truth classes.
      iou: ``[G, P]`` IoU of every (ground truth, detection) pair.
      iou_thresholds: ``[T]`` (default the ten of :data:`IOU_THRESHOLDS`).

    Returns:
      bool ``[P, T]``.
    """
    pred_classes, gt_classes = np.asarray(pred_classes), np.asarray(gt_classes)
    _checks.layout(pred_classes, "pred_classes", shape="[P]", ndim=1)
    _checks.layout(gt_classes, "gt_classes", shape="[G]", ndim=1)
    iou = np.asarray(iou)
    _checks.shape_is(iou, (gt_classes.shape[0], pred_classes.shape[0]), "iou", "[G, P]")
    thresholds = np.asarray(iou_thresholds)
    _checks.layout(thresholds, "iou_thresholds", shape="[T] with T >= 1", ndim=1)
    if thresholds.size == 0:
        raise _checks.fail_shape("iou_thresholds", "[T] with T >= 1", thresholds)
    t = len(thresholds)
    correct = np.zeros((pred_classes.shape[0], t), bool)
    iou = iou * (gt_classes[:, None] == pred_classes[None, :])  # 0 across classes
    claimed = np.zeros((iou.shape[0], t), bool)  # [G, T]
    for j in np.flatnonzero((iou >= thresholds.min()).any(0)):
        available = np.where(claimed, 0, iou[:, j, None])  # [G, T]
        best = available.argmax(0)  # [T]
        correct[j] = available[best, range(t)] >= thresholds
        claimed[best, range(t)] |= correct[j]
    return correct


def _envelope_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AP of one precision–recall curve (ultralytics ``compute_ap``): ``(ap, envelope, recall with sentinels)``."""
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    return float(np.trapezoid(np.interp(RECALL_THRESHOLDS, mrec, mpre), RECALL_THRESHOLDS)), mpre, mrec


def _smooth(y: np.ndarray, fraction: float) -> np.ndarray:
    """Box filter over a ``fraction`` of the length (odd width, ends padded with the end values)."""
    width = round(len(y) * fraction * 2) // 2 + 1
    pad = np.ones(width // 2)
    return np.convolve(np.concatenate((pad * y[0], y, pad * y[-1])), np.ones(width) / width, mode="valid")


class APResult(NamedTuple):
    """:func:`ap_per_class`'s result; ``K`` classes with ground truth (``classes``), in increasing order.

    Attributes:
      tp, fp: ``[K]`` true / false positives at the confidence of the best mean F1 (rounded counts).
      precision, recall, f1: ``[K]`` at that confidence.
      ap: ``[K, T]`` AP at each IoU threshold.
      classes: ``[K]`` int class ids.
      p_curve, r_curve, f1_curve: ``[K, 1000]`` against the confidence :data:`CURVE_POINTS`.
      pr_curve: ``[K, 1000]`` precision envelope at IoU 0.5 against the recall :data:`CURVE_POINTS`.
      precision50: ``[K, 101]`` the same envelope at :data:`jaxdet.metrics.RECALL_THRESHOLDS`, the points whose
        trapezoidal integral is AP50.
    """

    tp: np.ndarray
    fp: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    ap: np.ndarray
    classes: np.ndarray
    p_curve: np.ndarray
    r_curve: np.ndarray
    f1_curve: np.ndarray
    pr_curve: np.ndarray
    precision50: np.ndarray


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, *,
                 eps: float = 1e-16) -> APResult:
    """AP, precision, recall and F1 per class from the matches of all images (ultralytics ``ap_per_class``).

    .. math:: p_c(k) = \\frac{TP_k}{TP_k + FP_k},\\quad r_c(k) = \\frac{TP_k}{n_c + \\epsilon},\\quad
       \\mathrm{AP}_c = \\int_0^1 \\max_{r' \\ge r} p_c(r')\\, dr \\ \\text{(101 points)}

    over the detections of class ``c`` sorted by decreasing confidence, ``n_c`` its ground-truth count. Classes
    with ground truth and no detection get AP 0 and zero curves; detections of classes without ground truth are
    ignored.

    Args:
      tp: ``[P, T]`` bool, :func:`match_predictions` of every image, concatenated.
      conf: ``[P]`` scores.
      pred_cls: ``[P]`` detection classes.
      target_cls: ``[G]`` ground-truth classes of every image.
      eps: ultralytics' 1e-16 in the recall, F1 and false-positive denominators.

    Returns:
      :class:`APResult`.
    """
    tp = np.asarray(tp)
    _checks.layout(tp, "tp", shape="[P, T]", ndim=2)
    conf, pred_cls, target_cls = np.asarray(conf), np.asarray(pred_cls), np.asarray(target_cls)
    _checks.shape_is(conf, tp.shape[:1], "conf", "[P], P = tp.shape[0]")
    _checks.shape_is(pred_cls, tp.shape[:1], "pred_cls", "[P], P = tp.shape[0]")
    _checks.layout(target_cls, "target_cls", shape="[G]", ndim=1)
    _checks.number(eps, "eps", low=0.0)
    order = np.argsort(-conf)  # numpy's default sort, as ultralytics
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, counts = np.unique(target_cls, return_counts=True)
    k, x = classes.shape[0], CURVE_POINTS
    ap = np.zeros((k, tp.shape[1]))
    p_curve, r_curve, pr_curve = np.zeros((k, len(x))), np.zeros((k, len(x))), np.zeros((k, len(x)))
    precision50 = np.zeros((k, len(RECALL_THRESHOLDS)))
    for ci, c in enumerate(classes):
        mine = pred_cls == c
        if not mine.any():
            continue
        fpc = (1 - tp[mine]).cumsum(0)
        tpc = tp[mine].cumsum(0)
        recall = tpc / (counts[ci] + eps)  # [p, T]
        precision = tpc / (tpc + fpc)
        r_curve[ci] = np.interp(-x, -conf[mine], recall[:, 0], left=0)  # the confidences decrease
        p_curve[ci] = np.interp(-x, -conf[mine], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j], mpre, mrec = _envelope_ap(recall[:, j], precision[:, j])
            if j == 0:
                pr_curve[ci] = np.interp(x, mrec, mpre)
                precision50[ci] = np.interp(RECALL_THRESHOLDS, mrec, mpre)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    best = _smooth(f1_curve.mean(0), 0.1).argmax() if k else 0
    p, r, f1 = p_curve[:, best], r_curve[:, best], f1_curve[:, best]
    tp_count = (r * counts).round()
    fp_count = (tp_count / (p + eps) - tp_count).round()
    return APResult(tp_count, fp_count, p, r, f1, ap, classes.astype(int), p_curve, r_curve, f1_curve, pr_curve,
                    precision50)


def _parts(x, argname: str) -> list:
    parts = [x] if isinstance(x, (Detections, Mapping)) else list(x)
    if not parts:
        raise _checks.fail_value(argname, "one batch or a non-empty sequence of batches", x)
    return parts


def _image_pixels(image_size) -> np.ndarray:
    """``(W, H, W, H, 1)``: the scale of normalised xywhr to network-input pixels."""
    if isinstance(image_size, (int, np.integer)):
        h = w = image_size
    else:
        h, w = image_size
    _checks.positive_int(h, "image_size")
    _checks.positive_int(w, "image_size")
    return np.array([w, h, w, h, 1.0])


def obb_metrics(
    detections: Detections | Sequence[Detections],
    gt: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    *,
    image_size: int | tuple[int, int],
    num_classes: int | None = None,
) -> dict[str, Any]:
    """ultralytics' OBB validation metrics of rotated detections against padded ground truth (module doc).

    Each image's valid detections are taken by decreasing score (stable), scaled with the ground truth to the
    network input's pixels and matched by ProbIoU (:func:`match_predictions`); :func:`ap_per_class` scores all
    images together.

    Args:
      detections: :class:`~jaxdet.nms.Detections` of numpy arrays (``boxes [N, D, 5]`` normalised xywhr) or a
        sequence of them (concatenated).
      gt: a batch dict (``rboxes [N, M, 5]`` normalised xywhr, ``classes [N, M]``, ``valid [N, M]``) or a
        sequence of them, aligned with ``detections``.
      image_size: height and width (or one int) in pixels of the network input the boxes are normalised to.
      num_classes: number of classes (default: 1 + the largest class of a valid box, ground truth or detection).

    Returns:
      dict with the scalars "mAP50", "mAP" (0.5:0.95), "mAP75", "precision", "recall" (means over the classes with
      ground truth, at the best mean F1), "fitness" (ultralytics' model fitness, mAP), "num_images", "num_gt",
      "num_detections"; "per_class" (one row per class: "class", "images" holding it, "instances", "AP50", "AP",
      "precision", "recall"; -1 for a class without ground truth), "per_class_AP" (AP50-95 per class, -1
      without ground truth), "precision50" (float64 ``[num_classes, 101]`` precision envelope at IoU 0.5 over
      :data:`jaxdet.metrics.RECALL_THRESHOLDS`, -1 rows without ground truth; the arrays ``train.eval_report``
      plots) and "ap_per_class" (:func:`ap_per_class`'s :class:`APResult` as a dict, with ultralytics' 1000-point
      curves; a dict, so that the result's scalars are the entries of ``np.ndim`` 0 that convert to float).
    """
    det_parts, gt_parts = _parts(detections, "detections"), _parts(gt, "gt")
    for p in gt_parts:
        _checks.keys_present(p, ("rboxes", "classes", "valid"), "gt")
    scale = _image_pixels(image_size)
    d = {f: np.concatenate([np.asarray(getattr(p, f)) for p in det_parts]) for f in ("boxes", "scores", "classes",
                                                                                        "valid")}
    g = {k: np.concatenate([np.asarray(p[k]) for p in gt_parts]) for k in ("rboxes", "classes", "valid")}
    _checks.layout(d["boxes"], "detections.boxes", shape="[N, D, 5] xywhr", ndim=3, last=5)
    _checks.layout(g["rboxes"], "gt['rboxes']", shape="[N, M, 5] xywhr", ndim=3, last=5)
    n = d["boxes"].shape[0]
    if g["rboxes"].shape[0] != n:
        raise _checks.fail_shape("gt['rboxes']", f"[N, M, 5] with N = {n}, the images of detections", g["rboxes"])
    dval, gval = d["valid"].astype(bool), g["valid"].astype(bool)
    dcls, gcls = d["classes"].astype(np.int64), g["classes"].astype(np.int64)
    if num_classes is None:
        num_classes = int(np.concatenate([gcls[gval], dcls[dval], [0]]).max()) + 1
    _checks.positive_int(num_classes, "num_classes")
    tps, confs, pcls, tcls, timg = [], [], [], [], []
    for i in range(n):
        di = np.flatnonzero(dval[i])
        di = di[np.argsort(-d["scores"][i, di], kind="stable")]
        gi = np.flatnonzero(gval[i])
        correct = np.zeros((len(di), len(IOU_THRESHOLDS)), bool)
        if len(di) and len(gi):
            iou = probiou_pairwise(jnp.asarray(g["rboxes"][i, gi] * scale), jnp.asarray(d["boxes"][i, di] * scale))
            correct = match_predictions(dcls[i, di], gcls[i, gi], np.asarray(iou))
        tps.append(correct)
        confs.append(d["scores"][i, di])
        pcls.append(dcls[i, di])
        tcls.append(gcls[i, gi])
        timg.append(np.unique(gcls[i, gi]))
    res = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pcls), np.concatenate(tcls))
    instances = np.bincount(np.concatenate(tcls), minlength=num_classes)
    images = np.bincount(np.concatenate(timg), minlength=num_classes)
    row = {int(c): ci for ci, c in enumerate(res.classes)}
    per_class, precision50 = [], -np.ones((num_classes, len(RECALL_THRESHOLDS)))
    for c in range(num_classes):
        ci = row.get(c)
        has = ci is not None
        per_class.append({
            "class": c, "images": int(images[c]), "instances": int(instances[c]),
            "AP50": float(res.ap[ci, 0]) if has else -1.0, "AP": float(res.ap[ci].mean()) if has else -1.0,
            "precision": float(res.precision[ci]) if has else -1.0, "recall": float(res.recall[ci]) if has else -1.0,
        })
        if has:
            precision50[c] = res.precision50[ci]
    have = len(res.classes) > 0
    m_ap = float(res.ap.mean()) if have else 0.0
    return {
        "mAP50": float(res.ap[:, 0].mean()) if have else 0.0,
        "mAP": m_ap,
        "mAP75": float(res.ap[:, 5].mean()) if have and res.ap.shape[1] > 5 else 0.0,
        "precision": float(res.precision.mean()) if have else 0.0,
        "recall": float(res.recall.mean()) if have else 0.0,
        "fitness": m_ap,
        "num_images": n,
        "num_gt": int(gval.sum()),
        "num_detections": int(dval.sum()),
        "per_class": per_class,
        "per_class_AP": [r["AP"] for r in per_class],
        "precision50": precision50,
        "ap_per_class": res._asdict(),
    }
