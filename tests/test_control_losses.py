"""Hand-computed cases, GAE against a NumPy loop, jit == eager and partition invariance for the
losses of jaxrl_llm.control (PPO, on-policy MDPO, off-policy MDPO) and their distributions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.control import distributions as dist
from jaxrl_llm.control import gae as gae_lib
from jaxrl_llm.control import mdpo, mdpo_offpolicy, ppo


def test_mdpo_onpolicy_hand_case():
    # old N(0, 1), new N(0.1, 1), a = 0.5, A = 1, t_k = 0.5:
    # ratio = exp(0.045) = 1.046028, KL(new || old) = 0.005, J = 1.046028 - 0.005 / 0.5 = 1.036028
    a = jnp.array([[0.5]])
    mean, log_std = jnp.array([[0.1]]), jnp.zeros((1, 1))
    batch = {
        "old_logprobs": dist.gaussian_logprob(a, jnp.zeros((1, 1)), jnp.zeros((1, 1))),
        "old_mean": jnp.zeros((1, 1)),
        "old_log_std": jnp.zeros((1, 1)),
        "advantages": jnp.array([1.0]),
        "num_samples": jnp.float32(1),
    }
    logprobs = dist.gaussian_logprob(a, mean, log_std)
    loss, m = mdpo.policy_loss(logprobs, mean, log_std, batch, jnp.float32(0.5), mdpo.Config())
    assert m["kl"] == pytest.approx(0.005, abs=1e-7)
    assert m["surrogate"] == pytest.approx(math.exp(0.045), abs=1e-6)
    assert -loss == pytest.approx(1.036028, abs=1e-6)


def test_mdpo_step_size_anneals():
    k = jnp.arange(4)
    np.testing.assert_allclose(mdpo.step_size(k, 4), [1.0, 0.75, 0.5, 0.25])


def test_mdpo_offpolicy_policy_hand_case():
    # 1/t_k = 1, lambda = 0.2, log pi = -1.0, log pi_k = -1.2, Q1 = 2:  L = -1.0 + (0.2 - 1)(-1.2) - 2 = -2.04
    cfg = mdpo_offpolicy.Config(klconst=1.0, lam=0.2)
    zeros = jnp.zeros((1, 1))
    loss, _ = mdpo_offpolicy.policy_loss(
        jnp.array([-1.0]), jnp.array([-1.2]), jnp.array([2.0]), zeros, zeros, jnp.float32(1), cfg
    )
    assert loss == pytest.approx(-2.04, abs=1e-6)
    # the regularizer 1e-3 (mean(mu^2) + mean(log sigma^2)) over the action dims: mu = (1, 3) adds 1e-3 * 5
    loss_reg, _ = mdpo_offpolicy.policy_loss(
        jnp.array([-1.0]), jnp.array([-1.2]), jnp.array([2.0]), jnp.array([[1.0, 3.0]]), jnp.zeros((1, 2)), 1.0, cfg
    )
    assert loss_reg == pytest.approx(-2.04 + 0.005, abs=1e-6)


def test_mdpo_offpolicy_critic_hand_case():
    cfg = mdpo_offpolicy.Config(gamma=0.99, lam=0.2)
    # y = 0.5 + 0.99 * 2 = 2.48; L_Q = (1.48^2 + 0.48^2) / 2 = 1.2104; a terminal step drops the bootstrap
    lq, _ = mdpo_offpolicy.q_loss(
        jnp.array([1.0]), jnp.array([2.0]), jnp.array([0.5]), jnp.array([0.0]), jnp.array([2.0]), 1.0, cfg
    )
    assert lq == pytest.approx(1.2104, abs=1e-5)
    lq_term, _ = mdpo_offpolicy.q_loss(
        jnp.array([1.0]), jnp.array([2.0]), jnp.array([0.5]), jnp.array([1.0]), jnp.array([2.0]), 1.0, cfg
    )
    assert lq_term == pytest.approx(0.5 * 0.25 + 0.5 * 2.25, abs=1e-6)
    # v target = min(3, 2.5) - 0.2 * (-1) = 2.7; L_V = 1.7^2 / 2 = 1.445
    lv, _ = mdpo_offpolicy.v_loss(jnp.array([1.0]), jnp.array([3.0]), jnp.array([2.5]), jnp.array([-1.0]), 1.0, cfg)
    assert lv == pytest.approx(1.445, abs=1e-6)


def _ppo_batch():
    return {
        "old_logprobs": jnp.array([-0.5, -0.8]),
        "advantages": jnp.array([1.0, -2.0]),
        "returns": jnp.array([2.0, -1.0]),
        "old_values": jnp.array([0.5, 0.1]),
        "num_samples": jnp.float32(2),
    }


def test_ppo_hand_case():
    # ratios e^0.5 = 1.648721 (clipped to 1.2, A = 1) and e^-0.2 = 0.818731 (inside, A = -2):
    # L_clip = -(1.2 - 1.637462) / 2 = 0.218731; value: max(1, (0.7 - 2)^2 = 1.69) and max(1, 1): (1.69 + 1) / 4 = 0.6725
    cfg = ppo.Config(clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
    loss, m = ppo.loss(jnp.array([0.0, -1.0]), jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]), _ppo_batch(), cfg)
    assert m["loss/policy"] == pytest.approx(-(1.2 - 2 * math.exp(-0.2)) / 2, abs=1e-6)
    assert m["loss/value"] == pytest.approx(0.6725, abs=1e-6)
    assert m["clip_frac"] == pytest.approx(0.5)
    assert loss == pytest.approx(-(1.2 - 2 * math.exp(-0.2)) / 2 + 0.5 * 0.6725 - 0.01 * 1.5, abs=1e-6)


def test_gaussian_kl_and_tanh_logprob():
    kl = dist.gaussian_kl(jnp.array([1.0]), jnp.array([math.log(2.0)]), jnp.array([0.0]), jnp.array([0.0]))
    # log(1/2) + (4 + 1) / 2 - 1/2
    assert kl == pytest.approx(math.log(0.5) + 2.5 - 0.5, abs=1e-6)
    # the squashed density integrates to 1 over (-1, 1)
    a = jnp.linspace(-0.999999, 0.999999, 200001)[:, None]
    u = jnp.arctanh(a)
    dens = jnp.exp(dist.tanh_gaussian_logprob(u, jnp.full_like(u, 0.3), jnp.full_like(u, -0.5)))
    assert float(jnp.trapezoid(dens, a[:, 0])) == pytest.approx(1.0, abs=2e-3)
    # stable where tanh saturates
    assert jnp.isfinite(dist.tanh_log_det(jnp.array([[30.0, -30.0]])))


def _gae_numpy(r, v, nv, term, done, gamma, lam):
    t_len, n = r.shape
    adv = np.zeros_like(r)
    for i in range(n):
        nxt = 0.0
        for t in reversed(range(t_len)):
            delta = r[t, i] + gamma * (1 - term[t, i]) * nv[t, i] - v[t, i]
            nxt = delta + gamma * lam * (1 - done[t, i]) * nxt
            adv[t, i] = nxt
    return adv, adv + v


def test_gae_matches_numpy_loop():
    rng = np.random.default_rng(0)
    t_len, n = 9, 3
    r, v, nv = (rng.normal(size=(t_len, n)).astype(np.float32) for _ in range(3))
    done = rng.random((t_len, n)) < 0.3
    term = done & (rng.random((t_len, n)) < 0.5)  # some episodes end by truncation: they bootstrap
    adv, ret = gae_lib.gae(*map(jnp.asarray, (r, v, nv, term, done)), gamma=0.97, lam=0.9)
    ref_adv, ref_ret = _gae_numpy(r, v, nv, term.astype(np.float32), done.astype(np.float32), 0.97, 0.9)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)
    jitted = jax.jit(gae_lib.gae, static_argnames=("gamma", "lam"))(
        *map(jnp.asarray, (r, v, nv, term, done)), gamma=0.97, lam=0.9
    )
    np.testing.assert_allclose(jitted[0], adv, rtol=1e-6, atol=1e-6)


# --- jit == eager and partition invariance: each loss over a random batch of n = 8 rows ----------

N, A = 8, 2


def _random(key):
    ks = jax.random.split(key, 12)
    return {
        "logprobs": jax.random.normal(ks[0], (N,)) - 1.0,
        "old_logprobs": jax.random.normal(ks[1], (N,)) - 1.0,
        "entropy": jax.random.normal(ks[2], (N,)),
        "values": jax.random.normal(ks[3], (N,)),
        "old_values": jax.random.normal(ks[4], (N,)),
        "returns": jax.random.normal(ks[5], (N,)),
        "advantages": jax.random.normal(ks[6], (N,)),
        "mean": jax.random.normal(ks[7], (N, A)),
        "log_std": 0.3 * jax.random.normal(ks[8], (N, A)),
        "old_mean": jax.random.normal(ks[9], (N, A)),
        "old_log_std": 0.3 * jax.random.normal(ks[10], (N, A)),
        "q": jax.random.normal(ks[11], (N,)),
    }


# (name, differentiable inputs, loss over (inputs, rest, num_samples))
LOSSES = {
    "ppo": (
        ("logprobs", "entropy", "values"),
        lambda x, b, n: ppo.loss(
            x["logprobs"], x["entropy"], x["values"], {**b, "num_samples": n}, ppo.Config(ent_coef=0.01)
        ),
    ),
    "mdpo_policy": (
        ("logprobs", "mean", "log_std"),
        lambda x, b, n: mdpo.policy_loss(
            x["logprobs"], x["mean"], x["log_std"], {**b, "num_samples": n}, jnp.float32(0.3), mdpo.Config()
        ),
    ),
    "mdpo_value": (("values",), lambda x, b, n: mdpo.value_loss(x["values"], {**b, "num_samples": n}, mdpo.Config())),
    "mdpo_off_policy": (
        ("logprobs", "q", "mean", "log_std"),
        lambda x, b, n: mdpo_offpolicy.policy_loss(
            x["logprobs"], b["old_logprobs"], x["q"], x["mean"], x["log_std"], n, mdpo_offpolicy.Config()
        ),
    ),
    "mdpo_off_q": (
        ("values", "q"),
        lambda x, b, n: mdpo_offpolicy.q_loss(
            x["values"],
            x["q"],
            b["returns"],
            (b["advantages"] > 0.5).astype(jnp.float32),
            b["old_values"],
            n,
            mdpo_offpolicy.Config(),
        ),
    ),
    "mdpo_off_v": (
        ("values",),
        lambda x, b, n: mdpo_offpolicy.v_loss(
            x["values"], b["q"], b["returns"], b["logprobs"], n, mdpo_offpolicy.Config()
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_jit_equals_eager(name):
    keys, fn = LOSSES[name]
    data = _random(jax.random.key(1))
    x = {k: data[k] for k in keys}
    eager = fn(x, data, jnp.float32(N))
    jitted = jax.jit(fn)(x, data, jnp.float32(N))
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-6, atol=1e-6)
    for k in eager[1]:
        np.testing.assert_allclose(jitted[1][k], eager[1][k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_partition_invariance(name):
    """Split into parts of 3, 1, 4 rows with the GLOBAL n: the part losses and gradients sum to the whole's."""
    keys, fn = LOSSES[name]
    data = _random(jax.random.key(2))
    n = jnp.float32(N)

    def value_and_grad(rows):
        part = {k: v[rows] for k, v in data.items()}
        x = {k: part[k] for k in keys}
        return jax.value_and_grad(lambda x: fn(x, part, n)[0])(x)

    full_loss, full_grad = value_and_grad(np.arange(N))
    total, grads = 0.0, []
    for rows in (np.arange(0, 3), np.arange(3, 4), np.arange(4, N)):
        loss, grad = value_and_grad(rows)
        total += loss
        grads.append(grad)
    np.testing.assert_allclose(total, full_loss, rtol=1e-5, atol=1e-6)
    for k in keys:
        np.testing.assert_allclose(np.concatenate([g[k] for g in grads]), full_grad[k], rtol=1e-5, atol=1e-7)
