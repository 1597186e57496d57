"""The one place jaxdet's argument errors are raised and worded (private).

Every public function checks its arguments eagerly, at trace time, with these helpers, so each kind of mistake
reads the same everywhere and names the argument, what was expected and what was given:

- shape:   ``{arg} must have shape {expected}; got shape {actual}.``
- dtype:   ``{arg} must have a(n) {kind} dtype; got {dtype}.``
- value:   ``{arg} must be {condition}; got {value!r}.``
- choice:  ``{arg} must be one of {options}; got {value!r}.``
- keys:    ``{arg} must contain {missing}; got keys {keys}.`` and
           ``{arg} must not contain unknown keys {unknown}; known: {known}.``

:func:`config_get` reads one field of a config section (a ConfigDict, a dict or an attribute object) with its
default, as every ``from_config`` does before checking the value.

Any of them may end with a hint (one more sentence: how to cast, which function to use instead). All raise
:class:`ValueError`. Shapes are written as in the docstrings, e.g. ``[..., 4]`` or ``[N, M]``. The array checks
work on shapes and dtypes only, so they accept NumPy arrays, JAX arrays and tracers alike; :func:`array` converts
with ``jnp.asarray``, :func:`layout` and :func:`dtype_is` leave the argument as it is (for NumPy code).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "fail_shape",
    "fail_dtype",
    "fail_value",
    "layout",
    "dtype_is",
    "array",
    "floating",
    "integer",
    "boolean",
    "same_shape",
    "shape_is",
    "broadcastable",
    "broadcasts_to",
    "choice",
    "number",
    "positive_int",
    "keys_present",
    "keys_known",
    "square_grid",
    "config_get",
]

_KINDS = {
    "float": (jnp.floating, "floating"),
    "int": (jnp.integer, "integer"),
    "bool": (jnp.bool_, "bool"),
}


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in np.shape(x))


def _with_hint(message: str, hint: str) -> ValueError:
    return ValueError(f"{message} {hint}" if hint else message)


def fail_shape(argname: str, expected: str, actual: Any, hint: str = "") -> ValueError:
    """The shape error (returned, for ``raise``): ``actual`` is a shape or an array."""
    shape = tuple(actual) if isinstance(actual, tuple) else _shape(actual)
    return _with_hint(f"{argname} must have shape {expected}; got shape {shape}.", hint)


def fail_dtype(argname: str, kind_word: str, dtype: Any, hint: str = "") -> ValueError:
    """The dtype error (returned, for ``raise``): ``kind_word`` is e.g. ``"floating"`` or ``"integer"``."""
    article = "an" if kind_word[:1] in "aeiou" else "a"
    return _with_hint(f"{argname} must have {article} {kind_word} dtype; got {dtype}.", hint)


def fail_value(argname: str, condition: str, value: Any, hint: str = "") -> ValueError:
    """The value error (returned, for ``raise``): ``{arg} must be {condition}; got {value!r}.``"""
    return _with_hint(f"{argname} must be {condition}; got {value!r}.", hint)


def layout(
    x: Any,
    argname: str,
    *,
    shape: str | None = None,
    min_ndim: int = 0,
    ndim: int | None = None,
    last: int | None = None,
) -> None:
    """Checks the rank and the last axis of ``x`` (any array-like), without converting it.

    Args:
      x: the argument.
      argname: its name in the error.
      shape: the expected shape as written in the docstring (e.g. ``"[..., 4]"``), used in the error; derived
        from the other arguments when not given.
      min_ndim: the least number of axes.
      ndim: the exact number of axes, if fixed.
      last: the required size of the last axis, if any.
    """
    actual = _shape(x)
    wrong_rank = len(actual) < min_ndim or (ndim is not None and len(actual) != ndim)
    if wrong_rank or (last is not None and (not actual or actual[-1] != last)):
        if shape is None:
            if last is not None:
                shape = f"[..., {last}]"
            elif ndim is not None:
                shape = f"with {ndim} axes"
            else:
                shape = f"with at least {min_ndim} axes"
        raise fail_shape(argname, shape, actual)


def dtype_is(x: Any, argname: str, kind: str, hint: str = "") -> None:
    """Checks that ``x``'s dtype is of ``kind`` ("float", "int" or "bool"), without converting it."""
    abstract, word = _KINDS[kind]
    dtype = jnp.result_type(x) if not hasattr(x, "dtype") else x.dtype
    if not jnp.issubdtype(dtype, abstract):
        raise fail_dtype(argname, word, dtype, hint)


def array(
    x: Any,
    argname: str,
    *,
    kind: str | None = None,
    shape: str | None = None,
    min_ndim: int = 0,
    ndim: int | None = None,
    last: int | None = None,
    hint: str = "",
) -> jax.Array:
    """``jnp.asarray(x)`` after checking its rank and last axis (:func:`layout`) and its dtype kind.

    Args:
      x: the argument.
      argname: its name in the error.
      kind: "float", "int", "bool" or None (any dtype).
      shape, min_ndim, ndim, last: as :func:`layout`.
      hint: a sentence appended to a dtype error (e.g. how to cast).
    """
    x = jnp.asarray(x)
    layout(x, argname, shape=shape, min_ndim=min_ndim, ndim=ndim, last=last)
    if kind is not None:
        dtype_is(x, argname, kind, hint)
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


