"""One Orbax checkpoint per saved step: arrays + JSON metadata, async, with fallback on corruption.

Layout under ``<run_dir>/checkpoints/<step>/``:

  ``state``  every array of the run (params, optimizer state, algorithm state, RNG key data,
             reference params when the KL weight is nonzero), saved with ``StandardSave`` so
             sharded arrays are written by the processes that hold them;
  ``meta``   JSON: step, phase, data-iterator position, config, anything else the loop needs
             to resume exactly.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves no half-written step in ``all_steps()``. A step that is complete on disk but
unreadable (files truncated or deleted afterwards) while an older step restores is moved aside to
``<run_dir>/checkpoints/corrupt-<step>-<UTC time>/`` (kept for inspection; Orbax does not take it
for a step), with a one-line warning, and the older step is restored: the run then saves that
step number again when it gets there, so its last state is on disk. When no step restores,
``restore`` raises ``UnreadableCheckpointError`` and moves nothing: that is as likely a restore
target that does not match the checkpoints as corrupt files, and starting fresh would mix runs.
"""

from __future__ import annotations

import pathlib
import time
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxrl_llm import errors

CORRUPT_PREFIX = "corrupt-"


class UnreadableCheckpointError(errors.UserError):
    """Checkpoint steps exist in a directory but none of them restores."""


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
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

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
        on what the checkpoint holds (its metadata is read first). Returns ``(step, state, meta)``,
        or ``None`` when the directory holds no step.

        Newest first, a step that fails to restore (or whose metadata names another step) is
        passed over for the previous one. Once an older step restores, each newer step that failed
        is moved aside to ``corrupt-<step>-<UTC time>`` in this directory (by process 0; every
        process waits for it) with a ``UserWarning`` naming the new path and the reason, so that
        saving that step number again writes the run's new state instead of being refused.
        Raises ``UnreadableCheckpointError`` (moving nothing) when steps exist and none restores,
        or when the requested ``step`` does not restore; ``FileNotFoundError`` when ``step`` is
        not among the saved steps.
        """
        self.wait()
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise FileNotFoundError(f"no checkpoint step {step} in {self.directory}; have {steps}")
            steps = [step]
        failed: list[tuple[int, str]] = []
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
                failed.append((s, f"{type(e).__name__}: {_one_line(str(e))}"))
                continue
            meta = restored["meta"]
            if not isinstance(meta, dict) or meta.get("step") != s:
                failed.append((s, f"its metadata names step {meta.get('step') if isinstance(meta, dict) else meta!r}"))
                continue
            if failed:
                self._move_aside(failed, restored_step=s)
            return s, restored["state"], meta
        if not steps:
            return None
        reasons = "; ".join(f"step {s}: {why}" for s, why in failed)
        raise UnreadableCheckpointError(
            f"no checkpoint in {self.directory} restores (steps {steps}; {reasons}); if they are corrupt, "
            f"move them out of the way to start this run again, or start a new run in another directory"
        )

    def _move_aside(self, failed: list[tuple[int, str]], restored_step: int) -> None:
        """Renames each failed step's directory to ``corrupt-<step>-<UTC time>`` (process 0), warns."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for s, why in failed:
            src = self.directory / str(s)
            dst = self.directory / f"{CORRUPT_PREFIX}{s}-{stamp}"
            n = 1
            while dst.exists():
                n += 1
                dst = self.directory / f"{CORRUPT_PREFIX}{s}-{stamp}-{n}"
            if jax.process_index() == 0:
                try:
                    src.rename(dst)
                except OSError as e:
                    warnings.warn(
                        f"checkpoint step {s} in {self.directory} is unreadable ({why}) and could not "
                        f"be moved aside ({e}); falling back to step {restored_step}",
                        stacklevel=3,
                    )
                    continue
            warnings.warn(
                f"checkpoint step {s} in {self.directory} is unreadable ({why}); moved it to {dst} "
                f"and falling back to step {restored_step}",
                stacklevel=3,
            )
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("jaxrl_llm.checkpoint.move_aside")
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until any async save is durable on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
