"""COPO: answer entropy, global advantage, soft blend and the blended dual-clip loss, pinned by the
hand-computed case and a loop-by-loop NumPy reading."""

import dataclasses
import math
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import copo
from jaxrl_llm.rewards import extract
from jaxrl_llm.tasks import procedural
from jaxrl_llm.types import Example


def spec_rollout():
    answers = ["7", "7", "7", "7", "7", "3", "3", "5"]
    return {
        "rewards": jnp.array([1, 1, 1, 1, 1, 0, 0, 0], jnp.float32),
        "answer_ids": jnp.asarray(extract.answer_classes(answers, 4)),
        "mask": jnp.ones((8, 3), jnp.float32),
        "group_size": 4,
    }


def test_spec_case():
    c = copo.components(spec_rollout(), copo.Config())
    np.testing.assert_allclose(c["entropy"], [0.0, 1.5], atol=1e-6)
    np.testing.assert_allclose(c["reward_global"], [1.0, 0.25], atol=1e-6)
    # mean 0.625, unbiased std 0.5303 -> +-0.7071
    np.testing.assert_allclose(c["adv_global"], [0.70710] * 4 + [-0.70710] * 4, atol=1e-4)
    np.testing.assert_allclose(c["adv_local"][:4], 0.0)
    np.testing.assert_allclose(c["adv_local"][4:], [1.5, -0.5, -0.5, -0.5], atol=1e-5)  # (1-.25)/.5
    w = np.asarray(c["local_weight"])
    assert np.all(w[:4] == 0.0)  # degenerate group: global loss only
    np.testing.assert_allclose(w[4:], 1.0 / (1.0 + math.exp(-20.0)), rtol=1e-6)  # sigmoid(20) ~ 1


def test_answer_ids_and_entropy():
    ids = extract.answer_classes(["a", None, "a", None, "x", "y", "z", "w"], 4)
    np.testing.assert_array_equal(ids, [0, 1, 0, 1, 0, 1, 2, 3])
    np.testing.assert_allclose(copo.answer_entropy(jnp.asarray(ids), 4), [1.0, 2.0], atol=1e-6)
    with pytest.raises(ValueError, match="whole number of groups"):
        extract.answer_classes(["a"] * 5, 4)


def ref_components(rewards, answers, g, cfg):
    """NumPy reading of the definitions, dictionary-based entropy."""
    r = rewards.reshape(-1, g)
    p = r.shape[0]
    loc = np.zeros_like(r)
    h = np.zeros(p)
    for q in range(p):
        sd = r[q].std(ddof=1)
        loc[q] = 0.0 if np.all(r[q] == r[q][0]) else (r[q] - r[q].mean()) / (sd + cfg.std_eps)
        counts = Counter(answers[q * g : (q + 1) * g])
        h[q] = -sum((c / g) * math.log2(c / g) for c in counts.values())
    acc = r.mean(1)
    lam = (1 - 1 / g) / math.log2(g)
    rg = (1 - lam * h) * acc if cfg.consistency_coef else acc
    glob = (rg - rg.mean()) / (rg.std(ddof=1) + cfg.std_eps)
    soft = 1 / (1 + np.exp(-cfg.k * (h - cfg.b)))
    w = np.repeat(soft, g) * (loc.reshape(-1) != 0)
    return loc.reshape(-1), np.repeat(glob, g), w, h


