"""jaxdet.tal: anchors, box coding and DFL decoding against ultralytics; the task-aligned assignment's documented
behaviours (the zero-metric ties where it differs from ultralytics), chunking, padding, the gradient path of the
soft score, and argument errors.

The assignment against ultralytics' TaskAlignedAssigner (labels, boxes, soft scores, and the foreground mask and GT
index exactly; G = 0, 1, 20, 300, both dtypes) is the ``task_aligned_assign`` rows of ``python -m jaxdet.parity``,
run by tests/parity/test_cases.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.test_util import check_grads
from ultralytics.utils import tal as utal
from ultralytics.utils.tal import make_anchors

from jaxdet.parity import cases_yolov8 as cases
from jaxdet.parity.cases_obb import rtal_torch
from jaxdet.parity.torch_yolov8 import tal_torch
from jaxdet.rboxes import probiou as rboxes_probiou
from jaxdet.tal import _XYWHR as XYWHR
from jaxdet.tal import (
    bbox2dist,
    dfl_decode,
    dist2bbox,
    dist2rbox,
    make_anchor_points,
    rbox2dist,
    rotated_task_aligned_assign,
    task_aligned_assign,
)

assign = jax.jit(task_aligned_assign, static_argnames=("score_target", "gt_chunk_size", "topk", "min_gt_side"))


def _torch(*arrays):
    return [torch.from_numpy(np.asarray(a)) for a in arrays]


# ------------------------------------------------------------------------------------------------ geometry


def test_make_anchor_points_matches_ultralytics():

    shapes, strides = ((8, 6), (4, 3), (2, 2)), (8, 16, 32)
    anchors = make_anchor_points(shapes, strides)
    feats = [torch.zeros(1, 1, h, w) for h, w in shapes]
    points, stride = make_anchors(feats, torch.tensor(strides, dtype=torch.float32), 0.5)
    np.testing.assert_array_equal(np.asarray(anchors.points), points.numpy())
    np.testing.assert_array_equal(np.asarray(anchors.strides), stride.numpy()[:, 0])
    assert anchors.points.shape == (8 * 6 + 4 * 3 + 2 * 2, 2)


def test_box_coding_and_dfl_decode_match_ultralytics(x64):

    rng = np.random.default_rng(0)
    points = rng.uniform(0, 40, (5, 7, 2))
    distances = rng.uniform(0, 15, (5, 7, 4))
    for fmt, xywh in (("xyxy", False), ("cxcywh", True)):
        ours = dist2bbox(distances, points, fmt=fmt)
        theirs = utal.dist2bbox(*_torch(distances, points), xywh=xywh)
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-13)
    boxes = np.asarray(dist2bbox(distances, points))
    np.testing.assert_allclose(bbox2dist(points, boxes), distances, atol=1e-12)
    far = boxes + np.array([0, 0, 30, 30])
    clipped = bbox2dist(points, far, max_distance=15 - 0.01)
    np.testing.assert_array_equal(clipped, utal.bbox2dist(*_torch(points, far), 15).numpy())
    logits = rng.normal(0, 2, (5, 7, 64))
    proj = torch.arange(16, dtype=torch.float64)
    theirs = torch.from_numpy(logits).view(5, 7, 4, 16).softmax(3).matmul(proj)
    np.testing.assert_allclose(dfl_decode(logits), theirs.numpy(), rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------ assignment: where it differs from ultralytics


def test_zero_metric_ties_differ_only_where_documented(x64):
    """A GT covering the top-left corner with fewer than topk positive-metric anchors: the two top-k's may pick
    different zero-metric anchors (the tal module doc). Every difference is at an anchor of index < topk whose
    soft score is 0 on both sides, and the scores agree everywhere."""
    scores, pred_boxes, points, labels, boxes, valid = cases.tal_inputs(np.random.default_rng(0), 3)
    boxes[:, 0] = [0.5, 0.5, 20.0, 6.0]  # tiny, at the corner: few candidates, some with CIoU clamped to 0
    pred_boxes[:, :40] = np.array([100.0, 100.0, 120.0, 120.0])  # the corner's predictions miss it entirely
    valid[:, 0] = True
    ours = assign(scores, pred_boxes, points, labels, boxes, valid)
    theirs = tal_torch(*_torch(scores, pred_boxes, points, labels, boxes, valid))
    differ = np.asarray(ours.fg_mask) != theirs["fg_mask"].numpy()
    image, anchor = np.nonzero(differ)
    assert np.all(anchor < 10)
    assert np.all(np.asarray(ours.scores)[image, anchor] == 0)
    assert np.all(theirs["scores"].numpy()[image, anchor] == 0)
    np.testing.assert_allclose(ours.scores, theirs["scores"].numpy(), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------- documented behaviour


def _small_problem(rng, num_gt=6, image=64, classes=3, batch=2):
    anchors = make_anchor_points([(image // s, image // s) for s in (8, 16, 32)], (8, 16, 32))
    points = np.asarray(anchors.points * anchors.strides[:, None])
    a = points.shape[0]
    scores = rng.uniform(0.05, 0.95, (batch, a, classes)).astype(np.float32)
    distances = rng.uniform(2, 20, (batch, a, 4)).astype(np.float32)
    pred_boxes = np.concatenate([points - distances[..., :2], points + distances[..., 2:]], -1)
    size = rng.uniform(4, image / 2, (batch, num_gt, 2))
    centre = rng.uniform(size / 2, image - size / 2)
    gt = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    labels = rng.integers(0, classes, (batch, num_gt)).astype(np.int32)
    return scores, pred_boxes, points, labels, gt, np.ones((batch, num_gt), bool)


@pytest.mark.parametrize("chunk", [1, 4])
def test_chunking_over_gts_changes_nothing(chunk):
    inputs = _small_problem(np.random.default_rng(1), num_gt=9)
    whole = assign(*inputs)
    chunked = assign(*inputs, gt_chunk_size=chunk)
    for field in whole._fields:
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field), err_msg=field)


def test_padding_is_the_mask_wherever_it_sits():
    scores, pred_boxes, points, labels, gt, valid = _small_problem(np.random.default_rng(2))
    reference = assign(scores, pred_boxes, points, labels, gt, valid)
    # Interleave 3 padded slots holding garbage boxes that would overlap everything (9 slots in all).
    order = [0, -1, 1, 2, -1, 3, 4, -1, 5]
    padded_gt = np.stack([gt[:, i] if i >= 0 else np.tile([[0.0, 0.0, 64.0, 64.0]], (2, 1)) for i in order], 1)
    padded_labels = np.stack([labels[:, i] if i >= 0 else np.zeros(2, np.int32) for i in order], 1)
    padded_valid = np.array([i >= 0 for i in order])[None].repeat(2, 0)
    padded = assign(scores, pred_boxes, points, padded_labels, padded_gt.astype(np.float32), padded_valid)
    slot = np.array([i for i, j in enumerate(order) if j >= 0])
    np.testing.assert_array_equal(padded.fg_mask, reference.fg_mask)
    np.testing.assert_array_equal(np.where(reference.fg_mask, slot[reference.gt_index], 0), padded.gt_index)
    np.testing.assert_array_equal(padded.scores, reference.scores)


def test_a_valid_box_with_zero_coordinate_sum_is_a_gt():
    """ultralytics' v8DetectionLoss would call (-8, -8, 8, 8) padding (its coordinates sum to 0); jaxdet does not."""
    scores, pred_boxes, points, labels, gt, valid = _small_problem(np.random.default_rng(4), num_gt=1, batch=1)
    gt[0, 0] = [-8.0, -8.0, 8.0, 8.0]
    out = assign(scores, pred_boxes, points, labels, gt, valid)
    assert bool(out.fg_mask[0, 0])  # the anchor at (4, 4) is inside it


