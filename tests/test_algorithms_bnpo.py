"""BNPO: Beta-normalized advantages, the tracked (alpha, beta) state and the loss, pinned by
the hand-computed batch, its REINFORCE / GRPO equivalences and a port of the official code."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxrl_llm.algorithms import bnpo

SPEC_REWARDS = np.array([1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0], np.float32)  # p = 0.25, 0.5, 0.75


def _rollout(rewards, g=4, **extra):
    rewards = jnp.asarray(rewards, jnp.float32)
    return {"rewards": rewards, "mask": jnp.ones((rewards.shape[0], 2)), "group_size": g, **extra}


def test_spec_batch_case():
    adv, m = bnpo.advantages(_rollout(SPEC_REWARDS), bnpo.Config())
    assert float(m["bnpo/alpha"]) == pytest.approx(1.5, rel=1e-5)
    assert float(m["bnpo/beta"]) == pytest.approx(1.5, rel=1e-5)
    np.testing.assert_allclose(adv[:2], [0.68017, -0.22672], rtol=1e-4)
    np.testing.assert_allclose(adv[4], 0.39270, rtol=1e-4)


def test_fit_beta_moments():
    alpha, beta = bnpo.fit_beta(jnp.float32(0.5), jnp.float32(0.0625))
    assert float(alpha) == pytest.approx(1.5) and float(beta) == pytest.approx(1.5)
    # A spread wider than a Bernoulli's (v > mu (1 - mu)) clamps both at 1: REINFORCE.
    alpha, beta = bnpo.fit_beta(jnp.float32(0.3), jnp.float32(0.25))
    assert float(alpha) == 1.0 and float(beta) == 1.0


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_reinforce_and_grpo_equivalences(p):
    inv1 = bnpo.inverse_density(jnp.float32(p), 1.0, 1.0)
    assert float(inv1) == pytest.approx(1.0, rel=1e-6)  # A = R - p
    inv15 = bnpo.inverse_density(jnp.float32(p), 1.5, 1.5)
    assert float(inv15) == pytest.approx(math.pi / 8 / math.sqrt(p * (1 - p)), rel=1e-5)


def test_inverse_density_matches_scipy_and_clamps():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 6, 20), rng.uniform(1, 6, 20)
    p = rng.uniform(0.02, 0.98, 20)
    want = np.minimum(1 / scipy.stats.beta.pdf(p, a, b), 1e6)
    np.testing.assert_allclose(
        bnpo.inverse_density(jnp.asarray(p, jnp.float32), jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)),
        want,
        rtol=2e-4,
    )
    edge = bnpo.inverse_density(jnp.array([0.0, 1.0, 0.0]), jnp.array([2.0, 2.0, 1.0]), jnp.array([2.0, 2.0, 3.0]))
    np.testing.assert_allclose(edge, [1e6, 1e6, 1 / 3], rtol=1e-5)


def ref_code(scores, index, min_value=0.0, max_value=1.0, ddof=1):
    """Port of the official compute_bnpo_outcome_advantage (loop form, scipy Beta pdf)."""
    scores = (np.asarray(scores, np.float64) - min_value) / (max_value - min_value)
    groups = {}
    for i, idx in enumerate(index):
        groups.setdefault(idx, []).append(scores[i])
    mean = {k: (0.0 if len(v) == 1 else float(np.mean(v))) for k, v in groups.items()}
    all_p = np.array(list(mean.values()))
    p_mean = all_p.mean() if len(all_p) > 1 else 0.0
    p_var = all_p.var(ddof=ddof) if len(all_p) > 1 else 1.0
    a = (p_mean * (1 - p_mean) / p_var - 1) * p_mean
    b = (p_mean * (1 - p_mean) / p_var - 1) * (1 - p_mean)
    alpha, beta = max(1 + a / 3, 1.0), max(1 + b / 3, 1.0)
    out = []
    for i, idx in enumerate(index):
        p = mean[idx]
        with np.errstate(divide="ignore"):
            w = min(1 / scipy.stats.beta.pdf(p, alpha, beta), 1e6)
        out.append(w * (scores[i] - p))
    return np.array(out), alpha, beta


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_official_code_port(seed):
    rng = np.random.default_rng(seed)
    g, p = 8, 6
    rates = rng.uniform(0.05, 0.95, size=p)
    rewards = (rng.uniform(size=(p, g)) < rates[:, None]).astype(np.float32).reshape(-1)
    rewards[:g] = 1.0  # one all-correct group: p = 1, A = 0
    want, alpha, beta = ref_code(rewards, np.repeat(np.arange(p), g))
    fn = jax.jit(
        lambda r: bnpo.advantages({"rewards": r, "mask": jnp.ones((p * g, 1)), "group_size": g}, bnpo.Config())
    )
    got, m = fn(jnp.asarray(rewards))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert float(m["bnpo/alpha"]) == pytest.approx(alpha, rel=1e-5)
    assert float(m["bnpo/beta"]) == pytest.approx(beta, rel=1e-5)


def test_affine_reward_map_and_single_prompt_is_reinforce():
    # Rewards in [-1, 1] mapped to [0, 1]; one prompt: mu = 0, v = 1 -> alpha = beta = 1.
    cfg = bnpo.Config(reward_min=-1.0, reward_max=1.0)
    adv, m = bnpo.advantages(_rollout([1.0, -1.0, -1.0, 0.0]), cfg)
    r01 = np.array([1.0, 0.0, 0.0, 0.5])
    np.testing.assert_allclose(adv, r01 - r01.mean(), rtol=1e-6)
    assert float(m["bnpo/alpha"]) == 1.0 and float(m["bnpo/beta"]) == 1.0


def test_equal_success_rates_do_not_divide_by_zero():
    adv, _ = bnpo.advantages(_rollout([1, 0, 1, 0, 0, 1, 0, 1], g=4), bnpo.Config())
    assert np.all(np.isfinite(adv))
    assert np.max(np.abs(adv)) < 0.05  # a very peaked Beta at p = 0.5: A -> 0


def test_advantage_decomposition_averages_per_component_fits():
    comp = np.stack([SPEC_REWARDS, np.array([1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1], np.float32)], axis=1)
    cfg = bnpo.Config(reward_components=2)
    adv, _ = bnpo.advantages(_rollout(comp.sum(1) / 2, reward_components=jnp.asarray(comp)), cfg)
    a0, _ = bnpo.advantages(_rollout(comp[:, 0]), bnpo.Config())
    a1, _ = bnpo.advantages(_rollout(comp[:, 1]), bnpo.Config())
    np.testing.assert_allclose(adv, (a0 + a1) / 2, rtol=1e-6)
    state = bnpo.update_state(bnpo.init_state(cfg), _rollout(comp.sum(1) / 2, reward_components=jnp.asarray(comp)), cfg)
    assert state["alpha"].shape == (2,)


def test_state_tracks_fit_and_momentum_smooths_it():
    batches = [SPEC_REWARDS, np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1], np.float32)]
    cfg0 = bnpo.Config()
    s = bnpo.init_state(cfg0)
    for r in batches:
        s = bnpo.update_state(s, _rollout(r), cfg0)
    fresh = bnpo.update_state(bnpo.init_state(cfg0), _rollout(batches[1]), cfg0)
    jax.tree.map(
        np.testing.assert_allclose,
        {k: v for k, v in s.items() if k != "steps"},
        {k: v for k, v in fresh.items() if k != "steps"},
    )  # momentum 0: refit per batch
    assert int(s["steps"]) == 2
    # Momentum 0.5: the second fit uses mu, v averaged with the first batch's.
    cfg = bnpo.Config(momentum=0.5)
    s = bnpo.update_state(bnpo.init_state(cfg), _rollout(batches[0]), cfg)
    np.testing.assert_allclose([s["mu"][0], s["v"][0]], [0.5, 0.0625], rtol=1e-6)
    p2 = np.array([1.0, 0.75, 0.25])
    mu = 0.5 * 0.5 + 0.5 * p2.mean()
    v = 0.5 * 0.0625 + 0.5 * p2.var(ddof=1)
    adv, m = bnpo.advantages(_rollout(batches[1]), cfg, s)
    k = mu * (1 - mu) / v - 1
    assert float(m["bnpo/alpha"]) == pytest.approx(max(1, 1 + k * mu / 3), rel=1e-5)
    assert float(m["bnpo/beta"]) == pytest.approx(max(1, 1 + k * (1 - mu) / 3), rel=1e-5)
    s2 = bnpo.update_state(s, _rollout(batches[1]), cfg)
    np.testing.assert_allclose([s2["mu"][0], s2["v"][0]], [mu, v], rtol=1e-6)
    assert float(s2["alpha"][0]) == pytest.approx(float(m["bnpo/alpha"]), rel=1e-6)


def ref_loss(lp, old, adv, mask, eps_low=0.2, eps_high=0.28, c=10.0):
    rho = np.exp(lp - old)
    a = adv[:, None]
    l = np.maximum(-a * rho, -a * np.clip(rho, 1 - eps_low, 1 + eps_high))
    l = np.where(a < 0, np.minimum(l, -c * a), l)
    return (l * mask).sum() / mask.shape[0]  # seq-mean-token-sum


def test_loss_matches_reference():
    rng = np.random.default_rng(4)
    b, t = 6, 5
    mask = (np.arange(t)[None] < rng.integers(1, t + 1, size=b)[:, None]).astype(np.float32)
    old = np.log(rng.uniform(0.05, 0.95, size=(b, t))).astype(np.float32)
    lp = (old + rng.normal(scale=0.5, size=(b, t))).astype(np.float32)
    lp[0, 0] = old[0, 0] + np.log(15.0)  # a dual-clipped token if A[0] < 0
    adv = rng.normal(size=b).astype(np.float32)
    adv[0] = -1.0
    batch = {
        "old_logprobs": jnp.asarray(old),
        "advantages": jnp.asarray(adv),
        "mask": jnp.asarray(mask),
        "num_tokens": jnp.float32(mask.sum()),
        "num_seqs": jnp.float32(b),
    }
    (val, m), g = jax.jit(jax.value_and_grad(lambda x: bnpo.loss(x, batch, bnpo.Config()), has_aux=True))(
        jnp.asarray(lp)
    )
    np.testing.assert_allclose(val, ref_loss(lp, old, adv, mask), rtol=1e-5)
    assert float(g[0, 0]) == 0.0 and float(m["clip_frac/dual"]) > 0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"rewards map to \[0, 2\]"):
        bnpo.advantages(_rollout([0.0, 2.0, 1.0, 1.0]), bnpo.Config())
    with pytest.raises(ValueError, match="momentum"):
        bnpo.Config(momentum=1.0)
    with pytest.raises(KeyError, match="reward_components"):
        bnpo.advantages(_rollout(SPEC_REWARDS), bnpo.Config(reward_components=2))
