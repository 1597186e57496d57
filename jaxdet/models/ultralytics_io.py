"""ultralytics YOLOv8 / YOLO11 / YOLO26 weights (detection and OBB) into and out of :class:`jaxdet.models.yolo.YOLO`
(torch is optional).

The NNX module tree mirrors ``DetectionModel``, so a variable's path names its tensor:

======================================  ==========================================================
NNX variable                            ultralytics state-dict entry
======================================  ==========================================================
``model.<i>...conv.kernel [k,k,I,O]``   ``model.<i>...conv.weight [O,I,k,k]`` (transposed)
``...bn.scale`` / ``...bn.bias``        ``...bn.weight`` / ``...bn.bias``
``...bn.mean`` / ``...bn.var``          ``...bn.running_mean`` / ``...bn.running_var``
``...bn.num_batches_tracked`` (int32)   ``...bn.num_batches_tracked`` (int64): train-mode calls
``model.<D>.cv2.<l>.2.kernel`` / bias   ``model.<D>.cv2.<l>.2.weight`` / ``.bias`` (plain conv)
``model.<D>.one2one_cv3.<l>.0.0...``    ``model.<D>.one2one_cv3.<l>.0.0...`` (YOLO26's one-to-one branches)
``model.<D>.cv4.<l>...``                ``model.<D>.cv4.<l>...`` (the OBB angle branch; ``one2one_cv4``)
======================================  ==========================================================

with the Detect layer ``D`` = 22 (v8) or 23 (11, 26). The version is read from the layer names
(:func:`detect_version`): a C3k2 with attention at layer 22 is YOLO26, a Detect head at layer 23 YOLO11, one at
layer 22 YOLOv8; the scale from the stem width and the repeats of layer 2, the class count and ``reg_max``
from the Detect biases, ``end2end`` from the presence of ``one2one_cv2``, the task ("obb" or "detect") from the
presence of the angle branch ``cv4`` (:func:`detect_task`). The fixed DFL projection
``model.<D>.dfl.conv.weight`` (``arange(reg_max)``, checked on import; absent for ``reg_max = 1``, where
ultralytics' DFL is an Identity) has no NNX variable; export writes it so that ``DetectionModel.load_state_dict``
accepts the dict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdet import _checks
from jaxdet.models.yolo import TASKS, VERSIONS, YOLO, scaled_channels, scaled_repeats

__all__ = ["load_ultralytics", "export_ultralytics", "ultralytics_state_dict", "tensor_name", "detect_version",
           "detect_task"]

_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var",
               "num_batches_tracked": "num_batches_tracked"}


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


def _count_blocks(state: Mapping[str, np.ndarray], prefix: str) -> int:
    """How many ``<prefix><j>.`` sub-modules the state dict has (e.g. the repeats of ``model.2.m.``)."""
    return len({k[len(prefix):].split(".", 1)[0] for k in state if k.startswith(prefix)})


def detect_version(state: Mapping[str, np.ndarray]) -> str | None:
    """The YOLO version of an ultralytics detection state dict, from its layer names (None if none fits):

    - "26": layer 22 is a C3k2 with attention (``model.22.m.0.1.attn.qkv.conv.weight``);
    - "11": the Detect head is layer 23 (``model.23.cv2.0.2.bias``: C2PSA adds layer 10);
    - "v8": the Detect head is layer 22 (``model.22.cv2.0.2.bias``).
    """
    if "model.22.m.0.1.attn.qkv.conv.weight" in state:
        return "26"
    if f"model.{VERSIONS['11'].detect_index}.cv2.0.2.bias" in state:
        return "11"
    if f"model.{VERSIONS['v8'].detect_index}.cv2.0.2.bias" in state:
        return "v8"
    return None


def detect_task(state: Mapping[str, np.ndarray], version: str) -> str:
    """"obb" if the ``version`` state dict has the OBB head's angle branch (``model.<D>.cv4.0.2.bias``, ``D`` the
    head's layer index), else "detect"."""
    _checks.choice(version, "version", tuple(VERSIONS))
    return "obb" if f"model.{VERSIONS[version].detect_index}.cv4.0.2.bias" in state else "detect"


