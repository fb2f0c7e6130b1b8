"""The unit a task yields (``Example``, defined in ``jaxrl_llm.types``) and the task iterator contract."""

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grain

from jaxrl_llm.types import ChatMessages, Example

__all__ = ["ChatMessages", "Example", "TaskDataError", "TrainIterator"]


class TaskDataError(ValueError):
    """Bad task input: malformed file line, missing field, empty source, bad iterator state."""


class TrainIterator(Iterator[Example]):
    """Endless, deterministic iterator over a task's training examples.

    ``get_state()`` returns a JSON-serializable dict; ``set_state(state)`` on an iterator made
    by the same task and seed resumes exactly: the next examples are the ones the saved
    iterator would have yielded. The engine is a grain ``DatasetIterator`` over
    ``MapDataset.range(n).shuffle(seed).repeat(None).map(example_at)``, so epoch ``e`` is a
    fresh permutation and the position is a single integer. ``next_indexed()`` also gives the
    training-example index of what it yields (a per-prompt state is keyed by it).
    """

    def __init__(self, task_name: str, seed: int, num_train: int, example_at: Callable[[int], Example]):
        self._task_name = task_name
        self._seed = int(seed)
        dataset = grain.MapDataset.range(num_train).shuffle(seed=self._seed).repeat(None).map(_Indexed(example_at))
        self._it = iter(dataset.to_iter_dataset())

    def __next__(self) -> Example:
        return next(self._it)[1]

    def next_indexed(self) -> tuple[int, Example]:
        """The next training example and its index in ``[0, num_train)``."""
        index, example = next(self._it)
        return int(index), example

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


@dataclasses.dataclass(frozen=True)
class _Indexed:
    """Picklable ``i -> (i, example_at(i))``."""

    example_at: Callable[[int], Example]

    def __call__(self, i: int) -> tuple[int, Example]:
        return int(i), self.example_at(int(i))
