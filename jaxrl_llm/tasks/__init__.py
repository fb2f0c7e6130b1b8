"""Prompt sources with verifiable references, for the trainer.

Interface (what the trainer codes against):

  ``Example(prompt, answer, metadata, id)``: frozen; ``prompt`` is text or chat messages.
  ``Task``: ``name``; ``train_iter(seed)`` -> endless deterministic iterator with JSON-able
  ``get_state()`` / ``set_state(state)`` (grain underneath; a restored iterator yields exactly
  what the saved one would have); ``eval_examples(n)`` -> the held-out split, disjoint from
  training by construction (reasoning-gym: a reserved index range of the same generator;
  files: a separate eval file or a seeded hold-out removed from training); ``reward_fns``:
  the default ``(reward_fn, weight)`` pairs for ``rewards.RewardRunner``.
  ``make_task(name, **kwargs)``: ``"rg:<reasoning_gym_task>"`` (kwargs pass through to the
  reasoning-gym config; e.g. ``make_task("rg:chain_sum", min_terms=2, max_terms=2,
  min_digits=1, max_digits=1)`` gives one-digit sums for tiny models), ``"gsm8k"`` /
  ``"math"`` / ``"preference"`` (``path=``), ``"tfds:<name>"``, ``"humaneval"``; the learning
  suite's ``"suite:partial_sums"``, ``"suite:tagged_arithmetic"``, ``"suite:number_arithmetic"``,
  ``"suite:dialogue_arithmetic"``
  (``tasks.suite``), ``"suite:codegen"`` (``tasks.codegen``), and the image tasks
  ``"images:digits"`` / ``"images:count"`` (``tasks.images``; the picture is in ``metadata["image"]``),
  and the puzzles drawn as pictures ``"images:maze"`` / ``"images:arc"`` / ``"images:geometry"``
  (``tasks.puzzles``).
  ``render_prompt(example, tokenizer, system_prompt=None) -> str``.

Bad input raises ``TaskDataError`` naming the file and line, the field and record, or the
empty source, at ``make_task`` time (before training starts).
"""

import inspect
from typing import Any

from jaxrl_llm.tasks import codegen, gui, images, lock_demos, puzzles, suite
from jaxrl_llm.tasks.example import Example, TaskDataError, TrainIterator
from jaxrl_llm.tasks.procedural import reasoning_gym_score, reasoning_gym_task
from jaxrl_llm.tasks.prompt import render_prompt
from jaxrl_llm.tasks.sources import gsm8k_task, humaneval_task, math_task, preference_task, tfds_task
from jaxrl_llm.tasks.task import Task

_BUILDERS = {
    "gsm8k": gsm8k_task,
    "math": math_task,
    "humaneval": humaneval_task,
    "preference": preference_task,
    "suite:codegen": codegen.codegen_task,
    **suite.BUILDERS,
    **images.BUILDERS,
    **puzzles.BUILDERS,
    **gui.BUILDERS,
    **lock_demos.BUILDERS,
}


def make_task(name: str, **kwargs: Any) -> Task:
    """Build a task by name (see the module docstring for names and kwargs)."""
    if name.startswith("rg:"):
        return reasoning_gym_task(name[3:], **kwargs)
    if name.startswith("tfds:"):
        return tfds_task(name[5:], **kwargs)
    if name not in _BUILDERS:
        raise ValueError(f"unknown task {name!r}: expected 'rg:<name>', 'tfds:<name>' or one of {sorted(_BUILDERS)}")
    builder = _BUILDERS[name]
    params = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TaskDataError(
                f"task {name!r} takes no argument(s) {unknown} (task.kwargs; a default config's kwargs belong "
                f"to its own task: set task.kwargs={{}} when changing task.name); its arguments: {sorted(params)}"
            )
    return builder(**kwargs)


__all__ = [
    "Example",
    "Task",
    "TaskDataError",
    "TrainIterator",
    "gsm8k_task",
    "humaneval_task",
    "make_task",
    "math_task",
    "preference_task",
    "reasoning_gym_score",
    "reasoning_gym_task",
    "render_prompt",
    "tfds_task",
]
