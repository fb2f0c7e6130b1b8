"""``suite:partial_sums`` laid out on the fixed canvas of a masked-diffusion LM.

A row is ``[prompt (P tokens, left-padded with pad)] [answer canvas (L tokens)]``. The prompt is the
chain-sum expression followed by `` =`` (the task's constant instruction sentence is left out: it
carries no information for a model trained only on this task and would triple the canvas). The
answer is the task's worked demonstration (one partial sum per line, then ``<answer>total</answer>``)
followed by end-of-text tokens up to ``L`` (LLaDA fills the canvas with EOS the same way), in the
character-level ids of ``jaxrl_llm.models.tokenizer.synthetic_tokenizer``. Rewards are the task's
own (reasoning-gym's scorer on the tag's content), on the text before the first EOS.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxrl_llm.models.tokenizer import SPECIAL_TOKENS, SYNTHETIC_CHARS
from jaxrl_llm.tasks import suite
from jaxrl_llm.tasks.example import Example

PAD_ID = SPECIAL_TOKENS.index("<|pad|>")
EOS_ID = SPECIAL_TOKENS.index("<|im_end|>")
_CHAR_ID = {c: len(SPECIAL_TOKENS) + i for i, c in enumerate(SYNTHETIC_CHARS)}
_ID_CHAR = {i: c for c, i in _CHAR_ID.items()}


def encode(text: str) -> list[int]:
    """Character ids of ``text`` (the synthetic tokenizer's); an unknown character is an error."""
    bad = sorted({c for c in text if c not in _CHAR_ID})
    if bad:
        raise ValueError(f"mdlm.data.encode: characters {bad!r} are not in the synthetic tokenizer")
    return [_CHAR_ID[c] for c in text]


def decode_answer(ids) -> str:
    """Text of an answer canvas up to its first EOS (special and [MASK] ids are dropped)."""
    out = []
    for i in np.asarray(ids).tolist():
        if i == EOS_ID:
            break
        out.append(_ID_CHAR.get(i, ""))
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class PartialSumsCanvas:
    """``suite:partial_sums`` examples as (prompt [P], answer [L]) id arrays; see module docstring."""

    prompt_len: int = 16
    canvas_len: int = 48
    min_terms: int = 3
    max_terms: int = 3
    min_digits: int = 1
    max_digits: int = 2
    seed: int = 0

    def task(self):
        return suite.partial_sums_task(
            min_terms=self.min_terms,
            max_terms=self.max_terms,
            min_digits=self.min_digits,
            max_digits=self.max_digits,
            seed=self.seed,
        )

    def prompt_ids(self, example: Example) -> np.ndarray:
        ids = encode(example.metadata["entry"]["metadata"]["expression"] + " =")
        if len(ids) > self.prompt_len:
            raise ValueError(f"PartialSumsCanvas: prompt of {example.id!r} has {len(ids)} > {self.prompt_len} tokens")
        return np.array([PAD_ID] * (self.prompt_len - len(ids)) + ids, np.int32)

    def trace_ids(self, example: Example) -> np.ndarray:
        """The worked demonstration and one EOS (the reference trace that hints are cut from)."""
        return np.array(encode(example.metadata["demonstration"]) + [EOS_ID], np.int32)

    def answer_ids(self, example: Example) -> np.ndarray:
        ids = self.trace_ids(example)
        if len(ids) > self.canvas_len:
            raise ValueError(f"PartialSumsCanvas: answer of {example.id!r} has {len(ids)} > {self.canvas_len} tokens")
        return np.concatenate([ids, np.full(self.canvas_len - len(ids), EOS_ID, np.int32)])

    def arrays(self, examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
        """``(prompts [N, P], answers [N, L])`` int32."""
        return (
            np.stack([self.prompt_ids(e) for e in examples]),
            np.stack([self.answer_ids(e) for e in examples]),
        )


def correctness(task, completions: list[str], examples: list[Example]) -> np.ndarray:
    """Whether each completion's final answer is right. ``[N]`` bool.

    The task's final-answer reward is reasoning-gym's score: 1.0 when the answer equals the reference
    as a decimal, and partial credit ``len(reference) / len(answer)`` when the reference is a
    substring of a wrong answer (``-2`` for ``2`` scores 0.5, ``-12`` for ``12`` 0.67), so "correct"
    is ``score == 1``, not the score itself.
    """
    score = task.reward_fns[0][0]
    return np.array([score(c, e) >= 1.0 for c, e in zip(completions, examples)], bool)
