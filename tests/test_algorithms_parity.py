"""Hand-computed cases for the verl/TRL parity methods (issue #22, objectives part):
sapo, gmpo, gpg, clip_cov, kl_cov, dppo, opo, pass_at_k, vespo, cispo_seq, remax; and the KL / aggregation ops they
added (``abs`` estimator, ratio-weighted KL, ``token_sum``); gdpo, optimal_token_baseline,
tir_optimal_token_baseline and dro.

Each case gives the numbers worked by hand (in comments) or by NumPy in the test, following the
peer's convention named in the method's docstring (verl ``core_algos.py`` / TRL ``grpo_trainer.py``).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms, models, train
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import (
    cispo_seq,
    clip_cov,
    dppo,
    dro,
    gdpo,
    gmpo,
    gpg,
    kl_cov,
    opo,
    optimal_token_baseline,
    pass_at_k,
    remax,
    sapo,
    tir_optimal_token_baseline,
    vespo,
)
from jaxrl_llm.ops import aggregation, covariance, kl
from jaxrl_llm.rollouts import token_stats


def _batch(adv, mask, old, **extra):
    mask = jnp.asarray(mask, jnp.float32)
    b = {
        "mask": mask,
        "advantages": jnp.asarray(adv, jnp.float32),
        "old_logprobs": jnp.asarray(old, jnp.float32),
        "num_tokens": jnp.sum(mask),
        "num_seqs": jnp.float32(mask.shape[0]),
    }
    b.update(extra)
    return b


def _value_and_grad(mod, lp, b, cfg):
    (loss, metrics), g = jax.value_and_grad(lambda x: mod.loss(x, b, cfg), has_aux=True)(jnp.asarray(lp, jnp.float32))
    jitted = jax.jit(lambda x: mod.loss(x, b, cfg)[0])(jnp.asarray(lp, jnp.float32))
    np.testing.assert_allclose(jitted, loss, rtol=1e-6)
    return float(loss), metrics, np.asarray(g)


# ---------------------------------------------------------------------------------------------- sapo


def test_sapo_on_policy_gate_values_by_hand():
    # rho = 1: f(1) = sigmoid(0) * 4 / tau = 2 / tau. Row 0: A = 1, tau_pos = 1 -> -2 per token.
    # Row 1: A = -1, tau_neg = 1.05 -> +2/1.05 per token. seq_mean_token_mean: (-2 + 1.9047619) / 2.
    b = _batch([1.0, -1.0], [[1, 1], [1, 0]], np.zeros((2, 2)))
    loss, m, g = _value_and_grad(sapo, np.zeros((2, 2)), b, sapo.Config())
    np.testing.assert_allclose(loss, (-2.0 + 2.0 / 1.05) / 2, rtol=1e-5)
    # f'(1) = 1: the gradient is GRPO's, -A / |o_i| / G per token.
    np.testing.assert_allclose(g, [[-0.25, -0.25], [0.5, 0.0]], rtol=1e-6)
    assert m["clip_frac"] == 0.0
    np.testing.assert_allclose(m["gate/weight"], 1.0, rtol=1e-6)


def test_sapo_off_policy_matches_numpy_reference():
    # verl / TRL convention: tau_pos where A > 0, tau_neg where A <= 0 (A = 0 takes tau_neg).
    lr = np.array([[0.3, -0.2, 0.05], [0.5, -0.6, 0.0], [0.1, 0.2, 0.3]])
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1]], np.float32)
    adv = np.array([0.7, -1.3, 0.0])
    old = -np.ones((3, 3))
    cfg = sapo.Config(tau_pos=1.0, tau_neg=2.0)
    b = _batch(adv, mask, old)
    loss, _, g = _value_and_grad(sapo, old + lr, b, cfg)
    r = np.exp(lr)
    tau = np.where(adv[:, None] > 0, 1.0, 2.0)
    s = 1 / (1 + np.exp(-tau * (r - 1)))
    per_token = -(s * 4 / tau) * adv[:, None]
    want = np.mean((per_token * mask).sum(1) / mask.sum(1))
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    want_g = -adv[:, None] * r * 4 * s * (1 - s) * mask / mask.sum(1, keepdims=True) / 3
    np.testing.assert_allclose(g, want_g, rtol=1e-5, atol=1e-7)


def test_sapo_kl_ratio_weighted_is_trl_bias_correction():
    lr = np.array([[0.2, -0.1]])
    ref = np.array([[-0.9, -1.3]])
    old = -np.ones((1, 2))
    b = _batch([0.0], [[1, 1]], old, ref_logprobs=jnp.asarray(ref, jnp.float32))
    lp = old + lr
    plain = sapo.Config(beta=0.1)
    weighted = sapo.Config(beta=0.1, kl_ratio_weighted=True)
    k3 = np.exp(ref - lp) - 1 - (ref - lp)
    l_plain, m_plain, _ = _value_and_grad(sapo, lp, b, plain)
    l_w, m_w, g_w = _value_and_grad(sapo, lp, b, weighted)
    np.testing.assert_allclose(m_plain["kl"], k3.mean(), rtol=1e-5)
    np.testing.assert_allclose(m_w["kl"], (np.exp(lr) * k3).mean(), rtol=1e-5)  # rho_t * k3_t
    # d/dlp [rho k3] = rho k3 + rho (1 - e^d), the ratio differentiated as in TRL
    d = ref - lp
    np.testing.assert_allclose(g_w, 0.1 * np.exp(lr) * (k3 + 1 - np.exp(d)) / 2, rtol=1e-5)


def test_sapo_rejects_bad_temperature():
    with pytest.raises(ValueError, match="tau_pos and tau_neg must be > 0"):
        sapo.Config(tau_neg=0.0)


# ---------------------------------------------------------------------------------------------- gmpo


def test_gmpo_geometric_mean_with_sign_clip_by_hand():
    # Row 0, A = +2, log-ratios [0.5, 0.1]: 0.5 > eps_high = 0.4 is clipped -> R = exp((0.4 + 0.1) / 2).
    # Row 1, A = -1, log-ratios [-0.5, 0.3]: for A < 0 only l < -0.4 is clipped -> R = exp((-0.4 + 0.3) / 2).
    old = np.full((2, 2), -1.0)
    lp = old + np.array([[0.5, 0.1], [-0.5, 0.3]])
    b = _batch([2.0, -1.0], [[1, 1], [1, 1]], old)
    loss, m, g = _value_and_grad(gmpo, lp, b, gmpo.Config())
    r0, r1 = math.exp(0.25), math.exp(-0.05)
    np.testing.assert_allclose(loss, (-2.0 * r0 + 1.0 * r1) / 2, rtol=1e-6)
    # d(-A R)/d l_t = -A R / |o| on unclipped tokens, 0 on clipped ones; then / num_seqs = 2.
    np.testing.assert_allclose(g, [[0.0, -2.0 * r0 / 4], [0.0, 1.0 * r1 / 4]], rtol=1e-6)
    np.testing.assert_allclose(m["clip_frac/high"], 1 / 4)
    np.testing.assert_allclose(m["clip_frac/low"], 1 / 4)


def test_gmpo_matches_verl_geo_mean_formula():
    rng = np.random.default_rng(0)
    old = -np.abs(rng.normal(size=(4, 5)))
    lp = old + 0.5 * rng.normal(size=(4, 5))
    mask = (np.arange(5)[None] < np.array([5, 3, 1, 4])[:, None]).astype(np.float32)
    adv = np.array([1.5, -0.5, 0.0, -2.0])
    loss, _, _ = _value_and_grad(gmpo, lp, _batch(adv, mask, old), gmpo.Config(eps_low=0.3, eps_high=0.2))
    # verl compute_policy_loss_geo_mean, in NumPy: sgn * min(sgn * l, sgn * clamp(l)), exp of the masked mean.
    nkl = lp - old
    sgn = np.sign(adv)[:, None]
    l_min = sgn * np.minimum(sgn * nkl, sgn * np.clip(nkl, -0.3, 0.2))
    ratio = np.exp((l_min * mask).sum(-1) / (mask.sum(-1) + 1e-8))
    np.testing.assert_allclose(loss, np.mean(-adv * ratio), rtol=1e-5)


# ----------------------------------------------------------------------------------------------- gpg


def test_gpg_advantages_alpha_modes_by_hand():
    # Group 0 rewards [1, 0, 0, 1] (mean 0.5), group 1 all 0. B = 8.
    ro = {"rewards": jnp.array([1.0, 0, 0, 1, 0, 0, 0, 0]), "mask": jnp.ones((8, 2)), "group_size": 4}
    a, m = gpg.advantages(ro, gpg.Config())  # verl: alpha = B / #nonzero rewards = 8 / 2 = 4
    np.testing.assert_allclose(a, [2.0, -2.0, -2.0, 2.0, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(m["gpg/alpha"], 4.0)
    a, m = gpg.advantages(ro, gpg.Config(alpha_mode="valid"))  # B / (B - M) = 8 / 4 = 2
    np.testing.assert_allclose(a, [1.0, -1.0, -1.0, 1.0, 0, 0, 0, 0], rtol=1e-6)
    a, _ = gpg.advantages(ro, gpg.Config(alpha_mode="none", f_norm=2.0))
    np.testing.assert_allclose(a, [0.25, -0.25, -0.25, 0.25, 0, 0, 0, 0], rtol=1e-6)


def test_gpg_loss_is_plain_policy_gradient_without_ratio():
    # -A log pi, token mean over 3 tokens: -(1 * (-0.5) + 1 * (-1.0) + (-2) * (-0.2)) / 3; old log-probs unused.
    lp = np.array([[-0.5, -1.0], [-0.2, 0.0]])
    b = _batch([1.0, -2.0], [[1, 1], [1, 0]], lp + 3.0)  # far off-policy: no ratio enters
    loss, m, g = _value_and_grad(gpg, lp, b, gpg.Config())
    np.testing.assert_allclose(loss, -(-0.5 - 1.0 + 0.4) / 3, rtol=1e-6)
    np.testing.assert_allclose(g, [[-1 / 3, -1 / 3], [2 / 3, 0.0]], rtol=1e-6)
    assert m["clip_frac"] == 0.0
    with pytest.raises(ValueError, match="alpha_mode must be one of"):
        gpg.Config(alpha_mode="bnpo")


# ------------------------------------------------------------------------------------ clip_cov / kl_cov

# Rewards [1, 0] in one group -> A = +-1/sqrt(2) (z-score, ddof 1). old log-probs [[0, -1], [-5, -3]]
# have mean -2.25, so Cov = A * (logp + 2.25) = 0.7071 * [[2.25, 1.25], [2.75, 0.75]]
# = [[1.591, 0.884], [1.945, 0.530]] (the A mean is 0).
COV_ROLLOUT = {
    "rewards": jnp.array([1.0, 0.0]),
    "mask": jnp.ones((2, 2)),
    "old_logprobs": jnp.array([[0.0, -1.0], [-5.0, -3.0]]),
    "group_size": 2,
}


def test_token_covariance_and_top_n_by_hand():
    cov = covariance.token_covariance(jnp.array([1.0, -1.0]), COV_ROLLOUT["old_logprobs"], COV_ROLLOUT["mask"])
    np.testing.assert_allclose(cov, [[2.25, 1.25], [2.75, 0.75]], rtol=1e-6)
    on = jnp.ones((2, 2), bool)
    np.testing.assert_array_equal(covariance.top_n(cov, on, 1), [[False, False], [True, False]])
    np.testing.assert_array_equal(covariance.top_n(cov, on, 3), [[True, True], [True, False]])
    assert int(covariance.selection_count(jnp.ones((100, 100)), 2e-4)) == 2  # floor(2e-4 * 1e4)
    assert int(covariance.selection_count(jnp.ones((2, 2)), 2e-4)) == 1  # at least one


def test_clip_cov_selection_and_detached_tokens():
    # n = max(floor(0.5 * 4), 1) = 2, but only (0,0) 1.591 lies in 1 < Cov < 1.8.
    cfg = clip_cov.Config(clip_cov_ratio=0.5, omega_high=1.8)
    algo = algorithms.get("clip_cov")
    b, _ = algorithms.make_batch(algo, COV_ROLLOUT, cfg)
    np.testing.assert_array_equal(b["cov_select"], [[1, 0], [0, 0]])
    b2, _ = algorithms.make_batch(algo, COV_ROLLOUT, dataclasses.replace(cfg, omega_high=5.0))
    np.testing.assert_array_equal(b2["cov_select"], [[1, 0], [1, 0]])  # 1.591 and 1.945; 0.884 < omega_low
    # default omega_high = 5, r = 2e-4 -> n = 1: the top covariance 1.945 at (1, 0)
    b1, _ = algorithms.make_batch(algo, COV_ROLLOUT, clip_cov.Config())
    np.testing.assert_array_equal(b1["cov_select"], [[0, 0], [1, 0]])
    lp = b1["old_logprobs"] + jnp.array([[0.1, 0.0], [0.0, -0.1]])
    loss, m, g = _value_and_grad(clip_cov, lp, b1, clip_cov.Config())
    a = np.asarray(b1["advantages"])
    rho = np.exp([[0.1, 0.0], [0.0, -0.1]])
    per = -np.minimum(rho * a[:, None], np.clip(rho, 0.8, 1.2) * a[:, None]) * np.array([[1, 1], [0, 1]])
    np.testing.assert_allclose(loss, per.sum() / 4, rtol=1e-5)
    assert g[1, 0] == 0.0 and np.all(g[[0, 0, 1], [0, 1, 1]] != 0)
    np.testing.assert_allclose(m["cov_frac"], 0.25)


def test_kl_cov_penalizes_only_top_covariance_token():
    cfg = kl_cov.Config()
    b, _ = algorithms.make_batch(algorithms.get("kl_cov"), COV_ROLLOUT, cfg)
    np.testing.assert_array_equal(b["cov_select"], [[0, 0], [1, 0]])  # top-1: Cov 1.945
    lr = np.array([[0.2, -0.1], [-0.3, 0.4]])
    loss, m, g = _value_and_grad(kl_cov, b["old_logprobs"] + lr, b, cfg)
    a = np.asarray(b["advantages"])[:, None]
    rho = np.exp(lr)
    sel = np.array([[0, 0], [1, 0]])
    np.testing.assert_allclose(loss, np.sum(-rho * a + sel * np.abs(lr)) / 4, rtol=1e-5)  # no clip
    np.testing.assert_allclose(g, (-rho * a + sel * np.sign(lr)) / 4, rtol=1e-5)
    np.testing.assert_allclose(m["kl_cov/abs_log_ratio"], np.abs(lr).mean(), rtol=1e-5)


# ---------------------------------------------------------------------------------------------- dppo


def test_dppo_binary_tv_mask_by_hand():
    # q = pi_old, p = pi_theta per token. Row 0 (A = +1): p - q = +0.2 > 0.15 -> dropped; +0.1 -> kept.
    # Row 1 (A = -1): p - q = -0.2 < -0.15 -> dropped; +0.2 -> kept (it moves in the safe direction).
    q = np.array([[0.5, 0.5], [0.9, 0.3]])
    p = np.array([[0.7, 0.6], [0.7, 0.5]])
    b = _batch([1.0, -1.0], np.ones((2, 2)), np.log(q))
    loss, m, g = _value_and_grad(dppo, np.log(p), b, dppo.Config())
    keep = np.array([[0, 1], [0, 1]])
    rho = p / q
    # seq_mean_token_sum_norm: sum / (num_seqs * T) = sum / 4
    want = np.sum(-keep * rho * np.array([[1.0], [-1.0]]) * np.log(p)) / 4
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(g, -keep * rho * np.array([[1.0], [-1.0]]) / 4, rtol=1e-5)
    np.testing.assert_allclose(m["clip_frac/high"], 0.25)
    np.testing.assert_allclose(m["clip_frac/low"], 0.25)


def test_dppo_binary_kl_by_hand():
    # q = 0.5, p = 0.7: D = 0.5 ln(0.5/0.7) + 0.5 ln(0.5/0.3) = 0.0871766 > 0.05 (A > 0, p > q: unsafe).
    d = dppo.binary_kl(jnp.log(jnp.array(0.7)), jnp.log(jnp.array(0.5)))
    np.testing.assert_allclose(d, 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3), rtol=1e-5)
    cfg = dppo.Config(divergence="binary_kl", delta_low=0.05, delta_high=0.05)
    q = jnp.log(jnp.array([[0.5, 0.5, 0.5]]))
    p = jnp.log(jnp.array([[0.7, 0.52, 0.3]]))  # D = 0.087 (drop), 0.0008 (keep), p < q: safe for A > 0
    np.testing.assert_array_equal(dppo.trust_region_mask(p, q, jnp.ones((1, 3)), cfg), [[0, 1, 1]])
    np.testing.assert_array_equal(dppo.trust_region_mask(p, q, -jnp.ones((1, 3)), cfg), [[1, 1, 0]])
    with pytest.raises(ValueError, match="divergence must be one of"):
        dppo.Config(divergence="kl")


def test_dppo_ratio_cap_truncates_the_weight():
    q, p = np.array([[0.01]]), np.array([[0.05]])  # rho = 5, p - q = 0.04: inside the TV region
    b = _batch([1.0], [[1.0]], np.log(q))
    _, m, g = _value_and_grad(dppo, np.log(p), b, dppo.Config(ratio_cap=2.0, norm_const=1.0))
    np.testing.assert_allclose(g, [[-2.0]], rtol=1e-5)  # -min(rho, C) A
    np.testing.assert_allclose(m["clip_frac/cap"], 1.0)


# ----------------------------------------------------------------------------------------------- opo


def test_opo_length_weighted_baseline_by_hand():
    # Group 0: rewards [1, 0], lengths [3, 1] -> b = (3 * 1 + 1 * 0) / 4 = 0.75 -> A = [0.25, -0.75].
    # Group 1: rewards [1, 1] -> b = 1 -> A = [0, 0].
    mask = jnp.array([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]], jnp.float32)
    a, _ = opo.advantages({"rewards": jnp.array([1.0, 0.0, 1.0, 1.0]), "mask": mask, "group_size": 2}, opo.Config())
    np.testing.assert_allclose(a, [0.25, -0.75, 0.0, 0.0], rtol=1e-6)
    # equal lengths reduce to the plain group mean (Dr.GRPO's centered advantage)
    a, _ = opo.advantages({"rewards": jnp.array([1.0, 0.0]), "mask": jnp.ones((2, 2)), "group_size": 2}, opo.Config())
    np.testing.assert_allclose(a, [0.5, -0.5], rtol=1e-6)


# ----------------------------------------------------------------------------------------- pass_at_k


def test_pass_at_k_credits_only_the_best_by_its_margin():
    r = jnp.array([0.2, 0.9, 0.5, 0.1, 0.2, 0.9, 0.5, 0.9])
    a, _ = pass_at_k.advantages({"rewards": r, "mask": jnp.ones((8, 2)), "group_size": 4}, pass_at_k.Config())
    # group 0: margin 0.9 - 0.5 = 0.4 on row 1, divided by std([.2, .9, .5, .1]; ddof 1) = 0.3593976
    np.testing.assert_allclose(a[:4], [0.0, 0.4 / (0.3593976 + 1e-6), 0.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(a[4:], 0.0)  # two rows share the max: margin 0
    a, _ = pass_at_k.advantages(
        {"rewards": r, "mask": jnp.ones((8, 2)), "group_size": 4}, pass_at_k.Config(norm_by_std=False)
    )
    np.testing.assert_allclose(a[:4], [0.0, 0.4, 0.0, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="group_size >= 2"):
        pass_at_k.best_margin(jnp.ones(3), 1)


# --------------------------------------------------------------------------------------------- vespo


def test_vespo_gamma_weight_by_hand():
    # phi(w) = e^lam w^k e^{-lam w}: phi(1) = 1; (k, lam) = (2, 3) at w = 2: 4 e^{-3}; (3, 2) at w = 1/2: e / 8.
    np.testing.assert_allclose(vespo.gamma_weight(jnp.float32(0.0), 2.0, 3.0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vespo.gamma_weight(jnp.log(2.0), 2.0, 3.0), 4 * math.exp(-3), rtol=1e-5)
    np.testing.assert_allclose(vespo.gamma_weight(jnp.log(0.5), 3.0, 2.0), math.e / 8, rtol=1e-5)


def test_vespo_loss_uses_sequence_weight_by_sign():
    # Row 0 (A = +1): sum of log-ratios = ln 2 -> phi = 4 e^-3. Row 1 (A = -1): ln 0.5 -> phi = e / 8.
    old = np.full((2, 2), -1.0)
    lr = np.array([[math.log(2.0) / 2, math.log(2.0) / 2], [math.log(0.5), 0.0]])
    b = _batch([1.0, -1.0], [[1, 1], [1, 1]], old)
    loss, m, g = _value_and_grad(vespo, old + lr, b, vespo.Config())
    phi = np.array([4 * math.exp(-3), math.e / 8])
    lp = old + lr
    np.testing.assert_allclose(loss, np.sum(-phi[:, None] * np.array([[1.0], [-1.0]]) * lp) / 4, rtol=1e-5)
    np.testing.assert_allclose(g, -phi[:, None] * np.array([[1.0], [-1.0]]) * np.ones((2, 2)) / 4, rtol=1e-5)
    np.testing.assert_allclose(m["vespo/phi_mean"], phi.mean(), rtol=1e-5)


# ----------------------------------------------------------------------------------------- cispo_seq


def test_cispo_seq_weight_is_the_clipped_sequence_ratio():
    # Row 0: log-ratios [0.2, 0.4] -> s = exp(0.3); row 1: [2.0, 2.0] -> s = e^2 = 7.39, capped at 5.
    # Both detached: the gradient is -w_i A_i / num_tokens per token (TRL: loss_type="cispo",
    # importance_sampling_level="sequence", epsilon_high=5.0).
    old = np.full((2, 2), -1.0)
    lr = np.array([[0.2, 0.4], [2.0, 2.0]])
    b = _batch([1.0, -0.5], [[1, 1], [1, 1]], old)
    loss, m, g = _value_and_grad(cispo_seq, old + lr, b, cispo_seq.Config())
    w = np.array([math.exp(0.3), 5.0])
    adv = np.array([[1.0], [-0.5]])
    np.testing.assert_allclose(loss, np.sum(-w[:, None] * adv * (old + lr)) / 4, rtol=1e-5)
    np.testing.assert_allclose(g, -w[:, None] * adv * np.ones((2, 2)) / 4, rtol=1e-5)
    np.testing.assert_allclose(m["clip_frac/high"], 0.5)  # one of two sequences capped


# --------------------------------------------------------------------------------------------- remax


def test_remax_greedy_baseline_advantage_and_sequence_sum():
    ro = {
        "rewards": jnp.array([1.0, 0.0, 1.0, 1.0]),
        "greedy_rewards": jnp.array([0.0, 0.0, 1.0, 1.0]),  # prompt 0's greedy answer wrong, prompt 1's right
        "mask": jnp.ones((4, 2)),
        "group_size": 2,
    }
    a, m = remax.advantages(ro, remax.Config())
    np.testing.assert_allclose(a, [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(m["reward/greedy"], 0.5)
    with pytest.raises(KeyError, match="greedy_baseline rollout kind"):
        remax.advantages({"rewards": jnp.ones(2), "mask": jnp.ones((2, 2)), "group_size": 2}, remax.Config())
    # on-policy (rho = 1) clipped surrogate -A rho, summed per response, mean over N = 2 responses:
    # row 0: -1 - 1 = -2, row 1: 0 -> loss -1; gradient -A rho / N = -0.5 on row 0's tokens.
    lp = np.array([[-0.5, -0.25], [-1.0, -2.0]])
    loss, _, g = _value_and_grad(remax, lp, _batch([1.0, 0.0], [[1, 1], [1, 1]], lp), remax.Config())
    np.testing.assert_allclose(loss, -1.0, rtol=1e-6)
    np.testing.assert_allclose(g, [[-0.5, -0.5], [0.0, 0.0]], rtol=1e-6)
    assert algorithms.get("remax").rollout == "greedy_baseline"


# ------------------------------------------------------------------------------- ops: KL, aggregation


def test_abs_estimator_value_and_zero_gradient_at_reference():
    lp, ref = jnp.array([-1.0, -0.5, -2.0]), jnp.array([-1.2, -0.5, -1.0])
    np.testing.assert_allclose(kl.estimate(lp, ref, "abs"), [0.2, 0.0, 1.0], rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(kl.estimate(x, ref, "abs")))(lp)
    np.testing.assert_allclose(g, [1.0, 0.0, -1.0])  # torch.abs convention: 0 at d = 0


def test_penalty_ratio_weighting_and_token_sum():
    lp = jnp.array([[-1.0, -0.5], [-0.2, -3.0]])
    ref = jnp.array([[-1.1, -0.4], [-0.3, -0.1]])
    mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    rho = jnp.array([[1.1, 0.9], [1.0, 7.0]])
    k3 = np.exp(ref - lp) - 1 - (ref - lp)
    got = kl.penalty(lp, ref, mask, "k3", "token_sum", 3.0, 2.0, ratio=rho)
    np.testing.assert_allclose(got, np.sum(np.asarray(mask) * np.asarray(rho) * k3), rtol=1e-5)
    got = kl.penalty(lp, ref, mask, "k3", "token_sum", 3.0, 2.0, norm_const=2.0)
    np.testing.assert_allclose(got, np.sum(np.asarray(mask) * k3) / 2.0, rtol=1e-5)
    assert "token_sum" in aggregation.MODES


def test_every_new_method_is_registered_with_its_paper():
    for name in (
        "sapo",
        "gmpo",
        "gpg",
        "clip_cov",
        "kl_cov",
        "dppo",
        "opo",
        "pass_at_k",
        "vespo",
        "cispo_seq",
        "remax",
    ):
        algo = algorithms.get(name)
        doc = algo.module.__doc__
        assert "verl:" in doc and "TRL:" in doc, name
        assert algo.paper_url in doc
        assert dataclasses.is_dataclass(algo.Config())


@pytest.mark.slow
def test_greedy_baseline_kind_scores_one_greedy_decode_per_prompt(tmp_path):
    """The ``greedy_baseline`` rollout kind (ReMax): ``greedy_rewards`` is the reward of the greedy
    completion of each row's prompt, equal within a group, and the sampled rows are the ``group``
    kind's."""
    cfg = C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={tmp_path / 'remax'}",
            "model.name=tiny",
            "task.name=rg:basic_arithmetic",
            'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
            '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 24}',
            "sft.steps=0",
            "train.prompts_per_step=3",
            "train.group_size=2",
            "sampling.max_new_tokens=3",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "mesh.num_devices=1",
            "algorithm=remax",
        ],
    )
    tr = train.Trainer(cfg)
    try:
        assert tr.kind.name == "greedy_baseline"
        key = jax.random.key(3)
        rollout, metrics = tr.kind.collect(tr.ctx, key, None)
        greedy = np.asarray(rollout["greedy_rewards"])
        assert greedy.shape == (6,) and np.all(greedy[0::2] == greedy[1::2])
        heads = np.arange(0, 6, 2)
        out = tr.ctx.policy.generate(
            np.asarray(rollout.prompt_tokens)[heads], np.asarray(rollout.prompt_mask)[heads], key, 1, greedy=True
        )
        examples = [tr.task.train_example(int(i)) for i in np.asarray(rollout.prompt_ids)[heads]]
        want, _ = tr.ctx.score(tr.ctx.policy.decode(out["tokens"], out["lengths"]), examples)
        np.testing.assert_array_equal(greedy[heads], want)
        np.testing.assert_allclose(metrics["reward/greedy_mean"], np.mean(want))
    finally:
        tr.close()


