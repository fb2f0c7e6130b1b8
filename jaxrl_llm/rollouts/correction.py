"""Sampler/trainer mismatch correction of a rollout (``train.rollout_correction``).

The sampler draws tokens from mu (its own numerics: a bf16 cache, CPU kernels, a stale engine);
the loss's ratio is taken against pi_old (``old_logprobs``, the trainer's numbers). With
``w_t = pi_old(y_t) / mu(y_t) = exp(old_logprobs - sampler_logprobs)``:

* ``"token_tis"``: truncated importance sampling, ``is_weights = sg[min(w_t, cap)]`` multiplies
  every token's loss term (Yao et al., "Your Efficient RL Framework Secretly Brings You Off-Policy
  RL Training", 2025, https://fengyao.notion.site/off-policy-rl; verl's ``rollout_is``).
* ``"sequence_mis"``: masked importance sampling, rows whose geometric-mean ratio
  ``exp(mean_t log w_t)`` leaves ``[low, high]`` leave the loss (their ``loss_mask`` is zeroed,
  before the global normalizers are counted; TRL ``vllm_importance_sampling_mode="sequence_mask"``).
* ``"off"``: nothing.

The arithmetic is ``jaxrl_llm.ops.rollout_correction``; this module picks and applies it.
"""

from __future__ import annotations

import numpy as np

from jaxrl_llm.ops import rollout_correction
from jaxrl_llm.types import Rollout

MODES = ("off", "token_tis", "sequence_mis")


def apply(
    rollout: Rollout, mode: str, cap: float = 2.0, low: float = 0.5, high: float = 2.0
) -> tuple[Rollout, dict[str, float]]:
    """The rollout with ``is_weights`` (token TIS) or a reduced ``loss_mask`` (sequence MIS), and the
    mismatch metrics (``rollout_is/*``). Needs ``old_logprobs`` and ``sampler_logprobs``."""
    if mode not in MODES:
        raise ValueError(f"train.rollout_correction must be one of {MODES}, got {mode!r}")
    if mode == "off":
        return rollout, {}
    old, mu = np.asarray(rollout.old_logprobs, np.float32), np.asarray(rollout.sampler_logprobs, np.float32)
    mask = np.asarray(rollout.loss_mask if rollout.loss_mask is not None else rollout.mask, np.float32)
    if mode == "token_tis":
        weights = np.asarray(rollout_correction.token_is_weights(old, mu, mask, cap), np.float32)
        out, new_mask = rollout.with_items(is_weights=weights), None
    else:
        new_mask = np.asarray(rollout_correction.sequence_mask(old, mu, mask, low, high), np.float32)
        out = rollout.replace(loss_mask=new_mask)
    metrics = rollout_correction.metrics(old, mu, mask, new_mask)
    return out, {k: float(v) for k, v in metrics.items()}
