"""The train state and the single jitted, sharded train step. The step knows no head.

The model is split once with ``nnx.split`` into a static ``graphdef`` and array pytrees, so the step is a
pure function ``(state, batch) -> (state, metrics)`` of the state dict::

    state = {
        "step":        int32 [],      # batches trained on (the data position, too)
        "params":      nnx.State,     # nnx.Param leaves
        "model_state": nnx.State,     # every other model variable (e.g. BatchNorm statistics; empty if none)
        "opt_state":   optax state,   # optimizer moments + schedule counts (train.recipe)
        "loss_state":  pytree,        # the loss's own state (the head's EMAs, adaptive α; {} if none)
        "skipped_steps": int32 [],    # steps whose loss or gradients were not finite (all time)
        "nonfinite_run": int32 [],    # of them, the current run of consecutive ones
        # only with gradient accumulation (train.recipe="ultralytics"):
        "accum": {"grads": like params, "count": int32 []},  # gradients summed since the last update
        # only with train.ema (train.recipe.ema_update):
        "ema": {"params": like params, "model_state": like model_state, "updates": int32 []},
    }

``step`` counts batches; an optimizer update happens at every batch, or, with accumulation, when the
accumulated batches reach ``accumulate(i)``; the EMA moves after each update.

**Non-finite steps.** A step whose loss or gradients are not finite changes nothing but ``step`` (the batch is
consumed): a ``lax.cond`` keeps params, model state, optimizer state, loss state, accumulator and EMA as they
were, as if the batch had not been there, and ``skipped_steps`` / ``nonfinite_run`` count it.
(``optax.apply_if_finite`` does this for the optimizer alone; the train state also holds batch statistics and the
loss state.)

The loss has one arity: ``loss_fn(outputs, batch, *, step, state) -> (loss, metrics, state)``. The forward pass
runs in train mode; the model variables it updates (batch statistics) are written back into ``model_state``.

``jax.jit`` gets explicit ``NamedSharding``s: the state replicated (``P()``; a model/FSDP axis of the
mesh would shard it instead), the batch split over ``"data"``, and the state is donated. Under data-parallel
jit a BatchNorm's statistics are those of the global batch.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from train import mesh as mesh_lib
from train import model_state as model_state_lib
from train import recipe as recipe_lib


def make_init_fn(
    build_model: Callable[[nnx.Rngs], nnx.Module],
    tx,
    *,
    seed: int,
    init_loss_state=dict,
    accumulate: bool = False,
    ema: bool = False,
):
    """Returns ``(graphdef, init_fn)``; ``init_fn()`` builds the initial state (jit it with out_shardings).

    Args:
      build_model: ``rngs -> nnx.Module``.
      tx: the optax transformation.
      seed: parameter initialisation seed.
      init_loss_state: ``() -> loss_state`` (the head's :meth:`~jaxdet.models.base_head.Head.init_state`).
      accumulate: add the gradient accumulator ``state["accum"]`` (a :class:`~train.recipe.Recipe` with
        ``accumulate``).
      ema: add the model EMA ``state["ema"]`` (a copy of the initial variables).
    """

    def init_fn():
        model = build_model(nnx.Rngs(params=seed, default=seed))
        _, params, model_state = model_state_lib.split_model(model)
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "model_state": model_state,
            "opt_state": tx.init(params),
            "loss_state": init_loss_state(),
            "skipped_steps": jnp.zeros((), jnp.int32),
            "nonfinite_run": jnp.zeros((), jnp.int32),
        }
        if accumulate:
            state["accum"] = {"grads": jax.tree.map(jnp.zeros_like, params), "count": jnp.zeros((), jnp.int32)}
        if ema:
            state["ema"] = recipe_lib.ema_init(params, model_state)
        return state

    abstract_model = nnx.eval_shape(lambda: build_model(nnx.Rngs(params=seed, default=seed)))
    graphdef, _, _ = model_state_lib.split_model(abstract_model)
    return graphdef, init_fn


def make_recipe_init_fn(train_cfg: ml_collections.ConfigDict, build_model, *, seed: int, init_loss_state=dict):
    """``(recipe, graphdef, init_fn)`` of ``train_cfg``'s recipe (:func:`train.recipe.make_recipe`): the state
    structure the loop trains and its checkpoints hold (with ``accum`` / ``ema`` when the recipe has them)."""
    recipe = recipe_lib.make_recipe(train_cfg, build_model)
    graphdef, init_fn = make_init_fn(
        build_model,
        recipe.tx,
        seed=seed,
        init_loss_state=init_loss_state,
        accumulate=recipe.accumulate is not None,
        ema=recipe.ema is not None,
    )
    return recipe, graphdef, init_fn


#: the state entries every finite batch changes (plus "accum" and "ema" when the state has them).
_LEARNED = ("model_state", "loss_state", "opt_state", "params")


def _where(cond, new, old):
    """``new`` where the scalar ``cond`` holds, else ``old`` (same-structured pytrees)."""
    return jax.tree.map(lambda n, o: jnp.where(cond, n, o), new, old)


def make_train_step(graphdef, *, loss_fn, tx, lr_schedule, schedules=None, accumulate=None, grad_scale=1.0,
                    ema=None):
    """The pure train step ``(state, batch) -> (state, metrics)``.

    Args:
      graphdef: from :func:`make_init_fn`.
      loss_fn: ``loss_fn(outputs, batch, *, step, state) -> (loss scalar, metrics dict of scalars, state)``;
        ``step`` is the number of batches trained on so far (skipped non-finite steps do not count).
      tx: the optax transformation; its ``update`` gets ``batch_index=`` that number (ignored by plain ones).
      lr_schedule: step -> learning rate (logged as ``lr``).
      schedules: more ``name -> (step -> value)`` to log (e.g. ``lr_bias``, ``momentum``).
      accumulate: ``step -> batches per update``: gradients are summed in ``state["accum"]`` (made by
        ``make_init_fn(accumulate=True)``) until that many batches are in it; None: an update every batch.
      grad_scale: each batch's gradient is multiplied by it before the optimizer (or the accumulator).
      ema: ``(decay, tau)``: update ``state["ema"]`` after each optimizer update (:func:`train.recipe.ema_update`).
    """
    tx = optax.with_extra_args_support(tx)
    logged = dict(schedules or {}, lr=lr_schedule)

    def train_step(state, batch):
        step = state["step"]
        batch_index = step - state["skipped_steps"]  # the schedules' position: skipped steps do not count

        def loss_of(params):
            model = model_state_lib.merge_model(graphdef, dict(state, params=params))
            outputs = model(batch["image"])
            loss, metrics, loss_state = loss_fn(outputs, batch, step=batch_index, state=state["loss_state"])
            _, _, model_state = model_state_lib.split_model(model)  # batch statistics updated by the forward pass
            return loss, (metrics, loss_state, model_state)

        (loss, (metrics, loss_state, model_state)), grads = jax.value_and_grad(loss_of, has_aux=True)(
            state["params"]
        )
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        scaled = grads if grad_scale == 1.0 else jax.tree.map(lambda g: g * grad_scale, grads)
        if accumulate is None:
            update_now = jnp.asarray(True)
        else:
            summed = jax.tree.map(jnp.add, state["accum"]["grads"], scaled)
            count = state["accum"]["count"] + 1  # batches in ``summed``
            update_now = count >= accumulate(batch_index)

        def learn():
            """The variables this batch changes when it is finite."""
            learned = {"model_state": model_state, "loss_state": loss_state}
            if accumulate is None:
                updates, learned["opt_state"] = tx.update(
                    scaled, state["opt_state"], state["params"], batch_index=batch_index
                )
                learned["params"] = optax.apply_updates(state["params"], updates)
            else:
                updates, opt_state = tx.update(summed, state["opt_state"], state["params"], batch_index=batch_index)
                params = optax.apply_updates(state["params"], updates)
                learned["params"] = _where(update_now, params, state["params"])
                learned["opt_state"] = _where(update_now, opt_state, state["opt_state"])
                learned["accum"] = {
                    "grads": jax.tree.map(lambda s: jnp.where(update_now, jnp.zeros_like(s), s), summed),
                    "count": jnp.where(update_now, 0, count),
                }
            if ema is not None:
                moved = recipe_lib.ema_update(state["ema"], learned["params"], model_state, decay=ema[0], tau=ema[1])
                learned["ema"] = _where(update_now, moved, state["ema"])
            return learned

        # A cond, not a select of both: XLA copies the scalar ``finite`` (a chain over every gradient leaf) into
        # each leaf's update kernel, so a select makes the program quadratic in the number of leaves (YOLO26n's 367
        # leaves: 4x the compile time of YOLOv8n's 184; benchmarks/investigations/step_compile_time.py).
        names = _LEARNED + (("accum",) if accumulate is not None else ()) + (("ema",) if ema is not None else ())
        learned = jax.lax.cond(finite, learn, lambda: {k: state[k] for k in names})
        new_state = dict(
            state,
            **learned,
            step=step + 1,
            skipped_steps=state["skipped_steps"] + (~finite).astype(jnp.int32),
            nonfinite_run=jnp.where(finite, 0, state["nonfinite_run"] + 1),
        )
        out = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        out.update(
            loss=loss.astype(jnp.float32),
            **{k: jnp.asarray(fn(batch_index), jnp.float32) for k, fn in logged.items()},
            grad_norm=optax.tree.norm(grads),
            param_norm=optax.tree.norm(new_state["params"]),
            skipped=(~finite).astype(jnp.float32),
            skipped_steps=new_state["skipped_steps"].astype(jnp.float32),
        )
        if accumulate is not None:
            out["updated"] = (update_now & finite).astype(jnp.float32)  # 1: this batch ended an accumulation
        return new_state, out

    return train_step


def jit_train_step(train_step, mesh):
    """``jax.jit`` with explicit NamedShardings and the state donated."""
    repl = mesh_lib.replicated(mesh)
    return jax.jit(
        train_step, in_shardings=(repl, mesh_lib.batch_sharding(mesh)), out_shardings=(repl, repl), donate_argnums=(0,)
    )


def abstract_state(state_shapes, mesh):
    """ShapeDtypeStructs carrying the (replicated) target sharding: the restore target on ``mesh``."""
    repl = mesh_lib.replicated(mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state_shapes)
