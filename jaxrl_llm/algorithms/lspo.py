"""LSPO: Latent Space Policy Optimization (latent strategies, regret matching, DPO distillation).

Citation: Zelai Xu, Wanjun Gu, Chao Yu, Yi Wu, Yu Wang, "Learning Strategic Language Agents in the
Werewolf Game with Iterative Latent Space Policy Optimization", ICML 2025,
https://arxiv.org/abs/2502.04686. No official code was released.

One LSPO iteration per RL step (rollout kind ``latent_space``, ``rollouts/latent_space.py``):

  1. candidates: G = ``train.group_size`` utterances per discussion state (P states);
  2. latent space: each utterance's embedding is the mean of the policy's final hidden states
     over its tokens, L2-normalised; k-means (cosine) gives k = ``num_strategies`` latent
     strategies z;
  3. abstract game: ``U[z, z'] = mean payoff(u, u')`` over utterances u in z, u' in z' (the game's
     own payoff of the moves they name; ``jaxrl_llm.games.rpsls``); regret matching on U:

        sigma_t(z) = R_t^+(z) / sum_z' R_t^+(z')   (uniform when no regret is positive)
        R_{t+1}(z) = R_t(z) + U[z] . sigma_t - sigma_t . U . sigma_t,   sigma_bar = mean_t sigma_t

  4. distillation: each candidate's strategy gets a score, per state the candidate with the
     highest score is preferred to that of the lowest (ties give no pair), and the policy takes
     DPO steps:

        L = -log sigma(beta [(log pi_theta - log pi_ref)(y_w) - (log pi_theta - log pi_ref)(y_l)])

The loss is DPO's (``dpo.pair_loss``: this file only changes where the pairs come from).

The preference rule is not pinned down by the sources (the spec's ambiguity: "higher sigma, or
higher advantage, is preferred"). ``preference = "sigma"`` ranks by sigma_bar(z).
``preference = "ratio"`` (default) ranks by ``log sigma_bar(z) - log p(z)``, with p(z) the share of
the step's candidates in z: DPO's optimal policy is pi_ref * exp(r / beta), so this reward moves the
policy's mass over strategies toward the equilibrium (distillation), where ranking by sigma_bar
alone gives no direction once sigma_bar is uniform but the policy is not (the paper's motivating
bias).

Differs from GRPO in:
  1. No reward-weighted policy gradient: preference pairs from an equilibrium of the abstract
     (latent-strategy) game, distilled with the DPO loss against a frozen reference.
  2. Rows are pairs (``chosen`` 1 on y_w) sharing a prompt; ``beta`` is DPO's implicit-reward scale.
  3. The candidates are clustered in the policy's own hidden-state space (the paper uses an external
     sentence embedding, text-embedding-3-small, which is not available offline).

Code-vs-paper: the paper solves the abstract Werewolf game with Deep CFR over information sets and
grows k across iterations; this is the paper's own proof of concept, a one-shot symmetric matrix
game (Rock-Paper-Scissors-Lizard-Spock), where CFR reduces to regret matching, with k fixed per run
(the number of non-empty clusters can still grow as the policy's candidates diversify). pi_ref is
the run's reference model (the paper re-anchors it to each iteration's LLM).

Defaults: ``beta = 0.1`` (the paper's, ablation {0.05, 0.1, 0.2}); ``num_strategies = 5``;
``rm_iterations = 1000``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxrl_llm.algorithms import dpo
from jaxrl_llm.judges import pairing as pairing_lib
from jaxrl_llm.ops import sequence
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "lspo"
PAPER = "Learning Strategic Language Agents in the Werewolf Game with Iterative Latent Space Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2502.04686"
ROLLOUT = "latent_space"
KL_IN_OBJECTIVE = True  # beta is the implicit reward's scale (DPO)


@dataclasses.dataclass(frozen=True)
class Config:
    beta: float = 0.1  # beta, DPO's implicit-reward scale
    label_smoothing: float = 0.0  # DPO's eps (0: plain DPO)
    num_strategies: int = 5  # k, latent strategies (k-means clusters)
    kmeans_iters: int = 25
    rm_iterations: int = 1000  # regret-matching iterations on the abstract game
    preference: str = "ratio"  # rank strategies by log sigma_bar - log p ("ratio") or sigma_bar ("sigma")


def check_config(run_cfg: Any) -> str | None:
    a = run_cfg.algo if run_cfg.algo is not None else Config()
    if not a.beta > 0:
        return f"lspo needs algo.beta > 0 (DPO's implicit reward scale), got {a.beta}"
    if a.preference not in ("ratio", "sigma"):
        return f"algo.preference must be 'ratio' or 'sigma', got {a.preference!r}"
    if a.num_strategies < 2 or run_cfg.train.group_size < 2:
        return "lspo needs algo.num_strategies >= 2 and train.group_size >= 2 (candidates per state)"
    return pairing_lib.check_pairs_config(run_cfg)


def regret_matching(regrets: np.ndarray) -> np.ndarray:
    """``sigma(a) = R+(a) / sum_b R+(b)``, uniform when no regret is positive. ``[..., A] -> [..., A]``."""
    pos = np.maximum(np.asarray(regrets, np.float64), 0.0)
    total = pos.sum(axis=-1, keepdims=True)
    uniform = np.full_like(pos, 1.0 / pos.shape[-1])
    return np.where(total > 0, pos / np.where(total > 0, total, 1.0), uniform)


def solve_symmetric(payoff: np.ndarray, iterations: int) -> np.ndarray:
    """The average strategy of regret matching in self-play on a symmetric zero-sum matrix game
    ``payoff`` [k, k] (row player's payoff; the column player's is ``-payoff.T = payoff``): an
    approximate Nash equilibrium ``[k]``."""
    U = np.asarray(payoff, np.float64)
    regrets, total = np.zeros(U.shape[0]), np.zeros(U.shape[0])
    for _ in range(iterations):
        sigma = regret_matching(regrets)
        values = U @ sigma  # payoff of each pure strategy against sigma
        regrets += values - sigma @ values
        total += sigma
    return total / max(iterations, 1)


def kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (cosine distance: rows and centroids L2-normalised, so the assignment
    does not depend on an embedding's norm): ``(labels [N], centroids [k, D])``. Initialised with
    k-means++ from ``seed``; an empty cluster keeps its centroid."""
    x = np.asarray(x, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    k = min(k, x.shape[0])
    centroids = [x[rng.integers(x.shape[0])]]
    for _ in range(1, k):
        d = np.clip(1.0 - np.max(x @ np.stack(centroids).T, axis=1), 0.0, None)
        p = d / d.sum() if d.sum() > 0 else np.full(x.shape[0], 1.0 / x.shape[0])
        centroids.append(x[rng.choice(x.shape[0], p=p)])
    c = np.stack(centroids)
    for _ in range(iters):
        labels = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                m = members.sum(axis=0)
                c[j] = m / max(np.linalg.norm(m), 1e-12)
    return np.argmax(x @ c.T, axis=1), c


def abstract_payoff(labels: np.ndarray, moves: list[int | None], payoff_fn, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``U[z, z'] = mean payoff_fn(m_u, m_v)`` over utterances u in z, v in z' ``[k, k]``, and which
    clusters are non-empty ``[k]`` bool (rows/columns of empty clusters are 0)."""
    U = np.zeros((k, k))
    present = np.asarray([np.any(labels == z) for z in range(k)])
    for z in range(k):
        for y in range(k):
            if present[z] and present[y]:
                U[z, y] = np.mean(
                    [
                        payoff_fn(moves[u], moves[v])
                        for u in np.flatnonzero(labels == z)
                        for v in np.flatnonzero(labels == y)
                    ]
                )
    return U, present


def equilibrium(labels: np.ndarray, moves: list[int | None], payoff_fn, cfg: Config) -> np.ndarray:
    """sigma_bar over the k latent strategies (0 on empty clusters) ``[k]``."""
    k = cfg.num_strategies
    U, present = abstract_payoff(labels, moves, payoff_fn, k)
    idx = np.flatnonzero(present)
    sigma = np.zeros(k)
    sigma[idx] = solve_symmetric(U[np.ix_(idx, idx)], cfg.rm_iterations)
    return sigma


def strategy_scores(sigma: np.ndarray, labels: np.ndarray, preference: str) -> np.ndarray:
    """Per candidate, the score of its strategy ``[N]``: ``sigma_bar(z)`` (``"sigma"``) or
    ``log sigma_bar(z) - log p(z)`` (``"ratio"``; p(z): the candidates' share in z, sigma_bar
    floored at 1e-6)."""
    s = np.asarray(sigma, np.float64)[labels]
    if preference == "sigma":
        return s
    share = np.bincount(labels, minlength=len(sigma))[labels] / len(labels)
    return np.log(np.maximum(s, 1e-6)) - np.log(share)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """DPO's implicit per-row weights at pi_old (``dpo``'s, for the pairs of this step)."""
    return sequence.pair_implicit_advantages(rollout, dpo.pair_loss, cfg)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """DPO's loss (``dpo.pair_loss``) over the equilibrium-ranked pairs, mean over pairs."""
    return sequence.pair_objective(logprobs, batch, dpo.pair_loss, cfg, NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """As DPO's: its gradient is the loss's at pi_old."""
    return dpo.reinforce_loss(logprobs, batch, cfg)


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Any]:
    """Pairs for the invariant suite (rows ``2p, 2p + 1``)."""
    return sequence.example_pairs(key, batch_size)
