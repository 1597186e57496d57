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
``polygons [M, K, 2]``, ``image_id []``), e.g. a ``grain.MapDataset``.

The sample in row ``r`` of the global batch of step ``t`` is

    g = t * global_batch_size + r,   epoch = g // len(source),
    index = permutation(seed, epoch)[g % len(source)]

and is augmented (if an augment function is given) with an RNG seeded by ``(seed, g)``. The data
position is therefore just the step: a resumed run, a run on another number of devices, and a run split
over several processes all see exactly the same global batches. Each process materialises only the rows
that live on its devices (:func:`train.mesh.process_rows`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

BATCH_KEYS = ("image", "boxes", "classes", "valid", "polygons", "image_id")


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
      augment: optional ``augment(example, rng: np.random.Generator) -> example``.
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
        self._perm_cache: dict[int, np.ndarray] = {}
        self._step = 0
        self._pending: dict[int, Any] = {}
        self._pool = None

    def _index(self, g: int) -> int:
        epoch, pos = divmod(g, self._n)
        if not self.shuffle:
            return pos
        perm = self._perm_cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self._n)
            self._perm_cache = {epoch: perm}  # keep only the current epoch
        return int(perm[pos])

    def local_batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch of ``step``."""
        examples = []
        for r in self.rows:
            g = int(step) * self.global_batch_size + int(r)
            ex = self.source[self._index(g)]
            if self.augment is not None:
                ex = self.augment(ex, np.random.default_rng([self.seed, 1, g]))
            if self.max_objects is not None:
                from jaxdet.data.records import pad_example

                ex = pad_example(ex, self.max_objects)
            examples.append(ex)
        return stack_examples(examples)

    def next(self) -> dict[str, np.ndarray]:
        import concurrent.futures

        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        fut = self._pending.pop(self._step, None)
        batch = fut.result() if fut is not None else self.local_batch(self._step)
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
    ):
        import grain
        from jaxdet.data import make_loader

        rows = np.asarray(rows)
        local = len(rows)
        if local == 0 or global_batch_size % local or rows[0] % local or np.any(np.diff(rows) != 1):
            raise ValueError(
                f"this process's rows {rows.tolist()} of the global batch {global_batch_size} are not "
                "a contiguous aligned block; use data.loader='step'"
            )
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self._options = dict(
            batch_size=self.global_batch_size,
            seed=self.seed,
            shuffle=True,
            augment=augment if augment is not None else False,
            num_epochs=None,
            max_objects=int(max_objects),
            shard_options=grain.sharding.ShardOptions(int(rows[0] // local), global_batch_size // local),
            num_threads=num_threads,
        )
        self._source = source
        self._it = make_loader(source, **self._options)
        self._step = 0

    def next(self) -> dict[str, np.ndarray]:
        batch = next(self._it)
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


def make_train_batches(loader: str, source, *, global_batch_size, seed, rows, augment, max_objects):
    """The training batch iterator named by ``config.data.loader`` ("grain" | "step")."""
    if loader == "grain":
        return LoaderBatches(
            source, global_batch_size=global_batch_size, seed=seed, rows=rows, augment=augment, max_objects=max_objects
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
        from jaxdet.data.records import pad_example

        yield stack_examples([pad_example(source[int(i)], max_objects) for i in idx]), keep
