"""Parity cases of the YOLO networks (v8, 11, 26) against ultralytics' ``DetectionModel(f"{name}.yaml", nc=C)``.

The ultralytics model is built with random weights (seeded, ``YOLO_OFFLINE``-safe: nothing is downloaded)
and random BatchNorm affine parameters and running statistics; :func:`jaxdet.models.load_ultralytics`
imports it. The harness inputs are the channels-last images **and every parameter** (NNX layout, kernels
``[k, k, I, O]``; the torch side transposes them back inside autograd), so the compared gradients are the
VJPs of the outputs w.r.t. the images and every parameter. The BatchNorm running statistics are further
(non-differentiated) inputs. One set of rows per model of :data:`MODELS` (``<name>`` = yolov8n, yolo11n,
yolo26n):

- ``<name>_model_eval``: eval mode, the three per-level outputs ``[N, H/s, W/s, 4·reg_max + C]``; for yolo26n
  both heads, ``{"one2many": levels, "one2one": levels}`` (eval mode: the one-to-one branches see the features
  undetached, so their VJP reaches the backbone as in ultralytics).
- ``<name>_model_train``: train mode (batch statistics), the outputs (yolo26n: both heads, the one-to-one
  branches on detached features) and every updated running mean and running variance (torch's
  unbiased-variance update, momentum 0.03).
- ``<name>_model_loss`` (yolov8n, yolo11n, whose loss is v8's): the train-mode outputs through the ``yolov8``
  head's loss (:func:`jaxdet.losses.yolov8.yolov8_loss`) against ``v8DetectionLoss`` (its terms divided by the
  batch size, :func:`jaxdet.parity.torch_yolov8.v8_detection_loss_torch`): the total and the three terms, and
  their gradient w.r.t. the images and every parameter (torch autograd through the whole network). 64-px
  square images, 84 anchors, three GT slots per image, one of them padding.
- ``yolo26n_model_loss``: the train-mode outputs of both heads through YOLO26's end-to-end loss
  (:func:`jaxdet.losses.yolo26.yolo26_loss` at step 0: weights 0.8 one-to-many, 0.2 one-to-one) against
  ``E2ELoss`` at epoch 0 (:func:`jaxdet.parity.torch_yolo26.e2e_loss_torch`): the weighted total and terms
  (box, cls, l1) and each branch's, and their gradient w.r.t. the images and every parameter (the one-to-one
  branches' gradient stops at the detached features). Same images and GTs as the v8 loss rows.

The train-mode rows leave out the few parameters whose gradient is zero in exact arithmetic there (the biases
of the PSABlocks' unactivated BatchNorms, :func:`_zero_in_train_mode`): both sides give rounding noise.
"""

from __future__ import annotations

import copy
import functools
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdet.losses.yolo26 import yolo26_loss
from jaxdet.models.ultralytics_io import load_ultralytics, tensor_name
from jaxdet.models.yolo import YOLO
from jaxdet.models.yolov8_head import YOLOv8Head
from jaxdet.parity.core import ParityCase
from jaxdet.tal import make_anchor_points

NUM_CLASSES = 5
IMAGE_SHAPE = (2, 64, 96, 3)  # [N, H, W, 3]: levels 8×12, 4×6, 2×3
#: the models with rows, as ultralytics names their yaml (``<name>.yaml``).
MODELS = ("yolov8n", "yolo11n", "yolo26n")
#: the models whose loss is v8's (``v8DetectionLoss``).
V8_LOSS_MODELS = ("yolov8n", "yolo11n")
#: the models whose loss is YOLO26's end-to-end loss (``E2ELoss``).
E2E_LOSS_MODELS = ("yolo26n",)
STRIDES = (8, 16, 32)