# ------------------------------------------------------------------------------- gdpo (issue #22, P2)


def _gdpo_rollout(components, mask, group_size):
    comps = jnp.asarray(components, jnp.float32)
    return {
        "rewards": comps.sum(axis=1),
        "reward_components": comps,
        "mask": jnp.asarray(mask, jnp.float32),
        "group_size": group_size,
    }


def test_gdpo_keeps_reward_combinations_apart_that_grpo_collapses():
    # The paper's example (G = 2): group 0 has totals (0, 1) from components r1 = (0, 1), r2 = (0, 0);
    # group 1 has totals (0, 2) from r1 = (0, 1), r2 = (0, 1). GRPO gives both groups (-1/sqrt2, 1/sqrt2).
    # GDPO: a 2-sample z-score (ddof 1) is +-1/sqrt2 per varying component, 0 for a constant one:
    # S = (-a, a, -2a, 2a), a = 1/sqrt2. Token whitening (2 tokens a row): mean 0,
    # var = 2 (a^2 + a^2 + 4a^2 + 4a^2) / (8 - 1) = 10/7 -> A = S / sqrt(10/7).
    comps = [[0, 0], [1, 0], [0, 0], [1, 1]]
    ro = _gdpo_rollout(comps, np.ones((4, 2)), 2)
    a, m = gdpo.advantages(ro, gdpo.Config())
    s = np.array([-1, 1, -2, 2]) / math.sqrt(2)  # the group eps (std + 1e-6) scales all of S: whitening cancels it
    np.testing.assert_allclose(a, s / math.sqrt(10 / 7 + 1e-8), rtol=1e-6)
    grpo_a, _ = algorithms.get("grpo").advantages(ro, algorithms.get("grpo").Config())
    np.testing.assert_allclose(grpo_a[:2], grpo_a[2:], rtol=1e-6)  # GRPO: the two groups collapse
    np.testing.assert_allclose(m["reward/component_1"], 0.25)
    # TRL's convention: whiten over completions, (S - mean) / (std(ddof 1) + 1e-4): std = sqrt(5/3)
    a, _ = gdpo.advantages(ro, gdpo.Config(whiten="sequence"))
    np.testing.assert_allclose(a, s / (math.sqrt(5 / 3) + 1e-4), rtol=1e-5)


