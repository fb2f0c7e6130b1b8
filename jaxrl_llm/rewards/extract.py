"""Answer extraction from completions: last ``\\boxed{}``, ``<answer>...</answer>``, last number;
and answer classes (which completions of a group committed to the same answer), the reward side's
reading of a group that consistency methods (COPO) consume as ``Rollout.extras["answer_ids"]``."""

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# Thousands separators only between digit groups of three, so "1,2" (a list) stays two numbers.
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched, so nested
    LaTeX like ``\\boxed{\\frac{1}{2}}`` comes out whole; ``\\boxed 5`` (no braces) gives ``5``.
    None when there is none or its braces never close."""
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    cmd = "\\boxed" if text.startswith("\\boxed", start) else "\\fbox"
    rest = text[start + len(cmd) :]
    if rest.startswith(" "):
        token = re.split(r"[\s$]", rest.lstrip(), maxsplit=1)[0]
        return token or None
    if not rest.startswith("{"):
        return None
    depth = 0
    for j, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:j].strip()
    return None


def answer_tag(text: str) -> str | None:
    """Stripped content of the last ``<answer>...</answer>``, or None."""
    matches = _ANSWER_TAG.findall(text)
    return matches[-1].strip() if matches else None


def last_number(text: str) -> str | None:
    """The last number in ``text`` with thousands separators removed (``"1,234.5"`` ->
    ``"1234.5"``; signs, decimals and ``a/b`` fractions kept), or None."""
    matches = _NUMBER.findall(text)
    return matches[-1].replace(",", "") if matches else None


def final_answer(text: str) -> str | None:
    """The answer a completion commits to: ``<answer>`` tag first, else the last ``\\boxed{}``."""
    tagged = answer_tag(text)
    return tagged if tagged is not None else last_boxed(text)


def auto_answer(text: str, example: Any = None) -> str:
    """The answer a completion gives as a reward reads it by default: ``<answer>`` tag, else the last
    ``\\boxed{}``, else the whole stripped completion (a model trained to emit only the answer is
    read too). A task's ``answer_fn`` (``tasks.Task``) may read differently; ``example`` is unused here."""
    found = final_answer(text)
    return found if found is not None else text.strip()


def answer_classes(answers: Sequence[str | None], group_size: int) -> np.ndarray:
    """Per-row answer class ``[N]`` int32: equal ids within a group mean equal answer strings.

    ``answers``: each completion's answer as its task's reward reads it (``Task.answer_fn``),
    group-major. Answers compare as raw strings; ``None`` (nothing extracted) is one more class of
    its own, so G unparsable completions count as agreeing. The id of a row is the index within its
    group of the first completion with the same answer, so ids lie in ``[0, G)``.
    """
    if group_size < 1 or len(answers) % group_size:
        raise ValueError(
            f"answer_classes: {len(answers)} answers are not a whole number of groups of size {group_size}"
        )
    out = np.empty(len(answers), np.int32)
    for start in range(0, len(answers), group_size):
        first: dict[Any, int] = {}
        for j, a in enumerate(answers[start : start + group_size]):
            out[start + j] = first.setdefault(a, j)
    return out
