"""The one place jaxdet's argument errors are raised and worded (private).

Every public function checks its arguments eagerly, at trace time, with these helpers, so each kind of mistake
reads the same everywhere and names the argument, what was expected and what was given:

- shape:   ``{arg} must have shape {expected}; got shape {actual}.``
- dtype:   ``{arg} must have a {kind} dtype; got {dtype}.``
- value:   ``{arg} must be {condition}; got {value!r}.``
- choice:  ``{arg} must be one of {options}; got {value!r}.``

All raise :class:`ValueError`. Shapes are written as in the docstrings, e.g. ``[..., 4]`` or ``[N, M]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "fail_shape",
    "fail_value",
    "array",
    "floating",
    "integer",
    "boolean",
    "same_shape",
    "shape_is",
    "choice",
    "number",
    "positive_int",
    "keys_present",
]

_KINDS = {
    "float": (jnp.floating, "floating"),
    "int": (jnp.integer, "integer"),
    "bool": (jnp.bool_, "bool"),
}


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in np.shape(x))


def fail_shape(argname: str, expected: str, actual: Any) -> ValueError:
    """The shape error (returned, for ``raise``): ``actual`` is a shape or an array."""
    shape = tuple(actual) if isinstance(actual, tuple) else _shape(actual)
    return ValueError(f"{argname} must have shape {expected}; got shape {shape}.")


def fail_value(argname: str, condition: str, value: Any) -> ValueError:
    """The value error (returned, for ``raise``): ``{arg} must be {condition}; got {value!r}.``"""
    return ValueError(f"{argname} must be {condition}; got {value!r}.")


def array(
    x: Any,
    argname: str,
    *,
    kind: str | None = None,
    shape: str | None = None,
    min_ndim: int = 0,
    last: int | None = None,
    hint: str = "",
) -> jax.Array:
    """``jnp.asarray(x)`` after checking its rank, last axis and dtype kind.

    Args:
      x: the argument.
      argname: its name in the error.
      kind: "float", "int", "bool" or None (any dtype).
      shape: the expected shape as written in the docstring (e.g. ``"[..., 4]"``), used in the error; derived
        from ``min_ndim`` and ``last`` when not given.
      min_ndim: the least number of axes.
      last: the required size of the last axis, if any.
      hint: a sentence appended to a dtype error (e.g. how to cast).
    """
    x = jnp.asarray(x)
    if x.ndim < min_ndim or (last is not None and (x.ndim == 0 or x.shape[-1] != last)):
        if shape is None:
            shape = f"[..., {last}]" if last is not None else f"with at least {min_ndim} axes"
        raise fail_shape(argname, shape, x.shape)
    if kind is not None:
        dtype_kind, word = _KINDS[kind]
        if not jnp.issubdtype(x.dtype, dtype_kind):
            raise ValueError(f"{argname} must have a {word} dtype; got {x.dtype}." + (f" {hint}" if hint else ""))
    return x


def floating(x: Any, argname: str, **kw) -> jax.Array:
    """:func:`array` with ``kind="float"``."""
    return array(x, argname, kind="float", **kw)


def integer(x: Any, argname: str, **kw) -> jax.Array:
    """:func:`array` with ``kind="int"``."""
    return array(x, argname, kind="int", **kw)


def boolean(x: Any, argname: str, **kw) -> jax.Array:
    """:func:`array` with ``kind="bool"`` (a mask)."""
    return array(x, argname, kind="bool", **kw)


def shape_is(x: Any, expected: Sequence[int], argname: str, what: str = "") -> None:
    """``x.shape == expected``; ``what`` says where the expectation comes from (e.g. ``"gt_boxes.shape[:-1]"``)."""
    expected = tuple(int(d) for d in expected)
    if _shape(x) != expected:
        raise fail_shape(argname, f"{what} = {expected}" if what else str(expected), x)


def same_shape(reference: Any, x: Any, reference_name: str, argname: str) -> None:
    """``x`` has the shape of ``reference``."""
    shape_is(x, _shape(reference), argname, f"{reference_name}.shape")


def choice(value: Any, argname: str, options: Sequence[Any]) -> Any:
    """``value`` is one of ``options``; returns it."""
    if value not in tuple(options):
        raise fail_value(argname, f"one of {tuple(options)}", value)
    return value


def number(
    value: Any,
    argname: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """A Python number in the interval given by ``low``/``high`` (closed unless ``*_open``); returns a float.

    A traced (jit) value is returned unchecked: only concrete hyper-parameters can be checked eagerly.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise fail_value(argname, "a number", value) from None
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    if low is not None and high is not None:
        cond = f"in {lo}{low}, {high}{hi}"
    elif low is not None:
        cond = f"{'>' if low_open else '>='} {low}"
    elif high is not None:
        cond = f"{'<' if high_open else '<='} {high}"
    else:
        cond = "a finite number"
    if finite and not math.isfinite(v):
        raise fail_value(argname, cond if cond.startswith(("in", ">", "<")) else "a finite number", value)
    if low is not None and (v < low or (low_open and v == low)):
        raise fail_value(argname, cond, value)
    if high is not None and (v > high or (high_open and v == high)):
        raise fail_value(argname, cond, value)
    return v


def positive_int(value: Any, argname: str, *, minimum: int = 1) -> int:
    """An ``int`` (not a bool) ``>= minimum``; returns it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        cond = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise fail_value(argname, cond, value)
    return int(value)


def keys_present(mapping: Any, keys: Sequence[str], argname: str) -> None:
    """Every key of ``keys`` is in ``mapping``."""
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ValueError(f"{argname} must contain {missing}; got keys {sorted(mapping)}.")