def test_tiny_gt_gets_candidates_through_min_gt_side():
    scores, pred_boxes, points, labels, gt, valid = _small_problem(np.random.default_rng(5), num_gt=1, batch=1)
    gt[0, 0] = [30.0, 30.0, 31.0, 31.0]  # 1 px: no anchor centre lies inside it
    pred_boxes[0] = gt[0, 0]  # every prediction on the box: positive CIoU at its (enlarged) candidates
    assert int(assign(scores, pred_boxes, points, labels, gt, valid).fg_mask.sum()) > 0
    assert int(assign(scores, pred_boxes, points, labels, gt, valid, min_gt_side=0.0).fg_mask.sum()) == 0


def test_identical_gts_resolve_to_the_first():
    scores, pred_boxes, points, labels, gt, valid = _small_problem(np.random.default_rng(6))
    gt[:, 2] = gt[:, 1]
    labels[:, 2] = labels[:, 1]
    out = assign(scores, pred_boxes, points, labels, gt, valid)
    assert not np.any(np.asarray(out.gt_index)[np.asarray(out.fg_mask)] == 2)
    assert np.any(np.asarray(out.gt_index)[np.asarray(out.fg_mask)] == 1)


def test_no_gt_slots_give_ultralytics_empty_result():
    scores, pred_boxes, points, *_ = _small_problem(np.random.default_rng(7))
    out = task_aligned_assign(scores, pred_boxes, points, np.zeros((2, 0), np.int32), np.zeros((2, 0, 4), np.float32),
                              np.zeros((2, 0), bool))
    assert np.all(np.asarray(out.labels) == scores.shape[-1])
    assert not np.any(out.fg_mask) and not np.any(out.scores) and not np.any(out.boxes)


