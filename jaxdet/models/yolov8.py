"""YOLOv8 (ultralytics ``yolov8.yaml``) in Flax NNX, channels-last, with ultralytics' BatchNorm semantics.

The network is the yaml's layer table (:data:`YOLOV8_LAYERS`) built at one scale (:data:`SCALES`):

    backbone: Conv(3×3, s2) ×2, C2f, [Conv(s2), C2f] ×3, SPPF                   (P3/8, P4/16, P5/32 saved)
    neck:     nearest ×2 upsample + concat + C2f (top-down), Conv(s2) + concat + C2f (bottom-up)
    Detect:   per level a box branch  Conv3×3 → Conv3×3 → conv1×1 (4·reg_max)
              and a class branch      Conv3×3 → Conv3×3 → conv1×1 (C)             (v8 is the "legacy" head)

with ``Conv = conv (no bias) → BatchNorm → SiLU``. The scale multiplies the yaml's channels and repeats:

.. math::
    c = 8 \\lceil \\min(c_{yaml}, c_{max}) \\cdot w / 8 \\rceil, \\qquad
    n = \\max(\\operatorname{round}(n_{yaml} \\cdot d), 1) \\text{ if } n_{yaml} > 1 \\text{ else } n_{yaml}.

``model(images [N, H, W, 3])`` (H and W multiples of 32) returns a tuple of three arrays, one per level
(strides 8, 16, 32), each ``[N, H/s, W/s, 4·reg_max + C]``: the raw DFL logits of the four box sides
(``l, t, r, b`` × ``reg_max`` bins, side-major as ultralytics' ``view(b, 4, reg_max, a)``) then the C class
logits. Flattening a level's ``H/s × W/s`` cells row-major gives ultralytics' anchor order.

BatchNorm (:class:`BatchNorm`) follows ``torch.nn.BatchNorm2d`` with ultralytics' ``eps=1e-3`` and
``momentum=0.03`` (the weight of the new batch; Flax's convention would call it 0.97): train mode normalises
by the biased batch variance and moves the running variance towards the *unbiased* one, as torch does. Its
statistics are ``nnx.BatchStat`` variables, so :func:`train.model_state.split_model` puts them in the model state;
``model.eval()`` switches to the running averages. Under data-parallel ``jit`` the batch moments are those
of the global batch.

Parameters are created in ``param_dtype`` (float32; float64 for parity); ``dtype`` (e.g. bfloat16) is the
compute dtype of the convolutions. BatchNorm statistics are computed in at least float32 and the outputs are
returned in ``param_dtype``.

The module tree mirrors ultralytics' ``DetectionModel`` (``model.<i>.cv1.conv.kernel`` ↔
``model.<i>.cv1.conv.weight``), so weight import/export (:mod:`jaxdet.models.ultralytics_io`) is a renaming
plus a kernel transpose.

References:
  Ultralytics YOLOv8, ``ultralytics/cfg/models/v8/yolov8.yaml`` and ``ultralytics/nn/modules/{conv,block,
  head}.py`` (8.4.190). Jocher, Chaurasia, Qiu, 2023.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdet import _checks
from jaxdet.models.conv import conv2d
from jaxdet.models.inputs import unit_images

__all__ = [
    "SCALES",
    "YOLOV8_LAYERS",
    "BatchNorm",
    "Conv2d",
    "Conv",
    "Bottleneck",
    "C2f",
    "SPPF",
    "Detect",
    "YOLOv8",
    "count_params",
    "scaled_channels",
    "scaled_repeats",
]

#: scale -> (depth multiple, width multiple, max channels), as in ``yolov8.yaml``.
SCALES: dict[str, tuple[float, float, int]] = {
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 768),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.25, 512),
}

#: ``yolov8.yaml``'s layers: ``(from, repeats, module, args)``; ``from`` is -1 (previous) or layer indices.
YOLOV8_LAYERS: tuple[tuple[Any, int, str, tuple], ...] = (
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

#: ultralytics' BatchNorm2d settings (``initialize_weights``): eps and the weight of the new batch.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def scaled_channels(channels: int, width: float, max_channels: int) -> int:
    """``make_divisible(min(c, max_channels) · width, 8)``: a yaml channel count at one scale."""
    return int(math.ceil(min(channels, max_channels) * width / 8) * 8)


def scaled_repeats(repeats: int, depth: float) -> int:
    """``max(round(n · depth), 1)`` for ``n > 1`` (else ``n``): a yaml repeat count at one scale."""
    return max(round(repeats * depth), 1) if repeats > 1 else repeats


def _torch_uniform(rngs: nnx.Rngs, shape, fan_in: int, dtype) -> jax.Array:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: torch's default Conv2d weight and bias initialisation."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(rngs.params(), shape, dtype, -bound, bound)


class BatchNorm(nnx.Module):
    """``torch.nn.BatchNorm2d`` on channels-last ``[N, H, W, C]`` (ultralytics' eps 1e-3, momentum 0.03).

    Train mode (``use_running_average=False``):

    .. math::
        y = \\frac{x - \\mu_B}{\\sqrt{\\sigma_B^2 + \\epsilon}} \\gamma + \\beta, \\quad
        \\hat\\mu \\leftarrow (1 - m) \\hat\\mu + m \\mu_B, \\quad
        \\hat\\sigma^2 \\leftarrow (1 - m) \\hat\\sigma^2 + m \\frac{n}{n - 1} \\sigma_B^2

    with ``n = N·H·W`` and the biased batch variance :math:`\\sigma_B^2`; the running-average update is not
    differentiated. Eval mode normalises by :math:`\\hat\\mu, \\hat\\sigma^2`. With a single value per
    channel (``n = 1``, where torch raises) the running variance moves towards the biased one (0).

    ``num_batches_tracked`` (int32 ``[]``, a ``BatchStat``) counts the train-mode calls, as torch's buffer of that
    name does (with a fixed momentum it changes nothing else; it is exported to ultralytics).
    """

    def __init__(self, num_features: int, *, eps: float = BN_EPS, momentum: float = BN_MOMENTUM,
                 param_dtype=jnp.float32):
        self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), param_dtype))
        self.var = nnx.BatchStat(jnp.ones((num_features,), param_dtype))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.eps = eps
        self.momentum = momentum
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        stat_dtype = jnp.promote_types(x.dtype, jnp.float32)
        xf = x.astype(stat_dtype)
        if self.use_running_average:
            mean, var = self.mean[...].astype(stat_dtype), self.var[...].astype(stat_dtype)
        else:
            mean = jnp.mean(xf, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(xf - mean), axis=(0, 1, 2))
            n = xf.size // xf.shape[-1]
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            dt = self.mean[...].dtype
            self.mean[...] = ((1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean).astype(dt))
            self.var[...] = ((1 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased).astype(dt))
            self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...].astype(stat_dtype)
        return (y + self.bias[...].astype(stat_dtype)).astype(x.dtype)


class Conv2d(nnx.Module):
    """A plain ``k×k`` convolution, ``[N, H, W, c1] -> [N, H/s, W/s, c2]``, padding ``k // 2`` (``nn.Conv2d``).

    ``kernel [k, k, c1, c2]`` (HWIO; torch's weight transposed), optional ``bias [c2]``, torch's default init.
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, *, use_bias: bool = True, rngs: nnx.Rngs,
                 param_dtype=jnp.float32, dtype=None):
        fan_in = c1 * k * k
        self.kernel = nnx.Param(_torch_uniform(rngs, (k, k, c1, c2), fan_in, param_dtype))
        self.bias = nnx.Param(_torch_uniform(rngs, (c2,), fan_in, param_dtype)) if use_bias else None
        self.stride = s
        self.padding = k // 2
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype or x.dtype
        p = self.padding
        y = conv2d(x.astype(dtype), self.kernel[...].astype(dtype), stride=self.stride, padding=((p, p), (p, p)))
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y


class Conv(nnx.Module):
    """ultralytics ``Conv``: conv (no bias) → :class:`BatchNorm` → SiLU (or no activation)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, *, act: bool = True, rngs: nnx.Rngs,
                 param_dtype=jnp.float32, dtype=None):
        self.conv = Conv2d(c1, c2, k, s, use_bias=False, rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        self.bn = BatchNorm(c2, param_dtype=param_dtype)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn(self.conv(x))
        return nnx.silu(y) if self.act else y


class Bottleneck(nnx.Module):
    """Two 3×3 :class:`Conv` with a residual connection when ``shortcut`` (and ``c1 == c2``)."""

    def __init__(self, c1: int, c2: int, *, shortcut: bool, rngs: nnx.Rngs, **kw):
        self.cv1 = Conv(c1, c2, 3, rngs=rngs, **kw)
        self.cv2 = Conv(c2, c2, 3, rngs=rngs, **kw)
        self.add = bool(shortcut and c1 == c2)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nnx.Module):
    """CSP bottleneck with two convolutions: ``cv1`` (1×1 to 2c), split in halves, ``n`` :class:`Bottleneck`
    on the last half in a chain, concat of all ``2 + n`` pieces, ``cv2`` (1×1 to c2); ``c = c2 // 2``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, *, rngs: nnx.Rngs, **kw):
        c = int(c2 * 0.5)
        self.c = c
        self.cv1 = Conv(c1, 2 * c, 1, rngs=rngs, **kw)
        self.cv2 = Conv((2 + n) * c, c2, 1, rngs=rngs, **kw)
        self.m = nnx.List([Bottleneck(c, c, shortcut=shortcut, rngs=rngs, **kw) for _ in range(n)])

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.cv1(x)
        ys = [y[..., : self.c], y[..., self.c:]]
        for block in self.m:
            ys.append(block(ys[-1]))
        return self.cv2(jnp.concatenate(ys, axis=-1))


def max_pool_same(x: jax.Array, k: int) -> jax.Array:
    """``nn.MaxPool2d(k, stride=1, padding=k // 2)`` on ``[N, H, W, C]`` (padding never wins the max)."""
    p = k // 2
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, 1, 1, 1), ((0, 0), (p, p), (p, p), (0, 0))
    )


