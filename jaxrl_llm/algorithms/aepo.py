"""AEPO: Adaptive Exploration Policy Optimization (InfiGUI-G1, GUI grounding).

Citation: Liu et al. (InfiX.ai), "InfiGUI-G1: Advancing GUI Grounding with Adaptive Exploration Policy
Optimization", 2025 (AAAI 2026),
https://arxiv.org/abs/2508.05731 (Sec. 3, Eqs. 2-3); code https://github.com/InfiXAI/InfiGUI-G1
(verl: ``recipe/infigui-g1/reward_fn.py``, ``run_3b.sh`` / ``run_7b.sh``).

The method is mostly in its REWARD: the policy proposes N candidate points in one answer and the
Adaptive Exploration Reward (``jaxrl_llm.rewards.gui_grounding``; the task ``images:gui`` picks it
with ``reward="aer"``) scores the list by its efficiency,

    R = -1                             bad <think> format, unparsable point list, N = 0, or 3 collinear points
    R = 1 + 1/sqrt(N k)                some point in the box, k = rank of the first one
    R = 1 - 1/N                        no point in the box

so a confidently wrong policy can still find the target by proposing a second point, and a group
of G samples keeps a reward spread (the paper's "confidence trap" of single-answer RLVR). The
objective is verl's PPO with RLOO advantages and a higher upper clip:

    A_i = R_i - (1/(G-1)) sum_{j != i} R_j                              (RLOO, algorithm.adv_estimator=rloo)
    J = (1/sum_i |o_i|) sum_{i,t} max(-rho_{i,t} A_i, -clip(rho_{i,t}, 1 - eps_low, 1 + eps_high) A_i)
        (negated: loss = token_mean(-min(rho A, clip(rho) A)), capped at -c A for A < 0 (verl dual-clip))
    rho_{i,t} = pi_theta(o_{i,t}) / pi_old(o_{i,t})

Differs from GRPO in:
  1. The reward: multi-answer AER (above) instead of a single-answer verifier (the task's reward).
  2. Advantage: RLOO's leave-one-out baseline, no std division.
  3. Clip-higher: ``eps_high = 0.4`` (``eps_low = 0.2``), plus verl's dual-clip ``c = 3``.
  4. No KL term (``beta = 0``: no KL loss, no KL in the reward) and token-mean aggregation over the
     whole batch (verl's ``token-mean``) instead of a per-sequence mean.

Defaults (``run_3b.sh`` / ``run_7b.sh``): ``eps_low = 0.2``, ``eps_high = 0.4``, ``beta = 0``,
``aggregation = "token_mean"``, ``clip_c = 3.0`` (verl's ``clip_ratio_c`` default; it only caps
negative-advantage tokens whose ratio exceeds 3). G = 8 samples at temperature 1, lr 1e-6, one
update per batch are trainer settings (``train.group_size``, ``optim``). No state across steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "aepo"
PAPER = "InfiGUI-G1: Advancing GUI Grounding with Adaptive Exploration Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2508.05731"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon_low (verl clip_ratio_low)
    eps_high: float = 0.4  # epsilon_high (verl clip_ratio_high): clip-higher
    clip_c: float | None = 3.0  # verl dual-clip constant (clip_ratio_c); None disables it
    beta: float = 0.0  # no KL loss and no KL in the reward (use_kl_loss=False)
    aggregation: str = "token_mean"  # verl loss_agg_mode=token-mean

    def __post_init__(self):
        if self.eps_low <= 0 or self.eps_high <= 0:
            raise ValueError(f"aepo.Config: eps_low and eps_high must be > 0, got {self.eps_low}, {self.eps_high}")
        if self.beta != 0:
            raise ValueError(f"aepo.Config: beta={self.beta}: AEPO has no KL term (the paper and code use none)")


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """RLOO: ``A_i = R_i - mean_{j != i} R_j`` over each group of G rewards: ``[B]``."""
    g = adv_ops.group_size_of(rollout)
    rewards = rollout["rewards"]  # [B]
    a = adv_ops.leave_one_out(rewards, g)  # [B]
    return a, adv_ops.group_stats(a, rewards, rollout["mask"], g)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """verl's clipped surrogate (clip-high ``eps_high``, dual-clip ``clip_c``), token-mean, no KL."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A) [B, T]
    if cfg.clip_c is not None:
        per_token = clipping.dual_clip(per_token, adv, cfg.clip_c)  # capped at -c A where A < 0 [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # sum_{i,t} / sum |o_i|
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high, cfg.clip_c)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, where=NAME)
