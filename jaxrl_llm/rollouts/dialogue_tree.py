"""``dialogue_tree``: DialTree-RPO's breadth-limited dialogue tree against a frozen target.

Tree rollout of Guo et al. 2025, "Tree-based Dialogue Reinforced Policy Optimization for
Red-Teaming Attacks", https://arxiv.org/abs/2510.02286 (Sec. 3.2): per goal, the frontier starts at
the root (the goal's prompt); at each turn t = 1..T_max every live state samples n attacker turns
(``algo.branching``, from the state's KV cache: ``sampling.cached.fork``, nothing recomputed), the
target answers each child's query, and each child is

  1. a LEAF with R = 1 when the guard scores the reply above ``eta`` (jailbroken);
  2. PRUNED when malformed (no ``<T>`` plan or no ``<Q>`` query) or off-topic;
  3. otherwise live: at most ``algo.width`` live children per goal survive (random subsample),
     their replies appended as user messages (prefilled on top of the cache).

Live states at depth T_max are leaves with R = 0. Every root-to-leaf path is a trajectory; at most
G = ``train.group_size`` per goal are kept (random subsample); a goal with fewer gets inert rows
(``traj_valid`` 0, empty masks). The target, guard and topic check are the SAFE scripted stand-ins
of ``jaxrl_llm.games.redteam`` (the paper's frozen Llama target, HarmAug-Guard and NLI filter are
not available offline); goals are drawn from the step's key.

Rows: one per trajectory, ``B = P * G`` group-major: ``prompt_tokens`` the goal prompt,
``tokens`` [B, W] the attacker turns and target replies, W = T_max * (``sampling.max_new_tokens`` +
``algo.max_reply_tokens``); ``loss_mask`` 1 on attacker tokens. Extras: ``format_mask`` [B, W]
(tokens overlapping a format tag), ``traj_valid`` [B], ``depth`` [B]. Metrics ``dialtree/*``:
success (goals with a jailbroken leaf), malformed and off-topic rates of sampled turns, leaves,
target queries per success.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from jaxrl_llm.games import redteam
from jaxrl_llm.policy import left_pad, right_pad
from jaxrl_llm.rollouts import episode, tree
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.rollouts.group import rollout_metrics
from jaxrl_llm.sampling import bucket_length, cached
from jaxrl_llm.types import Rollout


@dataclasses.dataclass
class Node:
    """A dialogue state: its path as token lists, the target's state, and how it ended."""

    goal: int
    tokens: list[int] = dataclasses.field(default_factory=list)
    policy: list[bool] = dataclasses.field(default_factory=list)
    fmt: list[bool] = dataclasses.field(default_factory=list)
    logprobs: list[float] = dataclasses.field(default_factory=list)
    policy_logprobs: list[float] = dataclasses.field(default_factory=list)
    target: Any = None
    depth: int = 0
    reward: float = 0.0


def format_tokens(tokenizer, ids, tags=redteam.FORMAT_TAGS) -> list[bool]:
    """Per token of ``ids``: does its text overlap a format tag of the decoded turn?"""
    ends = [len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True)) for k in range(len(ids))]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    spans = [(m, m + len(t)) for t in tags for m in _find_all(text, t)]
    starts = [0] + ends[:-1]
    return [any(s < hi and lo < e for lo, hi in spans) for s, e in zip(starts, ends)]


