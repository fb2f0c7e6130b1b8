"""``pairs``: preference pairs, as two rows each (the DPO family, P3O, INPO).

A pair is two rows that share a ``group_ids`` value and a prompt (``group_size = 2``, rows
pair-major: row ``2p`` and ``2p + 1`` are pair ``p``); ``extras["chosen"]`` [B] f32 is 1 on the
preferred row ``y_w`` and 0 on ``y_l``, and ``rewards`` holds the judge's scores. Pairs come from:

* static pairs: the ``preference`` task's examples carry ``chosen`` / ``rejected`` texts in their
  metadata; each becomes [chosen row, rejected row] (completion = the text's tokens + EOS, cut at
  ``sampling.max_new_tokens``; rewards 1 / 0; no sampler log-probs, so the trainer recomputes
  pi_old);
* on-policy pairs: ``K = train.group_size`` samples per prompt from the current policy, ranked by
  a judge (``judges.rank_groups``: best = chosen, worst = rejected). A tie (no preference) keeps
  its rows for static shapes but, when the method asks (``Pairing.drop_ties``), with
  ``loss_mask`` zeroed, so it counts in no loss (``pairs/tied``).

Which source and judge: the method's ``pairing(cfg) -> judges.pairing.Pairing`` hook (default: static pairs when
every drawn example has them, else on-policy pairs judged by the task's verifiable reward,
the rollout's ``rewards``, as ``judges.rule.RuleJudge(ctx.score)`` would score them).

Pairs stay whole in every micro-batch: ``judges.pairing.check_pairs_config`` (call it from the method's
``check_config``) requires minibatches of whole groups (``train.share_prompt`` when
``train.num_minibatches > 1``) and an even ``train.micro_batch_size``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxrl_llm.judges import base as judge_base
from jaxrl_llm.judges import pairing as pairing_lib
from jaxrl_llm.judges.pairing import Pairing
from jaxrl_llm.policy import right_pad
from jaxrl_llm.rollouts import group
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.types import Example, Rollout


def has_pair(example: Example) -> bool:
    return "chosen" in example.metadata and "rejected" in example.metadata


def static_pairs(ctx: Context, examples: Sequence[Example], ids: np.ndarray) -> Rollout:
    """Rows [chosen, rejected] of each example's stored pair (module docstring)."""
    missing = [e.id for e in examples if not has_pair(e)]
    if missing:
        raise ValueError(f"pairs: examples {missing[:3]} have no 'chosen'/'rejected' pair in their metadata")
    p = ctx.policy
    T = ctx.cfg.sampling.max_new_tokens
    eos = p.eos_ids[:1]
    texts = [t for e in examples for t in (e.metadata["chosen"], e.metadata["rejected"])]
    for t, e in zip(texts, [e for e in examples for _ in range(2)]):
        if not isinstance(t, str):
            raise ValueError(f"pairs: example {e.id!r} has a non-text chosen/rejected ({type(t).__name__})")
    seqs = [p.encode_text(t) + eos for t in texts]
    tokens, mask = right_pad(seqs, T, p.pad_id)
    prompt_tokens, prompt_mask = p.encode_prompts(examples)
    P = len(examples)
    return Rollout(
        prompt_tokens=np.repeat(prompt_tokens, 2, axis=0).astype(np.int32),
        prompt_mask=np.repeat(prompt_mask, 2, axis=0).astype(np.int32),
        tokens=tokens,
        mask=mask,
        loss_mask=mask.copy(),
        rewards=np.tile(np.asarray([1.0, 0.0], np.float32), P),
        group_ids=np.repeat(np.arange(P, dtype=np.int32), 2),
        prompt_ids=np.repeat(np.asarray(ids, np.int32), 2),
        lengths=mask.sum(axis=1).astype(np.int32),
        extras={
            "chosen": np.tile(np.asarray([1.0, 0.0], np.float32), P),
            "truncated": np.asarray([len(s) > T for s in seqs], np.float32),
        },
        group_size=2,
    )


