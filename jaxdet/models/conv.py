"""2-D convolution for the models, with a faster input gradient for stride-2 convolutions on XLA:CPU.

:func:`conv2d` is ``lax.conv_general_dilated`` on channels-last maps (``NHWC`` input, ``HWIO`` kernel). Its
value and its kernel gradient are always XLA's own. What changes, on the CPU backend only, is how the **input
gradient of a stride-2 convolution** is computed.

Why: XLA:CPU (jaxlib 0.10) computes that gradient as a convolution over an input dilated by the stride. On
the 2-core x86-64 machine this project is developed on, that ran at about a quarter of a stride-1
convolution's speed. For a ``[64, 32, 32, 16]`` input and a 3×3 kernel with 32 output channels it took
6.8 ms, against 1.5 ms for the formulation below.

The formulation is the same function rewritten as a stride-1 convolution, **space-to-depth**. For a ``k×k``
kernel, let ``m = ceil(k / 2)``:

1. Pad the input with the convolution's own padding. Then pad or crop its far side so that each spatial size
   is ``L = 2 (out + m - 1)``.
2. Regroup every 2×2 block of pixels into channels, giving ``[N, L/2, L/2, 4C]``.
3. Zero-pad the kernel to ``2m × 2m`` and regroup it the same way, giving ``[m, m, 4C, O]``.

Then :math:`y_i = \\sum_{t<k} x'_{2i+t}\\,w_t = \\sum_{d<m} \\sum_{r<2} x'_{2(i+d)+r}\\,w'_{2d+r}` is a VALID
stride-1 convolution of the regrouped maps. Its transpose with respect to the input is a stride-1
convolution as well. :func:`conv2d` uses the rewritten form only for that transpose, through a
``jax.custom_vjp``. The forward pass and the kernel gradient stay XLA's stride-2 convolution, which was the
faster of the two here: 2.8 ms against 4.9 ms for the kernel gradient in the case above. Both forms compute
the same sums in a different order, so the gradients agree to float rounding (``tests/models/test_conv.py``).

On any backend other than ``"cpu"`` (GPU, TPU) :func:`conv2d` is the plain XLA convolution. This also holds
at stride 1 and for strides other than 2. A ``custom_vjp`` has no forward-mode derivative, so ``jax.jvp`` /
``jax.jacfwd`` through a stride-2 layer work on GPU/TPU but not on the CPU. There, use ``jax.grad`` /
``jax.vjp``, or trace the function inside :func:`xla_stride2_gradient`, which turns the rewrite off.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp

from jaxdet import _checks

__all__ = ["conv2d", "space_to_depth_conv", "xla_stride2_gradient"]

_DIMS = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]
_switch = threading.local()


@contextlib.contextmanager
def xla_stride2_gradient() -> Iterator[None]:
    """Within this context, :func:`conv2d` leaves every stride-2 input gradient to XLA, on any backend.

    The switch is read when a function is traced, so it applies to functions traced, i.e. jitted for new
    shapes, inside the context. A function that ``jax.jit`` has already compiled keeps its version. Use it to
    compare the two forms, as ``benchmarks/train_step.py`` does, or to get ``jax.jvp`` on the CPU.
    """
    previous = getattr(_switch, "xla", False)
    _switch.xla = True
    try:
        yield
    finally:
        _switch.xla = previous


def _check_maps(x, kernel) -> None:
    _checks.layout(x, "x", shape="[N, H, W, C]", ndim=4)
    _checks.layout(kernel, "kernel", shape="[kh, kw, C, O]", ndim=4)
    if kernel.shape[2] != x.shape[3]:
        raise _checks.fail_value("kernel", f"input channels kernel.shape[2] = x.shape[3] = {x.shape[3]}",
                                 kernel.shape)


def _check_padding(padding) -> Padding:
    try:
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        pads = ()
    if len(pads) != 2:
        raise _checks.fail_value("padding", "'SAME', 'VALID' or ((lo_h, hi_h), (lo_w, hi_w))", padding)
    return pads


def _xla_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DIMS)


def space_to_depth_conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """The stride-2 convolution ``conv(x, kernel, stride 2, padding)`` computed as a stride-1 convolution of
    2×2 space-to-depth blocks (module docstring): same function, another summation order.

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[kh, kw, C, O]``.
      padding: ``((lo_h, hi_h), (lo_w, hi_w))``, explicit padding of the stride-2 convolution.

    Returns:
      ``[N, out_h, out_w, O]``, ``out = (H + lo + hi - k) // 2 + 1`` per spatial axis.
    """
    _check_maps(x, kernel)
    padding = _check_padding(padding)
    n, c = x.shape[0], x.shape[3]
    kh, kw, _, o = kernel.shape
    mh, mw = math.ceil(kh / 2), math.ceil(kw / 2)
    out = [(size + lo + hi - k) // 2 + 1 for size, (lo, hi), k in zip(x.shape[1:3], padding, (kh, kw))]
    lengths = [2 * (o_ + m - 1) for o_, m in zip(out, (mh, mw))]
    # Own padding on the near side; on the far side as much as makes the length L (a crop when negative).
    far = [length - size - lo for length, size, (lo, _) in zip(lengths, x.shape[1:3], padding)]
    xp = jnp.pad(x, ((0, 0), (padding[0][0], max(far[0], 0)), (padding[1][0], max(far[1], 0)), (0, 0)))
    xp = xp[:, : lengths[0], : lengths[1]]
    hb, wb = lengths[0] // 2, lengths[1] // 2
    blocks = xp.reshape(n, hb, 2, wb, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hb, wb, 4 * c)
    k2 = jnp.pad(kernel, ((0, 2 * mh - kh), (0, 2 * mw - kw), (0, 0), (0, 0)))
    k2 = k2.reshape(mh, 2, mw, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(mh, mw, 4 * c, o)
    return _xla_conv(blocks, k2, 1, ((0, 0), (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _stride2_conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return _xla_conv(x, kernel, 2, padding)


def _stride2_conv_fwd(x, kernel, padding):
    return _xla_conv(x, kernel, 2, padding), (x, kernel)


def _stride2_conv_bwd(padding, residuals, g):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x_: space_to_depth_conv(x_, kernel, padding), x)
    _, kernel_vjp = jax.vjp(lambda k_: _xla_conv(x, k_, 2, padding), kernel)
    return input_vjp(g)[0], kernel_vjp(g)[0]


_stride2_conv.defvjp(_stride2_conv_fwd, _stride2_conv_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int = 1, padding: str | Sequence[Sequence[int]] = "SAME"
           ) -> jax.Array:
    """``lax.conv_general_dilated`` of channels-last maps, with the stride-2 input gradient of the module
    docstring on XLA:CPU.

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[kh, kw, C, O]`` (HWIO), the same dtype as ``x``.
      stride: the stride on both spatial axes.
      padding: ``"SAME"``, ``"VALID"`` or ``((lo_h, hi_h), (lo_w, hi_w))``.

    Returns:
      ``[N, out_h, out_w, O]``, equal to ``lax.conv_general_dilated(x, kernel, (stride, stride), padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))``.
    """
    _check_maps(x, kernel)
    stride = _checks.positive_int(stride, "stride")
    if isinstance(padding, str):
        _checks.choice(padding, "padding", ("SAME", "VALID"))
        pads = tuple(jax.lax.padtype_to_pads(x.shape[1:3], kernel.shape[:2], (stride, stride), padding))
    else:
        pads = _check_padding(padding)
    if stride == 2 and jax.default_backend() == "cpu" and not getattr(_switch, "xla", False):
        return _stride2_conv(x, kernel, pads)
    return _xla_conv(x, kernel, stride, pads)