def test_gdpo_weights_and_token_whitening_match_a_numpy_reference():
    rng = np.random.default_rng(0)
    P, G, C, T = 3, 4, 3, 5
    comps = rng.integers(0, 3, size=(P * G, C)).astype(np.float32)
    comps[:G, 0] = 1.0  # a constant component in group 0 contributes exactly 0 there
    lengths = rng.integers(1, T + 1, size=P * G)
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)
    w = (1.0, 0.5, 2.0)
    a, _ = gdpo.advantages(_gdpo_rollout(comps, mask, G), gdpo.Config(weights=w))
    # reference, in verl's convention: per group and component (r - mean) / (std(ddof 1) + 1e-6),
    # weighted sum, then whiten every TOKEN's copy of it (Bessel over the token count, 1e-8 in the sqrt)
    s = np.zeros(P * G)
    for p in range(P):
        rows = slice(p * G, (p + 1) * G)
        for k in range(C):
            r = comps[rows, k].astype(np.float64)
            z = np.zeros(G) if r.std() == 0 else (r - r.mean()) / (r.std(ddof=1) + 1e-6)
            s[rows] += w[k] * z
    tok = np.repeat(s, lengths)
    want = (s - tok.mean()) / np.sqrt(tok.var(ddof=1) + 1e-8)
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)


