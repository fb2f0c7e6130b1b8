"""ARPO (Dong et al. 2025, https://arxiv.org/abs/2507.19849): GRPO advantages over the branched
trajectories, hard attribution of shared prefixes by hand, dual-clip, and the config checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import arpo
from jaxrl_llm.types import Rollout

# 4 trajectories of one prompt, R = [1, 0, 1, 0]; #1 and #2 (rows 0, 1) share their first 2 tokens
SHARED = np.array([[4, 2, 0, 0], [2, 4, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]], np.int32)


def rollout(attribution_rows=SHARED):
    return Rollout.from_mapping(
        {
            "rewards": jnp.asarray([1.0, 0.0, 1.0, 0.0]),
            "mask": jnp.ones((4, 4), jnp.float32),
            "group_ids": jnp.zeros(4, jnp.int32),
            "group_size": 4,
            "shared_prefix": jnp.asarray(attribution_rows),
            "old_logprobs": jnp.full((4, 4), -1.0),
        }
    )


def test_hard_attribution_by_hand():
    soft, _ = arpo.advantages(rollout(), arpo.Config())
    np.testing.assert_allclose(np.asarray(soft), [0.866025, -0.866025, 0.866025, -0.866025], atol=1e-5)
    hard, _ = jax.jit(lambda r: arpo.advantages(r, arpo.Config(attribution="hard")))(rollout())
    hard = np.asarray(hard)
    np.testing.assert_allclose(hard[:2, :2], 0.0, atol=1e-6)  # the shared prefix: mean of 0.866, -0.866
    np.testing.assert_allclose(hard[:, 2:], np.asarray(soft)[:, None] * np.ones((1, 2)), atol=1e-5)
    np.testing.assert_allclose(hard[2:], np.asarray(soft)[2:, None] * np.ones((1, 4)), atol=1e-5)


def test_hard_equals_soft_without_branches():
    independent = np.diag([4, 4, 4, 4]).astype(np.int32)
    soft, _ = arpo.advantages(rollout(independent), arpo.Config())
    hard, _ = arpo.advantages(rollout(independent), arpo.Config(attribution="hard"))
    np.testing.assert_allclose(np.asarray(hard), np.broadcast_to(np.asarray(soft)[:, None], (4, 4)), atol=1e-6)


def test_loss_dual_clip_caps_negative_advantages():
    cfg = arpo.Config()
    batch, _ = algorithms.make_batch(algorithms.get("arpo"), rollout(), cfg)
    lp = batch["old_logprobs"] + jnp.log(5.0)  # ratio 5
    _, metrics = arpo.loss(lp, batch, cfg)
    a = 0.866025
    # A > 0: -clip(5) A = -1.2 A; A < 0: max(-5 A, ...) capped at -3 A (dual clip c = 3)
    np.testing.assert_allclose(float(metrics["loss/policy"]), (2 * -1.2 * a + 2 * 3 * a) / 4, atol=1e-5)
    _, m_off = arpo.loss(lp, batch, dataclasses.replace(cfg, clip_c=None))
    np.testing.assert_allclose(float(m_off["loss/policy"]), (2 * -1.2 * a + 2 * 5 * a) / 4, atol=1e-5)


def test_registered_and_config_checked():
    algo = algorithms.get("arpo")
    assert algo.rollout == "tool_tree"
    with pytest.raises(C.ConfigError, match="env.tools"):
        C.apply_overrides(C.default_config(), ["algorithm=arpo"])
    with pytest.raises(C.ConfigError, match="initial_rollouts"):
        C.apply_overrides(C.default_config(), ["algorithm=arpo", 'env.tools=["python"]', "train.group_size=4"])
    ok = ["algorithm=arpo", 'env.tools=["python"]', "train.group_size=4", "algo.initial_rollouts=2"]
    assert C.apply_overrides(C.default_config(), ok).env.tools == ("python",)
