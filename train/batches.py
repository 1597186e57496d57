"""Per-process training batches with a checkpointable position, and validation batches.

Two batch iterators share one interface (``next() -> local batch``, ``get_state() -> JSON dict``,
``set_state(dict)``):

* :class:`LoaderBatches` (``data.loader="grain"``, the default) wraps ``jaxdet.data.make_loader``: grain
  shuffles, augments, pads and batches the global stream and keeps this process's contiguous block of
  rows; its position is grain's iterator state.
* :class:`StepBatcher` (``data.loader="step"``) addresses batches by step directly (below) with a small
  prefetch thread; its position is the step.

In both, the global batch of a step does not depend on the process/device layout.

A *source* is any random-access sequence of examples (``len(source)`` and ``source[i]`` returning a dict
of numpy arrays for one image: ``image [H, W, 3]``, ``boxes [M, 4]``, ``classes [M]``, ``valid [M]``,
``polygons [M, K, 2]``, ``image_id []``), e.g. a ``grain.MapDataset`` or what :func:`train.data.prepare_data`
builds.

The sample in row ``r`` of the global batch of step ``t`` is

    g = t * global_batch_size + r,   epoch = g // len(source),
    index = permutation(seed, epoch)[g % len(source)]

and is augmented (if an augment function is given) with an RNG seeded by ``(seed, g)``. The data
position is therefore just the step: a resumed run, a run on another number of devices, and a run split
over several processes all see exactly the same global batches. Each process materialises only the rows
that live on its devices (:func:`train.mesh.process_rows`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from typing import Any, Callable, Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np

from jaxdet.data import make_augment, make_loader
from jaxdet.data.pipeline import ShuffledStream
from jaxdet.data.records import pad_example
from train import loader_stats
from train import mesh as mesh_lib

BATCH_KEYS = ("image", "boxes", "classes", "valid", "polygons", "image_id", "dropped_boxes")


def stack_examples(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


@dataclasses.dataclass
class StepBatcher:
    """Deterministic global batches addressed by step (the data-iterator position).

    Args:
      source: random-access raw examples (padded here when ``max_objects`` is given).
      global_batch_size: images per step over all processes.
      seed: shuffling/augmentation seed.
      rows: the rows of the global batch this process loads (``train.mesh.process_rows``).
      augment: optional ``augment(example, rng: np.random.Generator) -> example`` (called with ``step=`` too
        when it has ``uses_step = True``, e.g. ``jaxdet.data.yolo_augment.YoloAugment``).
      shuffle: shuffle each epoch.
    """

    source: Any
    global_batch_size: int
    seed: int
    rows: np.ndarray
    augment: Callable[[dict, np.random.Generator], dict] | None = None
    shuffle: bool = True

    max_objects: int | None = None

    def __post_init__(self):
        self._n = len(self.source)
        if self._n == 0:
            raise ValueError("the training source is empty")
        self._stream = ShuffledStream(self.source, seed=self.seed, shuffle=self.shuffle)
        self._step = 0
        self._pending: dict[int, Any] = {}
        self._pool = None
        self.stats = loader_stats.LoaderStats(1)

    def local_batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch of ``step``."""
        t0 = time.perf_counter()
        examples = []
        for r in self.rows:
            g = int(step) * self.global_batch_size + int(r)
            ex = self._stream[g]
            if self.augment is not None:
                rng = np.random.default_rng([self.seed, 1, g])
                if getattr(self.augment, "uses_stream", False):
                    ex = self.augment(ex, rng, step=int(step), position=g, stream=self._stream.__getitem__)
                elif getattr(self.augment, "uses_step", False):
                    ex = self.augment(ex, rng, step=int(step))
                else:
                    ex = self.augment(ex, rng)
            if self.max_objects is not None:
                ex = pad_example(ex, self.max_objects)
            examples.append(ex)
        self.stats.produced(time.perf_counter() - t0, len(examples))
        return stack_examples(examples)

    def next(self) -> dict[str, np.ndarray]:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        t0 = time.perf_counter()
        fut = self._pending.pop(self._step, None)
        batch = fut.result() if fut is not None else self.local_batch(self._step)
        self.stats.waited(time.perf_counter() - t0)
        self._step += 1
        for s in (self._step, self._step + 1):
            if s not in self._pending:
                self._pending[s] = self._pool.submit(self.local_batch, s)
        return batch

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position: the number of batches consumed."""
        return {
            "loader": "step",
            "step": self._step,
            "samples_seen": self._step * self.global_batch_size,
            "global_batch_size": self.global_batch_size,
            "seed": self.seed,
            "source_len": self._n,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._step = int(state["step"])
        self._pending.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class LoaderBatches:
    """This process's rows of the global batches from ``jaxdet.data.make_loader`` (grain).

    Args:
      source: random-access *raw* examples (padding to ``max_objects`` happens in the loader).
      global_batch_size: images per step over all processes.
      seed: shuffle/augmentation seed.
      rows: this process's rows of the global batch (a contiguous block, ``train.mesh.process_rows``).
      augment: False, True (the loader's default flip + scale jitter) or ``(example, rng) -> example``.
      max_objects: ground-truth slots per image.
      num_threads: grain reader threads (reading/decoding and augmentation run in them).
      prefetch: batches grain prepares ahead of the loop (its ``prefetch_buffer_size``).
      num_workers: worker processes building whole batches (grain ``mp_prefetch``; 0: none). The batches do
        not depend on it.

    ``stats`` (:class:`train.loader_stats.LoaderStats`) times the reading and augmentation of every example
    and the loop's waits (with worker processes only the waits: the work happens in the workers).
    """

    def __init__(
        self,
        source,
        *,
        global_batch_size: int,
        seed: int,
        rows: np.ndarray,
        augment,
        max_objects: int,
        num_threads: int = 2,
        prefetch: int = 8,
        num_workers: int = 0,
    ):
        rows = np.asarray(rows)
        local = len(rows)
        if local == 0 or global_batch_size % local or rows[0] % local or np.any(np.diff(rows) != 1):
            raise ValueError(
                f"this process's rows {rows.tolist()} of the global batch {global_batch_size} are not "
                "a contiguous aligned block; use data.loader='step'"
            )
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self.stats = loader_stats.LoaderStats(num_threads)
        if augment is True:
            augment = make_augment()
        self._options = dict(
            batch_size=self.global_batch_size,
            seed=self.seed,
            shuffle=True,
            augment=self.stats.timed(augment) if callable(augment) else False,
            num_epochs=None,
            max_objects=int(max_objects),
            shard_options=grain.sharding.ShardOptions(int(rows[0] // local), global_batch_size // local),
            num_threads=num_threads,
            prefetch_buffer_size=prefetch,
            num_workers=int(num_workers),
        )
        self._source = source
        self._it = make_loader(loader_stats.TimedSource(source, self.stats), **self._options)
        self._step = 0

    def next(self) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        batch = next(self._it)
        self.stats.waited(time.perf_counter() - t0)
        self._step += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {
            "loader": "grain",
            "step": self._step,
            "iterator": self._it.get_state(),
            "samples_seen": self._step * self.global_batch_size,
            "global_batch_size": self.global_batch_size,
            "seed": self.seed,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("loader") != "grain":
            raise ValueError(f"the checkpoint's data position {state} was not written by the grain loader")
        self._it.set_state(state["iterator"])
        self._step = int(state["step"])

    def close(self) -> None:
        pass


class CacheFiller:
    """A background thread that generates a caching source's examples ahead of the loader
    (``source.fill_cache``, e.g. :meth:`jaxdet.data.SyntheticShapes.fill_cache`, or the decoding of a folder's
    images into ``data.cache="ram"``, :meth:`jaxdet.data.DetectionSource.fill_cache`), so that the first epoch is not
    generated between train steps. It uses the CPU left idle while the model is initialised and the first step
    is compiled (started only at that compile, it did not get ahead of the loader). The loop starts one when the
    run reads the whole split at least once, in a single process (a process of a multi-host job reads only its
    shard) without grain worker processes (each holds its own copy of the source)."""

    def __init__(self, source):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=source.fill_cache, args=(self._stop,), name="fill_cache", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, source, *, examples_to_read: int, num_workers: int = 0) -> "CacheFiller | None":
        """A running filler for ``source``, or None where it would not help: the source has no cache to fill,
        the run reads fewer than ``len(source)`` examples (the filler would generate unread ones), the loader
        has worker processes and the cache is not shared with them, or the job has several processes."""
        if not getattr(source, "cached", False) or not hasattr(source, "fill_cache"):
            return None
        private = not getattr(source, "cache_shared", False)  # each worker process would fill its own copy
        if examples_to_read < len(source) or (num_workers and private) or jax.process_count() > 1:
            return None
        return cls(source)

    def stop(self) -> None:
        """Stops filling (before the next example) and waits for the thread."""
        self._stop.set()
        self._thread.join()


class DroppedBoxes:
    """Running total of the objects augmentation removed (the batches' ``dropped_boxes``), over the global batch.

    Every process adds each global batch (a collective on the tiny ``[B]`` array, in step on all processes);
    :meth:`total` is the same on every process, so the checkpoint's value restores on any process layout.
    """

    def __init__(self, mesh, start: int = 0):
        self._total = np.int32(start)  # a host value: replicated input on any process layout
        self._add = jax.jit(lambda t, d: t + jnp.sum(d, dtype=jnp.int32), out_shardings=mesh_lib.replicated(mesh))

    def add(self, batch) -> None:
        if "dropped_boxes" in batch:
            self._total = self._add(self._total, batch["dropped_boxes"])

    def total(self) -> int:
        t = self._total
        return int(t.addressable_data(0) if isinstance(t, jax.Array) and not t.is_fully_addressable else t)


def make_train_batches(
    loader: str, source, *, global_batch_size, seed, rows, augment, max_objects, num_threads=2, prefetch=8,
    num_workers=0,
):
    """The training batch iterator named by ``config.data.loader`` ("grain" | "step"); ``num_threads``,
    ``prefetch`` and ``num_workers`` are the grain loader's (``data.num_threads``, ``data.prefetch``,
    ``data.num_workers``)."""
    if loader == "grain":
        return LoaderBatches(
            source,
            global_batch_size=global_batch_size,
            seed=seed,
            rows=rows,
            augment=augment,
            max_objects=max_objects,
            num_threads=num_threads,
            prefetch=prefetch,
            num_workers=num_workers,
        )
    if loader == "step":
        return StepBatcher(
            source,
            global_batch_size,
            seed,
            rows,
            augment=augment if callable(augment) else None,
            max_objects=max_objects,
        )
    raise ValueError(f"data.loader must be 'grain' or 'step', got {loader!r}")


def eval_batches(source, *, num_images: int, batch_size: int, max_objects: int):
    """Yields ``(global_batch, keep)`` over the first ``num_images`` of ``source`` in fixed order.

    Every process builds the whole global batch (validation sets are small and random access); the last
    batch is padded by repeating the final image and ``keep`` (bool ``[batch_size]``) marks real rows.
    """
    num_images = min(int(num_images), len(source))
    for start in range(0, num_images, batch_size):
        idx = np.minimum(np.arange(start, start + batch_size), num_images - 1)
        keep = np.arange(start, start + batch_size) < num_images
        yield stack_examples([pad_example(source[int(i)], max_objects) for i in idx]), keep