@pytest.mark.parametrize("topk, topk2", [(7, 1), (10, 3), (7, 7), (4, 9)])
def test_topk2_matches_ultralytics(x64, topk, topk2):
    """The second top-k of YOLO26's one-to-one assigner (behaviour 8), every field; ``topk2 = topk`` is no filter
    and ``topk2 > topk`` keeps the anchors a GT gains in conflicts (ultralytics filters whenever they differ)."""
    inputs = _small_problem(np.random.default_rng(12), num_gt=9)
    inputs = [x.astype(np.float64) if x.dtype == np.float32 else x for x in inputs]
    ours = task_aligned_assign(*inputs, topk=topk, topk2=topk2)
    theirs = tal_torch(*_torch(*inputs), topk=topk, topk2=topk2)
    for field in ("fg_mask", "gt_index", "labels"):
        np.testing.assert_array_equal(getattr(ours, field), theirs[field].numpy(), err_msg=field)
    for field in ("boxes", "scores"):
        np.testing.assert_allclose(getattr(ours, field), theirs[field].numpy(), rtol=1e-12, atol=1e-15, err_msg=field)
    if topk2 == 1:  # one positive per GT at most
        gt = np.asarray(ours.gt_index)[np.asarray(ours.fg_mask)]
        batch = np.nonzero(np.asarray(ours.fg_mask))[0]
        assert len(set(zip(batch, gt))) == len(gt) > 0


def test_topk2_is_a_subset_of_the_topk_assignment():
    inputs = _small_problem(np.random.default_rng(13), num_gt=9)
    wide = assign(*inputs, topk=7)
    narrow = task_aligned_assign(*inputs, topk=7, topk2=2)
    fg_wide, fg_narrow = np.asarray(wide.fg_mask), np.asarray(narrow.fg_mask)
    assert np.all(fg_wide[fg_narrow]) and fg_narrow.sum() < fg_wide.sum()
    np.testing.assert_array_equal(np.asarray(narrow.gt_index)[fg_narrow], np.asarray(wide.gt_index)[fg_narrow])


def test_soft_scores_normalise_each_gt_to_its_best_overlap():
    out = assign(*_small_problem(np.random.default_rng(8)))
    # Each foreground anchor's score is at its GT's class only, and the best score of a GT is at most 1.
    nonzero = np.asarray(out.scores) > 0
    assert np.all(nonzero.sum(-1) <= 1)
    assert np.all(np.asarray(out.scores).max(-1)[~np.asarray(out.fg_mask)] == 0)
    assert float(out.scores.max()) <= 1.0


