"""Judges (``jaxrl_llm.judges``) and the ``pairs`` rollout kind's pair assembly: ranking groups
into (best, worst) pairs with scalar and pairwise judges, ties, score parsing (an unparsable judge
output is a counted zero), and the static / on-policy pair layouts."""

import types

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxrl_llm import judges, tasks
from jaxrl_llm.judges import generative, oracle, pairing, reward_model, rule
from jaxrl_llm.rollouts import pairs
from jaxrl_llm.types import Example, Rollout


def ex(i):
    return Example(prompt=f"q{i}", answer=str(i), metadata={}, id=str(i))


def test_rule_judge_and_rank_groups_scalar():
    score_fn = lambda completions, examples: (
        np.asarray([float(c == e.answer) for c, e in zip(completions, examples)]),
        {"errors": []},
    )
    judge = rule.RuleJudge(score_fn)
    prompts = [ex(1)] * 3 + [ex(2)] * 3
    completions = ["0", "1", "1", "5", "6", "7"]
    scores, notes = judge.score(prompts, completions)
    np.testing.assert_array_equal(scores, [0, 1, 1, 0, 0, 0])
    assert notes == ["verifiable reward"] * 6
    best, worst, s, decisive = judges.rank_groups(judge, prompts, completions, 3)
    np.testing.assert_array_equal(best, [1, 3])  # first argmax
    np.testing.assert_array_equal(worst, [0, 5])  # last argmin: a tie still gives two rows
    np.testing.assert_array_equal(decisive, [True, False])
    with pytest.raises(ValueError, match="group_size=4"):
        judges.rank_groups(judge, prompts, completions, 4)
    with pytest.raises(ValueError, match="3 prompts but 2 completions"):
        judge.score(prompts[:3], completions[:2])


