"""The detector-head protocol, the base class of every head: the one seam between a config's ``model.head`` and
the code.

A *head* owns everything that depends on what the network predicts:

- its output layout: :attr:`Head.channels` raw values per cell and their initial bias (:meth:`Head.output_bias`);
- the network that produces them (:meth:`Head.build_model`);
- its loss, with one fixed arity: ``loss(outputs, batch, *, step, state) -> (loss, metrics, state)``, where
  ``state`` is the head's own pytree (EMAs, adaptive α; ``{}`` when it has none) from :meth:`Head.init_state`;
- decoding to fixed-size :class:`jaxdet.nms.Detections` after NMS (:meth:`Head.decode`);
- the per-term views that diagnostics need (each head documents its own, e.g. which channels are boxes).

:func:`jaxdet.models.registry.make_head` builds the head named by ``model_cfg.head`` from the registry;
nothing else in jaxdet, ``train/`` or ``benchmarks/`` compares head names. To add a head, write a frozen
dataclass subclass of :class:`Head`, implement the abstract members, and add it to
``jaxdet.models.registry.HEADS`` (see "How to add a head" in train/README.md).

**Config fields.** A head's hyper-parameters are its dataclass fields, each default written once: a field
declared with :func:`model_field` is read from the ``model`` config section, one declared with
:func:`loss_field` from the ``loss`` section, under the field's name, converted to the field's type (``int``,
``float`` or ``str``), the field's default where the section lacks it. :meth:`Head.from_config` builds the head
from those (a head whose config has more, like the polygon head's ``loss.alpha``, extends it), and
:attr:`Head.model_defaults` / :attr:`Head.loss_defaults` list them with their defaults. The values are checked
in the head's ``__post_init__``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import numpy as np
from flax import nnx

from jaxdet import _checks
from jaxdet.models.detector import build_grid_detector
from jaxdet.nms import Detections

__all__ = ["Head", "BATCH_KEYS", "model_field", "loss_field"]

#: the batch keys every head's loss reads (each head may require more, see its ``batch_keys``).
BATCH_KEYS = ("boxes", "classes", "valid")
#: the field-metadata key naming the config section ("model" or "loss") a head's field is read from.
_SECTION = "config_section"
#: the field types a config value is converted to (the annotation, a string under ``from __future__``).
_CONVERTERS: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "str": str}


def model_field(default: Any) -> Any:
    """A head dataclass field read from the ``model`` config section under its name (``default`` when absent)."""
    return dataclasses.field(default=default, metadata={_SECTION: "model"})


def loss_field(default: Any) -> Any:
    """A head dataclass field read from the ``loss`` config section under its name (``default`` when absent)."""
    return dataclasses.field(default=default, metadata={_SECTION: "loss"})


def _converter(cls: type, field: dataclasses.Field) -> Callable[[Any], Any]:
    name = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", repr(field.type))
    if name not in _CONVERTERS:
        raise TypeError(f"{cls.__name__}.{field.name}: a config field must be annotated int, float or str; got {name}")
    return _CONVERTERS[name]


class _SectionDefaults:
    """The class attributes :attr:`Head.model_defaults` and :attr:`Head.loss_defaults`: ``{field: default}`` of
    the head class's fields read from one config section (empty for the abstract :class:`Head`)."""

    def __init__(self, section: str):
        self.section = section

    def __get__(self, instance: Any, owner: type) -> dict[str, Any]:
        if not dataclasses.is_dataclass(owner):
            return {}
        return {f.name: f.default for f in dataclasses.fields(owner) if f.metadata.get(_SECTION) == self.section}


