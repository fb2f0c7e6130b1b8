"""ops.ratios / clipping / kl / entropy / aggregation / rollout_correction / diagnostics vs NumPy and the spec."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.ops import aggregation, clipping, diagnostics, entropy, kl, ratios, rollout_correction

RNG = np.random.default_rng(1)


def _ragged_mask(b, t):
    lengths = RNG.integers(1, t + 1, size=b)
    return (np.arange(t)[None] < lengths[:, None]).astype(np.float32)


def _lp(*shape):
    return (-np.abs(RNG.normal(size=shape)) - 0.1).astype(np.float32)


# ---------- KL ----------


def test_kl_spec_case():
    lp, ref = jnp.array(0.0), jnp.array(0.1)  # d = ref - lp = 0.1
    np.testing.assert_allclose(kl.k1(lp, ref), -0.1, rtol=1e-6)
    np.testing.assert_allclose(kl.k2(lp, ref), 0.005, rtol=1e-6)
    np.testing.assert_allclose(kl.k3(lp, ref), 0.0051709, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(kl.ESTIMATORS))
def test_kl_values_and_gradients_match_formulas(name):
    lp, ref = _lp(50), _lp(50)
    d = ref - lp
    value = {
        "k1": -d,
        "k2": 0.5 * d**2,
        "k3": np.exp(d) - 1 - d,
        "abs": np.abs(d),
        "k1+": -d,
        "k3+": np.exp(d) - 1 - d,
    }[name]
    grad = {"k1": np.ones_like(d), "k2": -d, "k3": 1 - np.exp(d), "abs": -np.sign(d), "k1+": -d, "k3+": -d}[name]
    np.testing.assert_allclose(kl.estimate(jnp.asarray(lp), jnp.asarray(ref), name), value, rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda x: jnp.sum(kl.estimate(x, jnp.asarray(ref), name)))(jnp.asarray(lp))
    np.testing.assert_allclose(g, grad, rtol=1e-5, atol=1e-6)


def test_k2_gradient_is_unbiased_kl_gradient():
    # Exact check on a categorical: E_{y~pi}[grad k2-estimator] == grad KL(pi || pi_ref) w.r.t. logits.
    logits = jnp.asarray(RNG.normal(size=6).astype(np.float32))
    ref = jax.nn.log_softmax(jnp.asarray(RNG.normal(size=6).astype(np.float32)))

    def true_kl(z):
        lp = jax.nn.log_softmax(z)
        return jnp.sum(jnp.exp(lp) * (lp - ref))

    def expected_surrogate(z, name):
        lp = jax.nn.log_softmax(z)
        p = jax.lax.stop_gradient(jnp.exp(lp))  # sampling distribution is not differentiated
        return jnp.sum(p * kl.estimate(lp, ref, name))

    target = jax.grad(true_kl)(logits)
    for name in ("k2", "k1+", "k3+"):
        np.testing.assert_allclose(jax.grad(expected_surrogate)(logits, name), target, rtol=1e-4, atol=1e-6)
    assert not np.allclose(jax.grad(expected_surrogate)(logits, "k3"), target, atol=1e-4)
    np.testing.assert_allclose(jax.grad(expected_surrogate)(logits, "k1"), np.zeros(6), atol=1e-6)


def test_kl_unknown_estimator():
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl.estimate(jnp.zeros(2), jnp.zeros(2), "k4")


# ---------- ratios and clipping ----------


def test_token_ratio_matches_numpy_and_masks():
    lp, old, m = _lp(4, 6), _lp(4, 6), _ragged_mask(4, 6)
    r = np.asarray(ratios.token_ratio(jnp.asarray(lp), jnp.asarray(old), jnp.asarray(m)))
    np.testing.assert_allclose(r, np.where(m > 0, np.exp(lp - old), 1.0), rtol=1e-5)
    assert ratios.token_ratio(jnp.array([[100.0]]), jnp.array([[0.0]]), jnp.ones((1, 1))) == np.float32(np.exp(20.0))


def test_gspo_sequence_ratio_spec_case_and_numpy():
    s = ratios.sequence_ratio(jnp.array([[0.1, -0.3]]), jnp.zeros((1, 2)), jnp.ones((1, 2)))
    np.testing.assert_allclose(s, [0.904837], rtol=1e-5)
    lp, old, m = _lp(4, 6), _lp(4, 6), _ragged_mask(4, 6)
    ref = [np.exp(((lp - old) * m)[i].sum() / m[i].sum()) for i in range(4)]
    np.testing.assert_allclose(ratios.sequence_ratio(jnp.asarray(lp), jnp.asarray(old), jnp.asarray(m)), ref, rtol=1e-5)


def test_gspo_token_form_equals_sequence_form_in_value_and_gradient():
    lp, old, m = _lp(3, 5), _lp(3, 5), _ragged_mask(3, 5)
    adv = jnp.asarray(RNG.normal(size=3).astype(np.float32))
    old, m = jnp.asarray(old), jnp.asarray(m)

    def seq_form(x):
        return jnp.sum(ratios.sequence_ratio(x, old, m) * adv)

    def token_form(x):
        s = ratios.sequence_token_ratio(x, old, m)
        return jnp.sum(jnp.sum(s * adv[:, None] * m, 1) / jnp.sum(m, 1))

    np.testing.assert_allclose(token_form(jnp.asarray(lp)), seq_form(jnp.asarray(lp)), rtol=1e-5)
    np.testing.assert_allclose(
        jax.grad(token_form)(jnp.asarray(lp)), jax.grad(seq_form)(jnp.asarray(lp)), rtol=1e-4, atol=1e-6
    )


def test_clip_spec_cases():
    # PPO: rho = 1.5, eps = 0.2
    for adv, loss, grad in ((1.0, -1.2, 0.0), (-1.0, 1.5, 1.0)):
        f = lambda r: clipping.clipped_surrogate(r, adv, 0.2, 0.2)
        np.testing.assert_allclose(f(1.5), loss, rtol=1e-6)
        np.testing.assert_allclose(jax.grad(f)(1.5), grad)
    # DAPO clip-higher: rho = 1.25, A = +1
    np.testing.assert_allclose(clipping.clipped_surrogate(1.25, 1.0, 0.2, 0.28), -1.25)
    np.testing.assert_allclose(clipping.clipped_surrogate(1.25, 1.0, 0.2, 0.2), -1.2)
    # GSPO: s = 0.904837, eps 3e-4 / 4e-4
    s = 0.904837
    np.testing.assert_allclose(clipping.clipped_surrogate(s, 1.0, 3e-4, 4e-4), -s, rtol=1e-6)
    np.testing.assert_allclose(clipping.clipped_surrogate(s, -1.0, 3e-4, 4e-4), 0.9997, rtol=1e-6)
    assert jax.grad(lambda r: clipping.clipped_surrogate(r, -1.0, 3e-4, 4e-4))(s) == 0.0


def test_clipped_surrogate_and_dual_clip_match_numpy():
    rho = np.exp(RNG.normal(size=200) * 0.8).astype(np.float32)
    adv = RNG.normal(size=200).astype(np.float32)
    ref = -np.minimum(rho * adv, np.clip(rho, 0.8, 1.28) * adv)
    out = clipping.clipped_surrogate(jnp.asarray(rho), jnp.asarray(adv), 0.2, 0.28)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    dual_ref = np.where(adv < 0, -np.maximum(np.minimum(rho * adv, np.clip(rho, 0.8, 1.28) * adv), 3.0 * adv), ref)
    np.testing.assert_allclose(clipping.dual_clip(out, jnp.asarray(adv), 3.0), dual_ref, rtol=1e-6)
    with pytest.raises(ValueError, match="clip_c must be > 1"):
        clipping.dual_clip(out, jnp.asarray(adv), 1.0)
    masks = clipping.clip_masks(jnp.asarray(rho), jnp.asarray(adv), 0.2, 0.28, 3.0)
    np.testing.assert_array_equal(masks["low"], (adv < 0) & (rho < 0.8))
    np.testing.assert_array_equal(masks["high"], (adv > 0) & (rho > 1.28))
    np.testing.assert_array_equal(masks["dual"], (adv < 0) & (rho > 3.0))


# ---------- aggregation ----------


def test_aggregation_spec_case():
    x = jnp.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    m = jnp.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    agg = lambda mode, **kw: float(aggregation.aggregate(x, m, mode, num_tokens=6.0, num_seqs=2.0, **kw))
    assert agg("seq_mean_token_mean") == pytest.approx(0.5)
    assert agg("token_mean") == pytest.approx(1 / 3)
    assert agg("seq_mean_token_sum_norm", norm_const=4) == pytest.approx(0.25)
    assert agg("seq_mean_token_sum") == pytest.approx(1.0)
    # per-response token means SUMMED (DCPO Eq. 8 / GTPO code): (1 + 0) / norm_const
    assert agg("seq_sum_token_mean") == pytest.approx(1.0)
    assert agg("seq_sum_token_mean", norm_const=jnp.float32(0.5)) == pytest.approx(2.0)


@pytest.mark.parametrize("mode", aggregation.MODES)
def test_aggregation_matches_numpy_and_weights(mode):
    x, m = RNG.normal(size=(5, 7)).astype(np.float32), _ragged_mask(5, 7)
    nt, ns, c = m.sum(), 5.0, 7.0
    ref = {
        "token_mean": (x * m).sum() / nt,
        "seq_mean_token_mean": ((x * m).sum(1) / m.sum(1)).sum() / ns,
        "seq_mean_token_sum": (x * m).sum() / ns,
        "seq_mean_token_sum_norm": (x * m).sum() / (ns * c),
        "seq_sum_token_mean": ((x * m).sum(1) / m.sum(1)).sum() / c,
        "token_sum": (x * m).sum() / c,
    }[mode]
    out = aggregation.aggregate(jnp.asarray(x), jnp.asarray(m), mode, nt, ns, norm_const=c)
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    w = aggregation.token_weights(jnp.asarray(m), mode, nt, ns, norm_const=c)
    np.testing.assert_allclose(jnp.sum(w * x), ref, rtol=1e-5)


def test_aggregation_errors():
    with pytest.raises(ValueError, match="unknown aggregation mode 'mean'"):
        aggregation.aggregate(jnp.zeros((1, 2)), jnp.ones((1, 2)), "mean", 2.0, 1.0)
    with pytest.raises(ValueError, match="norm_const"):
        aggregation.aggregate(jnp.zeros((1, 2)), jnp.ones((1, 2)), "seq_mean_token_sum_norm", 2.0, 1.0, norm_const=0.0)
    with pytest.raises(ValueError, match="'seq_sum_token_mean' needs a positive norm_const"):
        aggregation.aggregate(jnp.zeros((1, 2)), jnp.ones((1, 2)), "seq_sum_token_mean", 2.0, 1.0, norm_const=-1)
    x = jnp.ones((1, 4))  # norm_const None -> T = 4
    assert aggregation.aggregate(x, x, "seq_mean_token_sum_norm", 4.0, 1.0) == 1.0
    assert aggregation.aggregate(2 * x, x, "seq_sum_token_mean", 4.0, 1.0) == 2.0  # None -> 1: a plain sum


def test_aggregation_traced_norm_const_under_jit():
    # a global count computed by the caller (DCPO's num_seqs / G) may be a traced array
    x, m = jnp.asarray(RNG.normal(size=(4, 3)).astype(np.float32)), jnp.asarray(_ragged_mask(4, 3))
    f = jax.jit(lambda c: aggregation.aggregate(x, m, "seq_sum_token_mean", 1.0, 1.0, norm_const=c))
    np.testing.assert_allclose(
        f(jnp.float32(2.0)), aggregation.aggregate(x, m, "seq_sum_token_mean", 1.0, 1.0) / 2, rtol=1e-6
    )


# ---------- entropy ----------


def test_entropy_from_logits_matches_numpy():
    z = RNG.normal(size=(3, 4, 11)).astype(np.float32) * 3
    for temp in (1.0, 0.7):
        p = np.exp(z / temp - (z / temp).max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        ref = -(p * np.log(p)).sum(-1)
        np.testing.assert_allclose(entropy.from_logits(jnp.asarray(z), temp), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(entropy.from_logits(jnp.zeros(8)), np.log(8), rtol=1e-6)
    np.testing.assert_allclose(entropy.sampled_estimate(jnp.array([-0.5])), [0.5])


# ---------- rollout correction ----------


def test_rollout_correction_matches_numpy():
    old, samp, m = _lp(4, 6), _lp(4, 6), _ragged_mask(4, 6)
    w = np.exp(old - samp)
    args = (jnp.asarray(old), jnp.asarray(samp), jnp.asarray(m))
    np.testing.assert_allclose(
        rollout_correction.token_is_weights(*args, cap=2.0), np.where(m > 0, np.minimum(w, 2.0), 0), rtol=1e-5
    )
    seq = np.minimum(np.exp(((old - samp) * m).sum(1)), 2.0)
    np.testing.assert_allclose(rollout_correction.sequence_is_weights(*args, cap=2.0), m * seq[:, None], rtol=1e-5)
    np.testing.assert_array_equal(
        rollout_correction.token_mask(*args, low=0.5, high=2.0), m * ((w >= 0.5) & (w <= 2.0))
    )
    geo = np.exp(((old - samp) * m).sum(1) / m.sum(1))
    keep = (geo >= 0.8) & (geo <= 1.25)
    np.testing.assert_array_equal(rollout_correction.sequence_mask(*args, low=0.8, high=1.25), m * keep[:, None])
    prod = np.exp(((old - samp) * m).sum(1))
    keep = (prod >= 0.5) & (prod <= 2.0)
    np.testing.assert_array_equal(
        rollout_correction.sequence_mask(*args, low=0.5, high=2.0, geometric=False), m * keep[:, None]
    )
    met = rollout_correction.metrics(*args, new_mask=rollout_correction.token_mask(*args, low=0.5, high=2.0))
    np.testing.assert_allclose(met["rollout_is/mean"], w[m > 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(met["rollout_is/frac_masked"], 1 - ((w >= 0.5) & (w <= 2.0))[m > 0].mean(), rtol=1e-5)
    g = jax.grad(lambda o: jnp.sum(rollout_correction.token_is_weights(o, args[1], args[2])))(args[0])
    np.testing.assert_array_equal(g, np.zeros_like(old))  # weights are constants of the loss
    with pytest.raises(ValueError, match="cap must be > 0"):
        rollout_correction.token_is_weights(*args, cap=0.0)
    with pytest.raises(ValueError, match="low < high"):
        rollout_correction.token_mask(*args, low=2.0, high=1.0)


# ---------- diagnostics ----------


def test_ratio_metrics_match_numpy():
    rho = np.exp(RNG.normal(size=(4, 6)) * 0.5).astype(np.float32)
    adv = RNG.normal(size=(4, 1)).astype(np.float32)
    m = _ragged_mask(4, 6)
    out = diagnostics.ratio_metrics(jnp.asarray(rho), jnp.asarray(adv), jnp.asarray(m), 10.0, 0.2, 0.28)
    a = np.broadcast_to(adv, rho.shape)
    low = ((a < 0) & (rho < 0.8) & (m > 0)).sum() / 10.0
    high = ((a > 0) & (rho > 1.28) & (m > 0)).sum() / 10.0
    np.testing.assert_allclose(
        [out["clip_frac/low"], out["clip_frac/high"], out["clip_frac"]], [low, high, low + high], rtol=1e-6
    )
    np.testing.assert_allclose(out["ratio/mean"], (rho * m).sum() / 10.0, rtol=1e-5)
    np.testing.assert_allclose(out["ratio/max"], rho[m > 0].max())
    np.testing.assert_allclose(out["ratio/min"], rho[m > 0].min())