def select_pairs(
    samples: Rollout, best: np.ndarray, worst: np.ndarray, scores: np.ndarray, keep: np.ndarray
) -> Rollout:
    """Rows ``[best_p, worst_p]`` of each group of ``samples`` as a pair rollout; ``keep`` [P] False
    zeroes a pair's ``loss_mask``. ``rewards`` become the judge's ``scores``."""
    rows = np.stack([best, worst], axis=1).reshape(-1)  # [2P]
    P = len(best)
    out = jax.tree.map(lambda x: np.asarray(x)[rows], samples.replace(rewards=np.asarray(scores, np.float32)))
    loss_mask = out.loss_mask if out.loss_mask is not None else out.mask
    loss_mask = np.where(np.repeat(keep, 2)[:, None], loss_mask, 0).astype(np.float32)
    return out.replace(
        loss_mask=loss_mask,
        group_ids=np.repeat(np.arange(P, dtype=np.int32), 2),
        group_size=2,
        extras={**out.extras, "chosen": np.tile(np.asarray([1.0, 0.0], np.float32), P)},
    )


def policy_pairs(
    ctx: Context, examples: list[Example], ids: np.ndarray, key: jax.Array, state: Any, pairing: Pairing
) -> tuple[Rollout, dict[str, float]]:
    """K samples per prompt (``group.sample_round``), ranked by the judge into one pair each."""
    samples, metrics = group.sample_round(ctx, examples, ids, key, state, group.encode_shared)
    metrics.update(group.rollout_metrics(samples, ctx.cfg.eval.correct_threshold))
    K = samples.group_size
    t0 = time.perf_counter()
    row_examples = [e for e in examples for _ in range(K)]
    if pairing.judge is None:  # the task's verifiable reward, already computed by the sampling round
        scores = np.asarray(samples.rewards, np.float32)
        best, worst, decisive = judge_base.rank_scores(scores, K)
    else:
        completions = ctx.policy.decode(samples.tokens, samples.lengths)
        t_judge = time.perf_counter()
        best, worst, scores, decisive = judge_base.rank_groups(pairing.judge, row_examples, completions, K)
        metrics["time/judge"] = time.perf_counter() - t_judge  # inside time/reward; logged on its own too
    metrics["time/reward"] += time.perf_counter() - t0
    keep = decisive if pairing.drop_ties else np.ones_like(decisive)
    metrics["pairs/tied"] = float((~decisive).mean())
    metrics["pairs/score_gap"] = float((scores[best] - scores[worst]).mean())
    return select_pairs(samples, best, worst, scores, keep), metrics


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """``train.prompts_per_step`` pairs: static or on-policy (module docstring)."""
    hook = ctx.algo.hooks.get("pairing")
    pairing = hook(ctx.algo_cfg) if hook is not None else Pairing()
    P = ctx.cfg.train.prompts_per_step
    examples, ids = group.draw_from_stream(ctx, P, jax.random.fold_in(key, 1), state)
    static = pairing.source == "static" or (pairing.source == "auto" and all(has_pair(e) for e in examples))
    if not static:
        return policy_pairs(ctx, examples, ids, key, state, pairing)
    rollout = static_pairs(ctx, examples, ids)
    metrics = {"time/sample": 0.0, "time/reward": 0.0, "reward/failures": 0.0}
    metrics["pairs/truncated"] = float(rollout.extras["truncated"].mean())
    metrics["completion_len/mean"] = float(rollout.lengths.mean())
    return rollout, metrics


KIND = Kind(name="pairs", collect=collect, hooks=("pairing",))


# ------------------------------------------------------------------------------------------------
# ``pref_groups``: on-policy groups mixed with static preference groups (GEPO)


def stored_group(example: Example, n_winners: int, n_losers: int) -> tuple[list[str], list[str]]:
    """The first ``n_winners`` of ``metadata["chosen"]`` and ``n_losers`` of ``metadata["rejected"]``
    (each a text or a list of texts). A malformed entry (not text, too few) is a ``ValueError``
    naming the example."""
    out = []
    for key, n in (("chosen", n_winners), ("rejected", n_losers)):
        value = example.metadata[key]
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"pref_groups: example {example.id!r}: {key!r} must be a text or a list of texts")
        if len(texts) < n:
            raise ValueError(
                f"pref_groups: example {example.id!r} has {len(texts)} {key!r} texts, the method needs {n}"
            )
        out.append(list(texts[:n]))
    return out[0], out[1]