@functools.lru_cache(maxsize=None)
def ultralytics_model(name: str = "yolov8n", num_classes: int = NUM_CLASSES, seed: int = 0):
    """A float64 ``DetectionModel(f"{name}.yaml", nc=num_classes)`` with random BN statistics (``OBBModel`` for
    a name ending in ``-obb``, e.g. "yolov8n-obb").

    The BatchNorm weights are drawn from U(0.5, 1.5), biases and running means from N(0, 0.2²) and N(0, 0.5²),
    running variances from U(0.5, 1.5), so eval mode differs from train mode and from the identity.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs
    from ultralytics.nn.tasks import DetectionModel, OBBModel  # noqa: PLC0415 - torch side, after YOLO_OFFLINE is set

    torch.manual_seed(seed)
    model = (OBBModel if name.endswith("-obb") else DetectionModel)(f"{name}.yaml", nc=num_classes, verbose=False)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return model.double()


@functools.lru_cache(maxsize=None)
def _layout(name: str, num_classes: int):
    """The NNX model's graphdef and the flat paths of its Params and BatchStats (the harness input order)."""
    model = load_ultralytics(ultralytics_model(name, num_classes), param_dtype=jnp.float32)
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    param_paths = tuple(p for p, _ in nnx.to_flat_state(params))
    assert param_paths == tuple(p for p, _ in nnx.to_flat_state(nnx.state(_abstract(name, num_classes), nnx.Param)))
    return graphdef, param_paths, tuple(p for p, _ in nnx.to_flat_state(stats))


