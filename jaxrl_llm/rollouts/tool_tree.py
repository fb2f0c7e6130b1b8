"""``tool_tree``: tool-using rollouts that branch after tool results when the entropy rises (ARPO).

Agentic Reinforced Policy Optimization's entropy-based adaptive rollout (Dong et al. 2025, "Agentic
Reinforced Policy Optimization", https://arxiv.org/abs/2507.19849; code
https://github.com/dongguanting/ARPO, ``vllm_rollout_with_tools.py``). Per prompt a budget of
M = ``train.group_size`` trajectories: N = ``algo.initial_rollouts`` start from the prompt; each
round every active trajectory samples a segment of at most ``sampling.max_new_tokens`` tokens. A
segment that completes a tool's closing tag (``env.tools``) is cut there, the tool runs and
``<output>\\n{result}\\n</output>\\n`` is appended (out of the loss); then the trajectory may BRANCH:

    H_seg  = (sum_{first k tokens} sum_{top-10 v} -exp(l_v) l_v) / ln|V|       (top-k entropy proxy)
    dH     = H_seg - H_init      (H_init: the trajectory's first segment's H_seg)
    branch iff clip(u - beta_H * dH, 0, 1) <= alpha,  u ~ U(0, 1)  (P(branch) = clip(alpha + beta_H dH))

at most ``beam_size - 1`` times per round per trajectory and while the prompt has unused slots. A
branch copies the trajectory, tool result included, and continues from its parent's KV cache
(``sampling.cached.fork``: nothing recomputed). A segment without a tool call ends the trajectory
(as do the token budget and ``env.max_tool_calls``). A prompt whose trajectories have all ended
starts one fresh trajectory per round until its M slots are used.

Static shapes: the session holds P * M rows from the start (each prefilled with its prompt);
unused slots are inactive rows until a branch or a refill takes them. Row width
W = ``episode.turn_width(ctx)`` (the segments and tool results of one trajectory).

Rows: one per trajectory, ``B = P * M``, group-major (``group_size = M``); ``tokens`` the response
(policy segments and tool results), ``loss_mask`` 1 on the policy's tokens. ``rewards``: the task's
reward of the policy's own text (tool results are left out, so a tool's printout is never read as
the answer). Extras: ``shared_prefix`` [B, M] (tokens row b shares with each row of its group
through the branching: its own length on the diagonal, 0 between independent trajectories; what
ARPO's hard advantage attribution needs), ``branch_parent`` [B] (the row it was forked from, -1),
``branch_pos`` [B], ``tool_calls`` [B]. Metrics: ``arpo/tool_calls`` (per trajectory),
``arpo/tool_calls_per_solved``, ``arpo/branches``, ``arpo/branch_entropy_delta`` (mean dH where a
branch was made), ``arpo/sampled_tokens``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import numpy as np

from jaxrl_llm.envs import tools as tools_lib
from jaxrl_llm.policy import right_pad
from jaxrl_llm.rollouts import episode, tree
from jaxrl_llm.rollouts.base import Context, Kind, score_texts
from jaxrl_llm.rollouts.group import draw_from_stream, rollout_metrics
from jaxrl_llm.sampling import cached
from jaxrl_llm.types import Rollout


def segment_entropy(top_logprobs: np.ndarray, num_tokens: int, vocab_size: int) -> float:
    """ARPO's entropy proxy of a segment: ``sum`` over its first ``num_tokens`` tokens of the top-k
    entropy ``sum_v -exp(l_v) l_v`` (``top_logprobs`` [n, k]), over ``ln |V|``. A sum, not a mean,
    as the official code."""
    lp = np.asarray(top_logprobs, np.float64)[:num_tokens]
    return float(np.sum(-np.exp(lp) * lp) / math.log(vocab_size))


def branch_probability(h_now: float, h_init: float, alpha: float, beta_h: float) -> float:
    """``P(branch) = clip(alpha + beta_H (H_now - H_init), 0, 1)``."""
    return float(np.clip(alpha + beta_h * (h_now - h_init), 0.0, 1.0))


def should_branch(u: float, h_now: float, h_init: float, alpha: float, beta_h: float) -> bool:
    """The code's draw: ``clip(u - beta_H dH, 0, 1) <= alpha`` for ``u ~ U(0, 1)``."""
    return bool(np.clip(u - beta_h * (h_now - h_init), 0.0, 1.0) <= alpha)


