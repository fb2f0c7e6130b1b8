"""APO (text part): hand-computed case and NumPy references."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import apo

CFG = apo.Config()
RNG = np.random.default_rng(0)


def _rollout(rewards, lengths, group_size, t=None):
    t = t or int(max(lengths))
    mask = (np.arange(t)[None] < np.asarray(lengths)[:, None]).astype(np.float32)
    return {"rewards": jnp.asarray(rewards, jnp.float32), "mask": jnp.asarray(mask), "group_size": group_size}


SPEC = _rollout([1.5, 1.5, 0.5, 0.0], [100, 120, 300, 90], 4)


def test_spec_case_advantages_and_stcr():
    # c = [1,1,0,0], p = d = 0.5, L+ = 110, Delta = [0,0,190,-20], w = [1,1,1.00189819,1].
    np.testing.assert_allclose(
        apo.stcr_weights(jnp.array([1, 1, 0, 0]), jnp.array([100, 120, 300, 90]), 4, CFG),
        [1.0, 1.0, 1.00189819, 1.0],
        rtol=1e-7,
    )
    adv, m = apo.advantages(SPEC, CFG)
    np.testing.assert_allclose(adv, [0.83333, 0.83333, -0.50094909, -1.16667], atol=1e-5)
    np.testing.assert_allclose(m["apo/difficulty"], 0.5)
    np.testing.assert_allclose(m["apo/len_wrong"], 195.0)
    np.testing.assert_allclose(m["apo/len_correct"], 110.0)
    np.testing.assert_allclose(m["apo/kl_weight_pos"], 0.74311863, rtol=1e-6)


def test_spec_case_dads_weights_and_kl_term():
    np.testing.assert_allclose(apo.batch_extras(SPEC, CFG)["kl_weights"], [0.74311863, 0.74311863, 1.0, 1.0], rtol=1e-6)
    # Every token's k3 = 0.01: the KL term is beta * mean(kappa * 0.01) = 1e-3 * 0.0087156 = 8.7156e-6.
    d = 0.14
    for _ in range(20):  # Newton on exp(d) - 1 - d = 0.01
        d -= (np.expm1(d) - d - 0.01) / np.expm1(d)
    adv, _ = apo.advantages(SPEC, CFG)
    mask = SPEC["mask"]
    lp = jnp.full(mask.shape, -1.0)
    batch = {
        "old_logprobs": lp,
        "ref_logprobs": lp + d,
        "advantages": adv,
        "mask": mask,
        "num_tokens": jnp.sum(mask),
        "num_seqs": jnp.float32(4),
        **apo.batch_extras(SPEC, CFG),
    }
    loss, m = apo.loss(lp, batch, CFG)
    np.testing.assert_allclose(m["loss/kl"], 8.7156e-6, rtol=1e-4)
    np.testing.assert_allclose(m["kl"], 0.01, rtol=1e-4)
    # On-policy the policy term is -token-mean(A).
    lengths = np.array([100, 120, 300, 90])
    np.testing.assert_allclose(m["loss/policy"], -(np.asarray(adv) * lengths).sum() / lengths.sum(), rtol=1e-5)
    np.testing.assert_allclose(loss, m["loss/policy"] + m["loss/kl"], rtol=1e-6)


def test_spec_dads_weight_values():
    d = jnp.array([0.125, 0.25, 0.5, 0.75, 0.875, 0.0, 1.0])
    np.testing.assert_allclose(apo.dads_weight(d, CFG), [0.907, 0.870, 0.743, 0.493, 0.288, 1.0, 1.0], atol=6e-4)


def test_advantages_against_numpy_reference():
    p, g = 6, 8
    acc = (RNG.random((p, g)) < np.linspace(0.1, 0.9, p)[:, None]).astype(np.float32)
    acc[0] = 1.0  # all correct
    acc[1] = 0.0  # all wrong
    fmt = 0.5 * (RNG.random((p, g)) < 0.7)
    r = (acc + fmt).reshape(-1)
    lengths = RNG.integers(1, 40, p * g)
    cfg = dataclasses.replace(CFG, stcr_base=1.05)  # a visible STCR at these lengths
    adv, _ = apo.advantages(_rollout(r, lengths, g, t=40), cfg)
    kappa = apo.batch_extras(_rollout(r, lengths, g, t=40), cfg)["kl_weights"]

    rg, lg = r.reshape(p, g), lengths.reshape(p, g).astype(np.float64)
    c = np.trunc(rg)
    lbar = (c * lg).sum(1, keepdims=True) / (c.sum(1, keepdims=True) + 1e-9)
    delta = (lg - lbar) * (1 - c)
    w = 1 + (c.sum(1, keepdims=True) > 0) * (delta > 0) * (1 - 1.05 ** (-delta))
    std = rg.std(1, ddof=1, keepdims=True)
    a = w * np.where(std > 0, (rg - rg.mean(1, keepdims=True)) / (std + 1e-9), 0.0)
    dd = 1 - c.mean(1, keepdims=True)
    omega = np.where((dd == 0) | (dd == 1), 1.0, 1 - np.exp(-2.71828 * (1 - dd)))
    np.testing.assert_allclose(adv, a.reshape(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kappa, np.where(a > 0, omega, 1.0).reshape(-1), rtol=1e-5)
    assert np.any(w > 1.01)
    jitted, _ = jax.jit(lambda x: apo.advantages({**x, "group_size": g}, cfg))(
        {k: v for k, v in _rollout(r, lengths, g, t=40).items() if k != "group_size"}
    )
    np.testing.assert_allclose(jitted, adv, rtol=1e-6)


def test_stcr_is_off_without_any_correct_answer_and_for_short_wrong_answers():
    w = apo.stcr_weights(
        jnp.array([0, 0, 1, 0]), jnp.array([50, 10, 20, 20]), 2, dataclasses.replace(CFG, stcr_base=1.1)
    )
    # group 1 has no correct answer; in group 2 the wrong answer is as long as the correct one.
    np.testing.assert_allclose(w, [1.0, 1.0, 1.0, 1.0])


def test_loss_kl_weighting_against_numpy():
    b, t = 6, 5
    mask = (np.arange(t)[None] < RNG.integers(1, t + 1, b)[:, None]).astype(np.float32)
    old = -np.abs(RNG.normal(size=(b, t))).astype(np.float32) - 0.1
    lp = old + RNG.normal(scale=0.3, size=(b, t)).astype(np.float32)
    ref = old + RNG.normal(scale=0.2, size=(b, t)).astype(np.float32)
    adv = RNG.normal(size=b).astype(np.float32)
    kappa = RNG.uniform(0.2, 1, b).astype(np.float32)
    cfg = dataclasses.replace(CFG, beta=0.1)
    batch = {
        "old_logprobs": jnp.asarray(old),
        "ref_logprobs": jnp.asarray(ref),
        "advantages": jnp.asarray(adv),
        "mask": jnp.asarray(mask),
        "kl_weights": jnp.asarray(kappa),
        "num_tokens": jnp.float32(mask.sum()),
        "num_seqs": jnp.float32(b),
    }
    loss, _ = apo.loss(jnp.asarray(lp), batch, cfg)
    ratio = np.exp(lp - old)
    pg = -np.minimum(ratio * adv[:, None], np.clip(ratio, 0.8, 1.2) * adv[:, None])
    k3 = np.exp(ref - lp) - (ref - lp) - 1
    kl_seq = (k3 * mask).sum(1) / mask.sum(1)
    ref_loss = (pg * mask).sum() / mask.sum() + 0.1 * (kappa * kl_seq).sum() / b
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)


def test_loss_requires_kl_weights_when_beta_positive():
    batch = {
        "old_logprobs": jnp.zeros((2, 3)),
        "ref_logprobs": jnp.zeros((2, 3)),
        "advantages": jnp.ones(2),
        "mask": jnp.ones((2, 3)),
        "num_tokens": jnp.float32(6),
        "num_seqs": jnp.float32(2),
    }
    with pytest.raises(KeyError, match="kl_weights"):
        apo.loss(jnp.zeros((2, 3)), batch, CFG)


def test_config_validation():
    with pytest.raises(ValueError, match="stcr_base"):
        apo.Config(stcr_base=0.99)
    with pytest.raises(ValueError, match="kl_aggregation"):
        apo.Config(kl_aggregation="sum")


def test_stcr_base_one_turns_stcr_off():
    correct, lengths = jnp.array([1, 0, 0, 1]), jnp.array([10, 40, 90, 12])
    np.testing.assert_allclose(apo.stcr_weights(correct, lengths, 4, dataclasses.replace(CFG, stcr_base=1.0)), 1.0)
    assert float(apo.stcr_weights(correct, lengths, 4, dataclasses.replace(CFG, stcr_base=1.05))[2]) > 1.9
