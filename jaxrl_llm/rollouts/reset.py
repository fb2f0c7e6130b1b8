"""``reset``: rollouts reset to a prefix of a reference solution (DR-PO's dataset resets).

Chang et al., "Dataset Reset Policy Optimization for RLHF", https://arxiv.org/abs/2404.08495
(code: https://github.com/Cornell-RL/drpo; the forced decoding is ``RollinProcessor`` in
https://github.com/Cornell-RL/tril). Each row starts from a state of an offline reference response:

* reference: the example's worked solution ``metadata["demonstration"]`` (``suite:partial_sums``
  carries one), else its ``answer``, tokenized and cut to ``T = sampling.max_new_tokens`` tokens;
  its length is ``L``;
* prefix length: with probability ``beta_reset`` (the method's config) and ``L >= 2``,
  ``h ~ Uniform{1, ..., L - 1}``; otherwise ``h = 0`` (no reset). ``h < L`` keeps at least one
  reference token for the policy to choose;
* decoding: the first ``h`` response tokens are the reference's (teacher-forced), the policy then
  samples (``sampling.continue_from`` with the forced tokens as the row's prefix). As in the
  reference code the response cap ``T`` counts the forced tokens, so a reset shortens the free
  continuation; a row that reaches ``T`` without a stop token is truncated there.

Rows are ``P = train.prompts_per_step`` prompts x ``G = train.group_size`` samples, group-major,
each sample with its own ``h``. ``mask`` is 1 on the whole response (forced + sampled: the model
attends to all of it, and the KL and the value are computed on all of it), ``loss_mask`` on the
sampled tokens only, and ``extras["rollin_mask"]`` [B, T] on the forced ones
(``loss_mask = mask - rollin_mask``). ``policy_logprobs`` is left unset: the trainer scores pi_old
of every token, forced ones included, by a forward pass (as the reference code does).

The reward is the task's verifiable reward of the whole response (forced prefix + continuation)
in place of the paper's learned reward model.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import distributed, sampling
from jaxrl_llm.rollouts import group
from jaxrl_llm.rollouts.base import Context, Kind, score_texts
from jaxrl_llm.types import Example, Rollout


def reference_text(example: Example) -> str:
    """The offline reference response of ``example``: its worked solution
    ``metadata["demonstration"]``, else its ``answer``; an example with neither is an error."""
    demo = example.metadata.get("demonstration") if example.metadata else None
    text = demo if demo else example.answer
    if not text:
        raise ValueError(
            f"reset rollouts need a reference response: example {example.id!r} has no "
            "metadata['demonstration'] and no answer"
        )
    return str(text)


def prefix_lengths(key: jax.Array, ref_lengths: jax.Array, beta_reset: float) -> jax.Array:
    """DR-PO's reset draw: ``h`` [B] int32, per row ``h ~ Uniform{1, ..., L - 1}`` with probability
    ``beta_reset`` when ``L >= 2``, else 0. ``ref_lengths`` ``L`` [B] int."""
    L = jnp.asarray(ref_lengths, jnp.int32)
    k_reset, k_len = jax.random.split(key)
    reset = (jax.random.uniform(k_reset, L.shape) < beta_reset) & (L >= 2)
    h = 1 + jnp.floor(jax.random.uniform(k_len, L.shape) * (L - 1)).astype(jnp.int32)  # 1 .. L-1
    return jnp.where(reset, jnp.clip(h, 1, jnp.maximum(L - 1, 1)), 0).astype(jnp.int32)


def _cast_floats(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def continue_rows(
    ctx: Context,
    prompt_tokens: np.ndarray,
    prompt_mask: np.ndarray,
    prefix_tokens: np.ndarray,
    prefix_mask: np.ndarray,
    key: jax.Array,
    max_new_tokens: int,
) -> dict[str, np.ndarray]:
    """``sampling.continue_from`` with the run's sampling settings and the live params: at most
    ``max_new_tokens`` new tokens after each row's ``prompt + prefix``; host arrays."""
    p, s = ctx.policy, ctx.cfg.sampling
    scfg = sampling.SamplingConfig(
        max_new_tokens=max_new_tokens,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        min_p=s.min_p,
        stop_token_ids=tuple(p.eos_ids),
        pad_id=p.pad_id,
        return_policy_logprobs=True,
        return_entropies=True,
        backend=s.backend,
    )
    params = p.params
    if ctx.cfg.model.param_dtype != "float32":
        params = _cast_floats(params, jnp.dtype(ctx.cfg.model.param_dtype))
    out = sampling.continue_from(
        p.model(params), prompt_tokens, prompt_mask, prefix_tokens, prefix_mask, key, scfg, mesh=p.mesh
    )
    arrays = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    return {k: np.asarray(distributed.to_host(v)) for k, v in arrays.items() if isinstance(v, jax.Array)}


