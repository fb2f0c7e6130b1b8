"""DR-PO (Chang et al. 2024, arXiv 2404.08495): the hand-computed cases of its masked policy loss,
its GAE over forced tokens, and the reset sampler's prefix-length draw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm.algorithms import drpo
from jaxrl_llm.rollouts import reset
from jaxrl_llm.types import Batch, Example, Rollout


def _batch(per_token_loss, rollin, values=None, returns=None):
    """A batch whose ratio is 1, so the per-token PG loss is ``-A``: A = -per_token_loss."""
    n = len(per_token_loss)
    loss_mask = 1.0 - np.asarray(rollin, np.float32)
    values = np.zeros(n, np.float32) if values is None else np.asarray(values, np.float32)
    returns = values if returns is None else np.asarray(returns, np.float32)
    return Batch(
        tokens=jnp.zeros((1, n), jnp.int32),
        mask=jnp.asarray(loss_mask[None]),
        lengths=jnp.asarray([n], jnp.int32),
        old_logprobs=jnp.full((1, n), -1.0),
        advantages=-jnp.asarray([per_token_loss], jnp.float32),
        num_tokens=jnp.float32(loss_mask.sum()),
        num_seqs=jnp.float32(1),
        extras={
            "values": jnp.asarray(values[None]),
            "old_values": jnp.asarray(values[None]),
            "returns": jnp.asarray(returns[None]),
            "value_scale": jnp.asarray([loss_mask.sum() / n], jnp.float32),
        },
    )


def test_policy_loss_is_averaged_over_the_sampled_tokens_only():
    # spec case: per-token PG losses [0.4, 0.2, 1.0, 3.0], rollin [T, T, F, F] -> (1.0 + 3.0) / 2 = 2.0
    cfg = drpo.Config()
    batch = _batch([0.4, 0.2, 1.0, 3.0], [1, 1, 0, 0])
    for fn in (drpo.loss, jax.jit(drpo.loss, static_argnums=2)):
        total, metrics = fn(batch["old_logprobs"], batch, cfg)
        np.testing.assert_allclose(metrics["loss/policy"], 2.0, rtol=1e-6)
        np.testing.assert_allclose(total, 2.0, rtol=1e-6)
        assert float(metrics["loss/value"]) == 0.0


def test_value_loss_counts_the_forced_tokens():
    # V - R = [0.2, -0.1, 0, 0] (within eps_v): L_v = mean over all 4 response tokens of 1/2 (V - R)^2
    cfg = drpo.Config()
    batch = _batch([0.0] * 4, [1, 1, 0, 0], values=[0.2, -0.1, 0.0, 0.0], returns=[0.0] * 4)
    batch = batch.with_items(old_values=batch["values"])
    _, metrics = drpo.loss(batch["old_logprobs"], batch, cfg)
    expected = 0.1 * 0.5 * (0.04 + 0.01) / 4
    np.testing.assert_allclose(metrics["loss/value"], expected, rtol=1e-6)
    # with the forced tokens masked (PPO's value loss) it would be 0: they carry all the error
    assert expected > 0


def _rollout(values, rewards=(1.0,), loss_mask=(0, 1, 1), old=None, ref=None):
    n = len(values)
    r = {
        "tokens": np.zeros((1, n), np.int32),
        "mask": np.ones((1, n), np.float32),
        "loss_mask": np.asarray([loss_mask], np.float32),
        "lengths": np.asarray([n], np.int32),
        "rewards": np.asarray(rewards, np.float32),
        "values": np.asarray([values], np.float32),
        "group_size": 1,
    }
    if old is not None:
        r.update(old_logprobs=np.asarray([old], np.float32), ref_logprobs=np.asarray([ref], np.float32))
    return Rollout.from_mapping(r)


def test_gae_runs_over_the_whole_response_forced_tokens_included():
    # spec §0.2 case: r = [0, 0, 1], V = [0.5] * 3, gamma 1, lam 0.95 -> A = [0.45125, 0.475, 0.5],
    # R = [0.95125, 0.975, 1.0]; the first token is forced and still gets its GAE value
    cfg = drpo.Config(beta=0.0, whiten_advantages=False)
    rollout = _rollout([0.5, 0.5, 0.5])
    adv, _ = drpo.advantages(rollout, cfg)
    np.testing.assert_allclose(adv[0], [0.45125, 0.475, 0.5], rtol=1e-6)
    np.testing.assert_allclose(drpo.batch_extras(rollout, cfg)["returns"][0], [0.95125, 0.975, 1.0], rtol=1e-6)


def test_kl_penalty_includes_the_forced_tokens():
    # old - ref = [1, 0, 0] (the KL sits on the forced token), beta 0.05, V = 0:
    # r = [-0.05, 0, 1] -> A = [-0.05 + 0.95 * 0.95, 0.95, 1] = [0.8525, 0.95, 1.0]
    cfg = drpo.Config(beta=0.05, whiten_advantages=False)
    rollout = _rollout([0.0, 0.0, 0.0], old=[-1.0, -1.0, -1.0], ref=[-2.0, -1.0, -1.0])
    adv, metrics = drpo.advantages(rollout, cfg)
    np.testing.assert_allclose(adv[0], [0.8525, 0.95, 1.0], rtol=1e-6)
    np.testing.assert_allclose(metrics["kl"], 1.0 / 3, rtol=1e-6)


def test_make_batch_normalizes_policy_by_sampled_and_value_by_response_tokens():
    cfg = drpo.Config()
    algo = algorithms.get("drpo")
    mask = np.ones((2, 4), np.float32)
    mask[1, 3] = 0
    rollin = np.zeros((2, 4), np.float32)
    rollin[0, :2] = 1
    rollout = Rollout.from_mapping(
        {
            "tokens": np.zeros((2, 4), np.int32),
            "mask": mask,
            "loss_mask": mask - rollin,
            "lengths": np.asarray([4, 3], np.int32),
            "rewards": np.asarray([1.0, 0.0], np.float32),
            "values": np.zeros((2, 4), np.float32),
            "old_logprobs": np.full((2, 4), -1.0, np.float32),
            "ref_logprobs": np.full((2, 4), -1.0, np.float32),
            "group_size": 1,
        }
    )
    batch, _ = algorithms.make_batch(algo, rollout, cfg)
    assert float(batch["num_tokens"]) == 5.0  # 7 response tokens - 2 forced
    np.testing.assert_allclose(batch["value_scale"], [5.0 / 7, 5.0 / 7], rtol=1e-6)


def test_prefix_lengths_are_uniform_below_the_reference_length():
    # spec: L = 5 -> h uniform on {1, 2, 3, 4}; L in {0, 1} -> no reset
    L = np.full(100_000, 5)
    h = np.asarray(reset.prefix_lengths(jax.random.key(0), L, 1.0))
    freq = np.bincount(h, minlength=5) / h.size
    assert freq[0] == 0.0
    np.testing.assert_allclose(freq[1:], 0.25, atol=0.006)
    assert not np.asarray(reset.prefix_lengths(jax.random.key(1), np.array([0, 1, 0, 1]), 1.0)).any()
    assert not np.asarray(reset.prefix_lengths(jax.random.key(2), L[:1000], 0.0)).any()
    half = np.asarray(reset.prefix_lengths(jax.random.key(3), L, 0.5))
    assert abs((half > 0).mean() - 0.5) < 0.01


def test_reference_text_prefers_the_worked_solution_and_rejects_none():
    assert reset.reference_text(Example("q", "7", {"demonstration": "3\n7\n<answer>7</answer>"}, "a")).startswith("3")
    assert reset.reference_text(Example("q", "7", {}, "b")) == "7"
    with pytest.raises(ValueError, match="example 'c' has no metadata\\['demonstration'\\] and no answer"):
        reset.reference_text(Example("q", None, {}, "c"))