def _numpy_weights(name: str, num_classes: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Params and BatchStats of the ultralytics model as float64 numpy arrays in the NNX layout."""
    _, param_paths, stat_paths = _layout(name, num_classes)
    state = {k: v.detach().numpy() for k, v in ultralytics_model(name, num_classes).state_dict().items()}

    def get(path):
        value = state[tensor_name(path)]
        return value.transpose(2, 3, 1, 0) if path[-1] == "kernel" else value

    return [get(p) for p in param_paths], [get(p) for p in stat_paths]


def make_inputs(rng: np.random.Generator, *, name: str = "yolov8n", num_classes: int = NUM_CLASSES,
                image_shape=IMAGE_SHAPE) -> tuple[np.ndarray, ...]:
    """``(images [N, H, W, 3], *params, *running statistics)`` as float64 numpy arrays."""
    params, stats = _numpy_weights(name, num_classes)
    images = rng.uniform(0.0, 1.0, image_shape)
    return (images, *params, *stats)


def jax_forward(*inputs, name: str = "yolov8n", num_classes: int = NUM_CLASSES, train: bool):
    """The jaxdet model of ``inputs``: its outputs (per-level tuple, or yolo26's dict of both heads), plus the
    updated statistics in train mode."""
    graphdef, param_paths, stat_paths = _layout(name, num_classes)
    images, rest = inputs[0], inputs[1:]
    params = nnx.from_flat_state(list(zip(param_paths, [nnx.Param(a) for a in rest[: len(param_paths)]])))
    stats = nnx.from_flat_state(list(zip(stat_paths, [nnx.BatchStat(a) for a in rest[len(param_paths):]])))
    model = nnx.merge(graphdef, params, stats, copy=True)
    model.param_dtype = jnp.dtype(images.dtype)
    if not train:
        model.eval()
        return model(images)
    outputs = model(images)
    return outputs, [v[...] for _, v in nnx.to_flat_state(nnx.state(model, nnx.BatchStat))]


def _levels(preds, n: int):
    """ultralytics' ``{"boxes" [N, 4·reg_max, A], "scores" [N, C, A], "feats"}`` (OBB: and ``"angle" [N, 1, A]``)
    as jaxdet's per-level maps ``[N, H/s, W/s, 4·reg_max + C (+ 1)]``; :func:`torch_levels` below puts the raw
    angle into ``"angle"``."""
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    levels = [f.shape[2:] for f in preds["feats"]]
    sizes = [int(h * w) for h, w in levels]
    parts = [preds[k].split(sizes, -1) for k in ("boxes", "scores", "angle") if k in preds]
    return tuple(torch.cat(level, 1).reshape(n, -1, h, w).permute(0, 2, 3, 1)
                 for (h, w), level in zip(levels, zip(*parts)))


def torch_levels(head, run, n: int):
    """The head outputs of ``run()`` (a forward through an ultralytics model whose head, ``Detect`` / ``OBB``, is
    ``head``, or through the head itself) in jaxdet's layout: per level ``[N, H/s, W/s, 4·reg_max + C]`` (a tuple,
    or ``{"one2many", "one2one"}``), for OBB with the raw angle-branch output last: ultralytics' ``preds["angle"]``
    holds the decoded angle, so the outputs of the last convolutions of ``cv4`` / ``one2one_cv4`` are taken by
    forward hooks (autograd runs through them as through the rest)."""
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    raw: dict = {}

    def keep(key):
        def hook(module, inputs, output):
            raw[key] = output
        return hook

    hooks = [branch[-1].register_forward_hook(keep((name, i)))
             for name in ("cv4", "one2one_cv4") for i, branch in enumerate(getattr(head, name, None) or ())]
    try:
        out = run()
    finally:
        for h in hooks:
            h.remove()
    preds = out[1] if isinstance(out, tuple) else out  # eval mode: (decoded, raw preds)

    def levels(p, name):
        if "angle" in p:
            p = {**p, "angle": torch.cat([raw[(name, i)].flatten(2) for i in range(len(p["feats"]))], -1)}
        return _levels(p, n)

    if "one2one" in preds:
        return {"one2many": levels(preds["one2many"], "cv4"), "one2one": levels(preds["one2one"], "one2one_cv4")}
    return levels(preds, "cv4")


def torch_model_call(*tensors, name: str = "yolov8n", num_classes: int = NUM_CLASSES, train: bool):
    """``(model, run, weights)``: a copy of ultralytics' model in train or eval mode, ``run()`` calling it on the
    images with the inputs' parameters and statistics (``torch.func.functional_call``: autograd reaches them), and
    those weights by state-dict key (train mode: the statistics are updated in place)."""
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    _, param_paths, stat_paths = _layout(name, num_classes)
    images, rest = tensors[0], tensors[1:]
    model = copy.deepcopy(ultralytics_model(name, num_classes)).to(images.dtype)
    weights = {}
    for path, t in zip(param_paths + stat_paths, rest):
        weights[tensor_name(path)] = t.permute(3, 2, 0, 1) if path[-1] == "kernel" else t.clone()
    model.train(train)
    x = images.permute(0, 3, 1, 2)
    return model, lambda: torch.func.functional_call(model, weights, (x,)), weights


def torch_forward(*tensors, name: str = "yolov8n", num_classes: int = NUM_CLASSES, train: bool):
    """ultralytics' model on the same inputs (``torch.func.functional_call``), in the jaxdet output layout."""
    model, run, weights = torch_model_call(*tensors, name=name, num_classes=num_classes, train=train)
    outputs = torch_levels(model.model[-1], run, tensors[0].shape[0])
    if not train:
        return outputs
    return outputs, [weights[tensor_name(p)] for p in _layout(name, num_classes)[2]]


LOSS_IMAGE = 64


def make_loss_inputs(rng: np.random.Generator, *, name: str = "yolov8n") -> tuple[np.ndarray, ...]:
    """``(images [2, 64, 64, 3], *params, *statistics, gt_labels [2, 3], gt_boxes [2, 3, 4] px, valid [2, 3])``."""
    base = make_inputs(rng, name=name, image_shape=(2, LOSS_IMAGE, LOSS_IMAGE, 3))
    size = rng.uniform(8.0, 40.0, (2, 3, 2))
    centre = rng.uniform(size / 2, LOSS_IMAGE - size / 2)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    valid = np.array([[True, True, False], [True, False, False]])
    boxes = np.where(valid[..., None], boxes, 0.0)
    labels = np.where(valid, rng.integers(0, NUM_CLASSES, (2, 3)), 0).astype(np.int32)
    return (*base, labels, boxes, valid)


def jax_loss(*inputs, name: str = "yolov8n"):
    """The yolov8 head's loss of the jaxdet model's train-mode outputs: ``{"total", "box", "cls", "dfl"}``."""
    *net, labels, boxes, valid = inputs
    outputs, _ = jax_forward(*net, name=name, train=True)
    batch = {"boxes": boxes / LOSS_IMAGE, "classes": labels, "valid": valid}
    total, metrics, _ = YOLOv8Head(num_classes=NUM_CLASSES).loss(outputs, batch, step=0, state={})
    return {"total": total, "box": metrics["box"], "cls": metrics["cls"], "dfl": metrics["dfl"]}


def torch_loss(*tensors, name: str = "yolov8n"):
    """``v8DetectionLoss`` of ultralytics' train-mode outputs (per-level maps flattened to ``[B, A, 64 + C]``)."""
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    from jaxdet.parity.torch_yolov8 import v8_detection_loss_torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    *net, labels, boxes, valid = tensors
    outputs, _ = torch_forward(*net, name=name, train=True)
    flat = torch.cat([o.reshape(o.shape[0], -1, o.shape[-1]) for o in outputs], 1)
    return v8_detection_loss_torch(flat, labels, boxes, valid, image_size=LOSS_IMAGE)


def _yolo26_terms(result) -> dict:
    """:class:`jaxdet.losses.yolo26.Yolo26Loss` as ``e2e_loss_torch``'s dict: the weighted total and terms, and each
    branch's total and terms."""
    def branch(r):
        return {"total": r.total, **r.terms}

    return {"total": result.total, **result.terms, "one2many": branch(result.one2many),
            "one2one": branch(result.one2one)}


def jax_e2e_loss(*inputs, name: str = "yolo26n"):
    """YOLO26's end-to-end loss (:func:`jaxdet.losses.yolo26.yolo26_loss`, epoch 0: weights 0.8 / 0.2) of the jaxdet
    model's train-mode outputs of both heads: ``{"total", "box", "cls", "l1", "one2many": {...}, "one2one": {...}}``."""
    *net, labels, boxes, valid = inputs
    outputs, _ = jax_forward(*net, name=name, train=True)
    shapes = [tuple(o.shape[1:3]) for o in outputs["one2many"]]
    points, strides = make_anchor_points(shapes, STRIDES, dtype=boxes.dtype)
    result = yolo26_loss(outputs, points, strides, labels, boxes, valid, step=0)
    return _yolo26_terms(result)


def torch_e2e_loss(*tensors, name: str = "yolo26n"):
    """ultralytics' ``E2ELoss`` at epoch 0 of 100 of ultralytics' train-mode outputs of both heads (per-level maps
    flattened to ``[B, A, 4 + C]``), autograd through the network."""
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    from jaxdet.parity.torch_yolo26 import e2e_loss_torch  # noqa: PLC0415 - torch side: imported only when a comparison runs

    *net, labels, boxes, valid = tensors
    outputs, _ = torch_forward(*net, name=name, train=True)
    flat = {k: torch.cat([o.reshape(o.shape[0], -1, o.shape[-1]) for o in levels], 1) for k, levels in outputs.items()}
    return e2e_loss_torch(flat["one2many"], flat["one2one"], labels, boxes, valid, image_size=LOSS_IMAGE, epoch=0,
                          epochs=100)


def _zero_in_train_mode(model, path: tuple) -> bool:
    """A parameter whose gradient is zero in exact arithmetic in train mode: a BatchNorm bias that adds a
    per-channel constant reaching the next train-mode BatchNorm (which subtracts the batch mean) only through
    linear maps, residual sums and max-pooling (which commutes with adding a constant):

    - a PSABlock's three unactivated BatchNorms (``attn.pe``, ``attn.proj``, ``ffn.1``; 11 and 26);
    - YOLO26's unactivated SPPF ``cv1`` (then three max-pools, a concat and ``cv2``).

    Both libraries give rounding noise there (about 1e-14 in float64), whose ratio is no measure, so these are
    left out of the train-mode rows' ``wrt`` (the eval rows compare them)."""
    if tuple(str(p) for p in path[-2:]) != ("bn", "bias"):
        return False
    owner, parent = model, None
    for key in path[:-2]:
        parent, owner = owner, owner[key] if isinstance(key, int) else getattr(owner, key)
    tail = tuple(str(p) for p in path[-4:-2])
    if tail in (("attn", "pe"), ("attn", "proj"), ("ffn", "1")):
        return True
    return type(parent).__name__ == "SPPF" and path[-3] == "cv1" and not owner.act


@functools.lru_cache(maxsize=None)
def _abstract(name: str, num_classes: int = NUM_CLASSES) -> YOLO:
    """The jaxdet model of ``name`` (e.g. "yolo26n" -> version "26", scale "n"; "yolov8n-obb" -> task "obb") built
    abstractly: its parameter paths, in the order of :func:`_layout`'s, without building the torch model (the rows
    are listed cheaply)."""
    base, obb = name.removesuffix("-obb"), name.endswith("-obb")
    return nnx.eval_shape(lambda: YOLO(version=base[4:-1], scale=base[-1], task="obb" if obb else "detect",
                                       num_classes=num_classes, rngs=nnx.Rngs(0)))


def _wrt(name: str, num_classes: int = NUM_CLASSES, *, train: bool) -> tuple[int, ...]:
    """The images and every parameter (train mode: but those of :func:`_zero_in_train_mode`)."""
    model = _abstract(name, num_classes)
    paths = [p for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]
    return (0, *(1 + i for i, p in enumerate(paths) if not (train and _zero_in_train_mode(model, p))))


#: float32 tolerances of the train-mode rows of the C3k2/C2PSA networks (jaxdet's float32 against torch's float64
#: result). Their float32 gradient error sits in the parameters at the stride-32 level, whose train-mode BatchNorms
#: normalise 2×2 maps of two images: the gradient there nearly cancels (``|g|`` about 1e-5 against 1e-1 elsewhere),
#: and torch's own float32 error is as large: yolo11n loss 3.6e-3 (jaxdet 2.1e-3), train 2.5e-4. YOLOv8n (C2f) keeps
#: 1e-4. tests/models/test_yolo.py checks jaxdet's float32 error against torch's own on these rows.
RTOL32_TRAIN = {"yolov8n": 1e-4, "yolo11n": 5e-4, "yolo26n": 5e-4}
RTOL32_LOSS = {"yolov8n": 1e-4, "yolo11n": 5e-3, "yolo26n": 5e-3}


def model_cases(name: str) -> list[ParityCase]:
    """The rows of one model of :data:`MODELS` (module doc)."""
    heads = " (one2many + one2one)" if name.startswith("yolo26") else ""
    model = "OBBModel" if name.endswith("-obb") else "DetectionModel"
    label = name.replace("-", "_")  # the row's name, e.g. yolov8n_obb_model_eval
    rows = [
        ParityCase(
            name=f"{label}_model_eval",
            reference=f"ultralytics {model}('{name}.yaml') eval{heads}",
            jax_fn=functools.partial(jax_forward, name=name, train=False),
            torch_fn=functools.partial(torch_forward, name=name, train=False),
            make_inputs=functools.partial(make_inputs, name=name),
            wrt=_wrt(name, train=False),
            rtol32=1e-4,
        ),
        ParityCase(
            name=f"{label}_model_train",
            reference=f"ultralytics {model}('{name}.yaml') train{heads} + BN stats",
            jax_fn=functools.partial(jax_forward, name=name, train=True),
            torch_fn=functools.partial(torch_forward, name=name, train=True),
            make_inputs=functools.partial(make_inputs, name=name),
            wrt=_wrt(name, train=True),
            rtol32=RTOL32_TRAIN[name.removesuffix("-obb")],
        ),
    ]
    if name in E2E_LOSS_MODELS:
        rows.append(ParityCase(
            name=f"{label}_model_loss",
            reference=f"ultralytics E2ELoss(DetectionModel('{name}.yaml')) train, autograd",
            jax_fn=functools.partial(jax_e2e_loss, name=name),
            torch_fn=functools.partial(torch_e2e_loss, name=name),
            make_inputs=functools.partial(make_loss_inputs, name=name),
            wrt=_wrt(name, train=True),
            rtol64=1e-8,
            rtol32=RTOL32_LOSS[name],
        ))
    if name in V8_LOSS_MODELS:
        rows.append(ParityCase(
            name=f"{label}_model_loss",
            reference=f"ultralytics v8DetectionLoss(DetectionModel('{name}.yaml')) train, autograd",
            jax_fn=functools.partial(jax_loss, name=name),
            torch_fn=functools.partial(torch_loss, name=name),
            make_inputs=functools.partial(make_loss_inputs, name=name),
            wrt=_wrt(name, train=True),
            rtol64=1e-8,
            rtol32=RTOL32_LOSS[name],
        ))
    return rows


def cases() -> list[ParityCase]:
    return [case for name in MODELS for case in model_cases(name)]
