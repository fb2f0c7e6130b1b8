"""Tasks of the learning suite built on reasoning-gym generators: a scratchpad of partial sums,
answer tags with a format reward, and last-number arithmetic for a pretrained chat model.

Each builder takes the reasoning-gym config of its generator (passed through, as for
``rg:<name>``) plus:

  ``demonstrations``: when True, every ``Example.answer`` is the task's worked demonstration
    instead of its reference answer, so the trainer's SFT warm start (``sft.template="{answer}"``)
    learns the full completion: the scratchpad, the tags. Use it for the SFT stage only; the RL
    stage builds the same task with ``demonstrations=False``. The demonstration is also in
    ``metadata["demonstration"]`` either way, and reasoning-gym's scorer reads
    ``metadata["entry"]``, so the rewards stay right in both modes.

The held-out split is reasoning-gym's: indices ``[0, num_eval)`` of the generator (see
``tasks.procedural.reasoning_gym_task``).

Names (``make_task``): ``suite:partial_sums``, ``suite:tagged_arithmetic``,
``suite:number_arithmetic``, ``suite:dialogue_arithmetic``.

References: the generators and scorers are reasoning-gym's (Stojanovski et al., 2025, "Reasoning
Gym: Reasoning Environments for Reinforcement Learning with Verifiable Rewards",
https://arxiv.org/abs/2505.24760, https://github.com/open-thought/reasoning-gym). The partial-sum
scratchpad follows Nye et al., 2021, "Show Your Work: Scratchpads for Intermediate Computation
with Language Models" (https://arxiv.org/abs/2112.00114); the answer-tag format reward is
DeepSeek-R1's (Guo et al., 2025, https://arxiv.org/abs/2501.12948, section 2.2.2).
"""

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxrl_llm.rewards import extract
from jaxrl_llm.rewards import format as format_rewards
from jaxrl_llm.tasks.dialogue import demonstration as dialogue_demonstration
from jaxrl_llm.tasks.example import Example, TaskDataError
from jaxrl_llm.tasks.procedural import reasoning_gym_score, reasoning_gym_task
from jaxrl_llm.tasks.task import Task

_TERM = re.compile(r"([+-])\s*(\d+)")
# One scratchpad line: "<running total> <+|-> <term> = <new total>".
_STEP = re.compile(r"^\s*(-?\d+)\s*([+-])\s*(\d+)\s*=\s*(-?\d+)\s*$")


def expression_terms(expression: str) -> list[int]:
    """Signed terms of a chain-sum expression: ``"15 - 43 + 6"`` -> ``[15, -43, 6]``."""
    expression = expression.strip()
    head = re.match(r"-?\d+", expression)
    if head is None:
        raise TaskDataError(f"chain-sum expression {expression!r} does not start with a number")
    terms = [int(head.group(0))]
    rest = expression[head.end() :]
    for sign, digits in _TERM.findall(rest):
        terms.append(int(digits) if sign == "+" else -int(digits))
    if re.sub(r"[+-]\s*\d+|\s", "", rest):
        raise TaskDataError(f"chain-sum expression {expression!r} holds something other than +/- terms")
    return terms


def partial_sums(terms: list[int]) -> list[str]:
    """The scratchpad lines of a chain sum, one per operation: ``[4, 7, -2]`` ->
    ``["4 + 7 = 11", "11 - 2 = 9"]``."""
    lines, total = [], terms[0]
    for t in terms[1:]:
        new = total + t
        lines.append(f"{total} {'+' if t >= 0 else '-'} {abs(t)} = {new}")
        total = new
    return lines


def partial_sums_demonstration(expression: str) -> str:
    """The worked completion: one partial sum a line, then ``<answer>total</answer>``."""
    terms = expression_terms(expression)
    return "\n".join([*partial_sums(terms), f"<answer>{sum(terms)}</answer>"])


def scratchpad_valid(completion: str, example: Example) -> float:
    """The fraction of the expected scratchpad steps that the completion writes correctly.

    Step ``k`` is correct when line ``k`` before the ``<answer>`` tag reads ``a +/- b = c``
    with ``a`` the previous line's ``c`` (the first term for ``k = 0``), ``b`` the next term of
    the expression with its sign, and ``c = a +/- b``. Extra lines count against the score:
    ``score = correct / max(expected, written)``. A process check, logged beside the
    final-answer reward; whether it is rewarded is the task's ``scratchpad_weight``.
    """
    terms = expression_terms(example.metadata["entry"]["metadata"]["expression"])
    body = completion.split("<answer>", 1)[0]
    lines = [line for line in body.splitlines() if line.strip()]
    expected = len(terms) - 1
    total, correct = terms[0], 0
    for k, line in enumerate(lines[:expected]):
        m = _STEP.match(line)
        if m is None:
            break
        a, sign, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        term = b if sign == "+" else -b
        if a != total or term != terms[k + 1] or c != a + term:
            break
        total, correct = c, correct + 1
    return correct / max(expected, len(lines), 1)


