"""HAPO: heterogeneous adaptive policy optimization (token-entropy-aware sampling, advantage and clip).

Zheng Liu, Mengjie Liu, et al., Wentao Zhang, "From Uniform to Heterogeneous: Tailoring Policy
Optimization to Every Token's Nature", 2025, https://arxiv.org/abs/2509.16591. Official code:
github.com/starriver030515/HAPO (``verl/trainer/ppo/core_algos.py``: ``compute_entropy_h``,
``ada_clip``, ``ada_advantage``, ``compute_policy_loss``, ``compute_hapo_outcome_advantage``;
``vllm/v1/sample/sampler.py``). Not "history-aware policy optimization" (also HAPO).

Every token gets a normalized entropy score ``h^_t`` in [-1, 1] from its full-vocabulary entropy
``H_t`` relative to the batch: with ``e = log max(H, floor)`` over the batch's valid tokens,
``m`` = the ``pivot``-quantile of e (nearest rank), ``s = rms(e - m)``, ``h = (e - m)/s``,
``k+ = 1/max h+``, ``k- = 1/|min h-|``: ``h^ = k+ h`` for ``h > 0`` and ``k- h`` for ``h <= 0``.

    Sampling:   T_t = T (1 + tau clip(h^_t, -1, 1)), h^_t from the logits at that step and the
                statistics (m, s, k+, k-) of the PREVIOUS step's batch (plain T at the first step).
    Advantage:  A_i = (R_i - mu_tok) / (sigma_tok + eps),  mu_tok = sum_i |o_i| R_i / sum_i |o_i|,
                sigma_tok^2 = sum_i |o_i| (R_i - mu_tok)^2 / sum_i |o_i|   (token-weighted group stats;
                GRPO's advantage for the whole group if any |A_i| >= adv_fallback)
    Clip:       eps_high,t = eps_high (1 + alpha_c h^) if h^ > 0;  eps_low,t = eps_low (1 - alpha_c h^) if h^ <= 0
    Redistrib.: A^ent = A (1 + beta_A h^); N = (1 - eps_low,t/2, 1 + eps_high,t/2);
                h^ > 0: A' = A if rho in N else A^ent;   h^ <= 0: A' = A^ent if rho in N else A
    Loss:       -min(rho A', clip(rho, 1 - eps_low,t, 1 + eps_high,t) A'), dual-clip c for A' < 0,
                token-mean, no KL.

Differs from GRPO in:
  1. the sampler's temperature is per token, raised at high-entropy (forking) tokens and lowered at
     low-entropy ones (``temperature_rule``; state: the previous batch's entropy statistics);
  2. the group mean and std weight each completion by its length (token-level group average);
  3. advantages are amplified at high-entropy tokens whose ratio has already moved, and attenuated
     at low-entropy tokens still near the old policy (differential advantage redistribution);
  4. the clip range widens upward at high-entropy tokens and downward at low-entropy ones;
  5. token-mean aggregation, dual-clip, no KL, and DAPO's dynamic sampling (``filter_groups``).

Code-vs-paper differences, each a config field (default first, and why):
  * ``sign_mode``: ``"paper"`` (``k- = 1/|min h-|``, so ``h^ in [-1, 0]`` for low-entropy tokens,
    which then get a lower temperature, a wider lower clip and attenuated advantages, as the paper
    describes) | ``"code"`` (``k- = 1/min h- < 0``: the released code maps every token to
    ``h^ >= 0``; for replication).
  * ``h^`` in the loss: the code recomputes it from the CURRENT policy's entropies with statistics
    per micro-batch; here it is computed once per batch from the rollout's ``entropies``
    (``batch_extras``), because per-micro-batch statistics would break the partition contract
    (the loss must not depend on how the batch is split). On the first epoch the two coincide
    when the batch is one micro-batch. The trainer must fill ``rollout["entropies"]`` with the
    policy's own (temperature-1) entropies for this to match the code exactly; the sampler's
    entropies of the tempered distribution differ by O(tau).
  * ``pivot = 0.8`` (``entropy_pivot`` in the scripts; "median" in the code's naming), nearest-rank
    quantile with round-half-to-even (Python's ``round``, as the code).
  * ``adv_fallback = 5.0``: the code's threshold (not in the abstract). Token-level stats are
    population (ddof 0) over tokens; the fallback is GRPO with ddof 1; eps 1e-6.
  * ``fallback_counts_padding``: False (the test looks at the group's rows, ``|A_i| >= 5``) | True
    (the code: ``compute_hapo_outcome_advantage`` tests the ``[G, T]`` matrix ``score * mask``, so
    every PADDED position of a row shorter than the padded width ``T`` contributes
    ``|0 - mu_tok| / (sigma_tok + eps)`` too). For rewards in {0, 1} the two agree (a padded
    position has the value of a row with reward 0, which a mixed group has); for other rewards the
    code falls back more often, and depending on the padded width, which is why it is not the default.
  * ``tau = 0.05``, ``temperature = 1.0``, ``beta_a = 1``, ``alpha_c = 1``,
    ``eps_low = eps_high = 0.2``, ``clip_c = 10``: the Qwen2.5-Math-7B script.
  * ``dynamic_sampling = True``: the scripts enable DAPO's group filter (``filter_groups``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, entropy, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "hapo"
PAPER = "From Uniform to Heterogeneous: Tailoring Policy Optimization to Every Token's Nature (Liu et al., 2025)"
PAPER_URL = "https://arxiv.org/abs/2509.16591"

SIGN_MODES = ("paper", "code")
_TINY = 1e-8  # the code's clamps on the variance and on max h+ / min h-


@dataclasses.dataclass(frozen=True)
class Config:
    temperature: float = 1.0  # T, the base sampling temperature
    tau: float = 0.05  # tau (``temperature_tau``): T_t = T (1 + tau h^)
    pivot: float = 0.8  # quantile level of log-entropy used as the centre m
    entropy_floor: float = 1e-6  # H is floored here before the log
    sign_mode: str = "paper"  # one of SIGN_MODES
    adv_fallback: float = 5.0  # any |A| >= this in a group -> GRPO advantage for the group
    fallback_counts_padding: bool = False  # also test padded positions (value (0 - mu)/sigma), as the code
    std_eps: float = 1e-6  # eps of the token-level std and of the GRPO fallback
    adaptive_advantage: bool = True  # differential advantage redistribution
    beta_a: float = 1.0  # beta_A (``adv_beta``)
    adaptive_clip: bool = True  # asymmetric adaptive clipping
    alpha_c: float = 1.0  # alpha_c (``clip_alpha``)
    eps_low: float = 0.2  # base epsilon (lower clip)
    eps_high: float = 0.2  # base epsilon (upper clip)
    clip_c: float = 10.0  # dual-clip constant c (> 1) for A < 0
    dynamic_sampling: bool = True  # DAPO group filter: drop groups whose rewards are all equal
    beta: float = 0.0  # KL weight; 0 means no reference model
    kl_estimator: str = "k3"  # one of ops.kl.ESTIMATORS
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    aggregation: str = "token_mean"  # one of ops.aggregation.MODES


def _check(cfg: Config) -> None:
    if cfg.sign_mode not in SIGN_MODES:
        raise ValueError(f"hapo: unknown sign_mode {cfg.sign_mode!r}; known: {SIGN_MODES}")
    if not 0.0 <= cfg.pivot <= 1.0:
        raise ValueError(f"hapo: pivot must lie in [0, 1], got {cfg.pivot}")


# --------------------------------------------------------------------------- entropy statistics


def nearest_rank_quantile(x: Array, mask: Array, q: float) -> Array:
    """``q``-quantile of the entries of ``x`` under ``mask`` by nearest rank: ``sorted[round(q (n - 1))]``.

    ``round`` is half-to-even, as Python's (the HAPO code's ``torch_quantile(..., "nearest")``).
    ``x``, ``mask``: any equal shapes; returns a scalar, 0 when nothing is unmasked.
    """
    flat = jnp.where(mask.reshape(-1) != 0, x.reshape(-1), jnp.inf)
    n = jnp.sum(mask != 0)
    idx = jnp.round(q * (n - 1).astype(jnp.float32)).astype(jnp.int32)
    value = jnp.sort(flat)[jnp.clip(idx, 0, flat.shape[0] - 1)]
    return jnp.where(n > 0, value, 0.0)


def entropy_stats(entropies: Array, mask: Array, cfg: Config) -> dict[str, Array]:
    """The normalization ``(m, s, k_pos, k_neg)`` of token log-entropies over a batch (``compute_entropy_h``).

    ``entropies``, ``mask``: ``[B, T]``. ``e = log max(H, entropy_floor)``; ``m`` the nearest-rank
    ``pivot``-quantile of e; ``s = sqrt(max(mean (e - m)^2, 1e-8))``; with ``h = (e - m)/s``,
    ``k_pos = 1/max(max h+, 1e-8)`` and ``k_neg = 1/|min(min h-, -1e-8)|`` (``sign_mode="paper"``)
    or ``1/min(...)`` (``"code"``; negative). All scalars f32.
    """
    _check(cfg)
    e = jnp.log(jnp.maximum(jnp.asarray(entropies, jnp.float32), cfg.entropy_floor))
    on = mask != 0
    m = nearest_rank_quantile(e, mask, cfg.pivot)
    d = e - m
    var = masked.masked_sum(jnp.square(d), mask) / jnp.maximum(jnp.sum(on), 1)
    s = jnp.sqrt(jnp.maximum(var, _TINY))
    h = d / s
    pos_max = jnp.maximum(jnp.max(jnp.where(on & (h > 0), h, 0.0)), _TINY)
    neg_min = jnp.minimum(jnp.min(jnp.where(on & (h < 0), h, 0.0)), -_TINY)
    k_neg = 1.0 / (jnp.abs(neg_min) if cfg.sign_mode == "paper" else neg_min)
    return {"m": m, "s": s, "k_pos": 1.0 / pos_max, "k_neg": k_neg}


def normalized_entropy(entropies: Array, stats: dict[str, Array], cfg: Config, std_eps: float = 0.0) -> Array:
    """``h^ = k_pos h`` if ``h > 0`` else ``k_neg h``, ``h = (log max(H, floor) - m) / (s + std_eps)``. Shape of ``entropies``.

    ``std_eps = 0`` in the loss (the code's ``compute_entropy_h``), 1e-6 in the sampler (its vLLM patch).
    """
    e = jnp.log(jnp.maximum(jnp.asarray(entropies, jnp.float32), cfg.entropy_floor))
    h = (e - stats["m"]) / (stats["s"] + std_eps)
    return jnp.where(h > 0, h * stats["k_pos"], h * stats["k_neg"])


def token_hhat(entropies: Array, mask: Array, cfg: Config) -> Array:
    """``h^`` ``[B, T]`` of every token against its own batch's statistics; 0 under the mask."""
    hhat = normalized_entropy(entropies, entropy_stats(entropies, mask, cfg), cfg)
    return masked.where_mask(hhat, mask)


# --------------------------------------------------------------------------- sampling hook


def init_state(cfg: Config) -> dict[str, Array]:
    """Entropy statistics of the previous batch, ``m, s, k_pos, k_neg`` [] f32, and ``ready`` [] bool (False)."""
    _check(cfg)
    z = jnp.zeros((), jnp.float32)
    return {"m": z, "s": jnp.ones((), jnp.float32), "k_pos": z, "k_neg": z, "ready": jnp.asarray(False)}


def update_state(state: dict[str, Array], rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """This batch's statistics (``entropy_stats`` of ``rollout["entropies"]`` over ``rollout["mask"]``) for the next sampling."""
    if "entropies" not in rollout:
        raise KeyError(
            "hapo: rollout needs 'entropies' [B, T] (per-token policy entropies) for the temperature statistics"
        )
    stats = entropy_stats(rollout["entropies"], rollout["mask"], cfg)
    return {**stats, "ready": jnp.asarray(True)}


def temperature_from_stats(logits: Array, state: dict[str, Array], cfg: Config) -> Array:
    """``T_t = T (1 + tau clip(h^, -1, 1))`` per row from one step's logits ``[B, V]`` -> ``[B]`` f32.

    ``h^`` uses the entropy of ``softmax(logits)`` (the untempered policy) and the statistics in
    ``state``; before the first ``update_state`` (``ready`` False) every row gets ``T``.
    """
    h = entropy.from_logits(logits)  # [B]
    hhat = jnp.clip(normalized_entropy(h, state, cfg, std_eps=1e-6), -1.0, 1.0)
    t = cfg.temperature * (1.0 + cfg.tau * hhat)
    return jnp.where(state["ready"], t, cfg.temperature).astype(jnp.float32)


def temperature_rule(cfg: Config, state: dict[str, Array] | None = None) -> Callable[[Array, Array], Array]:
    """The sampler hook: ``rule(logits [B, V] f32, step [] int32) -> temperature [B]``.

    Closes over the statistics of ``state`` (``None``: the plain temperature ``cfg.temperature``).
    The sampler takes the rule as a static argument, so a rule built from new statistics compiles a
    new sampling program; a sampler that accepted the statistics as a traced argument would use
    ``temperature_from_stats`` directly.
    """
    if state is None:
        return lambda logits, step: jnp.full(logits.shape[:1], cfg.temperature, jnp.float32)
    frozen = jax.tree.map(jnp.asarray, state)
    return lambda logits, step: temperature_from_stats(logits, frozen, cfg)


# --------------------------------------------------------------------------- advantages and loss


def _token_level(
    rewards: Array, lengths: Array, group_size: int, cfg: Config, width: int | None = None
) -> tuple[Array, Array]:
    """``(A [P, G], fallback [P] bool)`` of ``token_level_group_advantages``."""
    r = jnp.asarray(rewards, jnp.float32).reshape(-1, group_size)  # [P, G]
    n = jnp.asarray(lengths, jnp.float32).reshape(-1, group_size)
    tot = jnp.maximum(jnp.sum(n, axis=1, keepdims=True), 1.0)
    mu = jnp.sum(n * r, axis=1, keepdims=True) / tot
    sigma = jnp.sqrt(jnp.sum(n * jnp.square(r - mu), axis=1, keepdims=True) / tot)
    a = (r - mu) / (sigma + cfg.std_eps)
    if group_size > 1:
        grpo = adv_ops.group_normalized(r.reshape(-1), group_size, ddof=1, eps=cfg.std_eps).reshape(r.shape)
    else:
        grpo = r  # the code's singleton group: mean 0, std 1
    fallback = jnp.any(jnp.abs(a) >= cfg.adv_fallback, axis=1)  # [P]
    if cfg.fallback_counts_padding:
        if width is None:
            raise ValueError("hapo: fallback_counts_padding=True needs the padded width T of the rows (width=)")
        padded = jnp.any(n < width, axis=1)  # [P]: some row of the group has padded positions
        pad_adv = jnp.abs(mu[:, 0]) / (sigma[:, 0] + cfg.std_eps)  # |(0 - mu_tok) / (sigma_tok + eps)|
        fallback = fallback | (padded & (pad_adv >= cfg.adv_fallback))
    a = jnp.where(fallback[:, None], grpo, a)
    zero = adv_ops.zero_std_groups(r.reshape(-1), group_size)[:, None]
    return jnp.where(zero, 0.0, a), fallback


def token_level_group_advantages(
    rewards: Array, lengths: Array, group_size: int, cfg: Config, width: int | None = None
) -> Array:
    """HAPO's token-level group average ``A_i = (R_i - mu_tok) / (sigma_tok + eps)``: ``[B], [B] -> [B]``.

    ``mu_tok``, ``sigma_tok``: the length-weighted mean and population std of the group's rewards.
    A group with any ``|A_i| >= adv_fallback`` takes GRPO's advantage (ddof 1, same eps) instead
    (with ``cfg.fallback_counts_padding``, also a group with a row shorter than ``width``, the padded
    length ``T``, whose padded value ``|mu_tok| / (sigma_tok + eps)`` reaches the threshold);
    a group of equal rewards gets exactly 0.
    """
    return _token_level(rewards, lengths, group_size, cfg, width)[0].reshape(-1)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Token-level group-average advantage ``[B]`` (lengths from ``rollout["mask"]``).

    Metrics add ``frac_fallback_groups`` (groups that took GRPO's advantage).
    """
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    a, fallback = _token_level(rewards, jnp.sum(mask, axis=1), g, cfg, width=mask.shape[1])
    a = a.reshape(-1)
    metrics = adv_ops.group_stats(a, rewards, mask, g)
    metrics["frac_fallback_groups"] = jnp.mean(fallback.astype(jnp.float32))
    return a, metrics


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """``hhat`` ``[B, T]``: each token's normalized entropy against the whole batch (``token_hhat``)."""
    if "entropies" not in rollout:
        raise KeyError("hapo: rollout needs 'entropies' [B, T] (per-token policy entropies) to compute h^")
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    return {"hhat": token_hhat(rollout["entropies"], mask, cfg)}


def filter_groups(rollout: Rollout, cfg: Config) -> Array:
    """DAPO dynamic sampling: keep ``[B]`` bool, False for rows of groups whose rewards are all equal
    (all True when ``dynamic_sampling`` is off)."""
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    if not cfg.dynamic_sampling:
        return jnp.ones(rewards.shape, bool)
    return jnp.repeat(~adv_ops.zero_std_groups(rewards, g), g)


def adaptive_clip(hhat: Array, cfg: Config) -> tuple[Array, Array]:
    """Per-token ``(eps_low_t, eps_high_t)``: ``eps_high (1 + alpha_c h^)`` where ``h^ > 0``,
    ``eps_low (1 - alpha_c h^)`` where ``h^ <= 0``, the base value otherwise."""
    lo = jnp.where(hhat <= 0, cfg.eps_low * (1.0 - cfg.alpha_c * hhat), cfg.eps_low)
    hi = jnp.where(hhat > 0, cfg.eps_high * (1.0 + cfg.alpha_c * hhat), cfg.eps_high)
    return lo, hi


def redistribute(adv: Array, hhat: Array, ratio: Array, eps_low_t: Array, eps_high_t: Array, cfg: Config) -> Array:
    """Differential advantage redistribution ``A'`` (module docstring); all ``[B, T]``.

    The neutral zone is the open interval ``(1 - eps_low_t/2, 1 + eps_high_t/2)``; the choice is a
    selection, so no gradient flows through ``ratio`` here.
    """
    ent = adv * (1.0 + cfg.beta_a * hhat)
    r = jax.lax.stop_gradient(ratio)
    neutral = (r > 1.0 - eps_low_t / 2) & (r < 1.0 + eps_high_t / 2)
    return jnp.where(hhat > 0, jnp.where(neutral, adv, ent), jnp.where(neutral, ent, adv))


def _token_terms(batch: Batch, mask: Array, cfg: Config) -> tuple[Array, Array, Array]:
    inputs.require(batch, ("hhat",), f"{NAME} (from hapo.batch_extras)")
    hhat = inputs.token_array(batch, "hhat", mask, NAME)
    if cfg.adaptive_clip:
        lo, hi = adaptive_clip(hhat, cfg)
    else:
        lo, hi = jnp.full_like(mask, cfg.eps_low), jnp.full_like(mask, cfg.eps_high)
    return hhat, lo, hi


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """HAPO's loss: adaptive clip bounds and redistributed advantages per token, dual-clip, ``cfg.aggregation``.

    ``logprobs`` ``[B, T]``; ``batch["advantages"]`` ``[B]``, ``batch["hhat"]`` ``[B, T]`` from
    ``batch_extras``. A micro-batch gives its share of the full-batch loss (global normalizers).
    Metrics add ``adv_scale/mean`` (token mean of ``A'/A`` where ``A != 0``) and
    ``clip_bound/low|high`` (token means of the adapted bounds).
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, base, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    hhat, lo, hi = _token_terms(batch, mask, cfg)  # h^, eps_low_t, eps_high_t [B, T]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    adv = redistribute(base, hhat, ratio, lo, hi, cfg) if cfg.adaptive_advantage else base  # A' [B, T]
    per_token = clipping.clipped_surrogate(
        ratio, adv, lo, hi
    )  # -min(rho A', clip(rho, 1 - eps_low_t, 1 + eps_high_t) A')
    per_token = clipping.dual_clip(per_token, adv, cfg.clip_c)  # capped at -c A' where A' < 0
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token-mean
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, lo, hi, cfg.clip_c)  # clip_frac against A', ratio/*
    total, metrics = diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
    scale = jnp.where(base != 0, adv / jnp.where(base != 0, base, 1.0), 1.0)
    metrics["adv_scale/mean"] = masked.masked_sum(scale, mask) / nt
    metrics["clip_bound/low"] = masked.masked_sum(lo, mask) / nt
    metrics["clip_bound/high"] = masked.masked_sum(hi, mask) / nt
    return total, metrics


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """On-policy surrogate: ``agg[-A' log pi]`` with ``A'`` at ratio 1 (inside every neutral zone:
    ``A`` where ``h^ > 0``, ``A (1 + beta_A h^)`` where ``h^ <= 0``)."""
    mask = jnp.asarray(batch["mask"], jnp.float32)
    a = inputs.per_token(batch["advantages"], mask, "advantages", NAME)
    hhat, lo, hi = _token_terms(batch, mask, cfg)
    if cfg.adaptive_advantage:
        a = redistribute(a, hhat, jnp.ones_like(mask), lo, hi, cfg)
    return aggregation.aggregate(-a * logprobs, mask, cfg.aggregation, batch["num_tokens"], batch["num_seqs"])
