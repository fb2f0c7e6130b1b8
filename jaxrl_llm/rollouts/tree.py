"""``tree``: rollout trees grown from the parent's KV cache, one training row per edge.

Segment Policy Optimization's tree sampling (Guo et al., "Segment Policy Optimization: Effective
Segment-Level Credit Assignment in RL for Large Language Models", https://arxiv.org/abs/2505.23564;
code https://github.com/AIFrameResearch/SPO, ``tree_episode_generator.py``): each prompt is the
root of a tree of depth D = ``len(branching)``; every node at depth d < D gets ``branching[d]``
children, each a SEGMENT of at most M = ``segment_len`` tokens sampled after the node's path; the
last level's segments may run to ``last_segment_len`` tokens. A child that stops for any reason
other than length (a stop token) is a leaf; so is every node at depth D. Leaves are scored with
the task's reward; node values are computed bottom-up,

    V(leaf) = R(path),    V(n) = mean_{c in children(n)} V(c)

(the recursive mean of the code, which differs from the mean of the leaves below ``n`` when a
branch ends early), and every edge (parent p -> child c) becomes one training row.

Branches start from the parent's cache: the P prompts are prefilled once
(``sampling.cached.prefill``), each level forks the previous level's sessions ``branching[d]``
times (``cached.fork``: cache rows copied, nothing recomputed) and decodes the children's segments
(``cached.decode``, which also feeds them, so the next level forks from the children's caches).
Shapes are static: a level has P * prod(branching[:d+1]) rows; children of leaves are inactive rows.

A row (edge p -> c): the prompt, then the path of c (its ancestors' segments, M tokens each, then
c's own segment) as ``tokens`` [W] with W = (D - 1) * M + ``last_segment_len``; ``mask`` is 1 on the
path (the model attends to it), ``loss_mask`` 1 on c's segment tokens whose probability under the
sampling policy is below ``prob_threshold`` (SPO's probability mask: the code drops
``exp(old_logp) >= 0.9`` tokens from the loss). Group structure is data in ``extras``:
``node_ids`` / ``parent_ids`` [B] (``group_ids`` = ``parent_ids``: siblings share a group;
``rewards`` = V(c), the leaf's reward at leaves),
``node_values`` V(c), ``parent_values`` V(p), ``sibling_std`` (population std of V over p's
children), ``depth``, ``tree_mask`` / ``segment_mask`` [B, W] (the attention mask and c's segment,
kept because the loss batch replaces ``mask`` by ``loss_mask``).

Replay: the method's ``select_edges(state, rollout, key, cfg) -> (take [E] bool, replay_slots [R],
eligible [E] bool)`` hook picks which of the E new edges (every non-root node: ``edge_rows``) train
now, which buffered edges of its state replay, and which new edges may be trained at all (SPO:
valid, with a kept token and, with ``drop_zero_adv``, ``A != 0``; only those are buffered) (SPO's
on-policy edge buffer, ``algorithms/spo_tree.py``).

The batch holds only rows that can train (``training_rows``): the taken new edges and inert copies
of one, ``min(E, P * edges_per_question)`` rows (the most a step can take), then the R replay rows
rebuilt from the state (``buffer_slot`` >= 0; unused replay rows are inert copies); more inert
copies round the count up to a multiple of ``train.num_minibatches * train.micro_batch_size``. Not
a row per potential edge: the update runs a forward and backward pass over every row's prompt and
path, so its memory grew with the trees (branching (6, 6, 6), 2 prompts of 192 tokens, W = 316: 580
rows, of which at most 128 could train, at ~38 MB of activations a row with the 0.3M-parameter
``tiny`` model, ~22 GB in one pass). Every new edge still reaches the method's buffer:
``extras["step_edges"]`` holds the E edges' ``EDGE_FIELDS`` and ``pending`` (1 on the eligible
edges not taken), packed [rows, k, ...] (``pack_edges``) so that they follow the
batch's rows. The method's ``update_state`` then pushes the pending edges and removes the replayed
ones.

The method's config must carry ``branching``, ``segment_len``, ``last_segment_len``,
``prob_threshold`` and ``edges_per_question``. Metrics: ``tree/sampled_tokens`` (every token
decoded), ``tree/prefill_time``, ``tree/decode_time``, ``tree/prefill_frac``, ``tree/leaves``,
``tree/edges``, ``tree/edges_trained``, ``tree/replayed``, reward and length statistics of the leaves.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import sampling
from jaxrl_llm.rollouts.base import Context, Kind, score_texts
from jaxrl_llm.rollouts.group import draw_from_stream, pad_cat
from jaxrl_llm.sampling import cached
from jaxrl_llm.types import Example, Rollout

# What a method's edge buffer may keep of a new edge: ``edge_rows``' per-edge arrays (fields and
# extras) that ride along with the training rows in ``extras["step_edges"]``.
EDGE_FIELDS = (
    "tokens",
    "tree_mask",
    "segment_mask",
    "policy_logprobs",
    "sampler_logprobs",
    "node_values",
    "parent_values",
    "sibling_std",
    "depth",
    "lengths",
    "prompt_ids",
)


@dataclasses.dataclass
class Tree:
    """A forest of P trees as host arrays over N nodes (roots first: node ``i < P`` is the root of
    prompt i; then level 1, level 2, ...: a level's nodes are parent-major).

    parent [N] int32 (-1 for roots); root [N]; depth [N]; valid [N] bool (the node was sampled);
    leaf [N] bool; path_tokens / path_mask / segment_mask / logprobs / policy_logprobs [N, W]
    (the node's path; its own segment's columns; the sampler's log q / log pi on them);
    lengths [N] path lengths; rewards [N] (leaves; NaN elsewhere); values [N] (valid nodes);
    sampled_tokens, prefill_time, decode_time: the cost of growing it.
    """

    parent: np.ndarray
    root: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    leaf: np.ndarray
    path_tokens: np.ndarray
    path_mask: np.ndarray
    segment_mask: np.ndarray
    logprobs: np.ndarray
    policy_logprobs: np.ndarray
    lengths: np.ndarray
    rewards: np.ndarray
    values: np.ndarray
    sampled_tokens: int
    prefill_time: float
    decode_time: float


def path_width(branching: tuple[int, ...], segment_len: int, last_segment_len: int) -> int:
    """W = (D - 1) * M + the last level's cap: the widest path."""
    return (len(branching) - 1) * segment_len + last_segment_len


def grow(
    model,
    prompt_tokens: np.ndarray,
    prompt_mask: np.ndarray,
    key: jax.Array,
    cfg: sampling.SamplingConfig,
    branching: tuple[int, ...],
    segment_len: int,
    last_segment_len: int,
) -> Tree:
    """Samples the trees of P prompts from the parent's cache (module docstring); no rewards yet.

    ``cfg`` gives temperature, filters, stops, pad and backend; its ``max_new_tokens`` is replaced
    by ``segment_len`` (levels before the last) and ``last_segment_len`` (the last level). Level d
    decodes with ``fold_in(key, d)``.
    """
    branching = tuple(int(b) for b in branching)
    if not branching or min(branching) < 1:
        raise ValueError(f"tree.grow: branching must be a non-empty tuple of ints >= 1, got {branching}")
    if segment_len < 1 or last_segment_len < 1:
        raise ValueError(
            f"tree.grow: segment_len and last_segment_len must be >= 1, got {segment_len}, {last_segment_len}"
        )
    P, D = prompt_tokens.shape[0], len(branching)
    W = path_width(branching, segment_len, last_segment_len)
    sizes = [P]
    for b in branching:
        sizes.append(sizes[-1] * b)
    N = sum(sizes)
    parent = np.full(N, -1, np.int32)
    root = np.zeros(N, np.int32)
    depth = np.zeros(N, np.int32)
    valid = np.zeros(N, bool)
    leaf = np.zeros(N, bool)
    path_tokens = np.full((N, W), cfg.pad_id, np.int32)
    path_mask = np.zeros((N, W), np.float32)
    segment_mask = np.zeros((N, W), np.float32)
    logq = np.zeros((N, W), np.float32)
    logpi = np.zeros((N, W), np.float32)
    lengths = np.zeros(N, np.int32)
    root[:P], valid[:P] = np.arange(P), True

    t0 = time.perf_counter()
    session = cached.prefill(model, prompt_tokens, prompt_mask)
    jax.block_until_ready(session.logits)
    prefill_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    start, sampled = 0, 0
    cfg = dataclasses.replace(cfg, return_policy_logprobs=True, return_entropies=False)
    for d, b in enumerate(branching):
        last = d == D - 1
        cap = last_segment_len if last else segment_len
        n = sizes[d]
        parents = start + np.arange(n)  # this level's nodes
        going = valid[parents] & ~leaf[parents]  # the ones that branch
        session = cached.fork(session, np.arange(n), b)
        out, session = cached.decode(
            model,
            session,
            jax.random.fold_in(key, d),
            dataclasses.replace(cfg, max_new_tokens=cap),
            np.repeat(going, b),
        )
        out = jax.device_get(out)
        kids = start + n + np.arange(n * b)
        par = np.repeat(parents, b)
        parent[kids], root[kids], depth[kids] = par, root[par], d + 1
        valid[kids] = np.repeat(going, b)
        leaf[kids] = valid[kids] & (last | (out.stop_reason == sampling.STOP_TOKEN))
        off = d * segment_len  # ancestors' segments are full: M tokens each
        path_tokens[kids, :off] = path_tokens[par, :off]
        path_mask[kids, :off] = path_mask[par, :off]
        path_tokens[kids, off : off + cap] = out.tokens
        path_mask[kids, off : off + cap] = out.mask
        segment_mask[kids, off : off + cap] = out.mask
        logq[kids, :off], logpi[kids, :off] = logq[par, :off], logpi[par, :off]
        logq[kids, off : off + cap] = out.logprobs
        logpi[kids, off : off + cap] = out.policy_logprobs
        lengths[kids] = off + out.lengths
        sampled += int(out.lengths.sum())
        start += n
    jax.block_until_ready(session.logits)
    return Tree(
        parent=parent,
        root=root,
        depth=depth,
        valid=valid,
        leaf=leaf,
        path_tokens=path_tokens,
        path_mask=path_mask,
        segment_mask=segment_mask,
        logprobs=logq,
        policy_logprobs=logpi,
        lengths=lengths,
        rewards=np.full(N, np.nan, np.float32),
        values=np.zeros(N, np.float32),
        sampled_tokens=sampled,
        prefill_time=prefill_time,
        decode_time=time.perf_counter() - t0,
    )


def node_values(parent: np.ndarray, valid: np.ndarray, leaf: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Bottom-up values [N]: ``V(leaf) = R``, ``V(n) = mean over n's valid children of V``.

    Nodes are ordered so that every child comes after its parent (``Tree``'s order), so one
    reverse pass sees a node's children before the node. Invalid nodes get 0.
    """
    N = parent.shape[0]
    total = np.zeros(N, np.float64)
    count = np.zeros(N, np.int64)
    values = np.zeros(N, np.float64)
    for i in range(N - 1, -1, -1):
        if not valid[i]:
            continue
        if leaf[i]:
            values[i] = rewards[i]
        elif count[i]:
            values[i] = total[i] / count[i]
        else:
            raise ValueError(f"tree node {i} is neither a leaf nor has children")
        if parent[i] >= 0:
            total[parent[i]] += values[i]
            count[parent[i]] += 1
    return values.astype(np.float32)


def sibling_std(parent: np.ndarray, valid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Population std [N] of V over each node's parent's valid children (0 for roots)."""
    out = np.zeros(parent.shape[0], np.float32)
    has = valid & (parent >= 0)
    for p in np.unique(parent[has]):
        kids = has & (parent == p)
        out[kids] = values[kids].std()
    return out


def score(ctx: Context, tree: Tree, examples: list[Example]) -> tuple[Tree, dict[str, float]]:
    """Rewards at the leaves (their paths decoded and scored), then the values bottom-up."""
    leaves = np.flatnonzero(tree.leaf)
    completions = ctx.policy.decode(tree.path_tokens[leaves], tree.lengths[leaves])
    scored = score_texts(ctx, completions, [examples[r] for r in tree.root[leaves]])
    r = np.full(tree.parent.shape[0], np.nan, np.float32)
    r[leaves] = scored.rewards
    values = node_values(tree.parent, tree.valid, tree.leaf, r)
    lengths = tree.lengths[leaves]
    metrics = {
        "reward/mean": float(np.mean(r[leaves])),
        "reward/std": float(np.std(r[leaves])),
        "reward/max": float(np.max(r[leaves])),
        "reward/min": float(np.min(r[leaves])),
        "completion_len/mean": float(lengths.mean()),
        "completion_len/max": float(lengths.max()),
        **scored.metrics,
    }
    return dataclasses.replace(tree, rewards=r, values=values), metrics


def edge_rows(tree: Tree, prompt_tokens, prompt_mask, prompt_ids, prob_threshold: float) -> Rollout:
    """One row per potential edge (every non-root node; the invalid ones inert), see the module
    docstring. ``prompt_*`` [P, Sp] and ``prompt_ids`` [P] are the roots'."""
    P = prompt_tokens.shape[0]
    kids = np.arange(P, tree.parent.shape[0])
    par, root = tree.parent[kids], tree.root[kids]
    valid = tree.valid[kids]
    segment = tree.segment_mask[kids] * valid[:, None]
    keep = (np.exp(tree.policy_logprobs[kids]) < prob_threshold).astype(np.float32)
    mask = tree.path_mask[kids] * valid[:, None]
    std = sibling_std(tree.parent, tree.valid, tree.values)
    return Rollout(
        prompt_tokens=np.asarray(prompt_tokens, np.int32)[root],
        prompt_mask=np.asarray(prompt_mask, np.int32)[root],
        tokens=tree.path_tokens[kids],
        mask=mask,
        loss_mask=segment * keep,
        rewards=np.where(tree.leaf[kids], np.nan_to_num(tree.rewards[kids]), tree.values[kids]).astype(np.float32),
        group_ids=par.astype(np.int32),
        prompt_ids=np.asarray(prompt_ids, np.int32)[root],
        lengths=tree.lengths[kids].astype(np.int32),
        sampler_logprobs=tree.logprobs[kids] * mask,
        policy_logprobs=tree.policy_logprobs[kids] * mask,
        extras={
            "node_ids": kids.astype(np.int32),
            "parent_ids": par.astype(np.int32),
            "node_values": tree.values[kids],
            "parent_values": tree.values[par],
            "sibling_std": std[kids],
            "depth": tree.depth[kids],
            "edge_valid": valid.astype(np.float32),
            "tree_mask": mask,
            "segment_mask": segment,
        },
        group_size=1,
    )


def sampling_config(ctx: Context) -> sampling.SamplingConfig:
    """The run's sampling settings (``cfg.sampling``) with the policy's stops and pad."""
    s, p = ctx.cfg.sampling, ctx.policy
    return sampling.SamplingConfig(
        max_new_tokens=1,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        min_p=s.min_p,
        stop_token_ids=tuple(p.eos_ids),
        pad_id=p.pad_id,
        return_policy_logprobs=True,
        return_entropies=False,
        backend=s.backend,
    )


def sampling_model(ctx: Context):
    """The live policy as a model, cast to ``model.param_dtype`` as the trainer's sampler does."""
    params = ctx.policy.params
    dtype = jnp.dtype(ctx.cfg.model.param_dtype)
    if dtype != jnp.float32:
        params = jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
    return ctx.policy.model(params)


def replay_rows(ctx: Context, state: Any, slots: np.ndarray, fallback: Rollout, prob_threshold: float) -> Rollout:
    """Rows rebuilt from the method's edge buffer (``state["buffer"]``) at ``slots`` [R] (-1: an
    inert copy of ``fallback``'s first row). Prompts are re-encoded from their example index."""
    buf = {k: np.asarray(v) for k, v in state["buffer"].items()}
    R = slots.shape[0]
    used = slots >= 0
    at = np.where(used, slots, 0)
    ids = np.where(used, buf["prompt_ids"][at], int(fallback.prompt_ids[0]))
    prompt_tokens, prompt_mask = ctx.policy.encode_prompts([ctx.task.train_example(int(i)) for i in ids])
    pick = lambda name: buf[name][at]
    tree_mask = pick("tree_mask") * used[:, None]
    segment = pick("segment_mask") * used[:, None]
    keep = (np.exp(pick("policy_logprobs")) < prob_threshold).astype(np.float32)
    first = lambda x: np.repeat(np.asarray(x)[:1], R, axis=0)
    tree_mask = np.where(used[:, None], tree_mask, first(fallback.extras["tree_mask"]))
    tokens = np.where(used[:, None], pick("tokens"), first(fallback.tokens))
    return Rollout(
        prompt_tokens=prompt_tokens,
        prompt_mask=prompt_mask,
        tokens=tokens.astype(np.int32),
        mask=tree_mask.astype(np.float32),
        loss_mask=(segment * keep).astype(np.float32),
        rewards=pick("node_values").astype(np.float32),
        group_ids=(int(fallback.extras["node_ids"].max()) + 1 + np.arange(R)).astype(np.int32),  # each its own
        prompt_ids=ids.astype(np.int32),
        lengths=pick("lengths").astype(np.int32),
        sampler_logprobs=(pick("sampler_logprobs") * tree_mask).astype(np.float32),
        policy_logprobs=(pick("policy_logprobs") * tree_mask).astype(np.float32),
        extras={
            "node_ids": np.full(R, -1, np.int32),
            "parent_ids": np.full(R, -1, np.int32),
            "node_values": pick("node_values") * used,
            "parent_values": pick("parent_values") * used,
            "sibling_std": pick("sibling_std") * used,
            "depth": pick("depth") * used,
            "edge_valid": used.astype(np.float32),
            "tree_mask": tree_mask.astype(np.float32),
            "segment_mask": segment.astype(np.float32),
        },
        group_size=1,
    )


def training_rows(new: Rollout, take: np.ndarray, replayed: Rollout | None, new_rows: int, multiple: int) -> Rollout:
    """The rows the update sees: the taken new edges (node order), inert copies of the first new
    row, then ``replayed`` (the method's replay rows, or None).

    ``new_rows + R`` rows (``new_rows``: the most new edges a step can take; R: ``replayed``'s
    rows) rounded up to a multiple of ``multiple`` (so that ``train.num_minibatches`` and
    ``train.micro_batch_size`` divide them): a static count that does not grow with the trees,
    whose E - ``new_rows`` other edges would each cost the update a forward and backward pass over
    the whole path for nothing. The copies train nothing (``loss_mask``, ``segment_mask`` and
    ``edge_valid`` 0); ``buffer_slot`` is -1 on every new row.
    """
    taken = np.flatnonzero(take)
    if taken.size > new_rows:
        raise ValueError(f"tree: {taken.size} new edges taken, more than the {new_rows} a step's rows hold")
    R = 0 if replayed is None else replayed.num_rows
    total = -(-(new_rows + R) // multiple) * multiple
    at = np.concatenate([taken, np.zeros(total - R - taken.size, np.int64)])
    live = (np.arange(at.size) < taken.size).astype(np.float32)
    rows = jax.tree.map(lambda x: np.asarray(x)[at], new)
    rows = rows.replace(loss_mask=rows.loss_mask * live[:, None]).with_items(
        edge_valid=rows.extras["edge_valid"] * live,
        segment_mask=rows.extras["segment_mask"] * live[:, None],
        buffer_slot=np.full(at.size, -1, np.int32),
    )
    return rows if replayed is None else jax.tree.map(lambda *xs: pad_cat(xs), rows, replayed)


def pack_edges(edges: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Per-edge arrays [E, ...] laid out [rows, k, ...] with k = ceil(E / rows), zero-padded at the
    end, so that they ride along with a batch of ``rows`` rows: every leaf of a batch is split by
    row (minibatches, micro-batches), and ``x.reshape(-1, *x.shape[2:])`` gives the E edges back
    in order, then the padding."""
    E = next(iter(edges.values())).shape[0]
    k = max(-(-E // rows), 1)
    pad = lambda x: np.concatenate([x, np.zeros((rows * k - E,) + x.shape[1:], x.dtype)])
    return {name: pad(np.asarray(x)).reshape((rows, k) + x.shape[1:]) for name, x in edges.items()}


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """P prompts from the task stream, a tree each, the rows of the edges that train plus the
    method's replay, and every new edge for the method's buffer (module docstring)."""
    a, t = ctx.algo_cfg, ctx.cfg.train
    P = t.prompts_per_step
    examples, ids = draw_from_stream(ctx, P, jax.random.fold_in(key, 1), state)
    t0 = time.perf_counter()
    prompt_tokens, prompt_mask = ctx.policy.encode_prompts(examples)
    tree = grow(
        sampling_model(ctx),
        prompt_tokens,
        prompt_mask,
        key,
        sampling_config(ctx),
        tuple(a.branching),
        a.segment_len,
        a.last_segment_len,
    )
    sample_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree, metrics = score(ctx, tree, examples)
    reward_time = time.perf_counter() - t0
    new = edge_rows(tree, prompt_tokens, prompt_mask, ids, a.prob_threshold)
    take, slots, eligible = ctx.algo.hooks["select_edges"](state, new, jax.random.fold_in(key, 2), a)
    valid = new.extras["edge_valid"] > 0
    eligible = np.asarray(eligible, bool) & valid
    take = np.asarray(take, bool) & eligible
    slots = np.asarray(slots, np.int64)
    pending = eligible & ~take
    replayed = None
    if slots.size:
        replayed = replay_rows(ctx, state, slots, new, a.prob_threshold).with_items(buffer_slot=slots.astype(np.int32))
    new_rows = min(new.num_rows, P * a.edges_per_question)
    rollout = training_rows(new, take, replayed, new_rows, max(t.num_minibatches, 1) * max(t.micro_batch_size, 1))
    edges = {name: new[name] for name in EDGE_FIELDS} | {"pending": pending.astype(np.float32)}
    rollout = rollout.with_items(step_edges=pack_edges(edges, rollout.num_rows))
    segment_tokens = new.extras["segment_mask"].sum() + (0.0 if replayed is None else replayed["segment_mask"].sum())
    leaves = int(tree.leaf.sum())
    metrics.update(
        {
            "time/sample": sample_time,
            "time/reward": reward_time,
            "tree/sampled_tokens": float(tree.sampled_tokens),
            "tree/prefill_time": tree.prefill_time,
            "tree/decode_time": tree.decode_time,
            "tree/prefill_frac": tree.prefill_time / max(tree.prefill_time + tree.decode_time, 1e-9),
            "tree/leaves": float(leaves),
            "tree/edges": float(valid.sum()),
            "tree/edges_trained": float(take.sum()),
            "tree/replayed": float((slots >= 0).sum()),
            "tree/frac_loss_tokens": float(rollout.loss_mask.sum() / max(segment_tokens, 1.0)),
        }
    )
    return rollout, metrics


KIND = Kind(name="tree", collect=collect, hooks=("select_edges",))