@pytest.mark.slow
def test_norm_eps_zero_keeps_tiny_metrics_that_ultralytics_eps_zeroes():
    """A 6 px GT under large initial predictions: the alignment metrics are far below 1e-9, so ultralytics'
    normaliser (max t + 1e-9) sends the soft scores to about 0; with norm_eps=0 each GT's best anchor gets its best
    overlap, as the formula says."""
    scores, pred_boxes, points, labels, gt, valid = _small_problem(np.random.default_rng(11), num_gt=2, batch=1)
    gt[0] = [[20.0, 20.0, 26.0, 26.0], [40.0, 36.0, 46.0, 42.0]]
    centres = (pred_boxes[..., :2] + pred_boxes[..., 2:]) / 2
    pred_boxes = np.concatenate([centres - 60.0, centres + 60.0], -1).astype(np.float32)  # 120 px predictions
    scores = np.full_like(scores, 1e-3)
    default = assign(scores, pred_boxes, points, labels, gt, valid)
    no_eps = assign(scores, pred_boxes, points, labels, gt, valid, norm_eps=0.0)
    np.testing.assert_array_equal(no_eps.fg_mask, default.fg_mask)
    assert float(default.scores.max()) < 1e-6
    per_gt_best = [float(np.max(np.where(np.asarray(no_eps.gt_index) == g, np.asarray(no_eps.scores).max(-1), 0)))
                   for g in range(2)]
    assert min(per_gt_best) > 1e-3  # about the best CIoU of a 6 px box with a 120 px one (36 / 14400)
    assert np.all(np.isfinite(no_eps.scores))
    # The default (None) is ultralytics' eps, bit for bit.
    inputs = _small_problem(np.random.default_rng(12))
    np.testing.assert_array_equal(assign(*inputs, norm_eps=1e-9).scores, assign(*inputs).scores)


@pytest.mark.slow
def test_norm_eps_zero_with_all_zero_metrics_is_zero_not_nan():
    """Predictions far from the GT: every CIoU is clamped to 0, so t = 0 at every candidate, and with norm_eps=0
    the normaliser has nothing to add to max t = 0. Scores and their Case-1 gradient stay finite (zeros)."""
    scores, pred_boxes, points, labels, gt, valid = _small_problem(np.random.default_rng(13), num_gt=1, batch=1)
    gt[0, 0] = [30.0, 30.0, 34.0, 34.0]
    pred_boxes[0] = [0.0, 0.0, 1.0, 1.0]  # far from the GT: CIoU < 0, clamped to 0
    out = assign(scores, pred_boxes, points, labels, gt, valid, norm_eps=0.0)
    assert np.all(np.asarray(out.scores) == 0)

    def total(s):
        return jnp.sum(task_aligned_assign(s, pred_boxes, points, labels, gt, valid, norm_eps=0.0,
                                           score_target="through").scores)

    assert np.all(np.isfinite(jax.grad(total)(jnp.asarray(scores))))


# ----------------------------------------------------------------------------------- gradient of the score