def test_gdpo_input_errors_name_the_problem():
    ro = _gdpo_rollout([[0, 1], [1, 0]], np.ones((2, 2)), 2)
    with pytest.raises(ValueError, match="3 entries for 2 reward components"):
        gdpo.advantages(ro, gdpo.Config(weights=(1.0, 1.0, 1.0)))
    with pytest.raises(KeyError, match="reward_components"):
        gdpo.advantages({k: v for k, v in ro.items() if k != "reward_components"}, gdpo.Config())
    with pytest.raises(ValueError, match="whiten"):
        gdpo.Config(whiten="group")


# -------------------------------------------------------------------------------- dro (issue #22, P2)


def test_dro_token_loss_and_gradient_by_hand():
    # verl's docs/algo/dro.md: l = -(log pi A - beta/2 (log pi - log pi_old)^2), token_mean.
    # t0: -(-0.8 * 2 - 0.025 * 0.04) = 1.601 ; t1: -(-0.9 * -1.5 - 0.025 * 0.04) = -1.349 ; t2 masked.
    # d l / d log pi = -A + beta (log pi - log pi_old): t0 -2 + 0.01 = -1.99, t1 1.5 - 0.01 = 1.49; / 2 tokens.
    b = _batch([[2.0, -1.5, 9.0]], [[1, 1, 0]], [[-1.0, -0.7, -0.2]])
    loss, m, g = _value_and_grad(dro, [[-0.8, -0.9, -0.1]], b, dro.Config(dro_beta=0.05))
    np.testing.assert_allclose(loss, (1.601 - 1.349) / 2, rtol=1e-5)
    np.testing.assert_allclose(g, [[-0.995, 0.745, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(m["dro/log_ratio_sq"], 0.04, rtol=1e-5)
    # the penalty acts where A = 0 too (a soft trust region on every loss token)
    b = _batch([[0.0, 0.0]], [[1, 1]], [[-1.0, -1.0]])
    loss, _, _ = _value_and_grad(dro, [[-0.5, -1.0]], b, dro.Config(dro_beta=0.2))
    np.testing.assert_allclose(loss, 0.1 * 0.25 / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="dro_beta must be > 0"):
        dro.Config(dro_beta=0.0)


# ------------------------------------------------------------ optimal token baseline (issue #22, P2)


def _otb_rollout(rewards, mask, pi, sum_pi_sq, group_size, **extra):
    return {
        "rewards": jnp.asarray(rewards, jnp.float32),
        "mask": jnp.asarray(mask, jnp.float32),
        "old_logprobs": jnp.log(jnp.asarray(pi, jnp.float32)),
        "sum_pi_squared": jnp.asarray(sum_pi_sq, jnp.float32),
        "group_size": group_size,
        **extra,
    }


def test_optimal_token_baseline_by_hand():
    # Row 0: r = 1, 3 tokens, pi = 0.5, sum pi^2 = 0.5 -> w = 1 - 1 + 0.5 = 0.5 -> W = (0.5, 1, 1.5).
    # Row 1: r = 0, 2 tokens, pi = 0.25, sum pi^2 = (0.25, 0.5) -> w = (0.75, 1.0) -> W = (0.75, 1.75).
    # b0 = 0.5 / 1.25 = 0.4 ; b1 = 1 / 2.75 ; t = 2: only row 0 is alive and strictly the longest:
    # zero_tail -> b = 0 there (without it b = 1.5 / 1.5 = 1 and its advantage vanishes).
    ro = _otb_rollout(
        [1.0, 0.0], [[1, 1, 1], [1, 1, 0]], [[0.5] * 3, [0.25, 0.25, 1.0]], [[0.5] * 3, [0.25, 0.5, 0.0]], 2
    )
    a, _ = optimal_token_baseline.advantages(ro, optimal_token_baseline.Config())
    b1 = 1 / 2.75
    np.testing.assert_allclose(a, [[0.6, 1 - b1, 1.0], [-0.4, -b1, 0.0]], rtol=1e-6)
    a, _ = optimal_token_baseline.advantages(ro, optimal_token_baseline.Config(zero_tail=False))
    np.testing.assert_allclose(a, [[0.6, 1 - b1, 0.0], [-0.4, -b1, 0.0]], rtol=1e-6, atol=1e-7)
    # a group of one row: no baseline (A = r); rollout correction scales w by rho^2
    one = _otb_rollout([2.0], [[1, 1]], [[0.5, 0.5]], [[0.5, 0.5]], 1)
    np.testing.assert_allclose(optimal_token_baseline.advantages(one, optimal_token_baseline.Config())[0], [[2, 2]])
    rho = jnp.asarray([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])  # row 1's first w: 0.75 * 4 = 3
    a, _ = optimal_token_baseline.advantages(dict(ro, is_weights=rho), optimal_token_baseline.Config())
    np.testing.assert_allclose(a[:, 0], [1 - 0.5 / 3.5, -0.5 / 3.5], rtol=1e-6)


def test_tir_optimal_token_baseline_indexes_the_policy_tokens_by_hand():
    # Row 0 (r = 1): loss tokens at columns 0, 2, 3 (an observation at column 1); row 1 (r = 0): columns 0, 1.
    # w = 0.5 everywhere (pi = sum pi^2 = 0.5). Multi-turn: k-th loss token vs k-th loss token:
    # k = 0: W = (0.5, 0.5) -> b = 0.5 ; k = 1: W = (1, 1) -> b = 0.5 ; k = 2: row 0 alone, zero tail -> 0.
    mask = [[1, 0, 1, 1], [1, 1, 0, 0]]
    ro = _otb_rollout([1.0, 0.0], mask, np.full((2, 4), 0.5), np.full((2, 4), 0.5), 2)
    a, _ = tir_optimal_token_baseline.advantages(ro, tir_optimal_token_baseline.Config())
    np.testing.assert_allclose(a, [[0.5, 0.0, 0.5, 1.0], [-0.5, -0.5, 0.0, 0.0]], rtol=1e-6)
    # single-turn OTB compares columns: column 1 has only row 1 (b = 0), column 2 only row 0 (zero tail)
    a, _ = optimal_token_baseline.advantages(ro, optimal_token_baseline.Config())
    np.testing.assert_allclose(a, [[0.5, 0.0, 1.0, 1.0], [-0.5, 0.0, 0.0, 0.0]], rtol=1e-6)
    # an empty row does not count in its group (multi-turn): the other row is alone -> A = r
    ro = _otb_rollout([1.0, 0.0], [[1, 1, 0, 0], [0, 0, 0, 0]], np.full((2, 4), 0.5), np.full((2, 4), 0.5), 2)
    a, _ = tir_optimal_token_baseline.advantages(ro, tir_optimal_token_baseline.Config())
    np.testing.assert_allclose(a, [[1.0, 1.0, 0.0, 0.0], [0.0] * 4])


def _otb_loop_reference(r, mask, w, G, multi_turn, zero_tail=True, eps=1e-8):
    """A per-group loop over compacted positions, written from verl's documented algorithm."""
    B, T = mask.shape
    adv = np.zeros((B, T))
    cum = np.cumsum(w * mask, axis=1)
    for p in range(B // G):
        rows = [i for i in range(p * G, (p + 1) * G) if not multi_turn or mask[i].sum() > 0]
        cols = {i: (np.flatnonzero(mask[i]) if multi_turn else np.arange(int(mask[i].sum()))) for i in rows}
        width = max([len(c) for c in cols.values()] + [0])
        Wk = np.zeros((len(rows), width))
        Rk = np.zeros((len(rows), width))
        for j, i in enumerate(rows):
            Wk[j, : len(cols[i])] = cum[i, cols[i]]
            Rk[j, : len(cols[i])] = r[i]
        base = np.zeros((len(rows), width))
        if len(rows) > 1:
            base[:] = (Rk * Wk).sum(0) / (Wk.sum(0) + eps)
            lens = sorted(len(cols[i]) for i in rows)
            longest = [j for j, i in enumerate(rows) if len(cols[i]) == lens[-1]]
            if zero_tail and len(longest) == 1 and lens[-1] > lens[-2]:
                base[longest[0], lens[-2] :] = 0.0
        for j, i in enumerate(rows):
            adv[i, cols[i]] = (Rk[j] - base[j])[: len(cols[i])]
    return adv


@pytest.mark.parametrize("multi_turn", [False, True])
def test_optimal_token_baseline_matches_a_loop_reference(multi_turn):
    rng = np.random.default_rng(1 + multi_turn)
    P, G, T = 3, 4, 6
    lengths = rng.integers(1, T + 1, size=P * G)
    lengths[5] = 0  # an empty row
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)
    if multi_turn:  # observation gaps inside rows
        mask = mask * (rng.random((P * G, T)) > 0.3)
    pi = rng.uniform(0.05, 0.95, size=(P * G, T))
    s = pi**2 + rng.uniform(0, 1, size=pi.shape) * (1 - pi) ** 2  # a valid sum_v pi_v^2
    r = rng.integers(0, 2, size=P * G).astype(np.float32)
    mod = tir_optimal_token_baseline if multi_turn else optimal_token_baseline
    a, _ = mod.advantages(_otb_rollout(r, mask, pi, s, G), mod.Config())
    want = _otb_loop_reference(r, mask, 1 - 2 * pi + s, G, multi_turn)
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)


def test_sum_pi_squared_from_logits():
    z = jnp.log(jnp.asarray([[0.5, 0.25, 0.25], [1.0, 1e-12, 1e-12]]))
    np.testing.assert_allclose(token_stats.sum_pi_squared_from_logits(z), [0.375, 1.0], rtol=1e-6)


def test_p2_methods_are_registered_with_their_peers():
    for name in ("gdpo", "optimal_token_baseline", "tir_optimal_token_baseline", "dro"):
        algo = algorithms.get(name)
        doc = algo.module.__doc__
        assert "verl:" in doc and "TRL:" in doc, name
        assert algo.paper_url in doc
        assert dataclasses.is_dataclass(algo.Config())
    assert algorithms.get("gdpo").rollout_extras == ("reward_components",)
    assert algorithms.get("optimal_token_baseline").rollout_extras == ("sum_pi_squared",)


@pytest.mark.slow
def test_group_kind_builds_reward_components_and_sum_pi_squared(tmp_path):
    """The ``group`` kind on a task with two reward functions (correctness + tag format): GDPO's
    ``reward_components`` are each function's raw reward (their weighted sum is ``rewards``), and
    the optimal token baseline's ``sum_pi_squared`` is ``sum_v pi_old(v)^2`` of the full softmax."""
    cfg = C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={tmp_path / 'gdpo'}",
            "model.name=tiny",
            "task.name=suite:tagged_arithmetic",
            'task.kwargs={"min_terms": 2, "max_terms": 2, "format_weight": 0.5, "num_eval": 4, "size": 24}',
            "task.max_prompt_len=256",
            "sft.steps=0",
            "train.prompts_per_step=2",
            "train.group_size=2",
            "sampling.max_new_tokens=3",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "mesh.num_devices=1",
            "algorithm=gdpo",
        ],
    )
    tr = train.Trainer(cfg)
    try:
        rollout, _ = tr.kind.collect(tr.ctx, jax.random.key(0), None)
        comps = np.asarray(rollout["reward_components"])
        assert comps.shape == (4, 2)
        np.testing.assert_allclose(comps @ np.array([1.0, 0.5]), rollout.rewards, rtol=1e-6)
        completions = tr.ctx.policy.decode(rollout.tokens, rollout.lengths)
        examples = [tr.task.train_example(int(i)) for i in np.asarray(rollout.prompt_ids)]
        fns = [fn for fn, _ in tr.task.reward_fns]
        want = [[float(fn(c, e)) for fn in fns] for c, e in zip(completions, examples)]
        np.testing.assert_allclose(comps, want)

        otb_ctx = dataclasses.replace(tr.ctx, algo=algorithms.get("optimal_token_baseline"))
        rollout, _ = tr.kind.collect(otb_ctx, jax.random.key(1), None)
        got = np.asarray(rollout["sum_pi_squared"])
        p = tr.ctx.policy
        tokens, attention = train.model_inputs(rollout)
        model = p.model(p.params)
        hidden, _ = model.hidden_states(tokens, models.positions_from_mask(attention), attention)
        T = rollout.tokens.shape[1]
        probs = jax.nn.softmax(model.unembed(hidden[:, -T - 1 : -1]), axis=-1)
        want = np.asarray(jnp.sum(probs**2, axis=-1)) * np.asarray(rollout.mask)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        pi = np.exp(p.logprobs(p.params, tokens, attention, T))
        assert np.all((1 - 2 * pi + got)[np.asarray(rollout.mask) != 0] >= -1e-5)  # ||e_o - pi||^2 >= 0
    finally:
        tr.close()


