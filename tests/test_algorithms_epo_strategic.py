"""EPO-strategic (https://arxiv.org/abs/2502.12486): the paper's hand-computed returns and loss,
turn weighting, the strategist environment (process rewards from the oracle PRM, outcome-only
rewards, actors swapped), and a frozen partner model acting on the strategist's text."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import config as C
from jaxrl_llm import envs
from jaxrl_llm.algorithms import epo_strategic as es
from jaxrl_llm.envs import partner as partner_lib
from jaxrl_llm.envs import strategic
from jaxrl_llm.types import Batch, Rollout


def test_paper_returns_and_max_abs_normalisation():
    # spec: K = 4, r = [0, 1, 0, 0.6], gamma = 0.99 -> G = [1.5721794, 1.58806, 0.594, 0.6],
    # G^ = [0.99, 1.0, 0.37404128, 0.37781948]
    r = jnp.asarray([[0.0, 1.0, 0.0, 0.6], [0.0, 0.0, 0.0, 0.0]])
    valid = jnp.ones_like(r)
    g = es.normalized_returns(r, valid, 0.99)
    np.testing.assert_allclose(g[0], [0.99, 1.0, 0.37404128, 0.37781948], rtol=1e-6)
    assert float(jnp.max(jnp.abs(g[1]))) == 0.0  # all-zero returns: G^ = 0, not NaN
    # a missing last turn does not count: r = [0.5, 1, (x)] -> G = [1.49, 1] -> G^ = [1, 0.6711409]
    g2 = es.normalized_returns(jnp.asarray([[0.5, 1.0, 7.0]]), jnp.asarray([[1.0, 1.0, 0.0]]), 0.99)
    np.testing.assert_allclose(g2[0], [1.0, 1.0 / 1.49, 0.0], rtol=1e-6)


def test_paper_loss_with_segments_of_lengths_2_1_3_1():
    # loss = -(1/4) sum_k G^_k S_k / len_k for one episode (B = 1) with segment log-prob sums S_k
    lens = [2, 1, 3, 1]
    step_ids = np.concatenate([[k] * n for k, n in enumerate(lens)] + [[-1, -1]])  # 7 policy tokens + 2 others
    T = len(step_ids)
    lp = -np.linspace(0.1, 0.9, T).astype(np.float32)
    mask = (step_ids >= 0).astype(np.float32)
    rollout = Rollout.from_mapping(
        {
            "tokens": jnp.zeros((1, T), jnp.int32),
            "mask": jnp.ones((1, T)),
            "loss_mask": jnp.asarray([mask]),
            "rewards": jnp.asarray([1.6]),
            "step_ids": jnp.asarray([step_ids], jnp.int32),
            "step_rewards": jnp.asarray([[0.0, 1.0, 0.0, 0.6]]),
            "anchor_ids": jnp.asarray([[0, 1, 2, 3]], jnp.int32),
            "group_size": 1,
        }
    )
    adv, _ = es.advantages(rollout, es.Config())
    g_hat = [0.99, 1.0, 0.37404128, 0.37781948]
    S = [lp[step_ids == k].sum() for k in range(4)]
    want = -(1 / 4) * sum(g * s / n for g, s, n in zip(g_hat, S, lens))
    batch = Batch.from_mapping(
        {
            "mask": jnp.asarray([mask]),
            "old_logprobs": jnp.asarray([lp]),
            "advantages": adv,
            "num_tokens": jnp.float32(mask.sum()),
            "num_seqs": jnp.float32(1),
            "step_ids": rollout["step_ids"],
            "step_rewards": rollout["step_rewards"],
        }
    )
    loss, _ = jax.jit(lambda x, b: es.loss(x, b, es.Config()))(jnp.asarray([lp]), batch)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    grad = jax.grad(lambda x: es.loss(x, batch, es.Config())[0])(jnp.asarray([lp]))[0]
    # d loss / d log pi_t = -(1/K) G^_k / len_k on turn k's tokens, 0 on the others
    expect = [-(1 / 4) * g_hat[k] / lens[k] if k >= 0 else 0.0 for k in step_ids]
    np.testing.assert_allclose(grad, expect, rtol=1e-5, atol=1e-8)


def test_strategy_env_process_rewards_oracle_and_invalid():
    env = envs.make("keydoor_strategy", size=4)
    env.reset(3)
    grid_env = env.env
    assert not grid_env.has_key
    bad = env.step("let us think")
    assert bad.info["invalid"] and bad.reward == 0.0 and not bad.done
    first = env.step("go to the door")  # off the plan: the key comes first; the door is closed
    assert not first.info["critical"] and first.reward == 0.0 and not first.done
    key = env.step("get the key")
    assert key.info["critical"] and key.reward == 1.0 and grid_env.has_key
    door = env.step("now the door")
    assert door.done and door.info["success"] and door.info["critical"] and door.reward == 1.0
    outcome = envs.make("keydoor_strategy", size=4, process_rewards=False)
    outcome.reset(3)
    assert outcome.step("key").reward == 0.0 and outcome.step("door").reward == 1.0  # only the final score
    letters = envs.make("keydoor_strategy", size=4, letters=True)
    letters.reset(3)
    assert letters.step("kx").info["critical"] and letters.env.has_key and letters.step("d").info["success"]
    with pytest.raises(ValueError, match="actor must be"):
        envs.make("keydoor_strategy", actor="teleport")


def test_swapped_actor_plays_the_same_plan_differently():
    a, b = envs.make("keydoor_strategy"), envs.make("keydoor_strategy", actor="cols_first")
    assert a.reset(5) == b.reset(5)
    sa, sb = a.step("key"), b.step("key")
    assert a.env.has_key and b.env.has_key and sa.info["actions"] == sb.info["actions"]


def test_frozen_partner_model_acts_on_the_strategy():
    cfg = C.resolve_algo(C.apply_overrides(C.default_config(), ["model.name=tiny", "algorithm=epo_strategic"]))
    partner = partner_lib.partner(cfg, "tiny", max_new_tokens=3)
    assert partner_lib.partner(cfg, "tiny", max_new_tokens=3) is partner  # one per process
    before = jax.tree.map(np.asarray, partner.policy.params)
    seen = []
    actor = strategic.partner_actor(partner, "Observation: {observation}\nStrategy: {strategy}\nAction:")
    env = strategic.StrategyEnv(
        envs.make("keydoor"), lambda w, s: seen.append(actor(w, s)) or seen[-1], strategic.keydoor_critical()
    )
    env.reset(0)
    step = env.step("key")
    assert len(seen) == 1 and isinstance(seen[0][0], str) and step.info["actions"] == 1
    again = strategic.StrategyEnv(envs.make("keydoor"), actor, strategic.keydoor_critical())
    again.reset(0)
    assert actor(again, "key") == seen[0]  # greedy: a deterministic partner
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(partner.policy.params)):
        np.testing.assert_array_equal(x, np.asarray(y))  # frozen
