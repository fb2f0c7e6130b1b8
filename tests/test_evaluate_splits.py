"""Held-out evaluation (evaluate.py): a task's own notion of correct (``Task.correct_fn``) and its
accuracy splits (``Task.eval_splits``), checked with a scripted policy whose answers are known."""

import jax
import numpy as np

from jaxrl_llm import evaluate
from jaxrl_llm.config import EvalConfig
from jaxrl_llm.tasks.example import Example
from jaxrl_llm.tasks.task import Task


class ScriptedPolicy:
    """Answers example i with ``answers[i]`` greedily and when sampled (k copies)."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def encode_prompts(self, examples):
        return np.asarray([[int(e.id)] for e in examples]), np.ones((len(examples), 1), bool)

    def prompt_images(self, examples):
        return None

    def generate(self, prompt_tokens, prompt_mask, key, k, greedy=False, temperature=1.0, images=None):
        ids = np.repeat(prompt_tokens[:, 0], k)
        return {"tokens": ids, "lengths": np.full(len(ids), 3)}

    def decode(self, tokens, lengths):
        return [self.answers[str(int(t))] for t in tokens]


def _task(**kw) -> Task:
    examples = [Example(prompt="q", answer="7", metadata={"hard": i % 2 == 0}, id=str(i)) for i in range(4)]
    return Task("scripted", 4, examples.__getitem__, 4, examples.__getitem__, **kw)


def _score(completions, examples):  # a reward that pays for "7" anywhere (like "some point in the box")
    return np.asarray([float("7" in c) for c in completions]), {}


ANSWERS = {"0": "7", "1": "3 7", "2": "3", "3": "7 3"}  # first answer right on 0 and 3; "7" anywhere on 0, 1, 3
CFG = EvalConfig(num_examples=4, batch_size=2, k=2)


def test_reward_threshold_is_the_default_notion_of_correct():
    out = evaluate.evaluate(ScriptedPolicy(ANSWERS), _task(), _score, CFG, jax.random.key(0))
    assert out["eval/accuracy"] == 0.75 and out["eval/pass@1"] == 0.75
    assert not any(k.startswith("eval/accuracy/") for k in out)


def test_correct_fn_and_splits_replace_the_reward_threshold():
    first = lambda c, e: c.split()[0] == e.answer  # noqa: E731
    task = _task(correct_fn=first, eval_splits=(("hard", "hard", "easy"),))
    out = evaluate.evaluate(ScriptedPolicy(ANSWERS), task, _score, CFG, jax.random.key(0))
    assert out["eval/accuracy"] == 0.5 and out["eval/pass@1"] == 0.5 and out["eval/pass@k"] == 0.5
    assert out["eval/accuracy/hard"] == 0.5  # examples 0 (right) and 2 (wrong)
    assert out["eval/accuracy/easy"] == 0.5  # examples 1 (wrong first) and 3 (right)
