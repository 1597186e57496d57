"""Host-side detection metrics: COCO mAP through faster-coco-eval, and polygon metrics.

* :func:`coco_metrics` — box mAP@[0.5:0.95] and mAP@0.5 with ``faster_coco_eval`` (the same numbers as
  pycocotools), and for polygon detections the exact convex-polygon IoU of matched pairs ("polygon_mIoU") and
  mask mAP of the polygons rasterised by the COCO mask API ("segm_mAP", "segm_mAP50").
  Boxes are evaluated in original image pixels (``orig_size`` / ``ratio_pad`` of the batch, see
  :mod:`jaxdet.data.letterbox`), with per-class rows and the IoU-0.5 precision–recall arrays.
* :func:`match_detections` — greedy COCO-style matching of one image's detections to its ground truth.

Everything here works on numpy arrays on the host; the detections come from the jittable
:func:`jaxdet.nms.select_detections`. Printable tables and drawings of the results live in ``train.tables``
and ``train.drawing``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from faster_coco_eval import COCO, COCOeval_faster
from faster_coco_eval.core import mask as mask_utils

from jaxdet import _checks
from jaxdet.data.letterbox import boxes_to_original, identity_letterbox, points_to_original
from jaxdet.nms import Detections
from jaxdet.polygons import convex_polygon_iou

__all__ = ["coco_metrics", "match_detections", "RECALL_THRESHOLDS"]

#: COCO's recall thresholds (``COCOeval.params.recThrs``): the x axis of the precision arrays.
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def _as_hw(image_size) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    h, w = image_size
    return int(h), int(w)


def _concat_detections(detections) -> Detections:
    if isinstance(detections, Detections):
        parts = [detections]
    else:
        parts = list(detections)
        if not parts:
            raise _checks.fail_value("detections", "a Detections or a non-empty sequence of Detections", detections)
    fields = {}
    for name in Detections._fields:
        vals = [getattr(p, name) for p in parts]
        if any(v is None for v in vals):
            fields[name] = None
        else:
            fields[name] = np.concatenate([np.asarray(v) for v in vals], axis=0)
    return Detections(**fields)


def _concat_batches(gt) -> dict[str, np.ndarray]:
    parts = [gt] if isinstance(gt, Mapping) else list(gt)
    if not parts:
        raise _checks.fail_value("gt", "a batch dict or a non-empty sequence of batch dicts", gt)
    for p in parts:
        _checks.keys_present(p, ("boxes", "classes", "valid"), "gt")
    out = {}
    for key in ("boxes", "classes", "valid", "polygons", "orig_size", "ratio_pad"):
        if all(key in p for p in parts):
            out[key] = np.concatenate([np.asarray(p[key]) for p in parts], axis=0)
    return out


def match_detections(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    *,
    iou_threshold: float = 0.5,
) -> list[tuple[int, int]]:
    """Greedy COCO-style matching in one image: detections in decreasing score take the best unmatched GT of
    their class with box IoU ≥ ``iou_threshold``. Returns ``[(det_index, gt_index), ...]`` (numpy inputs:
    det ``[P, 4]``, ``[P]``, ``[P]``; gt ``[G, 4]``, ``[G]``)."""
    _checks.number(iou_threshold, "iou_threshold", low=0.0, high=1.0)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return []
    d = np.asarray(det_boxes, np.float64)
    g = np.asarray(gt_boxes, np.float64)
    _checks.layout(d, "det_boxes", shape="[P, 4]", ndim=2, last=4)
    _checks.layout(g, "gt_boxes", shape="[G, 4]", ndim=2, last=4)
    d, g = d[:, None, :], g[None, :, :]
    iw = np.clip(np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0]), 0, None)
    ih = np.clip(np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1]), 0, None)
    inter = iw * ih
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    union = area(d) + area(g) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)  # [P, G]
    iou = np.where(np.asarray(det_classes)[:, None] == np.asarray(gt_classes)[None, :], iou, -1.0)
    taken = np.zeros(len(gt_boxes), bool)
    pairs = []
    for p in np.argsort(-np.asarray(det_scores), kind="stable"):
        cand = np.where(taken, -1.0, iou[p])
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            taken[j] = True
            pairs.append((int(p), j))
    return pairs




def _convex_iou(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact IoU of convex polygons ``[P, K, 2]`` × ``[P, K, 2]`` through :mod:`jaxdet.polygons`."""
    return np.asarray(convex_polygon_iou(jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32)))


