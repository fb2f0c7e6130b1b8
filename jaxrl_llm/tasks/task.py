"""``Task``: a named prompt source with a training stream, a held-out split and default rewards."""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxrl_llm.rewards import extract
from jaxrl_llm.tasks.example import Example, TaskDataError, TrainIterator

RewardFn = Callable[[str, Example], float]


@dataclasses.dataclass(frozen=True)
class Task:
    """A prompt source the trainer consumes.

    ``train_example(i)`` for ``i`` in ``[0, num_train)`` and ``eval_example(j)`` for ``j`` in
    ``[0, num_eval)`` are pure functions of the index; every source builds them over index sets
    that are disjoint by construction (each source's docstring says how), so the held-out split
    never reaches training.

    Attributes:
      name: the ``make_task`` name (``"rg:chain_sum"``, ``"gsm8k"``, ...).
      num_train: number of distinct training examples; must be positive.
      train_example: index -> ``Example`` (picklable callable).
      num_eval: number of held-out examples available (0 when the source has none).
      eval_example: index -> held-out ``Example``.
      reward_fns: the task's default ``(reward_fn, weight)`` pairs, ready for
        ``rewards.RewardRunner``; empty for sources without a verifier (preference pairs).
      answer_fn: ``(completion, example) -> answer str | None``, the answer the task's reward
        reads (default ``rewards.extract.auto_answer``); rollout kinds build answer classes from it
        for methods that ask for ``answer_ids`` (COPO), so methods never parse text themselves.
      correct_fn: ``(completion, example) -> bool``, what held-out evaluation counts as correct
        when the training reward is not a yes/no (AEPO's multi-point reward pays for any point in
        the box; ``images:gui`` counts the FIRST point); None: reward >= ``eval.correct_threshold``.
      eval_splits: ``(metadata key, name if true, name if false)`` triples: evaluation also reports
        greedy accuracy over the examples whose boolean ``metadata[key]`` is true / false, as
        ``eval/accuracy/<name>`` (``images:*``: ``needs_image`` / ``text_answerable``).
    """

    name: str
    num_train: int
    train_example: Callable[[int], Example]
    num_eval: int
    eval_example: Callable[[int], Example]
    reward_fns: tuple[tuple[RewardFn, float], ...] = ()
    answer_fn: Callable[[str, Example], str | None] = extract.auto_answer
    correct_fn: Callable[[str, Example], bool] | None = None
    eval_splits: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self):
        if self.num_train <= 0:
            raise TaskDataError(f"task {self.name!r} has no training examples (num_train={self.num_train})")
        if self.num_eval < 0:
            raise TaskDataError(f"task {self.name!r}: num_eval must be >= 0, got {self.num_eval}")

    def train_iter(self, seed: int = 0) -> TrainIterator:
        """Endless training stream: epoch ``e`` visits all ``num_train`` examples in a permutation
        drawn from ``(seed, e)``; resumable with ``get_state()`` / ``set_state()``."""
        return TrainIterator(self.name, seed, self.num_train, self.train_example)

    def eval_examples(self, n: int | None = None) -> list[Example]:
        """The first ``n`` held-out examples (all of them when ``n`` is None), in a fixed order."""
        n = self.num_eval if n is None else n
        if n > self.num_eval:
            raise TaskDataError(f"task {self.name!r} holds out {self.num_eval} eval examples, {n} requested")
        return [self.eval_example(j) for j in range(n)]


@dataclasses.dataclass(frozen=True)
class RecordExamples:
    """Picklable index -> ``Example`` over a list of records and a record converter."""

    records: Sequence[Any]
    indices: np.ndarray
    convert: Callable[[Any], Example]

    def __call__(self, i: int) -> Example:
        return self.convert(self.records[int(self.indices[int(i)])])


def split_records(
    name: str,
    train_records: Sequence[Any],
    eval_records: Sequence[Any] | None,
    convert: Callable[[Any], Example],
    num_eval: int,
    split_seed: int,
    reward_fns: tuple[tuple[RewardFn, float], ...],
) -> Task:
    """Task over finite records.

    With ``eval_records`` (a separate test file), eval is that file and training is all of
    ``train_records``. Without, ``num_eval`` records chosen by a permutation seeded with
    ``split_seed`` are held out and training gets the rest: the index sets are complementary,
    so they never overlap.
    """
    if not train_records:
        raise TaskDataError(f"task {name!r}: the training source is empty")
    if eval_records is not None:
        train_idx = np.arange(len(train_records))
        eval_idx = np.arange(len(eval_records))
        eval_source = eval_records
    else:
        if not 0 <= num_eval < len(train_records):
            raise TaskDataError(
                f"task {name!r}: num_eval={num_eval} must be in [0, {len(train_records)}) so that "
                f"training keeps at least one of the {len(train_records)} records"
            )
        perm = np.random.default_rng(split_seed).permutation(len(train_records))
        eval_idx, train_idx = np.sort(perm[:num_eval]), np.sort(perm[num_eval:])
        eval_source = train_records
    return Task(
        name=name,
        num_train=len(train_idx),
        train_example=RecordExamples(train_records, train_idx, convert),
        num_eval=len(eval_idx),
        eval_example=RecordExamples(eval_source, eval_idx, convert),
        reward_fns=reward_fns,
    )
