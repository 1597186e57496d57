"""The optimizer recipe of a run (``train.recipe``) and the model EMA (``train.ema``).

Two recipes:

- ``"jaxdet"`` (``configs/yolov1_shapes.py``, the polygon configs): AdamW on every parameter, linear warm-up from 0 to
  ``train.learning_rate`` then cosine decay to ``learning_rate * end_lr_factor``, global-norm clipping, one
  optimizer update per batch (:func:`train.recipe.make_optimizer`).
- ``"ultralytics"``: ultralytics' detection trainer (``engine/trainer.py`` of ultralytics 8.4.190,
  ``cfg/default.yaml``), expressed in batches ``i`` (ultralytics' ``ni``; skipped non-finite batches do not count):

  * **Parameter groups** (``build_optimizer``): ``"bias"`` (every parameter named ``bias``, norm biases
    included), ``"norm"`` (the other parameters of normalisation layers: BatchNorm/GroupNorm/LayerNorm scales)
    and ``"weight"`` (the rest: kernels). Only ``"weight"`` has weight decay (:func:`param_labels`).
  * **Nominal batch** ``nbs`` (64): gradients of ``a = max(round(nbs / B), 1)`` batches are summed before an
    update (at most ``train.steps``), and the weight decay becomes ``weight_decay * B * a / nbs``. The gradient
    the optimizer sees is :math:`\\sum_j B\\,\\nabla L_j` over the accumulated batches, as ultralytics'
    ``(loss * B).backward()`` (its loss is ``B`` times jaxdet's normalised one).
  * **Warm-up** over ``n_w = train.warmup_steps`` batches (at most ``train.steps - 1``), each value interpolated
    linearly in ``i`` for ``i <= n_w`` (``np.interp`` in ``_do_train``):

    .. math::

       \\mathrm{lr}_{\\mathrm{weight,norm}}(i) = \\mathrm{interp}(i, [0, n_w], [0, \\mathrm{lr_0}\\,l_f(i)]),\\quad
       \\mathrm{lr}_{\\mathrm{bias}}(i) = \\mathrm{interp}(i, [0, n_w], [\\mathrm{warmup\\_bias\\_lr},
       \\mathrm{lr_0}\\,l_f(i)]),

       \\mu(i) = \\mathrm{interp}(i, [0, n_w], [\\mathrm{warmup\\_momentum}, \\mathrm{momentum}]),\\quad
       a(i) = \\max(1, \\mathrm{round}(\\mathrm{interp}(i, [0, n_w], [1, a])))

    and afterwards :math:`\\mathrm{lr} = \\mathrm{lr_0}\\,l_f(i)`, :math:`\\mu` = ``momentum``, :math:`a(i) = a`.
    An update happens at batch ``i`` when the batches accumulated since the last one (this one included) reach
    :math:`a(i)` (ultralytics' ``ni - last_opt_step >= accumulate``).
  * **Decay**: ultralytics' linear :math:`l_f(x) = \\max(1 - x / T, 0)(1 - \\mathrm{lrf}) + \\mathrm{lrf}`, with
    ``x = i`` and ``T = train.steps`` batches (ultralytics evaluates it once per epoch, ``x`` = the epoch).
  * **Optimizer** (``train.optimizer``): ``"sgd"``, torch's SGD with Nesterov momentum :math:`\\mu(i)` and
    coupled weight decay (added to the gradient before the momentum), or ``"adamw"``, torch's AdamW with
    ``betas=(momentum, 0.999)`` and decoupled decay. ultralytics warms up only the SGD momentum (its AdamW groups
    have ``betas``, not ``momentum``), and so does this recipe. ultralytics' ``optimizer="auto"`` (MuSGD for runs
    over 10,000 updates, else AdamW with a fitted ``lr0``) is not offered.
  * Gradients are clipped to global norm ``train.grad_clip`` (ultralytics: 10.0) before the optimizer.

The **EMA** (``train.ema``, either recipe) is ultralytics' ``ModelEMA``: after every optimizer update (number
``u``), every floating leaf of the parameters and of the model state (BatchNorm running statistics) moves as

.. math::

   d_u = \\mathrm{decay}\\,(1 - e^{-u/\\tau}),\\qquad \\bar\\theta \\leftarrow d_u\\,\\bar\\theta + (1 - d_u)\\,\\theta

starting from the initial model (decay 0.9999, :math:`\\tau` = 2000). Evaluation uses it
(:func:`train.model_state.eval_variables`).

References:
  ultralytics ``engine/trainer.py`` (``_build_train_pipeline``, ``_do_train``, ``build_optimizer``,
  ``optimizer_step``) and ``utils/torch_utils.py`` (``ModelEMA``), version 8.4.190.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from train import model_state as model_state_lib

RECIPES = ("jaxdet", "ultralytics")
OPTIMIZERS = ("sgd", "adamw")
GROUPS = ("weight", "norm", "bias")

#: wrappers with "Norm" in their name that re-parametrise another layer's kernel: not normalisation layers.
NOT_NORMS = ("SpectralNorm", "WeightNorm")


def is_norm(module: nnx.Module) -> bool:
    """A normalisation layer: a class in its MRO has "Norm" in its name (ultralytics' test on ``torch.nn``'s class
    names), e.g. ``nnx.BatchNorm``, ``nnx.GroupNorm``, ``nnx.LayerNorm`` and jaxdet's own ``GroupNorm`` /
    ``BatchNorm`` (``jaxdet.models``), but not :data:`NOT_NORMS`."""
    names = [cls.__name__ for cls in type(module).__mro__]
    return any("Norm" in n for n in names) and not any(n in NOT_NORMS for n in names)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the train step needs besides the model and the loss.

    Attributes:
      tx: the optax transformation; ``tx.update(grads, state, params, batch_index=i)``.
      schedules: name -> ``i -> value`` of the hyper-parameters logged every step (``lr``; ultralytics: also
        ``lr_bias``, ``momentum``, ``accumulate``).
      accumulate: ``i -> batches per update`` (gradients summed in the train state), or None: one update per
        batch, no accumulator in the state.
      grad_scale: the factor on each batch's gradient (ultralytics: the batch size).
      ema: ``(decay, tau)`` of the model EMA, or None.
      description: one line for the log.
    """

    tx: optax.GradientTransformation
    schedules: dict[str, Callable[[Any], Any]]
    accumulate: Callable[[Any], Any] | None = None
    grad_scale: float = 1.0
    ema: tuple[float, float] | None = None
    description: str = ""


