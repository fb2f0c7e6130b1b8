"""PPO's options for matching the RL Baselines3 Zoo references: discrete actions (gymnax CartPole-v1
with ``discrete_actions=True``), annealed lr and clip, unclipped value loss, gSDE exploration,
VecNormalize-style observation/reward normalization, PyTorch's default init; and ``control.evaluate``
(deterministic-policy returns of a checkpoint)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrl_llm.control import config as control_config
from jaxrl_llm.control import distributions as dist
from jaxrl_llm.control import envs, evaluate, networks, ppo
from jaxrl_llm.control import train as control_train

TINY = dict(num_envs=2, num_steps=8, update_epochs=2, num_minibatches=2, hidden=(8,))


def test_categorical_logprob_entropy_sample():
    logits = jnp.log(jnp.array([[0.2, 0.8], [0.5, 0.5]]))
    np.testing.assert_allclose(dist.categorical_logprob(jnp.array([1, 0]), logits), np.log([0.8, 0.5]), rtol=1e-6)
    h = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    np.testing.assert_allclose(dist.categorical_entropy(logits), [h, math.log(2.0)], rtol=1e-6)
    draws = dist.categorical_sample(jax.random.key(0), jnp.broadcast_to(logits[0], (20000, 2)))
    assert draws.dtype == jnp.int32 and float(jnp.mean(draws)) == pytest.approx(0.8, abs=0.01)


def test_cartpole_discrete_adapter_matches_gymnax():
    gymnax = pytest.importorskip("gymnax")
    with pytest.raises(Exception, match="discrete"):
        envs.make("gymnax:CartPole-v1")  # still refused unless asked for
    env = envs.make("gymnax:CartPole-v1", discrete_actions=True)
    assert (env.obs_dim, env.action_dim, env.num_actions) == (4, 1, 2)
    assert envs.make("gymnax:Pendulum-v1").num_actions == 0
    ref_env, ref_params = gymnax.make("CartPole-v1")
    obs, state = env.reset(jax.random.key(0))
    ref_obs, ref_state = ref_env.reset_env(jax.random.key(0), ref_params)
    np.testing.assert_allclose(obs, ref_obs)
    for t, a in enumerate([1, 0, 1, 1]):  # the policy's action is an index [1]
        obs, state, reward, done, info = env.step(jax.random.key(t), state, jnp.array([a], jnp.int32))
        ref_obs, ref_state, ref_r, ref_done, _ = ref_env.step_env(jax.random.key(t), ref_state, a, ref_params)
        np.testing.assert_allclose(obs, ref_obs, rtol=1e-6)
        assert float(reward) == float(ref_r) == 1.0 and not bool(done)


def test_cartpole_time_limit_is_a_truncation_and_falling_a_termination():
    pytest.importorskip("gymnax")
    env = envs.make("gymnax:CartPole-v1", discrete_actions=True, max_steps_in_episode=3)
    _, state = env.reset(jax.random.key(0))
    for t in range(3):
        _, state, _, done, info = env.step(jax.random.key(t), state, jnp.array([t % 2], jnp.int32))
    assert bool(done) and bool(info["truncated"]) and not bool(info["terminated"])
    env = envs.make("gymnax:CartPole-v1", discrete_actions=True)
    _, state = env.reset(jax.random.key(0))
    for t in range(200):  # always push right: the pole falls long before 500 steps
        _, state, _, done, info = env.step(jax.random.key(t), state, jnp.array([1], jnp.int32))
        if bool(done):
            break
    assert bool(info["terminated"]) and not bool(info["truncated"]) and int(info["episode_length"]) == t + 1


def test_discrete_ppo_step_and_policy_fns():
    pytest.importorskip("gymnax")
    env = envs.make("gymnax:CartPole-v1", discrete_actions=True)
    cfg = ppo.Config(**TINY)
    agent = ppo.make(env, cfg, 3)
    state = agent.init(jax.random.key(0))
    assert state.params["policy"]["logits"]["kernel"].shape == (8, 2)
    state, metrics = jax.jit(agent.step)(state, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["entropy"]) <= math.log(2.0) + 1e-6
    pi = ppo.policy_fns(env, cfg)
    obs = jnp.zeros((5, 4))
    action, logprob = pi.sample(state.params["policy"], jax.random.key(2), obs)
    assert action.shape == (5, 1) and action.dtype == jnp.int32
    lp, _ = pi.logprob_entropy(state.params["policy"], obs, action)
    np.testing.assert_allclose(lp, logprob, rtol=1e-6)
    obs = jax.random.normal(jax.random.key(3), (16, 4))
    det = pi.deterministic_action(state.params["policy"], obs)
    lp0, _ = pi.logprob_entropy(state.params["policy"], obs, jnp.zeros((16, 1), jnp.int32))
    lp1, _ = pi.logprob_entropy(state.params["policy"], obs, jnp.ones((16, 1), jnp.int32))
    np.testing.assert_array_equal(det[:, 0], (lp1 > lp0).astype(np.int32))  # the argmax


def test_annealed_lr_and_clip_follow_sb3_progress():
    # K = 4 iterations: factors 1 - (k+1)/4 = 0.75, 0.5, 0.25, 0 (SB3's progress_remaining after each rollout)
    env = envs.make("point_mass")
    cfg = ppo.Config(**{**TINY, "update_epochs": 1, "num_minibatches": 1}, lr=1e-2, anneal_lr=True, anneal_clip=True)
    agent = ppo.make(env, cfg, 4)
    state = agent.init(jax.random.key(0))
    step = jax.jit(agent.step)
    for k in range(4):
        before = state.params
        state, metrics = step(state, jax.random.key(k))
        delta = optax.tree.norm(jax.tree.map(lambda a, b: a - b, state.params, before))
        if k < 3:
            assert float(delta) > 0
        else:
            assert float(delta) == 0.0  # the last iteration's lr (and clip) is 0
    # with one Adam step per iteration the first update's size is ~ lr * 0.75 per coordinate
    state0 = agent.init(jax.random.key(0))
    s1, _ = step(state0, jax.random.key(0))
    plain = ppo.make(env, dataclasses.replace(cfg, anneal_lr=False, anneal_clip=False), 4)
    p1, _ = jax.jit(plain.step)(plain.init(jax.random.key(0)), jax.random.key(0))
    ratio = jax.tree.map(
        lambda a, b, c: (a - c) / jnp.where(b - c == 0, 1.0, b - c), s1.params, p1.params, state0.params
    )
    vals = np.concatenate([np.ravel(x) for x in jax.tree.leaves(ratio)])
    vals = vals[np.abs(vals) > 0]
    np.testing.assert_allclose(np.median(vals), 0.75, rtol=1e-3)


def test_annealed_clip_and_unclipped_value_loss():
    batch = {
        "old_logprobs": jnp.array([-0.5, -0.8]),
        "advantages": jnp.array([1.0, -2.0]),
        "returns": jnp.array([2.0, -1.0]),
        "old_values": jnp.array([0.5, 0.1]),
        "num_samples": jnp.float32(2),
    }
    cfg = ppo.Config(clip_eps=0.2, vf_coef=1.0, clip_value_loss=False)
    _, m = ppo.loss(jnp.array([0.0, -1.0]), jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]), batch, cfg, clip_eps=0.1)
    # ratio e^0.5 clipped to 1.1 (A = 1); e^-0.2 = 0.818731 is below 0.9 and A = -2: min(-1.637, -1.8) = -1.8
    assert m["loss/policy"] == pytest.approx(-(1.1 - 1.8) / 2, abs=1e-6)
    assert m["clip_frac"] == pytest.approx(1.0)
    # no value clipping: (1/2) mean((1 - 2)^2, (0 + 1)^2) = 0.5 (clipped it would be 0.6725)
    assert m["loss/value"] == pytest.approx(0.5, abs=1e-6)


def test_episode_returns_counts_the_first_episode_only():
    env = envs.make("point_mass", horizon=5)
    ret, length = evaluate.episode_returns(env, lambda k, obs: jnp.zeros((obs.shape[0], 2)), jax.random.key(0), 3, 12)
    np.testing.assert_array_equal(length, [5, 5, 5])
    assert np.all(ret < 0)
    with pytest.raises(Exception, match="still ran"):
        evaluate.episode_returns(env, lambda k, obs: jnp.zeros((obs.shape[0], 2)), jax.random.key(0), 3, 4)


def test_evaluate_run_restores_the_checkpoint(tmp_path):
    pytest.importorskip("gymnax")
    cfg = control_config.ControlConfig(
        env="gymnax:CartPole-v1",
        env_kwargs={"discrete_actions": True},
        method="ppo",
        algo=ppo.Config(**TINY),
        iterations=2,
        checkpoint_every=2,
        async_save=False,
        run_dir=str(tmp_path / "run"),
    )
    control_train.train(cfg)
    out = evaluate.evaluate_run(cfg, episodes=4)
    assert out["checkpoint_step"] == 2 and out["policy"] == "deterministic"
    assert 1.0 <= out["return_min"] <= out["return_mean"] <= out["return_max"] <= 500.0
    assert out["length_mean"] == out["return_mean"]  # +1 per step in CartPole


def test_running_mean_std_merges_batches_exactly():
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32) * [1.0, 2.0, 0.5] + [0.0, 3.0, -1.0]
    rms = ppo.rms_init((3,))
    for chunk in np.split(x, [1, 8, 30]):
        rms = ppo.rms_update(rms, jnp.asarray(chunk))
    # the initial (mean 0, var 1, count 1e-4) pseudo-sample weighs 1e-4 / 50
    np.testing.assert_allclose(rms.mean, x.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rms.var, x.var(0), rtol=1e-4, atol=1e-4)
    assert float(rms.count) == pytest.approx(50 + 1e-4)


def test_sde_policy_noise_logprob_and_deterministic_action():
    env = envs.make("point_mass")
    cfg = ppo.Config(**TINY, sde=True, log_std_init=-1.0)
    pi = ppo.policy_fns(env, cfg)
    agent = ppo.make(env, cfg, 2)
    params = agent.init(jax.random.key(0)).params["policy"]
    assert params["log_std"][...].shape == (8, 2)
    obs = jax.random.normal(jax.random.key(1), (3, 4))
    matrix = pi.sde_matrix(params, jax.random.key(2), 3)
    assert matrix.shape == (3, 8, 2)
    action, logprob = pi.sde_sample(params, matrix, obs)
    mean, z, log_std = networks.apply(networks.split(ppo.policy_module(env, cfg, nnx.Rngs(0)))[0], params, obs)
    np.testing.assert_allclose(action, mean + jnp.einsum("nh,nha->na", z, matrix), rtol=1e-5, atol=1e-6)
    # given z, the action is N(mean, z^2 . exp(2 log_std) + 1e-6)
    std = np.sqrt(np.asarray(z) ** 2 @ np.exp(2 * np.asarray(log_std)) + 1e-6)
    ref = np.sum(
        -0.5 * ((np.asarray(action) - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi), -1
    )
    np.testing.assert_allclose(logprob, ref, rtol=1e-5)
    lp, ent = pi.logprob_entropy(params, obs, action)
    np.testing.assert_allclose(lp, logprob, rtol=1e-5)
    np.testing.assert_allclose(ent, np.sum(np.log(std) + 0.5 * (1 + math.log(2 * math.pi)), -1), rtol=1e-5)
    np.testing.assert_allclose(pi.deterministic_action(params, obs), mean, rtol=1e-6)


def test_torch_default_init_bounds():
    env = envs.make("point_mass")
    cfg = ppo.Config(**TINY, ortho_init=False)
    params = ppo.make(env, cfg, 2).init(jax.random.key(0)).params
    ortho = ppo.make(env, dataclasses.replace(cfg, ortho_init=True), 2).init(jax.random.key(0)).params
    for net in ("policy", "value"):  # first layer: fan_in 4, U(-0.5, 0.5) kernel and bias
        k = params[net]["trunk"]["layers"][0]["kernel"][...]
        b = params[net]["trunk"]["layers"][0]["bias"][...]
        assert float(jnp.max(jnp.abs(k))) <= 0.5 and float(jnp.max(jnp.abs(b))) > 0
        assert not np.allclose(k, ortho[net]["trunk"]["layers"][0]["kernel"][...])
    head = params["policy"]["mean"]["kernel"][...]  # fan_in 8: U(-0.354, 0.354), not the 0.01-gain head
    assert 0.05 < float(jnp.max(jnp.abs(head))) <= 1 / math.sqrt(8)


def test_normalized_sde_ppo_step_updates_the_statistics():
    env = envs.make("point_mass")
    cfg = ppo.Config(**TINY, sde=True, normalize_obs=True, normalize_reward=True, norm_gamma=0.9, clip_value_loss=False)
    agent = ppo.make(env, cfg, 3)
    state = agent.init(jax.random.key(0))
    assert float(state.norm["obs"].count) == pytest.approx(2 + 1e-4)  # the reset observations
    step = jax.jit(agent.step)
    state, metrics = step(state, jax.random.key(1))
    assert float(state.norm["obs"].count) == pytest.approx(2 + 16 + 1e-4)  # + T*N after-step observations
    assert float(state.norm["ret"].count) == pytest.approx(16 + 1e-4)
    assert np.isfinite(float(metrics["loss"]))
    # the running return: r_1 then 0.9 r_1 + r_2 ...; no episode ends in 8 of 200 steps, so never zero
    assert bool(jnp.all(state.norm["returns"] != 0))
    n = ppo.normalize_obs(cfg, state.norm, jnp.full((1, 4), 1e6))
    np.testing.assert_allclose(n, 10.0)  # clipped to +-10
    assert ppo.normalize_obs(dataclasses.replace(cfg, normalize_obs=False), state.norm, jnp.ones((1, 4))).sum() == 4


def test_evaluate_run_with_normalized_observations(tmp_path):
    pytest.importorskip("gymnax")
    cfg = control_config.ControlConfig(
        env="gymnax:MountainCarContinuous-v0",
        method="ppo",
        algo=ppo.Config(**TINY, sde=True, ortho_init=False, normalize_obs=True, normalize_reward=True),
        iterations=2,
        checkpoint_every=2,
        async_save=False,
        run_dir=str(tmp_path / "run"),
    )
    control_train.train(cfg)
    out = evaluate.evaluate_run(cfg, episodes=2)
    assert out["checkpoint_step"] == 2 and out["length_mean"] <= 999
    assert out["return_max"] <= 100.0


def _gym_mountain_car_step(position, velocity, action):
    """gymnasium's Continuous_MountainCarEnv.step, transcribed (float64, as there)."""
    force = min(max(action, -1.0), 1.0)
    velocity += force * 0.0015 - 0.0025 * math.cos(3 * position)
    velocity = min(max(velocity, -0.07), 0.07)
    position += velocity
    position = min(max(position, -1.2), 0.6)
    if position == -1.2 and velocity < 0:
        velocity = 0.0
    terminated = position >= 0.45 and velocity >= 0.0
    reward = (100.0 if terminated else 0.0) - 0.1 * action**2
    return position, velocity, reward, terminated


