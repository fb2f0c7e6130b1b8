"""DCPO: dynamic-adaptive clip bounds, smooth advantage standardization (state) and the loss, pinned
by the spec's hand-computed cases and plain-Python ports of the code's formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import dcpo


@pytest.mark.parametrize(
    "q,low,high",
    [(0.9, 0.7687, 1.1872), (0.5, 0.5, 1.3062), (0.01, 0.5, 5.0), (0.001, 0.5, 10.0), (0.0, 0.5, 10.0)],
)
def test_clip_bounds_spec_table(q, low, high):
    lo, hi = dcpo.clip_bounds(jnp.float32(q), 0.16, 0.2)
    assert float(lo) == pytest.approx(low, abs=1e-4)
    assert float(hi) == pytest.approx(high, abs=1e-4)


def test_clip_bounds_keep_probability_change_within_eps():
    # The README's probability ranges: q = 0.9 -> [0.692, 1.068], q = 0.01 -> [0.005, 0.05].
    q = jnp.array([0.9, 0.01])
    lo, hi = dcpo.clip_bounds(q, 0.16, 0.2)
    np.testing.assert_allclose(q * lo, [0.692, 0.005], atol=5e-4)
    np.testing.assert_allclose(q * hi, [1.068, 0.05], atol=5e-4)
    # Where the bound is not saturated, |(r - 1) p| with p = r q equals eps exactly.
    qs = jnp.linspace(0.7, 1.0, 7)
    lo, hi = dcpo.clip_bounds(qs, 0.16, 0.2)
    np.testing.assert_allclose(jnp.abs((lo - 1) * lo * qs), 0.16, rtol=1e-5)
    np.testing.assert_allclose((hi - 1) * hi * qs, 0.2, rtol=1e-5)


def test_sas_spec_case():
    # mu_old = 0.5, sigma_old = 0.5, third visit (two stored), new rewards all 1 -> A = 0.2357.
    cfg = dcpo.Config(num_prompts=3)
    state = dcpo.init_state(cfg)
    state = {
        "count": state["count"].at[1].set(2),
        "mean": state["mean"].at[1].set(0.5),
        "std": state["std"].at[1].set(0.5),
    }
    rollout = {"rewards": jnp.ones(4), "mask": jnp.ones((4, 3)), "group_size": 4, "prompt_ids": jnp.full(4, 1)}
    adv, m = dcpo.advantages(rollout, cfg, state)
    np.testing.assert_allclose(adv, np.full(4, 0.70710678 / 3), rtol=1e-5)
    assert float(m["dcpo/frac_nonzero_adv"]) == 1.0 and float(m["dcpo/frac_nonzero_adv_grpo"]) == 0.0
    new = dcpo.update_state(state, rollout, cfg)
    np.testing.assert_array_equal(new["count"], [0, 3, 0])
    np.testing.assert_allclose(new["mean"][1], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(new["std"][1], 0.47140452, rtol=1e-6)


def ref_sas(scores, table, pid, ratio=1.0):
    """Plain-Python port of compute_dcpo_outcome_advantage + get_mean_std for one group."""
    times, old_mean, old_std = table.get(pid, (0, 0.0, 0.0))
    new_mean = sum(scores) / len(scores)
    new_std = math.sqrt(sum((s - new_mean) ** 2 for s in scores) / (len(scores) - 1))
    old_mean, old_std = old_mean * ratio, old_std * ratio
    i = times + 1
    if times == 0:
        mean, std = new_mean, new_std
    else:
        mean = (old_mean * times + new_mean) / i
        std = math.sqrt((times * old_std**2 + new_std**2 + times / i * (new_mean - old_mean) ** 2) / i)
    out = []
    for s in scores:
        a_new = (s - new_mean) / new_std if new_std > 1e-9 else 0.0
        a_tot = (s - mean) / std if std > 1e-6 else 0.0
        s1 = (1 / i) * a_tot + (1 - 1 / i) * a_new
        s2 = (1 / i) * a_new + (1 - 1 / i) * a_tot
        out.append(s1 if abs(s1) < abs(s2) else s2)
    table[pid] = (times + 1, mean, std)
    return out


@pytest.mark.parametrize("ratio", [1.0, 0.9])
def test_sas_matches_reference_over_steps(ratio):
    rng = np.random.default_rng(0)
    n_prompts, g, p = 6, 4, 3
    cfg = dcpo.Config(num_prompts=n_prompts, old_mean_ratio=ratio)
    state = dcpo.init_state(cfg)
    table = {}
    # Under jit the group size stays a Python int (closed over); the arrays are traced.
    adv_fn = jax.jit(lambda r, s: dcpo.advantages({**r, "group_size": g}, cfg, s))
    upd_fn = jax.jit(lambda s, r: dcpo.update_state(s, {**r, "group_size": g}, cfg))
    for step in range(8):
        pids = rng.choice(n_prompts, size=p, replace=False)
        rewards = rng.integers(0, 2, size=(p, g)).astype(np.float32)
        if step == 5:
            rewards[0] = 1.0  # a degenerate group at a (likely) revisited prompt
        rollout = {
            "rewards": jnp.asarray(rewards.reshape(-1)),
            "mask": jnp.ones((p * g, 2)),
            "prompt_ids": jnp.asarray(np.repeat(pids, g)),
        }
        want = np.concatenate([ref_sas(list(map(float, rewards[k])), table, int(pids[k]), ratio) for k in range(p)])
        got, _ = adv_fn(rollout, state)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        state = upd_fn(state, rollout)
        for pid, (times, mean, std) in table.items():
            assert int(state["count"][pid]) == times
            np.testing.assert_allclose([state["mean"][pid], state["std"][pid]], [mean, std], rtol=1e-5, atol=1e-6)


def test_first_visit_is_grpo_without_eps():
    rewards = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    rollout = {"rewards": rewards, "mask": jnp.ones((8, 2)), "group_size": 4}
    adv, m = dcpo.advantages(rollout, dcpo.Config())
    r = np.asarray(rewards).reshape(2, 4)
    want = np.zeros((2, 4))
    want[0] = (r[0] - r[0].mean()) / r[0].std(ddof=1)
    np.testing.assert_allclose(adv, want.reshape(-1), rtol=1e-6)
    assert float(m["frac_zero_std_groups"]) == 0.5


def test_scale_by_std_false_uses_centred_rewards():
    cfg = dcpo.Config(num_prompts=1, scale_by_std=False)
    state = {"count": jnp.array([1]), "mean": jnp.array([0.0]), "std": jnp.array([0.0])}
    rollout = {
        "rewards": jnp.array([1.0, 1.0]),
        "mask": jnp.ones((2, 1)),
        "group_size": 2,
        "prompt_ids": jnp.zeros(2, jnp.int32),
    }
    adv, _ = dcpo.advantages(rollout, cfg, state)
    # i = 2: A_new = 0, A_tot = 1 - 0.5; SA_new = SA_tot = 0.25 (tie -> SA_tot).
    np.testing.assert_allclose(adv, [0.25, 0.25])


def ref_loss(lp, old, adv, mask, eps_low, eps_high, c, agg):
    q = np.exp(old)
    low = 0.5 + 0.5 * np.sqrt(np.maximum(1 - 4 * eps_low / q, 0))
    high = np.minimum(0.5 + 0.5 * np.sqrt(1 + 4 * eps_high / q), max(c, 10))
    rho = np.exp(lp - old)
    a = adv[:, None]
    l1 = -a * rho
    l2 = -a * np.clip(rho, low, high)
    l = np.maximum(l1, l2)
    l = np.where(a < 0, np.minimum(l, -c * a), l)
    if agg == "seq_mean_token_mean":
        return ((l * mask).sum(1) / mask.sum(1)).mean()
    return (l * mask).sum() / mask.sum()


@pytest.mark.parametrize("agg", ["seq_mean_token_mean", "token_mean"])
def test_loss_matches_reference(agg):
    rng = np.random.default_rng(2)
    b, t = 6, 5
    mask = (np.arange(t)[None] < rng.integers(1, t + 1, size=b)[:, None]).astype(np.float32)
    old = np.log(rng.choice([0.005, 0.05, 0.5, 0.95], size=(b, t))).astype(np.float32)
    lp = (old + rng.normal(scale=0.8, size=(b, t))).astype(np.float32)
    adv = rng.normal(size=b).astype(np.float32)
    batch = {
        "old_logprobs": jnp.asarray(old),
        "advantages": jnp.asarray(adv),
        "mask": jnp.asarray(mask),
        "num_tokens": jnp.float32(mask.sum()),
        "num_seqs": jnp.float32(b),
    }
    cfg = dcpo.Config(aggregation=agg)
    val, m = jax.jit(dcpo.loss, static_argnums=2)(jnp.asarray(lp), batch, cfg)
    np.testing.assert_allclose(val, ref_loss(lp, old, adv, mask, 0.16, 0.2, 10.0, agg), rtol=1e-5)
    # Gradient: finite differences of the reference.
    g = jax.jit(jax.grad(lambda x: dcpo.loss(x, batch, cfg)[0]))(jnp.asarray(lp))
    h = 1e-3
    for i, j in [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]:
        e = np.zeros_like(lp)
        e[i, j] = h
        fd = (
            ref_loss(lp + e, old, adv, mask, 0.16, 0.2, 10.0, agg)
            - ref_loss(lp - e, old, adv, mask, 0.16, 0.2, 10.0, agg)
        ) / (2 * h)
        np.testing.assert_allclose(g[i, j], fd, rtol=2e-2, atol=1e-5)
    assert 0.0 <= float(m["clip_frac"]) <= 1.0
    assert 0.0 <= float(m["dcpo/frac_tokens_with_grad"]) <= 1.0


def test_loss_hand_case_rare_token_not_clipped_common_token_clipped():
    # Token 0: q = 0.9, rho = 1.3, A = +1 -> clipped at 1.1872 (no gradient).
    # Token 1: q = 0.01, rho = 3, A = +1 -> inside [0.5, 5] (gradient), where GRPO's 1.2 would clip.
    # Token 2: q = 0.01, rho = 20, A = -1 -> dual-clip cap c * |A| = 10 (no gradient).
    old = jnp.log(jnp.array([[0.9], [0.01], [0.01]]))
    lp = old + jnp.log(jnp.array([[1.3], [3.0], [20.0]]))
    batch = {
        "old_logprobs": old,
        "advantages": jnp.array([1.0, 1.0, -1.0]),
        "mask": jnp.ones((3, 1)),
        "num_tokens": 3.0,
        "num_seqs": 3.0,
    }
    cfg = dcpo.Config(aggregation="seq_mean_token_mean")
    (val, m), g = jax.jit(jax.value_and_grad(lambda x: dcpo.loss(x, batch, cfg), has_aux=True))(lp)
    np.testing.assert_allclose(val, (-1.18722 - 3.0 + 10.0) / 3, rtol=1e-4)
    np.testing.assert_allclose(g, [[0.0], [-1.0], [0.0]], atol=1e-6)
    assert float(m["dcpo/frac_tokens_with_grad"]) == pytest.approx(1 / 3)
    assert float(m["clip_frac"]) == pytest.approx(2 / 3)


def test_state_is_a_checkpointable_pytree_and_resume_is_exact():
    cfg = dcpo.Config(num_prompts=4)
    rng = np.random.default_rng(3)
    batches = [
        {
            "rewards": jnp.asarray(rng.integers(0, 2, size=8).astype(np.float32)),
            "mask": jnp.ones((8, 1)),
            "group_size": 4,
            "prompt_ids": jnp.asarray(np.repeat(rng.choice(4, 2, replace=False), 4)),
        }
        for _ in range(6)
    ]
    state = dcpo.init_state(cfg)
    advs = []
    for ro in batches:
        advs.append(dcpo.advantages(ro, cfg, state)[0])
        state = dcpo.update_state(state, ro, cfg)
    # "Kill" after 3 steps: round-trip the state through host numpy (what a checkpoint stores).
    resumed = dcpo.init_state(cfg)
    for ro in batches[:3]:
        resumed = dcpo.update_state(resumed, ro, cfg)
    resumed = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), resumed)
    for k, ro in enumerate(batches[3:], start=3):
        np.testing.assert_array_equal(dcpo.advantages(ro, cfg, resumed)[0], advs[k])
        resumed = dcpo.update_state(resumed, ro, cfg)
    jax.tree.map(np.testing.assert_array_equal, resumed, state)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="num_prompts"):
        dcpo.init_state(dcpo.Config())
    with pytest.raises(ValueError, match="clip_c"):
        dcpo.Config(clip_c=1.0)
    cfg = dcpo.Config(num_prompts=2)
    state = dcpo.init_state(cfg)
    ro = {"rewards": jnp.zeros(4), "mask": jnp.ones((4, 1)), "group_size": 2}
    with pytest.raises(KeyError, match="prompt_ids"):
        dcpo.advantages(ro, cfg, state)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        dcpo.advantages({**ro, "prompt_ids": jnp.array([0, 0, 5, 5])}, cfg, state)
    with pytest.raises(ValueError, match="two groups"):
        dcpo.advantages({**ro, "prompt_ids": jnp.array([1, 1, 1, 1])}, cfg, state)
    with pytest.raises(ValueError, match="constant within each group"):
        dcpo.update_state(state, {**ro, "prompt_ids": jnp.array([0, 1, 1, 0])}, cfg)


def _eq8_batch(rows=slice(None)):
    """2 prompts x G = 2 responses of lengths 2, 1, 3, 1, on-policy (rho = 1), A = [1, -0.5, 2, 0]."""
    mask = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]], np.float32)
    rollout = {"rewards": jnp.zeros(4), "mask": jnp.asarray(mask), "group_size": 2}
    batch = {
        "old_logprobs": jnp.log(jnp.full((4, 3), 0.5)),
        "advantages": jnp.array([1.0, -0.5, 2.0, 0.0]),
        "mask": jnp.asarray(mask),
        **dcpo.batch_extras(rollout, dcpo.Config()),
    }
    batch = {k: v[rows] for k, v in batch.items()}
    return {**batch, "num_tokens": jnp.float32(7), "num_seqs": jnp.float32(4)}  # global normalizers


def test_eq8_aggregation_is_the_default_and_hand_computed():
    """Paper Eq. 8: per-response token means SUMMED over the G responses of a prompt, averaged over the
    P = num_seqs / G = 2 prompts. At rho = 1 the token loss is -A_i, so the response means are
    -1, 0.5, -2, 0: loss = (-1 + 0.5 - 2 + 0) / 2 = -1.25 (GRPO's 1/G average gives -0.625, the
    code's token mean (-2 + 0.5 - 6 + 0) / 7)."""
    assert dcpo.Config().aggregation == "seq_sum_token_mean"
    batch = _eq8_batch()
    np.testing.assert_array_equal(batch["group_sizes"], [2, 2, 2, 2])
    lp = batch["old_logprobs"]
    loss_of = lambda cfg: jax.jit(lambda x: dcpo.loss(x, batch, cfg)[0])
    np.testing.assert_allclose(loss_of(dcpo.Config())(lp), -1.25, rtol=1e-6)
    np.testing.assert_allclose(loss_of(dcpo.Config(aggregation="seq_mean_token_mean"))(lp), -0.625, rtol=1e-6)
    np.testing.assert_allclose(loss_of(dcpo.Config(aggregation="token_mean"))(lp), -7.5 / 7, rtol=1e-6)
    # gradient: -A_i / |o_i| / P on each token of response i
    g = jax.grad(lambda x: dcpo.loss(x, batch, dcpo.Config())[0])(lp)
    want = np.array([[-0.25, -0.25, 0], [0.25, 0, 0], [-1 / 3, -1 / 3, -1 / 3], [0, 0, 0]])
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)
    # the normalizer is global: two micro-batches of one prompt each add up to the batch
    parts = [
        dcpo.loss(_eq8_batch(r)["old_logprobs"], _eq8_batch(r), dcpo.Config())[0] for r in (slice(0, 2), slice(2, 4))
    ]
    np.testing.assert_allclose(sum(parts), -1.25, rtol=1e-6)
    g_reinforce = jax.grad(lambda x: dcpo.reinforce_loss(x, batch, dcpo.Config()))(lp)  # on-policy: same gradient
    np.testing.assert_allclose(g_reinforce, want, rtol=1e-5, atol=1e-7)
    no_sizes = {k: v for k, v in batch.items() if k != "group_sizes"}
    with pytest.raises(KeyError, match="group_sizes"):
        dcpo.loss(lp, no_sizes, dcpo.Config())
    with pytest.raises(ValueError, match="aggregation"):
        dcpo.Config(aggregation="seq_mean_token_sum_norm")
