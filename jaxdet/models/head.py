"""The detector-head protocol and its registry: the one seam between a config's ``model.head`` and the code.

A *head* owns everything that depends on what the network predicts:

- its output layout: :attr:`Head.channels` raw values per cell and their initial bias (:meth:`Head.output_bias`);
- the network that produces them (:meth:`Head.build_model`);
- its loss, with one fixed arity: ``loss(outputs, batch, *, step, state) -> (loss, metrics, state)``, where
  ``state`` is the head's own pytree (EMAs, adaptive α; ``{}`` when it has none) from :meth:`Head.init_state`;
- decoding to fixed-size :class:`jaxdet.nms.Detections` after NMS (:meth:`Head.decode`);
- the per-term views that diagnostics need (each head documents its own, e.g. which channels are boxes).

:func:`jaxdet.models.registry.make_head` builds the head named by ``model_cfg.head`` from the registry;
nothing else in jaxdet, ``train/`` or ``benchmarks/`` compares head names. To add a head, subclass
:class:`Head`, implement the abstract members and ``from_config``, and add it to
``jaxdet.models.registry.HEADS`` (see "How to add a head" in the README).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import numpy as np
from flax import nnx

from jaxdet import _checks
from jaxdet.nms import Detections

__all__ = ["Head", "config_get"]

#: the batch keys every head's loss reads (each head may require more, see its ``batch_keys``).
BATCH_KEYS = ("boxes", "classes", "valid")


def config_get(cfg: Mapping[str, Any] | Any, name: str, default: Any) -> Any:
    """``cfg.get(name, default)`` for ConfigDicts, dicts and plain attribute objects (None: the default)."""
    if cfg is None:
        return default
    if hasattr(cfg, "get"):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


class Head(abc.ABC):
    """A detection head: output layout, model, loss, state and decoding for one ``model.head`` name.

    Subclasses are frozen dataclasses holding their hyper-parameters; they are hashable and free of arrays,
    so a head can be closed over by ``jax.jit``.
    """

    #: the ``model.head`` value this head is registered under.
    name: ClassVar[str]
    #: batch keys the loss reads (checked eagerly by :meth:`check_batch`).
    batch_keys: ClassVar[tuple[str, ...]] = BATCH_KEYS
    #: the ``loss`` config fields the head reads, with their defaults.
    loss_defaults: ClassVar[Mapping[str, Any]] = {}
    num_classes: int

    @classmethod
    @abc.abstractmethod
    def from_config(cls, model_cfg, loss_cfg, *, num_classes: int, total_steps: int) -> "Head":
        """The head for these config sections; ``total_steps`` is the run's length (for α schedules)."""

    @property
    @abc.abstractmethod
    def channels(self) -> int:
        """D: raw output values per grid cell."""

    @abc.abstractmethod
    def output_bias(self) -> np.ndarray:
        """``[D]`` float32 initial bias of the output layer (priors for confidences, initial shapes)."""

    def build_model(self, model_cfg, *, rngs: nnx.Rngs) -> nnx.Module:
        """The network mapping ``images [N, H, W, 3]`` to ``outputs`` (default: the strided-CNN grid detector)."""
        from jaxdet.models.detector import build_grid_detector

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
