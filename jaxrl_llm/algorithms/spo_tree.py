"""SPO-tree: segment advantages from a tree of Monte Carlo rollouts, with an on-policy edge buffer.

Yiyang Guo, Lu Wang, et al., "Segment Policy Optimization: Effective Segment-Level Credit
Assignment in RL for Large Language Models", arXiv 2505.23564 (2025),
https://arxiv.org/abs/2505.23564. Official code: https://github.com/AIFrameResearch/SPO
(``tree_episode_generator.py``, ``hybrid_inference_strategy.py``, ``trainers/ppo_trainer.py``).
Not to be confused with *Single-stream* Policy Optimization (``single_stream_spo.py``).

Objective. Each prompt grows a tree (``rollouts/tree.py``): depth D, ``branching[d]`` children per
node at depth d, segments of at most M tokens (the last level longer). Leaves carry the reward,
inner nodes the recursive mean of their children, ``V(n) = mean_c V(c)``. Every edge p -> c is a
training row whose segment tokens all carry

    A_c = V(c) - V(p)                                       (adv_method "rloo", the default)
    A_c = (V(c) - V(p)) / (std_{c' in children(p)} V(c') + 1e-8)       ("grpo")

Edges with A = 0 are dropped. The probability mask keeps only tokens the old policy found unlikely,
``q_t = pi_old(y_t) < rho`` (rho = 0.9): the others get no advantage and leave the loss. The
kept tokens' advantages are whitened over the batch, ``(A_t - mu) / sqrt(sigma^2 + 1e-8)``, with
mu, sigma^2 over the kept tokens (all tokens when none is kept). The loss is PPO-clip with the
log-ratio clamped to [-10, 10], token-mean over the kept tokens, plus ``beta`` * k3 KL to the
reference as a loss term:

    L = token-mean_{i,t} -min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t) + beta * token-mean k3

Edge buffer (the code's ``OnPolicyReplayBuffer``), in the method's state so it is checkpointed:
new edges join it, each step samples up to ``edges_per_question`` edges per question from it, a
sampled edge is removed, an unsampled one is reused at most ``max_age`` steps after it was sampled.

Differs from GRPO in:
  1. Rollout: a tree of segments per prompt (``ROLLOUT = "tree"``), grown from the parent's KV
     cache; one row per edge, not per completion.
  2. Advantage: per segment, ``V(child) - V(parent)`` with tree Monte Carlo values, instead of
     one group-normalized reward per completion.
  3. Probability mask: tokens with ``pi_old >= rho`` get no advantage and no loss (the rollout kind
     removes them from ``loss_mask``; ``advantages`` zeroes them).
  4. Normalization: one whitening over the batch's kept tokens, not per group.
  5. Replay: an on-policy edge buffer (``init_state`` / ``update_state``, ``select_edges``);
     edges may train up to ``max_age`` steps after sampling (slightly off-policy, as in the code).
  6. KL: k3 as a loss term with beta = 0.05 (the code's ``init_kl_coef``; the paper's value was not
     verified).

Code vs paper, and the choices here:
  * Node values are the recursive mean of children (the code), not the mean of the leaves below;
    they differ when a branch ends early.
  * ``only_adv_greater_than_zero`` in the code tests ``A + [BoK(V_c) - BoK(V_p)] != 0``, which is
    ``A != 0``: ``drop_zero_adv``.
  * The code's last level is bounded only by the max response length; here ``last_segment_len``.
  * ``sibling_std`` (adv_method "grpo") is the population std of the siblings' values.
  * Static shapes: the batch is ``min(E, P * edges_per_question)`` rows for this step's E potential
    edges (the most that can be sampled; unused rows have ``loss_mask`` 0) plus ``replay_rows``
    rows for buffered edges, padded to the trainer's micro-batches (``rollouts/tree.py``);
    ``num_seqs``, which the ``seq_mean_*`` aggregations divide by, counts these rows. Every
    potential edge reaches ``update_state`` beside the rows (``step_edges``). The buffer holds
    ``buffer_size`` edges (the youngest win when it is full). The code's batch size varies.
  * Buffered edges keep the log-probs of the step that sampled them as pi_old.

Defaults: Rho-1.1B/GSM8K tree config: branching (6, 6, 6), M = 30; rho = 0.9; eps = 0.2;
``edges_per_question`` 32, ``max_age`` 8.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "spo_tree"
PAPER = "Segment Policy Optimization (SPO-tree)"
PAPER_URL = "https://arxiv.org/abs/2505.23564"
ROLLOUT = "tree"

ADV_METHODS = ("rloo", "grpo")
BUFFER_FIELDS = {  # name -> (per-token?, dtype)
    "tokens": (True, jnp.int32),
    "tree_mask": (True, jnp.float32),
    "segment_mask": (True, jnp.float32),
    "policy_logprobs": (True, jnp.float32),
    "sampler_logprobs": (True, jnp.float32),
    "node_values": (False, jnp.float32),
    "parent_values": (False, jnp.float32),
    "sibling_std": (False, jnp.float32),
    "depth": (False, jnp.int32),
    "lengths": (False, jnp.int32),
    "prompt_ids": (False, jnp.int32),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """SPO-tree hyperparameters (paper symbols in comments; defaults from the official configs)."""

    branching: tuple[int, ...] = (6, 6, 6)  # b_d: children per node at depth d (D = len)
    segment_len: int = 30  # M: tokens per segment below the last level
    last_segment_len: int = 256  # cap of the last level's segments (the code: max response length)
    prob_threshold: float = 0.9  # rho: tokens with pi_old >= rho are masked
    adv_method: str = "rloo"  # "rloo": V(c) - V(p); "grpo": divided by the siblings' std
    adv_std_eps: float = 1e-8
    drop_zero_adv: bool = True  # only_adv_greater_than_zero
    whiten: bool = True  # batch whitening over the kept tokens
    whiten_eps: float = 1e-8
    eps_low: float = 0.2  # epsilon of the PPO clip
    eps_high: float = 0.2
    max_log_ratio: float = 10.0  # the code clamps the log-ratio to [-10, 10]
    beta: float = 0.05  # KL weight (init_kl_coef, non-adaptive)
    kl_estimator: str = "k3"  # "control_variate" in the code
    kl_clamp: float | None = None
    aggregation: str = "token_mean"
    edges_per_question: int = 32  # edges sampled per question per step (bounds the batch's new rows)
    max_age: int = 8  # steps an unsampled edge stays usable
    buffer_size: int = 1024  # edges the buffer holds (static)
    replay_rows: int = 64  # rows per step for buffered edges (static)

    def __post_init__(self):
        object.__setattr__(self, "branching", tuple(int(b) for b in self.branching))
        if not self.branching or min(self.branching) < 1:
            raise ValueError(f"spo_tree.Config.branching must be non-empty ints >= 1, got {self.branching}")
        if self.segment_len < 1 or self.last_segment_len < 1:
            raise ValueError("spo_tree.Config: segment_len and last_segment_len must be >= 1")
        if not 0.0 < self.prob_threshold <= 1.0 + 1e-12:
            raise ValueError(f"spo_tree.Config.prob_threshold must be in (0, 1], got {self.prob_threshold}")
        if self.adv_method not in ADV_METHODS:
            raise ValueError(f"spo_tree.Config.adv_method must be one of {ADV_METHODS}, got {self.adv_method!r}")
        if self.aggregation not in aggregation.MODES:
            raise ValueError(
                f"spo_tree.Config.aggregation must be one of {aggregation.MODES}, got {self.aggregation!r}"
            )
        if self.edges_per_question < 1 or self.max_age < 1 or self.buffer_size < 1 or self.replay_rows < 0:
            raise ValueError(
                "spo_tree.Config: edges_per_question, max_age, buffer_size must be >= 1 and replay_rows >= 0"
            )

    @property
    def path_width(self) -> int:
        """W: the token width of every row, (D - 1) * M + last_segment_len."""
        return (len(self.branching) - 1) * self.segment_len + self.last_segment_len


# ---------------------------------------------------------------- advantages and loss


def edge_advantages(node_values: Array, parent_values: Array, sibling_std: Array, cfg: Config) -> Array:
    """Per-edge advantage [B]: ``V(c) - V(p)`` ("rloo") or that over ``std_siblings + eps`` ("grpo")."""
    adv = node_values - parent_values
    if cfg.adv_method == "grpo":
        adv = adv / (sibling_std + cfg.adv_std_eps)
    return adv


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Token advantages [B, T]: the edge's ``A`` on its segment's tokens with ``pi_old < rho``,
    whitened over those tokens of the whole batch (module docstring); 0 elsewhere.

    Reads ``node_values``, ``parent_values``, ``sibling_std`` [B] (``rollouts/tree.py``), the
    loss mask (``loss_mask``, else ``mask``) and ``old_logprobs`` (else ``sampler_logprobs``)."""
    mask = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)  # [B, T]
    old = rollout["old_logprobs"] if "old_logprobs" in rollout else rollout["sampler_logprobs"]
    edge = edge_advantages(rollout["node_values"], rollout["parent_values"], rollout["sibling_std"], cfg)  # [B]
    keep = mask * (jnp.exp(masked.where_mask(old, mask)) < cfg.prob_threshold)  # prob mask [B, T]
    adv = edge[:, None] * keep  # A_t [B, T]
    if cfg.whiten:
        stat_mask = jnp.where(jnp.sum(keep) > 0, keep, mask)  # all tokens when none is kept
        adv = masked.whiten(adv, stat_mask, eps=cfg.whiten_eps) * keep
    metrics = adv_ops.stats(adv, keep)
    # Over the segment: the ``tree`` kind's ``loss_mask`` already excludes the masked tokens.
    segment = jnp.asarray(rollout["segment_mask"], jnp.float32) if "segment_mask" in rollout else mask
    metrics["frac_prob_masked"] = 1.0 - jnp.sum(keep) / jnp.maximum(jnp.sum(segment), 1.0)
    return adv, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO-clip (log-ratio clamped to ``max_log_ratio``) + ``beta`` * KL, token-mean over ``mask``
    (the kind's prob-masked segment tokens) with the global normalizers."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask, cfg.max_log_ratio)  # r_t [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(r A, clip(r) A) [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token-mean
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random tree values for the invariant suite: V(c), V(p) in [0, 1], sibling std."""
    k1, k2 = jax.random.split(key)
    return {
        "node_values": jax.random.uniform(k1, (batch_size,)),
        "parent_values": jax.random.uniform(k2, (batch_size,)),
        "sibling_std": jnp.full((batch_size,), 0.3),
    }


# ---------------------------------------------------------------- the edge buffer (state)


def init_state(cfg: Config) -> dict[str, Any]:
    """An empty buffer of ``buffer_size`` edges of width W, with each edge's age and validity."""
    C, W = cfg.buffer_size, cfg.path_width
    buffer = {name: jnp.zeros((C, W) if tok else (C,), dtype) for name, (tok, dtype) in BUFFER_FIELDS.items()}
    buffer["age"] = jnp.zeros((C,), jnp.int32)
    buffer["valid"] = jnp.zeros((C,), jnp.int32)
    return {"buffer": buffer}


def select_edges(state: Any, rollout: Rollout, key: Array, cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This step's sample from the buffer plus the new edges (host side, called by the ``tree`` kind).

    The pool is every valid buffered edge and every new edge with a kept token (and, with
    ``drop_zero_adv``, ``A != 0``). Per question (``prompt_ids``), up to ``edges_per_question``
    edges are drawn uniformly without replacement. Returns ``take`` [E] bool over the new rows and
    ``slots`` [replay_rows] int (buffer slots to replay, -1 = none; if more buffered edges were
    drawn than ``replay_rows``, a uniform subset of them, the rest stay in the buffer), and
    ``eligible`` [E] bool: the new edges of the pool, the only ones the buffer may keep (a
    zero-advantage edge is neither trained now nor replayed later).
    """
    buf = {k: np.asarray(v) for k, v in state["buffer"].items()}
    ex = rollout.extras
    adv = np.asarray(edge_advantages(ex["node_values"], ex["parent_values"], ex["sibling_std"], cfg))
    ok_new = (np.asarray(ex["edge_valid"]) > 0) & (np.asarray(rollout.loss_mask).sum(axis=1) > 0)
    if cfg.drop_zero_adv:
        ok_new &= adv != 0
    ok_old = buf["valid"] > 0
    E = ok_new.shape[0]
    source = np.concatenate([np.flatnonzero(ok_new), E + np.flatnonzero(ok_old)])  # >= E: a buffer slot
    question = np.concatenate([np.asarray(rollout.prompt_ids)[ok_new], buf["prompt_ids"][ok_old]])
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    chosen = []
    for q in np.unique(question):
        members = source[question == q]
        chosen.append(rng.permutation(members)[: cfg.edges_per_question])
    chosen = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    take = np.zeros(E, bool)
    take[chosen[chosen < E]] = True
    old = rng.permutation(chosen[chosen >= E] - E)[: cfg.replay_rows]
    slots = np.full(cfg.replay_rows, -1, np.int64)
    slots[: old.size] = np.sort(old)
    return take, slots, ok_new


def update_state(state: Any, batch: Batch, cfg: Config) -> dict[str, Any]:
    """Replayed edges leave the buffer, every edge ages by one step, edges older than ``max_age``
    leave, and this step's untrained new edges (``pending``) join with age 1; when more than
    ``buffer_size`` remain, the youngest are kept. Pure and jittable (static shapes).

    Reads the rows' ``buffer_slot`` [B] and the step's new edges ``step_edges`` (``BUFFER_FIELDS``
    and ``pending``, packed [B, k, ...] by the ``tree`` kind: every potential edge, not only the
    rows that train)."""
    b = state["buffer"]
    C, W = b["tokens"].shape
    edges = {name: jnp.asarray(x).reshape((-1,) + x.shape[2:]) for name, x in batch["step_edges"].items()}
    if edges["tokens"].shape[1] != W:
        raise ValueError(
            f"spo_tree.update_state: edges are {edges['tokens'].shape[1]} tokens wide, the buffer {W} "
            "(branching, segment_len, last_segment_len changed?)"
        )
    slot = jnp.asarray(batch["buffer_slot"], jnp.int32)
    replayed = jnp.zeros((C,), jnp.bool_).at[jnp.where(slot >= 0, slot, C)].set(True, mode="drop")
    age = b["age"] + 1
    keep_old = (b["valid"] > 0) & ~replayed & (age <= cfg.max_age)
    pending = edges["pending"] > 0  # [E]
    keep = jnp.concatenate([keep_old, pending])
    ages = jnp.concatenate([age, jnp.ones(pending.shape, jnp.int32)])
    order = jnp.argsort(jnp.where(keep, ages, jnp.iinfo(jnp.int32).max), stable=True)[:C]
    rows = {
        name: jnp.concatenate([b[name], edges[name].astype(dtype)])[order] for name, (_, dtype) in BUFFER_FIELDS.items()
    }
    rows["age"] = jnp.where(keep[order], ages[order], 0).astype(jnp.int32)
    rows["valid"] = keep[order].astype(jnp.int32)
    return {"buffer": rows}