def _keys(path) -> tuple:
    """The module/attribute names of a State leaf path (without the trailing ``.value``)."""
    return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))


def param_labels(model: nnx.Module) -> Callable[[Any], Any]:
    """``params -> labels``: the ultralytics parameter group (``"weight"``, ``"norm"``, ``"bias"``) of each leaf.

    A leaf named ``bias`` is ``"bias"``; any other parameter of a normalisation layer (:func:`is_norm`) is
    ``"norm"``; the rest is ``"weight"``. ``model`` may be abstract (``nnx.eval_shape``); the labels follow the
    nnx paths of ``train.model_state.split_model``'s params, so they work for any model.
    """
    norm_paths = {tuple(path) for path, module in nnx.iter_modules(model) if is_norm(module)}

    def label(path, _):
        keys = _keys(path)
        if keys[-1] == "bias":
            return "bias"
        return "norm" if keys[:-1] in norm_paths else "weight"

    return lambda params: jax.tree_util.tree_map_with_path(label, params)


class BatchSchedule:
    """An optax stateful schedule of the batch index passed to ``update(..., batch_index=i)``.

    ``optax.inject_hyperparams`` evaluates it at every update, so a hyper-parameter can follow the batch index
    (ultralytics' ``ni``) rather than the number of updates (they differ under gradient accumulation).
    """

    def __init__(self, fn: Callable[[jax.Array], jax.Array]):
        self.fn = fn

    def init(self):
        return ()

    def update(self, state, **extra_args):
        return state

    def __call__(self, state, *, batch_index=0, **extra_args):
        return self.fn(jnp.asarray(batch_index, jnp.int32))


def _interp(i, n, start, end):
    """``np.interp(i, [0, n], [start, end])`` for ``0 <= i <= n``, exact at both ends in float32."""
    t = i / n
    return (1.0 - t) * start + t * end


