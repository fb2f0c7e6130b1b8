"""GTPO: group policy optimization that protects conflict tokens and filters high-entropy completions.

Simoni, Fontana, Rossolini, Saracino, "GTPO: Trajectory-Based Policy Optimization in Large Language
Models", https://arxiv.org/abs/2508.03772 (v5 retitled "GTPO: Stabilizing Group Relative Policy Optimization via
Gradient and Entropy Control"). Official code: github.com/winstonsmith1897/GTPO
(``gtpo/gtpo_training.py``). Not to be confused with "GTPO and GRPO-S" (arXiv 2508.04349).

Objective (maximized; README form, the default here)::

    J = (1/G) sum_i  delta_i (A_i - gamma <H>_i) / |o_i|  sum_t  r_{i,t} lambda_{i,t}

* ``A_i = R_i - mean_j R_j`` (the code comments the std division out);
* ``<H>_i = (1/|o_i|) sum_t H_{i,t}``, the completion's mean full-vocabulary entropy;
* ``delta_i`` the entropy gate: with ``<H>_ini`` the initial policy's mean entropy,
  ``delta_i = 1`` if ``<H>_ini > tau_H``, else ``delta_i = [<H>_i <= tau_H]``;
* ``lambda_{i,t}`` the conflict weight: with ``P = {i: A_i > 0}``, ``N = {i: A_i < 0}``, a
  (position, token id) pair is *shared* when some completion of P and some completion of N put that
  token at that position. A token of an active completion is *in conflict* when it lies in the
  maximal shared run from the first token (forward) or in the maximal shared run from the last
  token, with completions right-aligned by their own length (backward; shared suffixes such as
  ``</answer>``). ``lambda^f = W`` on forward-conflict tokens of P, ``0`` on those of N, else 1;
  ``lambda^b`` likewise; ``lambda = lambda^f lambda^b`` (so ``W^2`` where both runs cover a token
  of P). Completions with ``A_i = 0`` have ``lambda = 1``.
* ``r_{i,t}`` is ``exp(log pi_theta - sg[log pi_theta])`` (value 1, gradient ``grad log pi``), as in
  the code: REINFORCE, no ratio clipping, no KL.

The per-token advantage handed to the loss is ``A_{i,t} = delta_i (A_i - gamma <H>_i) lambda_{i,t}``
(divided by ``n^conf_i = max(1, #conflict tokens of i)`` when ``conflict_norm``), so the loss is a
plain policy gradient over ``[B, T]`` advantages.

Differs from GRPO in:
  1. the advantage is centred, not standardized (``std_normalize=False``);
  2. tokens shared by positive and negative completions at the start or end of the completion get
     weight ``W`` in positive completions and ``0`` in negative ones (no contradictory gradient on
     format tokens);
  3. completions with mean entropy above ``tau_H`` get no gradient, and every advantage is shifted
     by ``-gamma <H>_i`` (an entropy penalty folded into the advantage);
  4. no ratio clipping and no KL term (``beta = 0``, no reference model).

Code-vs-paper differences, each a config field (default first, and why):
  * ``entropy_gate``: ``"paper"`` (gate on ``<H>_ini``, the project's paper-first rule; it also
    avoids the code's failure mode of zeroing every advantage of a model whose entropy starts above
    ``tau_H``) | ``"code"`` (``delta_i = [<H>_i <= tau_H]`` always). ``<H>_ini`` is ``cfg.h_ini`` or,
    when None, the mean completion entropy of the first batch seen (kept in the algorithm state).
  * ``tau_h``: 0.7 (code ``ENT_THRESHOLD``); the paper writes ``ln 2 = 0.693``.
  * ``conflict_norm``: False (README); True divides each completion's loss by ``n^conf_i`` (code).
  * ``aggregation``: ``"seq_mean_token_mean"`` (README's ``1/G``) | ``"seq_sum_token_mean"``
    (code: per-completion token means summed over the batch, no ``1/G``).
  * ``conflict_mode``: ``"prefix_suffix_runs"`` (code; ``tests/test_algorithms_gtpo.py`` pins a case) |
    ``"any_position"`` (paper text: every shared (position, token) pair, not only the runs) |
    ``"none"`` (ablation: ``lambda = 1``; the conflict tokens are still found and logged).
  * ``std_normalize``: False (code, README) | True (GRPO's ``/(std + eps)``).
  * ``ratio``: ``"reinforce"`` (code) | ``"ratio"`` (``exp(log pi_theta - log pi_old)``, unclipped;
    the README's ``r_{i,t}``, undefined there). They coincide on-policy.

Implementation note: at commit 4a23524 the official ``build_conflict_mask`` counts ``n^conf`` from the
backward run in reversed coordinates (``[4, 2, 2, 1]`` on the case of ``tests/test_algorithms_gtpo.py``);
we count it in the original coordinates (``[4, 3, 3, 1]``), which is what the definition says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Metrics

NAME = "gtpo"
PAPER = "GTPO: Trajectory-Based Policy Optimization in Large Language Models (Simoni et al., 2025)"
PAPER_URL = "https://arxiv.org/abs/2508.03772"

CONFLICT_MODES = ("prefix_suffix_runs", "any_position", "none")
ENTROPY_GATES = ("paper", "code")
RATIOS = ("reinforce", "ratio")
AGG_MODES = ("seq_mean_token_mean", "seq_sum_token_mean")


@dataclasses.dataclass(frozen=True)
class Config:
    """GTPO hyper-parameters (paper symbols; defaults from the code's ``config.yaml`` / README)."""

    w: float = 2.0  # W (code W_RAW): weight of conflict tokens in positive completions
    gamma: float = 0.1  # gamma (code ENT_SCALE): entropy penalty on the advantage
    tau_h: float = 0.7  # tau_H (code ENT_THRESHOLD); paper: ln 2
    entropy_gate: str = "paper"  # "paper" (delta_i uses <H>_ini) | "code" (always filter)
    h_ini: float | None = None  # <H>_ini; None: measured on the first batch (algorithm state)
    conflict_mode: str = "prefix_suffix_runs"  # | "any_position" | "none" (ablation)
    conflict_norm: bool = False  # divide by n^conf_i (code) | not (README)
    std_normalize: bool = False  # A_i = R_i - mean (code) | GRPO z-score
    eps: float = 1e-6  # only with std_normalize
    ratio: str = "reinforce"  # "reinforce": exp(lp - sg lp) | "ratio": exp(lp - old_lp)
    aggregation: str = "seq_mean_token_mean"  # README 1/G | "seq_sum_token_mean" (code)
    beta: float = 0.0  # KL weight; GTPO drops the KL and the reference model
    kl_estimator: str = "k3"
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none

    def __post_init__(self):
        for field, allowed in (
            ("conflict_mode", CONFLICT_MODES),
            ("entropy_gate", ENTROPY_GATES),
            ("ratio", RATIOS),
            ("aggregation", AGG_MODES),
        ):
            if getattr(self, field) not in allowed:
                raise ValueError(f"gtpo.Config.{field}={getattr(self, field)!r}; allowed: {allowed}")
        if self.w < 0 or self.gamma < 0 or self.beta < 0:
            raise ValueError(f"gtpo.Config: w, gamma, beta must be >= 0, got {self.w}, {self.gamma}, {self.beta}")
        if kl.ESTIMATORS.get(self.kl_estimator) is None:
            raise ValueError(f"gtpo.Config.kl_estimator={self.kl_estimator!r}; known: {sorted(kl.ESTIMATORS)}")


# --------------------------------------------------------------------------------------------
# Conflict tokens
# --------------------------------------------------------------------------------------------


def _shared(tokens: Array, valid: Array, pos: Array, neg: Array, group_size: int) -> Array:
    """``shared[b, t]``: some positive and some negative completion of ``b``'s group put token
    ``tokens[b, t]`` at position ``t`` (both valid there). ``[B, T]`` bool."""
    b, t = tokens.shape
    p = b // group_size
    tok = tokens.reshape(p, group_size, t)
    val = valid.reshape(p, group_size, t)
    is_pos = pos.reshape(p, group_size)
    is_neg = neg.reshape(p, group_size)

    # Loop over the partner j (G steps, memory [P, G, T]) rather than a [P, G, G, T] comparison.
    def step(carry, partner):
        in_pos, in_neg = carry
        tok_j, val_j, pos_j, neg_j = partner  # [P, T], [P, T], [P], [P]
        same = (tok == tok_j[:, None, :]) & val_j[:, None, :]  # [P, G, T]
        in_pos = in_pos | (same & pos_j[:, None, None])
        in_neg = in_neg | (same & neg_j[:, None, None])
        return (in_pos, in_neg), None

    zeros = jnp.zeros((p, group_size, t), bool)
    partners = (tok.transpose(1, 0, 2), val.transpose(1, 0, 2), is_pos.T, is_neg.T)
    (in_pos, in_neg), _ = jax.lax.scan(step, (zeros, zeros), partners)
    return (in_pos & in_neg & val).reshape(b, t)


def _right_align(x: Array, lengths: Array) -> Array:
    """``y[b, k] = x[b, lengths[b] - 1 - k]`` for ``k < lengths[b]`` (else ``x[b, 0]``; mask it).

    An involution on the valid prefix, so it also maps right-aligned arrays back."""
    t = x.shape[1]
    idx = lengths[:, None] - 1 - jnp.arange(t)[None, :]
    return jnp.take_along_axis(x, jnp.clip(idx, 0, t - 1), axis=1)


def _run_from_start(flags: Array) -> Array:
    """Maximal run of True from position 0 along axis 1 (cumulative AND)."""
    return jnp.cumprod(flags.astype(jnp.int32), axis=1).astype(bool)


def conflict_weights(
    tokens: Array,
    mask: Array,
    advantages: Array,
    group_size: int,
    w: float = 2.0,
    mode: str = "prefix_suffix_runs",
) -> tuple[Array, Array, Array]:
    """GTPO's conflict weights ``lambda [B, T]``, conflict mask ``[B, T]`` and ``n^conf [B]``.

    ``tokens`` ``[B, T]`` int, ``mask`` ``[B, T]`` (1 on completion tokens; completions must be
    right-padded, the valid tokens a prefix of the row), ``advantages`` ``[B]`` (only their signs
    matter: ``P = {A > 0}``, ``N = {A < 0}``), rows group-major with ``group_size`` per group.

    ``mode="prefix_suffix_runs"`` (code): conflict = maximal shared run from the first token, or
    from the last token with rows right-aligned by their own length; ``lambda = lambda^f lambda^b``
    with ``lambda^x = W`` (P) / ``0`` (N) on that run's tokens, 1 elsewhere.
    ``mode="any_position"`` (paper text): conflict = every shared (position, token) pair;
    ``lambda = W`` (P) / ``0`` (N) there, 1 elsewhere.
    ``n^conf_i = max(1, #conflict tokens of i)``; completions with ``A = 0`` have ``lambda = 1``,
    no conflict tokens and ``n^conf = 1``. Masked entries of ``lambda`` are 0.
    Reference: arXiv 2508.03772, Sec. 3 (code ``build_conflict_mask``).
    """
    if mode not in CONFLICT_MODES[:2]:
        raise ValueError(f"gtpo.conflict_weights: mode={mode!r}; allowed: {CONFLICT_MODES[:2]}")
    if tokens.ndim != 2 or tokens.shape != mask.shape:
        raise ValueError(f"gtpo.conflict_weights: tokens {tokens.shape} and mask {mask.shape} must both be [B, T]")
    if advantages.shape != tokens.shape[:1]:
        raise ValueError(f"gtpo.conflict_weights: advantages {advantages.shape} must be [B]={tokens.shape[:1]}")
    if tokens.shape[0] % group_size:
        raise ValueError(f"gtpo.conflict_weights: {tokens.shape[0]} rows are not whole groups of {group_size}")
    valid = mask != 0
    pos = advantages > 0
    neg = advantages < 0
    active = (pos | neg)[:, None]
    weight = jnp.where(pos, w, 0.0)[:, None]  # lambda on a conflict token of an active row

    shared_fwd = _shared(tokens, valid, pos, neg, group_size)
    if mode == "any_position":
        conflict = shared_fwd & active
        lam = jnp.where(conflict, weight, 1.0)
    else:
        lengths = jnp.sum(valid, axis=1).astype(jnp.int32)
        fwd = _run_from_start(shared_fwd) & active & valid
        tok_rev = _right_align(tokens, lengths)
        valid_rev = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
        shared_rev = _shared(tok_rev, valid_rev, pos, neg, group_size)
        bwd = _right_align(_run_from_start(shared_rev) & valid_rev, lengths) & active & valid
        conflict = fwd | bwd
        lam = jnp.where(fwd, weight, 1.0) * jnp.where(bwd, weight, 1.0)
    n_conf = jnp.maximum(jnp.sum(conflict, axis=1), 1).astype(jnp.float32)
    return masked.where_mask(lam.astype(jnp.float32), mask), conflict, n_conf


# --------------------------------------------------------------------------------------------
# Entropy gate
# --------------------------------------------------------------------------------------------


def entropy_gate(mean_entropy: Array, tau_h: float, h_ini: Array | float | None) -> Array:
    """``delta_i`` ``[B]`` (f32 0/1). ``h_ini=None``: code rule ``[<H>_i <= tau_H]``; else the paper
    rule ``1`` if ``<H>_ini > tau_H`` else ``[<H>_i <= tau_H]``. Reference: arXiv 2508.03772 (README)."""
    low = mean_entropy <= tau_h
    if h_ini is not None:
        low = low | (jnp.asarray(h_ini) > tau_h)
    return low.astype(jnp.float32)


# --------------------------------------------------------------------------------------------
# Algorithm hooks
# --------------------------------------------------------------------------------------------


def init_state(cfg: Config) -> dict[str, Array]:
    """``{"h_ini": <H>_ini}``: ``cfg.h_ini``, or NaN until the first batch measures it."""
    return {"h_ini": jnp.asarray(jnp.nan if cfg.h_ini is None else cfg.h_ini, jnp.float32)}


def _completion_entropy(rollout: Mapping[str, Any]) -> Array:
    if "entropies" not in rollout:
        raise KeyError(
            "gtpo: rollout needs 'entropies' [B, T] (per-token entropy of the policy) for the entropy "
            f"filter; turn on entropies in the sampler. Rollout has {sorted(rollout)}"
        )
    ent = jnp.asarray(rollout["entropies"], jnp.float32)
    if ent.shape != jnp.shape(rollout["mask"]):
        raise ValueError(
            f"gtpo: rollout['entropies'] {ent.shape} must be [B, T] like 'mask' {jnp.shape(rollout['mask'])}"
        )
    return masked.masked_mean(ent, rollout["mask"], axis=1)  # [B]


def _h_ini(state: Mapping[str, Array] | None, mean_entropy: Array) -> Array:
    """The state's ``<H>_ini``, or this batch's mean completion entropy while it is unmeasured."""
    batch_h = jnp.mean(mean_entropy)
    if state is None:
        return batch_h
    h = jnp.asarray(state["h_ini"], jnp.float32)
    return jnp.where(jnp.isnan(h), batch_h, h)


def update_state(state: Mapping[str, Array], rollout: Mapping[str, Any], cfg: Config) -> dict[str, Array]:
    """Records ``<H>_ini`` from the first batch (the initial policy's samples); later batches keep it."""
    return {"h_ini": _h_ini(state, _completion_entropy(rollout))}


def advantages(
    rollout: Mapping[str, Any], cfg: Config, state: Mapping[str, Array] | None = None
) -> tuple[Array, Metrics]:
    """Per-token GTPO advantages ``A_{i,t} = delta_i (A_i - gamma <H>_i) lambda_{i,t} [/ n^conf_i]``. ``[B, T]``.

    Needs ``rewards`` [B], ``tokens``, ``mask``, ``entropies`` [B, T] and the group size
    (``group_size`` or ``group_ids``). Signs of the base advantage ``A_i`` (before the entropy
    shift) define P and N, as in the code.
    """
    inputs.require(rollout, ("rewards", "tokens", "mask"), f"{NAME}.advantages")
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    if cfg.std_normalize:
        base = adv_ops.group_normalized(rewards, g, ddof=1, eps=cfg.eps)
    else:
        base = adv_ops.group_centered(rewards, g)
    mean_h = _completion_entropy(rollout)
    h_ini = _h_ini(state, mean_h) if cfg.entropy_gate == "paper" else None
    delta = entropy_gate(mean_h, cfg.tau_h, h_ini)
    shaped = delta * (base - cfg.gamma * mean_h)  # [B]
    mode = "prefix_suffix_runs" if cfg.conflict_mode == "none" else cfg.conflict_mode
    lam, conflict, n_conf = conflict_weights(rollout["tokens"], mask, base, g, cfg.w, mode)
    if cfg.conflict_mode == "none":
        lam, n_conf = masked.where_mask(jnp.ones_like(lam), mask), jnp.ones_like(n_conf)
    scale = shaped / n_conf if cfg.conflict_norm else shaped
    adv = masked.where_mask(scale[:, None] * lam, mask)  # [B, T]

    valid = mask != 0
    n_tok = jnp.maximum(jnp.sum(valid), 1)
    metrics = {
        **adv_ops.group_stats(adv, rewards, mask, g),
        "gtpo/conflict_frac": jnp.sum(conflict & valid) / n_tok,
        "gtpo/frac_entropy_filtered": 1.0 - jnp.mean(delta),
        "gtpo/completion_entropy": jnp.mean(mean_h),
        "gtpo/h_ini": jnp.mean(mean_h) if h_ini is None else h_ini,
    }
    if "sampler_logprobs" in rollout:
        lp = jnp.asarray(rollout["sampler_logprobs"], jnp.float32)
        metrics["gtpo/conflict_logprob"] = masked.masked_mean(lp, conflict & valid)
    return adv, metrics


def loss(logprobs: Array, batch: Mapping[str, Any], cfg: Config) -> tuple[Array, Metrics]:
    """GTPO policy-gradient loss (minimized) over per-token advantages ``A_{i,t}``.

    ``l_{i,t} = -r_{i,t} A_{i,t} w_{i,t} [+ beta KL_{i,t}]`` with ``r = exp(lp - sg lp)``
    (``ratio="reinforce"``) or ``exp(lp - old_lp)`` (``"ratio"``, unclipped), ``w`` the
    ``is_weights``; each completion's token mean, then averaged over completions (``/num_seqs``,
    README) or summed (code). ``logprobs`` ``[B, T]``; batch keys as in ``jaxrl_llm.types``
    (``ref_logprobs`` iff ``beta > 0``). Reference: arXiv 2508.03772.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    lp, mask, adv, nt, ns = x["logprobs"], x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    if cfg.ratio == "reinforce":
        lp_m = masked.where_mask(lp, mask)
        r = jnp.exp(lp_m - jax.lax.stop_gradient(lp_m))
    else:
        r = ratios.token_ratio(lp, x["old_logprobs"], mask)
    policy = aggregation.aggregate(
        -r * adv * x["is_weights"], mask, cfg.aggregation, nt, ns
    )  # README: (1/G) sum_i mean_t
    # No clipping in GTPO: clip_frac is 0 by construction (kept so plots line up across methods).
    metrics = {"clip_frac": jnp.zeros((), jnp.float32), "ratio/mean": masked.masked_sum(r, mask) / nt}
    kl_term = (
        kl.penalty(lp, x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp)
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)


def reinforce_loss(logprobs: Array, batch: Mapping[str, Any], cfg: Config) -> Array:
    """The REINFORCE surrogate ``-sum A_{i,t} log pi`` under GTPO's aggregation (invariant-suite hook)."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    per_token = -x["advantages"] * masked.where_mask(x["logprobs"], x["mask"]) * x["is_weights"]
    return aggregation.aggregate(per_token, x["mask"], cfg.aggregation, x["num_tokens"], x["num_seqs"])


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random ``tokens`` (small vocabulary, so groups share tokens) and ``entropies`` for the invariant suite."""
    k1, k2 = jax.random.split(key)
    return {
        "tokens": jax.random.randint(k1, (batch_size, seq_len), 0, 3),
        "entropies": jax.random.uniform(k2, (batch_size, seq_len), minval=0.0, maxval=1.0),
    }
