"""TGPO and its STL parts: robustness of hand-made trajectories (and stljax agreeing), time-allocation
feasibility, MH acceptance and its stationary distribution, the time-conditioned input, the stage
reward, the STL integrator env, jit == eager of a train step, and kill-and-resume of a TGPO run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import errors, metrics_log
from jaxrl_llm.control import config as control_config
from jaxrl_llm.control import envs, integrator_env, stl, tgpo
from jaxrl_llm.control import train as control_train

A = stl.Region((0.0, 0.0), 1.0)
B = stl.Region((4.0, 0.0), 1.0)
O = stl.Region((2.0, 2.0), 0.5)
# horizon 4, reach A in [0, 1], then B in [2, 4], never O
SPEC = stl.sequence((A, B), ((0, 1), (2, 4)), (O,), 4)
TRAJ = jnp.array([[3.0, 0.0], [0.5, 0.0], [2.0, 0.0], [3.5, 0.0], [6.0, 0.0]])  # x_0..x_4


def test_robustness_hand_made_trajectory():
    # F_[0,1] A: max(1 - 3, 1 - 0.5) = 0.5; F_[2,4] B: max(1 - 2, 1 - 0.5, 1 - 2) = 0.5
    assert float(stl.reach_robustness(SPEC.reach[0], TRAJ)) == pytest.approx(0.5)
    assert float(stl.reach_robustness(SPEC.reach[1], TRAJ)) == pytest.approx(0.5)
    # G not O: min_t |x_t - (2,2)| - 0.5 = 2 - 0.5 at x = (2, 0)
    assert float(stl.avoid_robustness(O, TRAJ)) == pytest.approx(1.5)
    assert float(stl.robustness(SPEC, TRAJ)) == pytest.approx(0.5)
    # reach B only in [3, 4]: max(1 - 0.5, 1 - 2) = 0.5 still; in [4, 4] only: 1 - 2 = -1 -> violated
    late = stl.sequence((A, B), ((0, 1), (4, 4)), (O,), 4)
    assert float(stl.robustness(late, TRAJ)) == pytest.approx(-1.0)
    batch = jnp.stack([TRAJ, TRAJ.at[2].set(jnp.array([2.0, 1.75]))])  # the second enters O 0.25 deep
    np.testing.assert_allclose(stl.robustness(SPEC, batch), [0.5, -0.25], atol=1e-6)
    with pytest.raises(ValueError, match=r"needs \[\.\.\., 5, 2\]"):
        stl.robustness(SPEC, TRAJ[:4])


def test_spec_validation_names_the_subgoal():
    with pytest.raises(ValueError, match=r"reach\[1\] window \[0, 3\] must start and end after"):
        stl.sequence((A, B), ((1, 2), (0, 3)), (), 4)
    with pytest.raises(ValueError, match=r"reach\[0\] window \[2, 9\]"):
        stl.reach_avoid(A, (2, 9), (), 4)
    with pytest.raises(errors.UserError, match="unknown STL spec 'nope'"):
        stl.get("nope")


def test_stljax_robustness_equals_the_formula():
    pytest.importorskip("stljax")
    from stljax import formula as F

    # the spec's own hand case: F_[0,2](x > 1) on x = [0, 0.5, 1.5] is 0.5, G_[0,2](x > 1) is -1
    x = jnp.array([0.0, 0.5, 1.5])
    p = F.Predicate("x", lambda s: s)
    assert float(F.Eventually(p > 1.0, interval=[0, 2]).robustness(x)) == pytest.approx(0.5)
    assert float(F.Always(p > 1.0, interval=[0, 2]).robustness(x)) == pytest.approx(-1.0)
    assert float(stl.robustness_stljax(SPEC, TRAJ)) == pytest.approx(0.5, abs=1e-5)
    for spec in stl.SPECS.values():
        trajs = jax.random.normal(jax.random.key(0), (6, spec.horizon + 1, 2)).cumsum(axis=1) * 0.3
        ours, theirs = jax.jit(lambda x: (stl.robustness(spec, x), stl.robustness_stljax(spec, x)))(trajs)  # noqa: B023
        np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_time_allocation_feasibility():
    assert bool(stl.feasible(jnp.array([1, 3]), SPEC))
    assert not bool(stl.feasible(jnp.array([2, 3]), SPEC))  # t_A outside [0, 1]
    assert not bool(stl.feasible(jnp.array([1, 5]), SPEC))  # t_B outside [2, 4]
    overlap = stl.sequence((A, B), ((0, 3), (2, 4)), (), 4)
    assert not bool(stl.feasible(jnp.array([3, 3]), overlap))  # not strictly ordered
    # dynamics: gap between A and B is 4 - 1 - 1 = 2; at 1 per step t_B - t_A must be >= 2
    assert bool(stl.feasible(jnp.array([1, 3]), SPEC, max_step=1.0))
    assert not bool(stl.feasible(jnp.array([1, 2]), SPEC, max_step=1.0))
    # from x_0 = (3, 0) A's disc is 2 away: t_A = 1 needs max_step >= 2
    assert not bool(stl.feasible(jnp.array([1, 3]), SPEC, x0=jnp.array([3.0, 0.0]), max_step=1.0))
    assert bool(stl.feasible(jnp.array([1, 3]), SPEC, x0=jnp.array([3.0, 0.0]), max_step=2.0))
    # uniform allocations are always ordered and in their windows, also with overlapping windows
    for spec in (SPEC, overlap, stl.get("sequence")):
        alloc = stl.uniform_allocation(jax.random.key(1), spec, (4000,))
        assert bool(jnp.all(stl.ordered_in_windows(alloc, spec)))
    alloc = stl.uniform_allocation(jax.random.key(2), overlap, (4000,))
    assert set(np.unique(alloc[:, 0]).tolist()) == {0, 1, 2, 3}


def test_mh_acceptance_hand_case():
    # target exp(V / T): V_cur 0.5, V_prop 0.3, T 0.1 -> exp(-2) = 0.1353; uphill moves always accepted
    assert float(tgpo.mh_accept_prob(0.5, 0.3, 0.1)) == pytest.approx(math.exp(-2.0), rel=1e-5)
    assert float(tgpo.mh_accept_prob(0.3, 0.5, 0.1)) == 1.0
    # a chain step accepts that move with probability 0.1353 (value 0.5 at t=2, 0.3 elsewhere)
    spec = stl.reach_avoid(A, (0, 4), (), 4)
    value = lambda a: jnp.where(a[..., 0] == 2, 0.5, 0.3)  # noqa: E731
    start = jnp.full((40000, 1), 2, jnp.int32)
    new, accepted = tgpo.mh_step(jax.random.key(0), start, value, spec, sigma=1.0, temperature=0.1)
    prop = tgpo.mh_propose(jax.random.split(jax.random.key(0))[0], start, spec, 1.0)  # mh_step's proposal
    np.testing.assert_array_equal(new, jnp.where(accepted[:, None], prop, start))
    left = prop[:, 0] != 2  # proposals that leave t = 2 are accepted with probability exp(-2)
    assert float(jnp.mean(accepted[left])) == pytest.approx(math.exp(-2.0), abs=0.01)
    assert bool(jnp.all(accepted[~left]))
    # an unordered proposal is rejected whatever its value
    seq = stl.sequence((A, B), ((0, 3), (1, 4)), (), 4)
    up = lambda a: jnp.where(a[..., 0] >= a[..., 1], 9.0, 0.0)  # noqa: E731  (unordered would win)
    chains = jnp.tile(jnp.array([[1, 2]], jnp.int32), (5000, 1))
    for i in range(5):
        chains, _ = tgpo.mh_step(jax.random.key(i), chains, up, seq, sigma=2.0, temperature=0.1)
        assert bool(jnp.all(stl.ordered_in_windows(chains, seq)))


def test_reflect_and_mh_stationary_distribution():
    lo, hi = jnp.int32(2), jnp.int32(5)
    np.testing.assert_array_equal(tgpo.reflect(jnp.arange(-2, 10), lo, hi), [5, 4, 3, 2, 2, 3, 4, 5, 5, 4, 3, 2])
    np.testing.assert_array_equal(tgpo.reflect(jnp.arange(3), jnp.int32(1), jnp.int32(1)), [1, 1, 1])
    # MH with reflected proposals has the target exp(V/T) as its stationary law: V(t) = 0.1 t, T = 0.1
    spec = stl.reach_avoid(A, (0, 4), (), 4)
    value = lambda a: 0.1 * a[..., 0].astype(jnp.float32)  # noqa: E731

    def run(alloc, key):
        alloc, _ = tgpo.mh_step(key, alloc, value, spec, sigma=1.5, temperature=0.1)
        return alloc, None

    start = stl.uniform_allocation(jax.random.key(0), spec, (20000,))
    final, _ = jax.jit(lambda s: jax.lax.scan(run, s, jax.random.split(jax.random.key(1), 60)))(start)
    freq = np.bincount(np.asarray(final[:, 0]), minlength=5) / final.shape[0]
    target = np.exp(np.arange(5.0)) / np.exp(np.arange(5.0)).sum()
    np.testing.assert_allclose(freq, target, atol=0.015)


def test_augment_stage_and_time_left():
    alloc = jnp.array([1, 3])
    pos = jnp.array([0.5, 0.0])
    np.testing.assert_array_equal(tgpo.stage(jnp.array([0, 1, 2, 3, 4]), alloc), [0, 1, 1, 2, 2])
    s0 = tgpo.augment(pos, jnp.array(0), alloc, SPEC)
    assert s0.shape == (tgpo.aug_dim(SPEC),) == (11,)
    # [x, t/H, onehot(k), t_{1:K}/H, c_k - x, (t_k - t)/H]
    np.testing.assert_allclose(s0, [0.5, 0, 0, 1, 0, 0, 0.25, 0.75, -0.5, 0, 0.25], atol=1e-6)
    s2 = tgpo.augment(pos, jnp.array(2), alloc, SPEC)
    np.testing.assert_allclose(s2, [0.5, 0, 0.5, 0, 1, 0, 0.25, 0.75, 3.5, 0, 0.25], atol=1e-6)
    s4 = tgpo.augment(pos, jnp.array(4), alloc, SPEC)  # all done: no subgoal, no time left
    np.testing.assert_allclose(s4, [0.5, 0, 1, 0, 0, 1, 0.25, 0.75, 0, 0, 0], atol=1e-6)
    # broadcasting: one start position against several candidate allocations
    many = tgpo.augment(pos[None], jnp.zeros((3,), jnp.int32), jnp.array([[0, 2], [1, 3], [1, 4]]), SPEC)
    assert many.shape == (3, 11)


def test_stage_reward_hand_case():
    cfg = tgpo.Config(w_prog=0.1, w_reach=1.0, w_avoid=2.0)
    alloc = jnp.array([1, 3])
    # step 0 -> 1, subgoal A (centre 0, radius 1), deadline t_A = 1: progress (3 - 0.5)/1 = 2.5,
    # deadline hit inside A (+1); no obstacle
    r = tgpo.stage_reward(TRAJ[0], TRAJ[1], jnp.array(0), alloc, SPEC, cfg, max_step=1.0)
    assert float(r) == pytest.approx(0.1 * 2.5 + 1.0)
    # step 1 -> 2 towards B (centre 4): progress (3.5 - 2)/1 = 1.5, deadline t_B = 3 not yet
    r = tgpo.stage_reward(TRAJ[1], TRAJ[2], jnp.array(1), alloc, SPEC, cfg, max_step=1.0)
    assert float(r) == pytest.approx(0.15)
    # deadline of B missed by 0.5 (x_3 = (2.5, 0) is 1.5 from B's centre): 0 + min(-0.5, 0)
    r = tgpo.stage_reward(jnp.array([2.0, 0.0]), jnp.array([2.5, 0.0]), jnp.array(2), alloc, SPEC, cfg, 1.0)
    assert float(r) == pytest.approx(0.1 * 0.5 - 0.5)
    # inside O, 0.25 deep, after every subgoal: -w_avoid (1 + 0.25)
    r = tgpo.stage_reward(jnp.array([2.0, 1.0]), jnp.array([2.0, 1.75]), jnp.array(3), alloc, SPEC, cfg, 1.0)
    assert float(r) == pytest.approx(-2.0 * 1.25)


def test_integrator_env_dynamics_and_terminal_robustness():
    env = envs.make("stl_integrator", spec="reach_avoid")
    base = env.base
    obs, state = env.reset(jax.random.key(0))
    assert obs.shape == (3,) and float(obs[2]) == 0.0
    start = obs[:2]
    # a normalized action (1, 1) is (v_max, v_max): speed sqrt(2) is projected to 1
    obs, state, reward, done, info = env.step(jax.random.key(1), state, jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(obs[:2], start + 0.1 * jnp.array([1.0, 1.0]) / math.sqrt(2.0), atol=1e-6)
    assert float(reward) == 0.0 and not bool(done)
    traj = [start, obs[:2]]
    for t in range(2, base.horizon + 1):
        obs, state, reward, done, info = env.step(jax.random.key(t), state, jnp.array([0.3, 0.6]))
        traj.append(info["final_obs"][:2])
        assert bool(done) == (t == base.horizon)
    assert bool(info["terminated"]) and not bool(info["truncated"])
    expected = stl.robustness(base.stl_spec, jnp.stack(traj))
    assert float(reward) == pytest.approx(float(expected), abs=1e-6)
    assert float(obs[2]) == 0.0  # auto-reset to the next episode
    with pytest.raises(ValueError, match="reward='dense'"):
        integrator_env.SingleIntegrator(reward="dense")


TINY = tgpo.Config(num_envs=2, num_steps=40, update_epochs=1, num_minibatches=2, hidden=(8,), mh_warmup=1, mh_steps=2)


def test_tgpo_step_jit_equals_eager_and_mh_runs():
    env = envs.make("stl_integrator", spec="reach_avoid", reward="none")
    agent = tgpo.make(env, TINY, 4)
    state = agent.init(jax.random.key(0))
    step = jax.jit(agent.step)
    state, m0 = step(state, jax.random.key(1))  # warm-up iteration: uniform allocations
    assert np.isnan(float(m0["mh/accept_rate"]))
    s_eager, m_eager = agent.step(state, jax.random.key(2))
    s_jit, m_jit = step(state, jax.random.key(2))
    for a, b in zip(jax.tree.leaves(s_eager), jax.tree.leaves(s_jit)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    for k in m_eager:
        np.testing.assert_allclose(m_jit[k], m_eager[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert 0.0 <= float(m_jit["mh/accept_rate"]) <= 1.0
    assert bool(jnp.all(stl.ordered_in_windows(s_jit.alloc, env.base.stl_spec)))
    ev = jax.jit(agent.evaluate, static_argnums=2)(s_jit, jax.random.key(3), 4)
    assert set(ev) == {"stl/satisfaction", "stl/robustness", "alloc/feasible_frac"}
    with pytest.raises(errors.UserError, match="num_steps=100 must equal the horizon 40"):
        tgpo.make(env, tgpo.Config(), 4)
    with pytest.raises(errors.UserError, match="tgpo needs env='stl_integrator'"):
        tgpo.make(envs.make("point_mass"), TINY, 4)


def test_tgpo_kill_and_resume_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = control_config.ControlConfig(
        name="tgpo",
        env="stl_integrator",
        env_kwargs={"spec": "reach_avoid", "reward": "none"},
        method="tgpo",
        algo=TINY,
        iterations=4,
        checkpoint_every=2,
        async_save=False,
    )
    whole = control_train.train(control_config.ControlConfig(**{**cfg.__dict__, "run_dir": str(tmp_path / "w")}))
    assert whole["status"] == "finished"
    killed = tmp_path / "k"
    cfg_k = control_config.ControlConfig(**{**cfg.__dict__, "run_dir": str(killed)})
    log = metrics_log.MetricsLogger.log

    def dying_log(self, phase, step, metrics):
        record = log(self, phase, step, metrics)
        if step == 3:
            raise KeyboardInterrupt
        return record

    monkeypatch.setattr(metrics_log.MetricsLogger, "log", dying_log)
    with pytest.raises(KeyboardInterrupt):
        control_train.train(cfg_k)
    monkeypatch.setattr(metrics_log.MetricsLogger, "log", log)
    assert control_train.train(cfg_k)["status"] == "finished"

    def records(d):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in metrics_log.read_metrics(d)]

    a, b = records(killed), records(tmp_path / "w")
    assert [r["step"] for r in a] == [1, 2, 3, 4] and len(a) == len(b)
    for x, y in zip(a, b):
        for k in x:
            assert x[k] == y[k] or (np.isnan(x[k]) and np.isnan(y[k])), (x["step"], k)
