"""Evaluation: fixed-size jit-friendly NMS, COCO mAP through faster-coco-eval, a polygon metric, drawing.

* :func:`nms` — greedy, class-aware non-maximum suppression with static output size (top-k pre-selection,
  then an exact greedy selection with ``lax.while_loop``, one kept box per iteration). Same kept set and
  order as ``torchvision.ops.batched_nms`` (a box is suppressed when its IoU with a higher-scoring kept box of
  the same class is ``> iou_threshold``).
* :func:`coco_metrics` — box mAP@[0.5:0.95] and mAP@0.5 with ``faster_coco_eval`` (the same numbers as
  pycocotools), and for polygon detections the exact convex-polygon IoU of matched pairs ("polygon_mIoU") and
  mask mAP of the polygons rasterised by the COCO mask API ("segm_mAP", "segm_mAP50").
  Boxes are evaluated in original image pixels (``orig_size`` / ``ratio_pad`` of the batch, see
  :mod:`jaxdet.data.letterbox`), with per-class rows and the IoU-0.5 precision–recall arrays.
* :func:`format_metrics_table` / :func:`format_per_class_table` — printable tables (the latter in ultralytics'
  per-class layout); :func:`draw_detections` — a uint8 image grid.

NMS is pure JAX; everything else works on numpy arrays on the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks
from jaxdet.boxes import box_iou

__all__ = [
    "Detections",
    "NMSResult",
    "nms",
    "select_detections",
    "coco_metrics",
    "match_detections",
    "format_metrics_table",
    "per_class_rows",
    "format_per_class_table",
    "RECALL_THRESHOLDS",
    "draw_detections",
]


class Detections(NamedTuple):
    """Fixed-size detections per image (the contract's decode output).

    Attributes:
      boxes: ``[N, D, 4]`` xyxy normalised to [0, 1].
      scores: ``[N, D]``.
      classes: ``[N, D]`` int32.
      valid: ``[N, D]`` bool; padding slots are False (their other fields are zeros).
      polygons: ``[N, D, K, 2]`` normalised (x, y), or None for box-only heads.
    """

    boxes: Any
    scores: Any
    classes: Any
    valid: Any
    polygons: Any = None


class NMSResult(NamedTuple):
    """``indices [..., D]`` int32 into the candidates, in decreasing score; ``valid [..., D]`` bool."""

    indices: jax.Array
    valid: jax.Array


# --------------------------------------------------------------------------------------------------- NMS


def _nms_single(boxes, scores, classes, *, iou_threshold, score_threshold, max_detections, top_k):
    keep_score = jnp.where(scores > score_threshold, scores, -jnp.inf)
    top_scores, order = jax.lax.top_k(keep_score, top_k)  # [k], decreasing; ties keep the lower index
    cand = boxes[order]  # [k, 4]
    cls = None if classes is None else classes[order]

    # Greedy selection, one kept box per iteration: the best live candidate is the first live one in rank
    # order; it suppresses the live candidates of its class with IoU > threshold. D iterations of O(k) work
    # instead of a [k, k] IoU matrix, and the loop stops once no candidate is live.
    def cond(carry):
        i, live, _ = carry
        return (i < max_detections) & jnp.any(live)

    def body(carry):
        i, live, picked = carry
        j = jnp.argmax(live)  # the first True
        suppress = box_iou(cand[j], cand) > iou_threshold  # [k]
        if cls is not None:
            suppress = suppress & (cls == cls[j])
        live = live & ~suppress
        return i + 1, live.at[j].set(False), picked.at[i].set(j.astype(jnp.int32))

    init = (jnp.int32(0), jnp.isfinite(top_scores), jnp.zeros((max_detections,), jnp.int32))
    count, _, picked = jax.lax.while_loop(cond, body, init)
    out_valid = jnp.arange(max_detections) < count
    out_idx = jnp.where(out_valid, order[picked], 0).astype(jnp.int32)
    return out_idx, out_valid


def nms(
    boxes: jax.Array,
    scores: jax.Array,
    classes: jax.Array | None = None,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    max_detections: int = 100,
    pre_nms_top_k: int | None = None,
) -> NMSResult:
    """Fixed-size greedy non-maximum suppression, class-aware when ``classes`` is given.

    Candidates with ``score > score_threshold`` are ranked by score; the ``pre_nms_top_k`` best (all when None)
    go through exact greedy suppression: walking down the ranking, a candidate is kept unless a kept,
    higher-ranked candidate of the same class has

    .. math:: \\mathrm{IoU}(b_i, b_j) > \\tau_{\\mathrm{iou}}.

    The first ``max_detections`` kept candidates are returned; shapes are static, so it jits and vmaps. The
    greedy pass selects one box per iteration (the best live candidate, which then suppresses its
    neighbours), so it costs ``O(D · k)`` for ``D = max_detections`` and ``k`` pre-selected candidates, and no
    ``[k, k]`` IoU matrix: 300 detections from 8,400 YOLOv8 anchors (or from the 30,000 best of the
    anchor × class pairs with ``multi_label``) stay cheap under jit.

    Args:
      boxes: ``[..., A, 4]`` xyxy.
      scores: ``[..., A]``.
      classes: ``[..., A]`` int, or None for class-agnostic NMS.
      iou_threshold: suppression threshold τ (strict ``>`` as in torchvision).
      score_threshold: candidates need ``score > score_threshold``.
      max_detections: D, the output size.
      pre_nms_top_k: how many top-scoring candidates enter the greedy pass (default: all A).

    Returns:
      :class:`NMSResult` with ``indices [..., D]`` (into the A candidates, decreasing score) and
      ``valid [..., D]``; invalid slots have index 0.
    """
    boxes = _checks.floating(boxes, "boxes", shape="[..., A, 4] with A >= 1", min_ndim=2, last=4)
    if boxes.shape[-2] < 1:
        raise _checks.fail_shape("boxes", "[..., A, 4] with A >= 1", boxes)
    scores = jnp.asarray(scores)
    _checks.shape_is(scores, boxes.shape[:-1], "scores", "boxes.shape[:-1]")
    if classes is not None:
        classes = jnp.asarray(classes)
        _checks.same_shape(scores, classes, "scores", "classes")
    _checks.positive_int(max_detections, "max_detections")
    _checks.number(iou_threshold, "iou_threshold", low=0.0, high=1.0)
    _checks.number(score_threshold, "score_threshold", finite=False)
    if pre_nms_top_k is not None:
        _checks.positive_int(pre_nms_top_k, "pre_nms_top_k")
    a = boxes.shape[-2]
    top_k = a if pre_nms_top_k is None else int(min(pre_nms_top_k, a))
    lead = boxes.shape[:-2]
    fb = boxes.reshape((-1, a, 4))
    fs = scores.reshape((-1, a)).astype(jnp.float32)
    fn = lambda b, s, c: _nms_single(  # noqa: E731
        b, s, c, iou_threshold=iou_threshold, score_threshold=score_threshold,
        max_detections=max_detections, top_k=top_k,
    )
    if classes is None:
        idx, valid = jax.vmap(lambda b, s: fn(b, s, None))(fb, fs)
    else:
        idx, valid = jax.vmap(fn)(fb, fs, classes.reshape((-1, a)))
    return NMSResult(idx.reshape(lead + (max_detections,)), valid.reshape(lead + (max_detections,)))


def select_detections(
    boxes: jax.Array,
    scores: jax.Array,
    classes: jax.Array,
    polygons: jax.Array | None = None,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    max_detections: int = 100,
    pre_nms_top_k: int | None = None,
) -> Detections:
    """Class-aware :func:`nms` on ``[N, A, ...]`` candidates, gathered into fixed-size :class:`Detections`.

    Args:
      boxes: ``[N, A, 4]`` xyxy; scores ``[N, A]``; classes ``[N, A]`` int; polygons ``[N, A, K, 2]`` or None.

    Returns:
      :class:`Detections` with D = ``max_detections``; invalid slots are zeroed.
    """
    res = nms(
        boxes, scores, classes, iou_threshold=iou_threshold, score_threshold=score_threshold,
        max_detections=max_detections, pre_nms_top_k=pre_nms_top_k,
    )
    take = lambda x: jnp.take_along_axis(  # noqa: E731
        x, res.indices.reshape(res.indices.shape + (1,) * (x.ndim - 2)), axis=1
    )
    v = res.valid
    out_boxes = jnp.where(v[..., None], take(boxes), 0.0)
    out_scores = jnp.where(v, take(scores), 0.0)
    out_classes = jnp.where(v, take(classes), 0).astype(jnp.int32)
    out_polys = None if polygons is None else jnp.where(v[..., None, None], take(polygons), 0.0)
    return Detections(out_boxes, out_scores, out_classes, v, out_polys)


# --------------------------------------------------------------------------------------------------- COCO


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
    from jaxdet.polygons import convex_polygon_iou

    return np.asarray(convex_polygon_iou(jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32)))


#: COCO's recall thresholds (``COCOeval.params.recThrs``): the x axis of the precision arrays.
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


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
    from faster_coco_eval import COCO, COCOeval_faster

    from jaxdet.data.letterbox import boxes_to_original, identity_letterbox, points_to_original

    det = _concat_detections(detections)
    g = _concat_batches(gt)
    h, w = _as_hw(image_size)
    _checks.positive_int(max_detections, "max_detections")
    max_dets = max(100, int(max_detections))
    scores = np.asarray(det.scores, np.float64)
    dcls, dval = np.asarray(det.classes).astype(np.int64), np.asarray(det.valid).astype(bool)
    gcls, gval = g["classes"].astype(np.int64), g["valid"].astype(bool)
    n = scores.shape[0]
    if g["boxes"].shape[0] != n:
        raise _checks.fail_shape("gt['boxes']", f"[N, M, 4] with N = {n}, the images of detections", g["boxes"])
    if num_classes is None:
        seen = np.concatenate([gcls[gval], dcls[dval], np.zeros(1, np.int64)])
        num_classes = int(seen.max()) + 1
    use_poly = det.polygons is not None and "polygons" in g
    if polygon_metrics is None:
        polygon_metrics = use_poly
    elif polygon_metrics and not use_poly:
        raise _checks.fail_value(
            "polygon_metrics", "False or None without detections.polygons and gt['polygons']", polygon_metrics
        )
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

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

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
            bb = xywh(gboxes[i, m])
            ann = {
                "id": len(gt_anns) + 1, "image_id": i + 1, "category_id": int(gcls[i, m]) + 1,
                "bbox": bb, "area": bb[2] * bb[3], "iscrowd": 0,
            }
            gt_anns.append(ann)
            if polygon_metrics:
                gt_segm_anns.append({**ann, "segmentation": [gpix[i, m].reshape(-1).tolist()]})
        for d in np.flatnonzero(dval[i]):
            ann = {"image_id": i + 1, "category_id": int(dcls[i, d]) + 1, "bbox": xywh(boxes[i, d]),
                   "score": float(scores[i, d])}
            dt_anns.append(ann)
            if polygon_metrics:
                dt_segm.append((i, ann, dpix[i, d].reshape(-1).tolist()))

    def run(gt_list, dt_list, iou_type):
        coco_gt = COCO({"images": images, "annotations": gt_list, "categories": categories})
        coco_dt = coco_gt.loadRes(dt_list)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType=iou_type, print_function=lambda *a, **k: None)
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev

    ev = run(gt_anns, dt_anns, "bbox")
    stats = ev.stats_as_dict
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    t50 = int(np.flatnonzero(np.isclose(ev.params.iouThrs, 0.5))[0])

    def mean_valid(p):
        p = p[p > -1]
        return float(p.mean()) if p.size else -1.0

    per_class_ap = [mean_valid(precision[:, :, k, 0, -1]) for k in range(precision.shape[2])]
    per_class = []
    for k in range(num_classes):
        have = gval & (gcls == k)  # [N, M]
        per_class.append({
            "class": k,
            "images": int(np.any(have, axis=1).sum()),
            "instances": int(have.sum()),
            "AP50": mean_valid(precision[t50, :, k, 0, -1]),
            "AP": per_class_ap[k],
        })
    ar_key = "AR_third" if max_dets == 100 else f"AR_{max_dets}"
    out: dict[str, Any] = {
        "mAP": float(stats["AP_all"]),
        "mAP50": float(stats["AP_50"]),
        "mAP75": float(stats["AP_75"]),
        f"AR{max_dets}": float(stats.get(ar_key, -1.0)),
        "per_class_AP": per_class_ap,
        "per_class": per_class,
        "precision50": np.asarray(precision[t50, :, :, 0, -1], np.float64).T.copy(),  # [K, R]
        "stats": {k: float(v) for k, v in stats.items()},
        "num_images": n,
        "num_gt": len(gt_anns),
        "num_detections": len(dt_anns),
    }

    if polygon_metrics:
        from faster_coco_eval.core import mask as mask_utils

        dpolys, gpolys = np.asarray(det.polygons, np.float64), np.asarray(g["polygons"], np.float64)
        pred_list, tgt_list = [], []
        for i in range(n):
            di, gi = np.flatnonzero(dval[i]), np.flatnonzero(gval[i])
            for p, q in match_detections(boxes[i, di], scores[i, di], dcls[i, di], gboxes[i, gi], gcls[i, gi]):
                pred_list.append(dpolys[i, di[p]])
                tgt_list.append(gpolys[i, gi[q]])
        if pred_list:
            ious = _convex_iou(np.stack(pred_list), np.stack(tgt_list))
            out["polygon_mIoU"] = float(np.mean(ious))
        else:
            out["polygon_mIoU"] = 0.0
        out["polygon_matched"] = len(pred_list)
        out["polygon_recall50"] = len(pred_list) / max(1, len(gt_anns))
        segm_dt = []
        for i, ann, poly in dt_segm:
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], int(orig_size[i, 0]), int(orig_size[i, 1])))
            segm_dt.append({k: v for k, v in ann.items() if k != "bbox"} | {"segmentation": rle})
        sev = run(gt_segm_anns, segm_dt, "segm")
        out["segm_mAP"] = float(sev.stats_as_dict["AP_all"])
        out["segm_mAP50"] = float(sev.stats_as_dict["AP_50"])
    return out


def _ar_key(metrics: Mapping[str, Any]) -> str | None:
    keys = [k for k in metrics if k.startswith("AR") and k[2:].isdigit()]
    return keys[0] if keys else None


def format_metrics_table(metrics: Mapping[str, Any], *, class_names: Sequence[str] | None = None) -> str:
    """A printable table of :func:`coco_metrics` output: summary rows, then :func:`format_per_class_table`."""
    _checks.keys_present(metrics, ("mAP", "mAP50", "mAP75"), "metrics")
    rows = [("mAP@[.5:.95]", metrics["mAP"]), ("mAP@.5", metrics["mAP50"]), ("mAP@.75", metrics["mAP75"])]
    ar = _ar_key(metrics)
    if ar is not None:
        rows.append((f"AR@{ar[2:]}", metrics[ar]))
    for key, label in (("polygon_mIoU", "polygon mIoU (matched)"), ("polygon_recall50", "polygon recall@.5"),
                       ("segm_mAP", "mask mAP@[.5:.95]"), ("segm_mAP50", "mask mAP@.5")):
        if key in metrics:
            rows.append((label, metrics[key]))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric':<{width}} | value", f"{'-' * width}-|-------"]
    lines += [f"{name:<{width}} | {value:6.4f}" if value >= 0 else f"{name:<{width}} |    n/a"
              for name, value in rows]
    lines.append(f"({metrics.get('num_images', '?')} images, {metrics.get('num_gt', '?')} GT, "
                 f"{metrics.get('num_detections', '?')} detections)")
    if "per_class" in metrics:
        lines += ["", format_per_class_table(metrics, class_names=class_names)]
    return "\n".join(lines)


def per_class_rows(metrics: Mapping[str, Any], *, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The per-class table of :func:`coco_metrics` output as rows, ``"all"`` first, as ultralytics'
    ``DetectionValidator.print_results``: ``{"class": name, "images", "instances", "AP50", "AP50-95"}``.

    ``images`` counts the images holding at least one instance of the class (for "all": every image); the APs
    are COCO's (-1 for a class without ground truth). The "all" APs are the mean over the classes with ground
    truth (COCO's mAP@.5 and mAP@[.5:.95]).
    """
    _checks.keys_present(metrics, ("per_class", "mAP", "mAP50", "num_images", "num_gt"), "metrics")
    rows = [{"class": "all", "images": int(metrics["num_images"]), "instances": int(metrics["num_gt"]),
             "AP50": float(metrics["mAP50"]), "AP50-95": float(metrics["mAP"])}]
    for r in metrics["per_class"]:
        k = int(r["class"])
        name = class_names[k] if class_names is not None and k < len(class_names) else str(k)
        rows.append({"class": str(name), "images": r["images"], "instances": r["instances"], "AP50": r["AP50"],
                     "AP50-95": r["AP"]})
    return rows


def format_per_class_table(metrics: Mapping[str, Any], *, class_names: Sequence[str] | None = None) -> str:
    """:func:`per_class_rows` printed in ultralytics' layout (``%22s`` then ``%11`` columns; n/a without GT)."""
    head = ("%22s" + "%11s" * 4) % ("Class", "Images", "Instances", "mAP50", "mAP50-95")
    lines = [head]
    for r in per_class_rows(metrics, class_names=class_names):
        aps = "".join("%11.3g" % r[k] if r[k] >= 0 else "%11s" % "n/a" for k in ("AP50", "AP50-95"))
        lines.append(("%22s" + "%11i" * 2) % (r["class"][:22], r["images"], r["instances"]) + aps)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- drawing

_PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)],
    np.uint8,
)


