"""URPO: Unified Reward & Policy Optimization (one model as player and referee).

Citation: Songshuo Lu, Hua Wang, Zhi Chen, Yaohua Tang, "URPO: A Unified Reward & Policy
Optimization Framework for Large Language Models", AAAI 2026, https://arxiv.org/abs/2507.17515.
No official code; the paper's exact referee prompt and reward mapping are not public, so the
choices below are marked as ours.

One model, one GRPO loop. For each prompt the PLAYER samples G answers o_1..o_G; the SAME model,
with its live params, then acts as REFEREE through the generative judge path
(``rollouts/judged.py``, kind ``self_judged``) and scores each answer, s_i in [low, high]:

    R_i = w (s_i - low) / (high - low) + (1 - w) R_verifiable(o_i)        (w = self_reward_weight)
    A_i = (R_i - mean_group R) / (std_group R + std_eps)
    J   = E[ (1/G) sum_i (1/|o_i|) sum_t min(rho A_i, clip(rho, 1 - eps_low, 1 + eps_high) A_i) - beta k3 ]

The referee calls are not trained (they only produce rewards); the referee improves through the
weights it shares with the player. ``urpo/referee_accuracy`` measures it against the verifiable
reward (same-prompt pairs whose verifiable rewards differ, ordered the same way by the referee).

Differs from GRPO in:
  1. The reward of a group is the policy's own judgement of it (``self_reward_weight = 1``), not a
     verifier's or a separate reward model's: no extra model, and the referee co-evolves with the player.
  2. A referee pass per step: a second batched call of the same weights (``referee_mode="logprobs"``:
     one forward pass, the expected integer score over the score tokens; ``"text"``: a generated
     verdict parsed for ``Score: <n>``, an unparsable one scoring ``low`` and counted).

Not built here (the paper's other data types): referee tasks trained on preference data with an
agreement reward. Defaults are ours (unverified): ``referee_mode = "logprobs"`` (a small model's
text verdicts are mostly unparsable), scores 0..9, ``w = 1``; GRPO's eps 0.2, beta 0.04.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.judges import generative
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "urpo"
PAPER = "URPO: A Unified Reward & Policy Optimization Framework for Large Language Models"
PAPER_URL = "https://arxiv.org/abs/2507.17515"
ROLLOUT = "self_judged"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.04  # KL weight (k3 in the loss, as GRPO)
    kl_estimator: str = "k3"
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "seq_mean_token_mean"
    self_reward_weight: float = 1.0  # w: 1 = the referee's score alone; 0 = the verifier alone (GRPO)
    referee_mode: str = "logprobs"  # "logprobs" (expected score token) or "text" (parsed verdict)
    referee_low: int = 0
    referee_high: int = 9
    referee_max_new_tokens: int = 16  # "text" mode's verdict budget
    referee_max_prompt_len: int = 512
    rubric: str = ""  # the referee prompt; "" = judges.generative's default for the mode


def check_config(run_cfg: Any) -> str | None:
    """A known referee mode, ``low < high``, ``0 <= w <= 1``, at least 2 samples per prompt."""
    cfg = run_cfg.algo
    if cfg.referee_mode not in generative.MODES:
        return f"urpo: algo.referee_mode must be one of {generative.MODES}, got {cfg.referee_mode!r}"
    if not cfg.referee_low < cfg.referee_high:
        return f"urpo: algo.referee_low={cfg.referee_low} must be < algo.referee_high={cfg.referee_high}"
    if not 0.0 <= cfg.self_reward_weight <= 1.0:
        return f"urpo: algo.self_reward_weight must lie in [0, 1], got {cfg.self_reward_weight}"
    if run_cfg.train.group_size < 2:
        return f"urpo needs train.group_size >= 2 (group-normalized rewards), got {run_cfg.train.group_size}"
    return None


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Group-normalized self-judged rewards: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """GRPO's clipped surrogate + ``beta`` k3 on the player's rows (global normalizers). ``grpo.clipped_loss``."""
    return grpo.clipped_loss(
        logprobs, batch, cfg.eps_low, cfg.eps_high, cfg.beta, cfg.kl_estimator, cfg.aggregation, where=NAME
    )
