"""Side-by-side comparison of a jaxdet function and its PyTorch reference: values and input gradients.

Both sides get the same inputs in each dtype. Gradients are compared as vector-Jacobian products against one
fixed random cotangent per float output, so an unreduced output of any shape is checked element by element
rather than through its sum. torch is imported only when a comparison runs.

A float32 row holds two measurements. The first is jaxdet's float32 result against the reference's float32
result, which is what a user comparing the two libraries sees. The second is jaxdet's float32 result against
the reference run in float64 on the same float32 inputs and cotangents, to float32 precision the exact
answer. Only the second is jaxdet's own error, and a float32 row's tolerance applies to it. The first also
holds the reference's float32 rounding, which in ``yolov8n_model_loss`` is larger than jaxdet's whole error
(``docs/PARITY.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = ("float64", "float32")


@dataclasses.dataclass(frozen=True)
class ParityCase:
    """One row of the parity table: a jaxdet function, its PyTorch reference and how to make inputs.

    Attributes:
      name: row label, e.g. ``"complete_box_iou_loss"``.
      reference: what the torch side is, e.g. ``"torchvision.ops.complete_box_iou_loss"``.
      jax_fn: ``jax_fn(*inputs)`` → an array or a tuple/dict of arrays.
      torch_fn: ``torch_fn(*tensors)`` → the same structure of tensors.
      make_inputs: ``make_inputs(rng)`` → tuple of numpy arrays (float arrays are cast per dtype; integer and
        bool arrays are passed unchanged).
      wrt: indices of the inputs whose gradients are compared.
      rtol64, rtol32: the largest max relative error allowed in float64 and float32.
    """

    name: str
    reference: str
    jax_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    make_inputs: Callable[[np.random.Generator], tuple[np.ndarray, ...]]
    wrt: tuple[int, ...] = (0,)
    rtol64: float = 1e-10
    rtol32: float = 1e-5

    def tolerance(self, dtype: str) -> float:
        return self.rtol64 if dtype == "float64" else self.rtol32


@dataclasses.dataclass(frozen=True)
class ParityError:
    """Errors of one dtype: max absolute and max relative error of the outputs and of the input gradients,
    jaxdet against the reference in the same dtype. A float32 row also has ``ref64_out_rel`` and
    ``ref64_grad_rel``: jaxdet's float32 result against the reference run in float64 on the same inputs
    (None where that run was not made)."""

    dtype: str
    out_abs: float
    out_rel: float
    grad_abs: float
    grad_rel: float
    ref64_out_rel: float | None = None
    ref64_grad_rel: float | None = None

    @property
    def max_rel(self) -> float:
        """The error the tolerance applies to: against the float64 reference where there is one (jaxdet's own
        error), else against the reference in the same dtype."""
        if self.ref64_out_rel is not None:
            return max(self.ref64_out_rel, self.ref64_grad_rel)
        return max(self.out_rel, self.grad_rel)


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """The result of :func:`compare` (one :class:`ParityError` per dtype), printable as a table."""

    name: str
    reference: str
    errors: tuple[ParityError, ...]
    tolerances: dict[str, float] = dataclasses.field(default_factory=dict)

    def passed(self) -> bool:
        """True when every dtype with a tolerance is within it."""
        return all(err.max_rel <= self.tolerances.get(err.dtype, float("inf")) for err in self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "errors": {err.dtype: dataclasses.asdict(err) for err in self.errors},
            "tolerances": dict(self.tolerances),
            "passed": self.passed(),
        }

    def rows(self) -> list[list[str]]:
        rows = []
        for err in self.errors:
            tol = self.tolerances.get(err.dtype)
            ok = "—" if tol is None else ("ok" if err.max_rel <= tol else "FAIL")
            rows.append(
                [
                    self.name,
                    self.reference,
                    err.dtype,
                    f"{err.out_abs:.1e}",
                    f"{err.out_rel:.1e}",
                    f"{err.grad_abs:.1e}",
                    f"{err.grad_rel:.1e}",
                    "—" if err.ref64_out_rel is None else f"{err.ref64_out_rel:.1e} / {err.ref64_grad_rel:.1e}",
                    "—" if tol is None else f"{tol:.0e}",
                    ok,
                ]
            )
        return rows

    def table(self) -> str:
        return format_table([self])


HEADER = ["function", "reference", "dtype", "out max abs", "out max rel", "grad max abs", "grad max rel",
          "vs reference float64: out / grad rel", "tol", ""]


def format_table(reports: Sequence[ParityReport]) -> str:
    """Renders reports as one markdown table (one line per function and dtype)."""
    rows = [row for report in reports for row in report.rows()]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * len(HEADER)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _errors(ours: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, float]:
    """Max absolute and max relative error over matching arrays.

    The relative error of an array is normwise: ``max|a - b| / max|b|``, the largest deviation relative to the
    largest reference magnitude of that array (the infinity-norm relative error). An elementwise ratio would
    measure the cancellation inside float32 gradient sums (an element that sums to nearly zero has no
    meaningful relative precision in either library) rather than disagreement between the libraries.
    A NaN or infinity on either side that the other side does not share counts as an infinite error.
    """
    max_abs, max_rel = 0.0, 0.0
    for a, b in zip(ours, reference, strict=True):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"shape mismatch between jaxdet {a.shape} and the reference {b.shape}")
        if a.size == 0:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.where(a == b, 0.0, np.abs(a - b))
        diff = np.where(np.isfinite(diff), diff, np.inf)
        scale = float(np.abs(np.where(np.isfinite(b), b, 0.0)).max())
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(diff.max()) / scale if scale > 0 else (0.0 if diff.max() == 0 else np.inf))
    return max_abs, max_rel


def _is_float(x: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def _cast(inputs: Sequence[Any], dtype: str) -> list[Any]:
    return [np.asarray(x, dtype=dtype) if _is_float(x) else np.asarray(x) for x in inputs]


def _jax_side(
    jax_fn: Callable[..., Any], inputs: list[np.ndarray], wrt: Sequence[int], seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Outputs, the cotangents used, and the VJP of those cotangents w.r.t. ``inputs[wrt]``."""

    def fn(*diff_args):
        args = [jnp.asarray(x) for x in inputs]
        for index, value in zip(wrt, diff_args):
            args[index] = value
        return jax_fn(*args)

    outputs, vjp_fn = jax.vjp(fn, *[jnp.asarray(inputs[i]) for i in wrt])
    leaves, treedef = jax.tree_util.tree_flatten(outputs)
    rng = np.random.default_rng(seed)
    cotangents = [
        rng.standard_normal(np.shape(leaf)).astype(leaf.dtype) if jnp.issubdtype(leaf.dtype, jnp.floating)
        else np.zeros(np.shape(leaf), jax.dtypes.float0)
        for leaf in leaves
    ]
    grads = vjp_fn(jax.tree_util.tree_unflatten(treedef, [jnp.asarray(c) if c.dtype != jax.dtypes.float0 else c
                                                          for c in cotangents]))
    return [np.asarray(x) for x in leaves], cotangents, [np.asarray(g) for g in grads]


