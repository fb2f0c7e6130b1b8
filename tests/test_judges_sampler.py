"""The generative judge on jaxrl_llm's sampler (``judges.generative.SamplerJudgeModel``), the
programmatic rubric judge and MPO's meta-reward stand-in (``judges.rubric``), and bad judge input:
an unparsable verdict is a counted zero, a too-long judge prompt and a malformed preference file are
named errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import models, tasks
from jaxrl_llm.judges import generative, rubric
from jaxrl_llm.models.logprobs import positions_from_mask
from jaxrl_llm.rollouts import judged
from jaxrl_llm.tasks.example import TaskDataError
from jaxrl_llm.types import Example


@pytest.fixture(scope="module")
def tiny_judge():
    return generative.SamplerJudgeModel.from_zoo("tiny", max_new_tokens=6, batch_size=4, max_prompt_len=256)


def ex(i, answer="7"):
    return Example(prompt=f"What is {i}?", answer=answer, metadata={}, id=str(i))


def test_text_reader_on_our_sampler_counts_unparsable_verdicts(tiny_judge):
    judge = generative.GenerativeJudge.on_sampler(tiny_judge, mode="text", low=0, high=9)
    prompts, completions = [ex(i) for i in range(5)], ["1", "2", "3", "4", "5"]
    scores, replies = judge.score(prompts, completions)
    assert len(replies) == 5 and all(isinstance(r, str) for r in replies)  # 5 rows of 2 batches of 4, padding dropped
    # an untrained model never writes "Score: n": every verdict is a counted zero, never an exception
    np.testing.assert_array_equal(scores, np.zeros(5, np.float32))
    assert judge.num_unparsable == 5 and judge.num_calls == 5
    # greedy: the same prompts give the same replies (row padding does not leak into real rows)
    assert tiny_judge.complete(judge.queries(prompts, completions)[:3]) == replies[:3]


def test_logprobs_reader_is_the_expected_score_token(tiny_judge):
    judge = generative.GenerativeJudge.on_sampler(tiny_judge, mode="logprobs", low=0, high=9)
    prompts, completions = [ex(i) for i in range(3)], ["7", "8", "x"]
    scores, _ = judge.score(prompts, completions)
    # reference: a full forward pass, softmax over the ids of "0".."9" at the last prompt position
    queries = judge.queries(prompts, completions)
    tokens, mask = tiny_judge.encode(queries)
    model = models.get_model("tiny", dtype="float32")[0]
    logits = model(jnp.asarray(tokens), positions_from_mask(jnp.asarray(mask)), jnp.asarray(mask))[0][:, -1]
    ids = generative.score_token_ids(tiny_judge.tokenizer, 0, 9)
    p = jax.nn.softmax(logits[:, ids], axis=-1)
    np.testing.assert_allclose(scores, np.asarray(p @ jnp.arange(10.0))[:3], rtol=1e-4, atol=1e-4)
    assert np.all((scores >= 0) & (scores <= 9)) and judge.num_unparsable == 0


def test_bad_judge_input_is_named(tiny_judge):
    with pytest.raises(generative.JudgeInputError, match="score token 10 is not a single token"):
        generative.score_token_ids(tiny_judge.tokenizer, 0, 10)
    with pytest.raises(generative.JudgeInputError, match="judge prompt 1 has .* tokens > max_prompt_len=256"):
        tiny_judge.encode(["short", "x" * 400])
    with pytest.raises(ValueError, match="mode='logprobs'\\) needs expected_scores"):
        generative.GenerativeJudge(complete=lambda q: q, mode="logprobs")


def test_malformed_preference_file_is_a_named_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    good = {"prompt": "q", "chosen": ["a", "b"], "rejected": "c"}
    path.write_text(json.dumps(good) + "\n" + '{"prompt": "q", "chosen": \n')
    with pytest.raises(TaskDataError, match="pairs.jsonl:2: malformed JSON line"):
        tasks.make_task("preference", path=str(path))


def test_rubric_judge_and_its_loophole():
    e = ex(0, answer="7")
    judge = rubric.RubricJudge(rubric.SEED_RUBRIC)
    scores, notes = judge.score([e] * 3, ["<answer>7</answer>", "<answer>12345</answer>", "7"])
    # the seed rubric pays for digits and tags: a wrong answer with more digits beats the right one
    np.testing.assert_array_equal(scores, [6.0, 10.0, 1.0])
    assert notes[1] == "digits=5, format=5"
    fixed = rubric.RubricJudge(rubric.render(["digits", "format", "correct"]))
    np.testing.assert_array_equal(
        fixed.score([e] * 2, ["<answer>7</answer>", "<answer>12345</answer>"])[0], [11.0, 10.0]
    )
    unknown = rubric.RubricJudge("<item>style: nice</item><item>format: x</item>")
    np.testing.assert_array_equal(unknown.score([e], ["<answer>7</answer>"])[0], [5.0])
    assert unknown.num_unknown_items == 1


def test_mrm_refines_only_when_a_score_is_inflated_and_merges_without_duplicates():
    mrm = rubric.ProgrammaticMRM(high=0.5)
    e = ex(0, answer="7")
    seed = rubric.SEED_RUBRIC
    assert mrm.refine(seed, [e], ["<answer>7</answer>"], [6.0]) == seed  # a fair score: unchanged
    new = mrm.refine(seed, [e, e], ["<answer>12345</answer>", "<answer>1111</answer>"], [10.0, 9.0])
    assert rubric.parse(new) == ["digits", "format", "correct", "no_repetition"]
    # MPO's unit case (c): items [a, b, a] merge to {a, b}
    assert rubric.parse("<item>a: x</item><item>b: y</item><item>a: z</item>") == ["a", "b"]
    buf = rubric.encode(new, 1024)
    assert buf.dtype == np.uint8 and rubric.decode(buf) == new
    with pytest.raises(ValueError, match="does not fit the state's 8-byte buffer"):
        rubric.encode(new, 8)


def test_item_points_scale_the_item_and_the_rubric_maximum():
    e = ex(0, answer="7")
    text = "<item>digits [1]: d</item>\n<item>format [2.5]: f</item>\n<item>correct: c</item>"
    assert rubric.points(text) == {"digits": 1.0, "format": 2.5, "correct": 5.0}
    assert rubric.maximum(text) == 8.5 and rubric.maximum(rubric.SEED_RUBRIC) == 10.0
    # digits check 5 -> 5 * 1/5 = 1; format 5 -> 2.5; correct 0 (wrong) or 5 (right): hand-computed
    scores, notes = rubric.RubricJudge(text).score([e] * 2, ["<answer>12345</answer>", "<answer>7</answer>"])
    np.testing.assert_allclose(scores, [3.5, 0.2 + 2.5 + 5.0], rtol=1e-6)
    assert notes[0] == "digits=1, format=2.5, correct=0"
    # render writes points only where they differ from ITEM_MAX, and parses back to the same points
    again = rubric.render(["digits", "format", "correct"], {"digits": 1.0, "format": 2.5})
    assert "<item>digits [1]:" in again and "<item>correct:" in again
    assert rubric.points(again) == rubric.points(text)


def test_mrm_halves_the_points_of_items_that_pay_inflated_wrong_answers_as_much_as_right_ones():
    mrm = rubric.ProgrammaticMRM(high=0.2)
    e = ex(0, answer="7")
    text = rubric.render(["digits", "format", "correct"])  # max 15
    completions = ["<answer>12345</answer>", "<answer>7</answer>", "no answer"]
    scores = rubric.RubricJudge(text).score([e] * 3, completions)[0]  # [10, 11, 0]
    # inflated: the first (10 >= 0.2 * 15, wrong). digits pays it 5 against the right one's 1: halved;
    # format pays both 5: halved (it does not tell them apart); correct is never halved
    new = mrm.refine(text, [e] * 3, completions, scores)
    assert rubric.points(new) == {"digits": 2.5, "format": 2.5, "correct": 5.0}
    # again: 2.5 -> 1.25, then the floor min_points = 1 holds
    new2 = mrm.refine(new, [e] * 3, completions, rubric.RubricJudge(new).score([e] * 3, completions)[0])
    assert rubric.points(new2) == {"digits": 1.25, "format": 1.25, "correct": 5.0}
    new3 = mrm.refine(new2, [e] * 3, completions, rubric.RubricJudge(new2).score([e] * 3, completions)[0])
    new4 = mrm.refine(new3, [e] * 3, completions, rubric.RubricJudge(new3).score([e] * 3, completions)[0])
    assert rubric.points(new3) == rubric.points(new4) == {"digits": 1.0, "format": 1.0, "correct": 5.0}
    # the loophole is closed: the right answer now outscores the long wrong one (7.2 vs 2)
    final = rubric.RubricJudge(new4).score([e] * 2, completions[:2])[0]
    np.testing.assert_allclose(final, [2.0, 0.2 + 1.0 + 5.0], rtol=1e-6)
    # an item that pays right answers more than the inflated wrong ones keeps its points
    e17 = ex(1, answer="17")
    right_heavy = ["<answer>17</answer>", "<answer>8</answer>"]  # digits pays the right 2, the wrong 1
    kept = mrm.refine(rubric.render(["digits", "format"]), [e17] * 2, right_heavy, [7.0, 6.0])
    assert rubric.points(kept) == {"digits": 5.0, "format": 2.5, "correct": 5.0}  # format pays both alike
    # no inflated rollout: nothing changes; add-only MRM (reweigh=False): points stay
    assert mrm.refine(text, [e], ["<answer>7</answer>"], [11.0]) == text
    add_only = rubric.ProgrammaticMRM(high=0.2, reweigh=False)
    assert rubric.points(add_only.refine(text, [e] * 3, completions, scores)) == rubric.points(text)


def test_referee_ordering_accuracy():
    # URPO's unit case: true order A > B > C, scores [7, 8, 3]: (A, B) wrong, (A, C), (B, C) right
    acc, n = judged.ordering_accuracy(np.asarray([7.0, 8.0, 3.0]), np.asarray([3.0, 2.0, 1.0]), np.zeros(3, int))
    assert n == 3 and acc == pytest.approx(2 / 3)
    acc, n = judged.ordering_accuracy(np.asarray([5.0, 5.0, 2.0]), np.asarray([3.0, 2.0, 1.0]), np.zeros(3, int))
    assert acc == pytest.approx(2 / 3)  # a tie counts as wrong
    acc, n = judged.ordering_accuracy(
        np.asarray([1.0, 0.0, 0.0, 1.0]), np.asarray([1.0, 0.0, 1.0, 0.0]), np.asarray([0, 0, 1, 1])
    )
    assert (acc, n) == (0.5, 2)  # only same-group pairs count
