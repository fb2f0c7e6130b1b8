"""One Orbax checkpoint per saved step: arrays + JSON metadata, async, with fallback on corruption.

Layout under ``<run_dir>/checkpoints/<step>/``:

  ``state``  every array of the run (params, optimizer state, algorithm state, RNG key data,
             reference params when the KL weight is nonzero), saved with ``StandardSave`` so
             sharded arrays are written by the processes that hold them;
  ``meta``   JSON: step, phase, data-iterator position, config, anything else the loop needs
             to resume exactly.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves no half-written step in ``all_steps()``. A step that is complete on disk but
unreadable (files truncated or deleted afterwards) is skipped with a warning and the previous
step is restored instead.
"""

from __future__ import annotations

import logging
import pathlib
import warnings
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


def abstract_like(tree: Any) -> Any:
    """``ShapeDtypeStruct`` targets (keeping shardings) for restoring onto ``tree``'s layout."""

    def one(x):
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(one, tree)


class Checkpointer:
    """A thin wrapper of ``ocp.CheckpointManager`` for one run directory.

    Args:
      directory: where step directories go (created if missing).
      max_to_keep: older steps are deleted once this many exist.
      async_save: return from ``save`` as soon as device arrays are copied to host; the write
        happens in a background thread (``wait()`` blocks until it is durable).
    """

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "meta"))

    def all_steps(self) -> list[int]:
        """Completed steps, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, meta: Mapping[str, Any], wait: bool = False) -> None:
        """Saves ``state`` (a pytree of arrays) and ``meta`` (JSON-serializable) as ``step``.

        Overwrites nothing: saving a step that exists is a no-op with a warning.
        """
        if step in self._manager.all_steps():
            warnings.warn(f"checkpoint step {step} already exists in {self.directory}; not saved again")
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))),
            force=True,
        )
        if wait:
            self._manager.wait_until_finished()

    def restore(self, target: Any, step: int | None = None) -> tuple[int, Any, dict[str, Any]] | None:
        """Restores the newest readable step (or ``step``) onto ``target``'s structure/shardings.

        ``target`` is a pytree of arrays, or a callable ``meta -> pytree`` when the layout depends
        on what the checkpoint holds (its metadata is read first). Returns ``(step, state, meta)``, or ``None`` when no checkpoint exists. A corrupt step is
        reported with a ``UserWarning`` naming it and the reason, then the previous one is tried.
        """
        self.wait()
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise FileNotFoundError(f"no checkpoint step {step} in {self.directory}; have {steps}")
            steps = [step]
        for s in reversed(steps):
            try:
                if callable(target):
                    meta = self._manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
                    abstract = abstract_like(target(meta))
                else:
                    abstract = abstract_like(target)
                restored = self._manager.restore(
                    s,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
                )
            except Exception as e:  # noqa: BLE001 — any read failure means this step is unusable
                warnings.warn(
                    f"checkpoint step {s} in {self.directory} is unreadable ({type(e).__name__}: "
                    f"{str(e)[:300]}); falling back to the previous checkpoint")
                continue
            meta = restored["meta"]
            if not isinstance(meta, dict) or meta.get("step") != s:
                warnings.warn(f"checkpoint step {s} in {self.directory} has bad metadata; "
                              "falling back to the previous checkpoint")
                continue
            return s, restored["state"], meta
        if steps:
            warnings.warn(f"no readable checkpoint among steps {steps} in {self.directory}; starting fresh")
        return None

    def wait(self) -> None:
        """Blocks until any async save is durable on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
