"""Judges: reward models, rule judges and preference oracles behind one interface.

A judge scores completions of prompts::

    scores, rationales = judge.score(prompts, completions)   # scores [N] f32, rationales list[str]

``prompts`` are the ``types.Example`` records the completions answer (a rule judge needs their
reference answers); ``completions`` the decoded texts. A PAIRWISE judge (a general, possibly
intransitive preference, as INPO needs) instead answers ``prefer(prompts, a, b) -> P(a > b) [N]``;
``rank_groups`` turns either kind into the best and worst completion of each group, which is how
the ``pairs`` rollout kind builds preference pairs.

Judges here:

* ``rule.RuleJudge``: the task's verifiable reward (``rewards/``) as a judge.
* ``oracle.CyclicOracle``: a programmatic, intransitive (rock-paper-scissors) preference.
* ``generative.GenerativeJudge``: any text generator prompted with a rubric; the score is parsed
  from its output, and an output with no parsable score counts as 0 (counted, never a crash).
* ``reward_model``: a Bradley-Terry reward model (scalar head on a decoder), trained in-repo on
  preference pairs, checkpointed, evaluated by held-out pair accuracy.
"""

from jaxrl_llm.judges import generative, oracle, pairing, reward_model, rule
from jaxrl_llm.judges.base import Judge, PairwiseJudge, parse_score, rank_groups, rank_scores

__all__ = [
    "Judge",
    "PairwiseJudge",
    "generative",
    "oracle",
    "pairing",
    "parse_score",
    "rank_groups",
    "rank_scores",
    "reward_model",
    "rule",
]
