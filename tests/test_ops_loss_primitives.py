"""The loss primitives a method's ``loss`` writes its equation with (ops.inputs / ratios / clipping /
aggregation / kl / diagnostics), composed as the methods compose them, against a float64 NumPy
formula; and the k3 value clamp (``kl.estimate(..., clamp)``, ``Config.kl_clamp``)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios

B, T = 6, 5
RNG = np.random.default_rng(7)


def _case(per_token_eps=False):
    lengths = np.array([5, 3, 1, 4, 5, 2])
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)
    old = (-np.abs(RNG.normal(size=(B, T))) - 0.1).astype(np.float32)
    lp = (old + 0.5 * RNG.normal(size=(B, T))).astype(np.float32)  # off-policy: every clip branch is hit
    ref = (old + 0.2 * RNG.normal(size=(B, T))).astype(np.float32)
    batch = {
        "old_logprobs": old,
        "ref_logprobs": ref,
        "advantages": np.array([1.5, -0.7, 0.0, -2.0, 0.4, -1.1], np.float32),
        "is_weights": RNG.uniform(0.5, 1.5, size=(B, T)).astype(np.float32),
        "entropies": np.abs(RNG.normal(size=(B, T))).astype(np.float32),
        "mask": mask,
        # Global normalizers of a larger batch, so a wrong local count would show.
        "num_tokens": np.float32(mask.sum() + 7),
        "num_seqs": np.float32(B + 2),
    }
    if per_token_eps:
        eps_low = RNG.uniform(0.1, 0.3, size=(B, T)).astype(np.float32)
        eps_high = RNG.uniform(0.1, 0.4, size=(B, T)).astype(np.float32)
    else:
        eps_low, eps_high = 0.2, 0.28
    return lp, batch, eps_low, eps_high


def _np_aggregate(x, m, mode, nt, ns, norm_const):
    if mode == "token_mean":
        return np.sum(m * x) / nt
    if mode == "seq_mean_token_mean":
        return np.sum(np.sum(m * x, 1) / np.maximum(m.sum(1), 1.0)) / ns
    if mode == "seq_mean_token_sum":
        return np.sum(m * x) / ns
    if mode == "seq_sum_token_mean":
        return np.sum(np.sum(m * x, 1) / np.maximum(m.sum(1), 1.0)) / norm_const
    if mode == "token_sum":
        return np.sum(m * x) / (1.0 if norm_const is None else norm_const)
    return np.sum(m * x) / (ns * (x.shape[1] if norm_const is None else norm_const))


def _np_loss(lp, b, eps_low, eps_high, mode, clip_c, beta, norm_const):
    """The composed objective in float64 NumPy: (loss, policy term, kl term, clip_frac, d loss / d lp)."""
    m = b["mask"].astype(np.float64)
    lp, old, ref = (np.asarray(v, np.float64) for v in (lp, b["old_logprobs"], b["ref_logprobs"]))
    a = np.asarray(b["advantages"], np.float64)
    a = np.broadcast_to(a[:, None] if a.ndim == 1 else a, m.shape)
    w = b["is_weights"].astype(np.float64)
    nt, ns = float(b["num_tokens"]), float(b["num_seqs"])
    rho = np.exp(np.clip(np.where(m != 0, lp - old, 0.0), -20, 20))
    lo, hi = 1 - np.asarray(eps_low, np.float64), 1 + np.asarray(eps_high, np.float64)
    unclipped, clipped = rho * a, np.clip(rho, lo, hi) * a
    l = -np.minimum(unclipped, clipped)
    # d l / d lp = -rho A where the unclipped branch is the minimum; 0 where the clipped branch wins.
    dl = np.where(unclipped <= clipped, -rho * a, 0.0)
    if clip_c is not None:
        capped = (a < 0) & (-clip_c * a < l)
        l = np.where(capped, -clip_c * a, l)
        dl = np.where(capped, 0.0, dl)
    policy = _np_aggregate(w * l, m, mode, nt, ns, norm_const)
    weights = np.asarray(aggregation.token_weights(jnp.asarray(b["mask"]), mode, nt, ns, norm_const), np.float64)
    grad = weights * w * dl * m
    kl_term = 0.0
    if beta > 0:
        d = np.clip(ref - lp, -20, 20)
        kl_term = _np_aggregate(np.exp(d) - 1 - d, m, mode, nt, ns, norm_const)
        grad = grad + beta * weights * (1 - np.exp(d)) * m
    clip_frac = np.sum(m * (((a < 0) & (rho < lo)) | ((a > 0) & (rho > hi)))) / nt
    if clip_c is not None:
        clip_frac += np.sum(m * ((a < 0) & (rho > clip_c))) / nt
    return policy + beta * kl_term, policy, kl_term, clip_frac, grad


def _composed(
    logprobs, batch, eps_low, eps_high, mode, where="test", clip_c=None, beta=0.0, norm_const=None, extra=None
):
    """A PPO-clip loss written with the primitives, line by line, as the method files write it."""
    x = inputs.policy_inputs(logprobs, batch, where, ref=beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)
    per_token = clipping.clipped_surrogate(ratio, adv, eps_low, eps_high)
    if clip_c is not None:
        per_token = clipping.dual_clip(per_token, adv, clip_c)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, mode, nt, ns, norm_const)
    kl_term = kl.penalty(x["logprobs"], x["ref_logprobs"], mask, "k3", mode, nt, ns, norm_const) if beta > 0 else None
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, eps_low, eps_high, clip_c)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, beta, extra, where=where)


@pytest.mark.parametrize("mode", aggregation.MODES)
@pytest.mark.parametrize("clip_c, beta, per_token_eps", [(None, 0.0, False), (3.0, 0.1, False), (2.0, 0.05, True)])
def test_composed_loss_matches_numpy_formula(mode, clip_c, beta, per_token_eps):
    lp, batch, eps_low, eps_high = _case(per_token_eps)
    norm_const = {"seq_mean_token_sum_norm": 7.0, "seq_sum_token_mean": 3.0}.get(mode)
    want, want_policy, want_kl, want_clip, want_grad = _np_loss(
        lp, batch, eps_low, eps_high, mode, clip_c, beta, norm_const
    )
    kw = dict(clip_c=clip_c, beta=beta, norm_const=norm_const)
    loss, metrics = _composed(jnp.asarray(lp), batch, eps_low, eps_high, mode, **kw)
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["loss/policy"], want_policy, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["clip_frac"], want_clip, rtol=1e-6)
    assert want_clip > 0  # the case exercises the clip
    m = batch["mask"]
    np.testing.assert_allclose(metrics["entropy"], np.sum(m * batch["entropies"]) / batch["num_tokens"], rtol=1e-6)
    if beta > 0:
        np.testing.assert_allclose(metrics["kl"], want_kl, rtol=1e-5)
        np.testing.assert_allclose(metrics["loss/kl"], beta * want_kl, rtol=1e-5)
    else:
        assert "kl" not in metrics and "loss/kl" not in metrics
    grad_fn = jax.jit(jax.grad(lambda v: _composed(v, batch, eps_low, eps_high, mode, **kw)[0]))
    np.testing.assert_allclose(grad_fn(jnp.asarray(lp)), want_grad, rtol=1e-4, atol=1e-7)


def test_finalize_adds_extra_and_reweighted_advantages_flow_through():
    lp, batch, eps_low, eps_high = _case()
    scale = np.linspace(0.5, 1.5, T, dtype=np.float32)[None, :]  # a method's reweighted per-token advantages
    batch_adv = dict(batch, advantages=batch["advantages"][:, None] * scale)
    want, want_policy, _, want_clip, _ = _np_loss(lp, batch_adv, eps_low, eps_high, "token_mean", 3.0, 0.0, None)
    loss, metrics = _composed(
        jnp.asarray(lp), batch_adv, eps_low, eps_high, "token_mean", clip_c=3.0, extra=jnp.float32(0.25)
    )
    np.testing.assert_allclose(loss, want + 0.25, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss/policy"], want_policy, rtol=1e-5)
    np.testing.assert_allclose(metrics["clip_frac"], want_clip, rtol=1e-6)


def test_micro_batches_add_up_to_the_batch():
    lp, batch, eps_low, eps_high = _case()
    for mode, norm_const in (("seq_mean_token_mean", None), ("seq_sum_token_mean", 4.0)):
        kw = dict(clip_c=3.0, beta=0.1, norm_const=norm_const)
        whole, whole_metrics = _composed(jnp.asarray(lp), batch, eps_low, eps_high, mode, **kw)
        parts = []
        for rows in (slice(0, 2), slice(2, B)):
            sub = {k: (v[rows] if np.ndim(v) else v) for k, v in batch.items()}
            parts.append(_composed(jnp.asarray(lp[rows]), sub, eps_low, eps_high, mode, **kw))
        np.testing.assert_allclose(sum(p[0] for p in parts), whole, rtol=1e-5)
        for key in ("loss/policy", "kl", "clip_frac", "ratio/mean", "entropy"):
            np.testing.assert_allclose(sum(p[1][key] for p in parts), whole_metrics[key], rtol=1e-5, atol=1e-7)


def test_errors_name_the_method():
    lp, batch, eps_low, eps_high = _case()
    no_ref = {k: v for k, v in batch.items() if k != "ref_logprobs"}
    with pytest.raises(KeyError, match=r"mymethod \(beta > 0 needs the reference model's log-probs\)"):
        inputs.policy_inputs(jnp.asarray(lp), no_ref, "mymethod", ref=True)
    assert "ref_logprobs" not in inputs.policy_inputs(jnp.asarray(lp), no_ref, "mymethod")  # beta = 0 never reads it
    bad_ent = dict(batch, entropies=batch["entropies"][:, :2])
    with pytest.raises(ValueError, match=r"mymethod: batch\['entropies'\] has shape"):
        _composed(jnp.asarray(lp), bad_ent, eps_low, eps_high, "token_mean", where="mymethod")
    with pytest.raises(ValueError, match="unknown aggregation mode"):
        _composed(jnp.asarray(lp), batch, eps_low, eps_high, "token_total")


# ---------- the k3 value clamp (verl's low_var_kl clamps at +-10; the paper and TRL do not) ----------


def test_k3_value_clamp_matches_verl_and_is_off_by_default():
    lp = jnp.array([0.0, 0.0, 0.0, -0.5])
    ref = jnp.array([3.0, 0.5, -2.0, 0.0])  # d = ref - lp: 3 gives k3 = e^3 - 4 = 16.09 > 10
    d = np.asarray(ref - lp)
    k3 = np.exp(d) - 1 - d
    assert k3[0] > 10 and np.all(k3[1:] < 10)
    np.testing.assert_allclose(kl.estimate(lp, ref, "k3"), k3, rtol=1e-6)  # default: no clamp (paper, TRL)
    np.testing.assert_allclose(kl.estimate(lp, ref, "k3", clamp=10.0), np.minimum(k3, 10.0), rtol=1e-6)
    # plain k3: a clamped token's gradient is 0 (torch.clamp in verl); the others keep 1 - e^d
    g = jax.grad(lambda x: jnp.sum(kl.estimate(x, ref, "k3", clamp=10.0)))(lp)
    np.testing.assert_allclose(g, np.where(k3 > 10, 0.0, 1 - np.exp(d)), rtol=1e-5, atol=1e-6)
    # k3+: the clamp bounds the value only; the gradient stays k2's, -d
    np.testing.assert_allclose(kl.estimate(lp, ref, "k3+", clamp=10.0), np.minimum(k3, 10.0), rtol=1e-6)
    g_st = jax.grad(lambda x: jnp.sum(kl.estimate(x, ref, "k3+", clamp=10.0)))(lp)
    np.testing.assert_allclose(g_st, -d, rtol=1e-5)
    with pytest.raises(ValueError, match="clamp must be > 0"):
        kl.estimate(lp, ref, "k3", clamp=0.0)


def test_kl_clamp_config_field_reaches_the_loss():
    mask = jnp.ones((2, 2))
    old = jnp.zeros((2, 2))
    ref = jnp.array([[3.0, 0.5], [-2.0, 0.0]])  # one token with k3 > 10
    batch = {
        "mask": mask,
        "old_logprobs": old,
        "ref_logprobs": ref,
        "advantages": jnp.zeros(2),
        "num_tokens": jnp.float32(4),
        "num_seqs": jnp.float32(2),
    }
    d = np.asarray(ref)
    k3 = np.exp(d) - 1 - d
    want = {None: k3, 10.0: np.minimum(k3, 10.0)}
    for clamp in (None, 10.0):
        cfg = dataclasses.replace(grpo.Config(), kl_clamp=clamp)
        _, metrics = grpo.loss(old, batch, cfg)
        np.testing.assert_allclose(metrics["kl"], want[clamp].mean(1).sum() / 2, rtol=1e-6)
    assert grpo.Config().kl_clamp is None
