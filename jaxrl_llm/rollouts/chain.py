"""``chain``: G trajectories per prompt, then Monte Carlo continuations from their cutpoints.

SPO-chain's rollout (Guo et al., "Segment Policy Optimization", https://arxiv.org/abs/2505.23564;
code https://github.com/AIFrameResearch/SPO, ``math_episode_generator_with_mc_advantages.py``):

1. P prompts from the task stream, G trajectories each (the prompt's prefill shared), scored.
2. Cutpoints per trajectory: the low-probability tokens ``L = {t : q_t < rho}`` (q: the sampler's
   probability under the unmodified policy), every K-th of them, each cut just before its token:
   ``C = L[::K] - 1`` (c = -1 is the prompt itself).
3. Identical cut prefixes (same prompt, same tokens ``o_{<=c}``) are deduplicated; each unique one
   gets N continuations. They start from the trajectory's own KV cache: the trajectory's session
   is forked, cut back to the tokens before ``o_c`` (``cached.truncate``) and ``o_c`` is fed again
   (one token, ``cached.extend``), so no prefix is re-prefilled. A continuation may run until
   prefix + continuation reaches ``sampling.max_new_tokens``; one that does not finish gets the
   method's ``unfinished_penalty`` as reward. ``V(c)`` is the mean reward of its N continuations.

Rows are the P * G trajectories, group-major as in ``group``; ``loss_mask`` is the completion with
the probability mask applied (tokens with ``q_t >= rho`` leave the loss, as in the code's
trainer). ``extras``: ``cut_mask`` / ``cut_values`` [B, T] (1 and V(c) at each cut c >= 0),
``prompt_value`` / ``has_prompt_value`` [B] (V(-1) when c = -1 is a cut). Continuation rows are
padded to a power-of-two count (bounded recompiles).

The method's config must carry ``prob_threshold``, ``cutpoint_interval``, ``num_continuations``
and ``unfinished_penalty``. Metrics: ``chain/sampled_tokens`` (trajectories + continuations, the
budget a same-token comparison with GRPO counts), ``chain/continuation_tokens``, ``chain/cuts``,
``chain/unique_cuts``, ``chain/prefill_time``, ``chain/decode_time``, and ``group``'s reward and
length statistics of the trajectories.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from jaxrl_llm import sampling
from jaxrl_llm.rollouts import tree
from jaxrl_llm.rollouts.base import Context, Kind, score_texts
from jaxrl_llm.rollouts.group import draw_from_stream, rollout_metrics
from jaxrl_llm.sampling import cached
from jaxrl_llm.types import Rollout


def cutpoints(policy_logprobs: np.ndarray, mask: np.ndarray, rho: float, interval: int) -> list[np.ndarray]:
    """Per row, the cut indices ``C = L[::K] - 1`` with ``L = {t : exp(logp_t) < rho}`` (module docstring)."""
    low = (np.exp(policy_logprobs) < rho) & (mask > 0)
    return [np.flatnonzero(row)[::interval] - 1 for row in low]


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """P prompts x G trajectories, with MC values at their cutpoints (module docstring)."""
    a, c = ctx.algo_cfg, ctx.cfg
    P, G, T = c.train.prompts_per_step, c.train.group_size, c.sampling.max_new_tokens
    N = a.num_continuations
    examples, ids = draw_from_stream(ctx, P, jax.random.fold_in(key, 1), state)
    model = tree.sampling_model(ctx)
    scfg = dataclasses.replace(tree.sampling_config(ctx), max_new_tokens=T)
    t0 = time.perf_counter()
    prompt_tokens, prompt_mask = ctx.policy.encode_prompts(examples)
    session = cached.prefill(model, prompt_tokens, prompt_mask)
    jax.block_until_ready(session.logits)
    prefill_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    out, session = cached.decode(model, cached.fork(session, np.arange(P), G), key, scfg)
    out = jax.device_get(out)
    B = P * G
    group = np.repeat(np.arange(P), G)
    sample_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    row_examples = [examples[g] for g in group]
    scored = score_texts(ctx, ctx.policy.decode(out.tokens, out.lengths), row_examples)
    rewards, failures = scored.rewards, scored.metrics["reward/failures"]
    reward_time = time.perf_counter() - t0

    # ---- cutpoints, deduplicated by (prompt, prefix tokens)
    t0 = time.perf_counter()
    cuts = cutpoints(out.policy_logprobs, out.mask, a.prob_threshold, a.cutpoint_interval)
    unique: dict[tuple, int] = {}
    where = []  # (row, cut, unique index)
    for b in range(B):
        for cut in cuts[b]:
            k = (int(group[b]), tuple(out.tokens[b, : cut + 1].tolist()))
            where.append((b, int(cut), unique.setdefault(k, len(unique))))
    U = len(unique)
    values = np.zeros(U, np.float32)
    cont_tokens = 0
    if U:
        first = {}
        for b, cut, u in where:
            first.setdefault(u, (b, cut))
        src = np.array([first[u][0] for u in range(U)])
        cut_at = np.array([first[u][1] for u in range(U)])
        Up = sampling.bucket_length(U, minimum=8)
        pick = np.concatenate([np.arange(U), np.zeros(Up - U, np.int64)])  # padding rows: inert copies
        src_p, cut_p = src[pick], cut_at[pick]
        keep = prompt_mask.sum(axis=1)[group[src_p]] + cut_p  # the tokens before o_c
        last_prompt = prompt_tokens[group[src_p], -1]  # left-padded prompts: the last column is real
        refeed = np.where(cut_p >= 0, out.tokens[src_p, np.maximum(cut_p, 0)], last_prompt)
        cs = cached.truncate(cached.fork(session, src_p), keep)
        cs = cached.extend(model, cs, refeed[:, None].astype(np.int32), np.ones((Up, 1), np.int32))
        budget = np.repeat(np.clip(T - (cut_p + 1), 1, T), N)
        active = np.repeat(np.arange(Up) < U, N)
        cont, _ = cached.decode(
            model, cached.fork(cs, np.arange(Up), N), jax.random.fold_in(key, 3), scfg, active, max_tokens=budget
        )
        cont = jax.device_get(cont)
        rows = np.flatnonzero(active)
        u_of = rows // N
        texts = [
            out.tokens[src[u], : cut_at[u] + 1].tolist() + cont.tokens[r, : cont.lengths[r]].tolist()
            for r, u in zip(rows, u_of)
        ]
        texts = ctx.policy.decode(
            np.array([t + [scfg.pad_id] * (2 * T - len(t)) for t in texts], np.int32),
            np.array([len(t) for t in texts]),
        )
        cont_scored = score_texts(ctx, texts, [row_examples[src[u]] for u in u_of])
        r_cont = cont_scored.rewards
        failures += cont_scored.metrics["reward/failures"]
        r_cont = np.where(cont.stop_reason[rows] == sampling.STOP_LENGTH, a.unfinished_penalty, r_cont)
        values = np.bincount(u_of, weights=r_cont, minlength=U).astype(np.float32) / N
        cont_tokens = int(cont.lengths.sum())
    cut_mask = np.zeros((B, T), np.float32)
    cut_values = np.zeros((B, T), np.float32)
    prompt_value = np.zeros(B, np.float32)
    has_prompt_value = np.zeros(B, np.float32)
    for b, cut, u in where:
        if cut >= 0:
            cut_mask[b, cut], cut_values[b, cut] = 1.0, values[u]
        else:
            prompt_value[b], has_prompt_value[b] = values[u], 1.0
    continuation_time = time.perf_counter() - t0

    mask = out.mask.astype(np.float32)
    keep_tokens = (np.exp(out.policy_logprobs) < a.prob_threshold).astype(np.float32)
    rollout = Rollout(
        prompt_tokens=prompt_tokens[group].astype(np.int32),
        prompt_mask=prompt_mask[group].astype(np.int32),
        tokens=out.tokens.astype(np.int32),
        mask=mask,
        loss_mask=mask * keep_tokens,
        rewards=rewards,
        group_ids=group.astype(np.int32),
        prompt_ids=np.asarray(ids, np.int32)[group],
        lengths=out.lengths.astype(np.int32),
        sampler_logprobs=out.logprobs.astype(np.float32),
        policy_logprobs=out.policy_logprobs.astype(np.float32),
        extras={
            "cut_mask": cut_mask,
            "cut_values": cut_values,
            "prompt_value": prompt_value,
            "has_prompt_value": has_prompt_value,
        },
        group_size=G,
    )
    metrics = rollout_metrics(rollout, c.eval.correct_threshold)
    metrics.update(scored.metrics)  # the trajectories' reward/<name> (continuations only value cuts)
    traj_tokens = int(out.lengths.sum())
    metrics.update(
        {
            "time/sample": sample_time + continuation_time,
            "time/reward": reward_time,
            "reward/failures": float(failures),
            "chain/sampled_tokens": float(traj_tokens + cont_tokens),
            "chain/continuation_tokens": float(cont_tokens),
            "chain/cuts": float(len(where)),
            "chain/unique_cuts": float(U),
            "chain/prefill_time": prefill_time,
            "chain/decode_time": sample_time,
            "chain/continuation_time": continuation_time,
        }
    )
    return rollout, metrics


KIND = Kind(name="chain", collect=collect)
