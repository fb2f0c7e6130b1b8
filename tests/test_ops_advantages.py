"""ops.masked and ops.advantages against plain NumPy formulas and the spec's hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.ops import advantages, masked

RNG = np.random.default_rng(0)


def _ragged_mask(b, t, rng=RNG):
    lengths = rng.integers(1, t + 1, size=b)
    return (np.arange(t)[None] < lengths[:, None]).astype(np.float32)


def test_masked_reductions_match_numpy():
    x = RNG.normal(size=(5, 7)).astype(np.float32)
    m = _ragged_mask(5, 7)
    sel = x[m > 0]
    np.testing.assert_allclose(masked.masked_sum(x, m), sel.sum(), rtol=1e-5)
    np.testing.assert_allclose(masked.masked_mean(x, m), sel.mean(), rtol=1e-5)
    for ddof in (0, 1):
        np.testing.assert_allclose(masked.masked_var(x, m, ddof=ddof), sel.var(ddof=ddof), rtol=1e-5)
        np.testing.assert_allclose(masked.masked_std(x, m, ddof=ddof), sel.std(ddof=ddof), rtol=1e-5)
    row_means = [x[i][m[i] > 0].mean() for i in range(5)]
    np.testing.assert_allclose(masked.masked_mean(x, m, axis=1), row_means, rtol=1e-5)
    row_std = [x[i][m[i] > 0].std(ddof=1) if m[i].sum() > 1 else 0.0 for i in range(5)]
    np.testing.assert_allclose(masked.masked_std(x, m, axis=1, ddof=1), row_std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(masked.masked_max(x, m), sel.max())
    np.testing.assert_allclose(masked.masked_min(x, m), sel.min())
    w = masked.whiten(x, m, eps=1e-8)
    np.testing.assert_allclose(
        np.asarray(w)[m > 0], (sel - sel.mean()) / np.sqrt(sel.var() + 1e-8), rtol=1e-4, atol=1e-5
    )
    assert np.all(np.asarray(w)[m == 0] == 0)


def test_masked_values_are_selected_away_not_multiplied():
    x = jnp.array([[1.0, jnp.nan, jnp.inf]])
    m = jnp.array([[1.0, 0.0, 0.0]])
    assert masked.masked_mean(x, m) == 1.0
    g = jax.grad(lambda v: masked.masked_sum(v, m))(x)
    np.testing.assert_array_equal(g, [[1.0, 0.0, 0.0]])
    assert masked.masked_mean(x, jnp.zeros_like(m)) == 0.0


def test_group_normalized_spec_case():
    r = jnp.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(
        advantages.group_normalized(r, 4, ddof=1, eps=0.0), [0.8660254, -0.8660254, -0.8660254, 0.8660254], rtol=1e-6
    )
    np.testing.assert_allclose(advantages.group_normalized(r, 4, ddof=0, eps=0.0), [1, -1, -1, 1], rtol=1e-6)
    np.testing.assert_array_equal(advantages.group_normalized(jnp.full(4, 0.7), 4), np.zeros(4))


def test_group_estimators_match_numpy():
    g = 5
    r = RNG.normal(size=4 * g).astype(np.float32)
    r[5:10] = 0.3  # one zero-std group
    rg = r.reshape(4, g)
    for ddof, eps in ((0, 1e-6), (1, 1e-4)):
        ref = (rg - rg.mean(1, keepdims=True)) / (rg.std(1, ddof=ddof, keepdims=True) + eps)
        ref[1] = 0.0
        np.testing.assert_allclose(
            advantages.group_normalized(jnp.asarray(r), g, ddof, eps), ref.reshape(-1), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(
        advantages.group_centered(jnp.asarray(r), g), (rg - rg.mean(1, keepdims=True)).reshape(-1), atol=1e-6
    )
    loo = np.array([[rg[p, i] - np.delete(rg[p], i).mean() for i in range(g)] for p in range(4)])
    np.testing.assert_allclose(advantages.leave_one_out(jnp.asarray(r), g), loo.reshape(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(advantages.zero_std_groups(jnp.asarray(r), g), [False, True, False, False])


def test_dr_grpo_spec_case():
    np.testing.assert_allclose(advantages.group_centered(jnp.array([1.0, 0, 0, 1]), 4), [0.5, -0.5, -0.5, 0.5])


def test_batch_normalized_matches_numpy():
    x = RNG.normal(size=(6, 5)).astype(np.float32) * 3 + 1
    m = _ragged_mask(6, 5)
    sel = x[m > 0]
    out = np.asarray(advantages.batch_normalized(jnp.asarray(x), jnp.asarray(m), ddof=1, eps=1e-8))
    np.testing.assert_allclose(out[m > 0], (sel - sel.mean()) / (sel.std(ddof=1) + 1e-8), rtol=1e-4, atol=1e-5)
    assert np.all(out[m == 0] == 0)


def _np_gae(r, v, m, gamma, lam):
    b, t = r.shape
    adv = np.zeros_like(r)
    for i in range(b):
        idx = [k for k in range(t) if m[i, k] > 0]
        nv, na = 0.0, 0.0
        for k in reversed(idx):
            delta = r[i, k] + gamma * nv - v[i, k]
            na = delta + gamma * lam * na
            nv = v[i, k]
            adv[i, k] = na
    return adv, np.where(m > 0, adv + v, 0.0)


def test_gae_spec_case():
    adv, ret = advantages.gae(jnp.array([[0.0, 0, 1]]), jnp.array([[0.5, 0.5, 0.5]]), jnp.ones((1, 3)), 1.0, 0.95)
    np.testing.assert_allclose(adv, [[0.45125, 0.475, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(ret, [[0.95125, 0.975, 1.0]], rtol=1e-6)


def test_gae_matches_numpy_with_padding_and_holes():
    r = RNG.normal(size=(4, 9)).astype(np.float32)
    v = RNG.normal(size=(4, 9)).astype(np.float32)
    m = _ragged_mask(4, 9)
    m[0, 2] = 0.0  # an interior masked token (e.g. tool output) is skipped, not a terminal
    for gamma, lam in ((1.0, 0.95), (0.9, 0.5)):
        adv, ret = advantages.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(m), gamma, lam)
        ref_adv, ref_ret = _np_gae(r, v, m, gamma, lam)
        np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


def test_reverse_discounted_sum_and_last_token():
    m = _ragged_mask(3, 6)
    r = RNG.normal(size=(3, 6)).astype(np.float32)
    out = np.asarray(advantages.reverse_discounted_sum(jnp.asarray(r), jnp.asarray(m), 0.9))
    ref, _ = _np_gae(r, np.zeros_like(r), m, 0.9, 1.0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    scores = jnp.array([1.0, 2.0, 3.0])
    placed = np.asarray(advantages.last_token_rewards(scores, jnp.asarray(m)))
    lengths = m.sum(1).astype(int)
    for i in range(3):
        assert placed[i].sum() == scores[i] and placed[i, lengths[i] - 1] == scores[i]


def test_group_size_inference_and_errors():
    assert advantages.group_size_of({"group_ids": np.repeat(np.arange(3), 4)}) == 4
    assert advantages.group_size_of({"group_size": 2}) == 2
    with pytest.raises(ValueError, match="group-major"):
        advantages.group_size_of({"group_ids": np.array([0, 1, 0, 1])})
    with pytest.raises(ValueError, match="unequal"):
        advantages.group_size_of({"group_ids": np.array([0, 0, 1])})
    with pytest.raises(KeyError, match="group_size"):
        advantages.group_size_of({})
    with pytest.raises(ValueError, match="whole number of groups"):
        advantages.group_normalized(jnp.zeros(6), 4)
    with pytest.raises(ValueError, match="group_size >= 2"):
        advantages.leave_one_out(jnp.zeros(3), 1)


def test_advantage_ops_jit():
    r = jnp.asarray(RNG.normal(size=8).astype(np.float32))
    np.testing.assert_allclose(
        jax.jit(advantages.group_normalized, static_argnums=(1,))(r, 4), advantages.group_normalized(r, 4), rtol=1e-6
    )
    rr = jnp.asarray(RNG.normal(size=(2, 5)).astype(np.float32))
    m = jnp.ones((2, 5))
    np.testing.assert_allclose(jax.jit(advantages.gae)(rr, rr, m)[0], advantages.gae(rr, rr, m)[0], rtol=1e-6)
