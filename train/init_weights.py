"""The initial weights of a run (``model.init``): an ultralytics checkpoint or a jaxdet run, transferred by name.

``model.init`` is a path, or ``""`` (random initialisation, the default):

- an ultralytics ``.pt`` checkpoint (its ``ema`` model if present, else ``model``) or a ``.pt`` holding a bare state
  dict (``torch.save(model.state_dict(), f)``) of a YOLOv8 / YOLO11 / YOLO26 detection model, read through
  :func:`jaxdet.models.ultralytics_io.load_ultralytics` (version, scale, class count detected from the tensors);
- a jaxdet workdir (its latest checkpoint), its ``checkpoints/`` directory or one ``checkpoints/<step>`` directory
  (the EMA's variables when the checkpoint has an EMA, as ultralytics takes ``ema`` first).

Every tensor (parameter or BatchNorm statistic) of the run's freshly initialised model whose name and shape the
source has is replaced by the source's; the others keep their fresh initialisation, and one line reports it in
ultralytics' manner (``model.init: transferred 349/355 tensors ...; re-initialised: ...``). Names are the
ultralytics state-dict names (:func:`jaxdet.models.ultralytics_io.tensor_name`), so the same code serves every
YOLO version: nothing here names one.

**Class rows by name** (ultralytics 8.4.190 ``BaseModel._remap_cls_by_names``): when the source's class names and
the run's are both known, neither is the placeholder list ``"0", "1", ...``, at least one name matches
(case-insensitive, stripped), and they differ in count or order, the rows of every class-logit tensor (the last
conv of each ``cv3.<i>`` / ``one2one_cv3.<i>`` branch of the Detect head, whose output width is the run's class
count) are copied by name: row ``k`` of the run gets the source row of the same name, an unmatched row keeps its
fresh initialisation. A tensor whose input width differs (another scale) is left fresh. Otherwise (same names in
the same order, or no names) the tensors transfer by shape as any other.

The optimizer state starts fresh (it does not depend on the weights) and the model EMA starts from the loaded
weights. The weights are applied only when a run starts: a resumed run restores its own checkpoint and says that
it ignored ``model.init`` (which is therefore safe to change on resume, ``train.workdir.SAFE_ON_RESUME``).

Bad input raises :class:`InitWeightsError` (``python -m train`` exits with status 2 before compiling the train step)
with one line naming ``model.init`` and what was found: a missing path, a checkpoint of another task
(segmentation, pose, OBB, classification), of another YOLO version or scale than the run's, a file that is no
detection state dict, a jaxdet checkpoint of another head or model.

References:
  ultralytics 8.4.190 ``nn/tasks.py`` (``BaseModel.load``, ``_remap_cls_by_names``), ``utils/torch_utils.py``
  (``intersect_dicts``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdet.data.synthetic import SHAPE_CLASSES
from jaxdet.models import ultralytics_io
from train.model_state import Path, display_name, flat_variables

FIELD = "model.init"
#: ``model.*`` fields that may differ between a jaxdet source checkpoint and the run (the rest must be equal).
FREE_MODEL_FIELDS = ("init", "num_classes", "image_size", "dtype")
#: the class-logit branches of a Detect head (ultralytics' ``cv3`` and YOLO26's ``one2one_cv3``).
CLASS_BRANCHES = ("cv3", "one2one_cv3")
_SYNTHETIC = ("shapes", "dense_shapes")



class InitWeightsError(ValueError):
    """``model.init`` names something the run cannot start from; the message names the field and what it found."""


@dataclasses.dataclass
class Source:
    """The weights of ``model.init``.

    Attributes:
      path: the file or directory.
      kind: ``"ultralytics"`` or ``"jaxdet"``.
      description: e.g. ``"ultralytics yolov8n, 80 classes"``.
      variables: ``{path: array}`` of every parameter and statistic, in jaxdet's layout (kernels ``[k, k, I, O]``),
        paths as strings (``("model", "0", "conv", "kernel")``).
      class_names: in index order, or None when the source does not record them.
      model: ultralytics: ``{"version", "scale", "reg_max", "end2end", "num_classes"}``; jaxdet: its ``model``
        config section.
    """

    path: str
    kind: str
    description: str
    variables: dict[Path, np.ndarray]
    class_names: tuple[str, ...] | None
    model: dict[str, Any]

    @property
    def model_name(self) -> str:
        """ultralytics' name of an ultralytics source, e.g. ``"yolov8n"``."""
        return f"yolo{self.model.get('version')}{self.model.get('scale')}"


