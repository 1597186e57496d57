"""MuSGD (ultralytics 8.4's default optimizer for long runs) as an optax transformation.

MuSGD mixes two updates on every 2-D / 4-D parameter (Dense and Conv kernels): a Muon step (momentum, then an
approximate orthogonalisation by a quintic Newton–Schulz iteration) with weight ``muon = 0.2``, and a plain
Nesterov-SGD step with weight ``sgd = 1.0``; every other leaf (BatchNorm scales, biases) gets the SGD step
alone. With learning rate :math:`\\eta`, momentum :math:`\\mu`, weight decay :math:`\\lambda` and gradient
:math:`g`, one step on a Muon leaf :math:`p` is

.. math::

   m \\leftarrow \\mu m + (1-\\mu) g,\\qquad u = \\mu m + (1-\\mu) g \\;(\\text{Nesterov; else } u = m),

   O = s \\cdot \\mathrm{NS}_5(u),\\qquad p_1 = p - \\eta\\,\\mathrm{muon}\\,O,

   d = g + \\lambda p_1,\\qquad b \\leftarrow \\mu b + d,\\qquad v = d + \\mu b \\;(\\text{else } v = b),\\qquad
   p \\leftarrow p_1 - \\eta\\,\\mathrm{sgd}\\,v,

and on any other leaf :math:`p \\leftarrow p - \\eta v` with :math:`d = g + \\lambda p` (torch's SGD with
coupled weight decay; no ``sgd`` factor there). Two details follow ultralytics to the letter: the weight decay
reads the parameter *after* the Muon step (:math:`p_1`; ultralytics applies the two updates one after the
other), and the Muon step has no weight decay.

**Newton–Schulz** (:func:`newton_schulz`): with :math:`(a, b, c) = (3.4445, -4.7750, 2.0315)`,

.. math::

   X_0 = u / (\\lVert u\\rVert_F + \\epsilon),\\qquad A = X X^\\top,\\quad B = bA + cA^2,\\quad X \\leftarrow aX + BX
   \\quad(5\\text{ times}),

on the orientation with no more rows than columns, in bfloat16 as ultralytics (``optim/muon.py::
zeropower_via_newtonschulz5``, :math:`\\epsilon = 10^{-7}`).

**Shapes.** Leaves are in Flax layout: Conv kernels ``[kh, kw, I, O]``, Dense kernels ``[I, O]``. The
orthogonalised matrix is the kernel as ``[kh·kw·I, O]``, the transpose of torch's ``weight.flatten(1)``
``[O, I·kh·kw]`` up to an order of its ``kh·kw·I`` axis, which the iteration does not see (it permutes the
rows of :math:`X^\\top`, and :math:`A = XX^\\top` sums over them). The scale is ultralytics'
:math:`s = \\sqrt{\\max(1, \\text{size}(-2) / \\text{size}(-1))}` on torch's shape: ``kh / kw`` for a Conv
kernel (1 for a square one, whatever its channels), ``O / I`` for a Dense kernel.

**Why not optax.contrib's Muon.** ``optax.contrib.scale_by_muon`` bias-corrects its momentum (ultralytics does
not), and ``orthogonalize_via_newton_schulz`` runs in its input's dtype with ``eps = 1e-8`` and rounds each of
``b·A``, ``A@A`` and their sum separately, where torch's ``baddbmm`` rounds ``b·A + c·A@A`` once. So the
iteration is written here: it computes in float32 and rounds to bfloat16 (``lax.reduce_precision``, which XLA
never elides) exactly where torch's bfloat16 ops round: the input, the norm, the norm plus ``eps``, the
quotient, each ``X@Xᵀ``, each ``baddbmm``. Matrix products take bfloat16 values and accumulate in float32, as
torch's bfloat16 GEMMs do. ultralytics pads a group's matrices with equal column counts into one batch and
transposes the batch when the *padded* row count exceeds the columns, so a matrix that shares a batch with a
taller one is iterated in the other orientation (the same result in exact arithmetic, :math:`f(X^\top) =
f(X)^\top`, not in bfloat16); :func:`musgd` gives each matrix that orientation (:func:`ultralytics_orientations`,
from the shapes of the group it is given: ultralytics' own group when the labels are ``build_optimizer``'s, as
in ``train.recipe``). What remains different is the order of the float32 sums inside a product; over ten steps
of a YOLO-shaped group 85 to 92 of 100 Muon directions equal ultralytics' bit for bit (tests/parity/
test_musgd.py). ``NewtonSchulz(dtype=None)`` iterates in the parameters' own dtype (float64 for the exact
parity row of ``python -m jaxdet.parity``).

References:
  ultralytics ``optim/muon.py`` (``MuSGD``, ``muon_update``, ``zeropower_via_newtonschulz5``) and
  ``engine/trainer.py::build_optimizer``, version 8.4.190. Jordan et al., "Muon: An optimizer for hidden layers
  in neural networks", 2024 (https://kellerjordan.github.io/posts/muon/).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxdet import _checks

__all__ = [
    "ULTRALYTICS_NS_COEFFS",
    "MuSGDState",
    "NewtonSchulz",
    "default_muon_mask",
    "musgd",
    "muon_direction",
    "newton_schulz",
    "ultralytics_orientations",
]

#: ultralytics' quintic Newton–Schulz coefficients ``(a, b, c)`` (Keller Jordan's Muon).
ULTRALYTICS_NS_COEFFS = (3.4445, -4.7750, 2.0315)


@dataclasses.dataclass(frozen=True)
class NewtonSchulz:
    """The orthogonalisation of :func:`musgd` (:func:`newton_schulz`'s keywords; ultralytics' values by default).

    A frozen dataclass rather than four arguments, so that ``optax.inject_hyperparams(musgd)`` keeps it static
    (it would turn ``steps`` into an array and call ``dtype`` as a schedule). ``dtype``: ``"bfloat16"``,
    ``"float16"``, ``"float32"``, ``"float64"`` or None (the parameters' own dtype, unrounded).
    """

    steps: int = 5
    coeffs: tuple[float, float, float] = ULTRALYTICS_NS_COEFFS
    eps: float = 1e-7
    dtype: str | None = "bfloat16"


def _rounding(ns_dtype, dtype) -> tuple[Callable[[jax.Array], jax.Array], Any, Any]:
    """``(round, compute dtype, matmul precision)`` of an iteration in ``ns_dtype`` on ``dtype`` values."""
    if ns_dtype is None:
        return (lambda x: x), dtype, lax.Precision.HIGHEST
    _checks.choice(ns_dtype if isinstance(ns_dtype, str) else getattr(jnp.dtype(ns_dtype), "name", ns_dtype),
                   "ns_dtype", ("bfloat16", "float16", "float32", "float64"))
    ns_dtype = jnp.dtype(ns_dtype)
    info = jnp.finfo(ns_dtype)
    compute = jnp.float32 if info.bits < 32 else ns_dtype

    def rnd(x):
        return lax.reduce_precision(x, exponent_bits=int(info.nexp), mantissa_bits=int(info.nmant))

    # narrow values are exact in float32 and in the TF32/bf16 passes of a default-precision product
    return rnd, compute, (lax.Precision.DEFAULT if info.bits < 32 else lax.Precision.HIGHEST)


def newton_schulz(
    x: jax.Array,
    *,
    steps: int = 5,
    coeffs: tuple[float, float, float] = ULTRALYTICS_NS_COEFFS,
    eps: float = 1e-7,
    ns_dtype: Any = "bfloat16",
    transpose: bool | None = None,
) -> jax.Array:
    """ultralytics' ``zeropower_via_newtonschulz5``: the approximate orthogonal factor of ``x``.

    Args:
      x: ``[..., m, n]`` float matrices (a batch over leading axes); each is normalised by its own Frobenius
        norm and iterated as ``[m, n]`` if ``m <= n``, else as its transpose (torch's rule).
      steps: number of iterations (ultralytics: 5).
      coeffs: ``(a, b, c)`` of :math:`X \\leftarrow aX + (bA + cA^2)X`, :math:`A = XX^\\top`.
      eps: added to the norm (ultralytics: 1e-7).
      ns_dtype: the dtype the iteration rounds to (ultralytics: bfloat16, with float32 accumulation); None:
        ``x``'s own dtype, unrounded.
      transpose: iterate on the transposed matrices; None: when ``m > n``. (The same result in exact
        arithmetic; the roundings differ.)

    Returns:
      ``[..., m, n]`` in ``x``'s dtype: the singular values of ``x`` mapped into roughly (0.7, 1.2).
    """
    x = _checks.floating(x, "x")
    if x.ndim < 2:
        raise _checks.fail_shape("x", "[..., m, n]", x)
    _checks.positive_int(steps, "steps", minimum=0)
    if len(coeffs) != 3:
        raise _checks.fail_value("coeffs", "three numbers (a, b, c)", coeffs)
    _checks.number(eps, "eps", low=0.0)
    rnd, compute, precision = _rounding(ns_dtype, x.dtype)
    a, b, c = (float(v) for v in coeffs)
    out_dtype = x.dtype
    X = rnd(x).astype(compute)  # torch: G.bfloat16()
    norm = rnd(jnp.sqrt(jnp.sum(X * X, axis=(-2, -1), keepdims=True)))  # X.norm(dim=(-2, -1)) -> bf16
    X = rnd(X / rnd(norm + eps))  # X /= norm + eps
    transpose = x.shape[-2] > x.shape[-1] if transpose is None else bool(transpose)
    if transpose:
        X = jnp.swapaxes(X, -1, -2)

    def mm(p, q):
        return jnp.matmul(p, q, precision=precision, preferred_element_type=compute)

    def iteration(_, X):
        A = rnd(mm(X, jnp.swapaxes(X, -1, -2)))  # [.., r, r], r = min(m, n)
        B = rnd(b * A + c * mm(A, A))  # baddbmm(A, A, A, beta=b, alpha=c): one rounding
        return rnd(a * X + mm(B, X))  # baddbmm(X, B, X, beta=a)

    X = lax.fori_loop(0, steps, iteration, X)  # a loop, not 5 copies: the train step compiles faster
    if transpose:
        X = jnp.swapaxes(X, -1, -2)
    return X.astype(out_dtype)


def _muon_scale(shape: tuple[int, ...]) -> float:
    """ultralytics' ``sqrt(max(1, size(-2) / size(-1)))`` on torch's shape of a Flax kernel."""
    if len(shape) == 4:  # [kh, kw, I, O] <-> torch [O, I, kh, kw]: size(-2) / size(-1) = kh / kw
        ratio = shape[0] / shape[1]
    else:  # [I, O] <-> torch [O, I]
        ratio = shape[1] / shape[0]
    return max(1.0, ratio) ** 0.5


def muon_direction(update: jax.Array, *, ns_dtype: Any = "bfloat16", steps: int = 5,
                   coeffs: tuple[float, float, float] = ULTRALYTICS_NS_COEFFS, eps: float = 1e-7,
                   transpose: bool | None = None, batched: bool = False) -> jax.Array:
    """The orthogonalised, scaled Muon direction :math:`O = s\\,\\mathrm{NS}(u)` of one Flax kernel.

    Args:
      update: a Conv kernel ``[kh, kw, I, O]`` or a Dense kernel ``[I, O]`` (the momentum-averaged gradient).
      ns_dtype, steps, coeffs, eps: as :func:`newton_schulz`.
      transpose: iterate on torch's ``[O, K]`` transposed, i.e. on ``[K, O]``; None: when ``O > K`` (torch's
        rule for a matrix on its own; :func:`ultralytics_orientations` gives the rule of its batches).
      batched: ``update`` is ``[n, ...]``, n kernels of one shape, each orthogonalised on its own.

    Returns:
      ``update``'s shape and dtype. The matrix iterated is ``[kh·kw·I, O]`` (module docstring).
    """
    update = _checks.floating(update, "update")
    lead = update.shape[:1] if batched else ()
    kernel = update.shape[len(lead):]
    if len(kernel) not in (2, 4):
        raise _checks.fail_shape("update", "[n, kh, kw, I, O] or [n, I, O]" if batched else "[kh, kw, I, O] or [I, O]",
                                 update)
    matrix = update.reshape(lead + (-1, kernel[-1]))  # [..., K, O] = torch's [..., O, K] transposed
    # torch's matrix is [O, K]; ``transpose`` refers to it
    ortho = newton_schulz(jnp.swapaxes(matrix, -1, -2), steps=steps, coeffs=coeffs, eps=eps, ns_dtype=ns_dtype,
                          transpose=transpose)
    ortho = jnp.swapaxes(ortho, -1, -2)
    return (ortho * jnp.asarray(_muon_scale(kernel), ortho.dtype)).reshape(update.shape)


def _torch_rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(rows, cols)`` of torch's ``weight.flatten(1)`` for a Flax kernel: ``(O, kh·kw·I)`` or ``(O, I)``."""
    return shape[-1], int(math.prod(shape[:-1]))


def ultralytics_orientations(shapes: list[tuple[int, ...]]) -> list[bool]:
    """Whether ultralytics iterates each kernel of one parameter group transposed (``muon_update``'s batches).

    ``muon_update`` buckets a group's matrices ``[O, K]`` (torch's ``flatten(1)``) by ``(K, scale)``, sorts each
    bucket by decreasing ``O``, splits it where the first ``O`` of a chunk exceeds 16 times the next one, pads
    each chunk's rows to its largest ``O`` and iterates the chunk transposed when that ``O`` exceeds ``K``. So a
    matrix is transposed when the tallest matrix of its chunk is taller than ``K`` (not necessarily itself).

    Args:
      shapes: the Flax shapes (``[kh, kw, I, O]`` / ``[I, O]``) of the group's Muon leaves.

    Returns:
      One bool per shape, in order.
    """
    buckets: dict[tuple[int, float], list[int]] = {}
    for index, shape in enumerate(shapes):
        rows, cols = _torch_rows_cols(tuple(shape))
        buckets.setdefault((cols, _muon_scale(tuple(shape))), []).append(index)
    transposed = [False] * len(shapes)
    for (cols, _), members in buckets.items():
        members = sorted(members, key=lambda i: -_torch_rows_cols(tuple(shapes[i]))[0])  # stable, as list.sort
        rows = [_torch_rows_cols(tuple(shapes[i]))[0] for i in members]
        start = 0
        for j in range(1, len(members) + 1):
            if j == len(members) or rows[start] > 16 * rows[j]:
                for i in members[start:j]:
                    transposed[i] = rows[start] > cols
                start = j
    return transposed


def default_muon_mask(params: Any) -> Any:
    """``True`` on the leaves ultralytics' ``build_optimizer`` gives Muon: ``ndim`` 2 or 4."""
    return jax.tree.map(lambda p: jnp.ndim(p) in (2, 4), params)


class MuSGDState(NamedTuple):
    """:func:`musgd`'s state: the update count, the Muon momentum ``m`` (zeros of shape ``()`` on non-Muon
    leaves) and the SGD momentum buffer ``b``, both in the parameters' dtype."""

    count: jax.Array
    muon_momentum: Any
    sgd_momentum: Any


def musgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    *,
    nesterov: bool = True,
    muon: float = 0.2,
    sgd: float = 1.0,
    muon_mask: Any = None,
    orthogonalize: NewtonSchulz = NewtonSchulz(),
) -> optax.GradientTransformation:
    """ultralytics' ``MuSGD`` for one parameter group (module docstring for the formulas).

    ``updates, state = tx.update(grads, state, params)`` returns the change of the parameters (apply with
    ``optax.apply_updates``); ``params`` is required (weight decay and the order of the two steps read it).

    Args:
      learning_rate: :math:`\\eta`, a number or a schedule of the update count (``optax.inject_hyperparams``
        can drive it, and ``momentum`` / ``weight_decay``, per step).
      momentum: :math:`\\mu`, of both the Muon average and the SGD buffer (ultralytics: the group's momentum).
      weight_decay: :math:`\\lambda`, coupled, on the SGD step only.
      nesterov: Nesterov for both steps (ultralytics: True).
      muon, sgd: the weights of the two steps on Muon leaves (ultralytics: 0.2 and 1.0).
      muon_mask: pytree of bools (or ``params -> bools``) of the Muon leaves, each 2-D or 4-D; None:
        :func:`default_muon_mask`. Under ``optax.inject_hyperparams`` a callable mask would be taken for a
        schedule: pass a pytree, or name ``muon_mask`` in its ``static_args``.
      orthogonalize: the Newton–Schulz iteration (:class:`NewtonSchulz`; ultralytics': 5 steps in bfloat16).

    Returns:
      An ``optax.GradientTransformation`` with state :class:`MuSGDState`.
    """
    for name, value in (("momentum", momentum), ("weight_decay", weight_decay), ("muon", muon), ("sgd", sgd)):
        _checks.number(value, name, low=0.0)
    _checks.number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    if not isinstance(orthogonalize, NewtonSchulz):
        raise _checks.fail_value("orthogonalize", "a jaxdet.musgd.NewtonSchulz", orthogonalize)
    ns = orthogonalize
    _checks.positive_int(ns.steps, "orthogonalize.steps", minimum=0)
    _rounding(ns.dtype, jnp.float32)  # names a bad dtype now, not at the first update

    def mask_of(params):
        mask = default_muon_mask(params) if muon_mask is None else (
            muon_mask(params) if callable(muon_mask) else muon_mask)
        flags, tree = jax.tree_util.tree_flatten_with_path(mask)
        leaves = tree.flatten_up_to(params)
        for (path, flag), p in zip(flags, leaves):
            if bool(flag) and jnp.ndim(p) not in (2, 4):
                raise _checks.fail_value("muon_mask", "True only on 2-D or 4-D leaves",
                                         f"True on {jax.tree_util.keystr(path)} of shape {jnp.shape(p)}")
        return mask

    def init_fn(params):
        mask = mask_of(params)
        muon_m = jax.tree.map(lambda f, p: jnp.zeros_like(p) if f else jnp.zeros((), jnp.asarray(p).dtype),
                              mask, params)
        return MuSGDState(count=jnp.zeros((), jnp.int32), muon_momentum=muon_m,
                          sgd_momentum=jax.tree.map(jnp.zeros_like, params))

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError("params must be given to musgd's update (weight decay and the Muon step read them).")
        mask = mask_of(params)
        flags = jax.tree.leaves(mask)
        shapes = [jnp.shape(p) for f, p in zip(flags, jax.tree.structure(mask).flatten_up_to(params)) if f]
        orient = iter(ultralytics_orientations(shapes))
        transposes = jax.tree.unflatten(jax.tree.structure(mask), [next(orient) if f else False for f in flags])
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        mu = momentum

        treedef = jax.tree.structure(grads)
        flag_l, transpose_l, g_l, p_l, m_l, b_l = (
            treedef.flatten_up_to(tree)
            for tree in (mask, transposes, grads, params, state.muon_momentum, state.sgd_momentum))
        dtypes = [jnp.asarray(p).dtype for p in p_l]
        mu_l = [jnp.asarray(mu, dt) for dt in dtypes]

        # Muon: momentum, then one batched iteration per (shape, orientation, dtype), as ultralytics batches
        directions, batches = {}, {}
        for i, flag in enumerate(flag_l):
            if flag:
                m_l[i] = mu_l[i] * m_l[i] + (1 - mu_l[i]) * g_l[i]
                u = mu_l[i] * m_l[i] + (1 - mu_l[i]) * g_l[i] if nesterov else m_l[i]
                batches.setdefault((jnp.shape(u), bool(transpose_l[i]), dtypes[i]), []).append((i, u))
        for (shape, transpose, _), items in batches.items():
            stacked = jnp.stack([u for _, u in items])  # [n, *shape]
            out = muon_direction(stacked, ns_dtype=ns.dtype, steps=ns.steps, coeffs=ns.coeffs, eps=ns.eps,
                                 transpose=transpose, batched=True)
            for k, (i, _) in enumerate(items):
                directions[i] = out[k]

        updates, sgd_b = [], []
        for i in range(len(g_l)):
            dtype, mu_, p = dtypes[i], mu_l[i], p_l[i]
            lr_ = jnp.asarray(lr, dtype)
            step_muon = -(lr_ * jnp.asarray(muon, dtype)) * directions[i] if i in directions else None
            p1 = p if step_muon is None else p + step_muon  # ultralytics: the Muon step lands first
            d = g_l[i] + jnp.asarray(weight_decay, dtype) * p1
            b_new = mu_ * b_l[i] + d
            v = d + mu_ * b_new if nesterov else b_new
            step = -(lr_ * jnp.asarray(sgd, dtype) if step_muon is not None else lr_) * v
            if step_muon is not None:
                step = step_muon + step
            updates.append(step.astype(dtype))
            sgd_b.append(b_new)
        updates, muon_m, sgd_b = (treedef.unflatten(x) for x in (updates, m_l, sgd_b))
        return updates, MuSGDState(optax.safe_increment(state.count), muon_m, sgd_b)

    return optax.GradientTransformation(init_fn, update_fn)