def shape_is(x: Any, expected: Sequence[int], argname: str, what: str = "", hint: str = "") -> None:
    """``x.shape == expected``; ``what`` says where the expectation comes from (e.g. ``"gt_boxes.shape[:-1]"``)."""
    expected = tuple(int(d) for d in expected)
    if _shape(x) != expected:
        raise fail_shape(argname, f"{what} = {expected}" if what else str(expected), x, hint)


def same_shape(reference: Any, x: Any, reference_name: str, argname: str) -> None:
    """``x`` has the shape of ``reference``."""
    shape_is(x, _shape(reference), argname, f"{reference_name}.shape")


def broadcastable(
    x: Any, reference: Sequence[int], argname: str, what: str, *, skip_last: int = 0, shape: str = "", hint: str = ""
) -> None:
    """The shape of ``x`` and the shape ``reference`` broadcast together (numpy's rule, both ways).

    Args:
      x: the argument.
      reference: the shape it must broadcast with.
      argname: the argument's name in the error.
      what: where ``reference`` comes from (e.g. ``"boxes1.shape"``).
      skip_last: compare only the leading axes of ``x``, without its last ``skip_last`` (``reference`` is then
        the other argument's leading axes).
      shape: the docstring shape that precedes the condition (e.g. ``"[..., M, 4] with leading axes"``).
      hint: a sentence appended to the error.
    """
    actual = _shape(x)
    lead = actual[: len(actual) - skip_last]
    try:
        np.broadcast_shapes(lead, tuple(reference))
    except ValueError:
        expected = f"{shape} broadcastable with" if shape else "broadcastable with"
        raise fail_shape(argname, f"{expected} {what} = {tuple(reference)}", actual, hint) from None


def broadcasts_to(x: Any, target: Sequence[int], argname: str, what: str, hint: str = "") -> None:
    """The shape of ``x`` broadcasts to ``target`` (one way, as ``jnp.broadcast_to``)."""
    target = tuple(int(d) for d in target)
    actual = _shape(x)
    fits = len(actual) <= len(target) and all(
        a in (1, t) for a, t in zip(reversed(actual), reversed(target))
    )
    if not fits:
        raise fail_shape(argname, f"broadcastable to {what} = {target}", actual, hint)


def choice(value: Any, argname: str, options: Sequence[Any], hint: str = "") -> Any:
    """``value`` is one of ``options``; returns it."""
    try:
        ok = value in tuple(options)
    except TypeError:  # an unhashable or array value compared with the options
        ok = False
    if not ok:
        raise fail_value(argname, f"one of {tuple(options)}", value, hint)
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
    hint: str = "",
) -> float:
    """A Python number in the interval given by ``low``/``high`` (closed unless ``*_open``); returns a float.

    A traced (jit) value is returned unchecked: only concrete hyper-parameters can be checked eagerly.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise fail_value(argname, "a number", value, hint) from None
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    if low is not None and high is not None:
        cond = f"in {lo}{low}, {high}{hi}"
    elif low is not None:
        cond = f"{'>' if low_open else '>='} {low}"
    elif high is not None:
        cond = f"{'<' if high_open else '<='} {high}"
    else:
        cond = "a finite number" if finite else "a number"
    if math.isnan(v) or (finite and math.isinf(v)):
        raise fail_value(argname, cond, value, hint)
    if low is not None and (v < low or (low_open and v == low)):
        raise fail_value(argname, cond, value, hint)
    if high is not None and (v > high or (high_open and v == high)):
        raise fail_value(argname, cond, value, hint)
    return v


def positive_int(value: Any, argname: str, *, minimum: int = 1, hint: str = "") -> int:
    """An ``int`` (not a bool) ``>= minimum``; returns it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        cond = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise fail_value(argname, cond, value, hint)
    return int(value)


def keys_present(mapping: Any, keys: Sequence[str], argname: str, hint: str = "") -> None:
    """Every key of ``keys`` is in ``mapping``."""
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise _with_hint(f"{argname} must contain {missing}; got keys {sorted(mapping)}.", hint)


def keys_known(mapping: Any, known: Collection[str], argname: str, hint: str = "") -> None:
    """Every key of ``mapping`` is in ``known``."""
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise _with_hint(f"{argname} must not contain unknown keys {unknown}; known: {sorted(known)}.", hint)


def square_grid(x: Any, argname: str, depth: int, what: str) -> jax.Array:
    """``x`` as an array of shape ``[..., S, S, depth]``: a square grid of ``depth`` values per cell (``what``
    names the layout in the message, e.g. ``"B=2, C=3"``)."""
    x = array(x, argname, shape=f"[..., S, S, {depth}] ({what})", min_ndim=3, last=depth)
    if x.shape[-3] != x.shape[-2]:
        raise fail_shape(argname, f"[..., S, S, {depth}] ({what}): a square grid", x.shape)
    return x


def config_get(cfg: Mapping[str, Any] | Any, name: str, default: Any) -> Any:
    """``cfg.get(name, default)`` for ConfigDicts, dicts and plain attribute objects (None: the default)."""
    if cfg is None:
        return default
    if hasattr(cfg, "get"):
        return cfg.get(name, default)
    return getattr(cfg, name, default)
