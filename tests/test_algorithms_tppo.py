"""T-PPO (Fan et al. 2025, arXiv 2506.15050): EGAE's bootstrap for truncated responses, the value
trained on finished responses only, the policy loss on the window tokens, the in-flight state."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import tppo
from jaxrl_llm.types import Rollout

CFG = tppo.Config(whiten_advantages=False)  # gamma 1, lam 0.95


def _rollout(values, finished, rewards, loss_mask=None, lengths=None):
    values = np.asarray(values, np.float32)
    B, T = values.shape
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)
    return Rollout.from_mapping(
        {
            "tokens": np.zeros((B, T), np.int32),
            "mask": mask,
            "loss_mask": mask if loss_mask is None else np.asarray(loss_mask, np.float32),
            "lengths": lengths.astype(np.int32),
            "rewards": np.asarray(rewards, np.float32),
            "values": values,
            "finished": np.asarray(finished, np.float32),
            "old_logprobs": np.full((B, T), -1.0, np.float32),
            "group_size": 1,
        }
    )


def test_egae_bootstraps_truncated_responses_with_the_last_value():
    # spec case: V = [0.2, 0.5, 0.4]. Truncated: V(s_3) := 0.4, delta = [0.3, -0.1, 0.0],
    # A = [0.3 + 0.95 * (-0.1), -0.1, 0] = [0.205, -0.1, 0.0]. Finished with R = 1:
    # delta_2 = 1 - 0.4 = 0.6, A = [0.7465, 0.47, 0.6].
    rollout = _rollout([[0.2, 0.5, 0.4], [0.2, 0.5, 0.4]], finished=[0, 1], rewards=[0.0, 1.0])
    for fn in (tppo.advantages, jax.jit(tppo.advantages, static_argnums=1)):
        adv, metrics = fn(rollout, CFG)
        np.testing.assert_allclose(adv, [[0.205, -0.1, 0.0], [0.7465, 0.47, 0.6]], rtol=1e-5, atol=1e-7)
        assert float(metrics["frac_finished"]) == 0.5
    # a truncated row's reward is never read (it has none yet)
    other = _rollout([[0.2, 0.5, 0.4], [0.2, 0.5, 0.4]], finished=[0, 1], rewards=[7.0, 1.0])
    np.testing.assert_allclose(tppo.advantages(other, CFG)[0], tppo.advantages(rollout, CFG)[0])


def test_egae_with_padding_bootstraps_at_the_row_end():
    # length 2 in width 4: V(s_2) := V(s_1) = 0.5 -> delta = [0.3, 0], A = [0.3, 0]; padding stays 0
    rollout = _rollout([[0.2, 0.5, 9.0, 9.0]], finished=[0], rewards=[0.0], lengths=[2])
    np.testing.assert_allclose(tppo.advantages(rollout, CFG)[0], [[0.3, 0.0, 0.0, 0.0]], atol=1e-7)


def test_value_targets_are_monte_carlo_returns_of_finished_rows_only():
    # lam_critic = 1, gamma = 1: R_t = R for every token of a finished row
    rollout = _rollout(
        [[0.2, 0.5, 0.4], [0.2, 0.5, 0.4]], finished=[0, 1], rewards=[0.0, 1.0], loss_mask=[[0, 1, 1], [0, 0, 1]]
    )
    extras = tppo.batch_extras(rollout, CFG)
    np.testing.assert_allclose(extras["returns"][1], [1.0, 1.0, 1.0], rtol=1e-6)
    # value normalizer: 3 window tokens over 3 finished-row tokens
    np.testing.assert_allclose(extras["value_scale"], [1.0, 1.0])
    batch, _ = algorithms.make_batch(algorithms.get("tppo"), rollout, CFG)
    batch = batch.with_items(advantages=jnp.zeros((2, 3)))  # isolate the value term
    _, metrics = tppo.loss(batch["old_logprobs"], batch, CFG)
    # c_v * mean over the finished row's 3 tokens of 1/2 (V - 1)^2; the truncated row adds nothing
    expected = 0.1 * 0.5 * ((0.8**2 + 0.5**2 + 0.6**2) / 3)
    np.testing.assert_allclose(metrics["loss/value"], expected, rtol=1e-5)
    changed = batch.with_items(
        values=jnp.asarray(batch["values"]).at[0].set(5.0), returns=batch["returns"].at[0].set(-5.0)
    )
    np.testing.assert_allclose(tppo.loss(batch["old_logprobs"], changed, CFG)[1]["loss/value"], expected, rtol=1e-5)


def test_policy_loss_counts_only_the_window_tokens():
    # ratio 1, A = [1, 2, 3] on the window [0, 1, 1]: loss = -(2 + 3) / 2 = -2.5
    rollout = _rollout([[0.0, 0.0, 0.0]], finished=[0], rewards=[0.0], loss_mask=[[0, 1, 1]])
    batch, _ = algorithms.make_batch(algorithms.get("tppo"), rollout, CFG)
    assert float(batch["num_tokens"]) == 2.0
    batch = batch.with_items(advantages=jnp.asarray([[1.0, 2.0, 3.0]]))
    total, metrics = tppo.loss(batch["old_logprobs"], batch, CFG)
    np.testing.assert_allclose(metrics["loss/policy"], -2.5, rtol=1e-6)
    np.testing.assert_allclose(total, -2.5, rtol=1e-6)  # no finished row: no value loss
    # clip-higher: rho = 1.25 with A > 0 is unclipped at eps_high = 0.28 (1.2 would be the PPO clip)
    lp = batch["old_logprobs"] + jnp.log(1.25)
    np.testing.assert_allclose(tppo.loss(lp, batch, CFG)[1]["loss/policy"], -2.5 * 1.25, rtol=1e-5)


def test_update_state_keeps_unfinished_rows_in_flight():
    cfg = tppo.Config(num_slots=2, max_prompt_len=3, max_response_len=4)
    state = tppo.init_state(cfg)
    assert state["tokens"].shape == (2, 4) and state["prompt_tokens"].shape == (2, 3) and not state["active"].any()
    rows = Rollout.from_mapping(
        {
            "prompt_tokens": np.ones((2, 3), np.int32),
            "prompt_mask": np.ones((2, 3), np.int32),
            "prompt_ids": np.array([5, 9], np.int32),
            "tokens": np.array([[4, 5, 0, 0], [6, 7, 8, 2]], np.int32),
            "lengths": np.array([2, 4], np.int32),
            "sampler_logprobs": np.full((2, 4), -0.5, np.float32),
            "policy_logprobs": np.full((2, 4), -0.4, np.float32),
            "finished": np.array([0.0, 1.0], np.float32),
        }
    )
    new = jax.jit(tppo.update_state, static_argnums=2)(state, rows, cfg)
    np.testing.assert_array_equal(new["active"], [1, 0])
    np.testing.assert_array_equal(new["lengths"], [2, 4])
    np.testing.assert_array_equal(new["prompt_ids"], [5, 9])
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)))


def test_check_config_names_the_mismatched_sizes():
    run = dataclasses.replace(C.default_config(), algorithm="tppo", algo=tppo.Config())
    msg = tppo.check_config(run)
    assert "algo.num_slots=64 (need 128)" in msg and "algo.max_response_len=96 (need 4)" in msg
    ok = dataclasses.replace(run, algo=tppo.Config(num_slots=128, max_prompt_len=40, max_response_len=4, window=2))
    assert tppo.check_config(ok) is None
    bad = dataclasses.replace(ok, algo=dataclasses.replace(ok.algo, window=5))
    assert "algo.window=5 must be in [1, algo.max_response_len=4]" in tppo.check_config(bad)
    with pytest.raises(C.ConfigError, match="in-flight set is sized by"):
        C.apply_overrides(C.default_config(), ["algorithm=tppo"])
