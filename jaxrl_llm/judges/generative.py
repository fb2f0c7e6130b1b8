"""A generative judge: a text generator prompted with a rubric; the score is parsed from its output.

``complete(prompts: list[str]) -> list[str]`` is any batched text generator (a frozen decoder
through our sampler, or a stub in tests). An output without a parsable ``Score: <number>`` in
``[low, high]`` scores 0 and is counted (``num_unparsable``), never a crash mid-run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from jaxrl_llm.judges.base import parse_score
from jaxrl_llm.types import Example

RUBRIC = (
    "Rate the response to the question from {low} to {high}.\n"
    "Question: {prompt}\nResponse: {completion}\n"
    "Reply with a short reason, then 'Score: <number>'."
)


def prompt_text(example: Example) -> str:
    """The prompt of an example as plain text (chat messages joined by role)."""
    if isinstance(example.prompt, str):
        return example.prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in example.prompt)


@dataclasses.dataclass
class GenerativeJudge:
    """Scores with ``complete(rubric prompts)``; ``num_unparsable`` counts outputs with no score."""

    complete: Callable[[list[str]], list[str]]
    rubric: str = RUBRIC
    low: float = 0.0
    high: float = 10.0
    num_unparsable: int = 0

    def score(self, prompts: Sequence[Example], completions: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        if len(prompts) != len(completions):
            raise ValueError(f"GenerativeJudge: {len(prompts)} prompts but {len(completions)} completions")
        queries = [
            self.rubric.format(low=self.low, high=self.high, prompt=prompt_text(p), completion=c)
            for p, c in zip(prompts, completions)
        ]
        outputs = list(self.complete(queries))
        if len(outputs) != len(queries):
            raise ValueError(f"GenerativeJudge: complete() returned {len(outputs)} outputs for {len(queries)} prompts")
        parsed = [parse_score(o, self.low, self.high) for o in outputs]
        self.num_unparsable += sum(p is None for p in parsed)
        scores = np.asarray([0.0 if p is None else p for p in parsed], np.float32)
        return scores, outputs
