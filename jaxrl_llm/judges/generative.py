"""A generative judge: a decoder prompted with a rubric; the score is read from its output text
or from the log-probs of the score tokens.

Two ways to read a verdict (``GenerativeJudge.mode``):

* ``"text"``: ``complete(prompts: list[str]) -> list[str]`` generates a rationale and a verdict;
  the score is the last ``Score: <number>`` in ``[low, high]`` (``base.parse_score``). An output
  without one scores 0 and is counted (``num_unparsable``), never a crash mid-run.
* ``"logprobs"``: the judge prompt ends with the verdict label (``... Score:``) and the score is
  the expectation of the integer verdict under the judge's next-token distribution restricted to
  the single-token integers ``low..high`` (G-Eval's probability-weighted score, Liu et al. 2023,
  "G-Eval: NLG Evaluation using GPT-4 with Better Human Alignment",
  https://arxiv.org/abs/2303.16634, Sec. 2.3):

      s(x, y) = sum_k k p(k | judge prompt) / sum_k p(k | judge prompt),   k in {low, ..., high}

  Always defined (no parsing), and differentiable in the judge's logits.

``SamplerJudgeModel`` is both readers on jaxrl_llm's own jitted sampler (``sampling.sample``, one
prefill + a cached decode loop) and forward pass over FROZEN params: a zoo model loaded like the
reward model's trunk (``SamplerJudgeModel.from_zoo``, e.g. SmolLM2-135M-Instruct), or the live
params of the policy itself (``from_policy``: URPO's player-as-referee). Rows are padded to a
fixed ``batch_size`` and prompt widths are bucketed, so a run compiles a bounded number of
programs. Prompts are rendered with the tokenizer's chat template when it has one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_llm import models, sampling
from jaxrl_llm.judges.base import parse_score
from jaxrl_llm.models.logprobs import positions_from_mask
from jaxrl_llm.types import Example

RUBRIC = (
    "Rate the response to the question from {low} to {high}.\n"
    "Question: {prompt}\nResponse: {completion}\n"
    "Reply with a short reason, then 'Score: <number>'."
)
# The prompt of the "logprobs" reader: it ends where the verdict's first token goes.
RUBRIC_LOGPROBS = (
    "Rate the response to the question from {low} to {high}.\nQuestion: {prompt}\nResponse: {completion}\nScore:"
)
MODES = ("text", "logprobs")


class JudgeInputError(ValueError):
    """A judge that cannot run on its input (a prompt too long for the judge, no score tokens)."""


def prompt_text(example: Example) -> str:
    """The prompt of an example as plain text (chat messages joined by role)."""
    if isinstance(example.prompt, str):
        return example.prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in example.prompt)


def render(tokenizer: Any, text: str) -> str:
    """``text`` as one user turn of the tokenizer's chat template (with the assistant's generation
    prompt), or as is when the tokenizer has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


def score_token_ids(tokenizer: Any, low: int, high: int) -> np.ndarray:
    """The token id of each integer ``low..high`` (``[high - low + 1]`` int32). Tries the bare digits
    and the space-prefixed form (BPE vocabularies merge ``" 7"``); a value that is not one token in
    either form is a ``JudgeInputError`` naming it."""
    ids = []
    for k in range(int(low), int(high) + 1):
        found = None
        for text in (str(k), f" {k}"):
            enc = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                found = int(enc[0])
                break
        if found is None:
            raise JudgeInputError(f"score token {k!r} is not a single token of the judge's tokenizer")
        ids.append(found)
    return np.asarray(ids, np.int32)


def _score_distribution(graphdef, params, tokens, mask, score_ids):
    """``(p over score tokens [B, K], expected index [B])`` at each row's last position."""
    model = nnx.merge(graphdef, params)
    hidden, _ = model.hidden_states(tokens, positions_from_mask(mask), mask)
    logits = model.unembed(hidden[:, -1:])[:, 0]  # [B, V] f32 (rows are left-padded: -1 is the last token)
    logp = jax.nn.log_softmax(logits[:, score_ids], axis=-1)  # renormalized over the score tokens [B, K]
    p = jnp.exp(logp)
    return p, p @ jnp.arange(score_ids.shape[0], dtype=jnp.float32)


