"""P3O: the spec's hand-computed V1 / V2 cases, invariance of loss and gradient to a reward
translation (and GRPO's, but not a baseline-free policy gradient's), the KL-in-reward advantage."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm.algorithms import p3o
from jaxrl_llm.types import Batch, Rollout


def one_pair(lr1, lr2, adv1):
    """Pair (y1 = chosen row 0, y2 = row 1), one token each, log pi - log pi_old = lr."""
    old = jnp.asarray([[-1.0], [-1.0]])
    lp = old + jnp.asarray([[lr1], [lr2]])
    batch = Batch.from_mapping(
        {
            "old_logprobs": old,
            "mask": jnp.ones((2, 1)),
            "advantages": jnp.asarray([adv1, -adv1]),
            "group_ids": jnp.asarray([0, 0], jnp.int32),
            "chosen": jnp.asarray([1.0, 0.0]),
            "num_tokens": jnp.float32(2.0),
            "num_seqs": jnp.float32(2.0),
        }
    )
    return lp, batch


def test_v1_separate_clipping_hand_computed():
    # Delta = 2, eps = 0.2, lr1 = 0.1, lr2 = -0.1: rho1 = 1.10517, rho2 = 0.904837
    # terms 2.210342 and -1.809675 -> loss = -1/2 (0.400667) = -0.200334
    lp, batch = one_pair(0.1, -0.1, 2.0)
    loss, m = p3o.loss(lp, batch, p3o.Config(clip="separate"))
    assert float(loss) == pytest.approx(-0.200334, abs=1e-6)
    assert float(m["clip_frac"]) == 0.0


def test_v2_joint_clipping_hand_computed_and_clipped_gradient_is_zero():
    # rho12 = e^0.2 = 1.2214 > 1.2: min(2.4428, 2.4) = 2.4 -> loss -2.4, no gradient
    lp, batch = one_pair(0.1, -0.1, 2.0)
    cfg = p3o.Config(clip="joint")
    loss, m = p3o.loss(lp, batch, cfg)
    assert float(loss) == pytest.approx(-2.4, abs=1e-6)
    assert float(m["clip_frac"]) == pytest.approx(1.0)
    g = jax.grad(lambda x: p3o.loss(x, batch, cfg)[0])(lp)
    np.testing.assert_array_equal(np.asarray(g), 0.0)
    # inside the clip range: d/d lr1 of -rho12 Delta = -rho12 Delta
    lp, batch = one_pair(0.05, 0.0, 2.0)
    g = jax.grad(lambda x: p3o.loss(x, batch, cfg)[0])(lp)
    np.testing.assert_allclose(g[:, 0], [-2.0 * np.exp(0.05), 2.0 * np.exp(0.05)], rtol=1e-5)


def rollout(rewards, beta_kl_rows=None):
    rng = np.random.default_rng(0)
    B, T = 6, 4
    old = -np.abs(rng.normal(size=(B, T))).astype(np.float32)
    ref = (old + 0.2 * rng.normal(size=(B, T))).astype(np.float32)
    return Rollout.from_mapping(
        {
            "tokens": jnp.zeros((B, T), jnp.int32),
            "mask": jnp.ones((B, T)),
            "rewards": jnp.asarray(rewards, jnp.float32),
            "group_ids": jnp.repeat(jnp.arange(3, dtype=jnp.int32), 2),
            "group_size": 2,
            "old_logprobs": jnp.asarray(old),
            "ref_logprobs": jnp.asarray(ref),
            "chosen": jnp.asarray([1.0, 0.0] * 3),
        }
    )


def test_advantages_pairwise_difference_with_kl_in_reward():
    r = rollout([1.0, 0.0, 0.5, 0.5, 0.0, 1.0])
    adv, _ = p3o.advantages(r, p3o.Config(beta=0.0))
    np.testing.assert_allclose(adv, [1.0, -1.0, 0.0, 0.0, -1.0, 1.0])
    beta = 0.1
    kl = np.sum(np.asarray(r["old_logprobs"]) - np.asarray(r["ref_logprobs"]), axis=1)
    rt = np.asarray(r["rewards"]) - beta * kl
    expected = rt - rt.reshape(3, 2)[:, ::-1].reshape(-1)
    adv, _ = p3o.advantages(r, p3o.Config(beta=beta))
    np.testing.assert_allclose(adv, expected, rtol=1e-5)


def grad_of(name, cfg, r, lp_shift):
    algo = algorithms.get(name)
    batch, _ = algorithms.make_batch(algo, r, cfg)
    lp = batch["old_logprobs"] + lp_shift
    return jax.value_and_grad(lambda x: algo.loss(x, batch, cfg)[0])(lp)


@pytest.mark.parametrize("clip", ["separate", "joint"])
def test_reward_translation_leaves_p3o_unchanged(clip):
    """r -> r + c leaves P3O's loss and gradient unchanged (off-policy too), as GRPO's; a
    policy gradient without a baseline (``rloo``'s is a baseline; here the raw-reward REINFORCE
    surrogate) changes."""
    rewards = np.asarray([1.0, 0.0, 0.3, 0.9, 0.0, 1.0], np.float32)
    shift = jnp.asarray(0.05 * np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32))
    cfg = p3o.Config(beta=0.05, clip=clip)
    base = grad_of("p3o", cfg, rollout(rewards), shift)
    moved = grad_of("p3o", cfg, rollout(rewards + 7.0), shift)
    np.testing.assert_allclose(moved[0], base[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(moved[1], base[1], rtol=1e-6, atol=1e-7)
    grpo_cfg = algorithms.get("grpo").Config()
    np.testing.assert_allclose(
        grad_of("grpo", grpo_cfg, rollout(rewards + 7.0), shift)[1],
        grad_of("grpo", grpo_cfg, rollout(rewards), shift)[1],
        rtol=1e-4,
        atol=1e-6,
    )
    raw = lambda r: jax.grad(lambda x: -jnp.sum(jnp.asarray(r)[:, None] * x))(rollout(r)["old_logprobs"])
    assert not np.allclose(raw(rewards + 7.0), raw(rewards))


def test_config_and_registration():
    algo = algorithms.get("p3o")
    assert algo.rollout == "pairs" and algo.hooks["pairing"](p3o.Config()).drop_ties is False
    assert not algo.uses_reference(dataclasses.replace(p3o.Config(), beta=0.0))