def draw_static_groups(
    ctx: Context, num_groups: int, n_winners: int, n_losers: int, key: jax.Array
) -> tuple[list[Example], list[tuple[list[str], list[str]]]]:
    """``num_groups`` static groups from training examples drawn with ``key`` (the data stream is
    not advanced): the stored group of a ``preference`` example, else a verifier-labelled group of
    a verifiable task (``judges.pairing.verifiable_group``)."""
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    order = np.random.default_rng(seed).permutation(ctx.task.num_train)
    examples, groups = [], []
    for i in order:
        e = ctx.task.train_example(int(i))
        group_texts = (
            stored_group(e, n_winners, n_losers)
            if has_pair(e)
            else pairing_lib.verifiable_group(e, n_winners, n_losers, ctx.score)
        )
        if group_texts is not None:
            examples.append(e)
            groups.append(group_texts)
        if len(groups) == num_groups:
            return examples, groups
    raise ValueError(
        f"pref_groups: the task yields {len(groups)} preference groups of {n_winners} winners and "
        f"{n_losers} losers, the method needs {num_groups} per step"
    )


def collect_pref_groups(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """``train.prompts_per_step x train.group_size`` on-policy rows (verifiable reward), then the
    method's ``groups_per_step`` static groups of ``n_winners`` + ``n_losers`` rows;
    ``extras["gepo_role"]`` 0 / +1 / -1 (``algorithms/gepo.py``)."""
    cfg, P = ctx.algo_cfg, ctx.cfg.train.prompts_per_step
    n, m, Q = cfg.n_winners, cfg.n_losers, cfg.groups_per_step
    examples, ids = group.draw_from_stream(ctx, P, jax.random.fold_in(key, 1), state)
    samples, metrics = group.sample_round(ctx, examples, ids, key, state, group.encode_shared)
    metrics.update(group.rollout_metrics(samples, ctx.cfg.eval.correct_threshold))
    t0 = time.perf_counter()
    static_examples, texts = draw_static_groups(ctx, Q, n, m, jax.random.fold_in(key, 2))
    p = ctx.policy
    T = samples.tokens.shape[1]
    eos = p.eos_ids[:1]
    seqs = [p.encode_text(t) + eos for w, lo in texts for t in (*w, *lo)]
    tokens, mask = right_pad(seqs, T, p.pad_id)
    prompt_tokens, prompt_mask = p.encode_prompts(static_examples)
    k = n + m
    role = np.tile(np.asarray([1.0] * n + [-1.0] * m, np.float32), Q)
    G = samples.group_size
    on_rows = samples.tokens.shape[0]
    cat = lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)], axis=0)
    rollout = Rollout(
        prompt_tokens=group.pad_cat([samples.prompt_tokens, np.repeat(prompt_tokens, k, axis=0)]).astype(np.int32),
        prompt_mask=group.pad_cat([samples.prompt_mask, np.repeat(prompt_mask, k, axis=0)]).astype(np.int32),
        tokens=cat(samples.tokens, tokens).astype(np.int32),
        mask=cat(samples.mask, mask).astype(np.float32),
        loss_mask=cat(samples.loss_mask if samples.loss_mask is not None else samples.mask, mask).astype(np.float32),
        rewards=cat(samples.rewards, (role > 0).astype(np.float32)),
        group_ids=cat(samples.group_ids, P + np.repeat(np.arange(Q, dtype=np.int32), k)).astype(np.int32),
        prompt_ids=cat(samples.prompt_ids, np.full(Q * k, -1, np.int32)).astype(np.int32),
        lengths=cat(samples.lengths, mask.sum(axis=1)).astype(np.int32),
        extras={"gepo_role": cat(np.zeros(on_rows, np.float32), role)},
        # Runs of gcd(G, k) rows share one prompt (an on-policy group of G holds G / gcd of them,
        # a static group of k holds k / gcd), so the update computes a prompt once per run.
        group_size=math.gcd(G, k),
    )
    metrics["time/reward"] += time.perf_counter() - t0
    metrics["gepo/static_truncated"] = float(np.mean([len(s) > T for s in seqs]))
    return rollout, metrics


GROUPS_KIND = Kind(name="pref_groups", collect=collect_pref_groups)
