"""Single-stream SPO: hand-computed cases and NumPy references."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import single_stream_spo as spo

CFG = spo.Config(num_prompts=8, max_response_len=5)
RNG = np.random.default_rng(0)


def _rollout(ids, rewards, t=5, seed=0):
    rng = np.random.default_rng(seed)
    b = len(ids)
    lengths = rng.integers(1, t + 1, size=b)
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
    return {
        "prompt_ids": jnp.asarray(ids, jnp.int32),
        "rewards": jnp.asarray(rewards, jnp.float32),
        "mask": jnp.asarray(mask),
        "tokens": jnp.asarray(rng.integers(0, 50, size=(b, t)), jnp.int32),
        "sampler_logprobs": jnp.asarray(-np.abs(rng.normal(size=(b, t))) - 0.1, jnp.float32),
        "group_size": 1,
    }


def _state(alpha, beta, cfg=CFG):
    s = spo.init_state(cfg)
    return {**s, "alpha": jnp.asarray(alpha, jnp.float32), "beta": jnp.asarray(beta, jnp.float32)}


# ---------- the spec's unit tests ----------


def test_spec_update_case_constant_rho():
    # alpha = beta = 4, r = 1, rho = 0.9: a = 0.5, alpha' = 4.6, beta' = 3.6, p_hat' = 0.56098.
    cfg = dataclasses.replace(CFG, rho_mode="constant", rho_const=0.9)
    state = _state(np.full(8, 4.0), np.full(8, 4.0), cfg)
    ro = _rollout([3], [1.0])
    p_hat = spo.tracker_value(state["alpha"], state["beta"])[3]
    np.testing.assert_allclose(1.0 - p_hat, 0.5)
    new = spo.update_state(state, ro, cfg)
    np.testing.assert_allclose(new["alpha"][3], 4.6, rtol=1e-6)
    np.testing.assert_allclose(new["beta"][3], 3.6, rtol=1e-6)
    np.testing.assert_allclose(spo.tracker_value(new["alpha"], new["beta"])[3], 0.56098, atol=1e-5)
    np.testing.assert_array_equal(new["alpha"][np.arange(8) != 3], 4.0)  # other prompts untouched
    assert int(new["visits"][3]) == 1 and int(jnp.sum(new["visits"])) == 1


def test_spec_update_case_through_kl_rho():
    # Same case, rho = 0.9 reached through D: 2^(-D / 0.06) = 0.9.
    d = -0.06 * np.log2(0.9)
    state = _state(np.full(8, 4.0), np.full(8, 4.0))
    state["visits"] = state["visits"].at[3].set(1)
    state["last_mask"] = state["last_mask"].at[3].set(jnp.array([1, 1, 0, 0, 0], jnp.float32))
    state["last_logprobs"] = state["last_logprobs"].at[3].set(jnp.array([-1.0, -2.0, 7.0, 7.0, 7.0]))
    ro = _rollout([3], [1.0])
    # |dlogp| = d on the two stored tokens; the padded entries (7.0 vs 0) must not count.
    ro["replay_logprobs"] = jnp.array([[-1.0 - d, -2.0 + d, 0.0, 0.0, 0.0]], jnp.float32)
    np.testing.assert_allclose(spo.policy_shift(state, ro, CFG), [d], rtol=1e-5)
    new = spo.update_state(state, ro, CFG)
    np.testing.assert_allclose(new["alpha"][3], 4.6, rtol=1e-5)
    np.testing.assert_allclose(new["beta"][3], 3.6, rtol=1e-5)


def test_spec_rho_mapping():
    rho = spo.forgetting_rate(jnp.array([0.0, 0.01, 0.06]), spo.Config())
    np.testing.assert_allclose(rho, [0.96, 0.89090, 0.875], atol=1e-5)


def test_spec_offline_init():
    # N_off = 8, k = 6: alpha0 = 5.7778, beta0 = 2.2222, p_hat0 = 0.72222, w = 0.49790.
    cfg = spo.Config()
    alpha, beta = spo.offline_prior(jnp.array([6]), cfg)
    np.testing.assert_allclose(alpha, [5.7778], atol=1e-4)
    np.testing.assert_allclose(beta, [2.2222], atol=1e-4)
    np.testing.assert_allclose(alpha + beta, [8.0], rtol=1e-6)  # N_init = 1 / (1 - 0.875)
    np.testing.assert_allclose(spo.tracker_value(alpha, beta), [0.72222], atol=1e-5)
    np.testing.assert_allclose(spo.sampling_weights(alpha, beta, cfg), [0.49790], atol=1e-5)
    a0, b0 = spo.offline_prior(jnp.array([3]), dataclasses.replace(cfg, n_offline=0))
    np.testing.assert_allclose([a0[0], b0[0]], [0.5, 0.5])


def test_with_offline_prior_counts_positive_scores_and_checks_shape():
    cfg = dataclasses.replace(CFG, n_offline=4)
    scores = np.zeros((8, 4), np.float32)
    scores[2] = [1.0, 0.5, 0.0, -1.0]  # 2 correct (score > 0)
    s = spo.with_offline_prior(spo.init_state(cfg), scores, cfg)
    n_init = 8.0
    np.testing.assert_allclose(s["alpha"][2], n_init * 2.5 / 5, rtol=1e-6)
    np.testing.assert_allclose(s["beta"][2], n_init * 2.5 / 5, rtol=1e-6)
    with pytest.raises(ValueError, match=r"offline_rewards must have shape \(8, 4\)"):
        spo.with_offline_prior(spo.init_state(cfg), np.zeros((8, 3)), cfg)


# ---------- advantages ----------


def test_advantages_match_numpy_global_normalization():
    alpha, beta = RNG.uniform(0.5, 6, size=8), RNG.uniform(0.5, 6, size=8)
    ids = np.array([0, 5, 2, 7, 3, 1], np.int32)
    r = np.array([1, 0, 1, 1, 0, 0], np.float32)
    adv, metrics = spo.advantages(_rollout(ids, r), CFG, _state(alpha, beta))
    raw = r - (alpha / (alpha + beta))[ids]
    ref = (raw - raw.mean()) / (raw.std(ddof=1) + 1e-8)
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["spo/raw_adv_mean"], raw.mean(), rtol=1e-5)
    assert float(metrics["frac_zero_adv"]) == 0.0


def test_advantages_use_state_from_before_the_batch_and_count_wasted_samples():
    # p_hat = 1 exactly and r = 1: that sample carries no signal (frac_zero_adv counts it).
    alpha = np.array([1.0, 1, 1, 1, 1, 1, 1, 1]) * 3
    beta = np.array([0.0, 3, 3, 3, 3, 3, 3, 3])
    _, m = spo.advantages(_rollout([0, 1, 2, 3], [1, 1, 0, 1]), CFG, _state(alpha, beta))
    np.testing.assert_allclose(m["frac_zero_adv"], 0.25)
    _, m0 = spo.advantages(_rollout([0, 1], [1, 0]), CFG)  # state None -> uninformed prior
    np.testing.assert_allclose(m0["spo/p_hat_mean"], 0.5)


def test_advantages_reject_bad_prompt_ids():
    with pytest.raises(KeyError, match="prompt_ids"):
        spo.advantages({"rewards": jnp.ones(2), "mask": jnp.ones((2, 3))}, CFG)
    with pytest.raises(ValueError, match=r"prompt_ids must lie in \[0, 8\)"):
        spo.advantages(_rollout([0, 8], [1, 0]), CFG)


def test_advantages_under_jit():
    ro = _rollout([1, 4, 6], [1, 0, 1])
    arrays = {k: v for k, v in ro.items() if k != "group_size"}
    state = _state(RNG.uniform(1, 3, 8), RNG.uniform(1, 3, 8))
    eager, _ = spo.advantages(ro, CFG, state)
    jitted, _ = jax.jit(lambda r, s: spo.advantages(r, CFG, s))(arrays, state)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)


# ---------- tracker update, replay and forgetting ----------


def test_two_visits_kl_adaptive_against_numpy():
    cfg = CFG
    state = spo.init_state(cfg)
    ro1 = _rollout([2, 5], [1.0, 0.0], seed=1)
    # First visit: D = 0 by definition (even with garbage replay log-probs), so rho = rho_max.
    ro1["replay_logprobs"] = jnp.full((2, 5), -9.0)
    s1 = spo.update_state(state, ro1, cfg)
    np.testing.assert_allclose(s1["alpha"][jnp.array([2, 5])], [0.96 * 0.5 + 1, 0.96 * 0.5], rtol=1e-6)
    np.testing.assert_allclose(s1["beta"][jnp.array([2, 5])], [0.96 * 0.5, 0.96 * 0.5 + 1], rtol=1e-6)
    np.testing.assert_array_equal(s1["last_tokens"][2], ro1["tokens"][0])
    np.testing.assert_array_equal(s1["last_logprobs"][5], ro1["sampler_logprobs"][1])
    np.testing.assert_array_equal(s1["last_mask"][5], ro1["mask"][1])

    # Second visit of prompt 5: replay its stored response under a "moved" policy.
    replay = spo.replay_tokens(s1, _rollout([5, 0], [1.0, 1.0]), cfg)
    np.testing.assert_array_equal(replay["tokens"][0], ro1["tokens"][1])
    np.testing.assert_array_equal(replay["mask"][1], np.zeros(5))  # prompt 0 never visited
    ro2 = _rollout([5, 0], [1.0, 1.0], seed=2)
    shift = np.asarray(RNG.normal(scale=0.05, size=(2, 5)), np.float32)
    ro2["replay_logprobs"] = s1["last_logprobs"][jnp.array([5, 0])] + shift
    s2 = spo.update_state(s1, ro2, cfg)
    m = np.asarray(ro1["mask"][1])
    d = np.sum(np.abs(shift[0]) * m) / m.sum()
    rho = np.clip(2.0 ** (-d / 0.06), 0.875, 0.96)
    np.testing.assert_allclose(s2["alpha"][5], rho * (0.96 * 0.5) + 1.0, rtol=1e-5)
    np.testing.assert_allclose(s2["beta"][5], rho * (0.96 * 0.5 + 1.0), rtol=1e-5)
    np.testing.assert_allclose(s2["alpha"][0], 0.96 * 0.5 + 1.0, rtol=1e-6)  # first visit
    np.testing.assert_array_equal(s2["visits"], [1, 0, 1, 0, 0, 2, 0, 0])


def test_duplicate_prompt_in_batch_is_absorbed_twice_in_row_order():
    cfg = dataclasses.replace(CFG, rho_mode="constant", rho_const=0.9)
    s = spo.update_state(_state(np.full(8, 2.0), np.full(8, 2.0), cfg), _rollout([4, 4], [1.0, 0.0]), cfg)
    np.testing.assert_allclose(s["alpha"][4], 0.9 * (0.9 * 2 + 1) + 0, rtol=1e-6)
    np.testing.assert_allclose(s["beta"][4], 0.9 * (0.9 * 2 + 0) + 1, rtol=1e-6)
    assert int(s["visits"][4]) == 2


def test_update_state_errors_name_the_missing_piece():
    with pytest.raises(KeyError, match="replay_logprobs"):
        spo.update_state(spo.init_state(CFG), _rollout([0], [1.0]), CFG)
    ro = _rollout([0], [1.0], t=4)
    ro["replay_logprobs"] = jnp.zeros((1, 5))
    with pytest.raises(ValueError, match="T=4 but the state stores T=5"):
        spo.update_state(spo.init_state(CFG), ro, CFG)


def test_update_state_is_resumable_and_jittable():
    # The state is a plain pytree: updating in one jitted call per batch equals eager updates,
    # and a state saved between batches (here: copied to host and back) continues identically.
    cfg = CFG
    batches = [_rollout(RNG.choice(8, 3, replace=False), RNG.integers(0, 2, 3), seed=s) for s in range(3)]
    for b in batches:
        b["replay_logprobs"] = jnp.asarray(RNG.normal(size=(3, 5)) * 0.1 - 1, jnp.float32)
    upd = jax.jit(lambda s, r: spo.update_state(s, r, cfg))
    s_eager, s_jit = spo.init_state(cfg), spo.init_state(cfg)
    for i, b in enumerate(batches):
        arrays = {k: v for k, v in b.items() if k != "group_size"}
        s_eager = spo.update_state(s_eager, b, cfg)
        s_jit = upd(s_jit, arrays)
        if i == 0:
            s_jit = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), s_jit)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), s_jit, s_eager)


def test_constant_mode_stores_no_responses():
    cfg = dataclasses.replace(CFG, rho_mode="constant")
    s = spo.init_state(cfg)
    assert s["last_tokens"].shape == (8, 0)
    s = spo.update_state(s, _rollout([1], [1.0]), cfg)
    np.testing.assert_allclose(s["alpha"][1], 0.96 * 0.5 + 1, rtol=1e-6)


# ---------- prioritized prompt selection ----------


def test_select_prompts_is_without_replacement_and_follows_the_weights():
    cfg = dataclasses.replace(CFG, num_prompts=6)
    alpha = jnp.array([1.0, 5.0, 9.9, 0.01, 3.0, 7.0])
    beta = jnp.array([1.0, 5.0, 0.1, 9.99, 7.0, 3.0])
    state = {"alpha": alpha, "beta": beta}
    keys = jax.random.split(jax.random.key(0), 4000)
    picks = jax.vmap(lambda k: spo.select_prompts(state, 3, k, cfg))(keys)  # [4000, 3]
    assert picks.dtype == jnp.int32
    assert all(len(set(row.tolist())) == 3 for row in np.asarray(picks[:200]))
    first = np.bincount(np.asarray(picks[:, 0]), minlength=6) / len(keys)
    w = np.asarray(spo.sampling_weights(alpha, beta, cfg))
    np.testing.assert_allclose(first, w / w.sum(), atol=0.025)  # the first draw is exactly ∝ w
    # p_hat near 0.5 is picked far more often than p_hat near 0 or 1.
    assert first[0] > 2.5 * first[2] and first[1] > 2.5 * first[3]


def test_select_prompts_candidate_pool_and_replacement():
    cfg = dataclasses.replace(CFG, num_prompts=50, candidate_pool_size=10)
    state = spo.init_state(dataclasses.replace(cfg, rho_mode="constant"))
    picks = spo.select_prompts(state, 4, jax.random.key(1), cfg)
    assert picks.shape == (4,) and len(set(np.asarray(picks).tolist())) == 4
    assert np.all((0 <= np.asarray(picks)) & (np.asarray(picks) < 50))
    small = dataclasses.replace(CFG, num_prompts=3, rho_mode="constant")
    many = spo.select_prompts(spo.init_state(small), 7, jax.random.key(2), small)
    assert many.shape == (7,) and set(np.asarray(many).tolist()) <= {0, 1, 2}


# ---------- loss ----------


def test_loss_matches_numpy_ppo_clip_token_mean():
    b, t = 4, 5
    mask = (np.arange(t)[None] < np.array([5, 3, 1, 4])[:, None]).astype(np.float32)
    old = -np.abs(RNG.normal(size=(b, t))).astype(np.float32) - 0.1
    lp = old + RNG.normal(scale=0.3, size=(b, t)).astype(np.float32)
    adv = np.array([1.2, -0.7, 0.3, -1.5], np.float32)
    batch = {
        "old_logprobs": jnp.asarray(old),
        "advantages": jnp.asarray(adv),
        "mask": jnp.asarray(mask),
        "num_tokens": jnp.float32(mask.sum() + 3),
        "num_seqs": jnp.float32(b),
    }
    cfg = spo.Config()
    loss, metrics = spo.loss(jnp.asarray(lp), batch, cfg)
    ratio = np.exp(lp - old)
    per = -np.minimum(ratio * adv[:, None], np.clip(ratio, 0.8, 1.28) * adv[:, None])
    np.testing.assert_allclose(loss, (per * mask).sum() / (mask.sum() + 3), rtol=1e-5)
    np.testing.assert_allclose(metrics["loss/policy"], loss, rtol=1e-6)
    clipped = ((adv[:, None] > 0) & (ratio > 1.28)) | ((adv[:, None] < 0) & (ratio < 0.8))
    np.testing.assert_allclose(metrics["clip_frac"], (clipped * mask).sum() / (mask.sum() + 3), rtol=1e-5)
    jitted, _ = jax.jit(lambda x, bb: spo.loss(x, bb, cfg))(jnp.asarray(lp), batch)
    np.testing.assert_allclose(jitted, loss, rtol=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="rho_mode"):
        spo.Config(rho_mode="kl2")
    with pytest.raises(ValueError, match="rho_min <= rho_max"):
        spo.Config(rho_min=0.97)
    with pytest.raises(ValueError, match="aggregation"):
        spo.Config(aggregation="mean")


def test_offline_prior_scores_a_failing_reward_zero_and_counts_it_in_a_warning():
    """The offline prior pass (``rollouts.single_stream.offline_rewards``) scores through
    ``score_texts``: a reward function that raises gives 0 for that sample, and the pass warns once
    with the number of failed calls instead of losing them."""
    import types
    import warnings

    from jaxrl_llm.rewards import RewardRunner
    from jaxrl_llm.rollouts import single_stream
    from jaxrl_llm.types import Example

    def picky(completion, example):
        if completion == "boom":
            raise ValueError("unparsable")
        return float(completion == example.answer)

    examples = [Example(prompt="q", answer=str(i), metadata={}, id=str(i)) for i in range(3)]
    texts = {0: ["0", "boom"], 1: ["x", "1"], 2: ["boom", "boom"]}  # prompt -> its 2 samples
    policy = types.SimpleNamespace(
        encode_prompts=lambda exs: (np.asarray([[int(e.id)] for e in exs]), np.ones((len(exs), 1))),
        generate=lambda tokens, mask, key, n: {"tokens": np.repeat(tokens, n, axis=0), "lengths": None},
        decode=lambda tokens, lengths: [texts[int(t[0])][i % 2] for i, t in enumerate(tokens)],
    )
    ctx = types.SimpleNamespace(
        cfg=types.SimpleNamespace(train=types.SimpleNamespace(prompts_per_step=2)),
        task=types.SimpleNamespace(train_example=lambda i: examples[i]),
        policy=policy,
        score=RewardRunner(((picky, 1.0),), num_workers=0).score,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rewards = single_stream.offline_rewards(ctx, jax.random.key(0), num_prompts=3, samples=2)
    np.testing.assert_array_equal(rewards, [[1, 0], [0, 1], [0, 0]])
    assert any("offline prior: 3 of 6 reward calls failed" in str(w.message) for w in caught)
