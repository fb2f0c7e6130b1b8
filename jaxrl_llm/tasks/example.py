"""The unit a task yields: one prompt with its reference answer, and the task iterator contract."""

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Sequence

import grain

ChatMessages = Sequence[Mapping[str, str]]


class TaskDataError(ValueError):
    """Bad task input: malformed file line, missing field, empty source, bad iterator state."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One prompt with its reference.

    Attributes:
      prompt: raw text, or chat messages ``[{"role": ..., "content": ...}, ...]`` that
        ``render_prompt`` turns into text with the tokenizer's chat template.
      answer: the reference answer a verifier compares against (``None`` when the task has
        none, e.g. code tasks that are checked by tests, kept in ``metadata``).
      metadata: whatever the task's reward functions need (the reasoning-gym entry and config,
        HumanEval's tests and entry point, a preference pair's ``chosen``/``rejected``).
      id: stable identifier, unique within a task and split.
    """

    prompt: str | ChatMessages
    answer: str | None
    metadata: Mapping[str, Any]
    id: str


class TrainIterator(Iterator[Example]):
    """Endless, deterministic iterator over a task's training examples.

    ``get_state()`` returns a JSON-serializable dict; ``set_state(state)`` on an iterator made
    by the same task and seed resumes exactly: the next examples are the ones the saved
    iterator would have yielded. The engine is a grain ``DatasetIterator`` over
    ``MapDataset.range(n).shuffle(seed).repeat(None).map(example_at)``, so epoch ``e`` is a
    fresh permutation and the position is a single integer.
    """

    def __init__(self, task_name: str, seed: int, num_train: int, example_at: Callable[[int], Example]):
        self._task_name = task_name
        self._seed = int(seed)
        dataset = grain.MapDataset.range(num_train).shuffle(seed=self._seed).repeat(None).map(example_at)
        self._it = iter(dataset.to_iter_dataset())

    def __next__(self) -> Example:
        return next(self._it)

    def get_state(self) -> dict[str, Any]:
        return {"task": self._task_name, "seed": self._seed, "grain": self._it.get_state()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        for key in ("task", "seed", "grain"):
            if key not in state:
                raise TaskDataError(f"iterator state for task {self._task_name!r} lacks key {key!r}: {state!r}")
        if state["task"] != self._task_name or state["seed"] != self._seed:
            raise TaskDataError(
                f"iterator state was saved for task {state['task']!r} seed {state['seed']}, "
                f"cannot restore into task {self._task_name!r} seed {self._seed}"
            )
        self._it.set_state(dict(state["grain"]))