@dataclasses.dataclass
class Trajectory:
    """One slot's trajectory as host lists."""

    tokens: list[int] = dataclasses.field(default_factory=list)
    policy: list[bool] = dataclasses.field(default_factory=list)
    logprobs: list[float] = dataclasses.field(default_factory=list)
    policy_logprobs: list[float] = dataclasses.field(default_factory=list)
    parent: int = -1
    branch_pos: int = 0
    h_init: float | None = None
    tool_calls: int = 0
    state: str = "unused"  # "unused", "active" or "done"

    def add(self, ids, policy: bool, lp=None, plp=None) -> None:
        n = len(ids)
        self.tokens.extend(int(i) for i in ids)
        self.policy.extend([policy] * n)
        self.logprobs.extend([0.0] * n if lp is None else [float(x) for x in lp])
        self.policy_logprobs.extend([0.0] * n if plp is None else [float(x) for x in plp])

    def copy_for_branch(self, parent: int) -> Trajectory:
        return Trajectory(
            tokens=list(self.tokens),
            policy=list(self.policy),
            logprobs=list(self.logprobs),
            policy_logprobs=list(self.policy_logprobs),
            parent=parent,
            branch_pos=len(self.tokens),
            tool_calls=self.tool_calls,
            state="active",
        )


def shared_prefix(trajs: list[Trajectory], group_size: int) -> np.ndarray:
    """``[B, M]``: tokens row b shares with row ``(b // M) * M + j`` through the branching.

    A branch shares its parent's first ``branch_pos`` tokens; two rows share
    ``min`` of the branch positions on the path between them in the fork tree (the LCA's tokens up
    to where each line left it); a row shares its whole length with itself; independent roots 0.
    """
    B, M = len(trajs), group_size
    out = np.zeros((B, M), np.int32)

    def chain(b: int) -> dict[int, int]:
        """ancestor -> shared length with b (b itself: its length)."""
        got, shared, node = {b: len(trajs[b].tokens)}, len(trajs[b].tokens), b
        while trajs[node].parent >= 0:
            shared = min(shared, trajs[node].branch_pos)
            node = trajs[node].parent
            got[node] = shared
        return got

    chains = [chain(b) for b in range(B)]
    for b in range(B):
        g = b // M
        for j in range(M):
            c = g * M + j
            common = set(chains[b]) & set(chains[c])
            out[b, j] = max((min(chains[b][a], chains[c][a]) for a in common), default=0)
    return out


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """P prompts, M entropy-branched tool-using trajectories each (module docstring)."""
    a, e, policy = ctx.algo_cfg, ctx.cfg.env, ctx.policy
    P, M = ctx.cfg.train.prompts_per_step, ctx.cfg.train.group_size
    N, n_new, W = a.initial_rollouts, ctx.cfg.sampling.max_new_tokens, episode.turn_width(ctx)
    if not 1 <= N <= M:
        raise ValueError(f"tool_tree: algo.initial_rollouts={N} must lie in [1, train.group_size={M}]")
    tools = tools_lib.make(tuple(e.tools))
    examples, ids = draw_from_stream(ctx, P, jax.random.fold_in(key, 1), state)
    prompt_tokens, prompt_mask = policy.encode_prompts(examples)
    prompt_tokens, prompt_mask = np.repeat(prompt_tokens, M, 0), np.repeat(prompt_mask, M, 0)  # [P*M, Sp]
    B = P * M
    model, scfg = tree.sampling_model(ctx), dataclasses.replace(tree.sampling_config(ctx), max_new_tokens=n_new)
    vocab = model.cfg.vocab_size
    rng = np.random.default_rng(np.asarray(jax.random.key_data(jax.random.fold_in(key, 3))).ravel())
    trajs = [Trajectory(state="active" if b % M < N else "unused") for b in range(B)]
    t0 = time.perf_counter()
    session = cached.prefill(model, prompt_tokens, prompt_mask)
    sample_time, tool_time, sampled, rounds = time.perf_counter() - t0, 0.0, 0, 0
    branch_deltas = []
    while any(t.state == "active" for t in trajs):
        active = np.asarray([t.state == "active" for t in trajs])
        t0 = time.perf_counter()
        out, session = cached.decode(
            model, session, jax.random.fold_in(key, 10 + rounds), scfg, active=active, top_logprobs=a.entropy_top_k
        )
        out = {k: np.asarray(v) for k, v in vars(out).items() if isinstance(v, jax.Array)}
        sample_time += time.perf_counter() - t0
        rounds += 1
        t0 = time.perf_counter()
        keep = np.asarray(jax.device_get(session.lengths)).copy()
        added: list[list[int]] = [[] for _ in range(B)]
        sources = np.arange(B)
        for b in np.flatnonzero(active):
            tr, n = trajs[b], int(out["lengths"][b])
            sampled += n
            seg = out["tokens"][b, :n]
            cut = episode.tool_cut(policy.tokenizer, seg, tools) if tr.tool_calls < e.max_tool_calls else None
            if cut is not None:
                keep[b] -= n - cut[1]
                n = cut[1]
                seg = seg[:n]
            h_now = segment_entropy(out["top_logprobs"][b, :n], a.entropy_tokens, vocab)
            if tr.h_init is None:
                tr.h_init = h_now
            tr.add(seg, True, out["logprobs"][b, :n], out["policy_logprobs"][b, :n])
            if cut is None:
                tr.state = "done"
                continue
            text = policy.tokenizer.decode(seg, skip_special_tokens=True)
            result = _result_ids(policy.tokenizer, tools_lib.run_call(cut[0], text), e.max_tool_output_tokens)
            tr.tool_calls += 1
            if len(tr.tokens) + len(result) + n_new > W:
                tr.state = "done"  # no room to read the result and answer
                continue
            tr.add(result, False)
            added[b] = result
            g = b // M
            for _ in range(a.beam_size - 1):
                free = [s for s in range(g * M, (g + 1) * M) if trajs[s].state == "unused"]
                if not free or not should_branch(rng.uniform(), h_now, tr.h_init, a.alpha, a.beta_h):
                    continue
                trajs[free[0]] = tr.copy_for_branch(int(b))
                sources[free[0]] = b
                added[free[0]] = result
                branch_deltas.append(h_now - tr.h_init)
        for g in range(P):  # a prompt whose trajectories all ended starts a fresh one per round
            rows = range(g * M, (g + 1) * M)
            if not any(trajs[s].state == "active" for s in rows):
                free = [s for s in rows if trajs[s].state == "unused"]
                if free:
                    trajs[free[0]].state = "active"
        tool_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        cut_rows = np.flatnonzero(np.asarray([bool(x) for x in added]) & (sources == np.arange(B)))
        if cut_rows.size:
            session = cached.truncate(session, keep)
        if np.any(sources != np.arange(B)):
            session = cached.fork(session, sources)  # branches continue from their parent's cache
        if any(added):
            tokens, mask = right_pad(added, max(len(x) for x in added), policy.pad_id)
            session = cached.extend(model, session, tokens, mask)
        sample_time += time.perf_counter() - t0
    rollout, reward_metrics = _rows(ctx, trajs, examples, ids, prompt_tokens, prompt_mask, M, W)
    metrics = rollout_metrics(rollout, ctx.cfg.eval.correct_threshold) | reward_metrics
    solved = rollout.rewards >= ctx.cfg.eval.correct_threshold
    calls = rollout.extras["tool_calls"]
    metrics.update(
        {
            "time/sample": sample_time,
            "time/reward": tool_time,
            "arpo/tool_calls": float(calls.mean()),
            "arpo/tool_calls_per_solved": float(calls[solved].mean()) if solved.any() else float("nan"),
            "arpo/branches": float(sum(t.parent >= 0 for t in trajs)),
            "arpo/branch_entropy_delta": float(np.mean(branch_deltas)) if branch_deltas else 0.0,
            "arpo/sampled_tokens": float(sampled),
        }
    )
    return rollout, metrics


