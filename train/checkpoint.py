"""Checkpoints with orbax ``CheckpointManager``.

Each checkpoint step directory holds two items:

  ``state``  the train state pytree (step, params, optimizer state, RNG, ...) via ``StandardSave``;
             restored with ``StandardRestore`` onto the *current* mesh, so a checkpoint written on 8
             devices continues on 4 (or on another process layout).
  ``meta``   JSON (``JsonSave``): the data-iterator position, the config and run metadata.

Orbax writes into a temporary directory and renames it when complete, so a run killed mid-save leaves
the previous checkpoint as the latest one.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp


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

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