def ultralytics_schedules(tc: ml_collections.ConfigDict) -> dict[str, Callable]:
    """Batch index -> ``lr``, ``lr_bias``, ``momentum``, ``accumulate`` (float32 / int32), as ultralytics.

    See the module docstring for the formulas; ``lr`` is the ``"weight"`` and ``"norm"`` groups'.
    """
    steps = int(tc.steps)
    nw = int(min(int(tc.warmup_steps), max(steps - 1, 0)))
    lr0, lrf = float(tc.learning_rate), float(tc.lrf)
    acc0 = nominal_accumulate(tc)

    def target(i):
        return lr0 * (jnp.maximum(1.0 - i / steps, 0.0) * (1.0 - lrf) + lrf)

    def warm(i, start, end):
        if nw == 0:
            return jnp.asarray(end, jnp.float32) + jnp.zeros_like(i, jnp.float32)
        return jnp.where(i <= nw, _interp(jnp.minimum(i, nw), nw, start, end), end).astype(jnp.float32)

    # the integer ramp decides when updates happen: tabulated with numpy's float64 interp and round-half-even,
    # as ultralytics computes it, rather than recomputed in float32
    ramp = np.maximum(1, np.interp(np.arange(nw + 1), [0, nw], [1, acc0]).round()).astype(np.int32)

    def accumulate(i):
        if nw == 0:  # no warm-up: ``a`` from the first batch
            return jnp.full_like(i, acc0, jnp.int32)
        return jnp.where(i <= nw, jnp.asarray(ramp)[jnp.clip(i, 0, nw)], acc0).astype(jnp.int32)

    return {
        "lr": lambda i: warm(i, 0.0, target(i)),
        "lr_bias": lambda i: warm(i, float(tc.warmup_bias_lr), target(i)),
        "momentum": lambda i: warm(i, float(tc.warmup_momentum), float(tc.momentum)),
        "accumulate": accumulate,
    }


def nominal_accumulate(tc: ml_collections.ConfigDict) -> int:
    """Batches per update after warm-up: ``max(round(nbs / batch_size), 1)``, at most ``train.steps``."""
    return min(max(round(int(tc.nbs) / int(tc.batch_size)), 1), int(tc.steps))


def scaled_weight_decay(tc: ml_collections.ConfigDict) -> float:
    """ultralytics' ``weight_decay * batch_size * accumulate / nbs`` (``accumulate`` before the steps cap)."""
    acc = max(round(int(tc.nbs) / int(tc.batch_size)), 1)
    return float(tc.weight_decay) * int(tc.batch_size) * acc / int(tc.nbs)


def make_lr_schedule(train_cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup from 0 to ``learning_rate`` then cosine decay to ``learning_rate * end_lr_factor``."""
    steps = int(train_cfg.steps)
    warmup = int(min(train_cfg.warmup_steps, max(steps - 1, 0)))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=float(train_cfg.learning_rate),
        warmup_steps=warmup,
        decay_steps=max(steps, warmup + 1),
        end_value=float(train_cfg.learning_rate) * float(train_cfg.end_lr_factor),
    )


def make_optimizer(train_cfg: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with warmup + cosine LR, optionally after global-norm clipping."""
    lr = make_lr_schedule(train_cfg)
    tx = optax.adamw(learning_rate=lr, weight_decay=float(train_cfg.weight_decay))
    if float(train_cfg.get("grad_clip", 0.0)) > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(train_cfg.grad_clip)), tx)
    return tx, lr


