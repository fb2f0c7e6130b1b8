"""MDPO (on- and off-policy) and SAC with a categorical policy (discrete actions, gymnax CartPole-v1):
the closed-form categorical KL, the on-policy MDPO loss, the discrete soft value and policy loss
(Christodoulou, arXiv 1910.07207) against hand/NumPy references, jit == eager, partition invariance,
and short training runs (with evaluation) on CartPole."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.control import config as control_config
from jaxrl_llm.control import distributions as dist
from jaxrl_llm.control import envs, evaluate, mdpo, mdpo_offpolicy, ppo
from jaxrl_llm.control import train as control_train

LOG3 = math.log(3.0)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- closed-form categorical KL ------------------------------------------------------------------


def test_categorical_kl_hand_case():
    # p = softmax(0, log 3) = (1/4, 3/4), q = (1/2, 1/2): KL = 1/4 log(1/2) + 3/4 log(3/2) = 0.1308120
    kl = dist.categorical_kl(jnp.array([0.0, LOG3]), jnp.array([0.0, 0.0]))
    assert float(kl) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-7)
    assert float(kl) == pytest.approx(0.1308120, abs=1e-6)
    # the reverse direction differs: KL(q || p) = 1/2 log 2 + 1/2 log(2/3) = 0.1438410
    assert float(dist.categorical_kl(jnp.zeros(2), jnp.array([0.0, LOG3]))) == pytest.approx(0.1438410, abs=1e-6)
    # zero at p = q, invariant to a shift of either logit vector, batched over leading axes
    logits = jax.random.normal(jax.random.key(0), (4, 5, 3))
    np.testing.assert_allclose(dist.categorical_kl(logits, logits + 2.0), 0.0, atol=1e-6)
    other = jax.random.normal(jax.random.key(1), (4, 5, 3))
    p, q = _softmax(np.asarray(logits)), _softmax(np.asarray(other))
    np.testing.assert_allclose(dist.categorical_kl(logits, other), (p * np.log(p / q)).sum(-1), rtol=1e-5, atol=1e-6)


def test_categorical_family_matches_the_helpers_and_ppo_policy_fns():
    fam = dist.family(2)
    assert fam is dist.CATEGORICAL and dist.family(0) is dist.GAUSSIAN
    logits = jnp.array([[0.0, LOG3], [1.0, -1.0]])
    action = fam.sample(jax.random.key(0), logits)
    assert action.shape == (2, 1) and action.dtype == jnp.int32
    np.testing.assert_allclose(
        fam.logprob(logits, jnp.array([[1], [0]])), [math.log(0.75), -math.log1p(math.exp(-2))], rtol=1e-6
    )
    np.testing.assert_array_equal(fam.mode(logits)[:, 0], [1, 0])
    np.testing.assert_allclose(fam.entropy(logits), dist.categorical_entropy(logits))
    # the Gaussian family is the Gaussian helpers on (mean, log_std)
    m, s = jnp.array([[0.1, -0.2]]), jnp.array([[0.0, 0.3]])
    m2, s2 = jnp.array([[0.0, 0.2]]), jnp.array([[0.1, -0.1]])
    np.testing.assert_allclose(dist.GAUSSIAN.kl((m, s), (m2, s2)), dist.gaussian_kl(m, s, m2, s2))
    # PPO's policy functions in a discrete env are this family on the categorical head's logits
    pytest.importorskip("gymnax")
    env = envs.make("gymnax:CartPole-v1", discrete_actions=True)
    cfg = mdpo.Config(hidden=(8,))  # MDPO's Config: no ``sde`` field, PPO's switch still applies
    pi = ppo.policy_fns(env, cfg)
    assert pi.family is dist.CATEGORICAL
    params = mdpo.make(env, cfg, 3).init(jax.random.key(0)).params["policy"]
    obs = jax.random.normal(jax.random.key(1), (6, 4))
    a, lp = pi.sample(params, jax.random.key(2), obs)
    np.testing.assert_allclose(lp, dist.categorical_logprob(a[:, 0], pi.dist(params, obs)), rtol=1e-6)


# --- on-policy MDPO loss -------------------------------------------------------------------------


def test_mdpo_categorical_loss_hand_case():
    # new p = (1/4, 3/4), old q = (1/2, 1/2), action 1, A = 1, t_k = 0.5:
    # ratio = 0.75 / 0.5 = 1.5, KL(p || q) = 0.1308120, J = 1.5 - 0.1308120 / 0.5 = 1.2383760
    logits = jnp.array([[0.0, LOG3]])
    batch = {
        "old_logprobs": jnp.array([math.log(0.5)]),
        "old_logits": jnp.zeros((1, 2)),
        "advantages": jnp.array([1.0]),
        "num_samples": jnp.float32(1),
    }
    logprobs = dist.categorical_logprob(jnp.array([1]), logits)
    loss, m = mdpo.categorical_policy_loss(logprobs, logits, batch, jnp.float32(0.5), mdpo.Config())
    assert float(m["surrogate"]) == pytest.approx(1.5, abs=1e-6)
    assert float(m["kl"]) == pytest.approx(0.1308120, abs=1e-6)
    assert float(m["entropy"]) == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)
    assert -float(loss) == pytest.approx(1.5 - 0.1308120 / 0.5, abs=1e-6)


def _onpolicy_numpy(logits, old_logits, actions, adv, t_k, ent_coef):
    p, q = _softmax(logits), _softmax(old_logits)
    rows = np.arange(len(actions))
    ratio = p[rows, actions] / q[rows, actions]
    kl = (p * (np.log(p) - np.log(q))).sum(-1)
    ent = -(p * np.log(p)).sum(-1)
    return -(np.mean(ratio * adv) - np.mean(kl) / t_k) - ent_coef * np.mean(ent)


def _onpolicy_batch(key, n=6, k=3):
    ks = jax.random.split(key, 4)
    old_logits = jax.random.normal(ks[0], (n, k))
    actions = jax.random.randint(ks[1], (n,), 0, k)
    return {
        "logits": old_logits + 0.3 * jax.random.normal(ks[2], (n, k)),
        "old_logits": old_logits,
        "action": actions,
        "old_logprobs": dist.categorical_logprob(actions, old_logits),
        "advantages": jax.random.normal(ks[3], (n,)),
    }


def _onpolicy_loss(logits, b, n, cfg, t_k=0.4):
    logprobs = dist.categorical_logprob(b["action"], logits)
    return mdpo.categorical_policy_loss(logprobs, logits, {**b, "num_samples": n}, jnp.float32(t_k), cfg)


def test_mdpo_categorical_loss_matches_numpy_jit_and_partitions():
    cfg = mdpo.Config(ent_coef=0.01)
    b = _onpolicy_batch(jax.random.key(3))
    ref = _onpolicy_numpy(
        *(np.asarray(b[k], np.float64) for k in ("logits", "old_logits")),
        np.asarray(b["action"]),
        np.asarray(b["advantages"], np.float64),
        0.4,
        0.01,
    )
    n = jnp.float32(6)
    eager, m_eager = _onpolicy_loss(b["logits"], b, n, cfg)
    jitted, m_jit = jax.jit(lambda x: _onpolicy_loss(x, b, n, cfg))(b["logits"])
    assert float(eager) == pytest.approx(ref, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    for key in m_eager:
        np.testing.assert_allclose(m_jit[key], m_eager[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # parts of 2 and 4 rows with the global n: losses and gradients add up to the whole's
    full, g_full = jax.value_and_grad(lambda x: _onpolicy_loss(x, b, n, cfg)[0])(b["logits"])
    total, grads = 0.0, []
    for rows in (np.arange(0, 2), np.arange(2, 6)):
        part = {k: v[rows] for k, v in b.items()}
        loss, g = jax.value_and_grad(lambda x: _onpolicy_loss(x, part, n, cfg)[0])(part["logits"])
        total, grads = total + loss, [*grads, g]
    np.testing.assert_allclose(total, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(grads), g_full, rtol=1e-5, atol=1e-7)


def test_mdpo_categorical_kl_gradient_vanishes_at_the_old_policy():
    # at theta = theta_k the KL term is at its minimum: the gradient is the surrogate's alone
    b = _onpolicy_batch(jax.random.key(4))
    b = {**b, "logits": b["old_logits"]}
    g_kl = jax.grad(lambda x: jnp.sum(dist.categorical_kl(x, b["old_logits"])))(b["logits"])
    np.testing.assert_allclose(g_kl, 0.0, atol=1e-6)
    n = jnp.float32(6)
    g_small = jax.grad(lambda x: _onpolicy_loss(x, b, n, mdpo.Config(), t_k=1.0)[0])(b["logits"])
    g_big = jax.grad(lambda x: _onpolicy_loss(x, b, n, mdpo.Config(), t_k=0.1)[0])(b["logits"])
    np.testing.assert_allclose(g_small, g_big, atol=2e-6)


# --- off-policy MDPO / SAC, discrete ---------------------------------------------------------------


def _offpolicy_numpy(logits, old_logits, q1, q2, klconst, lam):
    p, pk = _softmax(logits), _softmax(old_logits)
    logp, logpk = np.log(p), np.log(pk)
    loss = np.mean((p * (klconst * logp + (lam - klconst) * logpk - q1)).sum(-1))
    soft_v = (p * (np.minimum(q1, q2) - lam * logp)).sum(-1)
    return loss, soft_v


def test_discrete_policy_loss_and_soft_value_hand_case():
    # p = (1/4, 3/4), p_k = (1/2, 1/2), Q1 = (1, 2), Q2 = (1.5, 1), 1/t_k = 1, lambda = 0.2:
    # L = sum_a p (log p - 0.8 log p_k - Q1) = 1/4 (log 1/4 + 0.8 log 2 - 1) + 3/4 (log 3/4 + 0.8 log 2 - 2)
    cfg = mdpo_offpolicy.Config(klconst=1.0, lam=0.2)
    logits, old = jnp.array([[0.0, LOG3]]), jnp.zeros((1, 2))
    q1, q2 = jnp.array([[1.0, 2.0]]), jnp.array([[1.5, 1.0]])
    expected = 0.25 * (math.log(0.25) + 0.8 * math.log(2) - 1) + 0.75 * (math.log(0.75) + 0.8 * math.log(2) - 2)
    loss, m = mdpo_offpolicy.discrete_policy_loss(logits, old, q1, jnp.float32(1), cfg)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # = (1/t_k) KL(p || p_k) + sum_a p (lambda log p_k - Q1)
    assert float(loss) == pytest.approx(0.1308120 + 0.2 * math.log(0.5) - (0.25 + 1.5), abs=1e-6)
    assert float(m["kl"]) == pytest.approx(0.1308120, abs=1e-6)
    assert float(m["q/policy"]) == pytest.approx(1.75, abs=1e-6)
    # soft value: sum_a p (min(Q1, Q2) - 0.2 log p) = 1/4 (1 - 0.2 log 1/4) + 3/4 (1 - 0.2 log 3/4)
    v = mdpo_offpolicy.discrete_soft_value(logits, q1, q2, 0.2)
    assert float(v[0]) == pytest.approx(1.0 + 0.2 * (-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))), abs=1e-6)
    lv, _ = mdpo_offpolicy.discrete_v_loss(jnp.array([0.5]), logits, q1, q2, jnp.float32(1), cfg)
    assert float(lv) == pytest.approx(0.5 * (float(v[0]) - 0.5) ** 2, abs=1e-6)


@pytest.mark.parametrize("klconst", [1.0, 0.2])  # MDPO-off, and SAC (klconst = lambda)
def test_discrete_losses_match_numpy_jit_and_partitions(klconst):
    cfg = mdpo_offpolicy.Config(klconst=klconst, lam=0.2)
    ks = jax.random.split(jax.random.key(5), 5)
    n_rows, k = 7, 3
    data = {
        "logits": jax.random.normal(ks[0], (n_rows, k)),
        "old_logits": jax.random.normal(ks[1], (n_rows, k)),
        "q1": 3.0 * jax.random.normal(ks[2], (n_rows, k)),
        "q2": 3.0 * jax.random.normal(ks[3], (n_rows, k)),
        "v": jax.random.normal(ks[4], (n_rows,)),
    }
    ref_loss, ref_v = _offpolicy_numpy(
        *(np.asarray(data[x], np.float64) for x in ("logits", "old_logits", "q1", "q2")), klconst, 0.2
    )
    n = jnp.float32(n_rows)

    def pi_loss(x, d):
        return mdpo_offpolicy.discrete_policy_loss(x, d["old_logits"], d["q1"], n, cfg)

    def v_loss(x, d):
        return mdpo_offpolicy.discrete_v_loss(x, d["logits"], d["q1"], d["q2"], n, cfg)

    loss, _ = pi_loss(data["logits"], data)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(
        mdpo_offpolicy.discrete_soft_value(data["logits"], data["q1"], data["q2"], 0.2), ref_v, rtol=1e-5, atol=1e-5
    )
    lv, _ = v_loss(data["v"], data)
    assert float(lv) == pytest.approx(np.mean(0.5 * (np.asarray(data["v"]) - ref_v) ** 2), rel=1e-5)
    for fn, x in ((pi_loss, "logits"), (v_loss, "v")):
        eager = fn(data[x], data)
        jitted = jax.jit(fn)(data[x], data)
        np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-6, atol=1e-6)
        for key in eager[1]:
            np.testing.assert_allclose(jitted[1][key], eager[1][key], rtol=1e-5, atol=1e-6, err_msg=key)
        full, g_full = jax.value_and_grad(lambda y: fn(y, data)[0])(data[x])
        total, grads = 0.0, []
        for rows in (np.arange(0, 3), np.arange(3, n_rows)):
            part = {kk: vv[rows] for kk, vv in data.items()}
            part_loss, g = jax.value_and_grad(lambda y: fn(y, part)[0])(part[x])
            total, grads = total + part_loss, [*grads, g]
        np.testing.assert_allclose(total, full, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.concatenate(grads), g_full, rtol=1e-5, atol=1e-6)
    # the soft value's target does not back-propagate into the policy or the Q nets
    g = jax.grad(lambda lg: v_loss(data["v"], {**data, "logits": lg})[0])(data["logits"])
    np.testing.assert_array_equal(g, 0.0)


def test_sac_policy_loss_ignores_the_old_policy():
    # klconst = lambda: sum_a p (lambda log p - Q1), whatever pi_k is
    cfg = mdpo_offpolicy.Config(klconst=0.2, lam=0.2)
    logits, q1 = jnp.array([[0.3, -0.2, 1.0]]), jnp.array([[1.0, 0.0, 2.0]])
    a, _ = mdpo_offpolicy.discrete_policy_loss(logits, jnp.zeros((1, 3)), q1, jnp.float32(1), cfg)
    b, _ = mdpo_offpolicy.discrete_policy_loss(logits, jnp.array([[5.0, -3.0, 0.0]]), q1, jnp.float32(1), cfg)
    p = _softmax(np.asarray(logits, np.float64))
    assert float(a) == pytest.approx(float(b), abs=1e-6)
    assert float(a) == pytest.approx(float((p * (0.2 * np.log(p) - np.asarray(q1))).sum()), abs=1e-6)


# --- short runs on CartPole ----------------------------------------------------------------------

ONPOLICY = mdpo.Config(num_envs=4, num_steps=16, sgd_steps=3, value_steps=2, hidden=(16,))
OFFPOLICY = mdpo_offpolicy.Config(
    num_envs=2,
    num_steps=16,
    updates_per_iter=8,
    batch_size=16,
    buffer_size=64,
    learning_starts=32,
    old_policy_every=4,
    hidden=(16,),
)


def _cartpole():
    pytest.importorskip("gymnax")
    return envs.make("gymnax:CartPole-v1", discrete_actions=True)


def test_mdpo_categorical_train_steps_and_jit_equals_eager():
    env = _cartpole()
    agent = mdpo.make(env, ONPOLICY, 4)
    state = agent.init(jax.random.key(0))
    assert state.params["policy"]["logits"]["kernel"].shape == (16, 2)
    step = jax.jit(agent.step)
    kls, t_ks = [], []
    for k in range(4):
        state, m = step(state, jax.random.key(k))
        assert all(np.isfinite(float(v)) for name, v in m.items() if not name.startswith("episode/"))
        assert 0.0 <= float(m["entropy"]) <= math.log(2.0) + 1e-6
        kls.append(float(m["kl/final"]))
        t_ks.append(float(m["t_k"]))
    np.testing.assert_allclose(t_ks, [1.0, 0.75, 0.5, 0.25])
    assert min(kls) >= 0.0 and max(kls) > 0.0
    s0 = agent.init(jax.random.key(1))
    eager_state, eager_m = agent.step(s0, jax.random.key(2))
    jit_state, jit_m = jax.jit(agent.step)(s0, jax.random.key(2))
    for a, b in zip(jax.tree.leaves(jit_state.params), jax.tree.leaves(eager_state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jit_m["loss"], eager_m["loss"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("klconst", [1.0, 0.2])
def test_mdpo_offpolicy_discrete_train_steps(klconst):
    env = _cartpole()
    cfg = mdpo_offpolicy.Config(**{**OFFPOLICY.__dict__, "klconst": klconst})
    agent = mdpo_offpolicy.make(env, cfg, 3)
    state = agent.init(jax.random.key(0))
    assert state.params["q"]["q1"]["out"]["kernel"].shape == (16, 2)  # one Q value per action
    assert state.buffer.data["action"].dtype == jnp.int32
    step = jax.jit(agent.step)
    before = state.params["policy"]
    for k in range(3):  # 32 env steps an iteration; updates (8 a time) once 32 are stored: from the first on
        state, m = step(state, jax.random.key(k))
    assert int(state.grad_steps) == 24 and int(state.env_steps) == 96
    acts = np.asarray(state.buffer.data["action"][: int(state.buffer.size)])
    assert set(np.unique(acts)) <= {0, 1}
    for name in ("loss/q", "loss/value", "loss/policy", "kl", "entropy"):
        assert np.isfinite(float(m[name])), name
    assert 0.0 <= float(m["entropy"]) <= math.log(2.0) + 1e-6 and float(m["kl"]) >= 0.0
    moved = sum(
        float(jnp.sum(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(state.params["policy"]), jax.tree.leaves(before))
    )
    assert moved > 0.0


@pytest.mark.parametrize("method", ["mdpo", "mdpo_offpolicy"])
def test_evaluate_runs_of_the_discrete_mdpo_methods(method, tmp_path):
    _cartpole()
    algo = ONPOLICY if method == "mdpo" else OFFPOLICY
    cfg = control_config.ControlConfig(
        env="gymnax:CartPole-v1",
        env_kwargs={"discrete_actions": True},
        method=method,
        algo=algo,
        iterations=3,
        checkpoint_every=3,
        async_save=False,
        run_dir=str(tmp_path / "run"),
    )
    control_train.train(cfg)
    out = evaluate.evaluate_run(cfg, episodes=4)
    assert out["checkpoint_step"] == 3 and out["policy"] == "deterministic"
    assert 1.0 <= out["return_min"] <= out["return_mean"] <= out["return_max"] <= 500.0
    assert out["length_mean"] == out["return_mean"]


def test_evaluate_refuses_a_continuous_offpolicy_run():
    cfg = control_config.ControlConfig(env="point_mass", method="mdpo_offpolicy", run_dir="unused")
    with pytest.raises(Exception, match="discrete-action env"):
        evaluate.evaluate_run(cfg)
