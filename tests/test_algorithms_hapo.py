"""HAPO: entropy normalization (and its sign issue), the temperature rule, the token-level group
average, adaptive clipping, advantage redistribution and the loss, pinned by hand-computed
cases and NumPy ports of the official functions."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import hapo

CFG = hapo.Config()
SIGN_H = np.array([0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 0.02, 0.03, 0.3], np.float32)


def ref_entropy_h(h, mask, pivot, sign_mode, floor=1e-6):
    """Port of compute_entropy_h (torch_quantile 'nearest' = Python round) in NumPy."""
    e = np.log(np.maximum(h, floor))
    valid = np.sort(e[mask])
    m = valid[round(pivot * (len(valid) - 1))]
    d = e - m
    s = math.sqrt(max((d[mask] ** 2).mean(), 1e-8))
    z = d / s
    pos_max = max(z[mask & (z > 0)].max(initial=0.0), 1e-8)
    neg_min = min(z[mask & (z < 0)].min(initial=0.0), -1e-8)
    k_neg = 1 / abs(neg_min) if sign_mode == "paper" else 1 / neg_min
    return np.where(z > 0, z / pos_max, z * k_neg), (m, s, 1 / pos_max, k_neg)


@pytest.mark.parametrize("sign_mode", hapo.SIGN_MODES)
def test_entropy_normalization_sign(sign_mode):
    cfg = dataclasses.replace(CFG, sign_mode=sign_mode)
    h = jnp.asarray(SIGN_H)[None]
    mask = jnp.ones_like(h)
    got = np.asarray(hapo.token_hhat(h, mask, cfg))[0]
    want, (m, s, kp, kn) = ref_entropy_h(SIGN_H, np.ones(10, bool), 0.8, sign_mode)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    stats = hapo.entropy_stats(h, mask, cfg)
    np.testing.assert_allclose([stats["m"], stats["s"], stats["k_pos"], stats["k_neg"]], [m, s, kp, kn], rtol=1e-5)
    low = SIGN_H < 0.3  # below the 0.8-quantile pivot
    if sign_mode == "paper":
        assert np.all(got[low] < 0) and got.min() == pytest.approx(-1.0) and got.max() == pytest.approx(1.0)
    else:  # the released code: every token lands in [0, 1]
        assert np.all(got >= 0) and got.max() == pytest.approx(1.0)


def test_masked_tokens_do_not_move_statistics():
    rng = np.random.default_rng(0)
    h = np.abs(rng.normal(size=(4, 7))).astype(np.float32)
    mask = rng.random((4, 7)) < 0.6
    mask[:, 0] = True
    junk = np.where(mask, h, 1e3 * rng.random((4, 7))).astype(np.float32)
    a = hapo.token_hhat(jnp.asarray(h), jnp.asarray(mask, jnp.float32), CFG)
    b = hapo.token_hhat(jnp.asarray(junk), jnp.asarray(mask, jnp.float32), CFG)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    want, _ = ref_entropy_h(h, mask, 0.8, "paper")
    np.testing.assert_allclose(np.asarray(a)[mask], want[mask], rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(a)[~mask] == 0)


def test_nearest_rank_rounds_half_to_even():
    x = jnp.arange(6, dtype=jnp.float32)  # q (n-1) = 0.5 * 5 = 2.5 -> index 2 (half to even)
    assert float(hapo.nearest_rank_quantile(x, jnp.ones(6), 0.5)) == 2.0
    assert float(hapo.nearest_rank_quantile(x, jnp.ones(6), 0.7)) == 4.0  # 3.5 -> 4
    assert float(hapo.nearest_rank_quantile(x, jnp.zeros(6), 0.7)) == 0.0


def test_token_level_group_average_spec():
    a = hapo.token_level_group_advantages(jnp.array([1.0, 0.0]), jnp.array([1.0, 3.0]), 2, CFG)
    np.testing.assert_allclose(a, [1.7320, -0.5773], atol=1e-4)  # mu 0.25, sigma 0.4330


def test_fallback_to_grpo_and_zero_groups():
    # lengths [1, 100]: mu = 1/101, A_1 ~ 10 >= 5 -> GRPO's +-0.7071 for that group
    r = jnp.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    n = jnp.array([1.0, 100.0, 2.0, 2.0, 5.0, 7.0])
    a = np.asarray(hapo.token_level_group_advantages(r, n, 2, CFG))
    np.testing.assert_allclose(a[:2], [0.70710, -0.70710], atol=1e-4)
    np.testing.assert_allclose(a[2:4], [1.0, -1.0], atol=1e-5)  # equal lengths: population z-score
    assert np.all(a[4:] == 0.0)
    _, m = hapo.advantages(
        {"rewards": r, "mask": (jnp.arange(100)[None] < n[:, None]).astype(jnp.float32), "group_size": 2}, CFG
    )
    np.testing.assert_allclose(m["frac_fallback_groups"], 1 / 3, rtol=1e-6)


def test_adaptive_clip_spec():
    lo, hi = hapo.adaptive_clip(jnp.array([0.5, -0.5, 0.0]), CFG)
    np.testing.assert_allclose(1 - lo, [0.8, 0.7, 0.8], atol=1e-6)
    np.testing.assert_allclose(1 + hi, [1.3, 1.2, 1.2], atol=1e-6)


def test_redistribution_spec():
    hhat = jnp.array([0.5, 0.5, -0.5, -0.5])
    rho = jnp.array([1.0, 1.2, 1.0, 1.2])
    lo, hi = hapo.adaptive_clip(hhat, CFG)
    got = hapo.redistribute(jnp.ones(4), hhat, rho, lo, hi, CFG)
    np.testing.assert_allclose(got, [1.0, 1.5, 0.5, 1.0], atol=1e-6)
    neg = hapo.redistribute(-jnp.ones(4), hhat, rho, lo, hi, CFG)  # either sign of A
    np.testing.assert_allclose(neg, [-1.0, -1.5, -0.5, -1.0], atol=1e-6)


def test_temperature_rule():
    rng = np.random.default_rng(1)
    ent = np.abs(rng.normal(size=(6, 9))).astype(np.float32) + 0.05
    rollout = {"entropies": jnp.asarray(ent), "mask": jnp.ones((6, 9)), "rewards": jnp.zeros(6), "group_size": 3}
    state0 = hapo.init_state(CFG)
    logits = jnp.asarray(rng.normal(scale=3.0, size=(5, 40)).astype(np.float32))
    np.testing.assert_array_equal(hapo.temperature_rule(CFG, state0)(logits, 0), 1.0)  # first step: plain T
    np.testing.assert_array_equal(hapo.temperature_rule(CFG)(logits, 0), 1.0)
    state = hapo.update_state(state0, rollout, CFG)
    _, (m, s, kp, kn) = ref_entropy_h(ent.reshape(-1), np.ones(54, bool), 0.8, "paper")
    p = np.exp(np.asarray(logits) - np.asarray(logits).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    h = -(p * np.log(p)).sum(1)
    z = (np.log(h) - m) / (s + 1e-6)
    want = 1.0 * (1 + 0.05 * np.clip(np.where(z > 0, z * kp, z * kn), -1, 1))
    rule = hapo.temperature_rule(CFG, state)
    got = jax.jit(rule)(logits, jnp.int32(3))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.shape == (5,) and np.all((got >= 0.95 - 1e-6) & (got <= 1.05 + 1e-6))


def test_filter_groups():
    r = {"rewards": jnp.array([1, 1, 0, 1, 0, 0], jnp.float32), "group_size": 2}
    np.testing.assert_array_equal(hapo.filter_groups(r, CFG), [False, False, True, True, False, False])
    assert np.all(hapo.filter_groups(r, dataclasses.replace(CFG, dynamic_sampling=False)))


def test_loss_against_numpy():
    rng = np.random.default_rng(4)
    b, t, g = 6, 5, 3
    mask = (rng.random((b, t)) < 0.8).astype(np.float32)
    mask[:, 0] = 1
    rollout = {
        "rewards": jnp.array([1, 0, 0, 1, 1, 0], jnp.float32),
        "mask": jnp.asarray(mask),
        "entropies": jnp.asarray(np.abs(rng.normal(size=(b, t))).astype(np.float32)),
        "group_size": g,
    }
    adv, _ = hapo.advantages(rollout, CFG)
    extras = hapo.batch_extras(rollout, CFG)
    old = -rng.random((b, t)).astype(np.float32)
    lp = old + rng.normal(scale=0.25, size=(b, t)).astype(np.float32)
    batch = {
        "advantages": adv,
        "old_logprobs": jnp.asarray(old),
        "mask": jnp.asarray(mask),
        "num_tokens": jnp.float32(mask.sum()),
        "num_seqs": jnp.float32(b),
        **extras,
    }
    got, metrics = hapo.loss(jnp.asarray(lp), batch, CFG)

    hh = np.asarray(extras["hhat"])
    a = np.broadcast_to(np.asarray(adv)[:, None], (b, t))
    rho = np.exp(lp - old)
    lo = np.where(hh <= 0, 0.2 * (1 - hh), 0.2)
    hi = np.where(hh > 0, 0.2 * (1 + hh), 0.2)
    ent = a * (1 + hh)
    inside = (rho > 1 - lo / 2) & (rho < 1 + hi / 2)
    a2 = np.where(hh > 0, np.where(inside, a, ent), np.where(inside, ent, a))
    per = -np.minimum(rho * a2, np.clip(rho, 1 - lo, 1 + hi) * a2)
    per = np.where(a2 < 0, np.minimum(per, -10.0 * a2), per)
    np.testing.assert_allclose(got, (per * mask).sum() / mask.sum(), rtol=1e-5)
    assert float(metrics["clip_bound/high"]) >= 0.2 - 1e-6 and float(metrics["clip_bound/low"]) >= 0.2 - 1e-6

    plain = dataclasses.replace(CFG, adaptive_clip=False, adaptive_advantage=False)
    per_p = -np.minimum(rho * a, np.clip(rho, 0.8, 1.2) * a)
    per_p = np.where(a < 0, np.minimum(per_p, -10.0 * a), per_p)
    np.testing.assert_allclose(
        hapo.loss(jnp.asarray(lp), batch, plain)[0], (per_p * mask).sum() / mask.sum(), rtol=1e-5
    )


def test_missing_entropies_is_a_named_error():
    with pytest.raises(KeyError, match="entropies"):
        hapo.batch_extras({"rewards": jnp.zeros(2), "mask": jnp.ones((2, 2)), "group_size": 2}, CFG)


def test_fallback_counting_padded_positions_is_the_codes_option():
    """The code tests |A| >= 5 on the [G, T] matrix score * mask, so a padded position of a short row
    counts with the value (0 - mu_tok) / (sigma_tok + eps). Rewards [1, 1, 1, 0.9], lengths 2 of T = 4:
    mu = 0.975, sigma = 0.0433, row advantages 0.577 / -1.732 (no fallback), padded value -22.5
    (fallback to GRPO: 0.5 / -1.5 with the ddof-1 std 0.05)."""
    r = jnp.array([1.0, 1.0, 1.0, 0.9])
    mask = jnp.asarray((np.arange(4)[None] < 2).repeat(4, 0).astype(np.float32))
    rollout = {"rewards": r, "mask": mask, "group_size": 4}
    rows_only, m0 = hapo.advantages(rollout, CFG)
    np.testing.assert_allclose(rows_only, [0.57735, 0.57735, 0.57735, -1.73205], atol=1e-4)
    assert float(m0["frac_fallback_groups"]) == 0.0
    code = dataclasses.replace(CFG, fallback_counts_padding=True)
    with_padding, m1 = hapo.advantages(rollout, code)
    np.testing.assert_allclose(with_padding, [0.5, 0.5, 0.5, -1.5], atol=1e-4)
    assert float(m1["frac_fallback_groups"]) == 1.0
    # no padded position (every row fills T): the two rules agree
    full = {**rollout, "mask": jnp.ones((4, 2))}
    np.testing.assert_allclose(hapo.advantages(full, code)[0], hapo.advantages(full, CFG)[0], atol=1e-6)
    # binary rewards: a padded position has the value of a reward-0 row, so the two rules agree
    binary = {**rollout, "rewards": jnp.array([1.0, 1.0, 1.0, 0.0])}
    np.testing.assert_allclose(hapo.advantages(binary, code)[0], hapo.advantages(binary, CFG)[0], atol=1e-6)
    assert CFG.fallback_counts_padding is False
