"""Rock-Paper-Scissors-Lizard-Spock as a language game: LSPO's own proof of concept (Xu et al.
2025, "Learning Strategic Language Agents in the Werewolf Game with Iterative Latent Space Policy
Optimization", https://arxiv.org/abs/2502.04686, Sec. 5: a 5-action zero-sum game whose unique Nash
equilibrium is uniform, where a prompted LLM's action bias is exploitable).

An utterance is free text; its move is the first of the five move words it names (``None``: an
invalid utterance, which loses to everything). The payoff of move a against move b is +1 if a
beats b, -1 if b beats a, 0 on a tie: each move beats two and loses to two.
"""

from __future__ import annotations

import re

import numpy as np

MOVES = ("rock", "paper", "scissors", "lizard", "spock")
# a beats b: scissors cuts paper, paper covers rock, rock crushes lizard, lizard poisons spock,
# spock smashes scissors, scissors decapitates lizard, lizard eats paper, paper disproves spock,
# spock vaporizes rock, rock crushes scissors
_BEATS = {
    "rock": ("scissors", "lizard"),
    "paper": ("rock", "spock"),
    "scissors": ("paper", "lizard"),
    "lizard": ("paper", "spock"),
    "spock": ("rock", "scissors"),
}
PAYOFF = np.asarray(
    [[1.0 if b in _BEATS[a] else -1.0 if a in _BEATS[b] else 0.0 for b in MOVES] for a in MOVES], np.float32
)  # [5, 5], zero-sum: PAYOFF = -PAYOFF.T
PROMPT = "We play rock, paper, scissors, lizard, spock. Say your move in a short sentence."
_WORD = re.compile(r"\b(" + "|".join(MOVES) + r")\b", re.I)


def move(text: str) -> int | None:
    """The index of the first move word in ``text``, or ``None``."""
    m = _WORD.search(text)
    return MOVES.index(m.group(1).lower()) if m else None


def payoff(a: int | None, b: int | None) -> float:
    """Payoff of utterance move ``a`` against ``b``; an invalid move loses to a valid one."""
    if a is None:
        return 0.0 if b is None else -1.0
    if b is None:
        return 1.0
    return float(PAYOFF[a, b])


def exploitability(sigma: np.ndarray) -> float:
    """``max_a sum_b PAYOFF[a, b] sigma_b``: what a best response wins against the move mixture
    ``sigma`` [5] (0 exactly at the uniform equilibrium)."""
    return float(np.max(PAYOFF @ np.asarray(sigma, np.float64)))
