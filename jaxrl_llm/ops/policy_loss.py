"""The PPO-clip policy loss that GRPO and its descendants share, written once.

Most methods here differ from GRPO in their advantages, their clip bounds or their aggregation, not
in how those pieces are put together. This module is that assembly; a method's ``loss`` computes
its own delta (per-token bounds, redistributed advantages, an added value loss) and passes it in.
Used by GRPO, Dr.GRPO, DAPO, RLOO, REINFORCE++, PPO, APO, HBPO, single-stream SPO, BNPO, DCPO,
RiskPO and HAPO; CISPO, GSPO, GTPO and COPO build their own surrogate (a detached clipped weight, a
sequence ratio, no clip, a blend of two advantages).
"""

from __future__ import annotations

from typing import Any, Mapping

from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Metrics


def clipped_policy_loss(
    x: Mapping[str, Array],
    batch: Mapping[str, Any],
    where: str,
    eps_low: float | Array,
    eps_high: float | Array,
    mode: str,
    *,
    clip_c: float | None = None,
    beta: float = 0.0,
    kl_estimator: str = "k3",
    norm_const: float | None = None,
    ratio: Array | None = None,
    advantages: Array | None = None,
    extra: Array | None = None,
) -> tuple[Array, Metrics]:
    """Clipped surrogate x ``is_weights``, aggregated by ``mode``, ``+ beta * KL`` (``+ extra``).

        rho_{i,t} = exp(log pi_theta - log pi_old)                       (``ratios.token_ratio``)
        l_{i,t}   = -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)  (``clipping.clipped_surrogate``)
        l_{i,t}   = min(l_{i,t}, -clip_c A)  where A < 0                 (dual-clip, when ``clip_c``)
        L = agg_mode(w_{i,t} l_{i,t}) + beta agg_mode(KL_{i,t}) + extra

    ``w`` is ``x["is_weights"]`` (rollout correction), ``KL`` the per-token ``kl_estimator``
    against ``batch["ref_logprobs"]`` (read only when ``beta > 0``), and ``agg_mode`` uses the
    GLOBAL ``num_tokens`` / ``num_seqs`` (and ``norm_const`` for ``seq_mean_token_sum_norm``), so a
    micro-batch returns its share of the full-batch loss.

    ``x``: ``inputs.policy_inputs(logprobs, batch, where)``. ``eps_low``, ``eps_high``: scalars or
    ``[B, T]`` per-token bounds. ``ratio``: ``rho`` itself, when the method needed it earlier (so it
    is computed once). ``advantages`` ``[B, T]``: the method's reweighted advantages, used in place
    of ``x["advantages"]`` by the surrogate and the clip metrics. ``extra``: a scalar added to the
    loss (a value loss, a differently weighted KL), already partition-additive. ``where`` names the
    method in errors.

    Returns ``(loss, metrics)``: ``diagnostics.ratio_metrics`` (``clip_frac``, ``clip_frac/low``,
    ``clip_frac/high``, ``clip_frac/dual``, ``ratio/*``) and ``diagnostics.finalize``'s keys
    (``loss``, ``loss/policy``, ``kl``, ``loss/kl``, ``entropy``).

    References: Schulman et al., "Proximal Policy Optimization Algorithms" (arXiv 1707.06347),
    Eq. 6-7; Yu et al., "DAPO" (arXiv 2503.14476), Eq. 10 (``eps_high > eps_low``); Ye et al.
    (arXiv 1912.09729), Eq. 5 (dual-clip); Shao et al., "DeepSeekMath" (arXiv 2402.03300), Eq. 3
    (the KL term in the loss, aggregated like the policy term).
    """
    mask, nt, ns = x["mask"], x["num_tokens"], x["num_seqs"]
    adv = x["advantages"] if advantages is None else advantages
    if ratio is None:
        ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)
    per_token = clipping.clipped_surrogate(ratio, adv, eps_low, eps_high)
    if clip_c is not None:
        per_token = clipping.dual_clip(per_token, adv, clip_c)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, mode, nt, ns, norm_const)
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, eps_low, eps_high, clip_c)
    kl_term = None
    if beta > 0:
        ref = inputs.ref_logprobs(batch, mask, where)
        kl_term = kl.penalty(x["logprobs"], ref, mask, kl_estimator, mode, nt, ns, norm_const)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, beta, extra, where=where)
