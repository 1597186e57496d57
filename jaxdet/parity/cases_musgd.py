"""Parity of :func:`jaxdet.musgd.musgd` against ``ultralytics.optim.MuSGD``: ten steps on the same gradients.

The parameters are a small ultralytics-shaped model (:data:`PARAMS`, torch names and shapes): Conv kernels
``3×3``, ``1×1`` (one taller than wide, so that it is iterated transposed) and ``3×1`` (Muon scale
:math:`\\sqrt 3`), a Dense matrix ``[48, 8]`` (scale :math:`\\sqrt 6`), BatchNorm scales and biases, a plain 1-D
weight (the non-Muon ``"weight"`` group), and a head ``model.4`` with ``cv2``, ``cv3`` and ``one2one_cv3``
branches. The torch side builds that model, lets ultralytics' own ``BaseTrainer.build_optimizer(name="MuSGD")``
make the eight parameter groups (Muon / weight / BatchNorm / bias, each split into the 3× lr class branches
``cv3`` and ``one2one_cv3`` and the rest) and steps ``MuSGD`` ten times, setting every group's ``lr`` and
``momentum`` before each step as ultralytics' warm-up does (``_do_train``: bias lr from 0.1, the others from 0,
towards the group's initial lr; momentum from 0.8 towards 0.937). The JAX side gives each parameter the group
that the rule of ``build_optimizer`` assigns to its name and shape (:func:`expected_group`) and runs one
``optax.inject_hyperparams(musgd)`` per group under ``optax.partition``, with the same lr and momentum per step.

Inputs: the parameters (Flax layout: ``[kh, kw, I, O]``, ``[I, O]``) and ten gradient sets ``[10, ...]``.
Outputs: for each parameter its displacement from the start after each step, ``[10, ...]``, so that the
normwise relative error of the table is relative to the size of the updates, not of the parameters. No input
gradients are compared.

- ``musgd_10_steps``: Newton–Schulz in bfloat16 on both sides, as ultralytics trains. jaxdet rounds to
  bfloat16 exactly where torch does and iterates each matrix in the orientation of ultralytics' padded batches
  (:mod:`jaxdet.musgd`); what differs is the order of the float32 sums inside a product (XLA's dot against
  oneDNN's/cuBLAS' GEMM). Where such a sum lands on the other side of a bfloat16 rounding boundary, the
  iteration carries the flip on and that step's Muon direction moves by up to bfloat16's own error against the
  unrounded iteration (1.4e-2 to 3.4e-2 of its largest entry on these matrices; bound it by 5e-2). The Muon step
  ``0.2·lr·O`` is at most 4% of a parameter's displacement here (measured: 0.2% to 3.7%), so the tolerance is
  5e-2 × 4e-2 = 2e-3 in both dtypes (measured over seeds 0-3: 6.1e-6 to 7.6e-5 in float64, 1.2e-5 to 7.6e-5
  in float32 against the float64 run).
- ``musgd_muon_update_10_steps``: the Muon directions themselves, ``O_t`` of the ten steps for the ten Muon
  matrices (momentum, Newton–Schulz, scale), against ``muon_update`` called per Muon group of
  ``build_optimizer`` as ``MuSGD.step`` calls it. Tolerance 5e-2 of the largest entry, the flip bound above
  (measured 8.9e-3 to 2.0e-2 in float64 and 1.3e-2 to 2.1e-2 in float32 over seeds 0-3). The normwise error
  cannot tell a bfloat16 iteration from a float32 one (3.4e-2 apart), so tests/parity/test_musgd.py also
  counts bit-identical results: 85 to 92 of the 100
  matrix-steps (90% to 95% of the elements) equal ultralytics' bit for bit in float64 over seeds 0-3, and none
  with a float32 iteration.
- ``musgd_10_steps_ns_exact``: the same with the iteration in the parameters' own dtype on both sides
  (ultralytics' ``torch.Tensor.bfloat16`` made to return the tensor unchanged while ``MuSGD.step`` runs,
  :class:`jaxdet.musgd.NewtonSchulz` ``dtype=None`` here), which isolates everything but the bfloat16
  rounding: float64 to 1e-10, float32 to 1e-5 as every other row (measured 1.1e-15 and 1.6e-6).
"""

from __future__ import annotations

import contextlib
import functools
import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdet.musgd import NewtonSchulz, musgd
from jaxdet.parity.core import ParityCase

