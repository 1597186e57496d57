"""The layers of the ultralytics YOLO networks (v8, 11, 26) in Flax NNX, channels-last, with ultralytics'
BatchNorm semantics and its module names.

Every block mirrors its ultralytics class attribute for attribute (``cv1``, ``cv2``, ``m``, ``attn``, ``ffn``,
``one2one_cv2`` ...) and an ``nn.Sequential`` / ``nn.ModuleList`` becomes a :class:`Sequential` / ``nnx.List``
indexed as torch indexes it, so a variable's path is its state-dict key (``model.<i>.m.0.1.attn.qkv.conv.kernel``
↔ ``model.<i>.m.0.1.attn.qkv.conv.weight``) and weight I/O (:mod:`jaxdet.models.ultralytics_io`) is a renaming
plus a kernel transpose.

- :class:`Conv` = conv (no bias) → :class:`BatchNorm` → SiLU (or no activation); :class:`DWConv` its depthwise
  form (``groups = gcd(c1, c2)``). Every BatchNorm has ultralytics' ``eps=1e-3``, ``momentum=0.03``
  (``initialize_weights`` sets them on every ``BatchNorm2d``, the new blocks' included); SiLU is the only
  activation.
- v8: :class:`Bottleneck`, :class:`C2f`, :class:`SPPF`, the legacy :class:`Detect`.
- 11: :class:`C3k2` (a C2f whose inner blocks are half-width bottlenecks or :class:`C3k`), :class:`C2PSA`
  (:class:`PSABlock` = :class:`Attention` + a 1×1 feed-forward, both residual), the depthwise class branch of
  :class:`Detect` (``legacy=False``).
- 26: :class:`C3k2` with ``attn=True`` (bottleneck + PSABlock per repeat), :class:`SPPF` with an unactivated
  ``cv1`` and a residual, :class:`Detect` with ``reg_max=1`` and the end-to-end one-to-one branches.
- oriented boxes: :class:`OBB`, the :class:`Detect` branches plus an angle branch ``cv4`` (ultralytics ``OBB``, and
  ``OBB26`` with ``angle_activation="none"``).

Parameters are created in ``param_dtype`` (float32; float64 for parity), with torch's default initialisation
(``U(±1/sqrt(fan_in))``); ``dtype`` (e.g. bfloat16) is the compute dtype of the convolutions. BatchNorm statistics
are computed in at least float32.

References:
  Ultralytics ``ultralytics/nn/modules/{conv,block,head}.py`` (8.4.190): ``Conv``, ``DWConv``, ``Bottleneck``,
  ``C2f``, ``C3``, ``C3k``, ``C3k2``, ``SPPF``, ``Attention``, ``PSABlock``, ``C2PSA``, ``Detect``, ``OBB``,
  ``OBB26``.
  Jocher, Qiu, Chaurasia, Ultralytics YOLO (2023-2026).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdet.models.conv import conv2d

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "BatchNorm",
    "Conv2d",
    "Conv",
    "DWConv",
    "Sequential",
    "Bottleneck",
    "C2f",
    "C3k",
    "C3k2",
    "Attention",
    "PSABlock",
    "C2PSA",
    "SPPF",
    "Upsample",
    "Concat",
    "Detect",
    "OBB",
    "max_pool_same",
]

#: ultralytics' BatchNorm2d settings (``initialize_weights``): eps and the weight of the new batch.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


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

    The momentum is the weight of the new batch (Flax's convention would call it 0.97). Under data-parallel
    ``jit`` the batch moments are those of the global batch. ``num_batches_tracked`` (int32 ``[]``, a
    ``BatchStat``) counts the train-mode calls, as torch's buffer of that name does (with a fixed momentum it
    changes nothing else; it is exported to ultralytics).
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

    ``kernel [k, k, c1 / groups, c2]`` (HWIO; torch's ``[c2, c1 / groups, k, k]`` weight transposed), optional
    ``bias [c2]``, torch's default init (``fan_in = c1 / groups · k²``). ``groups > 1`` is a grouped convolution
    (``groups = c1 = c2``: depthwise), ``lax.conv_general_dilated``'s ``feature_group_count``.
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, *, groups: int = 1, use_bias: bool = True,
                 rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=None):
        fan_in = c1 // groups * k * k
        self.kernel = nnx.Param(_torch_uniform(rngs, (k, k, c1 // groups, c2), fan_in, param_dtype))
        self.bias = nnx.Param(_torch_uniform(rngs, (c2,), fan_in, param_dtype)) if use_bias else None
        self.stride = s
        self.padding = k // 2
        self.groups = groups
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype or x.dtype
        p = ((self.padding, self.padding), (self.padding, self.padding))
        kernel = self.kernel[...].astype(dtype)
        if self.groups == 1:
            y = conv2d(x.astype(dtype), kernel, stride=self.stride, padding=p)
        else:
            y = jax.lax.conv_general_dilated(x.astype(dtype), kernel, (self.stride, self.stride), p,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                             feature_group_count=self.groups)
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y


class Conv(nnx.Module):
    """ultralytics ``Conv``: conv (no bias, ``groups``) → :class:`BatchNorm` → SiLU (or no activation)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, *, groups: int = 1, act: bool = True,
                 rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=None):
        self.conv = Conv2d(c1, c2, k, s, groups=groups, use_bias=False, rngs=rngs, param_dtype=param_dtype,
                           dtype=dtype)
        self.bn = BatchNorm(c2, param_dtype=param_dtype)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn(self.conv(x))
        return nnx.silu(y) if self.act else y


