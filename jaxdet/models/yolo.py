"""The ultralytics YOLO detection networks v8, 11 and 26 and their oriented-box (OBB) forms in Flax NNX: one
builder over the yamls' layer tables.

Each version is its yaml (``ultralytics/cfg/models/{v8/yolov8,11/yolo11,26/yolo26}.yaml``) written as a layer
table, ``(from, repeats, module, args)`` per row, with the yaml's scales and head settings (:data:`VERSIONS`);
:class:`YOLO` builds any of them at any scale, with the blocks of :mod:`jaxdet.models.blocks`:

    v8:  backbone Conv(3×3, s2) ×2, C2f, [Conv(s2), C2f] ×3, SPPF              (P3/8, P4/16, P5/32 saved)
         neck: upsample + concat + C2f (top-down), Conv(s2) + concat + C2f (bottom-up); legacy Detect, DFL 16
    11:  C3k2 for C2f, C2PSA after SPPF (layer 10), so Detect is layer 23; depthwise class branch
    26:  as 11, SPPF ``[1024, 5, 3, True]`` (unactivated cv1, residual), the last neck C3k2 with ``attn=True``;
         ``reg_max = 1`` (no DFL bins) and ``end2end`` (the one-to-one branches of :class:`~.blocks.Detect`)

The scale ``(depth d, width w, max channels)`` multiplies the yaml's channels and repeats as ultralytics'
``parse_model`` does:

.. math::
    c = 8 \\lceil \\min(c_{yaml}, c_{max}) \\cdot w / 8 \\rceil, \\qquad
    n = \\max(\\operatorname{round}(n_{yaml} \\cdot d), 1) \\text{ if } n_{yaml} > 1 \\text{ else } n_{yaml},

the repeats going into the block (C2f, C3k2, C2PSA build ``n`` inner blocks). Its further rules, reproduced here:
``C3k2``'s ``c3k`` is forced True at scales m, l and x; a network with any C3k2 gets the non-legacy (depthwise)
class branch; an SPPF row with two arguments keeps its ``cv1`` activated; the attention blocks have
``max(c // 64, 1)`` heads of their own width ``c`` (so they grow with the width, not with the yaml).

``model(images [N, H, W, 3])`` (H and W multiples of 32) returns, for v8 and 11, a tuple of three arrays, one
per level (strides 8, 16, 32), each ``[N, H/s, W/s, 4·reg_max + C]``: the raw box values (``reg_max = 16``: the
DFL logits of ``l, t, r, b`` × ``reg_max`` bins, side-major as ultralytics' ``view(b, 4, reg_max, a)``;
``reg_max = 1``: the four distances in stride units) then the C class logits. Flattening a level's
``H/s × W/s`` cells row-major gives ultralytics' anchor order. With ``end2end`` (YOLO26's default) it returns
``{"one2many": (3 levels), "one2one": (3 levels)}`` with the same per-level layout; in train mode the
one-to-one levels are computed on ``stop_gradient``-ed features (ultralytics detaches them), so gradients of a
one-to-one loss reach only ``one2one_cv2`` / ``one2one_cv3``.

``task="obb"`` builds ``{v8/yolov8,11/yolo11,26/yolo26}-obb.yaml``: the same backbone, neck, scales, ``reg_max``
and ``end2end`` (the ``-obb`` yamls change only the last row), with the head :class:`~.blocks.OBB` in place of
Detect (ultralytics ``OBB [nc, 1]`` for v8 and 11, ``OBB26 [nc, 1]`` for 26). Each level then has one more
channel, last: ``[N, H/s, W/s, 4·reg_max + C + 1]``, the raw output ``a`` of the angle branch ``cv4`` (a logit, as
the class channels are). The model's ``angle_activation`` says how the loss and the decoder turn it into the
box angle θ in radians (:mod:`jaxdet.losses.obb`): "sigmoid" (``OBB``, v8 and 11): ``θ = (σ(a) − 1/4)·π ∈
[−π/4, 3π/4)``; "none" (``OBB26``): ``θ = a``. ultralytics applies it in the head, so its ``preds["angle"]
[N, 1, A]`` (the input of ``v8OBBLoss``) is θ; its ``preds["boxes"] [N, 4·reg_max, A]`` and ``preds["scores"]
[N, C, A]`` are a level's channels flattened over its ``H/s × W/s`` cells row-major and concatenated over the
levels. The dict of the two heads of YOLO26-obb holds such levels.

BatchNorm statistics are ``nnx.BatchStat`` variables (:class:`~.blocks.BatchNorm`, torch's semantics with
ultralytics' eps 1e-3, momentum 0.03); ``model.eval()`` switches to the running averages (and turns off the
one-to-one detach, as ultralytics' eval mode). Parameters are created in ``param_dtype`` (float32; float64 for
parity), ``dtype`` (e.g. bfloat16) is the compute dtype of the convolutions, and the outputs are returned in
``param_dtype``.

The module tree mirrors ultralytics' ``DetectionModel`` (``model.<i>.cv1.conv.kernel`` ↔
``model.<i>.cv1.conv.weight``), so weight import/export (:mod:`jaxdet.models.ultralytics_io`) is a renaming
plus a kernel transpose.

References:
  Ultralytics YOLOv8 (2023), YOLO11 (2024), YOLO26 (2026): ``ultralytics/cfg/models/{v8,11,26}/*.yaml``,
  ``ultralytics/cfg/models/{v8/yolov8,11/yolo11,26/yolo26}-obb.yaml``, ``ultralytics/nn/tasks.py``
  (``parse_model``, ``OBBModel``), ``ultralytics/nn/modules/{conv,block,head}.py`` (8.4.190).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxdet import _checks
from jaxdet.models.blocks import C2PSA, OBB, SPPF, C2f, C3k2, Concat, Conv, Detect, Upsample
from jaxdet.models.inputs import unit_images

__all__ = [
    "TASKS",
    "VERSIONS",
    "YOLOV8_LAYERS",
    "YOLO11_LAYERS",
    "YOLO26_LAYERS",
    "YOLOVersion",
    "YOLO",
    "count_params",
    "scaled_channels",
    "scaled_repeats",
]

Layers = tuple[tuple[Any, int, str, tuple], ...]

#: ``yolov8.yaml``'s layers: ``(from, repeats, module, args)``; ``from`` is -1 (previous) or layer indices.
YOLOV8_LAYERS: Layers = (
    (-1, 1, "Conv", (64, 3, 2)),  # 0 P1/2
    (-1, 1, "Conv", (128, 3, 2)),  # 1 P2/4
    (-1, 3, "C2f", (128, True)),
    (-1, 1, "Conv", (256, 3, 2)),  # 3 P3/8
    (-1, 6, "C2f", (256, True)),
    (-1, 1, "Conv", (512, 3, 2)),  # 5 P4/16
    (-1, 6, "C2f", (512, True)),
    (-1, 1, "Conv", (1024, 3, 2)),  # 7 P5/32
    (-1, 3, "C2f", (1024, True)),
    (-1, 1, "SPPF", (1024, 5)),  # 9
    (-1, 1, "Upsample", ()),
    ((-1, 6), 1, "Concat", ()),
    (-1, 3, "C2f", (512,)),  # 12
    (-1, 1, "Upsample", ()),
    ((-1, 4), 1, "Concat", ()),
    (-1, 3, "C2f", (256,)),  # 15 (P3/8)
    (-1, 1, "Conv", (256, 3, 2)),
    ((-1, 12), 1, "Concat", ()),
    (-1, 3, "C2f", (512,)),  # 18 (P4/16)
    (-1, 1, "Conv", (512, 3, 2)),
    ((-1, 9), 1, "Concat", ()),
    (-1, 3, "C2f", (1024,)),  # 21 (P5/32)
    ((15, 18, 21), 1, "Detect", ()),
)


def _yolo11_like(sppf: tuple, last_neck: tuple, neck_c3k: bool) -> Layers:
    """The shared table of ``yolo11.yaml`` and ``yolo26.yaml``; they differ in SPPF, the neck's c3k flags and
    the last neck block (C3k2 args ``(c2, c3k, e, attn)``)."""
    return (
        (-1, 1, "Conv", (64, 3, 2)),  # 0 P1/2
        (-1, 1, "Conv", (128, 3, 2)),  # 1 P2/4
        (-1, 2, "C3k2", (256, False, 0.25)),
        (-1, 1, "Conv", (256, 3, 2)),  # 3 P3/8
        (-1, 2, "C3k2", (512, False, 0.25)),
        (-1, 1, "Conv", (512, 3, 2)),  # 5 P4/16
        (-1, 2, "C3k2", (512, True)),
        (-1, 1, "Conv", (1024, 3, 2)),  # 7 P5/32
        (-1, 2, "C3k2", (1024, True)),
        (-1, 1, "SPPF", sppf),  # 9
        (-1, 2, "C2PSA", (1024,)),  # 10
        (-1, 1, "Upsample", ()),
        ((-1, 6), 1, "Concat", ()),
        (-1, 2, "C3k2", (512, neck_c3k)),  # 13
        (-1, 1, "Upsample", ()),
        ((-1, 4), 1, "Concat", ()),
        (-1, 2, "C3k2", (256, neck_c3k)),  # 16 (P3/8)
        (-1, 1, "Conv", (256, 3, 2)),
        ((-1, 13), 1, "Concat", ()),
        (-1, 2, "C3k2", (512, neck_c3k)),  # 19 (P4/16)
        (-1, 1, "Conv", (512, 3, 2)),
        ((-1, 10), 1, "Concat", ()),
        last_neck,  # 22 (P5/32)
        ((16, 19, 22), 1, "Detect", ()),
    )


#: ``yolo11.yaml``'s layers.
YOLO11_LAYERS: Layers = _yolo11_like((1024, 5), (-1, 2, "C3k2", (1024, True)), neck_c3k=False)
#: ``yolo26.yaml``'s layers.
YOLO26_LAYERS: Layers = _yolo11_like((1024, 5, 3, True), (-1, 1, "C3k2", (1024, True, 0.5, True)), neck_c3k=True)


@dataclasses.dataclass(frozen=True)
class YOLOVersion:
    """One yaml: its layer table, ``scales`` (scale -> (depth, width, max channels)) and head defaults;
    ``angle_activation``: that of its ``-obb`` yaml's head ("sigmoid": ``OBB``; "none": ``OBB26``)."""

    layers: Layers
    scales: dict[str, tuple[float, float, int]]
    reg_max: int = 16
    end2end: bool = False
    angle_activation: str = "sigmoid"

    @property
    def detect_index(self) -> int:
        """The Detect layer's index (22 for v8, 23 for 11 and 26)."""
        return len(self.layers) - 1


