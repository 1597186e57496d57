"""The yolo11 and yolo26 heads: registry, config fields, the one-to-many weight schedules, the NMS-free decode on
random outputs (against :func:`jaxdet.nms_free.nms_free_decode`, duplicates kept), and the two-branch loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import yolov8n_shapes
from jaxdet.models import HEADS, YOLO11Head, YOLO26Head, YOLOv8Head, default_model_config, make_head
from jaxdet.nms import select_detections
from jaxdet.nms_free import nms_free_decode
from jaxdet.schedules import one2many_schedule, one2many_weight
from train.field_use import unread_overrides

SIZES = (8, 4, 2)  # a 64 px image: 84 anchors


def _levels(head, rng, n=2):
    return tuple(jnp.asarray(rng.normal(0, 1, (n, s, s, head.channels)), jnp.float32) for s in SIZES)


def test_registered_as_one_family():
    assert (HEADS["yolo11"], HEADS["yolo26"]) == (YOLO11Head, YOLO26Head)
    assert issubclass(YOLO11Head, YOLOv8Head) and issubclass(YOLO26Head, YOLOv8Head)
    # YOLO11 is YOLOv8's loss and decode on the v11 network
    assert YOLO11Head.loss is YOLOv8Head.loss and YOLO11Head.decode is YOLOv8Head.decode
    assert YOLO11Head.loss_defaults == YOLOv8Head.loss_defaults
    assert YOLO11Head.model_defaults == YOLOv8Head.model_defaults
    assert default_model_config().reg_max == 16  # the default head's, not yolo26's 1


@pytest.mark.parametrize("name, version, reg_max, channels", [("yolo11", "11", 16, 67), ("yolo26", "26", 1, 7)])
def test_from_config_builds_the_network(name, version, reg_max, channels):
    head = make_head({"head": name, "scale": "s"}, None, num_classes=3, total_steps=50)
    assert (head.reg_max, head.channels) == (reg_max, channels)
    model = nnx.eval_shape(lambda: head.build_model(None, rngs=nnx.Rngs(0)))
    assert (model.version, model.scale, model.reg_max, model.end2end) == (version, "s", reg_max, name == "yolo26")
    with pytest.raises(ValueError, match="model.scale must be one of"):
        make_head({"head": name, "scale": "q"}, None, num_classes=3)


def test_yolo26_loss_fields():
    head = make_head({"head": "yolo26"}, {"one2many": "cosine", "one2one_topk": 5, "one2many_epochs": 4,
                                          "dfl": 2.0}, num_classes=3, total_steps=40)
    assert (head.one2many, head.one2one_topk, head.one2one_topk2, head.one2many_epochs, head.dfl) == (
        "cosine", 5, 1, 4, 2.0)
    assert head.total_steps == 40 and head.topk == 10 and head.score_target == "stop"
    assert {"one2one_topk", "one2one_topk2", "one2many", "one2many_start", "one2many_end",
            "one2many_epochs"} <= set(YOLO26Head.loss_defaults) - set(YOLOv8Head.loss_defaults)
    for loss_cfg, field in [({"one2many": "step"}, "loss.one2many"), ({"one2one_topk2": -1}, "loss.one2one_topk2"),
                            ({"one2many_end": 1.5}, "loss.one2many_end")]:
        with pytest.raises(ValueError, match=field):
            make_head({"head": "yolo26"}, loss_cfg, num_classes=3)
    with pytest.raises(ValueError, match="model.reg_max"):
        make_head({"head": "yolo11", "reg_max": 1}, None, num_classes=3)  # v8/11: DFL bins, at least 2
    big, small = (YOLO26Head(num_classes=3), YOLOv8Head(num_classes=3))
    kw = dict(batch_size=2, max_objects=10, image_size=640)
    assert big.assignment_bytes(**kw) == 2 * small.assignment_bytes(**kw)  # two assignments


def test_loss_fields_of_the_new_heads_are_known_to_the_cli():
    c = yolov8n_shapes.get_config()
    (message,) = unread_overrides(c, ["loss.one2many"])
    assert "not read by the yolov8 head" in message and "the yolo26 head reads it" in message
    c.model.head = "yolo26"
    assert unread_overrides(c, ["loss.one2many", "loss.one2one_topk", "loss.dfl"]) == []
    c.model.head = "yolo11"
    assert unread_overrides(c, ["loss.dfl", "loss.topk"]) == []


def test_one2many_schedules():
    steps = np.arange(100)
    linear = np.asarray(jax.vmap(one2many_schedule("linear", total_steps=100))(steps))
    np.testing.assert_allclose(linear[[0, 99]], [0.8, 0.1], rtol=1e-6)
    np.testing.assert_allclose(linear, 0.1 + 0.7 * (1 - steps / 99), rtol=1e-5)  # one "epoch" per step
    # E epochs: ultralytics' staircase on ceil(T / E) steps each, equal to one2many_weight over E epochs
    stair = np.asarray(jax.vmap(one2many_schedule("linear", total_steps=100, epochs=4))(steps))
    ref = np.asarray(jax.vmap(one2many_weight(total_epochs=4, steps_per_epoch=25))(steps))
    np.testing.assert_array_equal(stair, ref)
    np.testing.assert_allclose(stair[[0, 24, 25, 99]], [0.8, 0.8, 0.8 - 0.7 / 3, 0.1], rtol=1e-6)
    cosine = np.asarray(jax.vmap(one2many_schedule("cosine", total_steps=100))(steps))
    np.testing.assert_allclose(cosine[[0, 99]], [0.8, 0.1], rtol=1e-6)
    assert np.all(np.diff(cosine) <= 0) and cosine[50] == pytest.approx(0.45, abs=0.02)
    assert float(one2many_schedule("constant", total_steps=100, start=0.5)(77)) == 0.5


def test_yolo26_decode_is_nms_free_decode_of_the_one2one_branch():
    head = YOLO26Head(num_classes=3)
    rng = np.random.default_rng(0)
    outputs = {"one2many": _levels(head, rng), "one2one": _levels(head, rng)}
    raw, points, strides, _ = head.flatten(outputs)  # the one-to-one branch
    dets = jax.jit(lambda o: head.decode(o, score_threshold=0.7, iou_threshold=0.7, max_detections=100))(outputs)
    assert dets.boxes.shape == (2, 100, 4) and dets.valid.shape == (2, 100) and dets.polygons is None
    ref = nms_free_decode(raw, points, strides, max_det=100)  # k = min(100, 84) = 84 per image
    keep = np.asarray(ref.scores) > 0.7
    v = np.asarray(dets.valid)
    assert 0 < v.sum() < keep.size and not v[:, 84:].any()
    np.testing.assert_array_equal(v[:, :84], keep)
    np.testing.assert_allclose(np.asarray(dets.boxes)[:, :84][keep], np.asarray(ref.boxes)[keep] / 64, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(dets.scores)[:, :84][keep], np.asarray(ref.scores)[keep])
    np.testing.assert_array_equal(np.asarray(dets.classes)[:, :84][keep], np.asarray(ref.labels)[keep])
    assert not np.asarray(dets.boxes)[~v].any() and not np.asarray(dets.scores)[~v].any()
    few = head.decode(outputs["one2one"], score_threshold=0.0, max_detections=5)  # the levels alone; D < A
    np.testing.assert_array_equal(np.asarray(few.scores), np.asarray(ref.scores)[:, :5])


@pytest.mark.slow  # eager NMS: 5 s
def test_yolo26_decode_keeps_duplicates_that_nms_removes():
    """Two neighbouring anchors predicting the same box and class: NMS (the yolov8 head) keeps one, the
    NMS-free decode both (the one-to-one branch is trained to fire once per object instead)."""
    head = YOLO26Head(num_classes=2)
    level0 = np.full((1, 8, 8, 6), -10.0, np.float32)
    # anchors (3.5, 3.5) and (4.5, 3.5) in grid units: the same box 2.5..5.5 x 2.5..4.5 around both
    level0[0, 3, 3] = [1.0, 1.0, 2.0, 1.0, 5.0, -10.0]
    level0[0, 3, 4] = [2.0, 1.0, 1.0, 1.0, 4.0, -10.0]
    outputs = {b: (jnp.asarray(level0), jnp.full((1, 4, 4, 6), -10.0), jnp.full((1, 2, 2, 6), -10.0))
               for b in ("one2many", "one2one")}
    dets = head.decode(outputs, score_threshold=0.5, max_detections=10)
    assert int(dets.valid.sum()) == 2
    np.testing.assert_allclose(np.asarray(dets.boxes[0, 0]), np.asarray(dets.boxes[0, 1]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(dets.boxes[0, 0]) * 64, [20, 20, 44, 36], atol=1e-4)
    scores = jax.nn.sigmoid(head.flatten(outputs)[0][..., 4:]).max(-1)
    classes = jnp.zeros(scores.shape, jnp.int32)
    nms = select_detections(head.boxes(outputs), scores, classes, iou_threshold=0.7, score_threshold=0.5,
                            max_detections=10)
    assert int(nms.valid.sum()) == 1


@pytest.mark.slow
def test_yolo26_loss_is_finite_and_logs_both_branches():
    head = make_head({"head": "yolo26"}, {"one2many": "cosine"}, num_classes=3, total_steps=10)
    rng = np.random.default_rng(0)
    outputs = {"one2many": _levels(head, rng), "one2one": _levels(head, rng)}
    batch = {
        "boxes": jnp.asarray([[[0.1, 0.1, 0.5, 0.6], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], jnp.float32),
        "classes": jnp.asarray([[1, 0], [0, 0]], jnp.int32),
        "valid": jnp.asarray([[True, False], [False, False]]),
    }

    @jax.jit
    def total(o):
        (loss, metrics), grads = jax.value_and_grad(
            lambda o: head.loss(o, batch, step=jnp.int32(3), state={})[:2], has_aux=True)(o)
        return loss, metrics, grads

    loss, metrics, grads = total(outputs)
    terms = ("box", "cls", "l1")
    assert set(metrics) == {"loss", *terms, *(f"{p}_{t}" for p in ("o2m", "o2o") for t in terms), "o2m_weight"}
    w = 0.1 + 0.7 * 0.5 * (1 + np.cos(np.pi * 3 / 9))  # cosine at step 3 of 10
    np.testing.assert_allclose(float(metrics["o2m_weight"]), w, rtol=1e-6)
    for t in terms:
        np.testing.assert_allclose(float(metrics[t]), w * float(metrics[f"o2m_{t}"])
                                   + (1 - w) * float(metrics[f"o2o_{t}"]), rtol=1e-5)
    np.testing.assert_allclose(float(loss), sum(float(metrics[t]) for t in terms), rtol=1e-5)
    assert float(metrics["o2o_box"]) > 0 and all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match="outputs must be the dict"):
        head.loss(outputs["one2one"], batch, step=0, state={})
