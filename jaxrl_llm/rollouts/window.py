"""``window``: an in-flight set of sequences, each advanced by at most ``w`` tokens per step (T-PPO).

Fan et al., "Truncated Proximal Policy Optimization", https://arxiv.org/abs/2506.15050 (no
official code). A synchronous trainer waits for the longest response of a batch; here every step
advances ``N`` in-flight sequences (slots) by one window of at most ``w = algo.window`` tokens and
trains on those windows at once:

1. empty slots are refilled with the next prompts of the task stream (the batch stays ``N``);
2. every slot continues from its partial response (``sampling.continue_from`` with the response
   so far as the prefix) under the CURRENT policy, so the windows of one response come from
   successive policy versions;
3. a slot whose window ends in a stop token, or whose response reaches ``T =
   sampling.max_new_tokens``, is finished: it is scored (the task's reward of the whole
   response) and its slot is emptied after the update; the others stay in flight.

Row ``b`` of the rollout is slot ``b``: ``prompt_tokens`` its prompt (left-padded to
``algo.max_prompt_len``, so shapes never change), ``tokens`` / ``mask`` its whole response so far
[N, T] (earlier windows are context the model attends to), ``loss_mask`` this step's window only,
``sampler_logprobs`` / ``policy_logprobs`` each token's log-probs under the policy version that
sampled its window (the per-window old log-probs), ``rewards`` the score of finished rows (0 for
in-flight ones), ``extras["finished"]`` [N] and ``extras["window_start"]`` [N] (the response length
before this window). The critic's values for every response token are the trainer's, as for PPO.

The in-flight set is the method's state (``init_state`` / ``update_state`` of ``tppo.py``): per
slot its prompt, example index, response tokens, length and log-probs, and whether it is in flight.
The trainer checkpoints it with the run, so a killed run resumes mid-response.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from jaxrl_llm.rollouts import group, reset
from jaxrl_llm.rollouts.base import Context, Kind, score_texts
from jaxrl_llm.types import Rollout


def refill(ctx: Context, state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The in-flight set with every empty slot (``active == 0``) given the next prompt of the
    task stream and an empty response; returns ``(state, number of slots refilled)``."""
    st = {k: np.array(v) for k, v in state.items()}
    empty = np.flatnonzero(st["active"] == 0)
    if empty.size == 0:
        return st, 0
    examples, ids = group.draw_from_stream(ctx, int(empty.size), None, state)
    tokens, mask = ctx.policy.encode_prompts(examples)
    width = st["prompt_tokens"].shape[1]
    if tokens.shape[1] > width:
        raise ValueError(
            f"window: prompts of {tokens.shape[1]} tokens > algo.max_prompt_len={width}; raise it (with task.max_prompt_len)"
        )
    pad = width - tokens.shape[1]
    st["prompt_tokens"][empty] = np.pad(tokens, ((0, 0), (pad, 0)), constant_values=ctx.policy.pad_id)
    st["prompt_mask"][empty] = np.pad(mask, ((0, 0), (pad, 0)))
    st["prompt_ids"][empty] = ids
    st["tokens"][empty] = ctx.policy.pad_id
    for k in ("lengths", "sampler_logprobs", "policy_logprobs"):
        st[k][empty] = 0
    return st, int(empty.size)


def advance(
    ctx: Context,
    prompt_tokens: np.ndarray,
    prompt_mask: np.ndarray,
    tokens: np.ndarray,
    lengths: np.ndarray,
    sampler_logprobs: np.ndarray,
    policy_logprobs: np.ndarray,
    key: jax.Array,
    window: int,
) -> dict[str, np.ndarray]:
    """Every row's partial response continued by at most ``window`` tokens under the policy's
    current params: the carry shared by the window rollouts and the off-policy trainer's partial
    rollouts (``jaxrl_llm/offpolicy.py``).

    ``tokens`` [N, T] holds each row's response so far (its first ``lengths`` [N] tokens, the
    prefix the sampler continues from); ``sampler_logprobs`` / ``policy_logprobs`` [N, T] those
    tokens' log-probs under the versions that sampled them. Returns ``reset.splice``'s arrays
    (``new`` marks this window's tokens) with ``sampler_logprobs`` / ``policy_logprobs`` of the
    whole response: earlier tokens' kept, this window's from the current params, and
    ``finished`` [N] (a stop token was kept, or the response reached ``T``)."""
    T = tokens.shape[1]
    pos = np.arange(T)[None]
    prefix_mask = (pos < lengths[:, None]).astype(np.int32)
    out = reset.continue_rows(ctx, prompt_tokens, prompt_mask, tokens, prefix_mask, key, window)
    s = reset.splice(out, T)
    earlier = prefix_mask.astype(np.float32)  # [N, T] tokens of earlier windows
    s["sampler_logprobs"] = sampler_logprobs * earlier + s["logprobs"]
    s["policy_logprobs"] = policy_logprobs * earlier + s["policy_logprobs"]
    s["finished"] = s["stopped"] | (s["lengths"] >= T)
    return s


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """One window of every in-flight sequence (module docstring)."""
    a = ctx.algo_cfg
    st, refilled = refill(ctx, state)
    N, T = st["tokens"].shape
    pos = np.arange(T)[None]
    start = st["lengths"]  # [N] response length before this window
    t0 = time.perf_counter()
    s = advance(
        ctx,
        st["prompt_tokens"],
        st["prompt_mask"],
        st["tokens"],
        start,
        st["sampler_logprobs"],
        st["policy_logprobs"],
        key,
        a.window,
    )
    sample_time = time.perf_counter() - t0
    lengths, finished = s["lengths"], s["finished"]  # [N]
    t0 = time.perf_counter()
    rewards, reward_metrics = np.zeros(N, np.float32), {"reward/failures": 0.0}
    done = np.flatnonzero(finished)
    if done.size:
        examples = [ctx.task.train_example(int(st["prompt_ids"][b])) for b in done]
        scored = score_texts(ctx, ctx.policy.decode(s["tokens"][done], lengths[done]), examples)
        rewards[done], reward_metrics = scored.rewards, scored.metrics
    window = s["new"]  # [N, T] this step's tokens: the only ones in the policy loss
    rollout = Rollout(
        prompt_tokens=st["prompt_tokens"].astype(np.int32),
        prompt_mask=st["prompt_mask"].astype(np.int32),
        tokens=s["tokens"],
        mask=(pos < lengths[:, None]).astype(np.float32),
        loss_mask=window,
        rewards=rewards,
        group_ids=np.arange(N, dtype=np.int32),
        prompt_ids=st["prompt_ids"].astype(np.int32),
        lengths=lengths.astype(np.int32),
        sampler_logprobs=s["sampler_logprobs"],
        policy_logprobs=s["policy_logprobs"],
        extras={"finished": finished.astype(np.float32), "window_start": start.astype(np.int32)},
        group_size=1,
    )
    metrics = {
        "window/finished": float(finished.mean()),
        "window/refilled": float(refilled),
        "window/new_tokens": float(window.sum()),
        "window/response_len": float(lengths.mean()),
        "entropy": float((s["entropies"] * window).sum() / max(window.sum(), 1.0)),
        "time/sample": sample_time,
        "time/reward": time.perf_counter() - t0,
        **reward_metrics,
    }
    if done.size:
        metrics.update(
            {
                "reward/mean": float(rewards[done].mean()),
                "reward/finished_sum": float(rewards[done].sum()),
                "completion_len/mean": float(lengths[done].mean()),
            }
        )
    return rollout, metrics


KIND = Kind(name="window", collect=collect)