#: version -> its yaml: "v8" (``yolov8.yaml``), "11" (``yolo11.yaml``), "26" (``yolo26.yaml``).
VERSIONS: dict[str, YOLOVersion] = {
    "v8": YOLOVersion(YOLOV8_LAYERS, {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768),
                                      "l": (1.00, 1.00, 512), "x": (1.00, 1.25, 512)}),
    "11": YOLOVersion(YOLO11_LAYERS, {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024), "m": (0.50, 1.00, 512),
                                      "l": (1.00, 1.00, 512), "x": (1.00, 1.50, 512)}),
    "26": YOLOVersion(YOLO26_LAYERS, {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024), "m": (0.50, 1.00, 512),
                                      "l": (1.00, 1.00, 512), "x": (1.00, 1.50, 512)}, reg_max=1, end2end=True,
                      angle_activation="none"),
}

#: the heads :class:`YOLO` builds: "detect" (``Detect``, ``<name>.yaml``) and "obb" (``OBB`` / ``OBB26``,
#: ``<name>-obb.yaml``).
TASKS = ("detect", "obb")

#: parse_model forces C3k2's c3k flag at these scales.
C3K_SCALES = ("m", "l", "x")


def scaled_channels(channels: int, width: float, max_channels: int) -> int:
    """``make_divisible(min(c, max_channels) · width, 8)``: a yaml channel count at one scale."""
    return int(math.ceil(min(channels, max_channels) * width / 8) * 8)