@dataclasses.dataclass
class Transfer:
    """What :func:`transfer` did: the counts and names of the line it prints."""

    transferred: int
    total: int
    reinitialised: list[str]
    remapped_rows: int = 0  # class rows copied by name (0: no remap)
    remapped_tensors: int = 0
    num_classes: int = 0

    def line(self, source: Source) -> str:
        """``model.init: transferred N/M tensors from PATH (DESCRIPTION); re-initialised: ...``."""
        text = f"{FIELD}: transferred {self.transferred}/{self.total} tensors from {source.path} ({source.description})"
        if self.remapped_tensors:
            text += (f"; remapped {self.remapped_rows}/{self.num_classes} class rows by name in "
                     f"{self.remapped_tensors} class-logit tensors")
        if self.reinitialised:
            shown = ", ".join(self.reinitialised[:8]) + (" ..." if len(self.reinitialised) > 8 else "")
            text += f"; re-initialised ({len(self.reinitialised)}): {shown}"
        else:
            text += "; re-initialised: none"
        return text


# ------------------------------------------------------------------------------------------------ names


def class_logit_paths(paths, num_classes: int, shapes: Mapping[Path, tuple]) -> set[Path]:
    """The kernels and biases of the last layer of every ``cv3.<i>`` / ``one2one_cv3.<i>`` branch whose output
    width (last axis) is ``num_classes``: the class-logit tensors (ultralytics' ``_remap_cls_by_names`` keys)."""
    paths = list(paths)
    last: dict[Path, int] = {}
    for p in paths:
        for k, part in enumerate(p[:-3]):
            if part in CLASS_BRANCHES and p[k + 1].isdigit() and p[k + 2].isdigit():
                branch = p[: k + 2]
                last[branch] = max(last.get(branch, -1), int(p[k + 2]))
    out = set()
    for p in paths:
        if p[-1] not in ("kernel", "bias"):
            continue
        for branch, j in last.items():
            if p[: len(branch)] == branch and p[len(branch):-1] == (str(j),) and shapes[p][-1] == num_classes:
                out.add(p)
    return out


def _placeholder(names) -> bool:
    return all(str(n) == str(k) for k, n in enumerate(names))


def _norm(name) -> str:
    return str(name).strip().lower()


def class_index(source_names, target_names) -> np.ndarray | None:
    """For each target class the source class of the same name (-1 if none), or None when no remap applies:
    a list unknown or placeholder-only, no name in common, or the same names in the same order (ultralytics)."""
    if not source_names or not target_names or _placeholder(source_names) or _placeholder(target_names):
        return None
    lookup = {_norm(n): k for k, n in enumerate(source_names)}
    idx = np.array([lookup.get(_norm(n), -1) for n in target_names], np.int64)
    matched = int((idx >= 0).sum())
    if matched == 0 or (len(source_names) == len(target_names) and np.array_equal(idx, np.arange(len(idx)))):
        return None
    return idx


# ------------------------------------------------------------------------------------------------ transfer


def transfer(target: dict[Path, Any], source: Source, *, target_names=None, num_classes: int | None = None
             ) -> tuple[dict[Path, np.ndarray], Transfer]:
    """The run's variables with the source's where name and shape fit (class rows by name, module docstring).

    Args:
      target: ``{path: array}`` of the freshly initialised model (:func:`flat_variables`).
      source: the weights (:func:`read_source`).
      target_names: the run's class names in index order (None: unknown).
      num_classes: the run's class count (default ``len(target_names)``).

    Returns:
      ``(variables, report)``: every target path with its new value (the target's dtype), and what was done.
    """
    src = source.variables
    shapes = {p: tuple(np.shape(v)) for p, v in target.items()}
    nc = num_classes if num_classes is not None else (len(target_names) if target_names else None)
    idx = class_index(source.class_names, target_names) if nc else None
    out, done, remapped = {}, set(), 0
    if idx is not None:
        valid = idx >= 0
        for p in sorted(class_logit_paths(target, nc, shapes)):
            s = src.get(p)
            if s is None or tuple(s.shape[:-1]) != shapes[p][:-1]:
                continue  # another input width (scale): left fresh, as ultralytics
            new = np.array(target[p], copy=True)
            new[..., valid] = np.asarray(s)[..., idx[valid]]
            out[p], remapped = new, remapped + 1
            done.add(p)
    for p, value in target.items():
        if p in done:
            continue
        s = src.get(p)
        if s is not None and tuple(np.shape(s)) == shapes[p]:
            out[p] = np.asarray(s)
            done.add(p)
        else:
            out[p] = np.asarray(value)
    out = {p: np.asarray(v).astype(np.asarray(target[p]).dtype) for p, v in out.items()}
    report = Transfer(
        transferred=len(done), total=len(target),
        reinitialised=[display_name(p) for p in target if p not in done],
        remapped_rows=int((idx >= 0).sum()) if remapped else 0, remapped_tensors=remapped, num_classes=nc or 0,
    )
    return out, report