def _sgd_coupled(learning_rate, momentum, weight_decay):
    """torch SGD(nesterov=True): ``g + wd * p`` into the momentum buffer, then ``-lr * (g + mu * buf)``."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum, nesterov=True))


def make_ultralytics_optimizer(tc: ml_collections.ConfigDict, labels: Callable[[Any], Any]):
    """``(tx, schedules)``: clip, then one injected SGD/AdamW per parameter group (``optax.partition``)."""
    schedules = ultralytics_schedules(tc)
    decay = scaled_weight_decay(tc)

    def group(name):
        lr = BatchSchedule(schedules["lr_bias" if name == "bias" else "lr"])
        wd = decay if name == "weight" else 0.0
        if tc.optimizer == "sgd":
            return optax.inject_hyperparams(_sgd_coupled)(
                learning_rate=lr, momentum=BatchSchedule(schedules["momentum"]), weight_decay=wd
            )
        return optax.inject_hyperparams(optax.adamw)(
            learning_rate=lr, b1=float(tc.momentum), b2=0.999, eps=1e-8, weight_decay=wd
        )

    tx = optax.partition({name: group(name) for name in GROUPS}, labels)
    if float(tc.get("grad_clip", 0.0)) > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(tc.grad_clip)), tx)
    if tc.optimizer != "sgd":  # AdamW's beta1 stays at ``momentum`` (ultralytics); not logged as warmed up
        schedules = dict(schedules, momentum=lambda i: jnp.full_like(i, float(tc.momentum), jnp.float32))
    return tx, schedules


def make_recipe(tc: ml_collections.ConfigDict, build_model: Callable[[nnx.Rngs], nnx.Module]) -> Recipe:
    """The :class:`Recipe` of the ``train`` section (``train.recipe``, ``train.ema``)."""
    ema = (float(tc.ema_decay), float(tc.ema_tau)) if tc.get("ema", False) else None
    ema_text = f"; EMA decay {ema[0]} tau {ema[1]:g}" if ema else "; no EMA"
    clip = float(tc.get("grad_clip", 0.0))
    if tc.get("recipe", "jaxdet") == "jaxdet":
        tx, lr = make_optimizer(tc)
        text = (f"jaxdet: AdamW lr {float(tc.learning_rate):g} (warm-up {int(tc.warmup_steps)} steps, cosine to "
                f"x{float(tc.end_lr_factor):g}), weight decay {float(tc.weight_decay):g}, clip {clip:g}")
        return Recipe(tx=tx, schedules={"lr": lr}, ema=ema, description=text + ema_text)
    model = nnx.eval_shape(lambda: build_model(nnx.Rngs(0)))
    labels = param_labels(model)
    tx, schedules = make_ultralytics_optimizer(tc, labels)
    counts = {g: 0 for g in GROUPS}
    for label in jax.tree.leaves(labels(model_state_lib.split_model(model)[1])):
        counts[label] += 1
    text = (
        f"ultralytics: {'SGD(nesterov)' if tc.optimizer == 'sgd' else 'AdamW'} lr0 {float(tc.learning_rate):g} "
        f"lrf {float(tc.lrf):g} momentum {float(tc.momentum):g}; parameter groups {counts['weight']} weight "
        f"(decay {scaled_weight_decay(tc):g}), {counts['norm']} norm (decay 0), {counts['bias']} bias (decay 0); "
        f"{nominal_accumulate(tc)} batch(es) of {int(tc.batch_size)} per update (nbs {int(tc.nbs)}); warm-up "
        f"{min(int(tc.warmup_steps), max(int(tc.steps) - 1, 0))} batches (bias lr {float(tc.warmup_bias_lr):g}, "
        f"momentum {float(tc.warmup_momentum):g}); clip {clip:g}"
    )
    return Recipe(
        tx=tx,
        schedules=schedules,
        accumulate=schedules["accumulate"],
        grad_scale=float(tc.batch_size),
        ema=ema,
        description=text + ema_text,
    )


def ema_init(params, model_state) -> dict[str, Any]:
    """The EMA's state: a copy of the initial variables and ``updates = 0``."""
    copy = lambda tree: jax.tree.map(jnp.array, tree)  # noqa: E731 - its own buffers (the state is donated)
    return {"params": copy(params), "model_state": copy(model_state), "updates": jnp.zeros((), jnp.int32)}


def ema_update(ema: dict[str, Any], params, model_state, *, decay: float, tau: float) -> dict[str, Any]:
    """One ``ModelEMA.update``: ``updates += 1``, then every floating leaf moves to ``d * ema + (1 - d) * new``."""
    updates = ema["updates"] + 1
    d = decay * (1.0 - jnp.exp(-updates.astype(jnp.float32) / tau))

    def lerp(old, new):
        if not jnp.issubdtype(old.dtype, jnp.floating):
            return old  # ultralytics averages floating state_dict entries only
        return (d * old + (1.0 - d) * new).astype(old.dtype)

    return {
        "params": jax.tree.map(lerp, ema["params"], params),
        "model_state": jax.tree.map(lerp, ema["model_state"], model_state),
        "updates": updates,
    }