@pytest.mark.slow
def test_score_target_stop_and_through(x64):
    """Case 2: the soft scores carry no gradient. Case 1: they carry one to both the class scores and the boxes;
    with respect to the class scores it is the true derivative of t·max u/(max t + eps) with the assignment held
    (finite differences, float64). (With respect to the boxes it treats CIoU's α as a constant, as bbox_iou's
    no_grad α, so finite differences do not apply there.)"""
    inputs = [np.asarray(x, np.float64) if np.issubdtype(np.asarray(x).dtype, np.floating) else x
              for x in _small_problem(np.random.default_rng(9))]
    scores, pred_boxes, points, labels, gt, valid = inputs
    probe = np.random.default_rng(10).normal(size=scores.shape[:2] + (scores.shape[-1],))

    @functools.partial(jax.jit, static_argnums=0)
    def weighted(path, s, b):
        return jnp.sum(task_aligned_assign(s, b, points, labels, gt, valid, score_target=path).scores * probe)

    stop = jax.grad(weighted, argnums=(1, 2))("stop", scores, pred_boxes)
    assert all(float(jnp.abs(g).max()) == 0 for g in stop)
    through = jax.grad(weighted, argnums=(1, 2))("through", scores, pred_boxes)
    assert all(float(jnp.abs(g).max()) > 0 for g in through)
    check_grads(lambda s: weighted("through", s, pred_boxes), (scores,), order=1, modes=("rev",), eps=1e-6,
                atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "change, argname",
    [
        (lambda a: {**a, "pred_scores": a["pred_scores"][0]}, "pred_scores"),
        (lambda a: {**a, "pred_boxes": a["pred_boxes"][..., :3]}, "pred_boxes"),
        (lambda a: {**a, "anchor_points": a["anchor_points"][:-1]}, "anchor_points"),
        (lambda a: {**a, "gt_labels": a["gt_labels"].astype(np.float32)}, "gt_labels"),
        (lambda a: {**a, "gt_boxes": a["gt_boxes"].astype(np.int32)}, "gt_boxes"),
        (lambda a: {**a, "valid": a["valid"].astype(np.int32)}, "valid"),
        (lambda a: {**a, "valid": a["valid"][:, :-1]}, "valid"),
        (lambda a: {**a, "topk": 0}, "topk"),
        (lambda a: {**a, "topk": 10**6}, "topk"),
        (lambda a: {**a, "alpha": -1.0}, "alpha"),
        (lambda a: {**a, "beta": float("nan")}, "beta"),
        (lambda a: {**a, "eps": -1e-9}, "eps"),
        (lambda a: {**a, "min_gt_side": -1.0}, "min_gt_side"),
        (lambda a: {**a, "score_target": "detach"}, "score_target"),
        (lambda a: {**a, "gt_chunk_size": 0}, "gt_chunk_size"),
        (lambda a: {**a, "topk2": 0}, "topk2"),
    ],
)
def test_bad_arguments_name_the_argument(change, argname):
    names = ("pred_scores", "pred_boxes", "anchor_points", "gt_labels", "gt_boxes", "valid")
    kwargs = change(dict(zip(names, _small_problem(np.random.default_rng(11)))))
    with pytest.raises(ValueError, match=argname):
        task_aligned_assign(**kwargs)