class SPPF(nnx.Module):
    """Spatial pyramid pooling, fast: ``cv1`` (1×1 to c1/2), three chained ``k×k`` max-pools, concat of the
    four maps, ``cv2`` (1×1 to c2).

    ``cv1`` is activated (SiLU) for the yolov8 yaml: ultralytics 8.4.190's ``SPPF`` class builds it without an
    activation (YOLO26), but ``parse_model`` restores the SiLU for yaml rows with at most three arguments.
    """

    def __init__(self, c1: int, c2: int, k: int = 5, *, cv1_act: bool = True, rngs: nnx.Rngs, **kw):
        c = c1 // 2
        self.cv1 = Conv(c1, c, 1, act=cv1_act, rngs=rngs, **kw)
        self.cv2 = Conv(c * 4, c2, 1, rngs=rngs, **kw)
        self.k = k

    def __call__(self, x: jax.Array) -> jax.Array:
        ys = [self.cv1(x)]
        for _ in range(3):
            ys.append(max_pool_same(ys[-1], self.k))
        return self.cv2(jnp.concatenate(ys, axis=-1))


class Upsample(nnx.Module):
    """Nearest-neighbour ×2 upsampling of ``[N, H, W, C]`` (``nn.Upsample(None, 2, "nearest")``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Concat(nnx.Module):
    """Channel concatenation of the listed layers' outputs."""

    def __call__(self, xs: Sequence[jax.Array]) -> jax.Array:
        return jnp.concatenate(xs, axis=-1)


