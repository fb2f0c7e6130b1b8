"""The adaptive KL controller (Ziegler et al. 2019, arXiv 1909.08593; verl's AdaptiveKLController) and
its wiring into ``ppo`` (``kl_target`` / ``kl_horizon``, coefficient carried in the method's state)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms, metrics_log, train
from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import ppo
from jaxrl_llm.ops import kl_controller


def _verl_update(value, current_kl, target, horizon, n_steps):
    """verl's AdaptiveKLController.update, transcribed to NumPy."""
    proportional_error = np.clip(current_kl / target - 1, -0.2, 0.2)
    return value * (1 + proportional_error * n_steps / horizon)


@pytest.mark.parametrize(
    "kl_now,want",
    [
        (0.2, 0.1 * (1 + 0.2 * 0.01)),  # error +1 clipped to +0.2: 0.1002
        (0.05, 0.1 * (1 - 0.2 * 0.01)),  # error -0.5 clipped to -0.2: 0.0998
        (0.11, 0.1 * (1 + 0.1 * 0.01)),  # error +0.1 unclipped: 0.1001
        (0.1, 0.1),  # on target: unchanged
    ],
)
def test_update_by_hand_and_against_verl(kl_now, want):
    got = jax.jit(kl_controller.update, static_argnums=(2, 3))(jnp.float32(0.1), jnp.float32(kl_now), 0.1, 10000.0, 100)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got, _verl_update(0.1, kl_now, 0.1, 10000.0, 100), rtol=1e-6)
    assert got.dtype == jnp.float32 and got.shape == ()


def test_schedule_converges_toward_target_direction():
    beta = kl_controller.init(0.05)
    for _ in range(50):  # KL persistently 3x the target: beta grows by 0.2 * n / horizon per step
        beta = kl_controller.update(beta, 0.3, 0.1, 1000.0, 100)
    np.testing.assert_allclose(beta, 0.05 * 1.02**50, rtol=1e-5)


def test_controller_errors():
    with pytest.raises(ValueError, match="initial beta > 0"):
        kl_controller.init(0.0)
    with pytest.raises(ValueError, match="kl_target must be > 0"):
        kl_controller.update(jnp.float32(0.1), 0.1, 0.0, 100.0, 1)
    with pytest.raises(ValueError, match="kl_horizon must be > 0"):
        kl_controller.update(jnp.float32(0.1), 0.1, 0.1, 0.0, 1)


# ---------------------------------------------------------------------------------------- ppo wiring


def _rollout(beta_gap=0.5):
    mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    old = jnp.array([[-1.0, -0.5, -2.0], [-0.3, -0.7, -9.0]])
    return {
        "rewards": jnp.array([1.0, 0.0]),
        "mask": mask,
        "values": jnp.array([[0.1, 0.2, 0.3], [0.0, -0.1, 5.0]]),
        "old_logprobs": old,
        "ref_logprobs": old - beta_gap,  # k1 = log pi_old - log pi_ref = beta_gap on every token
        "group_size": 1,
    }


def test_ppo_default_keeps_beta_fixed():
    cfg = ppo.Config()
    assert cfg.kl_target is None and ppo.init_state(cfg) is None
    assert ppo.update_state(None, _rollout(), cfg) is None


def test_ppo_update_state_steps_the_controller():
    cfg = ppo.Config(beta=0.05, kl_target=0.1, kl_horizon=10.0)
    state = ppo.init_state(cfg)
    np.testing.assert_allclose(state["beta"], 0.05)
    new = jax.jit(ppo.update_state, static_argnums=(2,))(state, _rollout(0.5), cfg)
    # KL_t = 0.5 (5x the target): error +0.2, n_t = B = 2: beta = 0.05 * (1 + 0.2 * 2 / 10) = 0.052
    np.testing.assert_allclose(new["beta"], 0.052, rtol=1e-6)
    with pytest.raises(ValueError, match="needs an initial beta > 0"):
        ppo.init_state(ppo.Config(beta=0.0, kl_target=0.1))


def test_ppo_advantages_and_returns_use_the_state_coefficient():
    cfg = ppo.Config(beta=0.05, kl_target=0.1)
    algo = algorithms.get("ppo")
    state = {"beta": jnp.float32(0.3)}
    batch, metrics = algorithms.make_batch(algo, _rollout(), cfg, state)
    fixed, _ = algorithms.make_batch(algo, _rollout(), dataclasses.replace(cfg, beta=0.3, kl_target=None))
    np.testing.assert_allclose(batch["advantages"], fixed["advantages"], rtol=1e-6)
    np.testing.assert_allclose(batch["returns"], fixed["returns"], rtol=1e-6)  # critic target uses beta_t too
    np.testing.assert_allclose(metrics["kl_coef"], 0.3)
    initial, _ = algorithms.make_batch(algo, _rollout(), cfg)  # no state: cfg.beta = 0.05
    assert not np.allclose(initial["returns"], batch["returns"])


@pytest.mark.slow
def test_ppo_adaptive_coefficient_trains_and_resumes_exactly(tmp_path):
    """Through the trainer: the state's beta moves away from beta_0 over the steps, is checkpointed,
    and a restored run continues the same schedule."""
    cfg = C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={tmp_path / 'ppo'}",
            "model.name=tiny",
            "task.name=rg:basic_arithmetic",
            'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
            '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 24}',
            "sft.steps=0",
            "train.steps=4",
            "train.prompts_per_step=2",
            "train.group_size=2",
            "sampling.max_new_tokens=2",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "mesh.num_devices=1",
            "algorithm=ppo",
            "algo.kl_target=0.001",
            "algo.kl_horizon=10.0",
        ],
    )
    tr = train.Trainer(cfg)
    ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", async_save=False)
    st = tr.state
    try:
        np.testing.assert_allclose(st.algo_state["beta"], 0.05)
        for _ in range(2):
            train.rl_step(tr, metrics_log.Timer())
            st.step += 1
        ckpt.save(st.step, *tr.checkpoint(), wait=True)
        for _ in range(2):
            metrics = train.rl_step(tr, metrics_log.Timer())
            st.step += 1
        assert 0 < metrics["kl_coef"] != 0.05  # logged by ppo.advantages
        straight = float(np.asarray(st.algo_state["beta"]))
        assert straight != pytest.approx(0.05, rel=1e-4)  # the controller moved beta
        step, state, meta = ckpt.restore(tr.restore_target)
        assert step == 2
        tr.load(state, meta)
        for _ in range(2):
            train.rl_step(tr, metrics_log.Timer())
            st.step += 1
        assert float(np.asarray(st.algo_state["beta"])) == straight
    finally:
        tr.close()
