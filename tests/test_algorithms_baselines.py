"""Hand-computed cases for the baseline algorithms:
grpo, dr_grpo, dapo, gspo, ppo, rloo, reinforce_pp, cispo."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import cispo, dapo, dr_grpo, grpo, gspo, ppo, reinforce_pp, rloo


def _batch(adv, mask, old=None, **extra):
    mask = jnp.asarray(mask, jnp.float32)
    b = {
        "mask": mask,
        "advantages": jnp.asarray(adv, jnp.float32),
        "old_logprobs": jnp.zeros_like(mask) if old is None else jnp.asarray(old, jnp.float32),
        "num_tokens": jnp.sum(mask),
        "num_seqs": jnp.float32(mask.shape[0]),
    }
    b.update(extra)
    return b


# Two responses whose per-token losses are [1, 1] and [0, 0, 0, 0] at ratio 1 (A = -1 and A = 0).
SPEC_MASK = [[1, 1, 0, 0], [1, 1, 1, 1]]


@pytest.mark.parametrize("mod,expected", [(grpo, 0.5), (dapo, 1 / 3), (dr_grpo, 0.25), (gspo, 0.5), (cispo, 1 / 3)])
def test_aggregation_spec_case(mod, expected):
    cfg = dataclasses.replace(mod.Config(), beta=0.0)
    b = _batch([-1.0, 0.0], SPEC_MASK)
    lp = jnp.zeros((2, 4))
    if mod is cispo:  # CISPO's term is -w A log pi: A = +1 and log pi = -1 on the first response
        b["advantages"] = jnp.array([1.0, 0.0])
        lp = b["old_logprobs"] = jnp.where(jnp.arange(2)[:, None] == 0, -1.0, 0.0) * jnp.ones((2, 4))
    loss, metrics = mod.loss(lp, b, cfg)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss/policy"], expected, rtol=1e-6)


def test_grpo_advantages_and_kl_term():
    adv, m = grpo.advantages(
        {"rewards": jnp.array([1.0, 0, 0, 1]), "mask": jnp.ones((4, 2)), "group_size": 4}, grpo.Config(std_eps=0.0)
    )
    np.testing.assert_allclose(adv, [0.8660254, -0.8660254, -0.8660254, 0.8660254], rtol=1e-6)
    assert m["frac_zero_std_groups"] == 0.0
    # one token, ratio 1, A = 0, d = ref - logp = 0.1: loss = beta * k3 = 0.04 * 0.0051709
    b = _batch([0.0], [[1.0]], ref_logprobs=jnp.array([[0.1]]))
    loss, m = grpo.loss(jnp.zeros((1, 1)), b, grpo.Config())
    np.testing.assert_allclose(loss, 0.04 * 0.0051709, rtol=1e-4)
    np.testing.assert_allclose(m["kl"], 0.0051709, rtol=1e-4)
    with pytest.raises(KeyError, match="ref_logprobs"):
        grpo.loss(jnp.zeros((1, 1)), _batch([0.0], [[1.0]]), grpo.Config())


def test_dr_grpo_advantages():
    adv, _ = dr_grpo.advantages(
        {"rewards": jnp.array([1.0, 0, 0, 1]), "mask": jnp.ones((4, 2)), "group_size": 4}, dr_grpo.Config()
    )
    np.testing.assert_allclose(adv, [0.5, -0.5, -0.5, 0.5])


def test_dapo_clip_higher_and_overlong():
    # rho = 1.25, A = +1: unclipped with eps_high = 0.28 (loss -1.25, gradient flows), clipped at 1.2 with 0.2
    b = _batch([1.0], [[1.0]])
    lp = jnp.log(jnp.array([[1.25]]))
    np.testing.assert_allclose(dapo.loss(lp, b, dapo.Config())[0], -1.25, rtol=1e-6)
    np.testing.assert_allclose(grpo.loss(lp, b, grpo.Config(beta=0.0))[0], -1.2, rtol=1e-6)
    np.testing.assert_allclose(
        dapo.overlong_penalty(jnp.array([100, 16384, 18432, 20480, 30000]), 20480, 4096), [0, 0, -0.5, -1, -1]
    )
    shaped = dapo.shape_rewards(jnp.array([1.0, -1.0]), {"lengths": jnp.array([18432, 10])}, dapo.Config())
    np.testing.assert_allclose(shaped, [0.5, -1.0])
    with pytest.raises(ValueError, match="cache_len"):
        dapo.overlong_penalty(jnp.array([1]), 10, 20)


def test_dapo_filter_groups_keeps_groups_with_reward_variance():
    """The backfill of dropped groups is the group rollout kind's (tests/test_rollouts.py)."""
    g = 2
    rollout = {  # 3 groups: [1,1] dropped, [0,1] kept, [0,0] dropped
        "rewards": jnp.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0]),
        "mask": jnp.ones((6, 3)),
        "tokens": jnp.arange(18).reshape(6, 3),
        "group_ids": jnp.repeat(jnp.arange(3), g),
        "group_size": g,
    }
    keep = dapo.filter_groups(rollout, dapo.Config())
    np.testing.assert_array_equal(keep, [False, False, True, True, False, False])