def test_rank_groups_pairwise_copeland_on_a_cycle():
    o = oracle.CyclicOracle()
    # group 0: rock, rock, scissors -> rocks win twice each... rock beats scissors
    completions = ["rock", "rock", "scissors", "rock", "paper", "scissors"]
    best, worst, scores, decisive = judges.rank_groups(o, [ex(0)] * 6, completions, 3)
    np.testing.assert_allclose(scores, [1.5, 1.5, 0.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(best, [0, 3])
    np.testing.assert_array_equal(worst, [2, 5])
    # a full cycle has no Copeland winner, and P(best > worst) = P(rock > scissors) = 1 still decides
    np.testing.assert_array_equal(decisive, [True, True])
    assert oracle.text_class("I pick PAPER then rock") == 1


def test_parse_score_and_unparsable_output_counts_as_zero():
    assert judges.parse_score("The answer is right. Score: 8", 0, 10) == 8.0
    assert judges.parse_score("score=3.5 ... final score: 7", 0, 10) == 7.0
    assert judges.parse_score("2 + 2 = 4, good", 0, 10) is None  # a bare number is not a verdict
    assert judges.parse_score("Score: 42", 0, 10) is None  # out of range
    outputs = iter([["Fine. Score: 9", "no idea", "Score: 11"]])
    judge = generative.GenerativeJudge(lambda prompts: next(outputs))
    scores, rationales = judge.score([ex(0), ex(1), ex(2)], ["a", "b", "c"])
    np.testing.assert_array_equal(scores, [9.0, 0.0, 0.0])
    assert judge.num_unparsable == 2 and rationales[1] == "no idea"
    bad = generative.GenerativeJudge(lambda prompts: ["Score: 1"])
    with pytest.raises(ValueError, match="returned 1 outputs for 2 prompts"):
        bad.score([ex(0), ex(1)], ["a", "b"])


def fake_ctx(max_new_tokens=6):
    vocab = {c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz ")}
    policy = types.SimpleNamespace(
        eos_ids=[2],
        pad_id=0,
        encode_text=lambda t: [vocab[c] for c in t],
        encode_prompts=lambda exs: (np.ones((len(exs), 4), np.int32), np.ones((len(exs), 4), np.int32)),
    )
    cfg = types.SimpleNamespace(sampling=types.SimpleNamespace(max_new_tokens=max_new_tokens))
    return types.SimpleNamespace(policy=policy, cfg=cfg)


def test_static_pairs_layout_and_bad_pair_is_named():
    exs = [
        Example("p0", None, {"chosen": "ab", "rejected": "c"}, "e0"),
        Example("p1", None, {"chosen": "abcdefgh", "rejected": "d"}, "e1"),
    ]
    r = pairs.static_pairs(fake_ctx(), exs, np.asarray([5, 9]))
    np.testing.assert_array_equal(r.group_ids, [0, 0, 1, 1])
    np.testing.assert_array_equal(r.extras["chosen"], [1, 0, 1, 0])
    np.testing.assert_array_equal(r.prompt_ids, [5, 5, 9, 9])
    np.testing.assert_array_equal(r.tokens[0, :3], [3, 4, 2])  # "ab" + EOS
    np.testing.assert_array_equal(r.lengths, [3, 2, 6, 2])  # the long chosen cut at 6 tokens
    np.testing.assert_array_equal(r.extras["truncated"], [0, 0, 1, 0])
    assert r.group_size == 2 and r.sampler_logprobs is None
    with pytest.raises(ValueError, match=r"examples \['e2'\] have no 'chosen'/'rejected'"):
        pairs.static_pairs(fake_ctx(), [Example("p", None, {}, "e2")], np.asarray([0]))
    with pytest.raises(ValueError, match="example 'e3' has a non-text chosen/rejected"):
        pairs.static_pairs(fake_ctx(), [Example("p", None, {"chosen": 1, "rejected": "a"}, "e3")], np.asarray([0]))


def test_select_pairs_from_samples_zeroes_ties():
    K, P, T = 3, 2, 2
    samples = Rollout(
        prompt_tokens=np.zeros((P * K, 2), np.int32),
        prompt_mask=np.ones((P * K, 2), np.int32),
        tokens=np.arange(P * K * T, dtype=np.int32).reshape(P * K, T),
        mask=np.ones((P * K, T), np.float32),
        loss_mask=np.ones((P * K, T), np.float32),
        rewards=np.zeros(P * K, np.float32),
        group_ids=np.repeat(np.arange(P, dtype=np.int32), K),
        prompt_ids=np.repeat(np.asarray([7, 8], np.int32), K),
        lengths=np.full(P * K, T, np.int32),
        sampler_logprobs=np.zeros((P * K, T), np.float32),
        group_size=K,
    )
    scores = np.asarray([0.0, 1.0, 0.5, 0.0, 0.0, 0.0], np.float32)
    best, worst, decisive = judges.rank_scores(scores, K)
    out = pairs.select_pairs(samples, best, worst, scores, decisive)
    np.testing.assert_array_equal(out.tokens[:, 0], [2, 0, 6, 10])  # rows 1, 0, 3, 5
    np.testing.assert_array_equal(out.rewards, [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(out.loss_mask.sum(1), [2, 2, 0, 0])  # the tied pair counts in no loss
    np.testing.assert_array_equal(out.group_ids, [0, 0, 1, 1])
    np.testing.assert_array_equal(out.extras["chosen"], [1, 0, 1, 0])
    assert out.group_size == 2


def test_pairing_rejects_unknown_source():
    with pytest.raises(ValueError, match="Pairing.source must be one of"):
        pairing.Pairing(source="nope")


# ---------------------------------------------------------------------------------------------
# The Bradley-Terry reward model


@pytest.fixture(scope="module")
def arithmetic_task():
    return tasks.make_task(
        "rg:basic_arithmetic",
        min_terms=2,
        max_terms=2,
        min_digits=1,
        max_digits=1,
        operators=["+"],
        allow_parentheses=False,
        allow_negation=False,
        num_eval=8,
        size=60,
    )


def test_verifiable_pairs_are_labelled_by_the_verifier(arithmetic_task):
    pairs_ = reward_model.verifiable_pairs(arithmetic_task, 10, seed=0)
    assert len(pairs_) == 10
    for e, c, r in pairs_:
        score = lambda t: sum(w * fn(t, e) for fn, w in arithmetic_task.reward_fns)
        assert score(c) > score(r) and c != r


def test_reward_model_trains_saves_loads_and_refuses_a_wrong_shape(arithmetic_task, tmp_path):
    pairs_ = reward_model.verifiable_pairs(arithmetic_task, 16, seed=0)
    rm = reward_model.create("tiny", max_len=32)
    history = reward_model.train(rm, pairs_, steps=12, batch_size=16, learning_rate=3e-3)
    assert history[0]["loss"] == pytest.approx(np.log(2.0), abs=1e-5)  # zero head: r = 0 for all
    assert history[-1]["loss"] < history[0]["loss"] - 0.01
    acc = reward_model.pair_accuracy(rm, pairs_)
    assert 0.0 <= acc <= 1.0
    prompts = [e for e, _, _ in pairs_[:4]]
    scores, notes = rm.score(prompts, [c for _, c, _ in pairs_[:4]])
    assert scores.shape == (4,) and notes == ["reward model"] * 4
    d = reward_model.save(rm, tmp_path / "rm")
    again = reward_model.load(d)
    np.testing.assert_allclose(again.score(prompts, [c for _, c, _ in pairs_[:4]])[0], scores, rtol=1e-5, atol=1e-6)
    # a tensor of the wrong shape is a named error
    tensors = load_file(str(d / "reward_model.safetensors"))
    tensors["head.w"] = np.zeros(7, np.float32)
    save_file(tensors, str(d / "reward_model.safetensors"))
    with pytest.raises(reward_model.RewardModelError, match=r"tensor 'head.w' has shape \(7,\)"):
        reward_model.load(d)
    del tensors["head.w"]
    save_file(tensors, str(d / "reward_model.safetensors"))
    with pytest.raises(reward_model.RewardModelError, match=r"missing \['head.w'\]"):
        reward_model.load(d)
    with pytest.raises(reward_model.RewardModelError, match="no such file"):
        reward_model.load(tmp_path / "absent")


def test_agreement_counts_only_pairs_of_one_prompt_with_different_rewards():
    class Fixed:
        def score(self, prompts, completions):
            return np.asarray([float(c) for c in completions]), [""] * len(completions)

    rm = types.SimpleNamespace(score=Fixed().score)
    prompts = [ex(0), ex(0), ex(0), ex(1), ex(1)]
    # prompt 0: pairs (0,1) agree, (0,2) disagree, (1,2) equal reward -> skipped; prompt 1: agree
    value = reward_model.agreement(rm, prompts, ["3", "1", "5", "2", "0"], np.asarray([1.0, 0.0, 0.0, 1.0, 0.0]))
    assert value == pytest.approx(2 / 3)
