"""ultralytics YOLOv8 weights into and out of :class:`jaxdet.models.yolov8.YOLOv8` (torch is optional).

The NNX module tree mirrors ``DetectionModel``, so a variable's path names its tensor:

======================================  ==========================================================
NNX variable                            ultralytics state-dict entry
======================================  ==========================================================
``model.<i>...conv.kernel [k,k,I,O]``   ``model.<i>...conv.weight [O,I,k,k]`` (transposed)
``...bn.scale`` / ``...bn.bias``        ``...bn.weight`` / ``...bn.bias``
``...bn.mean`` / ``...bn.var``          ``...bn.running_mean`` / ``...bn.running_var``
``...bn.num_batches_tracked`` (int32)   ``...bn.num_batches_tracked`` (int64): train-mode calls
``model.22.cv2.<l>.2.kernel`` / bias    ``model.22.cv2.<l>.2.weight`` / ``.bias`` (plain conv)
======================================  ==========================================================

The fixed DFL projection ``model.22.dfl.conv.weight`` (``arange(reg_max)``, checked on import) has no NNX
variable; export writes it so that ``DetectionModel.load_state_dict`` accepts the dict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdet.models.yolov8 import SCALES, YOLOV8_LAYERS, YOLOv8, scaled_channels

__all__ = ["load_ultralytics", "export_ultralytics", "ultralytics_state_dict", "tensor_name"]

_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var",
               "num_batches_tracked": "num_batches_tracked"}
#: the index of the Detect layer in ``yolov8.yaml``.
DETECT = len(YOLOV8_LAYERS) - 1


def tensor_name(path: tuple) -> str:
    """The ultralytics state-dict key of an NNX variable path, e.g. ``('model', 0, 'bn', 'var')`` ->
    ``'model.0.bn.running_var'``."""
    *parents, leaf = path
    return ".".join([str(p) for p in parents] + [_LEAF_NAMES[leaf]])


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def ultralytics_state_dict(source: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(state dict as numpy arrays, metadata)`` of a state dict, a ``DetectionModel`` or a ``.pt`` path.

    A ``.pt`` checkpoint (``torch.load``, needs torch and ultralytics to unpickle it) contributes its ``ema``
    model if present, else its ``model``. Metadata holds ``scale`` and ``nc`` when the source records them.
    """
    meta: dict[str, Any] = {}
    if isinstance(source, (str, os.PathLike)):
        import torch  # noqa: PLC0415 - optional dependency: only a .pt path needs torch

        ckpt = torch.load(os.fspath(source), map_location="cpu", weights_only=False)
        if isinstance(ckpt, Mapping) and ("ema" in ckpt or "model" in ckpt):
            ckpt = ckpt.get("ema") or ckpt.get("model")
        source = ckpt
    if hasattr(source, "state_dict") and callable(source.state_dict):
        yaml = getattr(source, "yaml", None) or {}
        meta = {k: yaml[k] for k in ("scale", "nc") if k in yaml}
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise ValueError(
            f"source must be an ultralytics state dict, a DetectionModel or a .pt path; got {type(source).__name__}."
        )
    return {str(k): _to_numpy(v) for k, v in source.items()}, meta


