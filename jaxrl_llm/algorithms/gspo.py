"""GSPO: Group Sequence Policy Optimization.

Citation: Chujie Zheng, Shixuan Liu, Mingze Li, Xiong-Hui Chen, Bowen Yu, Chang Gao, Kai Dang,
Yuqiong Liu, Rui Men, An Yang, Jingren Zhou, Junyang Lin, "Group Sequence Policy Optimization",
2025, https://arxiv.org/abs/2507.18071 (Eq. 5-7, and GSPO-token Eq. 13-14).

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1/G) sum_i min(s_i A_i, clip(s_i, 1-eps_low, 1+eps_high) A_i) ]
    s_i = (pi_theta(y_i|x) / pi_old(y_i|x))^{1/|y_i|} = exp((1/|y_i|) sum_t (log pi_theta - log pi_old)_{i,t})
    A_i = (r_i - mean_j r_j) / (std_j r_j + std_eps)

Implemented in the GSPO-token form ``s_{i,t} = sg[s_i] pi_theta(y_{i,t}) / sg[pi_theta(y_{i,t})]``
aggregated by ``seq_mean_token_mean``: equal to GSPO in value and gradient for per-sequence
advantages (tested in ``tests/test_ops_losses.py``), and it also accepts ``[B, T]`` advantages.

Differs from GRPO in:
  1. One length-normalized SEQUENCE ratio ``s_i`` per response instead of per-token ratios; clipping
     therefore keeps or drops whole responses.
  2. Tiny clip ranges, ``eps_low = 3e-4``, ``eps_high = 4e-4`` (paper v2 Sec. 5.1), because ``s_i``
     is a geometric mean of token ratios.
  3. ``beta = 0``: no KL term.

Defaults: the paper's ``eps_low = 3e-4``, ``eps_high = 4e-4``, no KL; ``std_ddof = 1``,
``std_eps = 1e-6`` (the group z-score of GRPO). The log of ``s_i`` is clamped at +-10 as verl does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "gspo"
PAPER = "Group Sequence Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2507.18071"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 3e-4  # epsilon_left
    eps_high: float = 4e-4  # epsilon_right
    beta: float = 0.0  # KL weight; GSPO uses none
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "seq_mean_token_mean"  # (1/G) sum_i, each response's terms averaged over its tokens


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Clipped surrogate on the sequence ratio (GSPO-token form), ``seq_mean_token_mean``.

    Clip metrics are per sequence (divided by ``num_seqs``): the fraction of responses clipped.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, nt, ns = x["mask"], x["num_tokens"], x["num_seqs"]
    s_tok = ratios.sequence_token_ratio(x["logprobs"], x["old_logprobs"], mask)  # [B, T], value s_i
    per_token = clipping.clipped_surrogate(s_tok, x["advantages"], cfg.eps_low, cfg.eps_high) * x["is_weights"]
    policy = aggregation.aggregate(per_token, mask, cfg.aggregation, nt, ns)
    s = ratios.sequence_ratio(x["logprobs"], x["old_logprobs"], mask)  # [B]
    seq_adv = masked.masked_mean(x["advantages"], mask, axis=1)
    has_tokens = jnp.any(mask != 0, axis=1).astype(jnp.float32)
    metrics = diagnostics.ratio_metrics(s, seq_adv, has_tokens, ns, cfg.eps_low, cfg.eps_high)
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
