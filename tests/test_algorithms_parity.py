"""Hand-computed cases for the verl/TRL parity methods (issue #22, objectives part):
sapo, gmpo, gpg, clip_cov, kl_cov, dppo, opo, pass_at_k, vespo, cispo_seq, remax; and the KL / aggregation ops they
added (``abs`` estimator, ratio-weighted KL, ``token_sum``).

Each case gives the numbers worked by hand (in comments) or by NumPy in the test, following the
peer's convention named in the method's docstring (verl ``core_algos.py`` / TRL ``grpo_trainer.py``).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms, train
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import cispo_seq, clip_cov, dppo, gmpo, gpg, kl_cov, opo, pass_at_k, remax, sapo, vespo
from jaxrl_llm.ops import aggregation, covariance, kl


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
