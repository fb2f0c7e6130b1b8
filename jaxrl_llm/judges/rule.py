"""A rule judge: the task's verifiable reward (``jaxrl_llm.rewards``) behind the judge interface."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxrl_llm.types import Example

ScoreFn = Callable[[list[str], list[Example]], tuple[np.ndarray, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class RuleJudge:
    """Scores completions with a reward runner's ``score(completions, examples) -> (rewards, info)``
    (e.g. ``rollouts.Context.score``); the rationale names the reward's failures, if any."""

    score_fn: ScoreFn

    def score(self, prompts: Sequence[Example], completions: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        if len(prompts) != len(completions):
            raise ValueError(f"RuleJudge: {len(prompts)} prompts but {len(completions)} completions")
        rewards, info = self.score_fn(list(completions), list(prompts))
        errors = info.get("errors") if isinstance(info, dict) else None
        note = f"reward errors: {errors}" if errors else "verifiable reward"
        return np.asarray(rewards, np.float32), [note] * len(completions)