# ------------------------------------------------------------------------------------------------ sources


def _fail(path: str, what: str) -> InitWeightsError:
    return InitWeightsError(f"{FIELD}={path!r}: {what}")


def read_source(path: str, *, param_dtype=jnp.float32) -> Source:
    """The weights at ``path``: an ultralytics ``.pt`` / state-dict file, or a jaxdet workdir / checkpoint directory.

    Raises:
      InitWeightsError: naming ``model.init`` and what it found (module docstring).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _fail(path, "no such file or directory (expected an ultralytics .pt file or a jaxdet workdir)")
    if os.path.isdir(path):
        return _read_jaxdet(path)
    return _read_ultralytics(path, param_dtype=param_dtype)


def _names_list(names) -> tuple[str, ...] | None:
    if isinstance(names, Mapping):
        return tuple(str(names[k]) for k in sorted(names))
    if isinstance(names, (list, tuple)):
        return tuple(str(n) for n in names)
    return None


def _read_ultralytics(path: str, *, param_dtype) -> Source:
    try:
        import torch  # noqa: PLC0415 - optional dependency: only an ultralytics file needs torch
    except ImportError:
        raise _fail(path, "reading an ultralytics .pt needs torch (pip install torch ultralytics)") from None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # pickle, zip and torch errors of many kinds
        raise _fail(path, f"not a torch checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    model = ckpt
    if isinstance(ckpt, Mapping) and ("ema" in ckpt or "model" in ckpt):
        model = ckpt.get("ema") or ckpt.get("model")
    kind = type(model).__name__
    if hasattr(model, "state_dict") and kind != "DetectionModel":
        task = (ckpt.get("train_args") or {}).get("task") if isinstance(ckpt, Mapping) else None
        raise _fail(path, f"holds an ultralytics {kind}" + (f" (task {task!r})" if task else "")
                    + "; jaxdet's YOLO heads start from a detection model (DetectionModel)")
    if not hasattr(model, "state_dict") and not isinstance(model, Mapping):
        raise _fail(path, f"holds a {kind}, not an ultralytics model or state dict")
    names = _names_list(getattr(model, "names", None))
    if hasattr(model, "float"):
        model = model.float()  # ultralytics saves half-precision weights
    try:
        yolo = ultralytics_io.load_ultralytics(model, param_dtype=param_dtype)
    except (ValueError, KeyError) as err:
        raise _fail(path, f"not a YOLOv8/YOLO11/YOLO26 detection model: {err}") from None
    variables = {p: np.asarray(jax.device_get(v)) for p, v in flat_variables(nnx.state(yolo)).items()}
    fields = {"version": yolo.version, "scale": yolo.scale, "reg_max": yolo.reg_max, "end2end": yolo.end2end,
              "num_classes": yolo.num_classes}
    return Source(path, "ultralytics", f"ultralytics {yolo.name}, {yolo.num_classes} classes", variables, names,
                  fields)


def _checkpoint_step_dir(path: str) -> str:
    """The newest ``<step>`` directory of a workdir, a ``checkpoints`` directory, or ``path`` itself."""
    if os.path.isdir(os.path.join(path, "state")):
        return path
    ckpts = os.path.join(path, "checkpoints") if os.path.isdir(os.path.join(path, "checkpoints")) else path
    steps = sorted(int(n) for n in os.listdir(ckpts) if n.isdigit() and os.path.isdir(os.path.join(ckpts, n)))
    if not steps:
        raise _fail(path, "a directory without jaxdet checkpoints (expected a workdir, its checkpoints/ or "
                          "checkpoints/<step>, or an ultralytics .pt file)")
    return os.path.join(ckpts, str(steps[-1]))


def _read_jaxdet(path: str) -> Source:
    import orbax.checkpoint as ocp  # noqa: PLC0415 - orbax loads only for a jaxdet source

    step_dir = _checkpoint_step_dir(path)
    meta_file = os.path.join(step_dir, "meta", "metadata")
    config = {}
    if os.path.isfile(meta_file):
        with open(meta_file) as f:
            config = json.load(f).get("config", {}) or {}
    try:
        state = ocp.StandardCheckpointer().restore(os.path.join(step_dir, "state"))
    except Exception as err:  # orbax raises many kinds
        raise _fail(path, f"checkpoint {step_dir} cannot be read ({type(err).__name__}: {str(err)[:200]})") from None
    source = state.get("ema", state)
    variables = {}
    for part in ("params", "model_state"):
        variables.update({p: np.asarray(v) for p, v in flat_variables(source.get(part, {})).items()})
    model = dict(config.get("model", {}))
    data = config.get("data", {})
    names = _names_list(data.get("class_names")) or None
    if not names and data.get("name") in _SYNTHETIC:
        names = tuple(SHAPE_CLASSES)
    which = "EMA" if "ema" in state else "raw"
    desc = (f"jaxdet {model.get('head', '?')} checkpoint step {os.path.basename(step_dir)}, {which} weights, "
            f"{model.get('num_classes', '?')} classes")
    return Source(path, "jaxdet", desc, variables, names, model)


# ------------------------------------------------------------------------------------------------ the run


def run_class_names(config) -> tuple[str, ...] | None:
    """The run's class names in index order (``data.class_names``, the synthetic shapes' names), or None."""
    names = tuple(str(c) for c in (config.data.get("class_names", ()) or ()))
    if not names and str(config.data.get("name", "shapes")) in _SYNTHETIC:
        names = tuple(SHAPE_CLASSES)
    return names if len(names) == int(config.model.num_classes) else None


def check_compatible(source: Source, config, model: nnx.Module) -> None:
    """Raises :class:`InitWeightsError` when ``source`` is of another YOLO version / scale (ultralytics) or another
    head / model (jaxdet) than the run's ``model`` (abstract is fine) and ``config``."""
    head = str(config.model.get("head", ""))
    if source.kind == "ultralytics":
        if not hasattr(model, "version"):
            raise _fail(source.path, f"holds an ultralytics {source.model_name} model; an ultralytics checkpoint "
                                     f"initialises a YOLO head, this run's model.head is {head!r}")
        for field in ("version", "scale", "reg_max", "end2end"):
            if getattr(model, field, None) != source.model[field]:
                raise _fail(source.path, f"holds an ultralytics {source.model_name} detection model; this run builds "
                            f"{model.name} (model.head {head!r}, model.scale {getattr(model, 'scale', '?')!r}; "
                            f"{field} {source.model[field]!r} != {getattr(model, field, None)!r}): pick a checkpoint "
                            "of the run's version and scale, or set model.head / model.scale to the checkpoint's")
        return
    theirs = source.model
    if theirs.get("head") != head:
        raise _fail(source.path, f"is a jaxdet checkpoint of model.head={theirs.get('head')!r}; this run's "
                                 f"model.head is {head!r}")
    ours = {k: v for k, v in config.model.items()}
    differ = [f"model.{k} {theirs[k]!r} != {ours[k]!r}" for k in sorted(ours.keys() & theirs.keys())
              if k not in FREE_MODEL_FIELDS and theirs[k] != ours[k]]
    if differ:
        raise _fail(source.path, "is a jaxdet checkpoint of another model: " + ", ".join(differ))