STEPS = 10
LR0 = 0.01
MOMENTUM = 0.937  # ultralytics' ``momentum`` (the warm-up's target)
WARMUP_MOMENTUM = 0.8
WARMUP_BIAS_LR = 0.1
WARMUP_BATCHES = 12  # the warm-up ``nw``: every one of the ten steps is inside it
WEIGHT_DECAY = 5e-4
HEAD = "model.4"

#: torch name -> torch shape, in ``named_parameters`` order.
PARAMS: dict[str, tuple[int, ...]] = {
    "model.0.conv.weight": (16, 3, 3, 3),
    "model.0.bn.weight": (16,),
    "model.0.bn.bias": (16,),
    "model.1.conv.weight": (32, 16, 1, 1),
    "model.1.bn.weight": (32,),
    "model.1.bn.bias": (32,),
    "model.2.conv.weight": (8, 32, 3, 1),
    "model.2.bn.weight": (8,),
    "model.2.bn.bias": (8,),
    "model.3.weight": (48, 8),
    "model.3.bias": (48,),
    "model.3.gamma": (48,),
    "model.4.cv2.0.0.conv.weight": (16, 48, 3, 3),
    "model.4.cv2.0.0.bn.weight": (16,),
    "model.4.cv2.0.0.bn.bias": (16,),
    "model.4.cv2.0.1.weight": (4, 16, 1, 1),
    "model.4.cv2.0.1.bias": (4,),
    "model.4.cv3.0.0.conv.weight": (24, 48, 3, 3),
    "model.4.cv3.0.0.bn.weight": (24,),
    "model.4.cv3.0.0.bn.bias": (24,),
    "model.4.cv3.0.1.weight": (5, 24, 1, 1),
    "model.4.cv3.0.1.bias": (5,),
    "model.4.one2one_cv3.0.0.conv.weight": (24, 48, 3, 3),
    "model.4.one2one_cv3.0.0.bn.weight": (24,),
    "model.4.one2one_cv3.0.0.bn.bias": (24,),
    "model.4.one2one_cv3.0.1.weight": (5, 24, 1, 1),
    "model.4.one2one_cv3.0.1.bias": (5,),
}
NAMES = tuple(PARAMS)


def expected_group(name: str, ndim: int) -> tuple[str, bool]:
    """``(group, boosted)`` that ``build_optimizer(name="MuSGD")`` gives a parameter: ``"muon"`` (2-D / 4-D),
    ``"bias"``, ``"bn"`` or ``"weight"``; ``boosted`` (3× lr) inside the head's ``cv3`` / ``one2one_cv3``."""
    boosted = name.startswith((f"{HEAD}.cv3.", f"{HEAD}.one2one_cv3."))
    if ndim in (2, 4):
        return "muon", boosted
    if "bias" in name:
        return "bias", boosted
    return ("bn" if ".bn." in name else "weight"), boosted