def splice(out: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """A ``continue_rows`` output (each row's prefix, then its new tokens) cut to ``width``
    columns: ``tokens``, ``new`` (1 on this call's kept tokens), ``logprobs``, ``policy_logprobs``,
    ``entropies`` (0 off ``new``) [B, width], ``lengths`` (prefix + kept new tokens) and
    ``stopped`` (a stop token was emitted and kept) [B]."""
    pos = np.arange(width)[None]
    start = out["prefix_lengths"][:, None]
    end = np.minimum(out["prefix_lengths"] + out["lengths"], width)
    new = ((pos >= start) & (pos < end[:, None])).astype(np.float32)
    cut = lambda k: np.where(new > 0, out[k][:, :width], 0.0).astype(np.float32)
    stopped = (out["stop_reason"] == sampling.STOP_TOKEN) & (out["prefix_lengths"] + out["lengths"] <= width)
    return {
        "tokens": out["tokens"][:, :width].astype(np.int32),
        "new": new,
        "logprobs": cut("logprobs"),
        "policy_logprobs": cut("policy_logprobs"),
        "entropies": cut("entropies"),
        "lengths": end.astype(np.int32),
        "stopped": stopped,
    }


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """P prompts x G samples, each reset to a drawn prefix of its reference (module docstring)."""
    c = ctx.cfg
    P, G, T = c.train.prompts_per_step, c.train.group_size, c.sampling.max_new_tokens
    examples, ids = group.draw_from_stream(ctx, P, jax.random.fold_in(key, 1), state)
    rows = [e for e in examples for _ in range(G)]
    refs = [ctx.policy.encode_text(reference_text(e))[:T] for e in examples]
    ref_len = np.repeat([len(r) for r in refs], G)  # [B]
    h = np.asarray(prefix_lengths(jax.random.fold_in(key, 2), ref_len, ctx.algo_cfg.beta_reset))  # [B]
    prefix = np.full((P * G, T), ctx.policy.pad_id, np.int32)  # [B, T] forced tokens, right-padded
    for b in range(P * G):
        prefix[b, : h[b]] = refs[b // G][: h[b]]
    prefix_mask = (np.arange(T)[None] < h[:, None]).astype(np.int32)
    t0 = time.perf_counter()
    prompt_tokens, prompt_mask = ctx.policy.encode_prompts(examples)
    prompt_tokens, prompt_mask = np.repeat(prompt_tokens, G, axis=0), np.repeat(prompt_mask, G, axis=0)
    out = continue_rows(ctx, prompt_tokens, prompt_mask, prefix, prefix_mask, key, T)
    s = splice(out, T)
    sample_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored = score_texts(ctx, ctx.policy.decode(s["tokens"], s["lengths"]), rows)
    rewards = scored.rewards
    mask = (np.arange(T)[None] < s["lengths"][:, None]).astype(np.float32)  # [B, T] whole response
    rollin = prefix_mask.astype(np.float32) * mask  # [B, T] forced tokens
    rollout = Rollout(
        prompt_tokens=out["prompt_tokens"].astype(np.int32),
        prompt_mask=out["prompt_mask"].astype(np.int32),
        tokens=s["tokens"],
        mask=mask,
        loss_mask=mask - rollin,
        rewards=np.asarray(rewards, np.float32),
        group_ids=np.repeat(np.arange(P, dtype=np.int32), G),
        prompt_ids=np.repeat(np.asarray(ids, np.int32), G),
        lengths=s["lengths"],
        sampler_logprobs=s["logprobs"],
        extras={"rollin_mask": rollin},
        group_size=G,
    )
    metrics = group.rollout_metrics(rollout, c.eval.correct_threshold)
    free = mask - rollin
    metrics["entropy"] = float((s["entropies"] * free).sum() / max(free.sum(), 1.0))
    metrics.update(
        {
            "reset/frac": float((h > 0).mean()),
            "reset/prefix_len": float(h.mean()),
            "time/sample": sample_time,
            "time/reward": time.perf_counter() - t0,
            **scored.metrics,
        }
    )
    return rollout, metrics


KIND = Kind(name="reset", collect=collect)
