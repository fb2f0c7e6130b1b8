"""RiskPO: bundle papers, MVaR paper advantages, credit assignment and the quantile tracker, pinned by a
hand-computed case and a loop-by-loop NumPy port of the
official advantage function."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import riskpo

SPEC_CFG = riskpo.Config(alpha=0.2, beta_upper=0.8, w=1.5, natural_baseline=True, bundle_size=2)


def spec_rollout():
    # q1 rewards [1,0,1,0], q2 [1,1,0,0]; one bundle of both questions, n = 4 papers
    return {"rewards": jnp.array([1, 0, 1, 0, 1, 1, 0, 0], jnp.float32), "mask": jnp.ones((8, 2)), "group_size": 4}


def test_spec_case():
    x = riskpo.paper_scores(spec_rollout()["rewards"], 4, 2)
    np.testing.assert_array_equal(x, [[2, 1, 1, 0]])
    for norm, want in [(False, [0, -0.2667, -0.2667, -2.3333]), (True, [0, -0.3266, -0.3266, -2.8577])]:
        a, q = riskpo.paper_advantages(x, dataclasses.replace(SPEC_CFG, norm_by_std=norm))
        np.testing.assert_allclose(q["q_low"], [0.6], atol=1e-6)
        np.testing.assert_allclose(q["q_high"], [1.4], atol=1e-6)
        np.testing.assert_allclose(a[0], want, atol=1e-4)
    adv, _ = riskpo.advantages(spec_rollout(), dataclasses.replace(SPEC_CFG, credit="std"))
    # paper 2 = rows (q1, k=1) and (q2, k=1); sigma_q = 0.57735 for both questions
    np.testing.assert_allclose(adv[1], -0.5657, atol=1e-4)
    np.testing.assert_allclose(adv[5], -0.5657, atol=1e-4)


def ref_advantages(rewards, g, cfg, q_track=None):
    """Port of compute_grpo_bundle_rvar_outcome_advantage_quantile_tracking (loops, dicts, NumPy)."""
    eps = cfg.std_eps
    r = rewards.reshape(-1, g)
    p = r.shape[0]
    bundles = {}
    for q in range(p):
        bundles.setdefault(q // cfg.bundle_size, []).append(q)
    qstd = {q: (r[q].std(ddof=1) if g > 1 and r[q].std(ddof=1) > 1e-3 else 1.0) for q in range(p)}
    qmean = {q: r[q].mean() for q in range(p)}
    adv = np.zeros(p * g)
    for bid, qs in bundles.items():
        papers = [[q * g + k for q in qs] for k in range(g)]
        scores = np.array([sum(rewards[i] for i in pp) for pp in papers])
        if g == 1:
            qd = qu = scores[0]
            sd = 1.0
        else:
            qd, qu = np.quantile(scores, cfg.alpha), np.quantile(scores, cfg.beta_upper)
            sd = scores.std(ddof=1)
        if q_track is not None:
            if cfg.quantile_source == "tracked":
                qd, qu = q_track
            elif cfg.quantile_source == "mix":
                qd, qu = (q_track[0] + qd) / 2, (q_track[1] + qu) / 2
        for pp, xs in zip(papers, scores):
            pa = max(xs - qd, 0) - max(xs - qu, 0) + ((qd - qu) if cfg.natural_baseline else 0.0)
            pa /= cfg.beta_upper - cfg.alpha + eps
            ca = -max(qd - xs, 0) / (cfg.alpha + eps)
            pa = (cfg.w * ca + pa) / (cfg.w + 1)
            if cfg.norm_by_std:
                pa /= sd + eps
            if cfg.credit == "sum_mean":
                ratios_ = [rewards[i] - qmean[i // g] for i in pp]
                tot = sum(ratios_)
                for i, rt in zip(pp, ratios_):
                    adv[i] = pa * rt / tot if abs(tot) > 1e-6 else pa / len(pp)
                continue
            for i in pp:
                adv[i] = {
                    "uniform": pa,
                    "score": (0.5 if rewards[i] > 0 else 1.5) * pa,
                    "std": pa / (qstd[i // g] + eps),
                }[cfg.credit]
    return adv


@pytest.mark.parametrize("credit", riskpo.CREDITS)
@pytest.mark.parametrize("natural", [True, False])
def test_random_against_port(credit, natural):
    rng = np.random.default_rng(3)
    g, p = 6, 7  # 7 prompts in bundles of 3: the last bundle has one question
    rewards = (rng.random(p * g) < 0.5).astype(np.float32)
    rewards[:g] = 1.0
    cfg = riskpo.Config(credit=credit, natural_baseline=natural, bundle_size=3)
    got, metrics = riskpo.advantages(
        {"rewards": jnp.asarray(rewards), "mask": jnp.ones((p * g, 2)), "group_size": g}, cfg
    )
    np.testing.assert_allclose(got, ref_advantages(rewards, g, cfg), rtol=1e-4, atol=1e-5)
    assert np.isfinite(float(metrics["quantile/low"]))


def test_group_of_one_uses_unit_std():
    rewards = np.array([1, 0, 1, 1, 0], np.float32)
    cfg = riskpo.Config(bundle_size=5)
    got, _ = riskpo.advantages({"rewards": jnp.asarray(rewards), "mask": jnp.ones((5, 1)), "group_size": 1}, cfg)
    np.testing.assert_allclose(got, ref_advantages(rewards, 1, cfg), atol=1e-6)


def test_tracker_init_then_robbins_monro_step():
    cfg = riskpo.Config(bundle_size=2, lr_q=0.1)
    s0 = riskpo.init_state(cfg)
    assert not bool(s0["initialized"])
    r1 = spec_rollout()
    s1 = riskpo.update_state(s0, r1, cfg)
    levels = np.array(riskpo.TRACK_LEVELS)
    np.testing.assert_allclose(s1["q"], np.quantile([2, 1, 1, 0], levels), atol=1e-6)
    r2 = {**r1, "rewards": jnp.array([1, 1, 1, 1, 1, 1, 1, 0], jnp.float32)}  # papers [2, 2, 2, 1]
    step = jax.jit(lambda s, r: riskpo.update_state(s, {**r, "group_size": 4}, cfg))
    s2 = step(s1, {k: v for k, v in r2.items() if k != "group_size"})
    x = np.array([2, 2, 2, 1])
    want = np.asarray(s1["q"]) + 0.1 * (levels - (x[None] < np.asarray(s1["q"])[:, None]).mean(1))
    np.testing.assert_allclose(s2["q"], want, atol=1e-6)


@pytest.mark.parametrize("crossed", [False, True])
@pytest.mark.parametrize("source", ["tracked", "mix"])
def test_tracked_quantiles_feed_the_advantage(source, crossed):
    rng = np.random.default_rng(5)
    g, p = 4, 6
    rewards = (rng.random(p * g) < 0.6).astype(np.float32)
    rollout = {"rewards": jnp.asarray(rewards), "mask": jnp.ones((p * g, 2)), "group_size": g}
    cfg = riskpo.Config(quantile_source=source, bundle_size=3)
    s0 = riskpo.init_state(cfg)
    # uninitialized tracker: bundle quantiles, same as the default source
    np.testing.assert_allclose(
        riskpo.advantages(rollout, cfg, s0)[0], riskpo.advantages(rollout, riskpo.Config(bundle_size=3))[0]
    )
    # crossed: a tracker whose alpha-level value exceeds its beta-level one (SGD can cross them)
    q = jnp.linspace(2.5, 0.5, 19) if crossed else jnp.linspace(0.5, 2.5, 19)
    state = {"q": q, "initialized": jnp.asarray(True)}
    level = riskpo.TRACK_LEVELS.index
    q_track = (float(state["q"][level(cfg.alpha)]), float(state["q"][level(cfg.beta_upper)]))  # levels 0.2 and 0.9
    for natural in (True, False):
        c = dataclasses.replace(cfg, natural_baseline=natural)
        got, m = riskpo.advantages(rollout, c, state)
        np.testing.assert_allclose(got, ref_advantages(rewards, g, c, q_track), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m["quantile/tracked_low"], q_track[0], rtol=1e-6)


def test_upper_tail_gets_no_gradient_weight_lower_tail_most():
    # natural baseline, uniform credit, no std: papers at or above q_u get exactly 0
    x = jnp.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]], jnp.float32)
    a, q = riskpo.paper_advantages(x, riskpo.Config(credit="uniform", norm_by_std=False))
    a = np.asarray(a[0])
    assert np.all(a[np.asarray(x[0]) >= float(q["q_high"][0])] == 0)
    assert np.all(np.diff(a) >= 0) and a[0] < a[3] < 0


def test_config_errors():
    with pytest.raises(ValueError, match="alpha < beta_upper"):
        riskpo.advantages(spec_rollout(), riskpo.Config(alpha=0.9))
    with pytest.raises(ValueError, match="unknown credit"):
        riskpo.advantages(spec_rollout(), riskpo.Config(credit="nope"))


def test_loss_dual_clip_token_mean():
    rng = np.random.default_rng(2)
    cfg = riskpo.Config(bundle_size=2)
    rollout = spec_rollout()
    adv, _ = riskpo.advantages(rollout, cfg)
    mask = jnp.asarray((rng.random((8, 3)) < 0.7).astype(np.float32)).at[:, 0].set(1.0)
    old = jnp.asarray(-rng.random((8, 3)).astype(np.float32))
    lp = old + jnp.asarray(rng.normal(scale=0.8, size=(8, 3)).astype(np.float32))
    batch = {
        "advantages": adv,
        "old_logprobs": old,
        "mask": mask,
        "num_tokens": jnp.sum(mask),
        "num_seqs": jnp.float32(8),
    }
    got, m = riskpo.loss(lp, batch, cfg)
    rho, a = np.exp(np.asarray(lp - old)), np.asarray(adv)[:, None]
    per = -np.minimum(rho * a, np.clip(rho, 0.8, 1.2) * a)
    per = np.where(a < 0, np.minimum(per, -3.0 * a), per)
    np.testing.assert_allclose(got, (per * np.asarray(mask)).sum() / np.asarray(mask).sum(), rtol=1e-5)
    assert float(m["clip_frac/dual"]) > 0


def test_defaults_are_the_math_script():
    """The defaults are ONE official script's settings (scripts/run_qwen2.5_1.5b_MVaR_math.sh):
    quantile_up 0.9 with the natural baseline and std credit (0.8 belongs to the DAPO-Math script)."""
    cfg = riskpo.Config()
    math_script = dict(
        alpha=0.2, beta_upper=0.9, w=1.5, bundle_size=5, lr_q=0.1, natural_baseline=True, credit="std", norm_by_std=True
    )
    assert {k: getattr(cfg, k) for k in math_script} == math_script
