"""The terms around a PPO-clip policy term that verl's ``vanilla`` loss methods share.

Estimator-only methods (OPO, ReMax, GDPO, the optimal token baseline) train with verl's vanilla
PPO loss (``verl/trainer/ppo/core_algos.py: compute_policy_loss_vanilla``). Each method file still
writes its objective as lines (the ratio, the clipped surrogate and the aggregation); what is the
same in all of them, and no part of any paper's equation, is here:

    loss = policy + beta * aggregate(KL_est(log pi_theta, log pi_ref))   (KL only when beta > 0)

with the shared metrics (``diagnostics.ratio_metrics``: ``clip_frac``, ``ratio/*``; ``kl``,
``loss/kl``, ``entropy`` via ``diagnostics.finalize``). ``cfg`` is the method's frozen ``Config``
with the fields ``eps_low``, ``eps_high``, ``beta``, ``kl_estimator``, ``kl_clamp``, ``aggregation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxrl_llm.ops import diagnostics, kl
from jaxrl_llm.types import Array, Metrics


def reference_kl(x: Mapping[str, Array], cfg: Any) -> Array | None:
    """``aggregate(KL_est(log pi_theta, log pi_ref), mask, cfg.aggregation)`` with the batch's global
    normalizers, or ``None`` when ``cfg.beta == 0`` (no reference model). ``x``:
    ``inputs.policy_inputs(..., ref=cfg.beta > 0)``."""
    if not cfg.beta > 0:
        return None
    return kl.penalty(
        x["logprobs"],
        x["ref_logprobs"],
        x["mask"],
        cfg.kl_estimator,
        cfg.aggregation,
        x["num_tokens"],
        x["num_seqs"],
        clamp=cfg.kl_clamp,
    )


def finalize(
    x: Mapping[str, Array], batch: Mapping[str, Any], ratio: Array, policy: Array, cfg: Any, where: str
) -> tuple[Array, Metrics]:
    """``loss = policy + beta * reference_kl`` and its metrics: ``diagnostics.ratio_metrics`` of the
    token ratio ``[B, T]`` against ``x["advantages"]`` with the clip range ``(eps_low, eps_high)``,
    then ``diagnostics.finalize`` (``where`` names the method in errors)."""
    mask, nt = x["mask"], x["num_tokens"]
    metrics = diagnostics.ratio_metrics(ratio, x["advantages"], mask, nt, cfg.eps_low, cfg.eps_high)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, reference_kl(x, cfg), cfg.beta, where=where)
