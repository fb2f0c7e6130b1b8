"""ARPO: Agentic Reinforced Policy Optimization (tool-using agents).

Citation: Guanting Dong, Hangyu Mao, Kai Ma, et al., "Agentic Reinforced Policy Optimization",
2025, https://arxiv.org/abs/2507.19849; official code https://github.com/dongguanting/ARPO (a verl
fork; ``vllm_rollout_with_tools.py`` for the rollout).

Rows: one per trajectory (rollout kind ``tool_tree``, ``rollouts/tool_tree.py``): per prompt M =
``train.group_size`` trajectories, N = ``initial_rollouts`` sampled from the prompt and the rest
BRANCHED after tool results where the entropy of the next tokens rises (the rollout's docstring
gives the rule: ``P(branch) = clip(alpha + beta_h * dH, 0, 1)``, at most ``beam_size - 1`` branches
per trajectory and round). Tool output is out of the loss (``loss_mask``).

    A_i = (R_i - mean_j R_j) / (std_j R_j + eps)                  (GRPO over the M trajectories)
    soft:  A_{i,t} = A_i
    hard:  A_{i,t} = (1/|D(i,t)|) sum_{j in D(i,t)} A_j,   D(i,t) = {j in group: token t of i is shared by j}
    L = token_mean( dual_clip_c( -min(rho A, clip(rho, 1-eps_low, 1+eps_high) A) ) ) + beta KL

Soft attribution (the paper's default and the code's) gives each trajectory its own advantage; a
shared prefix then appears in several rows with the same ratio, so its gradient sums the
descendants' advantages. Hard attribution gives a shared segment the mean advantage of the
trajectories that share it (``extras["shared_prefix"]`` [B, M]: how many leading tokens row i
shares with each row of its group; its own length on the diagonal).

Differs from GRPO in:
  1. Rows come from an entropy-gated branching tree of tool-using trajectories, not G independent
     samples; tool output is masked out of the loss.
  2. With ``attribution = "hard"`` the advantage is per token ``[B, T]``: shared prefixes get the
     mean advantage of their descendants.
  3. Dual-clip ``c = 3`` on negative advantages (verl's default in the ARPO scripts); no KL.

Defaults (ARPO scripts): ``initial_rollouts = 8`` of ``rollout.n = 16``, ``beam_size = 2``,
``alpha = 0.5`` (``branch_probability``), ``beta_h = 0.2`` (``entropy_weight``), the entropy proxy
over the first 20 tokens' top-10 log-probs; ``eps = 0.2``, ``beta = 0``. H_init is reset every
rollout (the code keeps a stale dict across calls, which looks like a bug).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "arpo"
PAPER = "Agentic Reinforced Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2507.19849"
ROLLOUT = "tool_tree"
ATTRIBUTIONS = ("soft", "hard")


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon
    eps_high: float = 0.2
    clip_c: float | None = 3.0  # dual-clip constant (verl)
    beta: float = 0.0  # KL weight (kl_loss_coef = 0 in the ARPO scripts)
    kl_estimator: str = "k3"
    kl_clamp: float | None = None
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"
    attribution: str = "soft"  # "soft" (paper default, code) or "hard" (shared prefixes: mean of descendants)
    initial_rollouts: int = 8  # N, trajectories sampled from the prompt (M = train.group_size)
    beam_size: int = 2  # B: at most B - 1 branches per trajectory and round
    alpha: float = 0.5  # alpha, base branch probability
    beta_h: float = 0.2  # beta, weight of the entropy change
    entropy_tokens: int = 20  # k: tokens of a segment in the entropy proxy
    entropy_top_k: int = 10  # top-k log-probs per token in the entropy proxy


def check_config(run_cfg: Any) -> str | None:
    """ARPO needs a tool (``env.tools``) and ``1 <= initial_rollouts <= train.group_size``."""
    a = run_cfg.algo if run_cfg.algo is not None else Config()
    if a.attribution not in ATTRIBUTIONS:
        return f"algo.attribution must be one of {ATTRIBUTIONS}, got {a.attribution!r}"
    if not run_cfg.env.tools:
        return "ARPO branches after tool results: set env.tools (e.g. env.tools=['python'])"
    if not 1 <= a.initial_rollouts <= run_cfg.train.group_size:
        return (
            f"algo.initial_rollouts={a.initial_rollouts} must lie in [1, train.group_size={run_cfg.train.group_size}]"
        )
    if a.beam_size < 1 or a.entropy_top_k < 1 or a.entropy_tokens < 1:
        return "algo.beam_size, algo.entropy_top_k and algo.entropy_tokens must be >= 1"
    return None


def hard_attribution(adv: Array, shared_prefix: Array, seq_len: int) -> Array:
    """``A_{i,t} = mean_{j: shared_prefix[i, j] > t} A_j`` ``[B, T]`` (rows group-major, ``M`` per group).

    ``adv`` [B] per-trajectory advantages; ``shared_prefix`` [B, M] (diagonal: the row's length, so
    every token of a row counts the row itself).
    """
    B, M = shared_prefix.shape
    group = adv.reshape(B // M, M)[jnp.arange(B) // M]  # [B, M] the advantages of row i's group
    t = jnp.arange(seq_len)
    shares = shared_prefix[:, None, :] > t[None, :, None]  # [B, T, M]
    total = jnp.sum(jnp.where(shares, group[:, None, :], 0.0), axis=-1)
    count = jnp.sum(shares, axis=-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), adv[:, None])  # [B, T]


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO's group advantage ``[B]`` (soft) or its hard attribution over shared prefixes ``[B, T]``."""
    adv, metrics = adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)  # A_i [B]
    if cfg.attribution == "soft":
        return adv, metrics
    inputs.require(rollout, ("shared_prefix",), f"{NAME}.advantages")
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    per_token = hard_attribution(adv, jnp.asarray(rollout["shared_prefix"], jnp.int32), mask.shape[1])  # [B, T]
    metrics = adv_ops.group_stats(
        per_token, jnp.asarray(rollout["rewards"], jnp.float32), mask, adv_ops.group_size_of(rollout)
    )
    return per_token, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """GRPO's clipped surrogate with dual-clip, token mean over the policy's tokens, plus ``beta`` * KL."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    if cfg.clip_c is not None:
        per_token = clipping.dual_clip(per_token, adv, cfg.clip_c)  # capped at -c A where A < 0
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token mean
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high, cfg.clip_c)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """``shared_prefix`` [B, G]: in every group rows 0 and 1 share their first half (a branch)."""
    i, j = jnp.arange(batch_size)[:, None] % group_size, jnp.arange(group_size)[None, :]
    pair = (i < 2) & (j < 2) & (i != j)
    shared = jnp.where(i == j, seq_len, jnp.where(pair, seq_len // 2, 0))
    return {"shared_prefix": shared.astype(jnp.int32)}