@pytest.mark.parametrize("consistency_coef", [False, True])
def test_random_against_numpy(consistency_coef):
    rng = np.random.default_rng(0)
    g, p = 5, 6
    rewards = rng.integers(0, 2, size=p * g).astype(np.float32)
    rewards[:g] = 1.0
    answers = [str(a) for a in rng.integers(0, 3, size=p * g)]
    cfg = copo.Config(consistency_coef=consistency_coef, k=5.0, b=1.0)
    rollout = {
        "rewards": jnp.asarray(rewards),
        "answer_ids": jnp.asarray(extract.answer_classes(answers, g)),
        "mask": jnp.ones((p * g, 2)),
        "group_size": g,
    }
    c = copo.components(rollout, cfg)
    loc, glob, w, h = ref_components(rewards, answers, g, cfg)
    np.testing.assert_allclose(c["adv_local"], loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c["adv_global"], glob, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c["local_weight"], w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(c["entropy"], h, rtol=1e-5, atol=1e-6)


def test_consistency_coef_at_max_entropy_is_one_over_g():
    # all G answers distinct -> H = log2 G -> c = 1/G; R^glob = acc / G
    rollout = {
        "rewards": jnp.array([1, 1, 0, 0, 1, 1, 1, 1], jnp.float32),
        "answer_ids": jnp.array([0, 1, 2, 3, 0, 0, 0, 0], jnp.int32),
        "mask": jnp.ones((8, 1)),
        "group_size": 4,
    }
    c = copo.components(rollout, copo.Config(consistency_coef=True))
    np.testing.assert_allclose(c["reward_global"], [0.5 / 4, 1.0], atol=1e-6)


def test_modes():
    r = spec_rollout()
    w = lambda m: np.asarray(copo.components(r, copo.Config(global_mode=m))["local_weight"])
    np.testing.assert_array_equal(w("local_only"), 1.0)
    np.testing.assert_array_equal(w("global_only"), 0.0)
    np.testing.assert_array_equal(w("forced"), [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(w("soft")[:4], 1 / (1 + math.exp(10)), rtol=1e-5)  # sigmoid(-10), not forced
    with pytest.raises(ValueError, match="unknown global_mode"):
        copo.components(r, copo.Config(global_mode="nope"))


def test_missing_answer_ids_is_a_named_error():
    r = dict(spec_rollout())
    del r["answer_ids"]
    with pytest.raises(KeyError, match="answer_ids"):
        copo.advantages(r, copo.Config())


def _batch(rollout, cfg, old, mask):
    adv, _ = copo.advantages(rollout, cfg)
    return {
        **{k: v for k, v in rollout.items() if k != "group_size"},
        **copo.batch_extras(rollout, cfg),
        "advantages": adv,
        "old_logprobs": old,
        "mask": mask,
        "num_tokens": jnp.sum(mask),
        "num_seqs": jnp.float32(mask.shape[0]),
    }


def ref_surrogate(rho, a, cfg):
    l = -np.minimum(rho * a, np.clip(rho, 1 - cfg.eps_low, 1 + cfg.eps_high) * a)
    return np.where(a < 0, np.minimum(l, -cfg.clip_c * a), l)


def test_loss_against_numpy():
    rng = np.random.default_rng(1)
    cfg = copo.Config(global_mode="soft", k=2.0)  # soft weights strictly inside (0, 1)
    rollout = spec_rollout()
    mask = jnp.asarray((rng.random((8, 3)) < 0.8).astype(np.float32)).at[:, 0].set(1.0)
    old = jnp.asarray(-rng.random((8, 3)).astype(np.float32))
    lp = old + jnp.asarray(rng.normal(scale=0.4, size=(8, 3)).astype(np.float32))  # some ratios beyond 3
    batch = _batch(rollout, cfg, old, mask)
    got, metrics = copo.loss(lp, batch, cfg)
    rho = np.exp(np.asarray(lp - old))
    a_l = np.asarray(batch["advantages"])[:, None]
    a_g = np.asarray(batch["adv_global"])[:, None]
    w = np.asarray(batch["local_weight"])[:, None]
    per = (1 - w) * ref_surrogate(rho, a_g, cfg) + w * ref_surrogate(rho, a_l, cfg)
    m = np.asarray(mask)
    want = np.mean((per * m).sum(1) / m.sum(1))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(copo.loss, static_argnums=2)(lp, batch, cfg)[0], got, rtol=1e-6)
    assert metrics["loss"] == got


def test_degenerate_group_carries_gradient_unlike_grpo():
    cfg = copo.Config()
    rollout = spec_rollout()
    mask = jnp.ones((8, 3))
    old = jnp.full((8, 3), -1.0)
    batch = _batch(rollout, cfg, old, mask)
    grad = jax.grad(lambda x: copo.loss(x, batch, cfg)[0])(old)
    # prompt 1 (all correct, consistent) is pushed up by the global advantage
    assert np.all(np.asarray(grad[:4]) < 0)
    local_only = dataclasses.replace(cfg, global_mode="local_only")
    batch_l = _batch(rollout, local_only, old, mask)
    grad_l = jax.grad(lambda x: copo.loss(x, batch_l, local_only)[0])(old)
    assert np.all(np.asarray(grad_l[:4]) == 0)
    _, m = copo.advantages(rollout, cfg)
    assert float(m["frac_signal_rows"]) == 1.0 and float(m["frac_signal_rows/local"]) == 0.5


def test_answer_classes_from_the_reward_side():
    completions = [
        "<answer>7</answer>",
        "so <answer>7</answer>",
        "no answer",
        "<answer>3</answer>",
        "<answer>1</answer>",
        "<answer>1</answer>",
        "\\boxed{1}",
        "<answer>2</answer>",
    ]
    ids = extract.answer_classes([extract.auto_answer(c) for c in completions], 4)
    np.testing.assert_array_equal(ids, [0, 0, 2, 3, 0, 0, 0, 3])
    np.testing.assert_allclose(copo.answer_entropy(jnp.asarray(ids), 4), [1.5, 0.8112781], atol=1e-6)


def test_answer_classes_read_answers_as_the_reward_does():
    # A model trained to emit only the answer (the default run's format): a reasoning-gym task with
    # answer_format "auto" reads "-2" as the answer, as its reward does; with "tags" (the COPO
    # code's reading) every bare answer is the one class "no answer".
    completions = ["-2", " -2 ", "3", "<answer>3</answer>", "7", "7", "7", "7"]

    def classes(answer_format):
        example = Example(prompt="q", answer="0", metadata={"answer_format": answer_format}, id="q0")
        return extract.answer_classes([procedural.reasoning_gym_answer(c, example) for c in completions], 4)

    np.testing.assert_array_equal(classes("auto"), [0, 0, 2, 2, 0, 0, 0, 0])
    np.testing.assert_allclose(copo.answer_entropy(jnp.asarray(classes("auto")), 4), [1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(classes("tags"), [0, 0, 0, 3, 0, 0, 0, 0])
