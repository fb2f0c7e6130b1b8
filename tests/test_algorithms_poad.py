"""POAD (Wen et al. 2024, https://arxiv.org/abs/2405.15821): BAD-GAE computed by hand (gamma =
lam = 0.95), the NTPO baseline (gamma inside actions), observations skipped, and the loss."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import poad


def gae(values, step_ids, step_rewards, gamma_w=1.0, policy=None):
    values = jnp.asarray([values], jnp.float32)
    step_ids = jnp.asarray([step_ids], jnp.int32)
    policy = jnp.ones_like(values) if policy is None else jnp.asarray([policy], jnp.float32)
    fn = jax.jit(lambda v, s, r, m: poad.bad_gae(v, s, r, m, 0.95, 0.95, gamma_w))
    adv, ret = fn(values, step_ids, jnp.asarray([step_rewards], jnp.float32), policy)
    return np.asarray(adv[0]), np.asarray(ret[0])


def test_one_action_by_hand_poad_and_ntpo():
    # V = [0.5, 0.6, 0.8], r = 1, terminal next state
    adv, ret = gae([0.5, 0.6, 0.8], [0, 0, 0], [1.0])
    np.testing.assert_allclose(adv, [0.4705, 0.39, 0.2], atol=1e-6)
    np.testing.assert_allclose(ret, [0.9705, 0.99, 1.0], atol=1e-6)
    adv_ntpo, _ = gae([0.5, 0.6, 0.8], [0, 0, 0], [1.0], gamma_w=0.95)
    np.testing.assert_allclose(adv_ntpo, [0.37730125, 0.3405, 0.2], atol=1e-6)
    # NTPO under-credits the early tokens of an action
    assert adv_ntpo[0] < adv[0]


def test_two_actions_by_hand_with_an_observation_between():
    # V_A = [0.2, 0.4], r_A = 0; an observation token (step -1, off the policy mask); V_B = [0.5, 0.7], r_B = 1
    values = [0.2, 0.4, 123.0, 0.5, 0.7, 0.0]
    steps = [0, 0, -1, 1, 1, -1]
    policy = [1, 1, 0, 1, 1, 0]
    adv, _ = gae(values, steps, [0.0, 1.0], policy=policy)
    np.testing.assert_allclose(adv[3:5], [0.485, 0.3], atol=1e-6)
    np.testing.assert_allclose(adv[1], 0.5127125, atol=1e-6)  # 0 + 0.95*0.5 - 0.4 + 0.9025*0.485
    np.testing.assert_allclose(adv[0], 0.68707688, atol=1e-6)  # 0.2 + 0.95*0.5127125
    assert adv[2] == 0.0 and adv[5] == 0.0


def test_tool_output_inside_a_turn_does_not_split_the_action():
    # one turn: 2 tokens, a tool result (masked, step -1), 1 more token of the same step
    with_tool, _ = gae([0.5, 0.6, 9.0, 0.8], [0, 0, -1, 0], [1.0], policy=[1, 1, 0, 1])
    plain, _ = gae([0.5, 0.6, 0.8], [0, 0, 0], [1.0])
    np.testing.assert_allclose(with_tool[[0, 1, 3]], plain, atol=1e-6)


def rollout_of(values, steps, step_rewards, policy):
    return {
        "values": jnp.asarray(values, jnp.float32),
        "step_ids": jnp.asarray(steps, jnp.int32),
        "step_rewards": jnp.asarray(step_rewards, jnp.float32),
        "mask": jnp.ones(np.shape(values), jnp.float32),
        "loss_mask": jnp.asarray(policy, jnp.float32),
        "rewards": jnp.asarray(np.sum(step_rewards, axis=1), jnp.float32),
        "group_size": 1,
    }


def test_advantages_whiten_over_policy_tokens_and_returns_are_unwhitened():
    r = rollout_of(
        [[0.2, 0.4, 1.0, 0.5, 0.7], [0.1, 0.1, 2.0, 0.3, 0.3]],
        [[0, 0, -1, 1, 1], [0, 0, -1, 1, 1]],
        [[0.0, 1.0], [1.0, 0.0]],
        [[1, 1, 0, 1, 1], [1, 1, 0, 1, 1]],
    )
    algo = algorithms.get("poad")
    cfg = poad.Config()
    batch, _ = algorithms.make_batch(algo, r, cfg)
    adv = np.asarray(batch["advantages"])
    pol = np.asarray(r["loss_mask"]) != 0
    np.testing.assert_allclose(adv[pol].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(adv[pol].std(), 1.0, atol=1e-5)
    assert np.all(adv[~pol] == 0)
    raw, ret = poad.bad_gae(r["values"], r["step_ids"], r["step_rewards"], r["loss_mask"], 0.95, 0.95)
    np.testing.assert_allclose(np.asarray(batch["returns"]), np.asarray(raw + r["values"] * r["loss_mask"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(batch["returns"]), np.asarray(ret), atol=1e-6)


def test_loss_on_policy_gradient_and_value_term():
    r = rollout_of([[0.5, 0.6, 0.8]], [[0, 0, 0]], [[1.0]], [[1, 1, 1]])
    r["old_logprobs"] = jnp.asarray([[-1.0, -0.5, -0.2]], jnp.float32)
    cfg = poad.Config(whiten_advantages=False, c_v=0.5)
    batch, _ = algorithms.make_batch(algorithms.get("poad"), r, cfg)
    loss, metrics = jax.jit(lambda lp, b: poad.loss(lp, b, cfg))(batch["old_logprobs"], batch)
    adv = np.array([0.4705, 0.39, 0.2])
    # ratio 1: policy term -mean(A); values equal V_old: value term c_v * mean(1/2 A^2)
    np.testing.assert_allclose(float(metrics["loss/policy"]), -adv.mean(), atol=1e-6)
    np.testing.assert_allclose(float(metrics["loss/value"]), 0.5 * np.mean(0.5 * adv**2), atol=1e-6)
    np.testing.assert_allclose(float(loss), -adv.mean() + 0.5 * np.mean(0.5 * adv**2), atol=1e-6)


def test_registered_with_episode_rows_and_a_critic():
    algo = algorithms.get("poad")
    assert algo.rollout == "episode" and algo.needs_critic
    with pytest.raises(C.ConfigError, match="env.rows='episode'"):
        C.apply_overrides(C.default_config(), ["algorithm=poad", "env.rows=step"])
    ok = C.apply_overrides(C.default_config(), ["algorithm=poad"])
    assert algo.check_config(ok) is None
    with pytest.raises(KeyError, match="step_ids"):
        poad.advantages(
            {"values": jnp.zeros((1, 2)), "mask": jnp.ones((1, 2)), "step_rewards": jnp.zeros((1, 1))}, poad.Config()
        )
    assert dataclasses.replace(poad.Config(), gamma_w=0.95).gamma_w == 0.95