def _infer(state: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
    """scale, num_classes and reg_max of a state dict (the stem width, the class and box conv biases)."""
    found: dict[str, Any] = {}
    stem = state.get("model.0.conv.weight")
    if stem is not None:
        by_width = {scaled_channels(64, w, mc): s for s, (_, w, mc) in SCALES.items()}
        found["scale"] = by_width.get(int(stem.shape[0]))
    cls_bias = state.get(f"model.{DETECT}.cv3.0.2.bias")
    if cls_bias is not None:
        found["num_classes"] = int(cls_bias.shape[0])
    box_bias = state.get(f"model.{DETECT}.cv2.0.2.bias")
    if box_bias is not None:
        found["reg_max"] = int(box_bias.shape[0]) // 4
    if "scale" in meta:
        found["scale"] = meta["scale"]
    if "nc" in meta:
        found["num_classes"] = int(meta["nc"])
    return found


def load_ultralytics(source: Any, *, scale: str | None = None, num_classes: int | None = None,
                     reg_max: int | None = None, param_dtype=jnp.float32, dtype=None) -> YOLOv8:
    """The :class:`YOLOv8` holding an ultralytics YOLOv8 model's parameters and BatchNorm statistics.

    Args:
      source: an ultralytics state dict (tensors or arrays), a ``DetectionModel``, or a ``.pt`` checkpoint path.
      scale: "n" | "s" | "m" | "l" | "x"; default: inferred from the stem width (``model.0.conv.weight``).
      num_classes: C; default: inferred from ``model.22.cv3.0.2.bias``.
      reg_max: DFL bins; default: inferred from ``model.22.cv2.0.2.bias`` (16).
      param_dtype: dtype of the loaded parameters and statistics (float64 needs ``jax_enable_x64``).
      dtype: compute dtype (e.g. ``jnp.bfloat16``; None: ``param_dtype``).

    Returns:
      The model in train mode (call ``.eval()`` for inference).

    Raises:
      ValueError: naming the tensor whose shape does not match the requested scale / class count, a missing
        tensor, or an entry the YOLOv8 layout does not have (e.g. a YOLO11 checkpoint).
    """
    state, meta = ultralytics_state_dict(source)
    found = _infer(state, meta)
    scale = scale or found.get("scale")
    if scale is None:
        raise ValueError("scale must be given: it cannot be inferred from 'model.0.conv.weight' of this source.")
    num_classes = int(num_classes or found.get("num_classes") or 80)
    reg_max = int(reg_max or found.get("reg_max") or 16)
    abstract = nnx.eval_shape(lambda: YOLOv8(scale=scale, num_classes=num_classes, reg_max=reg_max,
                                             rngs=nnx.Rngs(0), param_dtype=param_dtype, dtype=dtype))
    graphdef, variables = nnx.split(abstract)
    flat = nnx.to_flat_state(variables)
    what = f"the yolov8{scale} model with num_classes={num_classes}, reg_max={reg_max}"
    used = set()
    leaves = []
    for path, var in flat:
        name = tensor_name(path)
        if name not in state:
            raise ValueError(f"source has no tensor {name!r}, which {what} needs.")
        value = state[name]
        if path[-1] == "kernel":
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        if tuple(value.shape) != tuple(var.shape):
            torch_shape = tuple(state[name].shape)
            expected = (tuple(var.shape[i] for i in (3, 2, 0, 1)) if path[-1] == "kernel" else tuple(var.shape))
            raise ValueError(
                f"tensor {name!r} has shape {torch_shape} but {what} expects {expected}; "
                "pass the source's scale / num_classes (or load a matching checkpoint)."
            )
        # a copy: jnp.asarray may alias a CPU numpy buffer (a torch tensor's memory, which torch updates in place)
        leaves.append((path, var.replace(jnp.array(value, dtype=var.dtype, copy=True))))
        used.add(name)
    dfl = f"model.{DETECT}.dfl.conv.weight"
    if dfl in state and not np.array_equal(state[dfl].reshape(-1), np.arange(reg_max)):
        raise ValueError(f"tensor {dfl!r} must be the DFL projection arange({reg_max}); got {state[dfl].reshape(-1)}.")
    extra = sorted(k for k in state if k not in used and k != dfl)
    if extra:
        raise ValueError(f"source has tensors that {what} does not: {extra[:5]}{' ...' if len(extra) > 5 else ''} "
                         "(is it a YOLOv8 detection model?).")
    return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def export_ultralytics(model: YOLOv8, *, as_torch: bool = True) -> dict[str, Any]:
    """The ultralytics state dict of a :class:`YOLOv8` (parameters, BatchNorm statistics and counts of train-mode
    calls, DFL projection).

    ``DetectionModel(f"yolov8{scale}.yaml", nc=C).load_state_dict(export_ultralytics(model))`` then gives the
    same network in PyTorch.

    Args:
      model: the NNX model.
      as_torch: torch tensors (default; needs torch) or numpy arrays.
    """
    out: dict[str, np.ndarray] = {}
    for path, var in nnx.to_flat_state(nnx.state(model, (nnx.Param, nnx.BatchStat))):
        value = np.asarray(jax.device_get(var[...]))
        if path[-1] == "kernel":
            value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        if path[-1] == "num_batches_tracked":
            value = value.astype(np.int64)  # torch's dtype of the buffer
        out[tensor_name(path)] = np.array(value, order="C")  # (ascontiguousarray would make a [] count [1])
    ref = out[f"model.{DETECT}.cv2.0.2.weight"]
    out[f"model.{DETECT}.dfl.conv.weight"] = np.arange(model.reg_max, dtype=ref.dtype).reshape(1, -1, 1, 1)
    if not as_torch:
        return out
    import torch  # noqa: PLC0415 - optional dependency: only as_torch=True needs torch

    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in out.items()}