def coco_metrics(
    detections: Detections | Sequence[Detections],
    gt: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    *,
    image_size: int | tuple[int, int],
    num_classes: int | None = None,
    polygon_metrics: bool | None = None,
    max_detections: int = 100,
) -> dict[str, Any]:
    """COCO box mAP (and polygon metrics) of detections against padded ground truth, in original image pixels.

    Detections and ground truth are normalised xyxy on the network's input images of ``image_size``. When the
    batches carry ``orig_size`` and ``ratio_pad`` (every jaxdet batch does, see :mod:`jaxdet.data.letterbox`),
    both are mapped back to pixels of the original images with
    :func:`~jaxdet.data.letterbox.boxes_to_original` (clipped to the image) and each COCO image gets its
    original width and height, so COCO's area ranges (small < 32², medium < 96², large) are in original pixels,
    as ultralytics' ``scale_boxes`` before its COCO evaluation; without them (or for synthetic images, whose
    mapping is the identity) boxes are scaled to ``image_size``. Images get ids 1..N in order, GT annotations ids
    1..G with ``area = w·h`` (pixels) and ``iscrowd = 0``, categories are ``class + 1`` for every class in
    ``range(num_classes)``. Evaluation is ``faster_coco_eval.COCOeval_faster`` with iouType "bbox" (identical
    statistics to pycocotools); its ``maxDets`` are ``(1, 10, max(100, max_detections))``, so every kept
    detection of a dense image counts (COCO's default 100 otherwise).

    Polygon metrics (when ``detections.polygons`` and ``gt["polygons"]`` are present, unless disabled):
      * ``polygon_mIoU`` — mean exact convex-polygon IoU (:func:`jaxdet.polygons.convex_polygon_iou`) over the
        (detection, GT) pairs matched greedily by score with box IoU ≥ 0.5 and equal class (0 if none); the
        convex IoU sorts each polygon's vertices by angle, so it is exact for convex polygons (every GT shape
        here) and approximates a non-convex prediction by its angular ordering; IoU is invariant under the
        letterbox's affine map, so it is computed on the normalised polygons;
      * ``polygon_matched`` — how many pairs that mean is over; ``polygon_recall50`` — matched / GT count;
      * ``segm_mAP`` / ``segm_mAP50`` — COCO mask mAP with both polygon sets mapped to original pixels and
        rasterised by the COCO mask API (exact up to rasterisation for any simple polygon, convex or not).

    Args:
      detections: :class:`Detections` of numpy arrays ``[N, D, ...]`` or a sequence of them (concatenated).
      gt: a batch dict (``boxes [N, M, 4]``, ``classes [N, M]``, ``valid [N, M]``, optional
        ``polygons [N, M, K, 2]``, ``orig_size [N, 2]``, ``ratio_pad [N, 4]``) or a sequence of them, aligned with
        ``detections``.
      image_size: height and width in pixels of the images the boxes are normalised to (the network input).
      num_classes: number of classes (default: 1 + the largest class seen).
      polygon_metrics: force polygon metrics on/off (default: on when both sides have polygons).
      max_detections: the most detections per image COCO counts (raised to at least 100).

    Returns:
      dict with "mAP", "mAP50", "mAP75", "AR<maxDets>" (e.g. "AR100"), "per_class_AP" (list, -1 for classes
      without GT), "per_class" (one row per class: "images" with that class, "instances", "AP50", "AP"; -1 APs
      without GT), "precision50" (float64 ``[num_classes, 101]``: interpolated precision at IoU 0.5 over
      :data:`RECALL_THRESHOLDS`, all areas, the last maxDets; -1 for classes without GT), "stats"
      (faster-coco-eval's stats dict), "num_images", "num_gt", "num_detections", and the polygon keys above.
      COCO conventions: mAP is -1 when there is no GT at all.
    """
    det, g = _concat_detections(detections), _concat_batches(gt)
    size = _as_hw(image_size)
    _checks.positive_int(max_detections, "max_detections")
    max_dets = max(100, int(max_detections))
    arrays = _host_arrays(det, g)
    if num_classes is None:
        num_classes = _classes_seen(arrays)
    polygon_metrics = _want_polygon_metrics(det, g, polygon_metrics)
    pixels = _to_original_pixels(det, g, size, arrays.n)
    anns = _coco_annotations(det, g, arrays, pixels, num_classes, polygon_metrics=polygon_metrics)
    out = _box_metrics(_cocoeval(anns, anns.gt, anns.dt, "bbox", max_dets), arrays, num_classes, max_dets)
    out.update(num_images=arrays.n, num_gt=len(anns.gt), num_detections=len(anns.dt))
    if polygon_metrics:
        out.update(_polygon_metrics(det, g, arrays, pixels, anns, max_dets))
    return out


