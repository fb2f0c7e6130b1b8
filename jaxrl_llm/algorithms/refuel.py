"""REFUEL: Regressing the Relative Future (multi-turn RLHF by least squares on return differences).

Citation: Zhaolin Gao, Wenhao Zhan, Jonathan D. Chang, Gokul Swamy, Kianté Brantley, Jason D. Lee,
Wen Sun, "Regressing the Relative Future: Efficient Policy Optimization for Multi-turn RLHF",
ICLR 2025, https://arxiv.org/abs/2410.04612; code https://github.com/ZhaolinGao/REFUEL
(``setting_one/refuel.py``: the loss below; ``generate.py``: the shared-prefix pairs).

From a dialogue state s_h (the history up to the user's turn h) two on-policy continuations are
played to the end; a_h and a'_h are their assistant turns h and Q_hat their realised future
returns. With the sequence log-ratios of turn h's tokens against pi_t, the policy that played them:

    L = E[ ( [log pi_theta(a_h|s_h) - log pi_t(a_h|s_h)] - [log pi_theta(a'_h|s_h) - log pi_t(a'_h|s_h)]
             - eta (Q_hat(s_h, a_h) - Q_hat(s_h, a'_h)) )^2 ]

(the REBEL-form ((1/eta) Delta log-ratio - Delta Q)^2 has the same minimiser; this is the code's
form). With ``beta > 0`` (setting two) each return is ``Q_hat - beta sum_{turn-h tokens} (log pi_t
- log pi_ref)``.

pi_t: one RL step is one REFUEL iteration: the ``refuel_pairs`` kind (``rollouts/dialogue.py``)
plays the round's dialogues with the current policy, whose log-probs the trainer caches as
``old_logprobs`` (the code caches pi_t's log-probs per iteration the same way), and the update's
``num_iterations x num_minibatches`` steps regress from there; the next step's pi_t is the
updated policy. pi_t is thus refreshed every round and is part of the checkpoint as the params
the next round samples with.

Differs from GRPO in:
  1. Rows are pairs of assistant turns from a shared multi-turn prefix; the loss sees only turn h.
  2. The signal is the difference of the two continuations' FUTURE returns (the dialogue scored
     after turn H' >= h), not the turn's own reward: credit for later turns flows to turn h.
  3. A squared regression of the pair's log-ratio difference onto ``eta`` times the return
     difference: no clipping, no group normalization, no critic.
  4. ``advantages`` report each row's weight in the gradient at pi_t,
     ``A = -2 (2 chosen - 1) l'(h) = 4 eta (Q_hat(self) - Q_hat(other))`` on-policy.

Defaults: ``eta = 1`` (setting two; our returns are 0/1), ``beta = 0`` (setting one),
``num_turns = 3`` (the paper's H = 5 with a 70B simulator; a scripted user here),
``horizon = "future"`` (``"immediate"`` scores turn h alone: the single-turn baseline).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.judges import pairing as pairing_lib
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import diagnostics, inputs, sequence
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "refuel"
PAPER = "Regressing the Relative Future: Efficient Policy Optimization for Multi-turn RLHF"
PAPER_URL = "https://arxiv.org/abs/2410.04612"
ROLLOUT = "refuel_pairs"
HORIZONS = ("future", "immediate")


@dataclasses.dataclass(frozen=True)
class Config:
    eta: float = 1.0  # eta: scale of the return difference the log-ratio difference regresses on
    beta: float = 0.0  # KL-in-return weight against pi_ref (setting two); 0 = setting one
    num_turns: int = 3  # H: assistant turns per dialogue
    horizon: str = "future"  # "future": return after turn H' (REFUEL); "immediate": turn h alone
    max_context: int = 256  # token width every turn's history is padded to (one compiled sampler)


def check_config(run_cfg: Any) -> str | None:
    cfg = run_cfg.algo
    if not cfg.eta > 0 or cfg.beta < 0:
        return f"refuel needs algo.eta > 0 and algo.beta >= 0, got eta={cfg.eta}, beta={cfg.beta}"
    if cfg.num_turns < 1 or cfg.horizon not in HORIZONS:
        return f"refuel needs algo.num_turns >= 1 and algo.horizon in {HORIZONS}, got {cfg.num_turns}, {cfg.horizon!r}"
    return pairing_lib.check_pairs_config(run_cfg, on_policy=False)


def returns(source: Any, mask: Array, cfg: Config) -> Array:
    """``Q_hat`` per row ``[B]``: the rollout's reward, minus ``beta sum_t (log pi_t - log pi_ref)``
    over the row's turn-h tokens when ``beta > 0``."""
    q = jnp.asarray(source["rewards"], jnp.float32)
    if cfg.beta > 0:
        old = inputs.token_array(source, "old_logprobs", mask, NAME)
        q = q - cfg.beta * sequence.sequence_log_ratio(old, inputs.ref_logprobs(source, mask, NAME), mask)
    return q


def pair_loss(h: Array, dq: Array, cfg: Config) -> Array:
    """``(h - eta dq)^2`` per pair (``h`` the log-ratio difference, ``dq`` the return difference)."""
    return (h - cfg.eta * dq) ** 2


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Each row's weight in the REFUEL gradient at pi_t (``ops.sequence.pair_advantages``): ``[B]``."""
    mask = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)
    g, chosen = rollout["group_ids"], rollout["chosen"]
    h_old = jnp.zeros_like(chosen, dtype=jnp.float32)  # pi_theta = pi_t: every log-ratio is 0
    dq = sequence.pair_margin(returns(rollout, mask, cfg), g, chosen)  # Q(chosen) - Q(other)  [B]
    dl = jax.vmap(jax.grad(lambda h, d: pair_loss(h, d, cfg)))(h_old, dq)  # l'(0)  [B]
    adv = sequence.pair_advantages(dl, chosen, 1.0, sequence.pair_valid(g, mask))
    return adv, adv_ops.stats(adv, mask)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """The REFUEL regression, mean over the batch's pairs (global ``num_seqs / 2``)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, ns = x["mask"], x["num_seqs"]
    inputs.require(batch, ("group_ids", "chosen"), NAME)
    g, chosen = batch["group_ids"], batch["chosen"]
    log_ratio = sequence.sequence_log_ratio(x["logprobs"], x["old_logprobs"], mask)  # log pi_theta/pi_t  [B]
    h = sequence.pair_margin(log_ratio, g, chosen)  # Delta log-ratio  [B]
    dq = sequence.pair_margin(returns(batch, mask, cfg), g, chosen)  # Delta Q_hat  [B]
    valid = sequence.pair_valid(g, mask)
    policy = sequence.pair_mean(pair_loss(h, dq, cfg), valid, ns)
    metrics = sequence.pair_metrics(x["logprobs"], x["old_logprobs"], mask, h, 1.0, valid, ns)
    metrics["refuel/target"] = sequence.pair_mean(cfg.eta * dq, valid, ns)
    return diagnostics.finalize(metrics, policy, batch, mask, x["num_tokens"], where=NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """``-sum_b A_b log pi(y_b) / num_seqs``: its gradient is REFUEL's at pi_t (``advantages``)."""
    seq = sequence.sequence_logprobs(logprobs, batch["mask"])
    return -jnp.sum(batch["advantages"] * seq) / batch["num_seqs"]


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Any]:
    """Pairs for the invariant suite: rows ``2p, 2p + 1`` form pair ``p``."""
    return sequence.example_pairs(key, batch_size)
