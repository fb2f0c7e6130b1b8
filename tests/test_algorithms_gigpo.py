"""GiGPO (Feng et al. 2025, https://arxiv.org/abs/2505.10978): the paper's anchor-state example
computed by hand, the episode advantage, the std-normalized mode and the per-token broadcast."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import gigpo
from jaxrl_llm.types import Rollout

# tau1: s0 -> s1 -> s2 -> goal, rewards [0, 0, 1]; tau2: s0 -> s0 (a loop) -> s1 -> s2 -> goal,
# rewards [0, 0, 0, 1]. Anchor ids: s0 = 0, s1 = 1, s2 = 2; K = 4 steps, -1 after the last.
STEP_REWARDS = np.array([[0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
ANCHORS = np.array([[0, 1, 2, -1], [0, 0, 1, 2]], np.int32)
# tokens: two per step, then two observation tokens (step -1) in each row
STEP_IDS = np.array([[0, 0, -1, 1, 1, -1, 2, 2, -1], [0, 0, -1, 1, 1, -1, 2, 3, 3]], np.int32)


def rollout(rewards=(1.0, 1.0)):
    mask = np.ones(STEP_IDS.shape, np.float32)
    return Rollout.from_mapping(
        {
            "rewards": jnp.asarray(rewards, jnp.float32),
            "mask": jnp.asarray(mask),
            "loss_mask": jnp.asarray((STEP_IDS >= 0).astype(np.float32)),
            "group_ids": jnp.zeros(2, jnp.int32),
            "group_size": 2,
            "step_rewards": jnp.asarray(STEP_REWARDS),
            "anchor_ids": jnp.asarray(ANCHORS),
            "step_ids": jnp.asarray(STEP_IDS),
        }
    )


def test_paper_example_step_advantages_by_hand():
    cfg = gigpo.Config()  # gamma 0.95, mean_norm, omega 1
    adv, metrics = jax.jit(lambda r: gigpo.advantages(r, cfg))(rollout())
    adv = np.asarray(adv)
    # Both episodes succeed: A^E = 0. Anchor s0: returns {0.9025, 0.857375, 0.9025}, mean 0.887458.
    mean_s0 = (0.9025 + 0.857375 + 0.9025) / 3
    np.testing.assert_allclose(adv[0, 0], 0.9025 - mean_s0, atol=1e-6)  # +0.015042
    np.testing.assert_allclose(adv[1, 0], 0.857375 - mean_s0, atol=1e-6)  # -0.030083: the loop
    np.testing.assert_allclose(adv[1, 3], 0.9025 - mean_s0, atol=1e-6)  # tau2's step 1, from s0 again
    np.testing.assert_allclose([adv[1, 0], adv[0, 0]], [-0.030083, 0.015042], atol=1e-6)
    # s1 = {0.95, 0.95} and s2 = {1, 1}: zero step advantage; observations get A^E = 0.
    np.testing.assert_allclose(adv[0, 3:], 0.0, atol=1e-7)
    np.testing.assert_allclose(adv[1, 6:], 0.0, atol=1e-7)
    assert adv[0, 2] == 0.0
    # 3 of the 7 valid steps carry a nonzero step advantage
    np.testing.assert_allclose(float(metrics["adv/frac_nonzero_step"]), 3 / 7, rtol=1e-6)


def test_episode_advantage_and_omega():
    cfg = gigpo.Config(omega=0.5)
    adv, _ = gigpo.advantages(rollout(rewards=(1.0, 0.0)), cfg)
    adv = np.asarray(adv)
    # A^E = R - mean = +-0.5 (mean_norm); step returns unchanged by R, so A^S as in the paper case.
    mean_s0 = (0.9025 + 0.857375 + 0.9025) / 3
    np.testing.assert_allclose(adv[0, 0], 0.5 + 0.5 * (0.9025 - mean_s0), atol=1e-6)
    np.testing.assert_allclose(adv[1, 0], -0.5 + 0.5 * (0.857375 - mean_s0), atol=1e-6)
    np.testing.assert_allclose(adv[0, 2], 0.5, atol=1e-7)  # an observation token: A^E only
    np.testing.assert_allclose(adv[1, 6], -0.5, atol=1e-7)


def test_mean_std_norm_divides_by_group_std():
    cfg = gigpo.Config(mode="mean_std_norm")
    adv, _ = gigpo.advantages(rollout(rewards=(1.0, 0.0)), cfg)
    adv = np.asarray(adv)
    r0 = np.array([0.9025, 0.857375, 0.9025])
    a_s = (r0 - r0.mean()) / (r0.std(ddof=1) + 1e-6)
    a_e = (np.array([1.0, 0.0]) - 0.5) / (np.std([1.0, 0.0], ddof=1) + 1e-6)
    np.testing.assert_allclose([adv[0, 0], adv[1, 0], adv[1, 3]], a_e[[0, 1, 1]] + a_s, rtol=1e-5)
    np.testing.assert_allclose(adv[0, 3], a_e[0], rtol=1e-6)  # s1: equal returns, A^S = 0


def test_episode_stats_over_steps_weights_by_length():
    cfg = gigpo.Config(episode_stats="step")
    a_e = np.asarray(gigpo.episode_advantages(jnp.array([1.0, 0.0]), jnp.array([3.0, 4.0]), 2, cfg))
    mean = (3 * 1.0 + 4 * 0.0) / 7
    np.testing.assert_allclose(a_e, [1 - mean, -mean], rtol=1e-6)


def test_singleton_anchor_group_has_zero_step_advantage():
    returns = jnp.array([[1.0, 0.5]])
    a_s = gigpo.step_advantages(returns, jnp.array([[0, 1]]), jnp.ones((1, 2)), gigpo.Config(mode="mean_std_norm"))
    np.testing.assert_array_equal(np.asarray(a_s), 0.0)


def test_config_check_names_the_field():
    base = C.apply_overrides(C.default_config(), ["algorithm=gigpo"])
    with pytest.raises(C.ConfigError, match="env.rows"):
        C.validate(dataclasses.replace(base, env=dataclasses.replace(base.env, rows="step")))
    with pytest.raises(C.ConfigError, match="algo.mode"):
        C.validate(C.apply_overrides(base, ["algo.mode=std"]))


def test_registered_with_the_episode_rollout():
    algo = algorithms.get("gigpo")
    assert algo.rollout == "episode" and algo.module is gigpo
