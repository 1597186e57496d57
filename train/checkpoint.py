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
``<directory>.damaged/<step>`` (never deleting it) and restores the newest one that can be read. A checkpoint
that is readable but does not fit the run's state (another model: its arrays' shapes and dtypes differ) is not
damage: it raises :class:`CheckpointMismatchError` and stays where it is. (``train.workdir`` normally stops such
a run earlier, from ``config.json``.) After a failed restore, orbax's abandoned coroutines would print
"Exception ignored in coroutine" tracebacks when collected; those are dropped (:func:`_quiet_abandoned_coroutines`),
the failure itself is reported in one line.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import sys
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


class CheckpointMismatchError(ValueError):
    """A readable checkpoint whose state does not fit the run's (another model, head or optimizer)."""


def _quiet_abandoned_coroutines() -> None:
    """Drops the "Exception ignored in coroutine" reports of orbax/TensorStore coroutines abandoned by a failed
    restore (from now until exit); every other unraisable exception still goes to the previous hook."""
    previous = sys.unraisablehook
    if getattr(previous, "_jaxdet_quiet", False):
        return

    def hook(unraisable):
        if type(unraisable.object).__name__ == "coroutine" or "coroutine" in str(unraisable.err_msg or ""):
            return
        previous(unraisable)

    hook._jaxdet_quiet = True
    sys.unraisablehook = hook


def _signature(tree: Any) -> collections.Counter:
    """The multiset of ``(shape, dtype)`` of a pytree's arrays (ShapeDtypeStructs or orbax ArrayMetadata)."""
    return collections.Counter(
        (tuple(int(d) for d in x.shape), str(x.dtype)) for x in jax.tree.leaves(tree) if hasattr(x, "shape")
    )


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
            self._raise_if_mismatch(step, abstract_state)  # before restoring: a failed restore leaves reads running
            try:
                state, meta = self.restore(step, abstract_state)
            except Exception as err:  # orbax raises many kinds (ValueError, OSError, KeyError, ...)
                _quiet_abandoned_coroutines()
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

    def _raise_if_mismatch(self, step: int, abstract_state: Any) -> None:
        """Raises :class:`CheckpointMismatchError` when checkpoint ``step`` can be read (its metadata) but its
        arrays differ from ``abstract_state``'s; returns when it cannot be read (damage, found by the restore) or
        fits. Checked before the restore: a restore that fails on a shape leaves TensorStore reads in flight,
        whose callbacks print "Event loop is closed" tracebacks when the process exits."""
        state_dir = os.path.join(self.directory, str(step), "state")
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)  # "Metadata file does not exist" warnings
        try:
            saved = ocp.StandardCheckpointer().metadata(state_dir).item_metadata
            saved = getattr(saved, "tree", saved)
            have = _signature(saved)
        except Exception:  # unreadable: damage
            return
        finally:
            absl_logger.setLevel(level)
        want = _signature(abstract_state)
        if not have or have == want:
            return
        only_saved, only_run = have - want, want - have
        example = ""
        if only_saved and only_run:
            (saved_shape, saved_dtype), (run_shape, run_dtype) = min(only_saved), min(only_run)
            example = (f"; e.g. the checkpoint has {saved_dtype}{list(saved_shape)}, this config "
                       f"{run_dtype}{list(run_shape)}")
        raise CheckpointMismatchError(
            f"checkpoint {os.path.join(self.directory, str(step))} is readable but holds another model's state "
            f"({sum(have.values())} arrays, {sum(only_saved.values())} of them with shapes this config does not "
            f"have; this config's state has {sum(want.values())}, {sum(only_run.values())} not in the checkpoint"
            f"{example}). It was left in place; pass another --workdir, or --config.train.resume=False to move the "
            "previous run aside and start over"
        )

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
