"""JAX's persistent compilation cache, shared by ``python -m train``, ``train.predict`` and ``train.experiments``.

A run compiles its train step once per machine: later runs of the same config (another workdir, a resume, another
seed) read the executable from ``$JAXDET_CACHE_DIR/xla`` (else ``~/.cache/jaxdet/xla``, the root of
:func:`jaxdet.data.label_cache.default_cache_dir`). ``--config.compile_cache=False`` turns it off for a run.
:class:`CacheHits` counts the cache's hits while a compile runs (``jax.monitoring``'s
``/jax/compilation_cache/cache_hits`` events), so that the loop can say when the step came from the cache.
"""

from __future__ import annotations

import os

import jax
from jax import monitoring

from jaxdet.data.label_cache import default_cache_dir

#: compiles shorter than this are not written to the cache (the train and eval steps take seconds to minutes).
MIN_COMPILE_TIME_S = 1.0
_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_RETRIEVAL_EVENT = "/jax/compilation_cache/cache_retrieval_time_sec"


def default_dir() -> str:
    """``$JAXDET_CACHE_DIR/xla``, else ``$XDG_CACHE_HOME/jaxdet/xla``, else ``~/.cache/jaxdet/xla``."""
    return str(default_cache_dir() / "xla")


def enable(path: str | None = None, *, min_compile_time_s: float | None = None) -> str:
    """Turns on JAX's persistent compilation cache in ``path`` (default :func:`default_dir`), creating it; returns
    its absolute path. Call it before the first compile: a compile before it is not cached.

    ``min_compile_time_s``: compiles shorter than this are not cached; default JAX's own variable
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` when set, else :data:`MIN_COMPILE_TIME_S`."""
    if min_compile_time_s is None:
        min_compile_time_s = float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", MIN_COMPILE_TIME_S))
    path = os.path.abspath(os.path.expanduser(path or default_dir()))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def enable_for(config) -> str | None:
    """:func:`enable` unless ``config.compile_cache`` is False (a config without the field uses the cache);
    returns the directory, or None when the config turns the cache off."""
    if not bool(config.get("compile_cache", True)):
        return None
    return enable()


def current_dir() -> str | None:
    """The directory JAX caches compiles in now (None when the persistent cache is off)."""
    return jax.config.jax_compilation_cache_dir or None


class CacheHits:
    """Counts the persistent cache's hits inside a ``with`` block::

        with CacheHits() as hits:
            compiled = step.lower(...).compile()
        if hits.count: ...
    """

    def __init__(self) -> None:
        self.count = 0
        self.retrieval_s = 0.0  # reading and loading the cached executables

    def _on_event(self, event: str, **_: object) -> None:
        if event == _HIT_EVENT:
            self.count += 1

    def _on_duration(self, event: str, duration_secs: float, **_: object) -> None:
        if event == _RETRIEVAL_EVENT:
            self.retrieval_s += duration_secs

    def __enter__(self) -> CacheHits:
        monitoring.register_event_listener(self._on_event)
        monitoring.register_event_duration_secs_listener(self._on_duration)
        return self

    def __exit__(self, *exc: object) -> None:
        monitoring.unregister_event_listener(self._on_event)
        monitoring.unregister_event_duration_listener(self._on_duration)
