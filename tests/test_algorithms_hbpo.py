"""HBPO: the paper's reward table and advantage case, NumPy references."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import hbpo

CFG = hbpo.Config()  # beta_reward = 4, L_max = 4096, alpha = 1/4096
RNG = np.random.default_rng(0)

# (n, b, code = min(f1, f2), paper) from the spec's table.
SPEC_TABLE = [
    (300, 512, 3.9218, 3.9231),
    (1000, 512, 3.5903, 3.5903),
    (300, 2560, 2.2223, 2.2223),
    (3000, 2560, 1.5247, 1.5248),
]


@pytest.mark.parametrize("n,b,code,paper", SPEC_TABLE)
def test_spec_reward_table(n, b, code, paper):
    correct = jnp.array([True])
    r_paper = hbpo.budget_reward(correct, jnp.array([n]), jnp.array([b]), CFG)
    r_code = hbpo.budget_reward(correct, jnp.array([n]), jnp.array([b]), dataclasses.replace(CFG, reward_mode="code"))
    np.testing.assert_allclose(r_paper, [paper], atol=6e-5)
    # The code's pi = 3.1416 moves the 4th decimal (1.5247 vs 1.52482 with exact pi).
    np.testing.assert_allclose(r_code, [code], atol=1.5e-4)


def test_reward_against_numpy_both_modes_and_failures():
    n = RNG.integers(1, 5000, size=64)
    b = RNG.choice(CFG.budgets, size=64)
    correct = RNG.random(64) < 0.7
    f1 = 4 * np.cos(np.pi * n / 8192) - np.abs(n - b) / 4096
    f2 = 4 * np.cos(np.pi * b / 8192)
    paper = np.where(correct & (n <= 4096), np.where(n <= b, f2, f1), 0.0)
    code = np.where(correct & (n <= 4096), np.minimum(f1, f2), 0.0)
    np.testing.assert_allclose(hbpo.budget_reward(correct, n, b, CFG), paper, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        hbpo.budget_reward(correct, n, b, dataclasses.replace(CFG, reward_mode="code")), code, rtol=1e-5, atol=1e-5
    )


def test_no_answer_penalty_of_the_code():
    cfg = dataclasses.replace(CFG, no_answer_reward=-1.0)
    r = hbpo.budget_reward(
        jnp.array([False, False, True]),
        jnp.array([10, 10, 10]),
        jnp.array([512] * 3),
        cfg,
        has_answer=jnp.array([True, False, False]),
    )
    np.testing.assert_allclose(r, [0.0, -1.0, hbpo.ideal_reward(512, cfg)], rtol=1e-6)
    with pytest.raises(KeyError, match="has_answer"):
        hbpo.budget_reward(jnp.array([False]), jnp.array([10]), jnp.array([512]), cfg)


def test_shape_rewards_uses_lengths_budgets_and_threshold():
    ro = {"lengths": jnp.array([100, 700, 100]), "budgets": jnp.array([512, 512, 1024])}
    r = hbpo.shape_rewards(jnp.array([1.0, 1.0, 0.0]), ro, CFG)
    f1 = 4 * np.cos(np.pi * 700 / 8192) - 188 / 4096
    np.testing.assert_allclose(r, [4 * np.cos(np.pi * 512 / 8192), f1, 0.0], rtol=1e-5)
    with pytest.raises(KeyError, match="budgets"):
        hbpo.shape_rewards(jnp.ones(3), {"lengths": jnp.ones(3)}, CFG)


def test_spec_advantage_case_intra_multiplier():
    # One group of 4, budgets [512, 512, 1024, 1024]: rewards f2(512), 0 (wrong), f2(1024), f2(1024).
    cfg = dataclasses.replace(CFG, budgets=(512, 1024))
    f2_512, f2_1024 = 4 * np.cos(np.pi / 16), 4 * np.cos(np.pi / 8)
    ro = {
        "rewards": jnp.array([f2_512, 0.0, f2_1024, f2_1024], jnp.float32),
        "budgets": jnp.array([512, 512, 1024, 1024]),
        "mask": jnp.ones((4, 3)),
        "group_size": 4,
    }
    # inter = z-score over the 4; intra = [mu_512 - f2(512)] * 2 + [0] * 2 = -f2(512)/2 for the first subgroup.
    adv, m = hbpo.advantages(ro, cfg)
    np.testing.assert_allclose(adv, [-1.38203483, -3.45914715, 0.45902043, 0.45902043], rtol=1e-5)
    adv2, _ = hbpo.advantages(ro, dataclasses.replace(cfg, intra_multiplier=2.0))
    np.testing.assert_allclose(adv2, [-3.34360539, -5.42071771, 0.45902043, 0.45902043], rtol=1e-5)
    np.testing.assert_allclose(m["hbpo/adv_intra_mean"], -f2_512 / 4, rtol=1e-5)
    np.testing.assert_allclose(m["hbpo/reward_b512"], f2_512 / 2, rtol=1e-5)


def test_advantages_against_numpy_on_many_groups():
    p, g = 5, 8
    cfg = hbpo.Config()
    budgets = np.tile(np.repeat(np.asarray(cfg.budgets), g // 4), p)
    r = np.where(RNG.random(p * g) < 0.5, RNG.uniform(0, 4, p * g), 0.0).astype(np.float32)
    r[:g] = 1.5  # a zero-std group: inter is exactly 0
    lengths = RNG.integers(1, 3000, p * g)
    adv, m = hbpo.advantages(
        {
            "rewards": jnp.asarray(r),
            "budgets": jnp.asarray(budgets),
            "lengths": jnp.asarray(lengths),
            "mask": jnp.ones((p * g, 2)),
            "group_size": g,
        },
        cfg,
    )
    rg, bg = r.reshape(p, g), budgets.reshape(p, g)
    std = rg.std(axis=1, ddof=1, keepdims=True)
    inter = np.where(std > 0, (rg - rg.mean(1, keepdims=True)) / (std + 1e-6), 0.0)
    mu = np.stack([[rg[i][bg[i] == bg[i, j]].mean() for j in range(g)] for i in range(p)])
    ref = inter + (mu - 4 * np.cos(np.pi * bg / 8192))
    np.testing.assert_allclose(adv, ref.reshape(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m["frac_zero_std_groups"], 1 / p)
    for b in cfg.budgets:
        np.testing.assert_allclose(m[f"hbpo/len_b{b}"], lengths[budgets == b].mean(), rtol=1e-5)
    jitted, _ = jax.jit(lambda x: hbpo.advantages({**x, "group_size": g}, cfg))(
        {
            "rewards": jnp.asarray(r),
            "budgets": jnp.asarray(budgets),
            "lengths": jnp.asarray(lengths),
            "mask": jnp.ones((p * g, 2)),
        }
    )
    np.testing.assert_allclose(jitted, adv, rtol=1e-6)


def test_group_prompts_builds_budget_subgroups():
    cfg = hbpo.Config(budgets=(16, 32), l_max=128)
    prompts, extra = hbpo.group_prompts("Q: 2+2?\nA: ", 4, cfg)
    assert (
        prompts
        == ["Q: 2+2?\nA: <think> I will answer the question within 16 tokens."] * 2
        + ["Q: 2+2?\nA: <think> I will answer the question within 32 tokens."] * 2
    )
    np.testing.assert_array_equal(extra["budgets"], [16, 16, 32, 32])
    assert extra["budgets"].dtype == np.int32
    with pytest.raises(ValueError, match="multiple of the number of budgets"):
        hbpo.group_prompts("x", 6, hbpo.Config())


def test_loss_matches_numpy_clip_higher_token_mean():
    b, t = 4, 5
    mask = (np.arange(t)[None] < np.array([5, 3, 1, 4])[:, None]).astype(np.float32)
    old = -np.abs(RNG.normal(size=(b, t))).astype(np.float32) - 0.1
    lp = old + RNG.normal(scale=0.3, size=(b, t)).astype(np.float32)
    adv = np.array([0.8, -1.1, 0.3, -0.2], np.float32)
    batch = {
        "old_logprobs": jnp.asarray(old),
        "advantages": jnp.asarray(adv),
        "mask": jnp.asarray(mask),
        "num_tokens": jnp.float32(mask.sum()),
        "num_seqs": jnp.float32(b),
    }
    loss, _ = hbpo.loss(jnp.asarray(lp), batch, CFG)
    ratio = np.exp(lp - old)
    per = -np.minimum(ratio * adv[:, None], np.clip(ratio, 0.8, 1.28) * adv[:, None])
    np.testing.assert_allclose(loss, (per * mask).sum() / mask.sum(), rtol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="budgets"):
        hbpo.Config(budgets=(512, 512))
    with pytest.raises(ValueError, match="l_max"):
        hbpo.Config(budgets=(8192,))
    with pytest.raises(ValueError, match="reward_mode"):
        hbpo.Config(reward_mode="both")
    with pytest.raises(ValueError, match="budget_template"):
        hbpo.Config(budget_template="no placeholder")
