"""Per-token KL(pi_theta || pi_ref) estimators k1, k2, k3, abs and their straight-through variants.

Tokens are sampled from pi_theta (in practice pi_old ~ pi_theta). With
``d_t = log pi_ref(y_t) - log pi_theta(y_t)`` (Schulman, "Approximating KL Divergence", 2020):

  ======  =====================  ========================  ======================================
  name    value                  d value / d log pi_theta  what the gradient estimates (on-policy)
  ======  =====================  ========================  ======================================
  k1      ``-d``                 ``1``                     0 in expectation (score function)
  k2      ``d^2 / 2``            ``-d``                    grad KL(pi_theta || pi_ref)  (unbiased)
  k3      ``e^d - 1 - d``        ``1 - e^d``               grad KL(pi_ref || pi_theta)  (reverse KL)
  abs     ``|d|``                ``-sign(d)``              none (a distance, verl's ``abs``)
  k1+     value of k1            ``-d`` (k2's)             grad KL(pi_theta || pi_ref)
  k3+     value of k3            ``-d`` (k2's)             grad KL(pi_theta || pi_ref)
  ======  =====================  ========================  ======================================

k1 and k3 are unbiased VALUE estimators of KL(pi_theta || pi_ref); only k2's gradient is the
unbiased gradient of it (``E[(log pi_theta - log pi_ref) grad log pi_theta] = grad KL``). The
``+`` variants report the kX value while back-propagating k2's gradient (straight-through), the fix
proposed in verl PR #2953 (https://github.com/volcengine/verl/pull/2953). ``abs`` is verl's
``kl_penalty="abs"`` (``verl/trainer/ppo/core_algos.py: kl_penalty_forward``): not an estimator of
the KL value, a penalty on the size of the log-ratio (KL-Cov penalizes ``|log pi_theta - log pi_old|``
the same way); its gradient at ``d = 0`` is 0.

TRL's ``use_bias_correction_kl`` (``trl/trainer/grpo_trainer.py: _compute_loss``; DeepSeek-AI,
"DeepSeek-V3.2", https://arxiv.org/abs/2512.02556): tokens come from
pi_old, not pi_theta, so the KL term is importance-weighted, ``rho_t * k_t`` with the (differentiated)
ratio ``rho_t = pi_theta / pi_old``: ``penalty(..., ratio=rho)`` does that.

Two clamps:
  * the log-ratio ``d`` is always clamped to ``[-20, 20]`` before ``exp`` (as verl does), so a
    stale token cannot overflow; beyond it the gradient is 0;
  * the VALUE may be clamped to ``[-clamp, clamp]`` (``estimate(..., clamp=c)``; config field
    ``kl_clamp`` of the methods with a KL option). verl clamps its k3 (``low_var_kl``) at 10
    (``kl_clamp = 10`` reproduces it); Schulman's note, the GRPO paper and TRL do not, so the
    default is ``None`` (no clamp). For plain estimators the clamp also zeroes the gradient of a
    clamped token (``torch.clamp`` in verl does the same); for the ``+`` variants it bounds the
    reported value only and the k2 gradient is kept (verl's ``k3+``).
All functions: ``[...] -> [...]`` elementwise; aggregate with ``ops.aggregation``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import aggregation
from jaxrl_llm.types import Array

_MAX_D = 20.0


def _d(logprobs: Array, ref_logprobs: Array) -> Array:
    return jnp.clip(ref_logprobs - logprobs, -_MAX_D, _MAX_D)


def k1(logprobs: Array, ref_logprobs: Array) -> Array:
    """``k1 = log pi_theta - log pi_ref``. Unbiased value, can be negative, zero-mean gradient."""
    return -_d(logprobs, ref_logprobs)


def k2(logprobs: Array, ref_logprobs: Array) -> Array:
    """``k2 = (log pi_theta - log pi_ref)^2 / 2``. Biased value; its gradient is the unbiased grad of KL."""
    return 0.5 * jnp.square(_d(logprobs, ref_logprobs))


def k3(logprobs: Array, ref_logprobs: Array) -> Array:
    """``k3 = exp(d) - 1 - d``, ``d = log pi_ref - log pi_theta``. Unbiased, >= 0, low variance (GRPO's)."""
    d = _d(logprobs, ref_logprobs)
    return jnp.expm1(d) - d


def abs_kl(logprobs: Array, ref_logprobs: Array) -> Array:
    """``|log pi_theta - log pi_ref|`` (verl's ``abs``). Not unbiased for the KL value; a distance penalty.

    Written ``d * sign(d)`` so the gradient at ``d = 0`` is 0, as ``torch.abs`` (``jnp.abs`` gives 1
    there, which would make an on-policy step move tokens that sit exactly at the reference)."""
    d = _d(logprobs, ref_logprobs)
    return d * jnp.sign(d)


def straight_through(value: Array, logprobs: Array, ref_logprobs: Array) -> Array:
    """``value + k2 - sg[k2]``: forward value ``value``, gradient of ``k2`` (the unbiased KL gradient)."""
    g = k2(logprobs, ref_logprobs)
    return jax.lax.stop_gradient(value) + g - jax.lax.stop_gradient(g)


def k1_st(logprobs: Array, ref_logprobs: Array) -> Array:
    """k1 value with k2 gradient (``k1+``)."""
    return straight_through(k1(logprobs, ref_logprobs), logprobs, ref_logprobs)


def k3_st(logprobs: Array, ref_logprobs: Array) -> Array:
    """k3 value with k2 gradient (``k3+``)."""
    return straight_through(k3(logprobs, ref_logprobs), logprobs, ref_logprobs)


ESTIMATORS: dict[str, Callable[[Array, Array], Array]] = {
    "k1": k1,
    "k2": k2,
    "k3": k3,
    "abs": abs_kl,
    "k1+": k1_st,
    "k3+": k3_st,
}


def estimate(logprobs: Array, ref_logprobs: Array, estimator: str, clamp: float | None = None) -> Array:
    """Per-token KL estimate by name (one of ``ESTIMATORS``), its value clamped to ``[-clamp, clamp]``
    when ``clamp`` is given (module docstring; verl's k3 uses 10). Shapes as inputs."""
    try:
        fn = ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(f"unknown KL estimator {estimator!r}; known: {sorted(ESTIMATORS)}") from None
    if clamp is None:
        return fn(logprobs, ref_logprobs)
    if not clamp > 0:
        raise ValueError(f"KL value clamp must be > 0 (or None for no clamp), got {clamp!r}")
    if estimator.endswith("+"):
        value = jnp.clip(ESTIMATORS[estimator[:-1]](logprobs, ref_logprobs), -clamp, clamp)
        return straight_through(value, logprobs, ref_logprobs)
    return jnp.clip(fn(logprobs, ref_logprobs), -clamp, clamp)


def penalty(
    logprobs: Array,
    ref_logprobs: Array,
    mask: Array,
    estimator: str,
    mode: str,
    num_tokens: Array | float,
    num_seqs: Array | float,
    norm_const: Array | float | None = None,
    clamp: float | None = None,
    ratio: Array | None = None,
) -> Array:
    """The KL term of a loss: ``aggregation.aggregate(estimate(logprobs, ref_logprobs, estimator, clamp), mask, mode, ...)``.

    ``[B, T]`` inputs -> scalar, aggregated like the policy term so it obeys the partition contract.
    ``ratio`` ``[B, T]`` (optional): the importance ratio ``pi_theta / pi_old`` that multiplies each
    token's estimate, ``rho_t * k_t`` (TRL's ``use_bias_correction_kl``: the tokens were sampled
    from pi_old, so the plain mean estimates the KL under pi_old, not pi_theta). The ratio is
    differentiated, as in TRL.
    """
    per_token = estimate(logprobs, ref_logprobs, estimator, clamp)  # [B, T]
    if ratio is not None:
        per_token = ratio * per_token  # rho_t k_t
    return aggregation.aggregate(per_token, mask, mode, num_tokens, num_seqs, norm_const)
