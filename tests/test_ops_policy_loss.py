"""ops.policy_loss.clipped_policy_loss (the shared PPO-clip assembly) vs a plain NumPy formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.ops import aggregation, inputs, policy_loss, ratios

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
    return np.sum(m * x) / (ns * (x.shape[1] if norm_const is None else norm_const))


def _np_loss(lp, b, eps_low, eps_high, mode, clip_c, beta, norm_const):
    """The docstring's formula written out in float64 NumPy: (loss, policy term, kl term, clip_frac, d loss / d lp)."""
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
    # d l / d lp = -rho A where the unclipped branch is the minimum and rho is inside the bounds
    # or that branch wins anyway; 0 where the clipped branch wins.
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


def _run(lp, batch, eps_low, eps_high, mode, where="test", **kw):
    x = inputs.policy_inputs(jnp.asarray(lp), batch, where)
    return policy_loss.clipped_policy_loss(x, batch, where, eps_low, eps_high, mode, **kw)


@pytest.mark.parametrize("mode", aggregation.MODES)
@pytest.mark.parametrize("clip_c, beta, per_token_eps", [(None, 0.0, False), (3.0, 0.1, False), (2.0, 0.05, True)])
def test_matches_numpy_formula(mode, clip_c, beta, per_token_eps):
    lp, batch, eps_low, eps_high = _case(per_token_eps)
    norm_const = 7.0 if mode == "seq_mean_token_sum_norm" else None
    want, want_policy, want_kl, want_clip, want_grad = _np_loss(
        lp, batch, eps_low, eps_high, mode, clip_c, beta, norm_const
    )
    kw = dict(clip_c=clip_c, beta=beta, kl_estimator="k3", norm_const=norm_const)
    loss, metrics = _run(lp, batch, eps_low, eps_high, mode, **kw)
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
    grad_fn = jax.jit(jax.grad(lambda v: _run(v, batch, eps_low, eps_high, mode, **kw)[0]))
    np.testing.assert_allclose(grad_fn(jnp.asarray(lp)), want_grad, rtol=1e-4, atol=1e-7)


def test_advantages_ratio_and_extra_overrides():
    lp, batch, eps_low, eps_high = _case()
    x = inputs.policy_inputs(jnp.asarray(lp), batch, "test")
    adv = x["advantages"] * jnp.linspace(0.5, 1.5, T)[None, :]  # a method's reweighted per-token advantages
    batch_adv = dict(batch, advantages=np.asarray(adv))
    want, want_policy, _, want_clip, _ = _np_loss(lp, batch_adv, eps_low, eps_high, "token_mean", 3.0, 0.0, None)
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], x["mask"])
    for kw in ({}, {"ratio": ratio}):
        loss, metrics = policy_loss.clipped_policy_loss(
            x, batch, "test", eps_low, eps_high, "token_mean", clip_c=3.0, advantages=adv, extra=jnp.float32(0.25), **kw
        )
        np.testing.assert_allclose(loss, want + 0.25, rtol=1e-5)
        np.testing.assert_allclose(metrics["loss/policy"], want_policy, rtol=1e-5)
        np.testing.assert_allclose(metrics["clip_frac"], want_clip, rtol=1e-6)


def test_micro_batches_add_up_to_the_batch():
    lp, batch, eps_low, eps_high = _case()
    kw = dict(clip_c=3.0, beta=0.1)
    whole, whole_metrics = _run(lp, batch, eps_low, eps_high, "seq_mean_token_mean", **kw)
    parts = []
    for rows in (slice(0, 2), slice(2, B)):
        sub = {k: (v[rows] if np.ndim(v) else v) for k, v in batch.items()}
        parts.append(_run(lp[rows], sub, eps_low, eps_high, "seq_mean_token_mean", **kw))
    np.testing.assert_allclose(sum(p[0] for p in parts), whole, rtol=1e-5)
    for key in ("loss/policy", "kl", "clip_frac", "ratio/mean", "entropy"):
        np.testing.assert_allclose(sum(p[1][key] for p in parts), whole_metrics[key], rtol=1e-5, atol=1e-7)


def test_errors_name_the_method():
    lp, batch, eps_low, eps_high = _case()
    no_ref = {k: v for k, v in batch.items() if k != "ref_logprobs"}
    with pytest.raises(KeyError, match=r"mymethod \(beta > 0 needs the reference model's log-probs\)"):
        _run(lp, no_ref, eps_low, eps_high, "token_mean", where="mymethod", beta=0.1)
    _run(lp, no_ref, eps_low, eps_high, "token_mean")  # beta = 0 never reads ref_logprobs
    bad_ent = dict(batch, entropies=batch["entropies"][:, :2])
    x = inputs.policy_inputs(jnp.asarray(lp), bad_ent, "mymethod")
    with pytest.raises(ValueError, match=r"mymethod: batch\['entropies'\] has shape"):
        policy_loss.clipped_policy_loss(x, bad_ent, "mymethod", eps_low, eps_high, "token_mean")
    with pytest.raises(ValueError, match="unknown aggregation mode"):
        _run(lp, batch, eps_low, eps_high, "token_sum")