def answer_correct(completion: str, example: Example) -> bool:
    """What held-out evaluation counts as correct on the chain-sum tasks (``Task.correct_fn``):
    the final answer alone, ``reasoning_gym_score == 1``, whatever the weights of the shaping
    rewards beside it (a valid scratchpad or a tag with a wrong total is not a right answer)."""
    return reasoning_gym_score(completion, example) >= 1.0


def number_equals(completion: str, example: Example) -> float:
    """1.0 when the last number in the completion equals the reference answer numerically
    (``extract.last_number``; ``a/b`` fractions and decimals compared as floats), else 0.0.
    A lenient parser for small chat models that answer in a sentence ("7 + 5 = 12.")."""
    if example.answer is None:
        raise ValueError(f"number_equals: example {example.id!r} has no reference answer")
    found = extract.last_number(completion)
    if found is None:
        return 0.0
    return float(
        math.isclose(
            _as_float(found), _as_float(example.metadata.get("reference", example.answer)), rel_tol=0.0, abs_tol=1e-9
        )
    )


def _as_float(text: str) -> float:
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den) if float(den) else math.nan
    return float(text)


@dataclasses.dataclass(frozen=True)
class _WithDemonstration:
    """index -> ``Example`` with ``metadata["demonstration"]`` (and, when ``as_answer``, the
    demonstration as ``answer``). Picklable: the callables are top-level or frozen dataclasses."""

    inner: Callable[[int], Example]
    demonstration: Callable[[Example, int], str]
    as_answer: bool
    prompt_suffix: str = ""

    def __call__(self, i: int) -> Example:
        ex = self.inner(i)
        demo = self.demonstration(ex, int(i))
        prompt = ex.prompt
        if self.prompt_suffix:
            prompt = [
                {**m, "content": m["content"] + self.prompt_suffix} if m["role"] == "user" else dict(m) for m in prompt
            ]
        meta = {**ex.metadata, "demonstration": demo, "reference": ex.answer}
        return dataclasses.replace(ex, prompt=prompt, metadata=meta, answer=demo if self.as_answer else ex.answer)


def _expression_demo(example: Example, i: int) -> str:
    return partial_sums_demonstration(example.metadata["entry"]["metadata"]["expression"])


@dataclasses.dataclass(frozen=True)
class _TaggedDemo:
    """``<answer>{answer}</answer>`` for a seeded fraction ``tag_rate`` of the examples, the bare
    answer for the rest (so the SFT start follows the format only part of the time)."""

    tag_rate: float
    seed: int

    def __call__(self, example: Example, i: int) -> str:
        split = 0 if "/eval/" in example.id else 1
        tagged = np.random.default_rng([self.seed, split, i]).random() < self.tag_rate
        return f"<answer>{example.answer}</answer>" if tagged else str(example.answer)


def _answer_demo(example: Example, i: int) -> str:
    return str(example.answer)


def _wrap(
    base: Task,
    name: str,
    demo: Callable[[Example, int], str],
    demonstrations: bool,
    reward_fns: tuple,
    prompt_suffix: str = "",
    correct_fn: Callable[[str, Example], bool] | None = None,
) -> Task:
    return Task(
        name=name,
        num_train=base.num_train,
        train_example=_WithDemonstration(base.train_example, demo, demonstrations, prompt_suffix),
        num_eval=base.num_eval,
        eval_example=_WithDemonstration(base.eval_example, demo, demonstrations, prompt_suffix),
        reward_fns=reward_fns,
        correct_fn=correct_fn,
    )


PARTIAL_SUMS_INSTRUCTION = "\nWrite one partial sum per line, then the total in <answer></answer>."


def partial_sums_task(
    demonstrations: bool = False,
    scratchpad_weight: float = 0.0,
    min_terms: int = 4,
    max_terms: int = 5,
    min_digits: int = 1,
    max_digits: int = 2,
    **rg_kwargs: Any,
) -> Task:
    """``suite:partial_sums``: reasoning-gym ``chain_sum`` (4-5 terms of 1-2 digits by default)
    answered with a scratchpad of partial sums, one a line, then ``<answer>total</answer>``:

        15 - 43 = -28
        -28 - 75 = -103
        <answer>-103</answer>

    Completions are 20-60 characters (tokens, for the character-level tokenizer). Rewards:
    ``reasoning_gym_score`` on the tag's content (the final answer, weight 1) and
    ``scratchpad_valid`` (the fraction of correct steps, weight ``scratchpad_weight``: 0 logs it
    as ``reward/scratchpad_valid`` without rewarding it). Held-out accuracy counts the final
    answer only (``answer_correct``), so a rewarded scratchpad does not change what is correct.
    """
    base = reasoning_gym_task(
        "chain_sum",
        answer_format="tags",
        min_terms=min_terms,
        max_terms=max_terms,
        min_digits=min_digits,
        max_digits=max_digits,
        **rg_kwargs,
    )
    return _wrap(
        base,
        "suite:partial_sums",
        _expression_demo,
        demonstrations,
        ((reasoning_gym_score, 1.0), (scratchpad_valid, float(scratchpad_weight))),
        prompt_suffix=PARTIAL_SUMS_INSTRUCTION,
        correct_fn=answer_correct,
    )


