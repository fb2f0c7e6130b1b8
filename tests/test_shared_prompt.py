"""Shared-prompt log-probs: each group's prompt computed once equals the unshared computation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_llm import config as C
from jaxrl_llm import metrics_log, train, update
from jaxrl_llm.models import completion_logprobs, get_model


def grouped_batch(vocab, P=3, G=4, Sp=10, T=5, seed=0):
    """P left-padded prompts (different pad lengths), each repeated G times, and ragged
    right-padded completions: tokens / attention [P*G, Sp+T], completion mask [P*G, T]."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(4, vocab, (P, Sp))
    prompt_mask = np.ones((P, Sp), np.float32)
    for i in range(P):
        pad = (3 * i) % Sp
        prompt[i, :pad], prompt_mask[i, :pad] = 0, 0
    completion = rng.integers(4, vocab, (P * G, T))
    cmask = (np.arange(T)[None] < rng.integers(1, T + 1, (P * G, 1))).astype(np.float32)
    tokens = np.concatenate([np.repeat(prompt, G, 0), completion], 1).astype(np.int32)
    attention = np.concatenate([np.repeat(prompt_mask, G, 0), cmask], 1)
    return tokens, attention, cmask


@pytest.mark.parametrize("name", ["tiny"])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_shared_prompt_logprobs_entropies_and_gradients_equal_unshared(name, chunk_size):
    model, _ = get_model(name)
    G, T = 4, 5
    tokens, attention, cmask = grouped_batch(model.cfg.vocab_size, G=G, T=T)
    kw = dict(return_entropy=True, chunk_size=chunk_size)
    lp, ent = completion_logprobs(model, tokens, attention, T, **kw)
    lp_s, ent_s = completion_logprobs(model, tokens, attention, T, group_size=G, **kw)
    np.testing.assert_allclose(np.asarray(lp_s) * cmask, np.asarray(lp) * cmask, atol=2e-6)
    np.testing.assert_allclose(np.asarray(ent_s) * cmask, np.asarray(ent) * cmask, atol=2e-6)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=cmask.shape) * cmask, jnp.float32)

    def objective(m, group_size):
        return jnp.sum(
            completion_logprobs(m, tokens, attention, T, chunk_size=chunk_size, group_size=group_size) * weights
        )

    g = nnx.grad(lambda m: objective(m, 1))(model)
    g_s = nnx.grad(lambda m: objective(m, G))(model)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_s)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5, rtol=1e-4)


def test_rows_that_are_not_whole_groups_are_refused():
    model, _ = get_model("tiny")
    tokens, attention, _ = grouped_batch(model.cfg.vocab_size, P=3, G=4)
    with pytest.raises(ValueError, match="whole groups"):
        completion_logprobs(model, tokens[:10], attention[:10], 5, group_size=4)


def trainer(tmp_path, *overrides):
    cfg = C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={tmp_path}",
            "model.name=tiny",
            "sft.steps=0",
            "train.prompts_per_step=4",
            "train.group_size=4",
            "sampling.max_new_tokens=4",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "mesh.num_devices=1",
            "optim.eps=1e-3",
            *overrides,
        ],
    )
    return train.Trainer(cfg)


def test_prompt_sharing_applies_only_to_whole_groups_of_one_prompt():
    prompts = np.repeat(np.arange(4 * 6).reshape(4, 6), 4, axis=0)
    mask = np.ones_like(prompts)
    assert update.prompt_sharing(True, 1, 0, prompts, mask, 4) == 4
    differing = prompts.copy()
    differing[5, 0] += 1  # one row of group 1 has its own prompt (e.g. HBPO's per-row budgets)
    assert update.prompt_sharing(True, 1, 0, differing, mask, 4) == 1
    assert update.prompt_sharing(False, 1, 0, prompts, mask, 4) == 1  # train.share_prompt=false
    assert update.prompt_sharing(True, 1, 2, prompts, mask, 4) == 1  # micro-batches split groups
    assert update.prompt_sharing(True, 8, 0, prompts, mask, 4) == 1  # minibatches split groups


def test_rl_step_with_shared_prompts_matches_the_unshared_step(tmp_path):
    results = []
    for share in ["true", "false"]:
        tr = trainer(tmp_path / share, f"train.share_prompt={share}", "algo.beta=0.04", "optim.learning_rate=1e-3")
        try:
            score = tr.ctx.score  # an untrained model earns no reward: score by length parity instead

            def parity_score(completions, examples, score=score):
                _, info = score(completions, examples)
                return np.asarray([len(c) % 2 for c in completions], np.float32), info

            tr.ctx = dataclasses.replace(tr.ctx, score=parity_score)
            before = [np.asarray(x).copy() for x in jax.tree.leaves(tr.policy.params)]
            metrics = train.rl_step(tr, metrics_log.Timer())
            after = [np.asarray(x) for x in jax.tree.leaves(tr.policy.params)]
            assert max(np.abs(a - b).max() for a, b in zip(after, before)) > 1e-4  # the update moved
            assert ("rl/T=4/G=4" in tr.updater("rl", None)._cache) == (share == "true")
            results.append((metrics, after))
        finally:
            tr.close()
    (m_shared, p_shared), (m_plain, p_plain) = results
    assert m_shared["reward/mean"] == m_plain["reward/mean"]  # same rollout
    np.testing.assert_allclose(m_shared["kl"], m_plain["kl"], atol=1e-5)
    np.testing.assert_allclose(m_shared["loss"], m_plain["loss"], atol=1e-5)
    for a, b in zip(p_shared, p_plain):
        np.testing.assert_allclose(a, b, atol=1e-5)