class DWConv(Conv):
    """ultralytics ``DWConv``: a :class:`Conv` with ``groups = gcd(c1, c2)`` (depthwise when ``c1 = c2``)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, *, act: bool = True, rngs: nnx.Rngs, **kw):
        super().__init__(c1, c2, k, s, groups=math.gcd(c1, c2), act=act, rngs=rngs, **kw)


class Sequential(nnx.List):
    """``nn.Sequential``: the layers applied in order, indexed ``0, 1, ...`` as torch's state dict names them."""

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self:
            x = layer(x)
        return x


class Bottleneck(nnx.Module):
    """``cv1`` (k₀×k₀ to ``int(c2·e)``) → ``cv2`` (k₁×k₁ to c2), plus the input when ``shortcut`` and
    ``c1 == c2``. C2f uses ``e = 1``; C3k2's own bottlenecks keep ultralytics' default ``e = 0.5``."""

    def __init__(self, c1: int, c2: int, *, shortcut: bool, k: tuple[int, int] = (3, 3), e: float = 0.5,
                 rngs: nnx.Rngs, **kw):
        c = int(c2 * e)
        self.cv1 = Conv(c1, c, k[0], rngs=rngs, **kw)
        self.cv2 = Conv(c, c2, k[1], rngs=rngs, **kw)
        self.add = bool(shortcut and c1 == c2)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nnx.Module):
    """CSP bottleneck with two convolutions: ``cv1`` (1×1 to 2c), split in halves, ``n`` blocks ``m`` on the
    last half in a chain, concat of all ``2 + n`` pieces, ``cv2`` (1×1 to c2); ``c = int(c2·e)``.

    The blocks are :class:`Bottleneck` (``e = 1``) unless a subclass replaces them (:class:`C3k2`).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, *, e: float = 0.5, rngs: nnx.Rngs,
                 **kw):
        c = int(c2 * e)
        self.c = c
        self.cv1 = Conv(c1, 2 * c, 1, rngs=rngs, **kw)
        self.cv2 = Conv((2 + n) * c, c2, 1, rngs=rngs, **kw)
        self.m = nnx.List(self._blocks(n, shortcut, rngs=rngs, **kw))

    def _blocks(self, n: int, shortcut: bool, *, rngs: nnx.Rngs, **kw) -> list[nnx.Module]:
        return [Bottleneck(self.c, self.c, shortcut=shortcut, e=1.0, rngs=rngs, **kw) for _ in range(n)]

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.cv1(x)
        ys = [y[..., : self.c], y[..., self.c:]]
        for block in self.m:
            ys.append(block(ys[-1]))
        return self.cv2(jnp.concatenate(ys, axis=-1))


class C3k(nnx.Module):
    """ultralytics ``C3k`` (a ``C3`` with k×k bottlenecks): ``cv1`` and ``cv2`` (1×1 to ``c = int(c2·e)``) side by
    side, ``n`` :class:`Bottleneck` (k×k, ``e = 1``) ``m`` after ``cv1``, then ``cv3`` (1×1 to c2) of
    ``concat(m(cv1(x)), cv2(x))``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, *, e: float = 0.5, k: int = 3,
                 rngs: nnx.Rngs, **kw):
        c = int(c2 * e)
        self.cv1 = Conv(c1, c, 1, rngs=rngs, **kw)
        self.cv2 = Conv(c1, c, 1, rngs=rngs, **kw)
        self.cv3 = Conv(2 * c, c2, 1, rngs=rngs, **kw)
        self.m = Sequential([Bottleneck(c, c, shortcut=shortcut, k=(k, k), e=1.0, rngs=rngs, **kw)
                             for _ in range(n)])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.cv3(jnp.concatenate([self.m(self.cv1(x)), self.cv2(x)], axis=-1))