def _infer(state: Mapping[str, np.ndarray], meta: Mapping[str, Any], version: str) -> dict[str, Any]:
    """scale, num_classes, reg_max and end2end of a state dict of ``version``: the stem width and the repeats of
    layer 2 (scales m and l of 11/26 share their width), the class and box conv biases, the one-to-one head."""
    spec = VERSIONS[version]
    found: dict[str, Any] = {}
    stem = state.get("model.0.conv.weight")
    if stem is not None:
        repeats = _count_blocks(state, "model.2.m.")
        scales = [s for s, (d, w, mc) in spec.scales.items() if scaled_channels(64, w, mc) == int(stem.shape[0])]
        by_depth = [s for s in scales if scaled_repeats(spec.layers[2][1], spec.scales[s][0]) == repeats]
        found["scale"] = (by_depth or scales or [None])[0]
    detect = spec.detect_index
    cls_bias = state.get(f"model.{detect}.cv3.0.2.bias")
    if cls_bias is not None:
        found["num_classes"] = int(cls_bias.shape[0])
    box_bias = state.get(f"model.{detect}.cv2.0.2.bias")
    if box_bias is not None:
        found["reg_max"] = int(box_bias.shape[0]) // 4
    found["end2end"] = f"model.{detect}.one2one_cv2.0.2.bias" in state
    if "scale" in meta:
        found["scale"] = meta["scale"]
    if "nc" in meta:
        found["num_classes"] = int(meta["nc"])
    return found


