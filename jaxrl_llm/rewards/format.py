"""Format rewards: did the completion use the answer layout the prompt asked for."""

import re

from jaxrl_llm.rewards import extract
from jaxrl_llm.types import Example

_THINK_ANSWER = re.compile(
    r"^\s*<think>(?:(?!</?think>).)*</think>\s*<answer>(?:(?!</?answer>).)*</answer>\s*$", re.DOTALL
)


def think_answer_format(completion: str, example: Example) -> float:
    """1.0 when the completion is exactly ``<think>...</think>`` then ``<answer>...</answer>``
    (whitespace around them allowed, no nested or repeated tags, nothing after), else 0.0.
    The DeepSeek-R1 format reward (Guo et al., 2025, §2.2.2)."""
    return float(_THINK_ANSWER.match(completion) is not None)


def answer_tag_format(completion: str, example: Example) -> float:
    """1.0 when the completion holds a non-empty ``<answer>...</answer>``, else 0.0."""
    tagged = extract.answer_tag(completion)
    return float(bool(tagged))


def boxed_format(completion: str, example: Example) -> float:
    """1.0 when the completion holds a non-empty, brace-balanced ``\\boxed{...}``, else 0.0."""
    return float(bool(extract.last_boxed(completion)))