def _torch_side(
    torch_fn: Callable[..., Any], inputs: list[np.ndarray], wrt: Sequence[int], cotangents: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import torch  # noqa: PLC0415 - `import jaxdet.parity` (compare, the case registry) loads no torch

    tensors = [torch.from_numpy(np.array(x, copy=True)) for x in inputs]
    for index in wrt:
        tensors[index].requires_grad_(True)
    outputs = torch_fn(*tensors)
    leaves = jax.tree_util.tree_leaves(outputs, is_leaf=lambda x: isinstance(x, torch.Tensor))
    if len(leaves) != len(cotangents):
        raise ValueError(f"the reference returned {len(leaves)} outputs, jaxdet {len(cotangents)}")
    pairs = [
        (leaf, torch.from_numpy(np.array(cot)))
        for leaf, cot in zip(leaves, cotangents)
        if cot.dtype != jax.dtypes.float0 and leaf.requires_grad
    ]
    differentiable = [tensors[i] for i in wrt]
    if pairs:
        grads = torch.autograd.grad(
            [leaf for leaf, _ in pairs], differentiable, grad_outputs=[cot for _, cot in pairs], allow_unused=True
        )
    else:
        grads = [None] * len(differentiable)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, differentiable)]
    return [leaf.detach().numpy() for leaf in leaves], [g.detach().numpy() for g in grads]