class C3k2(C2f):
    """ultralytics ``C3k2``: a :class:`C2f` (``c = int(c2·e)``) whose ``n`` blocks are, per flag,

    - ``attn``: ``Sequential(Bottleneck(c, c, e=0.5), PSABlock(c, heads = max(c // 64, 1)))`` (YOLO26's last neck
      block; ``attn`` wins over ``c3k``);
    - ``c3k``: :class:`C3k` ``(c, c, n=2)`` (ultralytics forces it at scales m, l, x);
    - else: :class:`Bottleneck` ``(c, c, e=0.5)``, i.e. with a ``c/2`` hidden width (C2f's have ``e = 1``).

    ``shortcut`` is True (ultralytics' default; the yaml rows cannot reach it).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, attn: bool = False, *,
                 shortcut: bool = True, rngs: nnx.Rngs, **kw):
        self._c3k, self._attn = bool(c3k), bool(attn)
        super().__init__(c1, c2, n, shortcut, e=e, rngs=rngs, **kw)

    def _blocks(self, n: int, shortcut: bool, *, rngs: nnx.Rngs, **kw) -> list[nnx.Module]:
        c = self.c
        if self._attn:
            return [Sequential([Bottleneck(c, c, shortcut=shortcut, rngs=rngs, **kw),
                                PSABlock(c, attn_ratio=0.5, num_heads=max(c // 64, 1), rngs=rngs, **kw)])
                    for _ in range(n)]
        if self._c3k:
            return [C3k(c, c, 2, shortcut, rngs=rngs, **kw) for _ in range(n)]
        return [Bottleneck(c, c, shortcut=shortcut, rngs=rngs, **kw) for _ in range(n)]


class Attention(nnx.Module):
    """ultralytics ``Attention``: multi-head self-attention over the ``H·W`` positions, plus a depthwise 3×3
    positional term on the values.

    With ``h`` heads, ``d = dim // h`` value channels and ``d_k = int(d · attn_ratio)`` query/key channels per head,
    ``qkv`` (1×1 Conv, no activation) gives ``dim + 2·h·d_k`` channels, grouped per head as
    ``[q (d_k), k (d_k), v (d)]`` (torch's ``view(B, h, 2·d_k + d, N)``); then per head

    .. math::
        o = v \\, \\mathrm{softmax}\\big(d_k^{-1/2} q^\\top k\\big)^\\top, \\qquad
        y = \\mathrm{proj}\\big(o + \\mathrm{pe}(v)\\big)

    (softmax over the keys; ``pe`` a depthwise 3×3 Conv, ``proj`` a 1×1 Conv, both without activation), the
    heads' channels concatenated head-major. ``[N, H, W, dim] -> [N, H, W, dim]``.
    """

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5, *, rngs: nnx.Rngs, **kw):
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False, rngs=rngs, **kw)
        self.proj = Conv(dim, dim, 1, act=False, rngs=rngs, **kw)
        self.pe = Conv(dim, dim, 3, groups=dim, act=False, rngs=rngs, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, hgt, wid, c = x.shape
        h, dk, dv = self.num_heads, self.key_dim, self.head_dim
        qkv = self.qkv(x).reshape(n, hgt * wid, h, 2 * dk + dv)
        q, k, v = qkv[..., :dk], qkv[..., dk: 2 * dk], qkv[..., 2 * dk:]  # [N, P, h, d_k|d_k|d]
        logits = jnp.einsum("nphd,nqhd->nhpq", q * self.scale, k)  # [N, h, P (queries), P (keys)]
        attn = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("nhpq,nqhd->nphd", attn, v).reshape(n, hgt, wid, c)
        return self.proj(out + self.pe(v.reshape(n, hgt, wid, c)))


class PSABlock(nnx.Module):
    """ultralytics ``PSABlock``: ``x + attn(x)`` then ``x + ffn(x)`` with ``ffn = Conv1×1(c → 2c) →
    Conv1×1(2c → c, no activation)`` (each without the residual when ``shortcut`` is False)."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True, *,
                 rngs: nnx.Rngs, **kw):
        self.attn = Attention(c, num_heads, attn_ratio, rngs=rngs, **kw)
        self.ffn = Sequential([Conv(c, 2 * c, 1, rngs=rngs, **kw), Conv(2 * c, c, 1, act=False, rngs=rngs, **kw)])
        self.add = shortcut

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class C2PSA(nnx.Module):
    """ultralytics ``C2PSA``: ``cv1`` (1×1 to 2c, ``c = int(c1·e)``) split in halves ``a, b``; ``n``
    :class:`PSABlock` (``max(c // 64, 1)`` heads) ``m`` on ``b``; ``cv2`` (1×1 to c1) of ``concat(a, m(b))``.
    Input and output widths are equal (ultralytics asserts ``c1 == c2``)."""

    def __init__(self, c1: int, c2: int, n: int = 1, *, e: float = 0.5, rngs: nnx.Rngs, **kw):
        if c1 != c2:
            raise ValueError(f"C2PSA keeps its width: c2 must be c1 = {c1}; got {c2}.")
        c = int(c1 * e)
        self.c = c
        self.cv1 = Conv(c1, 2 * c, 1, rngs=rngs, **kw)
        self.cv2 = Conv(2 * c, c1, 1, rngs=rngs, **kw)
        self.m = Sequential([PSABlock(c, attn_ratio=0.5, num_heads=max(c // 64, 1), rngs=rngs, **kw)
                             for _ in range(n)])

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.cv1(x)
        return self.cv2(jnp.concatenate([y[..., : self.c], self.m(y[..., self.c:])], axis=-1))


def max_pool_same(x: jax.Array, k: int) -> jax.Array:
    """``nn.MaxPool2d(k, stride=1, padding=k // 2)`` on ``[N, H, W, C]`` (padding never wins the max)."""
    p = k // 2
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, 1, 1, 1), ((0, 0), (p, p), (p, p), (0, 0))
    )


