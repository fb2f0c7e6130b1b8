"""INPO: Iterative Nash Policy Optimization (online mirror descent on a general preference game).

Citation: Yuheng Zhang, Dian Yu, Baolin Peng, Linfeng Song, Ye Tian, Mingyue Huo, Nan Jiang,
Haitao Mi, Dong Yu, "Iterative Nash Policy Optimization: Aligning LLMs with General Preferences
via No-Regret Learning", ICLR 2025, https://arxiv.org/abs/2407.00617 (Eq. 5, Algorithm 1,
Proposition 6). No official code.

The game ``J(pi1, pi2) = E_x[P(pi1 > pi2) - tau KL(pi1||pi_ref) + tau KL(pi2||pi_ref)]`` is solved
by online mirror descent, ``pi_{t+1}(y) ~ exp(P(y > pi_t)/eta) pi_ref(y)^{tau/eta} pi_t(y)^{1-tau/eta}``,
learned by regression on pairs ``(y_w, y_l)`` sampled from pi_t and labelled by a preference oracle:

    h_t = log pi_theta(y_w)/pi_theta(y_l) - (tau/eta) log pi_ref(y_w)/pi_ref(y_l)
          - (1 - tau/eta) log pi_t(y_w)/pi_t(y_l)                    (summed sequence log-probs)
    L_t = E_pairs[ (h_t - 1/(2 eta))^2 ]

pi_t is the policy that sampled the round's pairs: one RL step is one INPO iteration (sample
D_t from pi_t, then ``num_iterations x num_minibatches`` updates of pi starting from pi_t, as the
paper's one pass over D_t), so ``log pi_t = old_logprobs`` and the snapshot is refreshed every
step by the trainer's own pi_old. The oracle: ``oracle="reward"`` ranks K samples by the task's
reward (the paper's BT-RM best-vs-worst); ``oracle="cyclic"`` is the intransitive
rock-paper-scissors preference of ``judges.oracle.CyclicOracle`` (a round robin; the paper's
tournament with a pairwise preference model), where no Bradley-Terry reward exists.

Differs from GRPO in:
  1. A squared regression of a pair's three-policy log-ratio ``h_t`` onto the constant
     ``1/(2 eta)`` instead of a reward-weighted policy gradient: only binary preferences are used,
     and they may be intransitive.
  2. The previous iterate pi_t (= pi_old) enters the loss with weight ``1 - tau/eta`` and the
     reference with ``tau/eta``: the KL (``beta = tau``) sits inside the loss.
  3. ``advantages`` report each row's weight in the gradient at pi_old,
     ``A_w = -A_l = -4 (h_old - 1/(2 eta))``.

Defaults (paper App. B): ``eta = 0.005``, ``tau = eta / 3`` (so the target is 100), K = 8 samples,
best versus worst. ``beta = 0`` is "INPO w/o KL" (no reference model).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.judges import oracle as oracle_lib
from jaxrl_llm.judges import pairing as pairing_lib
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import diagnostics, inputs, sequence
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "inpo"
PAPER = "Iterative Nash Policy Optimization: Aligning LLMs with General Preferences via No-Regret Learning"
PAPER_URL = "https://arxiv.org/abs/2407.00617"
ROLLOUT = "pairs"


@dataclasses.dataclass(frozen=True)
class Config:
    eta: float = 0.005  # eta: inverse step size of the mirror descent; target 1/(2 eta)
    beta: float = 0.005 / 3  # tau: KL weight to pi_ref (tau / eta < 1); 0 = INPO w/o KL
    oracle: str = "reward"  # "reward": best vs worst by the task's reward; "cyclic": intransitive oracle
    oracle_margin: float = 0.5  # the cyclic oracle's P(win) - 1/2


def pairing(cfg: Config) -> pairing_lib.Pairing:
    """On-policy pairs from pi_t, labelled by the configured oracle; undecided pairs dropped."""
    return pairing_lib.Pairing(
        source="policy", judge=oracle_lib.pair_judge(cfg.oracle, cfg.oracle_margin), drop_ties=True
    )


def check_config(run_cfg: Any) -> str | None:
    """``eta > 0``, ``0 <= tau < eta``, a known oracle, and whole pairs in every micro-batch."""
    cfg = run_cfg.algo
    if not cfg.eta > 0 or not 0.0 <= cfg.beta < cfg.eta:
        return f"inpo needs eta > 0 and 0 <= beta (tau) < eta, got eta={cfg.eta}, beta={cfg.beta}"
    if error := oracle_lib.oracle_error(cfg.oracle):
        return f"inpo: {error}"
    return pairing_lib.check_pairs_config(run_cfg, on_policy=True)


def pair_loss(h: Array, cfg: Config) -> Array:
    """``(h_t - 1/(2 eta))^2`` per pair."""
    return (h - 1.0 / (2.0 * cfg.eta)) ** 2


def margin(logprobs: Array, x: dict[str, Array], group_ids: Array, chosen: Array, cfg: Config) -> Array:
    """``h_t`` of each row's pair ``[B]``; ``x`` holds ``mask``, ``old_logprobs`` (pi_t) and, when
    ``tau > 0``, ``ref_logprobs``."""
    mask, w = x["mask"], cfg.beta / cfg.eta  # tau / eta
    lp = jnp.asarray(logprobs, jnp.float32)
    anchor = (1.0 - w) * x["old_logprobs"] + (w * x["ref_logprobs"] if cfg.beta > 0 else 0.0)  # [B, T]
    log_ratio = sequence.sequence_log_ratio(lp, anchor, mask)  # log pi - (tau/eta) log pi_ref - (1-tau/eta) log pi_t
    return sequence.pair_margin(log_ratio, group_ids, chosen)  # h_t  [B]


def _arrays(source: Any, mask: Array, cfg: Config) -> dict[str, Array]:
    out = {"mask": mask, "old_logprobs": jnp.asarray(source["old_logprobs"], jnp.float32)}
    if cfg.beta > 0:
        out["ref_logprobs"] = jnp.asarray(source["ref_logprobs"], jnp.float32)
    return out


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """The weight of each row in the INPO gradient at pi_old (``ops.sequence.pair_advantages``): ``[B]``."""
    mask = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)
    g, chosen = rollout["group_ids"], rollout["chosen"]
    h_old = margin(rollout["old_logprobs"], _arrays(rollout, mask, cfg), g, chosen, cfg)
    dl = jax.vmap(jax.grad(lambda h: pair_loss(h, cfg)))(h_old)  # l'(h_old)  [B]
    adv = sequence.pair_advantages(dl, chosen, 1.0, sequence.pair_valid(g, mask))
    return adv, adv_ops.stats(adv, mask)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """The INPO regression loss, mean over the batch's pairs (global ``num_seqs / 2``)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, ns = x["mask"], x["num_seqs"]
    inputs.require(batch, ("group_ids", "chosen"), NAME)
    h = margin(x["logprobs"], x, batch["group_ids"], batch["chosen"], cfg)  # [B]
    valid = sequence.pair_valid(batch["group_ids"], mask)  # [B]
    policy = sequence.pair_mean(pair_loss(h, cfg), valid, ns)
    metrics = sequence.pair_metrics(x["logprobs"], x["old_logprobs"], mask, h, 1.0, valid, ns)
    return diagnostics.finalize(metrics, policy, batch, mask, x["num_tokens"], where=NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """``-sum_b A_b log pi(y_b) / num_seqs``: its gradient is INPO's at pi_old (``advantages``)."""
    seq = sequence.sequence_logprobs(logprobs, batch["mask"])
    return -jnp.sum(batch["advantages"] * seq) / batch["num_seqs"]


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Any]:
    """Pairs for the invariant suite: rows ``2p, 2p + 1`` form pair ``p``."""
    return sequence.example_pairs(key, batch_size)