_jit_score_distribution = jax.jit(_score_distribution, static_argnums=(0,))


@dataclasses.dataclass
class SamplerJudgeModel:
    """A frozen (or live) decoder on jaxrl_llm's sampler: ``complete(prompts) -> texts`` and
    ``expected_scores(prompts, low, high) -> [N]``.

    ``params``: a callable returning the params to judge with (called once per batch: a zoo
    model's frozen params, or ``lambda: policy.params`` for the live policy). ``max_prompt_len``
    caps the rendered prompt (a longer one is a ``JudgeInputError`` naming it); ``batch_size``
    rows per compiled call (inputs are padded up to it); greedy decoding by default (a judge's
    verdict should not be a coin flip), else ``temperature``."""

    graphdef: Any
    params: Callable[[], Any]
    tokenizer: Any
    max_new_tokens: int = 48
    max_prompt_len: int = 512
    batch_size: int = 16
    greedy: bool = True
    temperature: float = 1.0
    seed: int = 0
    mesh: Any = None
    calls: int = 0

    @classmethod
    def from_zoo(cls, name: str, **kwargs: Any) -> SamplerJudgeModel:
        """A zoo model (``models.get_model``: ``smollm2-135m-instruct``, ``tiny``, a local HF
        directory) loaded once, f32, and held frozen."""
        model, tokenizer = models.get_model(name, dtype="float32")
        if tokenizer is None:
            raise JudgeInputError(f"judge model {name!r} comes without a tokenizer")
        graphdef, params = nnx.split(model)
        frozen = jax.tree.map(jax.lax.stop_gradient, params)
        return cls(graphdef, lambda: frozen, tokenizer, **kwargs)

    @classmethod
    def from_policy(cls, policy: Any, **kwargs: Any) -> SamplerJudgeModel:
        """The policy as its own judge, reading ``policy.params`` at every call (URPO)."""
        return cls(policy.graphdef, lambda: policy.params, policy.tokenizer, mesh=policy.mesh, **kwargs)

    @property
    def pad_id(self) -> int:
        for value in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if value is not None:
                return int(value)
        return 0

    @property
    def stop_ids(self) -> tuple[int, ...]:
        ids = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
        return tuple(sorted(int(i) for i in ids if isinstance(i, int) and i >= 0 and i != self.tokenizer.unk_token_id))

    def encode(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rendered, left-padded prompts ``[batch_size * ceil(N / batch_size), W]`` (W a power-of-two
        bucket of the longest): padding rows repeat the last prompt and are dropped after."""
        rows = [list(self.tokenizer(render(self.tokenizer, p), add_special_tokens=False)["input_ids"]) for p in prompts]
        longest = max(len(r) for r in rows)
        if longest > self.max_prompt_len:
            i = max(range(len(rows)), key=lambda j: len(rows[j]))
            raise JudgeInputError(
                f"judge prompt {i} has {longest} tokens > max_prompt_len={self.max_prompt_len}; raise it or shorten the rubric"
            )
        n = -(-len(rows) // self.batch_size) * self.batch_size
        rows = rows + [rows[-1]] * (n - len(rows))
        width = sampling.bucket_length(longest)
        tokens = np.full((n, width), self.pad_id, np.int32)
        mask = np.zeros((n, width), np.int32)
        for i, r in enumerate(rows):
            tokens[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
        return tokens, mask

    def complete(self, prompts: Sequence[str]) -> list[str]:
        """The judge's reply to each prompt (decoded, special tokens dropped)."""
        if not prompts:
            return []
        tokens, mask = self.encode(prompts)
        scfg = sampling.SamplingConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            greedy=self.greedy,
            stop_token_ids=self.stop_ids,
            pad_id=self.pad_id,
            return_entropies=False,
        )
        model = nnx.merge(self.graphdef, self.params())
        out = []
        for lo in range(0, tokens.shape[0], self.batch_size):
            key = jax.random.fold_in(jax.random.key(self.seed), self.calls)
            self.calls += 1
            res = sampling.sample(
                model, tokens[lo : lo + self.batch_size], mask[lo : lo + self.batch_size], key, scfg, mesh=self.mesh
            )
            toks, lens = np.asarray(jax.device_get(res.tokens)), np.asarray(jax.device_get(res.lengths))
            out += [self.tokenizer.decode(t[: int(n)].tolist(), skip_special_tokens=True) for t, n in zip(toks, lens)]
        return out[: len(prompts)]

    def __call__(self, prompts: Sequence[str]) -> list[str]:
        return self.complete(prompts)

    def expected_scores(self, prompts: Sequence[str], low: int, high: int) -> np.ndarray:
        """``sum_k k p(k) / sum_k p(k)`` over the integer score tokens at the end of each prompt
        (module docstring): ``[N]`` f32 in ``[low, high]``."""
        if not prompts:
            return np.zeros(0, np.float32)
        ids = jnp.asarray(score_token_ids(self.tokenizer, low, high))
        tokens, mask = self.encode(prompts)
        params = self.params()
        out = []
        for lo in range(0, tokens.shape[0], self.batch_size):
            sl = slice(lo, lo + self.batch_size)
            _, idx = _jit_score_distribution(self.graphdef, params, jnp.asarray(tokens[sl]), jnp.asarray(mask[sl]), ids)
            out.append(np.asarray(jax.device_get(idx)))
        return (float(low) + np.concatenate(out)[: len(prompts)]).astype(np.float32)


