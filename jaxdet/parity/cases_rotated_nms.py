"""Parity cases of the rotated NMS against ultralytics 8.4.190's OBB path.

- ``rotated_nms`` (ProbIoU, Fast-NMS) vs ``utils/nms.py::non_max_suppression(..., rotated=True,
  return_idxs=True)`` on raw OBB outputs ``[B, 4 + C + 1, A]``: the kept anchors, classes, scores and boxes
  ``(cx, cy, w, h, angle)`` in ultralytics' order, padded to ``max_det`` (and the count kept per image), for the
  validator's multi-label candidates (every (anchor, class) pair above ``conf``) and the predictor's single-label
  ones (each anchor's best class), class-aware and agnostic.

Inputs: 2 images of 640 px, 400 anchors per image, each a jittered copy (centre ±4 px, sides ×0.8–1.25, angle ±0.1)
of one of 8 objects (sides 8 to 120 px, angles in ``[-pi/2, pi/2)``), 4 classes with float32-representable scores;
``conf = 0.001``, ``iou = 0.7`` (ultralytics' validation defaults), ``max_det = 300``, ``max_nms = 30000``. 10 to 115
candidates are kept per image: the suppression decides the rows, not the ``max_det`` cap.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet.nms import rotated_nms
from jaxdet.parity.core import ParityCase

BATCH, ANCHORS, CLASSES, IMAGE = 2, 400, 4, 640
CONF, IOU, MAX_DET, MAX_NMS = 0.001, 0.7, 300, 30000


def nms_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``rboxes [B, A, 5]`` pixels and ``class_scores [B, A, C]`` (float32-representable): each anchor a jittered
    copy of one of 8 objects per image, as a detector's neighbouring anchors."""
    objects = np.concatenate([rng.uniform(0.1 * IMAGE, 0.9 * IMAGE, (BATCH, 8, 2)),
                              rng.uniform(8.0, 120.0, (BATCH, 8, 2)),
                              rng.uniform(-np.pi / 2, np.pi / 2, (BATCH, 8, 1))], -1)
    pick = rng.integers(0, 8, (BATCH, ANCHORS))
    boxes = np.take_along_axis(objects, pick[..., None], axis=1)
    boxes[..., :2] += rng.normal(0, 4.0, (BATCH, ANCHORS, 2))
    boxes[..., 2:4] *= rng.uniform(0.8, 1.25, (BATCH, ANCHORS, 2))
    boxes[..., 4] += rng.normal(0, 0.1, (BATCH, ANCHORS))
    scores = rng.uniform(0.0, 1.0, (BATCH, ANCHORS, CLASSES)).astype(np.float32).astype(np.float64)
    return boxes, scores


@functools.partial(jax.jit, static_argnames=("multi_label", "agnostic"))
def _nms_jax(rboxes, class_scores, *, multi_label, agnostic):
    b, a, c = class_scores.shape
    if multi_label:  # every (anchor, class) pair, anchor-major as ultralytics' torch.where
        boxes = jnp.broadcast_to(rboxes[:, :, None], (b, a, c, 5)).reshape(b, a * c, 5)
        scores = class_scores.reshape(b, a * c)
        classes = jnp.broadcast_to(jnp.arange(c, dtype=jnp.int32), (b, a, c)).reshape(b, a * c)
        anchor = jnp.arange(a * c, dtype=jnp.int32) // c
    else:
        boxes, scores = rboxes, jnp.max(class_scores, -1)
        classes, anchor = jnp.argmax(class_scores, -1).astype(jnp.int32), jnp.arange(a, dtype=jnp.int32)
    res = rotated_nms(boxes, scores, None if agnostic else classes, iou_threshold=IOU, score_threshold=CONF,
                      max_detections=MAX_DET, pre_nms_top_k=MAX_NMS)
    keep, idx = res.valid, res.indices  # [B, D] into the candidates
    take = lambda x: jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)  # noqa: E731
    return {
        "count": jnp.sum(keep, axis=-1, dtype=jnp.int32),
        "anchor": jnp.where(keep, anchor[idx], 0),
        "class": jnp.where(keep, take(classes), 0),
        "score": jnp.where(keep, take(scores), 0),
        "rbox": jnp.where(keep[..., None], take(boxes), 0),
    }


def _nms_torch(rboxes, class_scores, *, multi_label, agnostic):
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs
    from ultralytics.utils.nms import non_max_suppression  # noqa: PLC0415 - torch side, lazily

    prediction = torch.cat([rboxes[..., :4], class_scores, rboxes[..., 4:]], dim=-1).transpose(1, 2)
    out, keepi = non_max_suppression(prediction, CONF, IOU, agnostic=agnostic, multi_label=multi_label,
                                     max_det=MAX_DET, max_nms=MAX_NMS, nc=CLASSES, rotated=True, return_idxs=True,
                                     max_time_img=1e6)
    res = {k: [] for k in ("count", "anchor", "class", "score", "rbox")}
    for x, k in zip(out, keepi):
        n, pad = x.shape[0], MAX_DET - x.shape[0]
        res["count"].append(torch.tensor(n, dtype=torch.int32))
        res["anchor"].append(torch.nn.functional.pad(k.view(-1).int(), (0, pad)))
        res["class"].append(torch.nn.functional.pad(x[:, 5].int(), (0, pad)))
        res["score"].append(torch.nn.functional.pad(x[:, 4], (0, pad)))
        res["rbox"].append(torch.nn.functional.pad(x[:, [0, 1, 2, 3, 6]], (0, 0, 0, pad)))
    return {k: torch.stack(v) for k, v in res.items()}


def cases() -> list[ParityCase]:
    return [
        ParityCase(
            name=f"rotated_nms ({'multi-label' if multi_label else 'single-label'}"
                 f"{', agnostic' if agnostic else ''})",
            reference="ultralytics.utils.nms.non_max_suppression(rotated=True)",
            jax_fn=functools.partial(_nms_jax, multi_label=multi_label, agnostic=agnostic),
            torch_fn=functools.partial(_nms_torch, multi_label=multi_label, agnostic=agnostic),
            make_inputs=nms_inputs,
            wrt=(),
        )
        for multi_label, agnostic in ((True, False), (False, False), (True, True))
    ]
