"""Per-executable XLA compiler options that make jaxdet's convolutions faster on the current backend.

On XLA:CPU of jaxlib 0.10, convolutions above a small size are lowered by default to YNNPACK library fusions
(``__ynn_fusion`` in the optimized HLO). On the 2-core x86-64 machine this project is developed on they are
slower than XLA's own (Eigen) convolutions, most of all the weight-gradient convolutions of the backward pass
(``benchmarks/train_step.py`` times the YOLOv1 detector's train step both ways; table in
``benchmarks/results/train_step.md``). :func:`compiler_options` therefore returns, for XLA:CPU,

    {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}

i.e. YNNPACK for dots and reductions as by default (the default set is these two plus
``LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION``), but not for convolutions. The options only change which
kernels compute a convolution; results agree to float rounding (``tests/test_compile_options.py`` checks a
train step's loss and gradients).

Guarded so nothing else is touched: any backend other than ``"cpu"`` (GPU, TPU) gets ``{}``, and so does a
CPU whose jaxlib does not route a convolution through YNNPACK, or does not know the option. That is decided
once per process by a probe, not by a version list: a tiny convolution is compiled with the default options
(does its optimized HLO hold a ``__ynn_fusion``?) and once more with the options (accepted, and the
convolution left YNNPACK?); the probe compiles in about 0.2 s and runs nothing. An unknown option is an
``INVALID_ARGUMENT`` error of that compile, caught here;
unlike an unknown ``XLA_FLAGS`` entry it never aborts the process. A user who sets
``xla_cpu_experimental_ynn_fusion_type`` in ``XLA_FLAGS`` keeps it: then ``{}`` is returned too.

Use it wherever jaxdet compiles: ``jax.jit(f, compiler_options=compiler_options())`` or
``jax.jit(f).lower(*args).compile(compiler_options())``.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

__all__ = ["CPU_CONV_OPTIONS", "compiler_options"]

#: XLA:CPU options: YNNPACK fusions for dots and reductions only, XLA's own kernels for convolutions.
CPU_CONV_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def compiler_options(backend: str | None = None) -> dict[str, str]:
    """The per-executable compiler options for ``backend`` (default: ``jax.default_backend()``).

    Args:
      backend: a JAX platform name ("cpu", "gpu", "tpu", ...); None for the default backend.

    Returns:
      A new dict: :data:`CPU_CONV_OPTIONS` on an XLA:CPU that runs convolutions through YNNPACK and accepts the
      option (probed once per process), ``{}`` everywhere else.
    """
    backend = jax.default_backend() if backend is None else str(backend)
    if backend != "cpu" or "xla_cpu_experimental_ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return {}
    return dict(CPU_CONV_OPTIONS) if _cpu_conv_options_help() else {}


def _conv_uses_ynn(options: dict[str, str]) -> bool:
    """Whether a CPU convolution compiled with ``options`` runs as a YNNPACK fusion (raises when the compiler
    rejects an option). Only compiled, never run; small convolutions stay on XLA's kernels whatever the options,
    so the probe has the size of the YOLOv1 detector's first stride-1 layer at batch 32."""

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    cpu = jax.devices("cpu")[0]
    x = jax.ShapeDtypeStruct((32, 32, 32, 16), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(cpu))
    w = jax.ShapeDtypeStruct((3, 3, 16, 32), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(cpu))
    compiled = jax.jit(conv).lower(x, w).compile(options)
    return "__ynn_fusion" in compiled.as_text()


@functools.cache
def _cpu_conv_options_help() -> bool:
    try:
        return _conv_uses_ynn({}) and not _conv_uses_ynn(CPU_CONV_OPTIONS)
    except Exception:  # an option this jaxlib does not know, or no CPU client: leave the defaults
        return False
