"""DCPO: Dynamic Clipping Policy Optimization.

Yang et al., "DCPO: Dynamic Clipping Policy Optimization", 2025, https://arxiv.org/abs/2509.02333.
Official code: github.com/lime-RL/DCPO (``verl/trainer/ppo/core_algos.py``: ``get_clip_low_high``,
``compute_policy_loss_dcpo``, ``compute_dcpo_outcome_advantage``, ``get_mean_std``).

Objective (maximized; ``loss`` returns its negative), per prompt, paper Eq. 8::

    J = sum_{i=1..G} (1/|o_i|) sum_t  max( min(rho A_i, clip(rho, r_low(q), r_high(q)) A_i),  c A_i [A_i < 0] )

averaged over the ``P = num_seqs / G`` prompts of the batch (the expectation over questions).

* Dynamic-adaptive clipping (DAC): from ``|(rho - 1) q| <= eps`` with ``q = pi_old(o_{i,t})``,
  ``r_low(q) = 0.5 + 0.5 sqrt(max(1 - 4 eps_low / q, 0))`` and
  ``r_high(q) = min(0.5 + 0.5 sqrt(1 + 4 eps_high / q), r_max)``, ``r_max = max(c, 10)``. Rare tokens
  (small q) get a wide ratio range, likely tokens a narrow one; the probability ``rho q`` moves by
  at most about ``eps``.
* Smooth advantage standardization (SAS), per prompt x with persistent ``(n_x, mu_x, sigma_x)``; at
  visit ``i = n_x + 1`` with rewards ``R_1..R_G``: ``mu_new, sigma_new`` (std with ``std_ddof``) and the
  cumulative ``mu_tot = ((i-1) mu_x + mu_new) / i``,
  ``sigma_tot^2 = ((i-1) sigma_x^2 + sigma_new^2 + ((i-1)/i) (mu_new - mu_x)^2) / i``;
  ``A_new = (R - mu_new)/sigma_new`` and ``A_tot = (R - mu_tot)/sigma_tot`` (0 where the std is 0);
  ``SA_new = ((i-1)/i) A_new + (1/i) A_tot``, ``SA_tot = (1/i) A_new + ((i-1)/i) A_tot``;
  ``A = SA_new if |SA_new| < |SA_tot| else SA_tot``. A group of equal rewards at a revisited prompt
  keeps ``A = A_tot / i != 0`` whenever earlier visits disagreed.
* Only-token-mean (OTM) aggregation: each response's token mean, SUMMED over the G responses of a
  prompt ("without averaging all responses"; paper Eq. 8), then averaged over prompts.

Differs from GRPO in:
  1. the clip range of each token depends on its old probability (DAC) instead of a fixed ``eps``;
  2. dual-clip with ``c = 10`` for negative advantages;
  3. advantages are standardized with per-prompt statistics accumulated over every visit (SAS,
     state carried across steps), so degenerate groups still carry signal;
  4. OTM: the per-response token means are summed over a prompt's G responses, not averaged
     (``1/G``). Under the global normalizer this is ``G`` times GRPO's ``seq_mean_token_mean``:
     the same direction, a G-fold gradient, which matters through gradient clipping
     (``optim.max_grad_norm``), Adam's epsilon and the weight of a KL term;
  5. no KL term (``beta = 0``) and no dynamic sampling (no group is dropped or resampled).

Defaults and code-vs-paper differences (config fields):
  * ``eps_low = 0.16``, ``eps_high = 0.2``: the paper's table; the official scripts run 0.2 / 0.28.
  * ``aggregation = "seq_sum_token_mean"``: the paper's OTM, Eq. 8 (per-response token means summed
    over responses) divided by the GLOBAL number of prompts ``num_seqs / G``, so a micro-batch
    gives its share (``G`` comes from ``batch["group_sizes"]``, filled by ``batch_extras``).
    ``"token_mean"``: the released code's OTM today (``agg_loss``: a token mean over each
    micro-batch, here with the global normalizer). Until commit 2778707 (2025-12-20), i.e. when the
    paper's runs were made, the code's OTM was a token SUM over the micro-batch, a third form.
    ``"seq_mean_token_mean"`` (GRPO's ``1/G``) was this file's default before 2026-12;
    ``"seq_mean_token_sum"`` is also accepted.
  * ``std_ddof = 1``: the code's ``torch.std`` (unbiased); 0 is the population std.
  * ``old_mean_ratio = 1.0``: the code's ``user_old_mean_ratio``, which scales the stored mean and
    std before they are merged.
  * ``scale_by_std = True``: the code's ``norm_adv_by_std_in_grpo``; False uses ``R - mu`` for both
    ``A_new`` and ``A_tot``.
  * ``std_floor = 1e-6``: the code divides wherever the std is ``> 0``; a cumulative std below the
    floor is float round-off of equal rewards and is treated as 0 here.
  * State: ``init_state(cfg)`` is a table over ``cfg.num_prompts`` prompt ids; the rollout carries
    ``prompt_ids`` ``[B]`` (the dataset index of each row's prompt; every prompt at most once per
    batch). Without a state (``state=None``) every prompt is at its first visit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Metrics

NAME = "dcpo"
PAPER = "DCPO: Dynamic Clipping Policy Optimization (Yang et al., 2025)"
PAPER_URL = "https://arxiv.org/abs/2509.02333"

# "seq_sum_token_mean": Eq. 8 over the global number of prompts; the others as in ops.aggregation.
AGGREGATIONS = ("seq_sum_token_mean", "token_mean", "seq_mean_token_mean", "seq_mean_token_sum")


@dataclasses.dataclass(frozen=True)
class Config:
    """DCPO hyper-parameters (paper symbols; paper defaults, see the module docstring)."""

    eps_low: float = 0.16  # epsilon_low of DAC (scripts: 0.2)
    eps_high: float = 0.2  # epsilon_high of DAC (scripts: 0.28)
    clip_c: float = 10.0  # dual-clip c; r_max = max(c, 10)
    beta: float = 0.0  # KL weight; DCPO uses none
    kl_estimator: str = "k3"
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    aggregation: str = "seq_sum_token_mean"  # one of AGGREGATIONS; paper OTM (Eq. 8); code: "token_mean"
    std_ddof: int = 1
    scale_by_std: bool = True
    old_mean_ratio: float = 1.0  # code user_old_mean_ratio
    std_floor: float = 1e-6
    num_prompts: int = 0  # size of the prompt-id table of the SAS state (required for init_state)

    def __post_init__(self):
        if not (0 < self.eps_low and 0 < self.eps_high):
            raise ValueError(f"dcpo.Config: eps_low, eps_high must be > 0, got {self.eps_low}, {self.eps_high}")
        if self.clip_c <= 1:
            raise ValueError(f"dcpo.Config.clip_c must be > 1 (dual-clip), got {self.clip_c}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"dcpo.Config.aggregation={self.aggregation!r}; allowed: {AGGREGATIONS}")
        if self.beta < 0 or self.num_prompts < 0 or self.std_ddof not in (0, 1):
            raise ValueError(f"dcpo.Config: need beta >= 0, num_prompts >= 0, std_ddof in (0, 1); got {self}")
        if kl.ESTIMATORS.get(self.kl_estimator) is None:
            raise ValueError(f"dcpo.Config.kl_estimator={self.kl_estimator!r}; known: {sorted(kl.ESTIMATORS)}")


# --------------------------------------------------------------------------------------------
# Dynamic-adaptive clipping
# --------------------------------------------------------------------------------------------


def clip_bounds(q: Array, eps_low: float, eps_high: float, clip_c: float = 10.0) -> tuple[Array, Array]:
    """DAC ratio bounds ``(r_low(q), r_high(q))`` for old-policy token probabilities ``q`` (any shape).

    ``r_low = 0.5 + 0.5 sqrt(max(1 - 4 eps_low / q, 0))``,
    ``r_high = min(0.5 + 0.5 sqrt(1 + 4 eps_high / q), max(clip_c, 10))``; ``q = 0`` gives
    ``(0.5, r_max)``. Reference: arXiv 2509.02333, Sec. 3.1 (code ``get_clip_low_high``).
    """
    r_max = max(clip_c, 10.0)
    q = jnp.asarray(q, jnp.float32)
    safe = jnp.where(q > 0, q, 1.0)
    low = jnp.where(q > 0, 0.5 + 0.5 * jnp.sqrt(jnp.maximum(1.0 - 4.0 * eps_low / safe, 0.0)), 0.5)
    high = jnp.where(q > 0, jnp.minimum(0.5 + 0.5 * jnp.sqrt(1.0 + 4.0 * eps_high / safe), r_max), r_max)
    return low, high


# --------------------------------------------------------------------------------------------
# Smooth advantage standardization
# --------------------------------------------------------------------------------------------


def init_state(cfg: Config) -> dict[str, Array]:
    """Per-prompt SAS table: ``count`` (visits), ``mean``, ``std``, each ``[num_prompts]``."""
    if cfg.num_prompts < 1:
        raise ValueError(
            "dcpo.init_state: set Config.num_prompts to the size of the prompt pool (prompt ids are 0..N-1)"
        )
    n = cfg.num_prompts
    return {"count": jnp.zeros(n, jnp.int32), "mean": jnp.zeros(n, jnp.float32), "std": jnp.zeros(n, jnp.float32)}


def _prompt_rows(rollout: Mapping[str, Any], g: int, state: Mapping[str, Array]) -> Array:
    """One prompt id per group ``[P]``, validated when the ids are concrete."""
    if "prompt_ids" not in rollout:
        raise KeyError(
            f"dcpo: rollout needs 'prompt_ids' [B] (dataset index of each row's prompt) to use the SAS state; it has {sorted(rollout)}"
        )
    ids = jnp.asarray(rollout["prompt_ids"]).astype(jnp.int32)
    per_group = ids[::g]
    if not isinstance(ids, jax.core.Tracer):
        host = np.asarray(ids)
        n = state["count"].shape[0]
        if not np.array_equal(host, np.repeat(host[::g], g)):
            raise ValueError("dcpo: prompt_ids must be constant within each group of rows")
        if host.min() < 0 or host.max() >= n:
            raise ValueError(
                f"dcpo: prompt_ids must lie in [0, {n}) (Config.num_prompts), got [{host.min()}, {host.max()}]"
            )
        if len(np.unique(host[::g])) != len(host[::g]):
            raise ValueError(
                "dcpo: a prompt appears in two groups of one batch; SAS merges one visit per prompt per step"
            )
    return per_group


def _sas(rewards: Array, g: int, cfg: Config, count: Array, mean_old: Array, std_old: Array):
    """SAS for one batch. ``rewards`` ``[B]``; ``count``/``mean_old``/``std_old`` ``[P]`` (stored
    values of each group's prompt). Returns ``(A [B], mu_tot [P], sigma_tot [P], A_new [B], A_tot [B])``."""
    r = rewards.reshape(-1, g)  # [P, G]
    mu_new = jnp.mean(r, axis=1)
    std_new = jnp.std(r, axis=1, ddof=cfg.std_ddof)
    equal = jnp.max(r, axis=1) == jnp.min(r, axis=1)  # exact: a float std of equal values may not be 0
    n = count.astype(jnp.float32)
    i = n + 1.0
    mu_o = cfg.old_mean_ratio * mean_old
    sd_o = cfg.old_mean_ratio * std_old
    first = count == 0
    mu_tot = jnp.where(first, mu_new, (n * mu_o + mu_new) / i)
    var_tot = (n * sd_o**2 + std_new**2 + (n / i) * (mu_new - mu_o) ** 2) / i
    std_tot = jnp.where(first, std_new, jnp.sqrt(var_tot))
    new_ok = ~equal & (std_new > 0)
    tot_ok = std_tot > cfg.std_floor
    if cfg.scale_by_std:
        a_new = jnp.where(new_ok[:, None], (r - mu_new[:, None]) / jnp.where(new_ok, std_new, 1.0)[:, None], 0.0)
        a_tot = jnp.where(tot_ok[:, None], (r - mu_tot[:, None]) / jnp.where(tot_ok, std_tot, 1.0)[:, None], 0.0)
    else:
        a_new = r - mu_new[:, None]
        a_tot = r - mu_tot[:, None]
    w_new = ((i - 1.0) / i)[:, None]
    sa_new = w_new * a_new + (1.0 - w_new) * a_tot
    sa_tot = (1.0 - w_new) * a_new + w_new * a_tot
    a = jnp.where(jnp.abs(sa_new) < jnp.abs(sa_tot), sa_new, sa_tot)  # ties pick SA_tot, as the code
    return a.reshape(-1), mu_tot, std_tot, a_new.reshape(-1), a_tot.reshape(-1)


def _stored(rollout, g, cfg, state):
    p = jnp.shape(rollout["rewards"])[0] // g
    if state is None:
        zeros = jnp.zeros(p, jnp.float32)
        return None, jnp.zeros(p, jnp.int32), zeros, zeros
    ids = _prompt_rows(rollout, g, state)
    return ids, state["count"][ids], state["mean"][ids], state["std"][ids]


def advantages(
    rollout: Mapping[str, Any], cfg: Config, state: Mapping[str, Array] | None = None
) -> tuple[Array, Metrics]:
    """SAS advantages ``[B]`` from this batch's rewards and the stored per-prompt statistics.

    Needs ``rewards`` [B], ``mask`` and the group size; with a state also ``prompt_ids`` [B].
    ``state=None`` treats every prompt as first seen (then ``A = A_new``, GRPO without ``eps``).
    """
    inputs.require(rollout, ("rewards", "mask"), f"{NAME}.advantages")
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    _, count, mean_old, std_old = _stored(rollout, g, cfg, state)
    a, _, _, a_new, _ = _sas(rewards, g, cfg, count, mean_old, std_old)
    metrics = adv_ops.group_stats(a, rewards, rollout["mask"], g)
    metrics["dcpo/frac_nonzero_adv"] = jnp.mean((a != 0).astype(jnp.float32))
    metrics["dcpo/frac_nonzero_adv_grpo"] = jnp.mean((a_new != 0).astype(jnp.float32))
    metrics["dcpo/frac_revisited"] = jnp.mean((count > 0).astype(jnp.float32))
    return a, metrics


def update_state(state: Mapping[str, Array], rollout: Mapping[str, Any], cfg: Config) -> dict[str, Array]:
    """Writes ``(n_x + 1, mu_tot, sigma_tot)`` back for every prompt of the batch (code ``get_mean_std``)."""
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    ids, count, mean_old, std_old = _stored(rollout, g, cfg, state)
    _, mu_tot, std_tot, _, _ = _sas(rewards, g, cfg, count, mean_old, std_old)
    return {
        "count": state["count"].at[ids].set(count + 1),
        "mean": state["mean"].at[ids].set(mu_tot),
        "std": state["std"].at[ids].set(std_tot),
    }


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


def batch_extras(rollout: Mapping[str, Any], cfg: Config) -> dict[str, Array]:
    """``{"group_sizes": G [B] f32}``: each row's group size, from which the loss counts the batch's
    prompts (``num_seqs / G``) for the Eq. 8 aggregation (a micro-batch cannot count them itself)."""
    g = adv_ops.group_size_of(rollout)
    return {"group_sizes": jnp.full(jnp.shape(rollout["rewards"])[:1], g, jnp.float32)}


def _num_prompts(batch: Mapping[str, Any], num_seqs: Array, cfg: Config) -> Array | None:
    """The ``seq_sum_token_mean`` divisor ``P = num_seqs / G`` (global), None for the other modes."""
    if cfg.aggregation != "seq_sum_token_mean":
        return None
    inputs.require(
        batch, ("group_sizes",), f"{NAME} (aggregation 'seq_sum_token_mean' counts prompts; from dcpo.batch_extras)"
    )
    return num_seqs / jnp.max(jnp.asarray(batch["group_sizes"], jnp.float32))


def loss(logprobs: Array, batch: Mapping[str, Any], cfg: Config) -> tuple[Array, Metrics]:
    """DAC-clipped surrogate with dual-clip (+ ``beta`` KL), aggregated by ``cfg.aggregation`` (Eq. 8).

    ``l_{i,t} = max(-min(rho A, clip(rho, r_low(q), r_high(q)) A), ...)`` with the dual-clip cap
    ``-c A`` for ``A < 0``, ``q = exp(old_logprobs)``; times ``is_weights``. ``logprobs`` ``[B, T]``.
    Default aggregation ``sum_i (1/|o_i|) sum_t l_{i,t} / P`` with ``P = num_seqs / G`` prompts.
    Metrics add ``dcpo/frac_tokens_with_grad`` (``A != 0`` and no clip active) and the mean bounds.
    Reference: arXiv 2509.02333 (code ``compute_policy_loss_dcpo``, ``clip_type="dynamic"``).
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    old = masked.where_mask(x["old_logprobs"], mask)
    low, high = clip_bounds(jnp.exp(old), cfg.eps_low, cfg.eps_high, cfg.clip_c)  # r_low(q), r_high(q) [B, T]
    eps_low, eps_high = 1.0 - low, high - 1.0
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(
        ratio, adv, eps_low, eps_high
    )  # -min(rho A, clip(rho, r_low, r_high) A) [B, T]
    per_token = clipping.dual_clip(per_token, adv, cfg.clip_c)  # capped at -c A where A < 0
    p = _num_prompts(batch, ns, cfg)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns, p)  # (1/P) sum_i mean_t
    kl_term = (
        kl.penalty(x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, p, cfg.kl_clamp)
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, eps_low, eps_high, cfg.clip_c)  # clip_frac, ratio/*
    total, metrics = diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
    clipped = jnp.zeros(mask.shape, bool)
    for hit in clipping.clip_masks(ratio, adv, eps_low, eps_high, cfg.clip_c).values():
        clipped = clipped | hit
    live = (adv != 0) & ~clipped
    metrics["dcpo/frac_tokens_with_grad"] = masked.masked_sum(live.astype(jnp.float32), mask) / nt
    metrics["dcpo/r_low_mean"] = masked.masked_sum(low, mask) / nt
    metrics["dcpo/r_high_mean"] = masked.masked_sum(high, mask) / nt
    return total, metrics


def reinforce_loss(logprobs: Array, batch: Mapping[str, Any], cfg: Config) -> Array:
    """On-policy surrogate ``agg[-A log pi]`` under ``cfg.aggregation`` with the Eq. 8 prompt count."""
    mask = jnp.asarray(batch["mask"], jnp.float32)
    a = inputs.per_token(batch["advantages"], mask, "advantages", NAME)
    ns = jnp.asarray(batch["num_seqs"], jnp.float32)
    return aggregation.aggregate(
        -a * logprobs, mask, cfg.aggregation, batch["num_tokens"], ns, _num_prompts(batch, ns, cfg)
    )


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """``prompt_ids`` (one distinct id per group) for the invariant suite."""
    return {"prompt_ids": jnp.repeat(jnp.arange(batch_size // group_size, dtype=jnp.int32), group_size)}