# ------------------------------------------------------------------------------------- coco_metrics' steps


class _HostArrays(NamedTuple):
    """The detections' and ground truth's scores, classes and valid masks as numpy, N images."""

    n: int
    scores: np.ndarray  # [N, D] float64
    det_classes: np.ndarray  # [N, D] int64
    det_valid: np.ndarray  # [N, D] bool
    gt_classes: np.ndarray  # [N, M] int64
    gt_valid: np.ndarray  # [N, M] bool


def _host_arrays(det: Detections, g: Mapping[str, np.ndarray]) -> _HostArrays:
    """Scores, classes and masks as numpy; the ground truth must have the detections' number of images."""
    scores = np.asarray(det.scores, np.float64)
    dcls, dval = np.asarray(det.classes).astype(np.int64), np.asarray(det.valid).astype(bool)
    gcls, gval = g["classes"].astype(np.int64), g["valid"].astype(bool)
    n = scores.shape[0]
    if g["boxes"].shape[0] != n:
        raise _checks.fail_shape("gt['boxes']", f"[N, M, 4] with N = {n}, the images of detections", g["boxes"])
    return _HostArrays(n, scores, dcls, dval, gcls, gval)


def _classes_seen(arrays: _HostArrays) -> int:
    """1 + the largest class of a valid detection or ground-truth object (1 when there is none)."""
    seen = np.concatenate([arrays.gt_classes[arrays.gt_valid], arrays.det_classes[arrays.det_valid],
                           np.zeros(1, np.int64)])
    return int(seen.max()) + 1


def _want_polygon_metrics(det: Detections, g: Mapping[str, np.ndarray], polygon_metrics: bool | None) -> bool:
    """``polygon_metrics`` resolved: on when both sides have polygons, unless asked off; on without them fails."""
    use_poly = det.polygons is not None and "polygons" in g
    if polygon_metrics is None:
        return use_poly
    if polygon_metrics and not use_poly:
        raise _checks.fail_value(
            "polygon_metrics", "False or None without detections.polygons and gt['polygons']", polygon_metrics
        )
    return polygon_metrics


class _Pixels(NamedTuple):
    """The images' original sizes and the boxes mapped to their pixels."""

    orig_size: np.ndarray  # [N, 2] int64 (h, w)
    geometry: dict[str, Any]  # ratio_pad [N, 4] and the network input size, for points_to_original
    det_boxes: np.ndarray  # [N, D, 4] xyxy pixels
    gt_boxes: np.ndarray  # [N, M, 4] xyxy pixels