class SPPF(nnx.Module):
    """Spatial pyramid pooling, fast: ``cv1`` (1×1 to c1/2), ``n`` chained ``k×k`` max-pools, concat of the
    ``n + 1`` maps, ``cv2`` (1×1 to c2), plus the input when ``shortcut`` and ``c1 == c2``.

    yaml rows: v8/11 ``[c2, 5]`` (n = 3, no shortcut, ``cv1`` activated: ultralytics 8.4.190's ``SPPF`` class
    builds ``cv1`` without an activation, but ``parse_model`` restores the SiLU for rows with at most three
    arguments); YOLO26 ``[c2, 5, 3, True]``: ``cv1`` without activation and the residual.
    """

    def __init__(self, c1: int, c2: int, k: int = 5, n: int = 3, shortcut: bool = False, *, cv1_act: bool = False,
                 rngs: nnx.Rngs, **kw):
        c = c1 // 2
        self.cv1 = Conv(c1, c, 1, act=cv1_act, rngs=rngs, **kw)
        self.cv2 = Conv(c * (n + 1), c2, 1, rngs=rngs, **kw)
        self.k, self.n = k, n
        self.add = bool(shortcut and c1 == c2)

    def __call__(self, x: jax.Array) -> jax.Array:
        ys = [self.cv1(x)]
        for _ in range(self.n):
            ys.append(max_pool_same(ys[-1], self.k))
        y = self.cv2(jnp.concatenate(ys, axis=-1))
        return y + x if self.add else y


