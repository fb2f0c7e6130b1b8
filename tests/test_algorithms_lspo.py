"""LSPO (Xu et al. 2025, https://arxiv.org/abs/2502.04686): regret matching and the DPO loss by
hand, cosine k-means, the abstract game's equilibrium on Rock-Paper-Scissors-Lizard-Spock, and the
``latent_space`` rollout's pairs on the tiny model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import lspo
from jaxrl_llm.games import rpsls
from jaxrl_llm.policy import Policy
from jaxrl_llm.rollouts import Context, latent_space
from jaxrl_llm.types import Rollout


def test_regret_matching_by_hand():
    np.testing.assert_allclose(lspo.regret_matching(np.array([2.0, -1.0, 1.0])), [2 / 3, 0, 1 / 3])
    np.testing.assert_allclose(lspo.regret_matching(np.array([-1.0, -2.0, 0.0])), [1 / 3] * 3)


def test_dpo_loss_by_hand():
    # beta 0.1, log-ratios +0.5 (winner) and -0.5 (loser): -log sigma(0.1) = 0.644397
    batch = Rollout.from_mapping(
        {
            "mask": jnp.ones((2, 1)),
            "old_logprobs": jnp.asarray([[-1.0], [-1.0]]),
            "ref_logprobs": jnp.asarray([[-1.5], [-0.5]]),
            "group_ids": jnp.zeros(2, jnp.int32),
            "chosen": jnp.asarray([1.0, 0.0]),
            "rewards": jnp.zeros(2),
            "group_size": 2,
        }
    )
    b, _ = algorithms.make_batch(algorithms.get("lspo"), batch, lspo.Config())
    loss, _ = jax.jit(lambda lp, x: lspo.loss(lp, x, lspo.Config()))(b["old_logprobs"], b)
    np.testing.assert_allclose(float(loss), 0.644397, atol=1e-6)


def test_equilibrium_of_rpsls_is_uniform_and_unexploitable():
    sigma = lspo.solve_symmetric(rpsls.PAYOFF, 2000)
    np.testing.assert_allclose(sigma, 0.2, atol=0.02)
    assert rpsls.exploitability(sigma) < 0.05
    assert rpsls.exploitability([0.5, 0.5, 0, 0, 0]) == pytest.approx(0.5)  # rock+paper: paper wins half
    # the abstract game of clusters {rock}, {paper}: paper beats rock, so all weight on paper
    U, present = lspo.abstract_payoff(np.array([0, 0, 1]), [0, 0, 1], rpsls.payoff, 3)
    np.testing.assert_array_equal(present, [True, True, False])
    np.testing.assert_allclose(U[:2, :2], [[0, -1], [1, 0]])
    cfg = lspo.Config(num_strategies=3, rm_iterations=500)
    np.testing.assert_allclose(
        lspo.equilibrium(np.array([0, 0, 1]), [0, 0, 1], rpsls.payoff, cfg), [0, 1, 0], atol=0.01
    )


def test_kmeans_is_cosine_and_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centers = np.eye(3) * 5
    x = np.concatenate([c + 0.1 * rng.normal(size=(10, 3)) for c in centers])
    labels, _ = lspo.kmeans(x, 3, 20, seed=1)
    assert len(set(labels[:10])) == len(set(labels[10:20])) == len(set(labels[20:])) == 1
    assert len(set(labels)) == 3
    scaled, _ = lspo.kmeans(x * rng.uniform(0.1, 10, size=(30, 1)), 3, 20, seed=1)  # norms do not matter
    np.testing.assert_array_equal(scaled, labels)


def test_latent_space_rollout_prefers_the_equilibrium_strategy(monkeypatch):
    cfg = C.resolve_algo(
        C.apply_overrides(
            C.default_config(),
            [
                "model.name=tiny",
                "algorithm=lspo",
                "train.prompts_per_step=3",
                "train.group_size=6",
                "sampling.max_new_tokens=6",
                "mesh.num_devices=1",
            ],
        )
    )
    policy = Policy.create(cfg)
    monkeypatch.setattr(latent_space.rpsls, "move", lambda text: len(text) % 5)  # varied moves
    ctx = Context(cfg, algorithms.get("lspo"), policy, None, None, None)
    rollout, metrics = latent_space.collect(ctx, jax.random.key(0), None)
    assert rollout.tokens.shape[0] == 6 and rollout.group_size == 2
    np.testing.assert_array_equal(rollout["chosen"], [1, 0, 1, 0, 1, 0])
    r, lm = rollout.rewards, np.asarray(rollout.loss_mask)
    for p in range(3):
        if lm[2 * p].any():  # a pair: the chosen strategy has more equilibrium weight
            assert r[2 * p] > r[2 * p + 1]
        else:  # a tie: no loss
            assert r[2 * p] == r[2 * p + 1] and not lm[2 * p + 1].any()
    assert metrics["lspo/clusters"] >= 2 and 0.0 <= metrics["lspo/exploitability"] <= 1.0