def _result_ids(tokenizer, result: str, cap: int) -> list[int]:
    """``<output>\\n{result}\\n</output>\\n`` as ids, the result cut so the whole fits ``cap``."""
    enc = lambda s: list(tokenizer(s, add_special_tokens=False)["input_ids"])
    head, tail = enc(tools_lib.OUTPUT_OPEN), enc(tools_lib.OUTPUT_CLOSE)
    return head + enc(result)[: max(cap - len(head) - len(tail), 0)] + tail


def _rows(ctx, trajs, examples, ids, prompt_tokens, prompt_mask, M, W) -> tuple[Rollout, dict[str, float]]:
    """The rows and the scoring's metrics (``reward/failures``, ``reward/<fn>``)."""
    pad, B = ctx.policy.pad_id, len(trajs)
    tokens, mask = right_pad([t.tokens for t in trajs], W, pad)
    rows = lambda f: np.stack(
        [np.pad(np.asarray(getattr(t, f), np.float32)[:W], (0, W - min(len(t.tokens), W))) for t in trajs]
    )
    own = [[tok for tok, p in zip(t.tokens, t.policy) if p] for t in trajs]
    texts = ctx.policy.decode(right_pad(own, W, pad)[0], np.asarray([len(o) for o in own]))
    scored = score_texts(ctx, texts, [examples[b // M] for b in range(B)])
    rollout = Rollout(
        prompt_tokens=prompt_tokens,
        prompt_mask=prompt_mask,
        tokens=tokens,
        mask=mask,
        loss_mask=rows("policy"),
        rewards=scored.rewards,
        group_ids=np.repeat(np.arange(B // M, dtype=np.int32), M),
        prompt_ids=np.repeat(np.asarray(ids, np.int32), M),
        lengths=np.asarray([min(len(t.tokens), W) for t in trajs], np.int32),
        sampler_logprobs=rows("logprobs"),
        policy_logprobs=rows("policy_logprobs"),
        extras={
            "shared_prefix": np.minimum(shared_prefix(trajs, M), W),
            "branch_parent": np.asarray([t.parent for t in trajs], np.int32),
            "branch_pos": np.asarray([t.branch_pos for t in trajs], np.int32),
            "tool_calls": np.asarray([t.tool_calls for t in trajs], np.float32),
        },
        group_size=M,
    )
    return rollout, scored.metrics


KIND = Kind(name="tool_tree", collect=collect)
