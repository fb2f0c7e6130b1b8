"""The judge interface, score parsing, and ranking a group of completions into a pair."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from jaxrl_llm.types import Example


@runtime_checkable
class Judge(Protocol):
    """``score(prompts, completions) -> (scores [N] f32, rationales [N] str)``."""

    def score(self, prompts: Sequence[Example], completions: Sequence[str]) -> tuple[np.ndarray, list[str]]: ...


@runtime_checkable
class PairwiseJudge(Protocol):
    """``prefer(prompts, a, b) -> P(a_i > b_i) [N]`` in [0, 1], with ``P(a > b) + P(b > a) = 1``."""

    def prefer(self, prompts: Sequence[Example], a: Sequence[str], b: Sequence[str]) -> np.ndarray: ...


_SCORE = re.compile(r"(?i)score\s*[:=]?\s*(-?\d+(?:\.\d+)?)")


def parse_score(text: str, low: float, high: float) -> float | None:
    """The last ``Score: <number>`` in a judge's output, if it lies in ``[low, high]``; else ``None``.

    Only an explicit ``score`` label counts: a bare number in a rationale (a step of arithmetic)
    is not a verdict."""
    found = _SCORE.findall(text or "")
    if not found:
        return None
    value = float(found[-1])
    return value if low <= value <= high else None


def rank_groups(
    judge: Judge | PairwiseJudge, prompts: Sequence[Example], completions: Sequence[str], group_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The best and worst completion of each group of ``group_size`` consecutive completions.

    Scalar judges: best = first argmax, worst = last argmin of the scores. Pairwise judges: each
    completion's score is its Copeland score within the group (``sum_j P(i > j)`` over the other
    members, a round robin of ``K (K - 1) / 2`` comparisons), and the pair is decisive only if
    ``P(best > worst) > 1/2`` (INPO keeps only pairs whose winner wins). Returns ``(best [P], worst
    [P])`` indices into ``completions``, ``scores [P*K]`` and ``decisive [P]`` bool (False for a
    tie: no preference to learn from).
    """
    K = int(group_size)
    n = len(completions)
    if K < 2 or n % K:
        raise ValueError(f"rank_groups: {n} completions are not groups of group_size={K} >= 2")
    P = n // K
    if isinstance(judge, PairwiseJudge):
        ii, jj = np.triu_indices(K, 1)
        rows = [(g * K + i, g * K + j) for g in range(P) for i, j in zip(ii, jj)]
        a = [completions[i] for i, _ in rows]
        b = [completions[j] for _, j in rows]
        probs = np.asarray(judge.prefer([prompts[i] for i, _ in rows], a, b), np.float64)
        scores = np.zeros(n)
        for (i, j), p in zip(rows, probs):
            scores[i] += p
            scores[j] += 1.0 - p
    else:
        scores, _ = judge.score(prompts, completions)
        scores = np.asarray(scores, np.float64)
    best, worst = _extremes(scores.reshape(P, K))
    if isinstance(judge, PairwiseJudge):
        decisive = (
            np.asarray(
                judge.prefer(
                    [prompts[i] for i in best], [completions[i] for i in best], [completions[i] for i in worst]
                )
            )
            > 0.5
        )
    else:
        decisive = scores[best] > scores[worst]
    return best, worst, scores.astype(np.float32), np.asarray(decisive, bool)


def _extremes(grouped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of each row's first argmax and last argmin (distinct when the row ties)."""
    P, K = grouped.shape
    best = np.argmax(grouped, axis=1)
    worst = K - 1 - np.argmax(grouped[:, ::-1] == grouped.min(axis=1, keepdims=True), axis=1)
    offset = np.arange(P) * K
    return best + offset, worst + offset


def rank_scores(scores: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rank_groups`` for scores already computed (e.g. the rollout's rewards): ``(best [P],
    worst [P], decisive [P])``."""
    scores = np.asarray(scores, np.float64)
    K = int(group_size)
    if K < 2 or scores.shape[0] % K:
        raise ValueError(f"rank_scores: {scores.shape[0]} scores are not groups of group_size={K} >= 2")
    best, worst = _extremes(scores.reshape(-1, K))
    return best, worst, scores[best] > scores[worst]