def _to_original_pixels(det: Detections, g: Mapping[str, np.ndarray], size: tuple[int, int], n: int) -> _Pixels:
    """Boxes in original image pixels through the batch's ``orig_size`` / ``ratio_pad`` (the identity
    letterbox of ``size`` when the batch has none)."""
    h, w = size
    if "orig_size" in g and "ratio_pad" in g:
        orig_size, ratio_pad = g["orig_size"].astype(np.int64), g["ratio_pad"]
        _checks.shape_is(orig_size, (n, 2), "gt['orig_size']", "[N, 2]")
        _checks.shape_is(ratio_pad, (n, 4), "gt['ratio_pad']", "[N, 4]")
    else:
        one_size, one_pad = identity_letterbox((h, w))
        orig_size, ratio_pad = np.tile(one_size, (n, 1)).astype(np.int64), np.tile(one_pad, (n, 1))
    geometry = dict(ratio_pad=ratio_pad, size=(h, w))
    boxes = boxes_to_original(det.boxes, orig_size=orig_size, **geometry)  # [N, D, 4] pixels
    gboxes = boxes_to_original(g["boxes"], orig_size=orig_size, **geometry)  # [N, M, 4] pixels
    return _Pixels(orig_size, geometry, boxes, gboxes)


class _Annotations(NamedTuple):
    """COCO's images, categories and annotation lists (the segmentation ones empty without polygon metrics)."""

    images: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    gt: list[dict[str, Any]]  # bbox annotations, ids 1..G
    dt: list[dict[str, Any]]  # bbox results
    gt_segm: list[dict[str, Any]]  # the gt annotations with their polygon in pixels
    dt_segm: list[tuple[int, dict[str, Any], list[float]]]  # (image, bbox result, polygon in pixels)


def _xywh(b) -> list[float]:
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]


def _coco_annotations(det: Detections, g: Mapping[str, np.ndarray], arrays: _HostArrays, pixels: _Pixels,
                      num_classes: int, *, polygon_metrics: bool) -> _Annotations:
    """Images 1..N with their original sizes, categories ``class + 1``, the valid GT as annotations
    (``area = w·h`` pixels, ``iscrowd = 0``) and the valid detections as results."""
    n, orig_size, geometry = arrays.n, pixels.orig_size, pixels.geometry
    gcls, gval, dcls, dval = arrays.gt_classes, arrays.gt_valid, arrays.det_classes, arrays.det_valid
    images = [{"id": i + 1, "height": int(orig_size[i, 0]), "width": int(orig_size[i, 1])} for i in range(n)]
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    gt_anns, dt_anns, dt_segm, gt_segm_anns = [], [], [], []
    if polygon_metrics:
        dpix = points_to_original(np.asarray(det.polygons).reshape(n, -1, 2), **geometry).reshape(
            np.shape(det.polygons))
        gpix = points_to_original(np.asarray(g["polygons"]).reshape(n, -1, 2), **geometry).reshape(
            np.shape(g["polygons"]))
    for i in range(n):
        for m in np.flatnonzero(gval[i]):
            bb = _xywh(pixels.gt_boxes[i, m])
            ann = {
                "id": len(gt_anns) + 1, "image_id": i + 1, "category_id": int(gcls[i, m]) + 1,
                "bbox": bb, "area": bb[2] * bb[3], "iscrowd": 0,
            }
            gt_anns.append(ann)
            if polygon_metrics:
                gt_segm_anns.append({**ann, "segmentation": [gpix[i, m].reshape(-1).tolist()]})
        for d in np.flatnonzero(dval[i]):
            ann = {"image_id": i + 1, "category_id": int(dcls[i, d]) + 1, "bbox": _xywh(pixels.det_boxes[i, d]),
                   "score": float(arrays.scores[i, d])}
            dt_anns.append(ann)
            if polygon_metrics:
                dt_segm.append((i, ann, dpix[i, d].reshape(-1).tolist()))
    return _Annotations(images, categories, gt_anns, dt_anns, gt_segm_anns, dt_segm)


def _cocoeval(anns: _Annotations, gt_list: list, dt_list: list, iou_type: str, max_dets: int) -> COCOeval_faster:
    """``COCOeval_faster`` of ``dt_list`` against ``gt_list`` on ``anns``' images and categories, evaluated,
    accumulated and summarised (silently), with ``maxDets = (1, 10, max_dets)``."""
    coco_gt = COCO({"images": anns.images, "annotations": gt_list, "categories": anns.categories})
    coco_dt = coco_gt.loadRes(dt_list)
    ev = COCOeval_faster(coco_gt, coco_dt, iouType=iou_type, print_function=lambda *a, **k: None)
    ev.params.maxDets = [1, 10, max_dets]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def _mean_valid(p: np.ndarray) -> float:
    """The mean of COCO's precision entries that are not -1 (-1 when none is)."""
    p = p[p > -1]
    return float(p.mean()) if p.size else -1.0


