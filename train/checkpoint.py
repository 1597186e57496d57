"""Checkpoints with orbax ``CheckpointManager``.

Each checkpoint step directory holds two items:

  ``state``  the train state pytree (step, params, model state, optimizer state, loss state, gradient
             accumulator and model EMA when the recipe has them; ``train.step``) via ``StandardSave``;
             restored with ``StandardRestore`` onto the *current* mesh, so a checkpoint written on 8
             devices continues on 4 (or on another process layout).
  ``meta``   JSON (``JsonSave``): the data-iterator position, the config and run metadata.

Orbax writes into a temporary directory and renames it when complete, so a run killed mid-save leaves
the previous checkpoint as the latest one. A checkpoint damaged later (a truncated or deleted file, a full
disk) is not fatal: :meth:`Checkpointer.restore_latest` warns, moves it aside to
``<directory>.damaged/<step>`` (never deleting it) and restores the newest one that can be read.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


class Checkpointer:
    """Save every N steps / at the end, keep the last ``keep``, restore the latest."""

    def __init__(self, directory: str, *, keep: int = 3):
        directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(keep) if keep else None,
            create=True,
            enable_async_checkpointing=False,
        )
        self.directory = directory
        self.manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        if step in self.manager.all_steps():
            return
        self.manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Restores ``step`` onto the shardings carried by ``abstract_state`` (ShapeDtypeStructs)."""
        restored = self.manager.restore(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()),
        )
        return restored["state"], restored["meta"]

    def restore_latest(self, abstract_state: Any, *, log: Callable[[str], None] = print):
        """``(step, state, meta)`` of the newest checkpoint that restores, or None if there is none.

        A checkpoint that fails to restore is reported with ``log`` (naming it and the error) and moved to
        ``<directory>.damaged/<step>-<time>``, so later saves at that step are not blocked and nothing is deleted.
        """
        for step in sorted(self.all_steps(), reverse=True):
            try:
                state, meta = self.restore(step, abstract_state)
            except Exception as err:  # orbax raises many kinds (ValueError, OSError, KeyError, ...)

                path = os.path.join(self.directory, str(step))
                aside = os.path.join(self.directory + ".damaged", f"{step}-{int(time.time())}")
                if jax.process_index() == 0:
                    os.makedirs(os.path.dirname(aside), exist_ok=True)
                    shutil.move(path, aside)
                if jax.process_count() > 1:
                    multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
                self.manager.reload()
                log(f"warning: checkpoint {path} cannot be restored ({type(err).__name__}: {str(err)[:300]}); "
                    f"moved it to {aside} and trying the previous one")
                continue
            return step, state, meta
        return None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
