"""Verifiable rewards for RL on language models.

Contract: a reward function is ``fn(completion: str, example: types.Example) -> float``,
pure and picklable (a top-level function, a ``functools.partial`` of one, or a frozen
dataclass with ``__call__``), so that ``RewardRunner`` can run it in worker processes.

Modules:
  ``extract``  answer extraction: ``last_boxed``, ``answer_tag``, ``last_number``, ``final_answer``,
               ``auto_answer``; ``answer_classes`` (same-answer ids within groups).
  ``math``     ``math_equivalence`` with math-verify (boxed answers, fractions, LaTeX), time-limited.
  ``format``   ``think_answer_format``, ``answer_tag_format``, ``boxed_format``.
  ``length``   DAPO ``overlong_penalty`` (array form for token lengths, ``OverlongPenalty``
               for characters) and Kimi k1.5 ``group_length_reward``.
  ``code``     ``humaneval_tests``: the completion against HumanEval's tests in ``sandbox``.
  ``sandbox``  ``run_python`` with CPU / memory / output / process limits, private directory,
               no network, killed on timeout.
  ``runner``   ``RewardRunner(fns_with_weights, num_workers, timeout_s).score(completions,
               examples) -> (rewards [N] f32, info)``; ``combine``; ``reward_name``.

``info`` from ``RewardRunner.score``: ``per_fn`` {name: [N] f32} (log as ``reward/<name>``),
``failures`` and ``timeouts`` {name: count}, ``errors`` {name: first message},
``worker_restarts``.
"""

from jaxrl_llm.rewards.code import humaneval_tests
from jaxrl_llm.rewards.extract import answer_classes, answer_tag, auto_answer, final_answer, last_boxed, last_number
from jaxrl_llm.rewards.format import answer_tag_format, boxed_format, think_answer_format
from jaxrl_llm.rewards.length import OverlongPenalty, group_length_reward, overlong_penalty
from jaxrl_llm.rewards.math import math_equivalence
from jaxrl_llm.rewards.runner import RewardRunner, WeightedSum, combine, reward_name

__all__ = [
    "OverlongPenalty",
    "RewardRunner",
    "WeightedSum",
    "answer_classes",
    "answer_tag",
    "answer_tag_format",
    "auto_answer",
    "boxed_format",
    "combine",
    "final_answer",
    "group_length_reward",
    "humaneval_tests",
    "last_boxed",
    "last_number",
    "math_equivalence",
    "overlong_penalty",
    "reward_name",
    "think_answer_format",
]
