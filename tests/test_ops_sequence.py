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


def _pair_batch():
    # pair 0 = rows 0, 1 (row 1 chosen), pair 1 = rows 2, 3 (row 2 chosen); row 3 has 1 token
    lp = jnp.asarray([[-1.0, -2.0], [-0.5, -0.5], [-1.0, -1.0], [-3.0, 42.0]])
    ref = jnp.asarray([[-1.5, -1.5], [-1.0, -1.0], [-0.5, -0.5], [-2.0, 0.0]])
    mask = jnp.asarray([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    batch = {
        "old_logprobs": ref,
        "ref_logprobs": ref,
        "mask": mask,
        "advantages": jnp.zeros(4),
        "num_tokens": jnp.sum(mask),
        "num_seqs": jnp.float32(4),
        "group_ids": jnp.asarray([0, 0, 1, 1]),
        "chosen": jnp.asarray([0.0, 1.0, 1.0, 0.0]),
    }
    return lp, batch


def test_pair_objective_summed_and_length_normalized_by_hand():
    # log pi/pi_ref per row: 0.5 - 0.5 = 0, 1, -1, -1 (row 3: its masked 42 is inert).
    # summed margins: pair 0: 1 - 0 = 1; pair 1: -1 - (-1) = 0. Length-averaged: 1/2 - 0 = 0.5; -1/2 + 1 = 0.5.
    lp, batch = _pair_batch()
    cfg = type("Cfg", (), {"beta": 0.5})()
    square = lambda h, c: (h - 2.0) ** 2
    loss, m = sequence.pair_objective(lp, batch, square, cfg, "pairs_test")
    np.testing.assert_allclose(loss, ((1 - 2) ** 2 + (0 - 2) ** 2) / 2, rtol=1e-6)
    np.testing.assert_allclose(m["rewards/margin"], 0.5 * (1 + 0) / 2, rtol=1e-6)
    np.testing.assert_allclose(m["rewards/accuracy"], 0.5)
    assert m["loss"] == loss and m["loss/policy"] == loss
    loss, _ = sequence.pair_objective(lp, batch, square, cfg, "pairs_test", length_normalized=True)
    np.testing.assert_allclose(loss, ((0.5 - 2) ** 2 + (0.5 - 2) ** 2) / 2, rtol=1e-6)
    with pytest.raises(KeyError, match="pairs_test.*chosen"):
        sequence.pair_objective(lp, {k: v for k, v in batch.items() if k != "chosen"}, square, cfg, "pairs_test")


@pytest.mark.parametrize("length_normalized", [False, True])
def test_pair_implicit_advantages_are_the_pair_objective_gradient_at_pi_old(length_normalized):
    """At logprobs = old_logprobs the REINFORCE loss -sum_b A_b log pi(y_b) / num_seqs has the pair
    objective's gradient (the on-policy reduction the invariant suite checks for dpo / ipo)."""
    lp, batch = _pair_batch()
    batch = dict(batch, old_logprobs=lp)
    cfg = type("Cfg", (), {"beta": 0.3})()
    ell = lambda h, c: -jax.nn.log_sigmoid(c.beta * h)
    adv, metrics = sequence.pair_implicit_advantages(dict(batch, loss_mask=batch["mask"]), ell, cfg, length_normalized)
    assert set(metrics) == {"adv/mean", "adv/std", "adv/max", "adv/min"}
    obj = lambda x: sequence.pair_objective(x, batch, ell, cfg, "t", length_normalized)[0]
    reinforce = lambda x: -jnp.sum(adv * sequence.sequence_logprobs(x, batch["mask"])) / 4.0
    np.testing.assert_allclose(jax.grad(obj)(lp), jax.grad(reinforce)(lp), rtol=1e-5, atol=1e-7)
