"""Sequence log-probs and pair primitives (``jaxrl_llm.ops.sequence``): hand-computed cases,
row-order independence, partition additivity, masked entries inert, jit == eager."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.ops import sequence


def test_sequence_logprobs_and_log_ratio_hand_computed():
    lp = jnp.asarray([[-1.0, -2.0, 99.0], [-0.5, 99.0, 99.0]])
    ref = jnp.asarray([[-1.5, -1.0, -99.0], [-1.0, 7.0, 7.0]])
    mask = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(sequence.sequence_logprobs(lp, mask), [-3.0, -0.5])
    # (-1 + 1.5) + (-2 + 1) = -0.5 ; (-0.5 + 1) = 0.5
    np.testing.assert_allclose(sequence.sequence_log_ratio(lp, ref, mask), [-0.5, 0.5])
    g = jax.grad(lambda x: sequence.sequence_log_ratio(x, ref, mask).sum())(lp)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(mask))


def test_pair_margin_other_valid_any_row_order():
    # pairs: group 1 = rows 0, 2 (chosen row 2); group 0 = rows 1, 3 (chosen row 1)
    x = jnp.asarray([1.0, 2.0, 5.0, 3.0])
    g = jnp.asarray([1, 0, 1, 0])
    chosen = jnp.asarray([0.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(sequence.pair_margin(x, g, chosen), [4.0, -1.0, 4.0, -1.0])
    np.testing.assert_allclose(sequence.pair_other(x, g), [5.0, 3.0, 1.0, 2.0])
    mask = jnp.asarray([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(sequence.pair_valid(g, mask), [1.0, 1.0, 1.0, 1.0])
    mask = jnp.asarray([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(sequence.pair_valid(g, mask), [0.0, 0.0, 0.0, 0.0])


def test_pair_mean_is_mean_over_pairs_and_adds_over_parts():
    per_pair = jnp.asarray([2.0, 2.0, 4.0, 4.0, 9.0, 9.0])
    valid = jnp.asarray([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    # (2 + 4) pairs counted over num_pairs = 3 (6 rows): 2 * (2 + 4) / 6 = 2
    assert float(sequence.pair_mean(per_pair, valid, 6.0)) == pytest.approx(2.0)
    parts = sum(float(sequence.pair_mean(per_pair[i : i + 2], valid[i : i + 2], 6.0)) for i in (0, 2, 4))
    assert parts == pytest.approx(2.0)


def test_pair_advantages_give_the_pair_loss_gradient():
    """grad_s pair_mean(l(h(s))) == grad_s [-sum_b A_b s_b / num_seqs] with A from l'(h)."""
    rng = np.random.default_rng(0)
    s = jnp.asarray(rng.normal(size=6).astype(np.float32))
    g = jnp.asarray([0, 0, 1, 1, 2, 2])
    chosen = jnp.asarray([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    scale = jnp.asarray(rng.uniform(0.2, 1.0, size=6).astype(np.float32))
    valid = jnp.asarray([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    ell = lambda h: -jax.nn.log_sigmoid(0.3 * h)
    full = lambda s_: sequence.pair_mean(ell(sequence.pair_margin(s_ * scale, g, chosen)), valid, 6.0)
    h = sequence.pair_margin(s * scale, g, chosen)
    adv = sequence.pair_advantages(jax.vmap(jax.grad(ell))(h), chosen, scale, valid)
    reinforce = lambda s_: -jnp.sum(adv * s_) / 6.0
    np.testing.assert_allclose(jax.grad(full)(s), jax.grad(reinforce)(s), rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(adv)[4:] == 0)


def test_jit_equals_eager_and_example_pairs():
    p = sequence.example_pairs(jax.random.key(0), 8)
    assert p["group_size"] == 2
    np.testing.assert_array_equal(p["group_ids"], [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(np.asarray(p["chosen"]).reshape(4, 2).sum(1), 1.0)
    x = jnp.arange(8.0)
    f = lambda x: sequence.pair_margin(x, p["group_ids"], p["chosen"])
    np.testing.assert_allclose(jax.jit(f)(x), f(x))
    np.testing.assert_allclose(np.abs(np.asarray(f(x))), 1.0)