def scaled_repeats(repeats: int, depth: float) -> int:
    """``max(round(n · depth), 1)`` for ``n > 1`` (else ``n``): a yaml repeat count at one scale."""
    return max(round(repeats * depth), 1) if repeats > 1 else repeats


def _arg(args: tuple, i: int, default: Any) -> Any:
    return args[i] if len(args) > i else default


class YOLO(nnx.Module):
    """An ultralytics YOLO detection network (see the module docstring), randomly initialised as torch would
    (``U(±1/sqrt(fan_in))`` conv weights and biases) with ultralytics' Detect biases.

    Args:
      version: "v8" | "11" | "26" (:data:`VERSIONS`).
      scale: "n" | "s" | "m" | "l" | "x".
      task: "detect" (``Detect``) | "obb" (oriented boxes: ``OBB``, for 26 ``OBB26``; one angle channel more per
        level), :data:`TASKS`.
      num_classes: C.
      reg_max: box bins per side; default the yaml's (16 for v8 and 11, 1 for 26).
      end2end: add the one-to-one branches; default the yaml's (True for 26 only).
      rngs, param_dtype, dtype: initialisation keys, parameter dtype, compute dtype (None: ``param_dtype``).

    Attributes:
      model: the layers (``nnx.List``, index = ultralytics' layer index; the last is the Detect / OBB head).
      version, scale, task, num_classes, reg_max, end2end: its configuration; name: e.g. "yolo26n",
      "yolov8n-obb"; angle_activation: ``task="obb"``: how the angle channel becomes the angle ("sigmoid" for v8
      and 11, "none" for 26; the ``angle_activation`` of :func:`jaxdet.losses.obb.obb_loss`), else None;
      strides: ``(8, 16, 32)``; dtype, param_dtype.
    """

    def __init__(self, *, version: str, scale: str = "n", task: str = "detect", num_classes: int = 80,
                 reg_max: int | None = None, end2end: bool | None = None, rngs: nnx.Rngs,
                 param_dtype=jax.numpy.float32, dtype=None):
        spec = VERSIONS[_checks.choice(version, "version", tuple(VERSIONS))]
        _checks.choice(scale, "scale", tuple(spec.scales))
        _checks.choice(task, "task", TASKS)
        _checks.positive_int(num_classes, "num_classes")
        reg_max = _checks.positive_int(spec.reg_max if reg_max is None else reg_max, "reg_max")
        end2end = spec.end2end if end2end is None else end2end
        _checks.choice(end2end, "end2end", (False, True))
        depth, width, max_ch = spec.scales[scale]
        legacy = not any(row[2] == "C3k2" for row in spec.layers)  # parse_model: legacy until a C3k2 appears
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        ch, strides, layers, sources = [3], [1], [], []
        for i, (src, n, kind, args) in enumerate(spec.layers):
            src_idx = tuple(j if j >= 0 else i + j for j in ((src,) if isinstance(src, int) else src))
            c_in = ch[src_idx[0] + 1]
            stride = strides[src_idx[0] + 1]
            c_out = scaled_channels(args[0], width, max_ch) if args else c_in
            n = scaled_repeats(n, depth)
            if kind == "Conv":
                layers.append(Conv(c_in, c_out, args[1], args[2], **kw))
                stride *= args[2]
            elif kind == "C2f":
                layers.append(C2f(c_in, c_out, n, bool(_arg(args, 1, False)), **kw))
            elif kind == "C3k2":
                c3k = bool(_arg(args, 1, False)) or scale in C3K_SCALES
                layers.append(C3k2(c_in, c_out, n, c3k, _arg(args, 2, 0.5), bool(_arg(args, 3, False)), **kw))
            elif kind == "C2PSA":
                layers.append(C2PSA(c_in, c_out, n, **kw))
            elif kind == "SPPF":
                layers.append(SPPF(c_in, c_out, args[1], _arg(args, 2, 3), bool(_arg(args, 3, False)),
                                   cv1_act=len(args) <= 2, **kw))
            elif kind == "Upsample":
                stride //= 2
                layers.append(Upsample())
            elif kind == "Concat":
                c_out = sum(ch[j + 1] for j in src_idx)
                layers.append(Concat())
            else:  # Detect, or OBB for the -obb yamls
                c_out = 0
                head = (Detect, dict()) if task == "detect" else (OBB, dict(angle_activation=spec.angle_activation))
                layers.append(head[0](num_classes, [ch[j + 1] for j in src_idx], [strides[j + 1] for j in src_idx],
                                      reg_max=reg_max, legacy=legacy, end2end=end2end, **head[1], **kw))
            ch.append(c_out)
            strides.append(stride)
            sources.append(src_idx)
        self.model = nnx.List(layers)
        self.sources = tuple(sources)
        self.version, self.scale, self.task, self.num_classes = version, scale, task, num_classes
        self.reg_max, self.end2end = reg_max, bool(end2end)
        self.angle_activation = spec.angle_activation if task == "obb" else None
        self.strides = layers[-1].strides
        self.dtype = dtype
        self.param_dtype = jax.numpy.dtype(param_dtype)

    @property
    def name(self) -> str:
        """ultralytics' model name (its yaml without ``.yaml``), e.g. "yolov8n", "yolo11s", "yolo26n-obb"."""
        return f"yolo{self.version}{self.scale}" + ("-obb" if self.task == "obb" else "")

    def __call__(self, images: jax.Array) -> tuple[jax.Array, ...] | dict[str, tuple[jax.Array, ...]]:
        """``images [N, H, W, 3]`` (H, W multiples of 32; uint8 or float in [0, 1],
        :func:`~jaxdet.models.inputs.unit_images`) -> per level ``[N, H/s, W/s, 4·reg_max + C]`` (``task="obb"``:
        ``[N, H/s, W/s, 4·reg_max + C + 1]``, the raw angle last): a tuple of the three levels, or with ``end2end``
        ``{"one2many": levels, "one2one": levels}``."""
        images = unit_images(images)
        _checks.layout(images, "images", shape="[N, H, W, 3]", min_ndim=4, last=3)
        if images.ndim != 4 or images.shape[1] % 32 or images.shape[2] % 32:
            raise _checks.fail_shape("images", "[N, H, W, 3] with H and W multiples of 32", images)
        x = images.astype(self.dtype or self.param_dtype)
        ys: list[Any] = []
        for layer, src in zip(self.model, self.sources):
            inputs = [x if j < 0 else ys[j] for j in src]  # j = -1 only for layer 0: the images
            ys.append(layer(inputs[0] if len(inputs) == 1 else inputs))
        return jax.tree.map(lambda o: o.astype(self.param_dtype), ys[-1])


def count_params(model: nnx.Module) -> int:
    """Number of parameter scalars (ultralytics' "parameters" count, without the DFL buffer)."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
