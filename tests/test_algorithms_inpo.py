"""INPO: the spec's hand-computed loss, the mirror-descent fixed point on a discrete response set
with an intransitive preference (the loss's minimizer is the closed-form OMD update), the oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm.algorithms import inpo
from jaxrl_llm.judges import oracle
from jaxrl_llm.ops import sequence
from jaxrl_llm.types import Batch


def test_hand_computed_loss():
    # eta = 0.5, tau = 0.1: h = (-2 + 3) - 0.2 (0) - 0.8 (-2.2 + 2.8) = 0.52 ; (0.52 - 1)^2 = 0.2304
    cfg = inpo.Config(eta=0.5, beta=0.1)
    batch = Batch.from_mapping(
        {
            "old_logprobs": jnp.asarray([[-2.2], [-2.8]]),  # pi_t
            "ref_logprobs": jnp.asarray([[-2.5], [-2.5]]),
            "mask": jnp.ones((2, 1)),
            "advantages": jnp.zeros(2),
            "group_ids": jnp.asarray([0, 0], jnp.int32),
            "chosen": jnp.asarray([1.0, 0.0]),
            "num_tokens": jnp.float32(2.0),
            "num_seqs": jnp.float32(2.0),
        }
    )
    loss, m = inpo.loss(jnp.asarray([[-2.0], [-3.0]]), batch, cfg)
    assert float(loss) == pytest.approx(0.2304, rel=1e-5)
    # tau = 0 (INPO w/o KL) needs no reference: h = 1 - 0.6 = 0.4 ; (0.4 - 1)^2 = 0.36
    loss0, _ = inpo.loss(jnp.asarray([[-2.0], [-3.0]]), batch.without("ref_logprobs"), inpo.Config(eta=0.5, beta=0.0))
    assert float(loss0) == pytest.approx(0.36, rel=1e-5)


def test_minimizer_is_the_mirror_descent_update():
    """Discrete responses y in {0..5}, preference P = a rock-paper-scissors cycle plus weaker
    items. Minimizing the population INPO loss over (y, y') ~ pi_t x pi_t with labels from P gives
    pi_{t+1} ~ exp(P(y > pi_t)/eta) pi_ref^{tau/eta} pi_t^{1 - tau/eta} (paper Eq. 5, Prop. 6)."""
    n, eta, tau = 6, 0.5, 0.1
    Pm = np.full((n, n), 0.5)
    for a, b in [(0, 2), (2, 1), (1, 0)]:  # 0 beats 2, 2 beats 1, 1 beats 0: a cycle
        Pm[a, b], Pm[b, a] = 0.8, 0.2
    for w in range(3):
        for l in range(3, n):
            Pm[w, l], Pm[l, w] = 0.7, 0.3
    rng = np.random.default_rng(0)
    log_ref = np.log(rng.dirichlet(np.ones(n)))
    log_t = np.log(rng.dirichlet(np.ones(n)))
    pi_t = np.exp(log_t)
    yw, yl = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    yw, yl = yw.reshape(-1), yl.reshape(-1)
    weight = jnp.asarray((pi_t[yw] * pi_t[yl] * Pm[yw, yl]).astype(np.float32))  # P(sample, label y_w > y_l)
    rows = np.stack([yw, yl], 1).reshape(-1)  # pair p = rows 2p (y_w), 2p + 1 (y_l)
    g = jnp.repeat(jnp.arange(n * n, dtype=jnp.int32), 2)
    chosen = jnp.tile(jnp.asarray([1.0, 0.0]), n * n)
    x = {
        "mask": jnp.ones((2 * n * n, 1)),
        "old_logprobs": jnp.asarray(log_t[rows, None], jnp.float32),
        "ref_logprobs": jnp.asarray(log_ref[rows, None], jnp.float32),
    }
    cfg = inpo.Config(eta=eta, beta=tau)

    def population_loss(theta):
        logp = jax.nn.log_softmax(theta)[rows][:, None]
        h = inpo.margin(logp, x, g, chosen, cfg)[0::2]  # one value per pair
        return jnp.sum(weight * inpo.pair_loss(h, cfg))

    # h depends on theta only through differences theta_w - theta_l (the softmax normalizer
    # cancels): the loss is quadratic, so one Newton step (pseudo-inverse: theta + c is the same
    # policy) reaches its minimizer exactly.
    theta0 = jnp.zeros(n)
    hess = np.asarray(jax.hessian(population_loss)(theta0), np.float64)
    grad = np.asarray(jax.grad(population_loss)(theta0), np.float64)
    theta = theta0 - np.linalg.pinv(hess) @ grad
    p_win = Pm @ pi_t  # P(y > pi_t)
    omd = p_win / eta + (tau / eta) * log_ref + (1 - tau / eta) * log_t
    expected = np.exp(omd - omd.max())
    expected /= expected.sum()
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(theta)), expected, rtol=1e-3, atol=1e-6)


def test_cyclic_oracle_is_intransitive_and_consistent():
    o = oracle.CyclicOracle()
    a, b = ["rock", "paper", "scissors"], ["scissors", "rock", "paper"]
    np.testing.assert_allclose(o.prefer([None] * 3, a, b), [1.0, 1.0, 1.0])  # each beats the next: a cycle
    np.testing.assert_allclose(o.prefer([None] * 3, b, a), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(o.prefer([None], ["rock"], ["a rock"]), [0.5])
    with pytest.raises(ValueError, match="margin"):
        oracle.CyclicOracle(0.0)


def test_registration_and_pairing():
    algo = algorithms.get("inpo")
    assert algo.rollout == "pairs"
    p = algo.hooks["pairing"](inpo.Config(oracle="cyclic"))
    assert p.source == "policy" and isinstance(p.judge, oracle.CyclicOracle) and p.drop_ties
    assert algo.hooks["pairing"](inpo.Config()).judge is None
    assert sequence.example_pairs(jax.random.key(0), 4)["group_size"] == 2