def _box_metrics(ev: COCOeval_faster, arrays: _HostArrays, num_classes: int, max_dets: int) -> dict[str, Any]:
    """The summary APs and AR, the per-class rows and the IoU-0.5 precision arrays of a bbox evaluation."""
    stats = ev.stats_as_dict
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    t50 = int(np.flatnonzero(np.isclose(ev.params.iouThrs, 0.5))[0])
    per_class_ap = [_mean_valid(precision[:, :, k, 0, -1]) for k in range(precision.shape[2])]
    per_class = []
    for k in range(num_classes):
        have = arrays.gt_valid & (arrays.gt_classes == k)  # [N, M]
        per_class.append({
            "class": k,
            "images": int(np.any(have, axis=1).sum()),
            "instances": int(have.sum()),
            "AP50": _mean_valid(precision[t50, :, k, 0, -1]),
            "AP": per_class_ap[k],
        })
    ar_key = "AR_third" if max_dets == 100 else f"AR_{max_dets}"
    return {
        "mAP": float(stats["AP_all"]),
        "mAP50": float(stats["AP_50"]),
        "mAP75": float(stats["AP_75"]),
        f"AR{max_dets}": float(stats.get(ar_key, -1.0)),
        "per_class_AP": per_class_ap,
        "per_class": per_class,
        "precision50": np.asarray(precision[t50, :, :, 0, -1], np.float64).T.copy(),  # [K, R]
        "stats": {k: float(v) for k, v in stats.items()},
    }


def _polygon_metrics(det: Detections, g: Mapping[str, np.ndarray], arrays: _HostArrays, pixels: _Pixels,
                     anns: _Annotations, max_dets: int) -> dict[str, Any]:
    """``polygon_mIoU`` over the box-matched pairs, ``polygon_matched``, ``polygon_recall50`` and the COCO mask
    mAPs ``segm_mAP`` / ``segm_mAP50`` of the polygons rasterised in original pixels."""
    out: dict[str, Any] = {}
    scores, dcls, dval = arrays.scores, arrays.det_classes, arrays.det_valid
    gcls, gval = arrays.gt_classes, arrays.gt_valid
    dpolys, gpolys = np.asarray(det.polygons, np.float64), np.asarray(g["polygons"], np.float64)
    pred_list, tgt_list = [], []
    for i in range(arrays.n):
        di, gi = np.flatnonzero(dval[i]), np.flatnonzero(gval[i])
        for p, q in match_detections(pixels.det_boxes[i, di], scores[i, di], dcls[i, di], pixels.gt_boxes[i, gi],
                                     gcls[i, gi]):
            pred_list.append(dpolys[i, di[p]])
            tgt_list.append(gpolys[i, gi[q]])
    if pred_list:
        ious = _convex_iou(np.stack(pred_list), np.stack(tgt_list))
        out["polygon_mIoU"] = float(np.mean(ious))
    else:
        out["polygon_mIoU"] = 0.0
    out["polygon_matched"] = len(pred_list)
    out["polygon_recall50"] = len(pred_list) / max(1, len(anns.gt))
    orig_size = pixels.orig_size
    segm_dt = []
    for i, ann, poly in anns.dt_segm:
        rle = mask_utils.merge(mask_utils.frPyObjects([poly], int(orig_size[i, 0]), int(orig_size[i, 1])))
        segm_dt.append({k: v for k, v in ann.items() if k != "bbox"} | {"segmentation": rle})
    sev = _cocoeval(anns, anns.gt_segm, segm_dt, "segm", max_dets)
    out["segm_mAP"] = float(sev.stats_as_dict["AP_all"])
    out["segm_mAP50"] = float(sev.stats_as_dict["AP_50"])
    return out