def test_mountain_car_continuous_has_gyms_left_wall():
    gymnax = pytest.importorskip("gymnax")
    env = envs.make("gymnax:MountainCarContinuous-v0")
    assert isinstance(env.base, envs.GymMountainCarContinuous)
    ref_env, ref_params = gymnax.make("MountainCarContinuous-v0")
    _, state = env.reset(jax.random.key(0))
    inner = state.inner
    # the left wall: gym stops the car; gymnax 1.0.1 keeps its leftward velocity
    wall = inner.replace(position=jnp.float32(-1.19), velocity=jnp.float32(-0.05))
    obs, new, reward, terminated, truncated = env.base.step_env(jax.random.key(1), wall, jnp.array([-1.0]))
    pos, vel, r, term = _gym_mountain_car_step(-1.19, -0.05, -1.0)
    np.testing.assert_allclose(obs, [pos, vel], atol=1e-6)
    assert float(obs[1]) == 0.0 and float(reward) == pytest.approx(r) and not bool(terminated)
    ref = ref_env.step_env(jax.random.key(1), wall, jnp.array([-1.0]), ref_params)
    assert float(ref[0][1]) < 0  # the gymnax behaviour this adapter corrects
    # a trajectory away from the wall, to the goal: the same as gym's step by step
    s = inner.replace(position=jnp.float32(0.3), velocity=jnp.float32(0.04))
    p, v = 0.3, 0.04
    for t in range(20):
        obs, s, reward, terminated, truncated = env.base.step_env(jax.random.key(t), s, jnp.array([0.7]))
        p, v, r, term = _gym_mountain_car_step(p, v, 0.7)
        np.testing.assert_allclose(obs, [p, v], atol=1e-5)
        assert float(reward) == pytest.approx(r, abs=1e-4) and bool(terminated) == term
        if term:
            break
    assert term and float(reward) == pytest.approx(100.0 - 0.049, abs=1e-4)
