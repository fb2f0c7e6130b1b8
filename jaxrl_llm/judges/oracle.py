"""Programmatic preference oracles, including an intransitive one (INPO's setting).

INPO (Zhang et al. 2024, "Iterative Nash Policy Optimization: Aligning LLMs with General
Preferences via No-Regret Learning", https://arxiv.org/abs/2407.00617) targets general
preferences that no Bradley-Terry reward can represent. ``CyclicOracle`` is such a preference
over texts: each completion falls into one of three classes (rock, paper, scissors) by its
content, and

    P(a > b) = 1/2 + margin   if class(a) beats class(b)   (rock > scissors > paper > rock)
             = 1/2 - margin   if class(b) beats class(a)
             = 1/2            otherwise (same class)

so every class loses to another: the preference is a cycle, and the Nash policy mixes the three
classes uniformly, while a method that fits one scalar score per completion cannot represent it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxrl_llm.types import Example

CLASSES = ("rock", "paper", "scissors")


def text_class(text: str) -> int:
    """0 (rock), 1 (paper) or 2 (scissors): the first class word in the text when it names one,
    else the sum of its characters' code points mod 3 (every string has a class)."""
    lowered = (text or "").lower()
    hits = [(lowered.find(w), i) for i, w in enumerate(CLASSES) if w in lowered]
    if hits:
        return min(hits)[1]
    return sum(map(ord, text or "")) % 3


@dataclasses.dataclass(frozen=True)
class CyclicOracle:
    """The rock-paper-scissors preference over completions (module docstring). ``margin`` in
    ``(0, 1/2]``: 1/2 gives deterministic wins."""

    margin: float = 0.5

    def __post_init__(self):
        if not 0.0 < self.margin <= 0.5:
            raise ValueError(f"CyclicOracle.margin must lie in (0, 0.5], got {self.margin}")

    def prefer(self, prompts: Sequence[Example], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        if not len(prompts) == len(a) == len(b):
            raise ValueError(f"CyclicOracle: lengths differ: {len(prompts)} prompts, {len(a)} a, {len(b)} b")
        ca = np.asarray([text_class(t) for t in a])
        cb = np.asarray([text_class(t) for t in b])
        # a beats b when a's class is the one b's class loses to: rock(0) > scissors(2), paper(1) > rock(0),
        # scissors(2) > paper(1), i.e. (ca - cb) % 3 == 1.
        wins = (ca - cb) % 3 == 1
        losses = (cb - ca) % 3 == 1
        return (0.5 + self.margin * wins - self.margin * losses).astype(np.float32)


# the preference oracles a pair method may name (``algo.oracle``): the task's verifiable reward
# (best vs worst of K by score; a Bradley-Terry-representable preference) or ``CyclicOracle``
ORACLES = ("reward", "cyclic")


def oracle_error(name: str) -> str | None:
    """Why ``algo.oracle = name`` is not a known oracle (``None`` when it is): for a method's
    ``check_config`` and for ``pair_judge``."""
    return None if name in ORACLES else f"algo.oracle must be one of {ORACLES}, got {name!r}"


def pair_judge(name: str, margin: float = 0.5) -> CyclicOracle | None:
    """The judge a ``judges.pairing.Pairing`` takes for ``algo.oracle = name``: ``None`` (the
    task's reward) for ``"reward"``, a ``CyclicOracle(margin)`` for ``"cyclic"``."""
    if error := oracle_error(name):
        raise ValueError(error)
    return CyclicOracle(margin) if name == "cyclic" else None
