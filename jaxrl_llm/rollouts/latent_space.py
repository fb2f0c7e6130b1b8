"""``latent_space``: one LSPO iteration per step: candidates -> latent strategies -> equilibrium -> pairs.

Latent Space Policy Optimization (Xu et al. 2025, "Learning Strategic Language Agents in the Werewolf
Game with Iterative Latent Space Policy Optimization", https://arxiv.org/abs/2502.04686), on the
built-in language game ``jaxrl_llm.games.rpsls`` (the paper's Rock-Paper-Scissors-Lizard-Spock proof
of concept). Per step, P = ``train.prompts_per_step`` discussion states (the game's prompt; a
one-shot game has one state), G = ``train.group_size`` candidate utterances each, sampled by the
policy. Their embeddings are the mean of the policy's final hidden states over the utterance's
tokens; spherical k-means (``algo.num_strategies``) over all P * G candidates gives the latent
strategies; the abstract game's payoff between two strategies is the mean game payoff of their
members' moves, and regret matching gives its equilibrium sigma_bar (``algorithms/lspo.py``).

Rows: one preference pair per state, ``B = 2 P`` (rows ``2p``, ``2p + 1``; ``extras["chosen"]`` 1
on the preferred): the candidate whose strategy scores highest (``lspo.strategy_scores``:
sigma_bar against the candidates' own share, or sigma_bar) against the lowest (the first such
candidate of each); a state whose candidates all score alike is a tie, a pair with an empty
``loss_mask`` that counts in no loss. ``rewards`` [B]: the row's strategy score. Metrics ``lspo/*``: clusters in use, the exploitability of the policy's move mixture
(``rpsls.exploitability``; 0 at the uniform Nash equilibrium), the share of invalid utterances, the
move frequencies, and the equilibrium's entropy.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_llm.algorithms import lspo
from jaxrl_llm.games import rpsls
from jaxrl_llm.models.logprobs import positions_from_mask
from jaxrl_llm.policy import left_pad
from jaxrl_llm.rollouts import episode, tree
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.sampling import bucket_length
from jaxrl_llm.types import Rollout


@functools.partial(jax.jit, static_argnums=(0, 4))
def _mean_hidden(graphdef, state, tokens, attention, num_completion):
    """Mean final hidden state over each row's completion tokens ``[B, D]`` f32."""
    model = nnx.merge(graphdef, state)
    hidden, _ = model.hidden_states(tokens, positions_from_mask(attention), attention)
    h = hidden[:, -num_completion:].astype(jnp.float32)  # [B, T, D]
    m = attention[:, -num_completion:].astype(jnp.float32)[..., None]
    return jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def embed(model, prompt_tokens, prompt_mask, tokens, mask) -> np.ndarray:
    """Candidate embeddings ``[N, D]``: the policy's final hidden states averaged over each
    candidate's tokens (after its prompt)."""
    full = np.concatenate([prompt_tokens, tokens], axis=1)
    attention = np.concatenate([np.asarray(prompt_mask, np.float32), np.asarray(mask, np.float32)], axis=1)
    graphdef, state = nnx.split(model)
    return np.asarray(_mean_hidden(graphdef, state, jnp.asarray(full), jnp.asarray(attention), tokens.shape[1]))


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """P states x G candidates -> clusters -> equilibrium -> one pair per state (module docstring)."""
    a, policy = ctx.algo_cfg, ctx.policy
    P, G = ctx.cfg.train.prompts_per_step, ctx.cfg.train.group_size
    prompt = episode.ChatPieces(policy.tokenizer).first("", rpsls.PROMPT)
    prompt_tokens, prompt_mask = left_pad([prompt] * P, bucket_length(len(prompt)), policy.pad_id)
    t0 = time.perf_counter()
    out = policy.generate(prompt_tokens, prompt_mask, jax.random.fold_in(key, 1), G)  # rows p * G + g
    sample_time = time.perf_counter() - t0
    tokens, mask, lengths = out["tokens"], np.asarray(out["mask"], np.float32), np.asarray(out["lengths"])
    texts = policy.decode(tokens, lengths)
    moves = [rpsls.move(t) for t in texts]
    t0 = time.perf_counter()
    x = embed(tree.sampling_model(ctx), np.repeat(prompt_tokens, G, 0), np.repeat(prompt_mask, G, 0), tokens, mask)
    seed = int(np.asarray(jax.random.randint(jax.random.fold_in(key, 2), (), 0, 1 << 30)))
    labels, _ = lspo.kmeans(x, a.num_strategies, a.kmeans_iters, seed)
    sigma = lspo.equilibrium(labels, moves, rpsls.payoff, a)  # sigma_bar [k]
    score = lspo.strategy_scores(sigma, labels, a.preference)  # [P * G]
    rows, chosen, keep = [], [], []
    for p in range(P):
        cand = np.arange(p * G, (p + 1) * G)
        s = score[cand]
        best, worst = cand[int(np.argmax(s))], cand[int(np.argmin(s))]
        rows += [best, worst]
        chosen += [1.0, 0.0]
        keep += [s.max() > s.min() + 1e-9] * 2
    rows = np.asarray(rows)
    keep = np.asarray(keep, np.float32)[:, None]
    counts = np.bincount([m for m in moves if m is not None], minlength=len(rpsls.MOVES)).astype(np.float64)
    freq = counts / max(counts.sum(), 1.0)
    nz = sigma[sigma > 0]
    rollout = Rollout(
        prompt_tokens=np.repeat(prompt_tokens, 2, 0),
        prompt_mask=np.repeat(prompt_mask, 2, 0),
        tokens=tokens[rows],
        mask=mask[rows],
        loss_mask=mask[rows] * keep,
        rewards=score[rows].astype(np.float32),
        group_ids=np.repeat(np.arange(P, dtype=np.int32), 2),
        prompt_ids=np.zeros(2 * P, np.int32),
        lengths=lengths[rows].astype(np.int32),
        sampler_logprobs=np.asarray(out["logprobs"], np.float32)[rows],
        policy_logprobs=None
        if out.get("policy_logprobs") is None
        else np.asarray(out["policy_logprobs"], np.float32)[rows],
        extras={"chosen": np.asarray(chosen, np.float32), "strategy": labels[rows].astype(np.int32)},
        group_size=2,
    )
    metrics = {
        "reward/mean": float(rollout.rewards.mean()),
        "completion_len/mean": float(lengths.mean()),
        "time/sample": sample_time,
        "time/reward": time.perf_counter() - t0,
        "reward/failures": 0.0,
        "lspo/clusters": float(len(np.unique(labels))),
        "lspo/exploitability": rpsls.exploitability(freq) if counts.sum() else 1.0,
        "lspo/invalid_frac": float(np.mean([m is None for m in moves])),
        "lspo/sigma_entropy": float(-(nz * np.log(nz)).sum()),
        "lspo/pairs": float(keep.sum() / 2),
        **{f"lspo/move_{m}": float(f) for m, f in zip(rpsls.MOVES, freq)},
    }
    return rollout, metrics


KIND = Kind(name="latent_space", collect=collect)
