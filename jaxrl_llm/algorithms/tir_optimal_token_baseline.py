"""The multi-turn optimal token baseline: OTB over the policy's own tokens (loss-mask segments).

Citation: Richard Li, "Optimal Token Baseline" (blog, 2025), https://richardli.xyz/optimal-token-baseline,
as implemented in verl (no paper on arXiv; verl's ``docs/algo/otb.md``).
verl: ``verl/trainer/ppo/core_algos.py: compute_multi_turn_optimal_token_baseline_advantage``
(``adv_estimator=tir_optimal_token_baseline``, tool-integrated reasoning) with verl's vanilla PPO
loss; TRL: none.

Objective (maximized; ``loss`` returns its negative). In a multi-turn row the policy's tokens come
in segments separated by observations / tool output (``loss_mask = 0``). Index the policy's tokens
of row i by k = 0, 1, ... (its k-th LOSS token, wherever it sits); then with the per-token weight
of ``optimal_token_baseline``

    W_{i,k}  = sum_{j <= k} w_{i,j}                      (over loss tokens only)
    b*_k     = sum_i G_{i,k} W_{i,k} / (sum_i W_{i,k} + 1e-8),      A_{i,k} = G_{i,k} - b*_k
    J = E[ (1 / sum_i |o_i|) sum_i sum_k min(rho_{i,k} A_{i,k}, clip(rho_{i,k}, 1-eps_low, 1+eps_high) A_{i,k}) ]

so the k-th action token of a trajectory is baselined against the k-th action token of the
others, not against whatever token (maybe an observation) sits at the same column.

Differs from ``optimal_token_baseline`` in:
  1. Positions are loss-token indices (observation / tool tokens skipped), not columns.
  2. Rows with no loss token do not count in their group (a group left with one row gets b* = 0).
Differs from GRPO as ``optimal_token_baseline`` does (per-token W-weighted baseline, no std,
``token_mean``, ``beta = 0``, ``sum_pi_squared`` from the rollout).

Conventions (verl's): ``eps = 1e-8``; ``zero_tail = True`` (verl's default for this estimator),
counted in loss tokens; ``is_weights`` scale ``w`` by their square. On a single-turn rollout (loss
mask = a prefix of each row) this equals ``optimal_token_baseline``. The rollout must carry
``sum_pi_squared`` for every row (``ROLLOUT_EXTRAS``): the ``group`` kind computes it, and so does
the multi-turn ``episode`` kind (``train.rollout=episode``, ``env.rows=episode``: one row per
episode, tool and observation tokens with ``loss_mask = 0``), which is the setting this
estimator is for.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from jaxrl_llm.algorithms import optimal_token_baseline as otb
from jaxrl_llm.ops import aggregation, clipped_terms, clipping, inputs, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "tir_optimal_token_baseline"
PAPER = "Optimal Token Baseline (verl), multi-turn"
PAPER_URL = "https://richardli.xyz/optimal-token-baseline"
ROLLOUTS = ("episode",)  # multi-turn rows: train.rollout=episode
ROLLOUT_EXTRAS = ("sum_pi_squared",)  # sum_v pi_old(v)^2 [B, T] (rollouts/token_stats.py)


@dataclasses.dataclass(frozen=True)
class Config:
    zero_tail: bool = True  # verl's handle_zero_tail, in loss tokens
    eps: float = 1e-8  # added to sum_i W_{i,k}
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    aggregation: str = "token_mean"


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_{i,k} = r_i - b*_k`` at loss-token index k (module docstring): ``[B, T]``. Needs
    ``rollout["sum_pi_squared"]`` ``[B, T]`` and ``old_logprobs`` (``sampler_logprobs`` when absent)."""
    return otb.token_advantages(rollout, cfg, multi_turn=True, where=NAME)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate with per-token advantages, ``token_mean`` (+ ``beta`` * KL likewise)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,k} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # / sum_i |o_i|
    return clipped_terms.finalize(x, batch, ratio, policy, cfg, NAME)  # + beta * KL, metrics


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """``sum_pi_squared`` for the invariant suite (as ``optimal_token_baseline``)."""
    return otb.example_extras(key, batch_size, seq_len, group_size)
