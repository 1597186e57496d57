"""The yolov8 head: registry, config, DFL decoding against ultralytics' inference output, fixed-size NMS."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from ultralytics.utils.nms import non_max_suppression

from jaxdet.models import HEADS, YOLOv8Head, load_ultralytics, make_head
from jaxdet.parity.cases_yolo_model import NUM_CLASSES, ultralytics_model

os.environ.setdefault("YOLO_OFFLINE", "1")


def test_registered_and_configured():
    head = make_head({"head": "yolov8", "scale": "s", "reg_max": 16, "dtype": "bfloat16"}, None, num_classes=3)
    assert HEADS["yolov8"] is YOLOv8Head and isinstance(head, YOLOv8Head)
    assert (head.scale, head.reg_max, head.dtype, head.channels) == ("s", 16, "bfloat16", 67)
    model = nnx.eval_shape(lambda: head.build_model(None, rngs=nnx.Rngs(0)))
    assert model.scale == "s" and model.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="model.scale must be one of"):
        make_head({"head": "yolov8", "scale": "q"}, None, num_classes=3)


def test_anchor_count_and_assignment_memory():
    assert YOLOv8Head.num_anchors(640) == 8400 and YOLOv8Head.num_anchors(64) == 84
    head = YOLOv8Head(num_classes=80)
    assert head.assignment_bytes(batch_size=2, max_objects=10, image_size=640) == 40 * 2 * 10 * 8400


@pytest.mark.slow
def test_boxes_and_scores_match_ultralytics_inference():
    """float64: our normalised xyxy boxes times the image size = ultralytics' decoded xywh (DFL + anchors)."""
    torch = pytest.importorskip("torch")

    ref = ultralytics_model("yolov8n", NUM_CLASSES).eval()
    images = np.random.default_rng(1).uniform(0, 1, (2, 64, 96, 3))
    with torch.no_grad():
        y, _ = ref(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    y = y.numpy()  # [N, 4 + C, A]: cx, cy, w, h in pixels, class sigmoids
    ref_xyxy = np.concatenate([y[:, :2] - y[:, 2:4] / 2, y[:, :2] + y[:, 2:4] / 2], 1).transpose(0, 2, 1)
    with jax.enable_x64(True):
        model = load_ultralytics(ref, param_dtype=jnp.float64)
        model.eval()
        head = YOLOv8Head(num_classes=NUM_CLASSES)
        outputs = model(jnp.asarray(images))
        boxes = np.asarray(head.boxes(outputs)) * np.array([96, 64, 96, 64])
        raw, _, _, _ = head.flatten(outputs)
        scores = np.asarray(jax.nn.sigmoid(raw[..., 64:]))
        np.testing.assert_allclose(boxes, ref_xyxy, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(scores, y[:, 4:].transpose(0, 2, 1), rtol=1e-10, atol=1e-12)
        dets = jax.jit(lambda o: head.decode(o, score_threshold=0.0, max_detections=7))(outputs)
    assert dets.boxes.shape == (2, 7, 4) and dets.scores.shape == (2, 7)
    best = np.asarray(scores).max(-1).max(-1)
    np.testing.assert_allclose(np.asarray(dets.scores)[:, 0], best, rtol=1e-6)


def test_flatten_rejects_wrong_outputs():
    head = YOLOv8Head(num_classes=2)
    with pytest.raises(ValueError, match="outputs must be a tuple of 3 per-level arrays"):
        head.flatten((jnp.zeros((1, 8, 8, 66)),))
    with pytest.raises(ValueError, match=r"outputs\[1\]"):
        head.flatten((jnp.zeros((1, 8, 8, 66)), jnp.zeros((1, 4, 4, 65)), jnp.zeros((1, 2, 2, 66))))


@pytest.mark.slow
def test_loss_is_finite_with_padding_and_empty_images():
    """The yolov8_loss of the raw per-level outputs: finite value and gradient with a padded slot and an image
    without objects; the metrics are the total and the three gain-scaled terms."""
    head = YOLOv8Head(num_classes=3)
    rng = np.random.default_rng(0)
    outputs = tuple(jnp.asarray(rng.normal(0, 1, (2, s, s, head.channels)), jnp.float32) for s in (8, 4, 2))
    batch = {
        "boxes": jnp.asarray([[[0.1, 0.1, 0.5, 0.6], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], jnp.float32),
        "classes": jnp.asarray([[1, 0], [0, 0]], jnp.int32),
        "valid": jnp.asarray([[True, False], [False, False]]),
    }

    def total(o):
        loss, metrics, state = head.loss(o, batch, step=jnp.int32(0), state={})
        return loss, metrics

    (loss, metrics), grads = jax.value_and_grad(total, has_aux=True)(outputs)
    assert set(metrics) == {"loss", "box", "cls", "dfl"}
    assert bool(jnp.isfinite(loss)) and float(metrics["box"]) > 0
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


@pytest.mark.parametrize("multi_label", [True, False])
def test_decode_matches_ultralytics_non_max_suppression(multi_label):
    """Validation settings (conf 0.001, IoU 0.7, max_det 300): the kept (box, score, class) rows equal
    ultralytics' ``non_max_suppression`` on the same decoded boxes and class sigmoids, multi-label (its
    validator: one candidate per anchor × class above conf) and single-label (its predictor)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")

    head = YOLOv8Head(num_classes=4)
    rng = np.random.default_rng(3)
    outputs = tuple(jnp.asarray(rng.normal(0, 2, (2, h, w, head.channels)), jnp.float32)
                    for h, w in ((8, 12), (4, 6), (2, 3)))  # a 64 x 96 image: 126 anchors, 504 (anchor, class) pairs
    dets = jax.jit(lambda o: head.decode(o, score_threshold=0.001, iou_threshold=0.7, max_detections=300,
                                         multi_label=multi_label, pre_nms_top_k=30000))(outputs)
    boxes = np.asarray(head.boxes(outputs)) * np.array([96, 64, 96, 64], np.float32)  # [N, A, 4] xyxy pixels
    raw, _, _, _ = head.flatten(outputs)
    cls = np.asarray(jax.nn.sigmoid(raw[..., 4 * head.reg_max:]))
    xywh = np.concatenate([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)
    pred = torch.from_numpy(np.concatenate([xywh, cls], -1).transpose(0, 2, 1).copy())  # [N, 4 + C, A]
    ref = non_max_suppression(pred, 0.001, 0.7, multi_label=multi_label, max_det=300)
    for i in range(2):
        v = np.asarray(dets.valid[i])
        ours = np.concatenate([np.asarray(dets.boxes[i])[v] * np.array([96, 64, 96, 64]),
                               np.asarray(dets.scores[i])[v, None], np.asarray(dets.classes[i])[v, None]], -1)
        theirs = ref[i].numpy()
        assert len(theirs) > (150 if multi_label else 40)  # enough survivors to compare
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3)
