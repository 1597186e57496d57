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
    coupled weight decay (added to the gradient before the momentum); ``"adamw"``, torch's AdamW with
    ``betas=(momentum, 0.999)`` and decoupled decay; ``"musgd"``, ultralytics' MuSGD (:func:`jaxdet.musgd.musgd`:
    Muon with weight 0.2 plus Nesterov SGD with weight 1.0 on every 2-D/4-D kernel, SGD alone on the rest, the
    momentum :math:`\\mu(i)` for both); or ``"auto"``, ultralytics' rule (:func:`auto_optimizer`): MuSGD with
    ``lr0 = 0.01`` for runs of more than 10,000 iterations, else AdamW with ``lr0 = 0.002·5/(4 + C)``, both
    with momentum 0.9 and ``warmup_bias_lr = 0`` (``train.learning_rate`` and ``train.warmup_bias_lr`` are then
    ignored, as ultralytics ignores ``lr0``). ultralytics warms up only the SGD/MuSGD momentum (its AdamW groups
    have ``betas``, not ``momentum``), and so does this recipe; the warm-up ends at ``train.momentum``, so
    auto's 0.9 stays only without warm-up (ultralytics' ``_do_train`` likewise).
  * **MuSGD groups**: a 2-D/4-D parameter goes to ``"muon"`` before any other test (``build_optimizer``), so
    the others hold 1-D leaves only; each group is split again, and the class branches of the detection head
    (``cv3`` and ``one2one_cv3`` of the last layer of ``model``, ultralytics' ``model.model[-1]``) get
    3× the lr, warm-up target included (groups ``"<group>_cls"``, :func:`class_branch_paths`). SGD and AdamW
    have no such split (ultralytics splits only for MuSGD).
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
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxdet.musgd import musgd
from train import freeze as freeze_lib
from train import model_state as model_state_lib

RECIPES = ("jaxdet", "ultralytics")
OPTIMIZERS = ("sgd", "adamw", "musgd", "auto")
GROUPS = ("weight", "norm", "bias")
#: MuSGD's groups: ``"muon"`` (2-D/4-D kernels) and the three others, each also as ``"<group>_cls"`` (the class
#: branches, 3× lr), in ultralytics' order of ``build_optimizer``'s log line.
MUSGD_GROUPS = ("muon", "weight", "norm", "bias", "muon_cls", "weight_cls", "norm_cls", "bias_cls")
#: the lr factor of the class branches under MuSGD (``build_optimizer``: ``lr * 3``).
CLASS_BRANCH_LR = 3.0
#: ``optimizer="auto"``: MuSGD above this many iterations, else AdamW (``build_optimizer``).
AUTO_MUSGD_ITERATIONS = 10_000
#: the class branches of ultralytics' detection heads (``cv3``; YOLO26's ``one2one_cv3``).
CLASS_BRANCHES = ("cv3", "one2one_cv3")

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


def class_branch_paths(model: nnx.Module) -> set[tuple]:
    """The module paths of the class branches that MuSGD gives 3× the lr: ``cv3`` and ``one2one_cv3`` of the
    last layer of each ``model`` list (ultralytics' ``model.model[-1].cv3`` / ``.one2one_cv3``), e.g.
    ``("model", 22, "cv3")``; empty for a model without them (ultralytics' ``getattr(head, "cv3", None)``)."""
    paths = {tuple(path) for path, _ in nnx.iter_modules(model)}
    last: dict[tuple, int] = {}
    for path in paths:
        if len(path) >= 2 and path[-2] == "model" and isinstance(path[-1], int):
            last[path[:-1]] = max(last.get(path[:-1], -1), path[-1])
    return {prefix + (index, branch) for prefix, index in last.items() for branch in CLASS_BRANCHES
            if prefix + (index, branch) in paths}


def param_labels(model: nnx.Module, optimizer: str = "sgd") -> Callable[[Any], Any]:
    """``params -> labels``: the ultralytics parameter group of each leaf.

    SGD / AdamW (:data:`GROUPS`): a leaf named ``bias`` is ``"bias"``; any other parameter of a normalisation
    layer (:func:`is_norm`) is ``"norm"``; the rest is ``"weight"``. MuSGD (:data:`MUSGD_GROUPS`): a 2-D or 4-D
    leaf is ``"muon"`` first, the rest as above; a leaf inside a class branch (:func:`class_branch_paths`) gets
    the suffix ``"_cls"``. ``model`` may be abstract (``nnx.eval_shape``); the labels follow the nnx paths of
    ``train.model_state.split_model``'s params, so they work for any model.
    """
    norm_paths = {tuple(path) for path, module in nnx.iter_modules(model) if is_norm(module)}
    musgd = optimizer == "musgd"
    branches = class_branch_paths(model) if musgd else set()

    def label(path, leaf):
        keys = _keys(path)
        if musgd and jnp.ndim(leaf) in (2, 4):
            group = "muon"
        elif keys[-1] == "bias":
            group = "bias"
        else:
            group = "norm" if keys[:-1] in norm_paths else "weight"
        boosted = any(keys[: len(b)] == b for b in branches)
        return group + "_cls" if boosted else group

    return lambda params: jax.tree_util.tree_map_with_path(label, params)


def ultralytics_iterations(tc: ml_collections.ConfigDict) -> int:
    """The iterations ``optimizer="auto"`` decides on: ``ceil(steps · B / max(B, nbs))``.

    ultralytics counts ``ceil(len(dataset) / max(batch, nbs)) * epochs``, the optimizer updates at the nominal
    batch; a run here is ``train.steps`` batches of ``B`` images, so its images divided by ``max(B, nbs)``
    (without ultralytics' rounding up per epoch: this recipe has no epochs).
    """
    batch = int(tc.batch_size)
    return math.ceil(int(tc.steps) * batch / max(batch, int(tc.nbs)))


def auto_optimizer(tc: ml_collections.ConfigDict, num_classes: int | None) -> dict[str, Any]:
    """What ``train.optimizer`` means: ultralytics' ``build_optimizer`` rule for ``"auto"``, else the field.

    Returns ``{"optimizer", "learning_rate", "momentum", "warmup_bias_lr", "why"}``: for ``"auto"``, MuSGD with
    lr0 0.01 when :func:`ultralytics_iterations` exceeds :data:`AUTO_MUSGD_ITERATIONS`, else AdamW with
    ``lr_fit = round(0.002 · 5 / (4 + C), 6)``; momentum 0.9 and ``warmup_bias_lr = 0`` either way. ``C`` is the
    model's ``num_classes`` (ultralytics: the data's ``nc``, 10 when it has none; so here too when None).
    """
    if tc.optimizer != "auto":
        return {"optimizer": tc.optimizer, "learning_rate": float(tc.learning_rate),
                "momentum": float(tc.momentum), "warmup_bias_lr": float(tc.warmup_bias_lr), "why": ""}
    iterations = ultralytics_iterations(tc)
    nc = 10 if num_classes is None else int(num_classes)
    if iterations > AUTO_MUSGD_ITERATIONS:
        name, lr, why = "musgd", 0.01, f"{iterations} iterations > {AUTO_MUSGD_ITERATIONS}: MuSGD lr0 0.01"
    else:
        lr = round(0.002 * 5 / (4 + nc), 6)
        name, why = "adamw", (f"{iterations} iterations <= {AUTO_MUSGD_ITERATIONS}: AdamW lr0 "
                              f"0.002*5/(4+{nc}) = {lr:g}")
    why = (f"auto ({why}, momentum 0.9, warm-up bias lr 0; iterations = ceil({int(tc.steps)} batches x "
           f"{int(tc.batch_size)} / max({int(tc.batch_size)}, nbs {int(tc.nbs)}))"
           + (", 10 classes assumed" if num_classes is None else "") + ")")
    return {"optimizer": name, "learning_rate": lr, "momentum": 0.9, "warmup_bias_lr": 0.0, "why": why}


def model_num_classes(model: nnx.Module) -> int | None:
    """The ``num_classes`` of the first module that has an int one (the YOLO ``Detect``), else None."""
    for _, module in nnx.iter_modules(model):
        value = getattr(module, "num_classes", None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


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


def ultralytics_schedules(tc: ml_collections.ConfigDict, choice: dict[str, Any] | None = None) -> dict[str, Callable]:
    """Batch index -> ``lr``, ``lr_bias``, ``lr_cls``, ``lr_bias_cls``, ``momentum``, ``accumulate`` (float32 /
    int32), as ultralytics.

    See the module docstring for the formulas; ``lr`` is the ``"weight"`` and ``"norm"`` groups' (and MuSGD's
    ``"muon"``), the ``_cls`` ones MuSGD's class branches (3× the target). ``choice`` (:func:`auto_optimizer`)
    gives lr0, the warm-up bias lr and the momentum without warm-up; default: the fields.
    """
    choice = choice or auto_optimizer(tc, None)
    steps = int(tc.steps)
    nw = int(min(int(tc.warmup_steps), max(steps - 1, 0)))
    lr0, lrf = float(choice["learning_rate"]), float(tc.lrf)
    bias0 = float(choice["warmup_bias_lr"])
    # the warm-up lands on train.momentum; without one the optimizer keeps the momentum it was built with
    momentum = float(tc.momentum) if nw > 0 else float(choice["momentum"])
    acc0 = nominal_accumulate(tc)

    def target(i, factor=1.0):
        return factor * lr0 * (jnp.maximum(1.0 - i / steps, 0.0) * (1.0 - lrf) + lrf)

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
        "lr_bias": lambda i: warm(i, bias0, target(i)),
        "lr_cls": lambda i: warm(i, 0.0, target(i, CLASS_BRANCH_LR)),
        "lr_bias_cls": lambda i: warm(i, bias0, target(i, CLASS_BRANCH_LR)),
        "momentum": lambda i: warm(i, float(tc.warmup_momentum), momentum),
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


def make_ultralytics_optimizer(tc: ml_collections.ConfigDict, labels: Callable[[Any], Any],
                               choice: dict[str, Any] | None = None):
    """``(tx, schedules)``: clip, then one injected SGD/AdamW/MuSGD per parameter group (``optax.partition``).

    ``labels`` from :func:`param_labels` with the same optimizer; ``choice`` from :func:`auto_optimizer`
    (default: the fields, which must not say ``"auto"`` then).
    """
    choice = choice or auto_optimizer(tc, None)
    optimizer = choice["optimizer"]
    schedules = ultralytics_schedules(tc, choice)
    decay = scaled_weight_decay(tc)
    momentum = BatchSchedule(schedules["momentum"])

    def group(name):
        base, cls = name.removesuffix("_cls"), name.endswith("_cls")
        lr = BatchSchedule(schedules[("lr_bias" if base == "bias" else "lr") + ("_cls" if cls else "")])
        wd = decay if base in ("weight", "muon") else 0.0
        if optimizer == "sgd":
            return optax.inject_hyperparams(_sgd_coupled)(learning_rate=lr, momentum=momentum, weight_decay=wd)
        if optimizer == "musgd":  # ultralytics' muon=0.2, sgd=1.0, Nesterov, bf16 Newton-Schulz (defaults)
            return optax.inject_hyperparams(musgd)(learning_rate=lr, momentum=momentum, weight_decay=wd)
        return optax.inject_hyperparams(optax.adamw)(
            learning_rate=lr, b1=float(choice["momentum"]), b2=0.999, eps=1e-8, weight_decay=wd
        )

    groups = MUSGD_GROUPS if optimizer == "musgd" else GROUPS
    tx = optax.partition({name: group(name) for name in groups}, labels)
    if float(tc.get("grad_clip", 0.0)) > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(tc.grad_clip)), tx)
    if optimizer == "adamw":  # AdamW's beta1 stays at ``momentum`` (ultralytics); not logged as warmed up
        schedules = dict(schedules, momentum=lambda i: jnp.full_like(i, float(choice["momentum"]), jnp.float32))
    if optimizer != "musgd":  # the class-branch lrs exist only under MuSGD
        schedules = {k: v for k, v in schedules.items() if not k.endswith("_cls")}
    return tx, schedules