def draw_detections(
    images: np.ndarray,
    detections: Detections | None = None,
    gt: Mapping[str, np.ndarray] | None = None,
    *,
    ncols: int | None = None,
    scale: int = 2,
    class_names: Sequence[str] | None = None,
    max_images: int | None = 16,
) -> np.ndarray:
    """Draws GT (thin white boxes, and polygons when both sides have them) and detections (class colour, with
    class/score text and polygon outline) into a uint8 image grid.

    Args:
      images: ``[N, H, W, 3]`` float in [0, 1] (or uint8).
      detections: :class:`Detections` (numpy) for the same images, or None.
      gt: batch dict with ``boxes``, ``classes``, ``valid`` (and optional ``polygons``), or None.
      ncols: grid columns (default ``ceil(sqrt(N))``).
      scale: integer upscaling of each image before drawing (text legibility).
      class_names: optional names for the labels.
      max_images: draw at most this many images.

    Returns:
      uint8 ``[rows * (H*scale + 2) , cols * (W*scale + 2), 3]`` grid.
    """
    from PIL import Image, ImageDraw

    images = np.asarray(images)
    _checks.layout(images, "images", shape="[N, H, W, 3]", ndim=4, last=3)
    _checks.positive_int(scale, "scale")
    if images.dtype != np.uint8:
        images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    n = images.shape[0] if max_images is None else min(images.shape[0], max_images)
    h, w = images.shape[1] * scale, images.shape[2] * scale
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    grid = np.full((nrows * (h + 2), ncols * (w + 2), 3), 255, np.uint8)
    sc = np.array([w, h, w, h], np.float64)
    for i in range(n):
        im = Image.fromarray(images[i]).resize((w, h), Image.NEAREST)
        dr = ImageDraw.Draw(im)
        if gt is not None:
            for m in np.flatnonzero(np.asarray(gt["valid"][i])):
                dr.rectangle(list(np.asarray(gt["boxes"][i, m], np.float64) * sc), outline=(255, 255, 255), width=1)
                if gt.get("polygons") is not None and detections is not None and detections.polygons is not None:
                    pts = [tuple(p) for p in (np.asarray(gt["polygons"][i, m], np.float64) * sc[:2])]
                    dr.line(pts + [pts[0]], fill=(255, 255, 255), width=1)
        if detections is not None:
            dv = np.asarray(detections.valid[i])
            for d in np.flatnonzero(dv):
                c = int(np.asarray(detections.classes[i, d]))
                col = tuple(int(v) for v in _PALETTE[c % len(_PALETTE)])
                b = list(np.asarray(detections.boxes[i, d], np.float64) * sc)
                dr.rectangle(b, outline=col, width=2)
                if detections.polygons is not None:
                    pts = [tuple(p) for p in (np.asarray(detections.polygons[i, d], np.float64) * sc[:2])]
                    dr.line(pts + [pts[0]], fill=col, width=1)
                name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
                dr.text((b[0] + 2, b[1] + 1), f"{name} {float(detections.scores[i, d]):.2f}", fill=col)
        r, cidx = divmod(i, ncols)
        grid[r * (h + 2) + 1: r * (h + 2) + 1 + h, cidx * (w + 2) + 1: cidx * (w + 2) + 1 + w] = np.asarray(im)
    return grid