def test_gspo_spec_case():
    lp = jnp.array([[0.1, -0.3]])
    for a, expected, grad_zero in ((1.0, -0.904837, False), (-1.0, 0.9997, True)):
        f = lambda x: gspo.loss(x, _batch([a], [[1.0, 1.0]]), gspo.Config())[0]
        np.testing.assert_allclose(f(lp), expected, rtol=1e-5)
        g = jax.grad(f)(lp)
        assert np.all(g == 0) == grad_zero
    np.testing.assert_allclose(
        jax.grad(lambda x: gspo.loss(x, _batch([1.0], [[1.0, 1.0]]), gspo.Config())[0])(lp),
        [[-0.904837 / 2, -0.904837 / 2]],
        rtol=1e-5,
    )


def test_ppo_gae_spec_case_and_losses():
    rollout = {"rewards": jnp.array([1.0]), "mask": jnp.ones((1, 3)), "values": jnp.full((1, 3), 0.5)}
    cfg = ppo.Config(beta=0.0, lam=0.95, whiten_advantages=False)
    adv, _ = ppo.advantages(rollout, cfg)
    np.testing.assert_allclose(adv, [[0.45125, 0.475, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(ppo.batch_extras(rollout, cfg)["returns"], [[0.95125, 0.975, 1.0]], rtol=1e-6)
    # KL in the reward: r_t -= beta * (old - ref)
    kl_roll = {**rollout, "old_logprobs": jnp.full((1, 3), -1.0), "ref_logprobs": jnp.full((1, 3), -1.5)}
    adv_kl, m = ppo.advantages(kl_roll, ppo.Config(beta=0.1, lam=1.0, whiten_advantages=False))
    np.testing.assert_allclose(adv_kl, [[1.0 - 0.15 - 0.5, 1.0 - 0.10 - 0.5, 1.0 - 0.05 - 0.5]], rtol=1e-6)
    np.testing.assert_allclose(m["kl"], 0.5, rtol=1e-6)
    # clip case (rho = 1.5, eps = 0.2) and value loss: V = 1.0, V_old = 0.5, R = 0.4, eps_v = 0.2:
    # max((1.0-0.4)^2, (0.7-0.4)^2)/2 = 0.18, times c_v = 0.1
    for a, pg in ((1.0, -1.2), (-1.0, 1.5)):
        b = _batch([[a]], [[1.0]], values=jnp.array([[1.0]]), old_values=jnp.array([[0.5]]), returns=jnp.array([[0.4]]))
        loss, m = ppo.loss(jnp.log(jnp.array([[1.5]])), b, ppo.Config())
        np.testing.assert_allclose(m["loss/policy"], pg, rtol=1e-6)
        np.testing.assert_allclose(m["loss/value"], 0.018, rtol=1e-5)
        np.testing.assert_allclose(loss, pg + 0.018, rtol=1e-5)
        assert m["vf_clip_frac"] == 1.0
    # dual-clip: rho = 5, A = -1, c = 3 -> the loss is capped at 3 and the gradient is 0
    b = _batch([[-1.0]], [[1.0]], values=jnp.zeros((1, 1)), old_values=jnp.zeros((1, 1)), returns=jnp.zeros((1, 1)))
    f = lambda x: ppo.loss(x, b, ppo.Config(clip_c=3.0))[0]
    np.testing.assert_allclose(f(jnp.log(jnp.array([[5.0]]))), 3.0, rtol=1e-6)
    assert float(jax.grad(f)(jnp.log(jnp.array([[5.0]])))[0, 0]) == 0.0
    assert ppo.loss(jnp.log(jnp.array([[5.0]])), b, ppo.Config(clip_c=3.0))[1]["clip_frac/dual"] == 1.0


def test_rloo_leave_one_out_with_kl_in_reward():
    rollout = {"rewards": jnp.array([1.0, 0, 0, 1]), "mask": jnp.ones((4, 2)), "group_size": 4}
    adv, _ = rloo.advantages(rollout, rloo.Config(beta=0.0))
    np.testing.assert_allclose(adv, [2 / 3, -2 / 3, -2 / 3, 2 / 3], rtol=1e-6)
    old = jnp.array([[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]])
    ref = old - jnp.array([[1.0], [0.0], [0.0], [0.0]])  # sequence KL 2 on row 0 only
    adv, m = rloo.advantages({**rollout, "old_logprobs": old, "ref_logprobs": ref}, rloo.Config(beta=0.5))
    r = np.array([1.0 - 1.0, 0, 0, 1])  # R_0 = 1 - 0.5 * 2
    np.testing.assert_allclose(adv, [r[i] - (r.sum() - r[i]) / 3 for i in range(4)], rtol=1e-6)
    np.testing.assert_allclose(m["kl"], 0.5)
    # sequence-level action: gradient of each token is -A_i / num_seqs (token SUM per response)
    g = jax.grad(lambda x: rloo.loss(x, _batch([1.0, -2.0], [[1, 1], [1, 0]]), rloo.Config())[0])(jnp.zeros((2, 2)))
    np.testing.assert_allclose(g, [[-0.5, -0.5], [1.0, 0.0]])


def test_reinforce_pp_global_normalization():
    mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    rollout = {"rewards": jnp.array([1.0, 0.0]), "mask": mask}
    adv, _ = reinforce_pp.advantages(rollout, reinforce_pp.Config(beta=0.0))
    g = np.array([1.0, 1.0, 1.0, 0.0])  # gamma = 1: every token's return is the final reward
    ref = (g - g.mean()) / (g.std() + 1e-8)
    np.testing.assert_allclose(np.asarray(adv)[np.asarray(mask) > 0], ref, rtol=1e-5)
    # with KL in the reward: r_t = -beta k1_t (+ R at the end), returns are reverse cumulative sums
    old = jnp.array([[-1.0, -2.0, -1.0], [-1.0, 0.0, 0.0]])
    ref_lp = jnp.array([[-1.5, -1.0, -1.0], [-0.5, 0.0, 0.0]])
    adv, m = reinforce_pp.advantages(
        {**rollout, "old_logprobs": old, "ref_logprobs": ref_lp}, reinforce_pp.Config(beta=0.1)
    )
    k1 = np.array([[0.5, -1.0, 0.0], [-0.5, 0.0, 0.0]])
    r = -0.1 * k1 + np.array([[0, 0, 1.0], [0, 0, 0]])
    ret = np.array([[r[0].sum(), r[0, 1:].sum(), r[0, 2]], [r[1, 0], 0, 0]])
    sel = ret[np.asarray(mask) > 0]
    np.testing.assert_allclose(
        np.asarray(adv)[np.asarray(mask) > 0], (sel - sel.mean()) / (sel.std() + 1e-8), rtol=1e-5
    )
    np.testing.assert_allclose(m["kl"], k1[np.asarray(mask) > 0].mean(), rtol=1e-6)
    # group baseline: rewards centered within each group before the returns
    adv_b, _ = reinforce_pp.advantages(
        {"rewards": jnp.array([1.0, 3.0]), "mask": jnp.ones((2, 1)), "group_size": 2},
        reinforce_pp.Config(beta=0.0, group_baseline=True),
    )
    np.testing.assert_allclose(adv_b, [[-1.0], [1.0]], rtol=1e-6)


def test_cispo_keeps_gradient_of_clipped_tokens():
    # rho = 8 > 1 + eps_high = 5, A = +1: PPO would zero the gradient; CISPO scales it by the capped 5.
    lp = jnp.log(jnp.array([[8.0, 1.0]]))
    b = _batch([1.0], [[1.0, 1.0]])
    loss_fn = lambda x: cispo.loss(x, b, cispo.Config())[0]
    np.testing.assert_allclose(jax.grad(loss_fn)(lp), [[-5.0 / 2, -1.0 / 2]], rtol=1e-6)
    m = cispo.loss(lp, b, cispo.Config())[1]
    np.testing.assert_allclose(m["clip_frac/high"], 0.5)
    # with a lower bound: rho = 0.5 < 1 - eps_low = 0.8 gets weight 0.8
    g = jax.grad(lambda x: cispo.loss(x, b, cispo.Config(eps_low=0.2))[0])(jnp.log(jnp.array([[0.5, 1.0]])))
    np.testing.assert_allclose(g, [[-0.8 / 2, -0.5]], rtol=1e-6)


def test_cispo_default_cap_is_trls_absolute_5():
    """TRL's cispo (epsilon_high=5.0) weights a token by min(rho, 5); the default reproduces it:
    rho = 4.5 keeps its weight, rho = 5.5 and rho = 6.5 are both capped at 5 (a cap of 1 + 5 = 6,
    this file's old default, left 5.5 unclipped)."""
    cfg = cispo.Config()
    assert 1.0 + cfg.eps_high == 5.0
    rho = np.array([[4.5, 5.5, 6.5]], np.float32)
    b = _batch([1.0], [[1.0, 1.0, 1.0]])
    g = jax.grad(lambda x: cispo.loss(x, b, cfg)[0])(jnp.log(jnp.asarray(rho)))
    np.testing.assert_allclose(g, -np.minimum(rho, 5.0) / 3, rtol=1e-5)  # d/dlp of -sg[w] A lp / 3 tokens
    m = cispo.loss(jnp.log(jnp.asarray(rho)), b, cfg)[1]
    np.testing.assert_allclose(m["clip_frac/high"], 2 / 3, rtol=1e-6)