def load_ultralytics(source: Any, *, version: str | None = None, scale: str | None = None, task: str | None = None,
                     num_classes: int | None = None, reg_max: int | None = None, end2end: bool | None = None,
                     param_dtype=jnp.float32, dtype=None) -> YOLO:
    """The :class:`~jaxdet.models.yolo.YOLO` holding an ultralytics YOLOv8 / YOLO11 / YOLO26 detection or OBB
    model's parameters and BatchNorm statistics.

    Args:
      source: an ultralytics state dict (tensors or arrays), a ``DetectionModel`` / ``OBBModel``, or a ``.pt``
        checkpoint path.
      version: "v8" | "11" | "26"; default: detected from the layer names (:func:`detect_version`).
      task: "detect" | "obb"; default: "obb" if the source has the angle branch ``cv4`` (:func:`detect_task`).
      scale: "n" | "s" | "m" | "l" | "x"; default: inferred from the stem width (``model.0.conv.weight``) and the
        repeats of layer 2 (``model.2.m.<j>``), or the model's yaml.
      num_classes: C; default: inferred from the Detect layer's ``cv3.0.2.bias``.
      reg_max: box bins per side; default: inferred from ``cv2.0.2.bias`` (16 for v8/11, 1 for 26).
      end2end: default: whether the source has the one-to-one branches (``one2one_cv2``).
      param_dtype: dtype of the loaded parameters and statistics (float64 needs ``jax_enable_x64``).
      dtype: compute dtype (e.g. ``jnp.bfloat16``; None: ``param_dtype``).

    Returns:
      The model in train mode (call ``.eval()`` for inference).

    Raises:
      ValueError: naming the tensor whose shape does not match the requested version / scale / class count, a
        missing tensor, or an entry the layout does not have (e.g. a YOLO11 checkpoint loaded as v8).
    """
    state, meta = ultralytics_state_dict(source)
    detected = detect_version(state)
    if version is None:
        if detected is None:
            raise ValueError("version must be given: the source has none of the Detect layers of yolov8 "
                             "('model.22.cv2.0.2.bias'), yolo11 ('model.23.cv2.0.2.bias') or yolo26.")
        version = detected
    _checks.choice(version, "version", tuple(VERSIONS))
    found = _infer(state, meta, version)
    detected_task = detect_task(state, detected or version)
    task = detected_task if task is None else _checks.choice(task, "task", TASKS)
    scale = scale or found.get("scale")
    if scale is None:
        raise ValueError("scale must be given: it cannot be inferred from 'model.0.conv.weight' of this source.")
    num_classes = int(num_classes or found.get("num_classes") or 80)
    reg_max = int(reg_max or found.get("reg_max") or VERSIONS[version].reg_max)
    end2end = found["end2end"] if end2end is None else bool(end2end)
    abstract = nnx.eval_shape(lambda: YOLO(version=version, scale=scale, task=task, num_classes=num_classes,
                                           reg_max=reg_max, end2end=end2end, rngs=nnx.Rngs(0),
                                           param_dtype=param_dtype, dtype=dtype))
    graphdef, variables = nnx.split(abstract)
    flat = nnx.to_flat_state(variables)
    what = f"the {abstract.name} model with num_classes={num_classes}, reg_max={reg_max}, end2end={end2end}"
    cv4 = f"'model.{VERSIONS[version].detect_index}.cv4'"
    hint = (f" (the source looks like a yolo{detected} model; leave version out to detect it)"
            if detected not in (None, version) else
            f" (the source looks like a task={detected_task!r} model: it {'has' if detected_task == 'obb' else 'lacks'}"
            f" the angle branch {cv4}; leave task out to detect it)" if detected_task != task else "")
    used = set()
    leaves = []
    for path, var in flat:
        name = tensor_name(path)
        if name not in state:
            raise ValueError(f"source has no tensor {name!r}, which {what} needs{hint}.")
        value = state[name]
        if path[-1] == "kernel":
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        if tuple(value.shape) != tuple(var.shape):
            torch_shape = tuple(state[name].shape)
            expected = (tuple(var.shape[i] for i in (3, 2, 0, 1)) if path[-1] == "kernel" else tuple(var.shape))
            raise ValueError(
                f"tensor {name!r} has shape {torch_shape} but {what} expects {expected}{hint}; "
                "pass the source's version / scale / num_classes (or load a matching checkpoint)."
            )
        # a copy: jnp.asarray may alias a CPU numpy buffer (a torch tensor's memory, which torch updates in place)
        leaves.append((path, var.replace(jnp.array(value, dtype=var.dtype, copy=True))))
        used.add(name)
    dfl = f"model.{VERSIONS[version].detect_index}.dfl.conv.weight"
    if dfl in state and not np.array_equal(state[dfl].reshape(-1), np.arange(reg_max)):
        raise ValueError(f"tensor {dfl!r} must be the DFL projection arange({reg_max}); got {state[dfl].reshape(-1)}.")
    extra = sorted(k for k in state if k not in used and k != dfl)
    if extra:
        raise ValueError(f"source has tensors that {what} does not: {extra[:5]}{' ...' if len(extra) > 5 else ''}"
                         f"{hint or ' (is it an ultralytics detection model?)'}.")
    return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def export_ultralytics(model: YOLO, *, as_torch: bool = True) -> dict[str, Any]:
    """The ultralytics state dict of a :class:`~jaxdet.models.yolo.YOLO` (parameters, BatchNorm statistics and
    counts of train-mode calls, and the DFL projection when ``reg_max > 1``).

    ``DetectionModel(f"{model.name}.yaml", nc=C).load_state_dict(export_ultralytics(model))`` then gives the
    same network in PyTorch (e.g. ``yolov8n.yaml``, ``yolo11n.yaml``, ``yolo26n.yaml``; for ``task="obb"``
    ``OBBModel`` and ``yolov8n-obb.yaml`` ...).

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
    if model.reg_max > 1:  # ultralytics' DFL buffer (an Identity, without tensors, for reg_max = 1)
        detect = VERSIONS[model.version].detect_index
        ref = out[f"model.{detect}.cv2.0.2.weight"]
        out[f"model.{detect}.dfl.conv.weight"] = np.arange(model.reg_max, dtype=ref.dtype).reshape(1, -1, 1, 1)
    if not as_torch:
        return out
    import torch  # noqa: PLC0415 - optional dependency: only as_torch=True needs torch

    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in out.items()}