TAGS_INSTRUCTION = " Give the answer in <answer></answer> tags."


def tagged_arithmetic_task(
    demonstrations: bool = False,
    format_weight: float = 0.2,
    tag_rate: float = 0.5,
    min_terms: int = 3,
    max_terms: int = 3,
    min_digits: int = 1,
    max_digits: int = 1,
    **rg_kwargs: Any,
) -> Task:
    """``suite:tagged_arithmetic``: reasoning-gym ``chain_sum`` (3 one-digit terms by default)
    whose answer counts only inside ``<answer></answer>`` tags. Rewards: ``reasoning_gym_score``
    of the tag's content (weight 1; a bare answer scores 0) plus ``answer_tag_format``
    (weight ``format_weight``; paid for any non-empty tag, right or wrong: the hackable part,
    logged as ``reward/answer_tag_format``). Held-out evaluation counts only a right answer in
    tags as correct (``answer_correct``), whatever ``format_weight`` is. SFT demonstrations put the answer in tags for a
    seeded fraction ``tag_rate`` of the examples and bare otherwise, so the start follows the
    format only partly and both rewards have room.
    """
    if not 0.0 <= tag_rate <= 1.0:
        raise TaskDataError(f"suite:tagged_arithmetic: tag_rate must be in [0, 1], got {tag_rate}")
    seed = int(rg_kwargs.get("seed", 0))
    base = reasoning_gym_task(
        "chain_sum",
        answer_format="tags",
        min_terms=min_terms,
        max_terms=max_terms,
        min_digits=min_digits,
        max_digits=max_digits,
        **rg_kwargs,
    )
    return _wrap(
        base,
        "suite:tagged_arithmetic",
        _TaggedDemo(float(tag_rate), seed),
        demonstrations,
        ((reasoning_gym_score, 1.0), (format_rewards.answer_tag_format, float(format_weight))),
        prompt_suffix=TAGS_INSTRUCTION,
        correct_fn=answer_correct,
    )


def number_arithmetic_task(
    demonstrations: bool = False,
    min_terms: int = 2,
    max_terms: int = 2,
    min_digits: int = 1,
    max_digits: int = 2,
    operators: tuple = ("+", "-"),
    **rg_kwargs: Any,
) -> Task:
    """``suite:number_arithmetic``: reasoning-gym ``basic_arithmetic`` (two operands of 1-2
    digits, + and -, no parentheses or negation by default), rewarded by ``number_equals`` (the
    last number of the completion equals the answer), so a chat model that answers in a sentence
    is scored on its arithmetic. Meant for the pretrained SmolLM2-135M-Instruct."""
    rg_kwargs.setdefault("allow_parentheses", False)
    rg_kwargs.setdefault("allow_negation", False)
    base = reasoning_gym_task(
        "basic_arithmetic",
        answer_format="raw",
        min_terms=min_terms,
        max_terms=max_terms,
        min_digits=min_digits,
        max_digits=max_digits,
        operators=list(operators),
        **rg_kwargs,
    )
    return _wrap(base, "suite:number_arithmetic", _answer_demo, demonstrations, ((number_equals, 1.0),))


@dataclasses.dataclass(frozen=True)
class _DialogueDemo:
    """The whole ``num_turns``-turn dialogue answered right (``tasks.dialogue.demonstration``)."""

    num_turns: int

    def __call__(self, example: Example, i: int) -> str:
        return dialogue_demonstration(example, self.num_turns)


def dialogue_arithmetic_task(demonstrations: bool = False, dialogue_turns: int = 3, **rg_kwargs: Any) -> Task:
    """``suite:dialogue_arithmetic``: reasoning-gym ``basic_arithmetic`` (``rg_kwargs`` pass
    through) as the first question of a dialogue with the scripted user of ``rollouts/dialogue.py``
    ("Add k to your last answer." after each assistant turn; REFUEL's ``refuel_pairs`` plays it).
    Prompts, answers and rewards are ``rg:basic_arithmetic``'s (turn 0, single-turn); with
    ``demonstrations=True`` each answer is the ``dialogue_turns``-turn dialogue answered right,
    user turns included as text, so the SFT warm start learns the multi-turn format and the
    running total (its loss covers the user's tokens too)."""
    if dialogue_turns < 1:
        raise TaskDataError(f"suite:dialogue_arithmetic: dialogue_turns must be >= 1, got {dialogue_turns}")
    base = reasoning_gym_task("basic_arithmetic", **rg_kwargs)
    task = _wrap(base, "suite:dialogue_arithmetic", _DialogueDemo(int(dialogue_turns)), demonstrations, base.reward_fns)
    return dataclasses.replace(task, answer_fn=base.answer_fn)


BUILDERS = {
    "suite:dialogue_arithmetic": dialogue_arithmetic_task,
    "suite:partial_sums": partial_sums_task,
    "suite:tagged_arithmetic": tagged_arithmetic_task,
    "suite:number_arithmetic": number_arithmetic_task,
}