# ------------------------------------------------------ shared pieces of clip_cov/kl_cov and opo/remax


def test_covariance_rollout_selection_bounds_and_logprob_source():
    # A = (1, -1) per row; log pi_old = (-1, -3 | -2, -2): means 0 and -2, Cov = A (lp + 2):
    # row 0: (1, -1), row 1: (-0, -0) -> top-1 is (0, 0); with bounds (0.5, 5) only (0, 0) is eligible.
    mask = jnp.ones((2, 2))
    lp = jnp.asarray([[-1.0, -3.0], [-2.0, -2.0]])
    adv = jnp.asarray([1.0, -1.0])
    for key in ("old_logprobs", "sampler_logprobs"):
        sel = covariance.rollout_selection({"mask": mask, key: lp}, adv, 0.25, "t")
        np.testing.assert_array_equal(sel, [[1, 0], [0, 0]])
    sel = covariance.rollout_selection({"mask": mask, "old_logprobs": lp}, adv, 1.0, "t", bounds=(-0.5, 0.5))
    np.testing.assert_array_equal(sel, [[0, 0], [1, 1]])  # Cov = 0 on row 1: inside (-0.5, 0.5)
    with pytest.raises(KeyError, match="where_x: batch is missing"):
        covariance.rollout_selection({"mask": mask}, adv, 0.5, "where_x")


def test_clipped_terms_reference_kl_only_with_beta():
    b = _batch([1.0, -1.0], [[1, 1], [1, 0]], [[-1.0, -1.0], [-1.0, -1.0]], ref_logprobs=jnp.full((2, 2), -1.5))
    lp = jnp.asarray([[-1.0, -1.2], [-0.8, 0.0]])
    for mod in (opo, remax, gdpo):
        _, m0 = mod.loss(lp, b, mod.Config())
        assert "kl" not in m0 and "loss/kl" not in m0
        loss, m = mod.loss(lp, b, mod.Config(beta=0.1, kl_estimator="k1"))
        want_kl = aggregation.aggregate(lp - b["ref_logprobs"], b["mask"], mod.Config().aggregation, 3.0, 2.0)
        np.testing.assert_allclose(m["kl"], want_kl, rtol=1e-6)
        np.testing.assert_allclose(loss, m0["loss"] + 0.1 * want_kl, rtol=1e-6)
