"""The rollout layer: typed records with dict access, the kinds registry, ``make_batch``, and the
group kind's dynamic sampling (one backfill; no group twice in a batch)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms, rollouts
from jaxrl_llm import config as C
from jaxrl_llm.rollouts import group
from jaxrl_llm.types import Batch, Example, Rollout


def test_records_read_like_dicts_and_are_pytrees():
    r = Rollout.from_mapping(
        {
            "tokens": np.zeros((4, 3), np.int32),
            "mask": np.ones((4, 3), np.float32),
            "values": np.ones((4, 3), np.float32),
            "group_size": 2,
        }
    )
    assert r.group_size == 2 and r["group_size"] == 2
    assert "values" in r and r["values"].shape == (4, 3) and r.extras.keys() == {"values"}
    assert "ref_logprobs" not in r and r.get("ref_logprobs") is None
    with pytest.raises(KeyError):
        r["ref_logprobs"]
    assert set(r) == {"tokens", "mask", "group_size", "values"} and len(r) == 4
    b = Batch.from_mapping(r).with_items(advantages=np.ones(4, np.float32), is_weights=np.ones((4, 3), np.float32))
    assert b.advantages is not None and b.is_weights is not None and "is_weights" not in b.extras
    assert set(b.without("values")) == {"tokens", "mask", "group_size", "advantages", "is_weights"}
    # a pytree with group_size static: jit sees it as a Python int
    out = jax.jit(lambda x: x["values"].sum() * x["group_size"])(b)
    assert float(out) == 24.0
    halves = jax.tree.map(lambda x: x[:2], b)
    assert isinstance(halves, Batch) and halves["tokens"].shape == (2, 3) and halves.group_size == 2


def test_kinds_registry_and_every_method_names_a_known_kind():
    assert {
        "group",
        "single_stream",
        "budgeted",
        "greedy_baseline",
        "pairs",
        "reset",
        "window",
        "tree",
        "chain",
        "episode",
    } <= set(rollouts.KINDS)
    for name, algo in algorithms.REGISTRY.items():
        kind = rollouts.get(algo.rollout)
        missing = [h for h in kind.hooks if h not in algo.hooks and h != "with_offline_prior"]
        assert not missing, (name, missing)
    assert algorithms.get("single_stream_spo").rollout == "single_stream"
    assert algorithms.get("hbpo").rollout == "budgeted"
    with pytest.raises(KeyError, match="unknown rollout kind 'no_such_kind'"):
        rollouts.get("no_such_kind")
    new = rollouts.Kind(name="t1_test_kind", collect=group.collect)
    assert rollouts.register(new) is new and rollouts.get("t1_test_kind") is new
    with pytest.raises(ValueError, match="already registered"):
        rollouts.register(rollouts.Kind(name="t1_test_kind", collect=group.collect))
    del rollouts.KINDS["t1_test_kind"]


def test_make_batch_uses_the_loss_mask_and_global_normalizers():
    algo = algorithms.get("grpo")
    rng = np.random.default_rng(0)
    mask = np.ones((4, 3), np.float32)
    loss_mask = mask.copy()
    loss_mask[1, 1:] = 0  # tokens the policy did not choose (e.g. an observation)
    rollout = Rollout(
        tokens=np.zeros((4, 3), np.int32),
        mask=mask,
        loss_mask=loss_mask,
        rewards=np.array([1.0, 0.0, 0.0, 0.0], np.float32),
        group_ids=np.array([0, 0, 1, 1], np.int32),
        old_logprobs=rng.normal(size=(4, 3)).astype(np.float32),
        group_size=2,
    )
    batch, metrics = algorithms.make_batch(algo, rollout, algo.Config())
    np.testing.assert_array_equal(batch["mask"], loss_mask)
    assert float(batch["num_tokens"]) == loss_mask.sum() and float(batch["num_seqs"]) == 4
    np.testing.assert_allclose(batch["advantages"], algo.advantages(rollout, algo.Config())[0])
    assert "frac_zero_std_groups" in metrics
    # ungrouped rows: the zero-spread fraction would always read 1, so it is not reported
    fake = dataclasses.replace(algo, advantages=lambda r, c, s: (jnp.zeros(4), {"frac_zero_std_groups": 1.0}))
    single = rollout.replace(group_size=1, group_ids=np.arange(4, dtype=np.int32))
    assert "frac_zero_std_groups" not in algorithms.make_batch(fake, single, algo.Config())[1]
    # jittable with the record and the config static (the trainer jits it)
    jb, _ = jax.jit(algorithms.make_batch, static_argnums=(0, 2))(algo, rollout, algo.Config())
    np.testing.assert_allclose(jb["advantages"], batch["advantages"], rtol=1e-6)
    # reward shaping is applied before the advantages (DAPO's overlong penalty)
    dapo = algorithms.get("dapo")
    cfg = dataclasses.replace(dapo.Config(), max_len=4, cache_len=2)
    shaped, _ = algorithms.make_batch(dapo, rollout.replace(lengths=np.array([1, 3, 5, 1], np.int32)), cfg)
    np.testing.assert_allclose(shaped["rewards"], [1.0, -0.5, -1.0, 0.0])


# ------------------------------------------------------------------------------ dynamic sampling


class StubPolicy:
    """A sampler whose completion is the prompt's example index (one token), so rewards and
    identities of rows are known: what ``group.collect_groups`` needs of ``policy.Policy``."""

    def encode_prompts(self, examples):
        ids = np.asarray([[int(e.id)] for e in examples], np.int32)
        return ids, np.ones_like(ids)

    def prompt_images(self, examples):
        return None  # text prompts

    def generate(
        self, prompt_tokens, prompt_mask, key, n, temperature_rule=None, temperature_rule_params=None, images=None
    ):
        assert images is None
        tokens = np.repeat(prompt_tokens, n, axis=0)
        B = tokens.shape[0]
        return {
            "prompt_tokens": tokens,
            "prompt_mask": np.ones_like(tokens),
            "tokens": tokens,
            "mask": np.ones((B, 1), np.float32),
            "logprobs": np.zeros((B, 1), np.float32),
            "lengths": np.ones(B, np.int32),
        }

    def decode(self, tokens, lengths):
        return [str(int(t[0])) for t in tokens]


class StubStream:
    def __init__(self):
        self.i = 0

    def next_indexed(self):
        self.i += 1
        return self.i - 1, Example(prompt="p", answer=None, metadata={}, id=str(self.i - 1))


def stub_context(informative, P=4, G=2, rounds=1):
    """Examples whose index is in ``informative`` get rewards [1, 0, ...] (kept by DAPO's filter),
    the others all 0 (dropped)."""

    def score(completions, examples):
        r = [float(int(c) in informative and j % G == 0) for j, c in enumerate(completions)]
        return np.asarray(r, np.float32), {"failures": {}, "timeouts": {}}

    cfg = C.resolve_algo(
        C.apply_overrides(
            C.default_config(),
            [
                "algorithm=dapo",
                f"train.prompts_per_step={P}",
                f"train.group_size={G}",
                f"train.max_sampling_rounds={rounds}",
            ],
        )
    )
    return rollouts.Context(cfg, algorithms.get("dapo"), StubPolicy(), None, StubStream(), score)


def test_underfilled_dynamic_sampling_never_repeats_a_group():
    """Regression (issue #14 item 8c): the old trainer refilled an underfilled batch with the
    last round's first groups, which here are groups 0 and 1: group 0 was then in the batch twice."""
    ctx = stub_context(informative={0, 2}, P=4, G=2, rounds=1)
    rollout, metrics = group.collect_groups(ctx, jax.random.key(0), None, group.draw_from_stream, group.encode_shared)
    ids = rollout["prompt_ids"].reshape(4, 2)[:, 0].tolist()
    assert sorted(ids) == [0, 1, 2, 3] and ids[:2] == [0, 2]  # kept first, then the dropped, each once
    assert metrics["filter/underfilled"] == 2.0
    # the filler groups count in no loss: zero loss_mask (and so no tokens in the normalizer)
    np.testing.assert_array_equal(rollout.loss_mask[:, 0], [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(rollout["group_ids"], np.repeat(np.arange(4), 2))


def test_dynamic_sampling_draws_more_rounds_and_keeps_sampling_order():
    ctx = stub_context(informative={1, 4, 6, 7}, P=3, G=2, rounds=3)
    rollout, metrics = group.collect_groups(ctx, jax.random.key(0), None, group.draw_from_stream, group.encode_shared)
    assert rollout["prompt_ids"].reshape(3, 2)[:, 0].tolist() == [1, 4, 6]
    assert metrics["sampling_rounds"] == 3.0 and "filter/underfilled" not in metrics
    np.testing.assert_array_equal(rollout.loss_mask, rollout.mask)  # nothing padded: every token counts


def test_backfill_takes_kept_groups_first_then_dropped_ones_once():
    G = 2
    cands = Rollout(
        tokens=np.arange(10, dtype=np.int32)[:, None],
        mask=np.ones((10, 1), np.float32),
        group_ids=np.repeat(np.arange(5), 2).astype(np.int32),
        group_size=G,
    )
    out, kept = group.backfill(cands, np.array([False, True, False, True, False]), 4)
    assert kept == 2
    assert out["tokens"][::2, 0].tolist() == [2, 6, 0, 4]  # groups 1, 3 kept; then 0, 2
    np.testing.assert_array_equal(out.loss_mask[:, 0], [1, 1, 1, 1, 0, 0, 0, 0])
    full, kept = group.backfill(cands, np.ones(5, bool), 4)
    assert kept == 4 and full.loss_mask is None and full["tokens"][::2, 0].tolist() == [0, 2, 4, 6]
    with pytest.raises(ValueError, match="candidate groups"):
        group.backfill(cands, np.ones(5, bool), 6)


def test_an_underfilled_step_has_the_structure_of_a_full_one():
    """Filler groups change values (a zeroed loss_mask), never the pytree: the jitted batch
    assembly (and the update after it) compiles once for both."""
    full, _ = group.collect_groups(
        stub_context(informative={0, 1, 2, 3}), jax.random.key(0), None, group.draw_from_stream, group.encode_shared
    )
    under, _ = group.collect_groups(
        stub_context(informative={0}), jax.random.key(0), None, group.draw_from_stream, group.encode_shared
    )
    assert jax.tree.structure(full) == jax.tree.structure(under)
    algo = algorithms.get("dapo")
    fn = jax.jit(lambda r: algorithms.make_batch(algo, r, algo.Config()))  # a cache of its own
    for r in (full, under):
        fn(r.replace(old_logprobs=np.zeros((8, 1), np.float32)))
    assert fn._cache_size() == 1


def test_score_texts_counts_failures_and_reports_each_reward_function():
    """Every rollout kind scores through ``rollouts.base.score_texts``: failed or timed-out calls
    are counted (and warned about), and a task with several reward functions logs each one's
    raw mean, with the real runner's weighted sum as the reward."""
    import types
    import warnings

    from jaxrl_llm.rewards import RewardRunner
    from jaxrl_llm.rollouts.base import score_texts

    def right(c, e):
        return float(c == e.answer)

    def long(c, e):
        return float(len(c) > 1)

    def broken(c, e):
        raise ValueError("no")

    ex = Example(prompt=[{"role": "user", "content": "1+1"}], answer="2", metadata={}, id="0")
    ctx = types.SimpleNamespace(score=RewardRunner(((right, 1.0), (long, 0.5)), num_workers=0).score)
    s = score_texts(ctx, ["2", "22", "3"], [ex] * 3)
    np.testing.assert_allclose(s.rewards, [1.0, 0.5, 0.0])
    assert s.rewards.dtype == np.float32
    assert s.metrics == {
        "reward/failures": 0.0,
        "reward/right": pytest.approx(1 / 3),
        "reward/long": pytest.approx(1 / 3),
    }
    ctx = types.SimpleNamespace(score=RewardRunner(((broken, 1.0),), num_workers=0).score)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = score_texts(ctx, ["2", "3"], [ex] * 2)
    assert s.metrics == {"reward/failures": 2.0}  # one function: its mean is reward/mean already
    assert any("reward failures" in str(w.message) for w in caught)