def test_geometry_errors():
    with pytest.raises(ValueError, match="strides"):
        make_anchor_points([(4, 4), (2, 2)], (8,))
    with pytest.raises(ValueError, match="feature_shapes"):
        make_anchor_points([(4, 0)], (8,))
    with pytest.raises(ValueError, match="distances"):
        dist2bbox(np.zeros((3, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="fmt"):
        dist2bbox(np.zeros((3, 4)), np.zeros((3, 2)), fmt="xywh")
    with pytest.raises(ValueError, match="pred_dist"):
        dfl_decode(np.zeros((3, 60)))
    with pytest.raises(ValueError, match="max_distance"):
        bbox2dist(np.zeros((3, 2)), np.zeros((3, 4)), max_distance=-1.0)


# --------------------------------------------------------------------------------------- rotated boxes (OBB)

rotated_assign = jax.jit(rotated_task_aligned_assign,
                         static_argnames=("score_target", "gt_chunk_size", "topk", "min_gt_side", "topk2"))


def _rotated_problem(rng, num_gt=6, batch=2, image=64, classes=3):
    """``(scores [B, A, C], pred_rboxes [B, A, 5] px, points [A, 2] px, labels, gt_rboxes [B, G, 5] px, valid)``."""
    anchors = make_anchor_points([(image // s, image // s) for s in (8, 16, 32)], (8, 16, 32))
    points = np.asarray(anchors.points * anchors.strides[:, None])
    a = points.shape[0]
    scores = rng.uniform(0.05, 0.95, (batch, a, classes)).astype(np.float32)
    pred = np.concatenate([points + rng.normal(0, 3, (batch, a, 2)), rng.uniform(4, 30, (batch, a, 2)),
                           rng.uniform(-np.pi / 4, 3 * np.pi / 4, (batch, a, 1))], -1).astype(np.float32)
    size = rng.uniform(4, image / 2, (batch, num_gt, 2))
    centre = rng.uniform(size.max(-1, keepdims=True).repeat(2, -1) / 2, image - size.max(-1, keepdims=True) / 2)
    gt = np.concatenate([centre, size, rng.uniform(0, np.pi / 2, (batch, num_gt, 1))], -1).astype(np.float32)
    labels = rng.integers(0, classes, (batch, num_gt)).astype(np.int32)
    return scores, pred, points.astype(np.float32), labels, gt, np.ones((batch, num_gt), bool)


def test_rotated_box_coding_matches_ultralytics(x64):
    rng = np.random.default_rng(20)
    points = rng.uniform(0, 40, (5, 7, 2))
    distances = rng.uniform(0, 15, (5, 7, 4))
    angle = rng.uniform(-np.pi, np.pi, (5, 7, 1))
    ours = dist2rbox(distances, angle, points)
    np.testing.assert_allclose(ours, utal.dist2rbox(*_torch(distances, angle, points)).numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(rbox2dist(points, ours, angle), distances, atol=1e-12)
    theirs = utal.rbox2dist(*_torch(np.asarray(ours), points, angle), reg_max=15 - 1)
    np.testing.assert_array_equal(rbox2dist(points, ours, angle, max_distance=15 - 1 - 0.01), theirs.numpy())


@pytest.mark.parametrize("min_gt_side", [16.0, 0.0])
def test_rotated_candidates_match_ultralytics_select_candidates_in_gts(x64, min_gt_side):
    """The in-rotated-box test, edges included, with the small sides enlarged (behaviour 1 of the rotated
    assigner): exactly ultralytics' mask, on anchors that lie exactly on box edges too."""
    rng = np.random.default_rng(21)
    _, _, points, _, gt, valid = _rotated_problem(rng, num_gt=12)
    points, gt = points.astype(np.float64), gt.astype(np.float64)
    gt[:, :3, :2] = points[[5, 9, 40]] + np.array([4.0, 0.0])  # edges through anchors: axis-aligned 8-px boxes
    gt[:, :3, 2:] = [8.0, 8.0, 0.0]
    gt[:, 3, 2:4] = [3.0, 1.0]  # sides under min_gt_side
    valid[1, 4] = False
    ours = XYWHR.candidates(points, gt[:, :, None, :], valid[:, :, None], min_gt_side, 1e-9)
    assigner = utal.RotatedTaskAlignedAssigner(topk=10, num_classes=3, stride=[8, max(min_gt_side, 1e-30), 32])
    theirs = assigner.select_candidates_in_gts(*_torch(points, gt), torch.from_numpy(valid[..., None] * 1.0))
    np.testing.assert_array_equal(ours, theirs.numpy())
    assert np.asarray(ours).any()


@pytest.mark.parametrize("chunk", [1, 4])
def test_rotated_chunking_over_gts_changes_nothing(chunk):
    inputs = _rotated_problem(np.random.default_rng(22), num_gt=9)
    whole = rotated_assign(*inputs)
    chunked = rotated_assign(*inputs, gt_chunk_size=chunk)
    for field in whole._fields:
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field), err_msg=field)
    assert whole.boxes.shape == (2, inputs[1].shape[1], 5) and bool(whole.fg_mask.any())


def test_rotated_matches_ultralytics_with_topk2(x64):
    """The rotated assigner with YOLO26-OBB's one-to-one topk=7, topk2=1, every field (float64)."""
    inputs = [x.astype(np.float64) if x.dtype == np.float32 else x
              for x in _rotated_problem(np.random.default_rng(23), num_gt=9)]
    ours = rotated_task_aligned_assign(*inputs, topk=7, topk2=1)
    theirs = rtal_torch(*_torch(*inputs), topk=7, topk2=1)
    for field in ("fg_mask", "gt_index", "labels"):
        np.testing.assert_array_equal(getattr(ours, field), theirs[field].numpy(), err_msg=field)
    for field in ("boxes", "scores"):
        np.testing.assert_allclose(getattr(ours, field), theirs[field].numpy(), rtol=1e-12, atol=1e-15, err_msg=field)


def test_rotated_score_target_stop_and_through(x64):
    """Case 2: the rotated soft scores carry no gradient. Case 1: they carry one to the class scores and the
    rotated boxes (ProbIoU inside the metric has no constant factor, so it is the true derivative of
    t·max u/(max t + eps) with the assignment held: finite differences, float64, both inputs)."""
    inputs = [np.asarray(x, np.float64) if np.issubdtype(np.asarray(x).dtype, np.floating) else x
              for x in _rotated_problem(np.random.default_rng(24), num_gt=4)]
    scores, pred, points, labels, gt, valid = inputs
    probe = np.random.default_rng(25).normal(size=scores.shape)

    @functools.partial(jax.jit, static_argnums=0)
    def weighted(path, s, b):
        return jnp.sum(rotated_task_aligned_assign(s, b, points, labels, gt, valid, score_target=path).scores * probe)

    stop = jax.grad(weighted, argnums=(1, 2))("stop", scores, pred)
    assert all(float(jnp.abs(g).max()) == 0 for g in stop)
    through = jax.grad(weighted, argnums=(1, 2))("through", scores, pred)
    assert all(float(jnp.abs(g).max()) > 0 for g in through)
    check_grads(lambda s, b: weighted("through", s, b), (scores, pred), order=1, modes=("rev",), eps=1e-6,
                atol=1e-5, rtol=1e-5)


def test_metric_ranking_survives_float32_underflow():
    """Behaviour 9: with β = 6, overlaps below 4.8e-7 make t = s^α u^β subnormal in float32 (flushed to 0 by
    XLA:CPU). The top-k ranks 2^(mβ) t, so a GT whose candidates all have such overlaps still takes the anchors of
    largest metric, as float64 (and torch's subnormals) do, not the lowest-index ones."""
    rng = np.random.default_rng(26)
    scores, pred, points, labels, gt, valid = _rotated_problem(rng, num_gt=1, batch=1)
    gt[0, 0] = [32.0, 32.0, 40.0, 40.0, 0.0]
    pred[0] = [85.0, 85.0, 0.5, 0.5, 0.0]  # every prediction the same box far off: one ProbIoU, 2.8e-7
    with jax.enable_x64(True):
        u = float(rboxes_probiou(gt[0, 0].astype(np.float64), pred[0, 0].astype(np.float64)))
        ours64 = rotated_task_aligned_assign(*[x.astype(np.float64) if x.dtype == np.float32 else x
                                               for x in (scores, pred, points, labels, gt, valid)], topk=3)
    assert 0 < u < 4.8e-7 and float(jnp.float32(u) ** 6) == 0.0  # the case of behaviour 9
    ours32 = rotated_task_aligned_assign(scores, pred, points, labels, gt, valid, topk=3)
    np.testing.assert_array_equal(ours32.fg_mask, ours64.fg_mask)
    np.testing.assert_array_equal(ours32.gt_index, ours64.gt_index)
    # the three of largest score among the candidates, not the three candidates of lowest index
    fg = np.flatnonzero(np.asarray(ours32.fg_mask)[0])
    inside = np.flatnonzero((np.abs(points - 32.0) < 20.0).all(-1))
    assert len(fg) == 3 and set(fg) != set(inside[:3])
    best = inside[np.argsort(-scores[0, inside, labels[0, 0]])[:3]]
    assert set(fg) == set(best)
