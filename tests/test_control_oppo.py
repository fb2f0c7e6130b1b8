"""OPPO (control/oppo.py), the Decision Transformer (control/decision_transformer.py), the public
config walker used by control overrides, and the benchmarks' machine record."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_llm import config as config_lib
from jaxrl_llm.control import config as control_config
from jaxrl_llm.control import decision_transformer as dt
from jaxrl_llm.control import envs, oppo

_spec = importlib.util.spec_from_file_location(
    "benchmarks_machine", pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "_machine.py"
)
_machine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_machine)


# ------------------------------------------------------------------ the losses, by hand


def test_triplet_hand_computed_cases():
    z_star = jnp.zeros(2)
    z_pos = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    z_neg = jnp.array([[0.0, 2.0], [0.0, 1.5]])
    ones = jnp.ones(2)
    # each case alone: max(1 - 2 + 1, 0) = 0 and max(1 - 1.5 + 1, 0) = 0.5
    first, _ = oppo.preference_loss(z_star, z_pos[:1], z_neg[:1], ones[:1], jnp.float32(1.0))
    second, _ = oppo.preference_loss(z_star, z_pos[1:], z_neg[1:], ones[1:], jnp.float32(1.0))
    np.testing.assert_allclose(first, 0.0, atol=1e-5)
    np.testing.assert_allclose(second, 0.5, atol=1e-5)
    # torch's mean reduction over both: (0 + 0.5) / 2
    both, acc = oppo.preference_loss(z_star, z_pos, z_neg, ones, jnp.float32(2.0))
    np.testing.assert_allclose(both, 0.25, atol=1e-5)
    np.testing.assert_allclose(acc, 1.0)  # d(z*, z+) = 1 < 2 and < 1.5
    # margin is a parameter: margin 0 gives max(1 - 1.5, 0) = 0
    np.testing.assert_allclose(oppo.preference_loss(z_star, z_pos, z_neg, ones, 2.0, margin=0.0)[0], 0.0, atol=1e-5)


def test_pairwise_distance_has_torch_eps():
    # ||x - y + eps||: (0,0) vs (0,0) is sqrt(2) * 1e-6, not 0
    np.testing.assert_allclose(oppo.pairwise_distance(jnp.zeros(2), jnp.zeros(2)), np.sqrt(2) * 1e-6, rtol=1e-3)


def test_norm_penalty_is_the_two_sided_mse():
    np.testing.assert_allclose(oppo.norm_penalty(jnp.array([[3.0, 4.0]]), 1.0), 16.0)  # (5 - 1)^2, not ReLU's 4
    np.testing.assert_allclose(oppo.norm_penalty(jnp.array([[0.6, 0.8], [0.0, 0.0]]), 2.0), 0.5)  # (0 + 1) / 2


def test_bc_loss_masks_padding_and_means_over_action_dims():
    pred = jnp.array([[[1.0, 0.0], [9.0, 9.0]]])  # [1, 2, 2]
    act = jnp.array([[[0.0, 0.0], [0.0, 0.0]]])
    mask = jnp.array([[True, False]])
    np.testing.assert_allclose(oppo.bc_loss(pred, act, mask, jnp.float32(1.0)), 0.5)  # (1 + 0) / 2 dims / 1 step


def test_scripted_labels_drop_ties_and_prefer_the_larger_window():
    first, labelled = oppo.scripted_labels(jnp.array([3.0, 1.0, 2.0]), jnp.array([1.0, 3.0, 2.0]))
    np.testing.assert_array_equal(first, [True, False, False])
    np.testing.assert_array_equal(labelled, [1.0, 1.0, 0.0])
    # a dropped tie contributes nothing: its weight is 0 and it is not counted
    z_star, z_pos, z_neg = jnp.zeros(2), jnp.array([[0.0, 3.0], [1.0, 0.0]]), jnp.array([[0.0, 0.0], [0.0, 2.0]])
    loss, _ = oppo.preference_loss(z_star, z_pos, z_neg, jnp.array([0.0, 1.0]), jnp.float32(1.0))
    np.testing.assert_allclose(loss, 0.0, atol=1e-5)


def _random_pairs(n=6, z=3):
    k = jax.random.split(jax.random.key(0), 4)
    return (
        jax.random.normal(k[0], (z,)),
        jax.random.normal(k[1], (n, z)),
        jax.random.normal(k[2], (n, z)),
        (jax.random.uniform(k[3], (n,)) > 0.3).astype(jnp.float32),
    )


def test_losses_jit_equals_eager():
    z_star, z_pos, z_neg, w = _random_pairs()
    num = jnp.sum(w)
    eager = oppo.preference_loss(z_star, z_pos, z_neg, w, num)
    jitted = jax.jit(oppo.preference_loss)(z_star, z_pos, z_neg, w, num)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)
    np.testing.assert_allclose(oppo.norm_penalty(z_pos, 6.0), jax.jit(oppo.norm_penalty)(z_pos, 6.0), rtol=1e-6)
    pred, act = z_pos.reshape(2, 3, 3), z_neg.reshape(2, 3, 3)
    mask = w.reshape(2, 3) > 0
    np.testing.assert_allclose(
        oppo.bc_loss(pred, act, mask, 4.0), jax.jit(oppo.bc_loss)(pred, act, mask, 4.0), rtol=1e-6
    )


def test_losses_are_partition_invariant_with_global_normalizers():
    z_star, z_pos, z_neg, w = _random_pairs()
    num = jnp.sum(w)
    whole = oppo.preference_loss(z_star, z_pos, z_neg, w, num)[0]
    parts = sum(oppo.preference_loss(z_star, z_pos[s], z_neg[s], w[s], num)[0] for s in (slice(0, 2), slice(2, 6)))
    np.testing.assert_allclose(whole, parts, rtol=1e-6)
    g_whole = jax.grad(lambda z: oppo.preference_loss(z, z_pos, z_neg, w, num)[0])(z_star)
    g_parts = sum(
        jax.grad(lambda z, s=s: oppo.preference_loss(z, z_pos[s], z_neg[s], w[s], num)[0])(z_star)
        for s in (slice(0, 3), slice(3, 6))
    )
    np.testing.assert_allclose(g_whole, g_parts, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        oppo.norm_penalty(z_pos, 6.0), oppo.norm_penalty(z_pos[:2], 6.0) + oppo.norm_penalty(z_pos[2:], 6.0), rtol=1e-6
    )
    pred, act, mask = z_pos.reshape(2, 3, 3), z_neg.reshape(2, 3, 3), w.reshape(2, 3) > 0
    n = jnp.sum(mask)
    np.testing.assert_allclose(
        oppo.bc_loss(pred, act, mask, n),
        oppo.bc_loss(pred[:1], act[:1], mask[:1], n) + oppo.bc_loss(pred[1:], act[1:], mask[1:], n),
        rtol=1e-6,
    )


# ------------------------------------------------------------------ the networks

O, A, K = 3, 2, 4


def _window(key, b=2):
    ks = jax.random.split(key, 3)
    return (
        jax.random.normal(ks[0], (b, K, O)),
        jax.random.uniform(ks[1], (b, K, A), minval=-1, maxval=1),
        jax.random.normal(ks[2], (b, K, 2)),
        jnp.broadcast_to(jnp.arange(K), (b, K)),
        jnp.ones((b, K), bool),
    )


def test_decision_transformer_is_causal_and_ignores_padding():
    model = dt.DecisionTransformer(O, A, 2, dim=16, layers=2, heads=2, max_ep_len=16, rngs=nnx.Rngs(0))
    states, actions, cond, steps, mask = _window(jax.random.key(1))
    out = model(states, actions, cond, steps, mask)
    assert out.shape == (2, K, A) and bool(jnp.all(jnp.abs(out) < 1))
    # a_t is predicted from s_t: it sees c_<=t, s_<=t, a_<t, and nothing later
    t = 1
    changed = model(
        states.at[:, t + 1 :].add(5.0), actions.at[:, t:].add(0.7), cond.at[:, t + 1 :].add(3.0), steps, mask
    )
    np.testing.assert_allclose(changed[:, : t + 1], out[:, : t + 1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(changed[:, t + 1 :], out[:, t + 1 :])
    # the current state does change the current action
    assert not np.allclose(model(states.at[:, t].add(1.0), actions, cond, steps, mask)[:, t], out[:, t])
    # left padding: what sits in padded slots does not reach the valid ones
    pad = mask.at[:, :2].set(False)
    base = model(states, actions, cond, steps, pad)
    noisy = model(states.at[:, :2].add(4.0), actions.at[:, :2].add(0.5), cond.at[:, :2].add(2.0), steps, pad)
    np.testing.assert_allclose(noisy[:, 2:], base[:, 2:], rtol=1e-5, atol=1e-6)


def test_hindsight_encoder_sees_the_whole_segment_but_not_padding():
    enc = dt.HindsightEncoder(O, A, z_dim=5, dim=16, layers=1, heads=1, max_ep_len=16, rngs=nnx.Rngs(0))
    states, actions, _, steps, mask = _window(jax.random.key(2))
    z = enc(states, actions, steps, mask)
    assert z.shape == (2, 5)
    assert not np.allclose(
        enc(states, actions.at[:, -1].add(0.5), steps, mask), z
    )  # bidirectional: the last step counts
    pad = mask.at[:, -1].set(False)
    np.testing.assert_allclose(
        enc(states.at[:, -1].add(9.0), actions, steps, pad), enc(states, actions, steps, pad), rtol=1e-5, atol=1e-5
    )


def test_evaluate_matches_a_python_rollout_and_decrements_the_return_to_go():
    env = envs.make("point_mass", dim=2, horizon=7)
    gain = 2.0

    def policy(states, actions, cond, timesteps, mask):
        # a P-controller on the window's last state, plus the last conditioning value; it also
        # checks the window: the last slot is valid and is the current step
        last_valid = jnp.all(mask[:, -1]) & jnp.all(timesteps[:, -1] == jnp.max(timesteps, axis=1))
        act = -gain * states[:, :, :2] + cond[:, :, :1]
        return jnp.where(last_valid, act, jnp.nan)

    key = jax.random.key(3)
    out = jax.jit(
        lambda k: dt.evaluate(env, policy, jnp.array([0.3]), k, num_episodes=3, horizon=7, context=3, return_scale=10.0)
    )(key)
    # the same episodes by hand
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, 3))
    cond, total = jnp.full((3, 1), 0.3), jnp.zeros(3)
    for t, k_t in enumerate(jax.random.split(k_run, 7)):
        action = -gain * obs[:, :2] + cond
        obs, state, reward, done, _ = jax.vmap(env.step)(jax.random.split(k_t, 3), state, action)
        total, cond = total + reward, cond - reward[:, None] / 10.0
    np.testing.assert_allclose(out["return"], total, rtol=1e-5)
    np.testing.assert_array_equal(out["length"], [7, 7, 7])


# ------------------------------------------------------------------ the agent on a tiny dataset


def _tiny_data(e=6, h=12):
    rng = np.random.RandomState(0)
    rewards = rng.randn(e, h).astype(np.float32)
    return oppo.Dataset(
        jnp.asarray(rng.randn(e, h, 4), jnp.float32),
        jnp.asarray(np.clip(rng.randn(e, h, 2), -1, 1), jnp.float32),
        jnp.asarray(rewards),
        jnp.asarray([h, h, h, h, 8, 8], jnp.int32),
    )


TINY = dict(context=4, z_dim=3, dim=8, layers=1, heads=1, batch_size=8, warmup_steps=2, foresee=4, max_ep_len=16)


@pytest.mark.parametrize("conditioning", oppo.CONDITIONINGS)
def test_agent_steps_and_evaluates(conditioning):
    env = envs.make("point_mass", dim=2, horizon=12)
    cfg = oppo.Config(conditioning=conditioning, lr=1e-2, **TINY)
    agent = oppo.make(env, _tiny_data(), cfg, eval_episodes=2)
    state = jax.jit(agent.init)(jax.random.key(0))
    step = jax.jit(agent.step)
    new, metrics = step(state, jax.random.key(1))
    new, metrics = step(new, jax.random.key(2))
    assert int(new.step) == 2
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params["decoder"], state.params["decoder"])
    assert max(jax.tree.leaves(moved)) > 0
    if conditioning == "preference":
        assert 0.0 < float(metrics["labelled_frac"]) <= 1.0
        assert float(jnp.max(jnp.abs(new.params["z_star"] - state.params["z_star"]))) > 0
    else:
        assert new.params["z_star"] is None and new.params["encoder"] is None
    ev = jax.jit(agent.evaluate)(new, jax.random.key(3))
    assert np.isfinite(float(ev["eval/return"]))


def test_z_star_step_lowers_the_preference_loss():
    # update 2 alone: with the encoder detached, one AdamW step on z* reduces L_pref on its batch
    z_star, z_pos, z_neg, w = _random_pairs(n=8)
    num = jnp.sum(w)

    def loss(z):
        return oppo.preference_loss(z, z_pos, z_neg, w, num, margin=1.0)[0]

    g = jax.grad(loss)(z_star)
    assert float(loss(z_star - 0.05 * g)) < float(loss(z_star))


def test_bad_config_and_data_are_named(tmp_path):
    env = envs.make("point_mass", dim=2, horizon=12)
    with pytest.raises(ValueError, match="conditioning='reward'"):
        oppo.make(env, _tiny_data(), oppo.Config(conditioning="reward", **TINY))
    with pytest.raises(ValueError, match="context=20 exceeds the dataset's horizon 12"):
        oppo.make(env, _tiny_data(), oppo.Config(**{**TINY, "context": 20}))
    path = tmp_path / "d.npz"
    np.savez(path, obs=np.zeros((2, 5, 3)), actions=np.zeros((2, 5, 1)), rewards=np.zeros((2, 5)))
    with pytest.raises(ValueError, match="no array 'lengths'"):
        oppo.load_dataset(str(path))
    np.savez(path, obs=np.zeros((2, 4, 3)), actions=np.zeros((2, 5, 1)), rewards=np.zeros((2, 5)), lengths=np.ones(2))
    with pytest.raises(ValueError, match="disagree"):
        oppo.load_dataset(str(path))


# ------------------------------------------------------------------ the public config walker (item 4)


def test_set_field_is_public_and_walks_control_configs():
    cfg = control_config.validate(control_config.ControlConfig())
    out = config_lib.set_field(cfg, "algo.clip_eps", "0.3")
    assert out.algo.clip_eps == 0.3 and cfg.algo.clip_eps == 0.2
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'algo.clip'"):
        config_lib.set_field(cfg, "algo.clip", "0.3")
    assert control_config.apply_overrides(cfg, ["algo.lr=0.001", "iterations=7"]).iterations == 7


def test_control_config_no_longer_reaches_for_the_private_walker():
    source = pathlib.Path(control_config.__file__).read_text()
    assert "config_lib._set" not in source and "config_lib.set_field" in source


# ------------------------------------------------------------------ the machine record (item 3)

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile amx_bf16
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu
"""


def test_machine_record_parses_cpuinfo_and_has_the_fields():
    model, flags = _machine.cpu_model_and_flags(CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    assert {"avx2", "avx512f", "avx512_bf16", "amx_tile"} <= flags
    info = _machine.machine_info()
    for key in ("cpu_model", "isa", "amx", "cpu_count", "jax", "jaxlib", "backend", "device_kind"):
        assert key in info, key
    assert set(info["isa"]) == set(_machine.ISA_FLAGS) and info["jax"] == jax.__version__
    assert _machine.legacy_cpu(info)["model"] == info["cpu_model"]


def test_every_benchmark_script_records_the_machine():
    root = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    scripts = [p for p in root.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()]
    assert scripts
    missing = [p.name for p in scripts if "_machine" not in p.read_text() or "machine_info()" not in p.read_text()]
    assert not missing, f"benchmark scripts without the machine record: {missing}"