def _find_all(text: str, sub: str) -> list[int]:
    out, i = [], text.find(sub)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """P goals, a dialogue tree each, one row per kept root-to-leaf path (module docstring)."""
    a, policy = ctx.algo_cfg, ctx.policy
    P, G, n, w = ctx.cfg.train.prompts_per_step, ctx.cfg.train.group_size, a.branching, a.width
    n_new = ctx.cfg.sampling.max_new_tokens
    W = a.max_turns * (n_new + a.max_reply_tokens)
    seeds = episode.train_seeds(jax.random.fold_in(key, 1), P)
    goals = [redteam.goal(s) for s in seeds]
    pieces = episode.ChatPieces(policy.tokenizer)
    prompts = [pieces.first(g.instructions, "Start the conversation.") for g in goals]
    prompt_tokens, prompt_mask = left_pad(prompts, bucket_length(max(len(p) for p in prompts)), policy.pad_id)
    model, scfg = tree.sampling_model(ctx), dataclasses.replace(tree.sampling_config(ctx), max_new_tokens=n_new)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(jax.random.fold_in(key, 2))).ravel())
    # frontier: P * w slots (static), slot g * w + j; only the root slot of each goal is live at first
    frontier = [Node(goal=g, target=redteam.Target(goals[g])) if j == 0 else None for g in range(P) for j in range(w)]
    t0 = time.perf_counter()
    session = cached.prefill(model, np.repeat(prompt_tokens, w, 0), np.repeat(prompt_mask, w, 0))
    sample_time, target_time = time.perf_counter() - t0, 0.0
    leaves: list[Node] = []
    counts = {"turns": 0, "malformed": 0, "off_topic": 0, "queries": 0}
    for t in range(a.max_turns):
        live = np.asarray([nd is not None for nd in frontier])
        if not live.any():
            break
        t0 = time.perf_counter()
        kids = cached.fork(session, np.arange(P * w), n)  # child c = slot (c // n), draw c % n
        out, kids = cached.decode(model, kids, jax.random.fold_in(key, 10 + t), scfg, active=np.repeat(live, n))
        out = {k: np.asarray(v) for k, v in vars(out).items() if isinstance(v, jax.Array)}
        sample_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        survivors: list[list[tuple[int, Node, list[int]]]] = [[] for _ in range(P)]
        for c in np.flatnonzero(np.repeat(live, n)):
            parent, m = frontier[c // n], int(out["lengths"][c])
            ids = out["tokens"][c, :m]
            child = dataclasses.replace(
                parent,
                tokens=parent.tokens + ids.tolist(),
                policy=parent.policy + [True] * m,
                fmt=parent.fmt + format_tokens(policy.tokenizer, ids),
                logprobs=parent.logprobs + out["logprobs"][c, :m].tolist(),
                policy_logprobs=parent.policy_logprobs + out["policy_logprobs"][c, :m].tolist(),
                depth=t + 1,
            )
            counts["turns"] += 1
            query = redteam.parse(policy.tokenizer.decode(ids, skip_special_tokens=True))
            if query is None:
                counts["malformed"] += 1
                continue
            g = goals[parent.goal]
            if not redteam.on_topic(g, query):
                counts["off_topic"] += 1
                continue
            counts["queries"] += 1
            reply, child.target = parent.target.reply(query)
            obs = pieces.after_action(reply, int(ids[-1]) if m else None)[: a.max_reply_tokens]
            child.tokens, child.policy = child.tokens + obs, child.policy + [False] * len(obs)
            child.fmt = child.fmt + [False] * len(obs)
            child.logprobs, child.policy_logprobs = (
                child.logprobs + [0.0] * len(obs),
                child.policy_logprobs + [0.0] * len(obs),
            )
            if redteam.guard_score(g, reply) > a.eta:
                child.reward = 1.0
                leaves.append(child)
            elif t + 1 == a.max_turns:
                leaves.append(child)
            else:
                survivors[parent.goal].append((int(c), child, obs))
        new_frontier: list[Node | None] = [None] * (P * w)
        rows, added = np.zeros(P * w, np.int64), [[] for _ in range(P * w)]
        for g in range(P):
            keep = survivors[g]
            if len(keep) > w:
                keep = [keep[i] for i in sorted(rng.choice(len(keep), w, replace=False))]
            for j, (c, child, obs) in enumerate(keep):
                new_frontier[g * w + j], rows[g * w + j], added[g * w + j] = child, c, obs
        target_time += time.perf_counter() - t0
        frontier = new_frontier
        if any(nd is not None for nd in frontier):
            t0 = time.perf_counter()
            session = cached.fork(kids, rows)
            tokens, mask = right_pad(added, max(max(len(x) for x in added), 1), policy.pad_id)
            session = cached.extend(model, session, tokens, mask)
            sample_time += time.perf_counter() - t0
    rollout = _rows(ctx, leaves, goals, seeds, prompt_tokens, prompt_mask, G, W, rng)
    metrics = rollout_metrics(rollout, ctx.cfg.eval.correct_threshold)
    wins = {nd.goal for nd in leaves if nd.reward > 0}
    metrics.update(
        {
            "time/sample": sample_time,
            "time/reward": target_time,
            "reward/failures": 0.0,
            "dialtree/success": len(wins) / P,
            "dialtree/malformed_frac": counts["malformed"] / max(counts["turns"], 1),
            "dialtree/off_topic_frac": counts["off_topic"] / max(counts["turns"], 1),
            "dialtree/leaves": float(len(leaves)),
            "dialtree/queries_per_success": counts["queries"] / len(wins) if wins else float("nan"),
            "dialtree/valid_rows": float(np.sum(rollout.extras["traj_valid"])),
        }
    )
    return rollout, metrics


def _rows(ctx, leaves, goals, seeds, prompt_tokens, prompt_mask, G, W, rng) -> Rollout:
    P, pad = len(goals), ctx.policy.pad_id
    rows: list[Node | None] = []
    for g in range(P):
        mine = [nd for nd in leaves if nd.goal == g]
        if len(mine) > G:
            mine = [mine[i] for i in sorted(rng.choice(len(mine), G, replace=False))]
        rows.extend(mine + [None] * (G - len(mine)))
    seqs = lambda f, fill: [getattr(nd, f)[:W] if nd is not None else [] for nd in rows]
    tokens, mask = right_pad(seqs("tokens", pad), W, pad)
    per_token = lambda f: np.stack([np.pad(np.asarray(s, np.float32), (0, W - len(s))) for s in seqs(f, 0.0)])
    return Rollout(
        prompt_tokens=np.repeat(prompt_tokens, G, 0),
        prompt_mask=np.repeat(prompt_mask, G, 0),
        tokens=tokens,
        mask=mask,
        loss_mask=per_token("policy"),
        rewards=np.asarray([nd.reward if nd is not None else 0.0 for nd in rows], np.float32),
        group_ids=np.repeat(np.arange(P, dtype=np.int32), G),
        prompt_ids=np.repeat(np.asarray(seeds, np.int64) % (1 << 31), G).astype(np.int32),
        lengths=np.asarray([min(len(nd.tokens), W) if nd is not None else 0 for nd in rows], np.int32),
        sampler_logprobs=per_token("logprobs"),
        policy_logprobs=per_token("policy_logprobs"),
        extras={
            "format_mask": per_token("fmt"),
            "traj_valid": np.asarray([nd is not None for nd in rows], np.float32),
            "depth": np.asarray([nd.depth if nd is not None else 0 for nd in rows], np.int32),
        },
        group_size=G,
    )


KIND = Kind(name="dialogue_tree", collect=collect)