def schedules(group: str, boosted: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``lr`` and ``momentum`` of each of the ten steps (ultralytics' warm-up at batch ``t + 1``)."""
    batches = np.arange(1, STEPS + 1)
    initial = LR0 * (3 if boosted else 1)
    start = WARMUP_BIAS_LR if group == "bias" else 0.0
    lr = np.array([np.interp(i, [0, WARMUP_BATCHES], [start, initial]) for i in batches])
    mom = np.array([np.interp(i, [0, WARMUP_BATCHES], [WARMUP_MOMENTUM, MOMENTUM]) for i in batches])
    return lr, mom


def _to_flax(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 3, 1, 0) if a.ndim == 4 else (a.T if a.ndim == 2 else a)


def _to_torch(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1) if a.ndim == 4 else (a.T if a.ndim == 2 else a)


def make_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The parameters, then the gradients ``[10, ...]``, in Flax layout and :data:`NAMES` order."""
    params, grads = [], []
    for name, shape in PARAMS.items():
        base = (1.0 + 0.2 * rng.standard_normal(shape)) if name.endswith("bn.weight") else (
            0.1 * rng.standard_normal(shape))
        params.append(_to_flax(base))
        scale = rng.uniform(0.2, 2.0, size=(STEPS,) + (1,) * len(shape))  # a different size per step
        grads.append(_to_flax_steps(scale * rng.standard_normal((STEPS,) + shape)))
    return tuple(params) + tuple(grads)


def _to_flax_steps(a: np.ndarray) -> np.ndarray:
    return np.stack([_to_flax(x) for x in a])


def _jax_trajectory(*inputs, ns_dtype):
    n = len(NAMES)
    params = dict(zip(NAMES, inputs[:n]))
    grads = dict(zip(NAMES, inputs[n:]))
    labels = {name: "{}{}".format(*expected_group(name, np.ndim(p))) for name, p in params.items()}
    dtype = inputs[0].dtype

    def group_tx(label):
        group, boosted = label.removesuffix("True").removesuffix("False"), label.endswith("True")
        lr, mom = (jnp.asarray(v, dtype) for v in schedules(group, boosted))
        return optax.inject_hyperparams(musgd)(
            learning_rate=lambda count: lr[count], momentum=lambda count: mom[count],
            weight_decay=WEIGHT_DECAY if group in ("muon", "weight") else 0.0,
            orthogonalize=NewtonSchulz(dtype=ns_dtype))

    tx = optax.partition({label: group_tx(label) for label in set(labels.values())}, labels)
    state = tx.init(params)
    start, out = params, []

    @jax.jit
    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state

    for t in range(STEPS):
        params, state = step(params, state, {k: v[t] for k, v in grads.items()})
        out.append({k: params[k] - start[k] for k in NAMES})
    return tuple(jnp.stack([o[k] for o in out]) for k in NAMES)


@contextlib.contextmanager
def _bfloat16_is_identity(torch):
    """``Tensor.bfloat16()`` returns a copy in the tensor's own dtype (ultralytics' iteration unrounded)."""
    original = torch.Tensor.bfloat16
    torch.Tensor.bfloat16 = lambda self, *args, **kwargs: self.clone()
    try:
        yield
    finally:
        torch.Tensor.bfloat16 = original


def _torch_model(torch):
    """An ``nn.Module`` whose ``named_parameters`` are :data:`PARAMS` (modules of the right kinds)."""
    nn = torch.nn

    class Conv(nn.Module):
        def __init__(self, c1, c2, k):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, bias=False)
            self.bn = nn.BatchNorm2d(c2)

    class Dense(nn.Module):
        def __init__(self, c1, c2):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(c2, c1))
            self.bias = nn.Parameter(torch.zeros(c2))
            self.gamma = nn.Parameter(torch.zeros(c2))

    def branch(c_mid, c_out):
        return nn.ModuleList([nn.Sequential(Conv(48, c_mid, 3), nn.Conv2d(c_mid, c_out, 1))])

    head = nn.Module()
    head.cv2, head.cv3, head.one2one_cv3 = branch(16, 4), branch(24, 5), branch(24, 5)
    root = nn.Module()
    root.model = nn.ModuleList([Conv(3, 16, 3), Conv(16, 32, 1), Conv(32, 8, (3, 1)), Dense(8, 48), head])
    names = [name for name, _ in root.named_parameters()]
    if tuple(names) != NAMES:
        raise AssertionError(f"the torch model's parameters {names} are not PARAMS")
    return root


def _torch_trajectory(*inputs, exact_ns):
    os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs
    from ultralytics.engine.trainer import BaseTrainer  # noqa: PLC0415 - torch side, after YOLO_OFFLINE is set

    n = len(NAMES)
    model = _torch_model(torch).to(inputs[0].dtype)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in zip(NAMES, inputs[:n]):
            params[name].copy_(torch.from_numpy(_to_torch(value.detach().numpy())))
    start = {k: v.detach().clone() for k, v in params.items()}
    stub = SimpleNamespace(args=SimpleNamespace(), data={})  # read only by optimizer="auto"
    optimizer = BaseTrainer.build_optimizer(stub, model, name="MuSGD", lr=LR0, momentum=MOMENTUM,
                                            decay=WEIGHT_DECAY)
    for g in optimizer.param_groups:
        g["initial_lr"] = g["lr"]
    out = []
    for t in range(STEPS):
        for g in optimizer.param_groups:
            # ultralytics' warm-up at batch ni = t + 1: interp(ni, [0, nw], [bias ? warmup_bias_lr : 0,
            # initial_lr * lf]) with lf = 1, and interp(ni, [0, nw], [warmup_momentum, momentum])
            start_lr = WARMUP_BIAS_LR if g["param_group"] == "bias" else 0.0
            g["lr"] = float(np.interp(t + 1, [0, WARMUP_BATCHES], [start_lr, g["initial_lr"]]))
            g["momentum"] = float(np.interp(t + 1, [0, WARMUP_BATCHES], [WARMUP_MOMENTUM, MOMENTUM]))
        for name, value in zip(NAMES, inputs[n:]):
            params[name].grad = torch.from_numpy(_to_torch(value[t].detach().numpy()))
        with _bfloat16_is_identity(torch) if exact_ns else contextlib.nullcontext():
            optimizer.step()
        out.append({k: _to_flax((params[k].detach() - start[k]).numpy()) for k in NAMES})
    return tuple(torch.from_numpy(np.stack([o[k] for o in out])) for k in NAMES)


MUON_NAMES = tuple(name for name, shape in PARAMS.items() if len(shape) in (2, 4))


def make_muon_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The gradients ``[10, ...]`` of the Muon parameters (Flax layout, :data:`MUON_NAMES` order)."""
    grads = make_inputs(rng)[len(NAMES):]
    return tuple(g for name, g in zip(NAMES, grads) if name in MUON_NAMES)


def _momentum(t: int) -> float:
    return float(np.interp(t + 1, [0, WARMUP_BATCHES], [WARMUP_MOMENTUM, MOMENTUM]))


def _jax_muon_updates(*grads, ns_dtype):
    """Each step's Muon direction ``O_t`` (momentum, Newton–Schulz, scale): :func:`musgd` with ``lr = -1``,
    ``muon = 1``, ``sgd = 0`` and no weight decay returns exactly ``O_t`` as its update."""
    dtype = grads[0].dtype
    mom = jnp.asarray([_momentum(t) for t in range(STEPS)], dtype)
    tx = optax.inject_hyperparams(musgd)(learning_rate=-1.0, momentum=lambda count: mom[count], muon=1.0, sgd=0.0,
                                         orthogonalize=NewtonSchulz(dtype=ns_dtype))
    params = {name: jnp.zeros_like(g[0]) for name, g in zip(MUON_NAMES, grads)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    out = []
    for t in range(STEPS):
        o, state = update({name: g[t] for name, g in zip(MUON_NAMES, grads)}, state, params)
        out.append(o)
    return tuple(jnp.stack([o[name] for o in out]) for name in MUON_NAMES)


def _torch_muon_updates(*grads):
    """ultralytics' ``muon_update`` called as ``MuSGD.step`` calls it: once per Muon group of
    ``build_optimizer`` (the class branches and the rest), on the group's gradients and momentum buffers."""
    os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported
    import torch  # noqa: PLC0415 - torch side: imported only when a comparison runs
    from ultralytics.engine.trainer import BaseTrainer  # noqa: PLC0415 - torch side, after YOLO_OFFLINE is set
    from ultralytics.optim.muon import muon_update  # noqa: PLC0415 - torch side

    model = _torch_model(torch).to(grads[0].dtype)
    params = dict(model.named_parameters())
    stub = SimpleNamespace(args=SimpleNamespace(), data={})
    optimizer = BaseTrainer.build_optimizer(stub, model, name="MuSGD", lr=LR0, momentum=MOMENTUM, decay=0.0)
    name_of = {id(p): name for name, p in params.items()}
    groups = [[name_of[id(p)] for p in g["params"]] for g in optimizer.param_groups if g["use_muon"]]
    buffers = {name: torch.zeros_like(params[name]) for name in MUON_NAMES}
    out = []
    for t in range(STEPS):
        step = {}
        for names in groups:
            g = [torch.from_numpy(_to_torch(grads[MUON_NAMES.index(n)][t].detach().numpy())) for n in names]
            for n, o in zip(names, muon_update(g, [buffers[n] for n in names], beta=_momentum(t), nesterov=True)):
                step[n] = _to_flax(o.numpy())
        out.append(step)
    return tuple(torch.from_numpy(np.stack([o[name] for o in out])) for name in MUON_NAMES)


def cases() -> list[ParityCase]:
    return [
        ParityCase(
            name="musgd_10_steps",
            reference="ultralytics.optim.MuSGD (build_optimizer groups), bf16 Newton–Schulz",
            jax_fn=functools.partial(_jax_trajectory, ns_dtype="bfloat16"),
            torch_fn=functools.partial(_torch_trajectory, exact_ns=False),
            make_inputs=make_inputs,
            wrt=(),
            rtol64=2e-3,
            rtol32=2e-3,
        ),
        ParityCase(
            name="musgd_muon_update_10_steps",
            reference="ultralytics.optim.muon.muon_update per MuSGD group, bf16 Newton–Schulz",
            jax_fn=functools.partial(_jax_muon_updates, ns_dtype="bfloat16"),
            torch_fn=_torch_muon_updates,
            make_inputs=make_muon_inputs,
            wrt=(),
            rtol64=5e-2,
            rtol32=5e-2,
        ),
        ParityCase(
            name="musgd_10_steps_ns_exact",
            reference="ultralytics.optim.MuSGD, Newton–Schulz unrounded",
            jax_fn=functools.partial(_jax_trajectory, ns_dtype=None),
            torch_fn=functools.partial(_torch_trajectory, exact_ns=True),
            make_inputs=make_inputs,
            wrt=(),
        ),
    ]