class Upsample(nnx.Module):
    """Nearest-neighbour ×2 upsampling of ``[N, H, W, C]`` (``nn.Upsample(None, 2, "nearest")``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Concat(nnx.Module):
    """Channel concatenation of the listed layers' outputs."""

    def __call__(self, xs: Sequence[jax.Array]) -> jax.Array:
        return jnp.concatenate(xs, axis=-1)


class Detect(nnx.Module):
    """ultralytics' decoupled ``Detect`` head on levels with channels ``ch`` and strides ``strides``.

    Per level ``l``, with ``c2 = max(16, ch[0] // 4, 4·reg_max)`` and ``c3 = max(ch[0], min(C, 100))``:

    - box branch ``cv2[l]``: Conv3×3(c2) → Conv3×3(c2) → conv1×1(4·reg_max), bias 2.0;
    - class branch ``cv3[l]``, ``legacy=True`` (v8): Conv3×3(c3) → Conv3×3(c3) → conv1×1(C);
      ``legacy=False`` (11, 26): [DWConv3×3(ch[l]) → Conv1×1(c3)] → [DWConv3×3(c3) → Conv1×1(c3)] → conv1×1(C);
      bias ``log(5 / C / (640 / stride)²)`` (ultralytics' ``bias_init``: about 0.01 objects per cell at 640 px).

    ``end2end`` (YOLO26) adds ``one2one_cv2`` / ``one2one_cv3``, copies of the two branches at initialisation
    (ultralytics deep-copies them), evaluated on the same features, which in train mode are
    ``stop_gradient``-ed first (ultralytics detaches them ``if self.training``), so the one-to-one loss trains
    only those branches. Train/eval follow ``deterministic`` (``model.eval()`` sets it).

    Returns per level ``[N, H/s, W/s, 4·reg_max + C]`` (box logits, then class logits): a tuple of the levels,
    or with ``end2end`` the dict ``{"one2many": levels, "one2one": levels}``. With ``reg_max = 1`` the four box
    values are the ``l, t, r, b`` distances themselves (ultralytics' DFL is the identity).
    """

    def __init__(self, num_classes: int, ch: Sequence[int], strides: Sequence[int], *, reg_max: int = 16,
                 legacy: bool = True, end2end: bool = False, rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=None):
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        c2 = max(16, ch[0] // 4, reg_max * 4)
        c3 = max(ch[0], min(num_classes, 100))
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, tuple(int(s) for s in strides)
        self.legacy, self.end2end = bool(legacy), bool(end2end)
        self.deterministic = False

        def box_branch(x):
            return Sequential([Conv(x, c2, 3, **kw), Conv(c2, c2, 3, **kw), Conv2d(c2, 4 * reg_max, 1, **kw)])

        def class_branch(x):
            if legacy:
                return Sequential([Conv(x, c3, 3, **kw), Conv(c3, c3, 3, **kw), Conv2d(c3, num_classes, 1, **kw)])
            return Sequential([Sequential([DWConv(x, x, 3, **kw), Conv(x, c3, 1, **kw)]),
                               Sequential([DWConv(c3, c3, 3, **kw), Conv(c3, c3, 1, **kw)]),
                               Conv2d(c3, num_classes, 1, **kw)])

        self.cv2 = nnx.List([box_branch(x) for x in ch])
        self.cv3 = nnx.List([class_branch(x) for x in ch])
        for box, cls, stride in zip(self.cv2, self.cv3, self.strides):
            box[2].bias[...] = jnp.full((4 * reg_max,), 2.0, param_dtype)
            cls[2].bias[...] = jnp.full((num_classes,), math.log(5 / num_classes / (640 / stride) ** 2), param_dtype)
        if end2end:
            self.one2one_cv2 = nnx.List([box_branch(x) for x in ch])
            self.one2one_cv3 = nnx.List([class_branch(x) for x in ch])
            nnx.update(self.one2one_cv2, nnx.state(self.cv2))  # ultralytics: copy.deepcopy(self.cv2)
            nnx.update(self.one2one_cv3, nnx.state(self.cv3))

    def _levels(self, xs: Sequence[jax.Array], one2one: bool) -> tuple[jax.Array, ...]:
        """Per level ``concat(box(x), cls(x))`` of the one-to-many (``cv2``, ``cv3``) or one-to-one branches."""
        boxes, classes = (self.one2one_cv2, self.one2one_cv3) if one2one else (self.cv2, self.cv3)
        return tuple(jnp.concatenate([box(x), cls(x)], axis=-1) for x, box, cls in zip(xs, boxes, classes))

    def __call__(self, xs: Sequence[jax.Array]) -> tuple[jax.Array, ...] | dict[str, tuple[jax.Array, ...]]:
        one2many = self._levels(xs, one2one=False)
        if not self.end2end:
            return one2many
        detached = xs if self.deterministic else [jax.lax.stop_gradient(x) for x in xs]
        return {"one2many": one2many, "one2one": self._levels(detached, one2one=True)}


class OBB(Detect):
    """ultralytics' oriented-box heads ``OBB`` (YOLOv8-obb, YOLO11-obb) and ``OBB26`` (YOLO26-obb): the
    :class:`Detect` branches plus, per level, an angle branch

    - ``cv4[l]``: Conv3×3(c4) → Conv3×3(c4) → conv1×1(ne), ``c4 = max(ch[0] // 4, ne)``, ``ne = 1``, torch's
      default bias;
    - with ``end2end``, ``one2one_cv4``: its copy at initialisation, on the same (train mode: detached) features.

    The angle channel is the raw conv output ``a`` (as the class channels are logits). The two heads differ only
    in how ``a`` becomes the angle θ (radians) of the box, which the loss and the decoder apply
    (:mod:`jaxdet.losses.obb`'s ``angle_activation``); ultralytics applies it inside ``forward_head``, so its
    ``preds["angle"]`` is θ:

    .. math::
        \\theta = \\big(\\sigma(a) - \\tfrac14\\big)\\,\\pi \\in [-\\pi/4, 3\\pi/4)
        \\quad (\\texttt{angle\\_activation="sigmoid"}: \\text{OBB}), \\qquad
        \\theta = a \\quad (\\texttt{"none"}: \\text{OBB26})

    Returns per level ``[N, H/s, W/s, 4·reg_max + C + ne]`` (box logits, class logits, then ``a``): a tuple of the
    levels, or with ``end2end`` ``{"one2many": levels, "one2one": levels}``.
    """

    def __init__(self, num_classes: int, ch: Sequence[int], strides: Sequence[int], *, ne: int = 1,
                 angle_activation: str = "sigmoid", reg_max: int = 16, legacy: bool = True, end2end: bool = False,
                 rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=None):
        super().__init__(num_classes, ch, strides, reg_max=reg_max, legacy=legacy, end2end=end2end, rngs=rngs,
                         param_dtype=param_dtype, dtype=dtype)
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        c4 = max(ch[0] // 4, ne)
        self.ne, self.angle_activation = ne, angle_activation

        def angle_branch(x):
            return Sequential([Conv(x, c4, 3, **kw), Conv(c4, c4, 3, **kw), Conv2d(c4, ne, 1, **kw)])

        self.cv4 = nnx.List([angle_branch(x) for x in ch])
        if end2end:
            self.one2one_cv4 = nnx.List([angle_branch(x) for x in ch])
            nnx.update(self.one2one_cv4, nnx.state(self.cv4))  # ultralytics: copy.deepcopy(self.cv4)

    def _levels(self, xs: Sequence[jax.Array], one2one: bool) -> tuple[jax.Array, ...]:
        angles = self.one2one_cv4 if one2one else self.cv4
        return tuple(jnp.concatenate([y, branch(x)], axis=-1)
                     for y, x, branch in zip(super()._levels(xs, one2one), xs, angles))
