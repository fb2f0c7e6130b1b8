"""RLOO: REINFORCE Leave-One-Out.

Citation: Arash Ahmadian, Chris Cremer, Matthias Gallé, Marzieh Fadaee, Julia Kreutzer, Olivier
Pietquin, Ahmet Üstün, Sara Hooker, "Back to Basics: Revisiting REINFORCE Style Optimization for
Learning from Human Feedback in LLMs", 2024, https://arxiv.org/abs/2402.14740 (Sec. 3.3, Eq. 6);
the baseline is Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!".

Objective (maximized; ``loss`` returns its negative). The whole response is one action:

    J = E[ (1/k) sum_i (R_i - (1/(k-1)) sum_{j != i} R_j) log pi_theta(y_i | x) ]
    R_i = r_i - beta * sum_t (log pi_old(y_{i,t}) - log pi_ref(y_{i,t}))    (KL folded into the reward)

For reuse of a batch over several updates the per-token log-prob is replaced by PPO's clipped
ratio (as TRL's RLOO does); at ratio 1 its gradient is exactly the REINFORCE gradient above.

Differs from GRPO in:
  1. Baseline: the mean of the OTHER k-1 rewards (unbiased), no std division.
  2. KL enters the REWARD as the sequence sum of k1 against pi_ref (computed with pi_old, no
     gradient), not the loss.
  3. Sequence-level action: token terms are SUMMED per response, then averaged over responses
     (``seq_mean_token_sum``), so the gradient is ``A_i grad log pi(y_i|x)``.

Defaults: ``beta = 0.05`` (TRL's RLOO default; the paper sweeps it), ``eps = 0.2`` (PPO clip, for
off-policy reuse only).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "rloo"
PAPER = "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs"
PAPER_URL = "https://arxiv.org/abs/2402.14740"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.05  # KL-in-reward coefficient; 0 means no reference model
    aggregation: str = "seq_mean_token_sum"


def _behaviour_logprobs(rollout: Rollout) -> Array:
    key = "old_logprobs" if "old_logprobs" in rollout else "sampler_logprobs"
    inputs.require(rollout, (key,), f"{NAME}.advantages")
    return jnp.asarray(rollout[key], jnp.float32)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Leave-one-out advantage of the KL-penalized sequence reward: ``[B]``.

    ``R_i = r_i - beta * sum_t k1(old, ref)_{i,t}`` (needs ``rollout["ref_logprobs"]`` when beta > 0),
    ``A_i = R_i - mean_{j != i} R_j``. Metrics add ``kl`` (mean sequence k1).
    """
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    seq_kl = jnp.zeros_like(rewards)
    if cfg.beta > 0:
        ref = inputs.ref_logprobs(rollout, mask, f"{NAME}.advantages")
        seq_kl = masked.masked_sum(kl.k1(_behaviour_logprobs(rollout), ref), mask, axis=1)  # [B]
    a = adv_ops.leave_one_out(rewards - cfg.beta * seq_kl, g)
    metrics = adv_ops.group_stats(a, rewards, mask, g)
    metrics["kl"] = jnp.mean(seq_kl)
    return a, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Clipped ratio surrogate, summed over each response's tokens, averaged over responses (no KL term:
    the KL is in the reward)."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]; 1 on-policy
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A_i, clip(rho) A_i) [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # (1/k) sum_i sum_t
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)  # clip_frac, ratio/*
    return diagnostics.finalize(metrics, policy, batch, mask, nt, where=NAME)