class Head(abc.ABC):
    """A detection head: output layout, model, loss, state and decoding for one ``model.head`` name.

    Subclasses are frozen dataclasses holding their hyper-parameters; they are hashable and free of arrays,
    so a head can be closed over by ``jax.jit``.
    """

    #: the ``model.head`` value this head is registered under.
    name: ClassVar[str]
    #: batch keys the loss reads (checked eagerly by :meth:`check_batch`).
    batch_keys: ClassVar[tuple[str, ...]] = BATCH_KEYS
    #: the ``model`` config fields the head reads (its :func:`model_field` fields), with their defaults.
    model_defaults: ClassVar[Mapping[str, Any]] = _SectionDefaults("model")
    #: the ``loss`` config fields the head reads (its :func:`loss_field` fields), with their defaults.
    loss_defaults: ClassVar[Mapping[str, Any]] = _SectionDefaults("loss")
    #: other ``loss`` fields the head's own :meth:`from_config` reads (e.g. the polygon head's ``alpha``).
    extra_loss_fields: ClassVar[tuple[str, ...]] = ()
    num_classes: int

    @classmethod
    def config_values(cls, model_cfg, loss_cfg) -> dict[str, Any]:
        """``{field: value}`` of the head's :func:`model_field` and :func:`loss_field` fields: each read from its
        section (the field's default where the section or the field is missing) and converted to its type."""
        sections = {"model": model_cfg, "loss": loss_cfg}
        return {
            f.name: _converter(cls, f)(_checks.config_get(sections[f.metadata[_SECTION]], f.name, f.default))
            for f in dataclasses.fields(cls)
            if _SECTION in f.metadata
        }

    @classmethod
    def from_config(cls, model_cfg, loss_cfg, *, num_classes: int, total_steps: int) -> "Head":
        """The head for these config sections (:meth:`config_values`, ``num_classes`` C); ``total_steps`` is the
        run's length, for heads with α schedules."""
        return cls(num_classes=int(num_classes), **cls.config_values(model_cfg, loss_cfg))

    @property
    @abc.abstractmethod
    def channels(self) -> int:
        """D: raw output values per grid cell."""

    @abc.abstractmethod
    def output_bias(self) -> np.ndarray:
        """``[D]`` float32 initial bias of the output layer (priors for confidences, initial shapes)."""

    def build_model(self, model_cfg, *, rngs: nnx.Rngs) -> nnx.Module:
        """The network mapping ``images [N, H, W, 3]`` to ``outputs`` (default: the strided-CNN grid detector)."""
        return build_grid_detector(model_cfg, out_channels=self.channels, output_bias=self.output_bias(), rngs=rngs)

    def init_state(self) -> Any:
        """The loss state before the first step (a pytree of arrays; ``{}`` when the loss has none)."""
        return {}

    @abc.abstractmethod
    def loss(self, outputs: jax.Array, batch: Mapping[str, jax.Array], *, step: jax.Array, state: Any):
        """Training loss of the raw outputs against a batch (pure, jit-safe).

        Args:
          outputs: the model's raw outputs.
          batch: ``boxes [N, M, 4]`` xyxy normalised, ``classes [N, M]`` int, ``valid [N, M]`` bool, and the
            head's further :attr:`batch_keys`.
          step: int32 scalar, optimizer steps taken before this one (for schedules).
          state: the head's loss state (from :meth:`init_state` or a previous call).

        Returns:
          ``(loss scalar, metrics: dict of scalars including "loss", new state)``.
        """

    @abc.abstractmethod
    def decode(
        self, outputs: jax.Array, *, score_threshold: float, iou_threshold: float, max_detections: int
    ) -> Detections:
        """Raw outputs -> fixed-size :class:`Detections` (``[N, max_detections, ...]``) after class-aware NMS.

        A head may take further keyword-only options (the yolov8 head: ``multi_label``, ``pre_nms_top_k``);
        ``train.task`` passes ``eval.multi_label`` / ``eval.pre_nms_top_k`` only when a config sets them, and
        ``train.validate`` refuses them for a head whose ``decode`` lacks them.
        """

    @abc.abstractmethod
    def assignment_bytes(self, *, batch_size: int, max_objects: int, image_size: int) -> int:
        """An estimate of the peak memory (bytes) of the loss's target assignment for ``batch_size`` images with
        ``max_objects`` ground-truth slots each: what grows with dense data (``train.validate`` refuses a config
        whose assignment cannot fit on the device)."""

    def check_batch(self, batch: Mapping[str, Any]) -> None:
        """Raises a ValueError naming the missing keys of ``batch``."""
        _checks.keys_present(batch, self.batch_keys, "batch")
