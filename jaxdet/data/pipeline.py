"""grain input pipeline: shuffle, augment, pad, batch, and shard per JAX process.

Sharding scheme (why the global batch does not depend on the number of processes): every process builds the
same *global* stream of examples (same shuffle and augmentation seeds), cuts it into global batches of
``batch_size`` and keeps only its contiguous slice of ``batch_size // shard_count`` rows. Process ``p`` gets
rows ``[p * L, (p + 1) * L)`` of every global batch, which is the block order that
``jax.make_array_from_process_local_data`` assembles along the data axis. So 1 process x 4 devices and
2 processes x 2 devices see bit-identical global batches, and each process only loads its own rows.

Checkpointing the position: the returned iterator is a ``grain.DatasetIterator``.

* ``it.get_state()`` returns a small JSON-serialisable dict (``{"next_index": ...}``) and
  ``it.set_state(state)`` restores it; the next batch after a restore is the batch that followed the save.
  With orbax the simplest path is ``ocp.args.JsonSave(it.get_state())`` / ``ocp.args.JsonRestore()`` inside an
  ``ocp.args.Composite``.
* grain's own orbax handler also works: ``grain.checkpoint.CheckpointSave(it)`` /
  ``grain.checkpoint.CheckpointRestore(it)`` as a ``Composite`` item.

Each process saves its own state; all processes advance in lockstep, so their states are equal.

Augmentation sees only what fixes it: the example, an RNG seeded by ``(seed, g)`` (``g`` its position in the
global stream), for an augmentation with ``uses_stream = True`` that position and the stream itself, and, for an
augmentation with ``uses_step = True`` (e.g. :class:`~jaxdet.data.yolo_augment.YoloAugment`,
whose mosaic draws partners from the source and switches off at a given step), the step ``g // batch_size`` of
its global batch. So the batches stay a function of the seed and the position, whatever the sharding, and a
restored iterator continues bit-identically.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import grain
import numpy as np
from absl import flags

from jaxdet import _checks
from jaxdet.data.augment import make_augment
from jaxdet.data.records import collate, empty_example, pad_example

__all__ = ["make_loader", "loader_length", "ShuffledStream"]

_INFINITE = sys.maxsize // 4


def _with_step(augment: Callable, batch_size: int, stream=None) -> Callable:
    """``(g, example), rng -> augment(example, rng, step=g // batch_size)`` for a step-aware augmentation; with
    ``stream`` (the un-augmented examples by position) also ``position=g, stream=stream.__getitem__``."""

    def apply(item, rng):
        g, example = item
        if stream is None:
            return augment(example, rng, step=int(g) // batch_size)
        return augment(example, rng, step=int(g) // batch_size, position=int(g), stream=stream.__getitem__)

    return apply


class ShuffledStream:
    """The examples of ``source`` by stream position ``g``: epoch ``g // n`` in the order
    ``np.random.default_rng([seed, epoch]).permutation(n)`` (computed once an epoch), or in source order without
    ``shuffle``. :func:`make_loader` reads it for augmentations with ``uses_stream`` (their examples and mosaic
    partners), ``train.batches.StepBatcher`` for every batch.

    Args:
      source: random-access examples (``len``, ``source[i]``).
      seed: the shuffling seed.
      shuffle: False: position ``g`` holds example ``g % n``.
    """

    def __init__(self, source, *, seed: int, shuffle: bool = True):
        self.source, self.seed, self.shuffle = source, int(seed), bool(shuffle)
        self._perm: tuple[int, np.ndarray] | None = None

    def index(self, g: int) -> int:
        """The source index at stream position ``g``."""
        epoch, pos = divmod(int(g), len(self.source))
        if not self.shuffle:
            return pos
        perm = self._perm
        if perm is None or perm[0] != epoch:
            perm = self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.source)))
        return int(perm[1][pos])

    def __getitem__(self, g: int) -> dict:
        return self.source[self.index(g)]


def _shard_of(shard_options) -> tuple[int, int]:
    if shard_options is None:
        shard_options = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    index, count = int(shard_options.shard_index), int(shard_options.shard_count)
    _checks.number(index, "shard_options.shard_index", low=0, high=count, high_open=True)
    return index, count


def loader_length(num_examples: int, *, batch_size: int, num_epochs: int | None = 1, drop_remainder: bool = True):
    """Number of batches :func:`make_loader` yields (``None`` when ``num_epochs`` is None, i.e. infinite)."""
    _checks.positive_int(batch_size, "batch_size")
    if num_epochs is None:
        return None
    _checks.positive_int(num_epochs, "num_epochs", hint="Or None for an endless loader.")
    total = num_examples * num_epochs
    return total // batch_size if drop_remainder else -(-total // batch_size)


def make_loader(
    source,
    *,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    augment: bool | Callable = False,
    num_epochs: int | None = None,
    max_objects: int = 8,
    drop_remainder: bool = True,
    shard_options: grain.sharding.ShardOptions | None = None,
    num_threads: int = 2,
    prefetch_buffer_size: int = 8,
    num_workers: int = 0,
):
    """Build a checkpointable iterator of padded batches.

    Args:
      source: random-access source of examples (``len`` + ``__getitem__``), e.g.
        :class:`~jaxdet.data.synthetic.SyntheticShapes` or :class:`~jaxdet.data.records.DetectionSource`.
        All images must have the same size.
      batch_size: *global* batch size ``B`` (over all processes); must be divisible by the shard count.
      seed: seeds the shuffle (reshuffled every epoch) and the per-example augmentation randomness. Same seed,
        same batches.
      shuffle: shuffle the examples (default True). With False the order is the source order.
      augment: False (none), True (:func:`~jaxdet.data.augment.make_augment` defaults: scale jitter 0.75..1.25
        and horizontal flip with probability 0.5), or a callable ``(example, rng) -> example``; a callable with
        ``uses_step = True`` is called as ``augment(example, rng, step=t)`` with the global step ``t`` of the
        example's batch. A callable that also has ``uses_stream = True`` gets ``position=g`` (the example's
        position in the global stream) and ``stream=`` (position -> un-augmented example), e.g.
        :class:`~jaxdet.data.yolo_augment.YoloAugment` drawing mosaic partners near ``g``; the stream's epochs
        are then in the order ``np.random.default_rng([seed, epoch]).permutation(n)`` (grain's shuffle
        otherwise). The rng of an example depends only on ``seed`` and its position in the global stream.
      num_epochs: passes over the data; None repeats forever. Batches may span an epoch boundary.
      max_objects: ``M``, object slots per image; an image with more objects raises ValueError.
      drop_remainder: drop the final incomplete global batch (default). With False it is completed with empty
        padding images (``image_id == -1``, all ``valid`` False), useful for evaluation.
      shard_options: ``grain.sharding.ShardOptions`` (``shard_index``/``shard_count``); default
        ``grain.sharding.ShardByJaxProcess()`` (``jax.process_index()`` of ``jax.process_count()``).
      num_threads, prefetch_buffer_size: grain ``ReadOptions`` for the prefetching threads (0 threads
        disables prefetching).
      num_workers: worker processes that build whole batches (grain ``mp_prefetch``; 0: none, all in this
        process). Batches are the same for any number of workers (each batch is a pure function of its index);
        each worker holds its own copy of ``source`` (and of its cache).

    Returns:
      A ``grain.DatasetIterator`` over batch dicts with local batch size ``L = B // shard_count``:
      ``image`` uint8 ``[L, H, W, 3]``, ``boxes`` float32 ``[L, M, 4]``, ``classes`` int32 ``[L, M]``,
      ``valid`` bool ``[L, M]``, ``polygons`` float32 ``[L, M, K, 2]``, ``image_id`` int32 ``[L]``,
      ``dropped_boxes`` int32 ``[L]`` (objects the augmentation removed from each example). It supports
      ``get_state()`` / ``set_state()`` (see the module docstring).
    """
    shard_index, shard_count = _shard_of(shard_options)
    _checks.positive_int(batch_size, "batch_size")
    if batch_size % shard_count:
        raise _checks.fail_value("batch_size", f"a positive multiple of the shard count {shard_count}", batch_size)
    if num_epochs is not None:
        _checks.positive_int(num_epochs, "num_epochs", hint="Or None for an endless loader.")
    _checks.positive_int(max_objects, "max_objects")
    n = len(source)
    if n == 0:
        raise _checks.fail_value("len(source)", "> 0 (a source with examples)", n)
    local = batch_size // shard_count

    total = _INFINITE if num_epochs is None else n * num_epochs
    if augment is True:
        augment = make_augment()
    if augment and getattr(augment, "uses_stream", False):
        # The stream (its own per-epoch permutation) gives the examples and their neighbours: grain's shuffle
        # costs 0.5 ms a lookup (index_shuffle), four lookups an image with the mosaic partners.
        stream = ShuffledStream(source, seed=seed, shuffle=shuffle)
        ds = grain.MapDataset.range(total).map(lambda g: (g, stream[g]))
        ds = ds.random_map(_with_step(augment, batch_size, stream), seed=seed)
    else:
        ds = grain.MapDataset.source(source)
        if shuffle:
            ds = ds.shuffle(seed=seed)
        ds = ds.repeat(num_epochs)  # reshuffles every epoch
        if augment and getattr(augment, "uses_step", False):
            # The position g (after shuffle and repeat) gives the step; the rng is the same as without it.
            ds = ds.map_with_index(lambda g, example: (g, example)).random_map(
                _with_step(augment, batch_size), seed=seed
            )
        elif augment:
            ds = ds.random_map(augment, seed=seed)
    global_ds = ds

    n_batches = total // batch_size if (drop_remainder or num_epochs is None) else -(-total // batch_size)
    if n_batches == 0:
        raise _checks.fail_value(
            "batch_size", f"<= the {total} examples with drop_remainder=True (no full batch)", batch_size
        )

    filler: dict = {}

    def fetch(k):
        b, j = divmod(int(k), local)
        g = b * batch_size + shard_index * local + j
        if g < total:
            ex = global_ds[g]
        else:
            if "ex" not in filler:
                first = source[0]
                filler["ex"] = empty_example(
                    np.asarray(first["image"]).shape, num_vertices=np.asarray(first["polygons"]).shape[1]
                )
            ex = filler["ex"]
        return pad_example(ex, max_objects)

    local_ds = (
        grain.MapDataset.range(n_batches * local)
        .map(fetch)
        .batch(local, drop_remainder=True, batch_fn=collate)
    )
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size)
    iter_ds = local_ds.to_iter_dataset(read)
    if num_workers:
        _checks.positive_int(num_workers, "num_workers", hint="Or 0 for no worker processes.")
        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (python -m train parses them)
            flags.FLAGS.mark_as_parsed()
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(num_workers)))
    return iter(iter_ds)