def compare(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    *inputs: Any,
    wrt: Sequence[int] = (0,),
    dtypes: Sequence[str] = DTYPES,
    seed: int = 0,
    name: str = "",
    reference: str = "",
    tolerances: dict[str, float] | None = None,
) -> ParityReport:
    """Runs ``jax_fn`` and ``torch_fn`` on the same inputs in each dtype and measures how far apart they are.

    Args:
      jax_fn: ``jax_fn(*inputs)`` → array, or tuple/dict of arrays.
      torch_fn: ``torch_fn(*tensors)`` → the same structure of tensors.
      *inputs: numpy arrays. Float arrays are cast to each dtype; integer and bool arrays pass unchanged.
      wrt: indices of ``inputs`` whose gradients are compared (must be float arrays).
      dtypes: ``"float64"`` and/or ``"float32"``. float64 runs with JAX's x64 mode switched on for the call.
      seed: seed of the random cotangents (one per float output, shared by both sides).
      name, reference: labels for the table.
      tolerances: optional ``{dtype: max relative error}`` used by :meth:`ParityReport.passed`.

    Returns:
      A :class:`ParityReport`; ``report.table()`` is readable, ``report.as_dict()`` machine-readable.
    """
    for index in wrt:
        if not 0 <= index < len(inputs) or not _is_float(inputs[index]):
            raise ValueError(f"wrt index {index} must name a float array among the {len(inputs)} inputs.")
    errors = []
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"dtypes entries must be one of {DTYPES}; got {dtype!r}.")
        cast = _cast(inputs, dtype)
        with jax.enable_x64(dtype == "float64"):
            jax_out, cotangents, jax_grads = _jax_side(jax_fn, cast, wrt, seed)
        torch_out, torch_grads = _torch_side(torch_fn, cast, wrt, cotangents)
        out_abs, out_rel = _errors(jax_out, torch_out)
        grad_abs, grad_rel = _errors(jax_grads, torch_grads)
        ref64 = {}
        if dtype == "float32":  # the reference in float64 on exactly these inputs and cotangents
            exact_out, exact_grads = _torch_side(torch_fn, _cast(cast, "float64"), wrt,
                                                 [c if c.dtype == jax.dtypes.float0 else c.astype(np.float64)
                                                  for c in cotangents])
            ref64 = {"ref64_out_rel": _errors(jax_out, exact_out)[1],
                     "ref64_grad_rel": _errors(jax_grads, exact_grads)[1]}
        errors.append(ParityError(dtype, out_abs, out_rel, grad_abs, grad_rel, **ref64))
    return ParityReport(name=name, reference=reference, errors=tuple(errors), tolerances=dict(tolerances or {}))


def run_case(case: ParityCase, *, seed: int = 0, dtypes: Sequence[str] = DTYPES) -> ParityReport:
    """Compares one :class:`ParityCase` on inputs drawn (in float64) from ``numpy.random.default_rng(seed)``."""
    inputs = case.make_inputs(np.random.default_rng(seed))
    return compare(
        case.jax_fn,
        case.torch_fn,
        *inputs,
        wrt=case.wrt,
        dtypes=dtypes,
        seed=seed,
        name=case.name,
        reference=case.reference,
        tolerances={dtype: case.tolerance(dtype) for dtype in dtypes},
    )
