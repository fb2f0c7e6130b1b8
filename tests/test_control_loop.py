"""The control loop: the pure-JAX env protocol, the replay buffer, jit == eager for a train step,
kill-and-resume of a control run (each method), and `jaxrl-llm train` dispatching a control experiment."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import checkpoint, cli, metrics_log
from jaxrl_llm.control import config as control_config
from jaxrl_llm.control import envs, mdpo, mdpo_offpolicy, ppo, replay, rollout
from jaxrl_llm.control import train as control_train

TINY = {
    "ppo": ppo.Config(num_envs=2, num_steps=8, update_epochs=2, num_minibatches=2, hidden=(8,)),
    "mdpo": mdpo.Config(num_envs=2, num_steps=8, sgd_steps=2, value_steps=2, hidden=(8,)),
    "mdpo_offpolicy": mdpo_offpolicy.Config(
        num_envs=2,
        num_steps=4,
        updates_per_iter=3,
        batch_size=4,
        buffer_size=20,  # smaller than the 48 steps of a run: the ring wraps before the end
        learning_starts=8,
        old_policy_every=2,
        hidden=(8,),
    ),
}


def test_point_mass_auto_reset_and_truncation():
    env = envs.make("point_mass", horizon=3)
    obs, state = env.reset(jax.random.key(0))
    assert obs.shape == (4,)
    total = 0.0
    for t in range(3):
        prev = obs
        obs, state, reward, done, info = env.step(jax.random.key(t + 1), state, jnp.array([5.0, -5.0]))
        total += float(reward)
        assert float(reward) == pytest.approx(-float(jnp.sum(prev[:2] ** 2)) - 0.01 * 2.0)  # action clipped to 1
    assert bool(done) and bool(info["truncated"]) and not bool(info["terminated"])
    assert float(info["episode_return"]) == pytest.approx(total, rel=1e-6)
    assert int(info["episode_length"]) == 3
    assert not np.allclose(obs, info["final_obs"])  # obs is the next episode's first
    assert float(obs[2]) == 0.0 and int(state.episode_length) == 0


def test_rollout_shapes_and_episode_metrics():
    env = envs.make("point_mass", horizon=5)
    obs, state = rollout.reset(env, jax.random.key(0), 3)

    def act(key, obs):
        return jnp.zeros((obs.shape[0], 2)), {"x": obs[:, 0]}

    traj, _, _ = rollout.collect(env, act, state, obs, jax.random.key(1), 12)
    assert traj.obs.shape == (12, 3, 4) and traj.extras["x"].shape == (12, 3)
    assert int(traj.done.sum()) == 6  # episodes of 5 steps end at t = 4 and 9
    m = rollout.episode_metrics(traj)
    assert float(m["episode/length"]) == 5.0


def test_replay_ring_buffer():
    buf = replay.init({"x": jnp.zeros(2), "r": jnp.zeros(())}, 4)
    buf = replay.add(buf, {"x": jnp.arange(6.0).reshape(3, 2), "r": jnp.arange(3.0)})
    assert int(buf.size) == 3 and int(buf.position) == 3
    buf = jax.jit(replay.add)(buf, {"x": 10 + jnp.arange(6.0).reshape(3, 2), "r": 10 + jnp.arange(3.0)})
    assert int(buf.size) == 4 and int(buf.position) == 2
    np.testing.assert_array_equal(buf.data["r"], [11.0, 12.0, 2.0, 10.0])  # the two oldest overwritten
    sample = replay.sample(buf, jax.random.key(0), 64)
    assert set(np.asarray(sample["r"]).tolist()) <= {11.0, 12.0, 2.0, 10.0}
    np.testing.assert_array_equal(sample["x"][:, 0] % 2, 0.0)  # rows stay together
    with pytest.raises(ValueError, match="capacity"):
        replay.add(buf, {"x": jnp.zeros((5, 2)), "r": jnp.zeros(5)})


def test_train_step_jit_equals_eager():
    env = envs.make("point_mass")
    agent = ppo.make(env, TINY["ppo"], 4)
    state = agent.init(jax.random.key(0))
    s_eager, m_eager = agent.step(state, jax.random.key(1))
    s_jit, m_jit = jax.jit(agent.step)(state, jax.random.key(1))
    for a, b in zip(jax.tree.leaves(s_eager), jax.tree.leaves(s_jit)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    for k in m_eager:
        np.testing.assert_allclose(m_jit[k], m_eager[k], rtol=1e-4, atol=1e-5, err_msg=k)


def _records(run_dir):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in metrics_log.read_metrics(run_dir)]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == y[k] or (np.isnan(x[k]) and np.isnan(y[k])), (x["step"], k, x[k], y[k])


@pytest.mark.parametrize("method", sorted(TINY))
def test_kill_and_resume_equals_uninterrupted(method, tmp_path, monkeypatch):
    cfg = control_config.ControlConfig(
        name=method, method=method, algo=TINY[method], iterations=6, checkpoint_every=2, async_save=False
    )
    whole = tmp_path / "whole"
    control_train.train(control_config.ControlConfig(**{**cfg.__dict__, "run_dir": str(whole)}))
    state_whole = control_train.pack(_final_state(whole, cfg))

    # killed after logging iteration 5, before its checkpoint (the newest on disk is 4)
    killed = tmp_path / "killed"
    cfg_k = control_config.ControlConfig(**{**cfg.__dict__, "run_dir": str(killed)})
    log = metrics_log.MetricsLogger.log

    def dying_log(self, phase, step, metrics):
        record = log(self, phase, step, metrics)
        if step == 5:
            raise KeyboardInterrupt
        return record

    monkeypatch.setattr(metrics_log.MetricsLogger, "log", dying_log)
    with pytest.raises(KeyboardInterrupt):
        control_train.train(cfg_k)
    monkeypatch.setattr(metrics_log.MetricsLogger, "log", log)
    assert [r["step"] for r in metrics_log.read_metrics(killed)] == [1, 2, 3, 4, 5]
    summary = control_train.train(cfg_k)
    assert summary["status"] == "finished" and summary["step"] == 6

    _same(_records(killed), _records(whole))
    state_resumed = control_train.pack(_final_state(killed, cfg))
    for k in state_whole:
        np.testing.assert_array_equal(state_resumed[k], state_whole[k], err_msg=k)


def _final_state(run_dir, cfg):
    init, _ = control_train._compiled(cfg.env, "{}", cfg.method, cfg.algo, cfg.iterations)
    like = init(jax.random.key(0))
    ckpt = checkpoint.Checkpointer(run_dir / "checkpoints")
    step, packed, _ = ckpt.restore(control_train.pack(like))
    ckpt.close()
    assert step == cfg.iterations
    return control_train.unpack(packed, like)


def test_cli_trains_a_control_experiment(tmp_path, capsys):
    exp = tmp_path / "tiny_control.py"
    exp.write_text(
        "from jaxrl_llm.control import config, ppo\n"
        "def get_config():\n"
        "    return config.ControlConfig(name='tiny', method='ppo', iterations=3, checkpoint_every=2,\n"
        "        algo=ppo.Config(num_envs=2, num_steps=8, update_epochs=2, num_minibatches=2, hidden=(8,)))\n"
    )
    run = tmp_path / "run"
    # the same method config as the kill-and-resume test's, so that one process compiles it once
    args = ["train", str(exp), "--run-dir", str(run), "--set", "iterations=6"]
    assert cli.main(args + ["--stop-after", "2"]) == 0
    assert [r["step"] for r in metrics_log.read_metrics(run)] == [1, 2]
    assert cli.main(args) == 0
    assert [r["step"] for r in metrics_log.read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    saved = json.loads((run / "config.json").read_text())
    assert saved["kind"] == "control" and saved["iterations"] == 6 and saved["env"] == "point_mass"
    capsys.readouterr()
    assert (
        cli.main(["train", str(exp), "--set", "algo.lr=0.001", "--set", 'env_kwargs={"horizon": 50}', "--print-config"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["algo"]["lr"] == 0.001 and printed["env_kwargs"] == {"horizon": 50}
    assert cli.main(["train", str(exp), "--run-dir", str(run), "--set", "algo.nope=1"]) == 2
    assert "algo.nope" in capsys.readouterr().err
    assert cli.main(["train", str(exp), "--set", "method=sac"]) == 2
    assert "sac" in capsys.readouterr().err