class Detect(nnx.Module):
    """The decoupled YOLOv8 head on levels with channels ``ch`` and strides ``strides``.

    Box branch ``cv2[i]``: Conv3×3(c2) → Conv3×3(c2) → conv1×1(4·reg_max), bias 2.0; class branch ``cv3[i]``:
    Conv3×3(c3) → Conv3×3(c3) → conv1×1(C), bias ``log(5 / C / (640 / stride)²)`` (ultralytics'
    ``bias_init``: about 0.01 objects per cell at 640 px), with
    ``c2 = max(16, ch[0] // 4, 4·reg_max)`` and ``c3 = max(ch[0], min(C, 100))``.
    """

    def __init__(self, num_classes: int, ch: Sequence[int], strides: Sequence[int], *, reg_max: int = 16,
                 rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=None):
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        c2 = max(16, ch[0] // 4, reg_max * 4)
        c3 = max(ch[0], min(num_classes, 100))
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, tuple(int(s) for s in strides)
        self.cv2 = nnx.List([
            nnx.List([Conv(x, c2, 3, **kw), Conv(c2, c2, 3, **kw), Conv2d(c2, 4 * reg_max, 1, **kw)]) for x in ch
        ])
        self.cv3 = nnx.List([
            nnx.List([Conv(x, c3, 3, **kw), Conv(c3, c3, 3, **kw), Conv2d(c3, num_classes, 1, **kw)]) for x in ch
        ])
        for box, cls, stride in zip(self.cv2, self.cv3, self.strides):
            box[2].bias[...] = jnp.full((4 * reg_max,), 2.0, param_dtype)
            cls[2].bias[...] = jnp.full((num_classes,), math.log(5 / num_classes / (640 / stride) ** 2), param_dtype)

    def __call__(self, xs: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
        out = []
        for x, box, cls in zip(xs, self.cv2, self.cv3):
            b, c = x, x
            for layer in box:
                b = layer(b)
            for layer in cls:
                c = layer(c)
            out.append(jnp.concatenate([b, c], axis=-1))
        return tuple(out)


class YOLOv8(nnx.Module):
    """The YOLOv8 detection network (see the module docstring), randomly initialised as torch would
    (``U(±1/sqrt(fan_in))`` conv weights and biases) with ultralytics' Detect biases.

    Attributes:
      model: the layers of :data:`YOLOV8_LAYERS` (``nnx.List``, index = ultralytics' layer index).
      scale, num_classes, reg_max: its configuration; strides: ``(8, 16, 32)``; dtype: the compute dtype.
    """

    def __init__(self, *, scale: str = "n", num_classes: int = 80, reg_max: int = 16, rngs: nnx.Rngs,
                 param_dtype=jnp.float32, dtype=None):
        _checks.choice(scale, "scale", tuple(SCALES))
        _checks.positive_int(num_classes, "num_classes")
        _checks.positive_int(reg_max, "reg_max", minimum=2)
        depth, width, max_ch = SCALES[scale]
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        ch, strides, layers, sources = [3], [1], [], []
        for i, (src, n, kind, args) in enumerate(YOLOV8_LAYERS):
            src_idx = tuple(j if j >= 0 else i + j for j in ((src,) if isinstance(src, int) else src))
            c_in = ch[src_idx[0] + 1]
            stride = strides[src_idx[0] + 1]
            if kind == "Conv":
                c_out, k, s = scaled_channels(args[0], width, max_ch), args[1], args[2]
                layers.append(Conv(c_in, c_out, k, s, **kw))
                stride *= s
            elif kind == "C2f":
                c_out = scaled_channels(args[0], width, max_ch)
                shortcut = bool(args[1]) if len(args) > 1 else False
                layers.append(C2f(c_in, c_out, scaled_repeats(n, depth), shortcut, **kw))
            elif kind == "SPPF":
                c_out = scaled_channels(args[0], width, max_ch)
                layers.append(SPPF(c_in, c_out, args[1], **kw))
            elif kind == "Upsample":
                c_out, stride = c_in, stride // 2
                layers.append(Upsample())
            elif kind == "Concat":
                c_out = sum(ch[j + 1] for j in src_idx)
                layers.append(Concat())
            else:  # Detect
                c_out = 0
                layers.append(Detect(num_classes, [ch[j + 1] for j in src_idx], [strides[j + 1] for j in src_idx],
                                     reg_max=reg_max, **kw))
            ch.append(c_out)
            strides.append(stride)
            sources.append(src_idx)
        self.model = nnx.List(layers)
        self.sources = tuple(sources)
        self.scale, self.num_classes, self.reg_max = scale, num_classes, reg_max
        self.strides = layers[-1].strides
        self.dtype = dtype
        self.param_dtype = jnp.dtype(param_dtype)

    def __call__(self, images: jax.Array) -> tuple[jax.Array, ...]:
        """``images [N, H, W, 3]`` (H, W multiples of 32; uint8 or float in [0, 1],
        :func:`~jaxdet.models.inputs.unit_images`) -> per level ``[N, H/s, W/s, 4·reg_max + C]``."""
        images = unit_images(images)
        _checks.layout(images, "images", shape="[N, H, W, 3]", min_ndim=4, last=3)
        if images.ndim != 4 or images.shape[1] % 32 or images.shape[2] % 32:
            raise _checks.fail_shape("images", "[N, H, W, 3] with H and W multiples of 32", images)
        x = images.astype(self.dtype or self.param_dtype)
        ys: list[Any] = []
        for layer, src in zip(self.model, self.sources):
            inputs = [x if j < 0 else ys[j] for j in src]  # j = -1 only for layer 0: the images
            ys.append(layer(inputs[0] if len(inputs) == 1 else inputs))
        return tuple(o.astype(self.param_dtype) for o in ys[-1])


def count_params(model: nnx.Module) -> int:
    """Number of parameter scalars (ultralytics' "parameters" count, without the DFL buffer)."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
