"""The gymnax and brax adapters of jaxrl_llm.control.envs (the `control` extra; skipped without it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.control import envs, ppo, rollout


def test_gymnax_pendulum_adapter():
    gymnax = pytest.importorskip("gymnax")
    env = envs.make("gymnax:Pendulum-v1", max_steps_in_episode=3)
    assert (env.obs_dim, env.action_dim) == (3, 1)
    obs, state = env.reset(jax.random.key(0))
    ref_env, ref_params = gymnax.make("Pendulum-v1")
    ref_obs, ref_state = ref_env.reset_env(jax.random.key(0), ref_params)
    np.testing.assert_allclose(obs, ref_obs)
    # a normalized action of 0.5 is a torque of 1.0 in gymnax's [-2, 2]
    obs1, state1, reward, done, info = env.step(jax.random.key(1), state, jnp.array([0.5]))
    ref = ref_env.step_env(jax.random.key(1), ref_state, jnp.array([1.0]), ref_params)
    np.testing.assert_allclose(obs1, ref[0], rtol=1e-6)
    assert float(reward) == pytest.approx(float(ref[2]), rel=1e-6)
    for t in range(2):
        obs1, state1, reward, done, info = env.step(jax.random.key(2 + t), state1, jnp.array([0.0]))
    # gymnax's time limit is a truncation here, not a termination (the episode bootstraps)
    assert bool(done) and bool(info["truncated"]) and not bool(info["terminated"])
    assert int(info["episode_length"]) == 3


def test_gymnax_ppo_step_runs():
    pytest.importorskip("gymnax")
    env = envs.make("gymnax:Pendulum-v1")
    agent = ppo.make(env, ppo.Config(num_envs=2, num_steps=8, update_epochs=1, num_minibatches=2, hidden=(8,)), 1)
    state, metrics = jax.jit(agent.step)(agent.init(jax.random.key(0)), jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    assert state.obs.shape == (2, 3)


def test_gymnax_discrete_env_is_refused():
    pytest.importorskip("gymnax")
    with pytest.raises(Exception, match="discrete"):
        envs.make("gymnax:CartPole-v1")


@pytest.mark.slow  # brax compiles its physics: ~55 s on the shared 2-core CPU
def test_brax_adapter():
    pytest.importorskip("brax")
    env = envs.make("brax:inverted_pendulum", episode_length=3)
    obs, state = rollout.reset(env, jax.random.key(0), 2)
    assert obs.shape == (2, env.obs_dim)

    def act(key, obs):
        return jnp.zeros((obs.shape[0], env.action_dim)), None

    traj, _, _ = jax.jit(lambda s, o, k: rollout.collect(env, act, s, o, k, 4))(state, obs, jax.random.key(1))
    assert traj.reward.shape == (4, 2)
    # standing still, the pendulum neither falls nor ends before the time limit of 3 steps
    np.testing.assert_array_equal(traj.done[:, 0], [False, False, True, False])
    assert not bool(traj.terminated.any())
    np.testing.assert_array_equal(traj.episode_length[2], [3, 3])


def test_unknown_env_is_a_user_error():
    with pytest.raises(Exception, match="unknown control env"):
        envs.make("mujoco:hopper")
