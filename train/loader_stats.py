"""Where the input pipeline's time goes: counters the training loop logs beside the step's images/s.

The loop (``train.loop``) logs, every ``train.log_every`` steps, ``images_per_sec`` (the whole loop),
``loader_images_per_sec`` (the loader's own rate, from the time its threads spend reading and augmenting) and
``data_wait_s`` (time the loop was blocked waiting for a batch). A loader slower than the step shows as a
``loader_images_per_sec`` near ``images_per_sec`` and a growing ``data_wait_s``.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class LoaderStats:
    """Where the input pipeline's time goes, for the loop's log (thread-safe counters, reset by :meth:`take`).

    * ``produce_s``: seconds spent reading/generating and augmenting examples, summed over the loader's
      threads; ``images / produce_s * threads`` is the loader's own images/s when its threads are never idle
      (they share the cores and the GIL with the step, so it is an upper bound).
    * ``wait_s``: seconds the training loop was blocked in ``next()`` waiting for a batch (0 when the loader
      keeps ahead of the step).
    """

    def __init__(self, threads: int):
        self.threads = max(int(threads), 1)
        self._lock = threading.Lock()
        self._produce_s = self._wait_s = 0.0
        self._images = 0

    def __getstate__(self):
        # A grain worker process gets a fresh copy (what it counts stays there: with workers the loop sees
        # only its waits); the lock cannot be pickled.
        return {"threads": self.threads}

    def __setstate__(self, state):
        self.__init__(state["threads"])

    def produced(self, seconds: float, images: int = 1) -> None:
        with self._lock:
            self._produce_s += seconds
            self._images += images

    def waited(self, seconds: float) -> None:
        with self._lock:
            self._wait_s += seconds

    def timed(self, fn: Callable) -> Callable:
        """``fn`` with its calls' durations added to ``produce_s`` (one image per call); an augmentation's
        ``uses_step`` / ``uses_stream`` are kept. Picklable (for grain's worker processes) when ``fn`` is."""
        return _Timed(fn, self)

    def take(self) -> dict[str, float]:
        """``{"loader_images_per_sec", "data_wait_s"}`` since the last call (the first only with images)."""
        with self._lock:
            produce_s, wait_s, images = self._produce_s, self._wait_s, self._images
            self._produce_s = self._wait_s = 0.0
            self._images = 0
        out = {"data_wait_s": wait_s}
        if images and produce_s > 0:
            out["loader_images_per_sec"] = images * self.threads / produce_s
        return out


class _Timed:
    """:meth:`LoaderStats.timed` of ``fn``."""

    def __init__(self, fn: Callable, stats: LoaderStats):
        self.fn, self.stats = fn, stats
        self.uses_step = getattr(fn, "uses_step", False)
        self.uses_stream = getattr(fn, "uses_stream", False)

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.stats.produced(time.perf_counter() - t0)
        return out


class TimedSource:
    """A random-access source whose ``__getitem__`` time goes to a :class:`LoaderStats`."""

    def __init__(self, source, stats: LoaderStats):
        self._source, self._get = source, stats.timed(source.__getitem__)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index):
        return self._get(index)