def initial_state(state: dict[str, Any], source: Source, *, target_names=None, num_classes: int | None = None
                  ) -> tuple[dict[str, Any], Transfer]:
    """The fresh train ``state`` with the source's weights in ``params`` / ``model_state`` (:func:`transfer`), the EMA
    (when the state has one) restarted from them; the optimizer state is the fresh one (zeros)."""
    groups = {part: flat_variables(state[part]) for part in ("params", "model_state")}
    target = {p: np.asarray(jax.device_get(v)) for g in groups.values() for p, v in g.items()}
    new, report = transfer(target, source, target_names=target_names, num_classes=num_classes)
    out = dict(state)
    for part in ("params", "model_state"):
        leaves, treedef = jax.tree_util.tree_flatten(state[part])
        paths = list(groups[part])
        out[part] = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(new[p]) for p in paths])
        assert len(leaves) == len(paths)
    if "ema" in state:
        from train import recipe as recipe_lib  # noqa: PLC0415 - train.recipe imports train.freeze, which imports this

        out["ema"] = recipe_lib.ema_init(out["params"], out["model_state"])
    return out, report


def init_from_config(config, build_model: Callable[[nnx.Rngs], nnx.Module], state: dict[str, Any],
                     source: Source | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``state`` initialised from ``config.model.init`` (read unless ``source`` is given), the line logged."""
    source = source or load_checked(config, build_model)
    state, report = initial_state(state, source, target_names=run_class_names(config),
                                  num_classes=int(config.model.num_classes))
    log(report.line(source))
    return state


def load_checked(config, build_model: Callable[[nnx.Rngs], nnx.Module]) -> Source:
    """Reads ``config.model.init`` and checks it against the run's model (:func:`check_compatible`)."""
    model = nnx.eval_shape(lambda: build_model(nnx.Rngs(0)))
    dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
    source = read_source(str(config.model.init), param_dtype=max(dtypes, key=lambda d: np.dtype(d).itemsize))
    check_compatible(source, config, model)
    return source


def init_path(config) -> str:
    """``model.init`` of ``config`` ("" when unset)."""
    return str(config.model.get("init", "") or "") if "model" in config else ""

