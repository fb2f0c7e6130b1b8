"""reasoning-gym tasks: procedural, seeded prompts scored by the task's own ``score_answer``."""

import dataclasses
import functools
import json
from typing import Any

import reasoning_gym

from jaxrl_llm.rewards import extract
from jaxrl_llm.tasks.example import Example, TaskDataError
from jaxrl_llm.tasks.task import Task

ANSWER_FORMATS = ("auto", "tags", "boxed", "raw")


@functools.lru_cache(maxsize=32)
def _dataset(name: str, config_json: str):
    return reasoning_gym.create_dataset(name, **json.loads(config_json))


def extract_for_scoring(completion: str, answer_format: str) -> str | None:
    """The answer string handed to reasoning-gym's scorer: ``tags`` -> ``<answer>`` content,
    ``boxed`` -> last ``\\boxed{}``, ``raw`` -> the stripped completion, ``auto`` -> tags, else
    boxed, else raw (so a tiny model trained to emit only the answer is scored too)."""
    if answer_format == "tags":
        return extract.answer_tag(completion)
    if answer_format == "boxed":
        return extract.last_boxed(completion)
    if answer_format == "raw":
        return completion.strip()
    found = extract.final_answer(completion)
    return found if found is not None else completion.strip()


def reasoning_gym_answer(completion: str, example: Example) -> str | None:
    """The answer string ``reasoning_gym_score`` hands to the scorer (the task's ``answer_fn``)."""
    return extract_for_scoring(completion, example.metadata["answer_format"])


def reasoning_gym_score(completion: str, example: Example) -> float:
    """reasoning-gym's ``dataset.score_answer(answer, entry)`` on the extracted answer (see
    ``extract_for_scoring``), in [0, 1]. The dataset is rebuilt from ``example.metadata``
    (name + config), once per process."""
    meta = example.metadata
    dataset = _dataset(meta["rg_dataset"], meta["rg_config"])
    answer = reasoning_gym_answer(completion, example)
    return float(dataset.score_answer(answer, meta["entry"]))


@dataclasses.dataclass(frozen=True)
class _EntryAt:
    name: str
    config_json: str
    offset: int
    answer_format: str
    split: str

    def __call__(self, i: int) -> Example:
        idx = self.offset + int(i)
        entry = _dataset(self.name, self.config_json)[idx]
        return Example(
            prompt=[{"role": "user", "content": entry["question"]}],
            answer=str(entry["answer"]) if entry["answer"] is not None else None,
            metadata={
                "rg_dataset": self.name,
                "rg_config": self.config_json,
                "entry": entry,
                "answer_format": self.answer_format,
            },
            id=f"rg:{self.name}/{self.split}/{idx}",
        )


def reasoning_gym_task(
    name: str,
    seed: int = 0,
    size: int = 100_000,
    num_eval: int = 1000,
    answer_format: str = "auto",
    **config: Any,
) -> Task:
    """``rg:<name>``: any reasoning-gym dataset, e.g. ``reasoning_gym_task("chain_sum",
    min_terms=2, max_terms=2, min_digits=1, max_digits=1)`` for short prompts and answers.

    One reasoning-gym dataset is built with ``seed``, ``size`` and ``config`` (passed through
    to the dataset's config class). Its items are pure functions of their index. Indices
    ``[0, num_eval)`` are the held-out split; indices ``[num_eval, size)`` are training, so no
    generator index is shared (two indices can still render the same question when the
    task's problem space is small). ``train_iter(s)`` shuffles the training indices with
    ``s`` and reshuffles every epoch. The default reward is ``reasoning_gym_score``.
    """
    if answer_format not in ANSWER_FORMATS:
        raise TaskDataError(f"rg:{name}: answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if not 0 <= num_eval < size:
        raise TaskDataError(f"rg:{name}: need 0 <= num_eval < size, got num_eval={num_eval}, size={size}")
    cfg = {"seed": seed, "size": size, **config}
    try:
        config_json = json.dumps(cfg, sort_keys=True)
        _dataset(name, config_json)
    except (ValueError, TypeError, AssertionError) as e:
        raise TaskDataError(f"rg:{name}: cannot build reasoning-gym dataset with {cfg}: {e}") from e
    return Task(
        name=f"rg:{name}",
        num_train=size - num_eval,
        train_example=_EntryAt(name, config_json, num_eval, answer_format, "train"),
        num_eval=num_eval,
        eval_example=_EntryAt(name, config_json, 0, answer_format, "eval"),
        reward_fns=((reasoning_gym_score, 1.0),),
        answer_fn=reasoning_gym_answer,
    )
