"""The train state and the single jitted, sharded train step.

The model is split once with ``nnx.split`` into a static ``graphdef`` and array pytrees, so the step is a
pure function ``(state, batch) -> (state, metrics)`` of the state dict::

    state = {
        "step":      int32 [],            # optimizer steps taken (the data position, too)
        "params":    nnx.State,           # nnx.Param leaves
        "opt_state": optax state,         # AdamW moments + schedule count
        "rng":       uint32 [2],          # raw key data, split once per step
        "rest":      nnx.State,           # only if the model has non-Param state
        "alpha_state": pytree,            # only for an adaptive α schedule
        "loss_state": pytree,             # only for a loss with state (e.g. the hybrid's EMAs)
    }

``jax.jit`` gets explicit ``NamedSharding``s: the state replicated (``P()``; a model/FSDP axis of the
mesh would shard it instead), the batch split over ``"data"``, and the state is donated.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from train import mesh as mesh_lib


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


def split_model(model: nnx.Module):
    """``graphdef, params, rest`` (``rest`` is None when the model only has Params)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if not jax.tree.leaves(rest):
        rest = None
    return graphdef, params, rest


def merge_model(graphdef, state: dict[str, Any]) -> nnx.Module:
    if state.get("rest") is not None:
        return nnx.merge(graphdef, state["params"], state["rest"])
    return nnx.merge(graphdef, state["params"])


def make_init_fn(
    build_model: Callable[[nnx.Rngs], nnx.Module],
    tx,
    *,
    seed: int,
    alpha_init: Callable[[], Any] | None = None,
    loss_init: Callable[[], Any] | None = None,
):
    """Returns ``(graphdef, init_fn)``; ``init_fn()`` builds the initial state (jit it with out_shardings)."""

    def init_fn():
        model = build_model(nnx.Rngs(params=seed, default=seed))
        _, params, rest = split_model(model)
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": tx.init(params),
            "rng": jax.random.key_data(jax.random.key(seed + 1)),
        }
        if rest is not None:
            state["rest"] = rest
        if alpha_init is not None:
            state["alpha_state"] = alpha_init()
        if loss_init is not None:
            loss_state = loss_init()
            if loss_state is not None:
                state["loss_state"] = loss_state
        return state

    graphdef, _, _ = split_model(nnx.eval_shape(lambda: build_model(nnx.Rngs(params=seed, default=seed))))
    return graphdef, init_fn


def make_train_step(graphdef, *, loss_fn, tx, lr_schedule, alpha_fn, alpha_update=None):
    """The pure train step.

    Args:
      graphdef: from :func:`make_init_fn`.
      loss_fn: ``loss_fn(outputs, batch, *, alpha) -> (loss scalar, metrics dict of scalars)``; when the
        state holds a ``loss_state``, ``loss_fn(outputs, batch, *, alpha, state) -> (loss, metrics, state)``.
      tx: the optax transformation.
      lr_schedule: step -> learning rate (logged).
      alpha_fn: ``alpha_fn(step, alpha_state) -> alpha``; ``alpha_state`` is None unless the state holds
        one (adaptive α).
      alpha_update: ``alpha_update(alpha_state, metrics) -> alpha_state`` after the step (adaptive α).
    """

    def train_step(state, batch):
        step = state["step"]
        alpha = alpha_fn(step, state.get("alpha_state"))
        rng, _ = jax.random.split(jax.random.wrap_key_data(state["rng"]))

        def loss_of(params):
            model = merge_model(graphdef, dict(state, params=params))
            outputs = model(batch["image"])
            if "loss_state" in state:
                loss, metrics, loss_state = loss_fn(outputs, batch, alpha=alpha, state=state["loss_state"])
            else:
                (loss, metrics), loss_state = loss_fn(outputs, batch, alpha=alpha), None
            return loss, (metrics, loss_state)

        (loss, (metrics, loss_state)), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new_state = dict(state, step=step + 1, params=params, opt_state=opt_state, rng=jax.random.key_data(rng))
        if "loss_state" in state:
            new_state["loss_state"] = loss_state
        if "alpha_state" in state and alpha_update is not None:
            new_state["alpha_state"] = alpha_update(state["alpha_state"], metrics)
        out = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        out.update(
            loss=loss.astype(jnp.float32),
            alpha=jnp.asarray(alpha, jnp.float32),
            lr=jnp.asarray(lr_schedule(step), jnp.float32),
            grad_norm=optax.tree.norm(grads),
            param_norm=optax.tree.norm(params),
        )
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