@dataclasses.dataclass
class GenerativeJudge:
    """Scores with a rubric prompt through ``complete`` (``mode="text"``) or ``expected_scores``
    (``mode="logprobs"``, needs integer ``low``/``high``); ``num_unparsable`` counts text verdicts
    with no score (each scored 0), ``num_calls`` the judged completions."""

    complete: Callable[[list[str]], list[str]] | None = None
    rubric: str = RUBRIC
    low: float = 0.0
    high: float = 10.0
    mode: str = "text"
    expected_scores: Callable[[list[str], int, int], np.ndarray] | None = None
    num_unparsable: int = 0
    num_calls: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"GenerativeJudge.mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "text" and self.complete is None:
            raise ValueError("GenerativeJudge(mode='text') needs complete(prompts) -> texts")
        if self.mode == "logprobs" and self.expected_scores is None:
            raise ValueError("GenerativeJudge(mode='logprobs') needs expected_scores(prompts, low, high)")
        if not self.low < self.high:
            raise ValueError(f"GenerativeJudge: low={self.low} must be < high={self.high}")

    @classmethod
    def on_sampler(cls, judge_model: SamplerJudgeModel, mode: str = "text", **kwargs: Any) -> GenerativeJudge:
        """A judge over ``SamplerJudgeModel`` (both readers wired); ``kwargs``: rubric, low, high."""
        if mode == "logprobs":
            kwargs.setdefault("rubric", RUBRIC_LOGPROBS)
        return cls(complete=judge_model.complete, expected_scores=judge_model.expected_scores, mode=mode, **kwargs)

    def queries(self, prompts: Sequence[Example], completions: Sequence[str]) -> list[str]:
        """The rubric filled in for each (prompt, completion)."""
        return [
            self.rubric.format(low=self.low, high=self.high, prompt=prompt_text(p), completion=c)
            for p, c in zip(prompts, completions)
        ]

    def score(self, prompts: Sequence[Example], completions: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        if len(prompts) != len(completions):
            raise ValueError(f"GenerativeJudge: {len(prompts)} prompts but {len(completions)} completions")
        queries = self.queries(prompts, completions)
        self.num_calls += len(queries)
        if self.mode == "logprobs":
            scores = np.asarray(self.expected_scores(queries, int(self.low), int(self.high)), np.float32)
            return scores, [f"expected score {s:.3f}" for s in scores]
        outputs = list(self.complete(queries))
        if len(outputs) != len(queries):
            raise ValueError(f"GenerativeJudge: complete() returned {len(outputs)} outputs for {len(queries)} prompts")
        parsed = [parse_score(o, self.low, self.high) for o in outputs]
        self.num_unparsable += sum(p is None for p in parsed)
        scores = np.asarray([0.0 if p is None else p for p in parsed], np.float32)
        return scores, outputs