OPTIMIZER_NAMES = {"sgd": "SGD(nesterov)", "adamw": "AdamW",
                   "musgd": "MuSGD(muon 0.2 bf16 Newton-Schulz + nesterov SGD 1.0)"}


def make_recipe(tc: ml_collections.ConfigDict, build_model: Callable[[nnx.Rngs], nnx.Module]) -> Recipe:
    """The :class:`Recipe` of the ``train`` section (``train.recipe``, ``train.ema``, ``train.freeze``: the frozen
    parameters' updates are zero, :func:`train.freeze.freeze_tx`)."""
    recipe = _make_recipe(tc, build_model)
    value = tc.get("freeze", "")
    if not freeze_lib.patterns(value):
        return recipe
    model = nnx.eval_shape(lambda: build_model(nnx.Rngs(0)))
    frozen, total, _ = freeze_lib.count(model, value)
    text = (f"; train.freeze={value}: {frozen} of {total} parameter tensors frozen (no update, their BatchNorms "
            "in eval mode)")
    return dataclasses.replace(recipe, tx=freeze_lib.freeze_tx(recipe.tx, value),
                               description=recipe.description + text)


def _make_recipe(tc: ml_collections.ConfigDict, build_model: Callable[[nnx.Rngs], nnx.Module]) -> Recipe:
    ema = (float(tc.ema_decay), float(tc.ema_tau)) if tc.get("ema", False) else None
    ema_text = f"; EMA decay {ema[0]} tau {ema[1]:g}" if ema else "; no EMA"
    clip = float(tc.get("grad_clip", 0.0))
    if tc.get("recipe", "jaxdet") == "jaxdet":
        tx, lr = make_optimizer(tc)
        text = (f"jaxdet: AdamW lr {float(tc.learning_rate):g} (warm-up {int(tc.warmup_steps)} steps, cosine to "
                f"x{float(tc.end_lr_factor):g}), weight decay {float(tc.weight_decay):g}, clip {clip:g}")
        return Recipe(tx=tx, schedules={"lr": lr}, ema=ema, description=text + ema_text)
    model = nnx.eval_shape(lambda: build_model(nnx.Rngs(0)))
    choice = auto_optimizer(tc, model_num_classes(model))
    labels = param_labels(model, choice["optimizer"])
    tx, schedules = make_ultralytics_optimizer(tc, labels, choice)
    groups = MUSGD_GROUPS if choice["optimizer"] == "musgd" else GROUPS
    counts = {g: 0 for g in groups}
    for label in jax.tree.leaves(labels(model_state_lib.split_model(model)[1])):
        counts[label] += 1
    wd = scaled_weight_decay(tc)
    if choice["optimizer"] == "musgd":
        group_text = (f"{counts['muon']} muon (decay {wd:g}), {counts['weight']} weight (decay {wd:g}), "
                      f"{counts['norm']} norm (decay 0), {counts['bias']} bias (decay 0), class branches at "
                      f"lr x{CLASS_BRANCH_LR:g}: {counts['muon_cls']} muon, {counts['weight_cls']} weight, "
                      f"{counts['norm_cls']} norm, {counts['bias_cls']} bias")
    else:
        group_text = (f"{counts['weight']} weight (decay {wd:g}), {counts['norm']} norm (decay 0), "
                      f"{counts['bias']} bias (decay 0)")
    text = (
        f"ultralytics: {OPTIMIZER_NAMES[choice['optimizer']]} lr0 {choice['learning_rate']:g} "
        f"lrf {float(tc.lrf):g} momentum {float(tc.momentum):g}"
        + (f" [{choice['why']}]" if choice["why"] else "")
        + f"; parameter groups {group_text}; "
        f"{nominal_accumulate(tc)} batch(es) of {int(tc.batch_size)} per update (nbs {int(tc.nbs)}); warm-up "
        f"{min(int(tc.warmup_steps), max(int(tc.steps) - 1, 0))} batches (bias lr {choice['warmup_bias_lr']:g}, "
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
