"""DPO: Direct Preference Optimization (sigmoid loss).

Citation: Rafael Rafailov, Archit Sharma, Eric Mitchell, Stefano Ermon, Christopher D. Manning,
Chelsea Finn, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
NeurIPS 2023, https://arxiv.org/abs/2305.18290 (Eq. 7); the conservative (label-smoothed) form
of TRL's ``DPOTrainer`` (``loss_type="sigmoid"``, https://github.com/huggingface/trl).

Objective (minimized), over preference pairs ``(x, y_w, y_l)``:

    h    = log pi_theta(y_w|x)/pi_ref(y_w|x) - log pi_theta(y_l|x)/pi_ref(y_l|x)   (summed log-probs)
    L    = E_pairs[ -(1 - eps) log sigma(beta h) - eps log sigma(-beta h) ]

Rows: a pair is two rows sharing ``group_ids`` with ``extras["chosen"]`` 1 on ``y_w`` (the
``pairs`` rollout kind: the ``preference`` task's stored pairs, or, on a task without pairs,
correct-vs-wrong samples of the current policy ranked by the task's reward). The mean over pairs
uses the global ``num_seqs / 2``.

Differs from GRPO in:
  1. No reward-weighted policy gradient: a logistic loss on the implicit reward margin
     ``beta h`` of each (chosen, rejected) pair; no ratio to pi_old, no clipping.
  2. ``beta`` is the KL weight of the RLHF objective DPO solves in closed form, so it sits inside
     the loss (the implicit reward ``beta log pi_theta / pi_ref``), not in a separate KL term; the
     reference model is always needed.
  3. ``advantages`` are not an input of the loss: they report the weight of each row's sequence
     log-prob in the DPO gradient at pi_old, ``A_w = -A_l = 2 beta sigma(-beta h_old)`` (for
     ``eps = 0``), so the on-policy gradient is REINFORCE with those weights.

Defaults: ``beta = 0.1`` and ``label_smoothing = 0`` (TRL's defaults; the paper uses beta 0.1-0.5).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.judges import pairing as pairing_lib
from jaxrl_llm.ops import sequence
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "dpo"
PAPER = "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
PAPER_URL = "https://arxiv.org/abs/2305.18290"
ROLLOUT = "pairs"
# beta is the temperature of the implicit reward, not a separable KL penalty: the invariant suite's
# on-policy check keeps it (at beta = 0 the DPO loss is the constant log 2).
KL_IN_OBJECTIVE = True


@dataclasses.dataclass(frozen=True)
class Config:
    beta: float = 0.1  # beta: KL weight = inverse temperature of the implicit reward
    label_smoothing: float = 0.0  # eps: probability that a label is flipped (cDPO); 0 = DPO


def pairing(cfg: Config) -> pairing_lib.Pairing:
    """The task's stored pairs when it has them (offline), else the best and worst of K samples of
    the current policy by the task's reward; a tie counts in no loss."""
    return pairing_lib.Pairing(source="auto", judge=None, drop_ties=True)


def check_config(run_cfg: Any) -> str | None:
    """DPO needs ``beta > 0``, ``0 <= label_smoothing < 0.5`` and whole pairs in every micro-batch."""
    cfg = run_cfg.algo
    if not cfg.beta > 0:
        return f"dpo needs algo.beta > 0 (the implicit reward's scale), got {cfg.beta}"
    if not 0.0 <= cfg.label_smoothing < 0.5:
        return f"dpo needs 0 <= algo.label_smoothing < 0.5, got {cfg.label_smoothing}"
    return pairing_lib.check_pairs_config(run_cfg)


def pair_loss(h: Array, cfg: Config) -> Array:
    """``-(1 - eps) log sigma(beta h) - eps log sigma(-beta h)`` per pair margin ``h``."""
    eps = cfg.label_smoothing
    return -(1.0 - eps) * jax.nn.log_sigmoid(cfg.beta * h) - eps * jax.nn.log_sigmoid(-cfg.beta * h)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """The weight of each row in the DPO gradient at pi_old (``ops.sequence.pair_implicit_advantages``): ``[B]``."""
    return sequence.pair_implicit_advantages(rollout, pair_loss, cfg)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """The (label-smoothed) DPO loss ``pair_loss(h)``, mean over the batch's pairs (global
    ``num_seqs / 2``; ``ops.sequence.pair_objective``)."""
    return sequence.pair_objective(logprobs, batch, pair_loss, cfg, NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """``-sum_b A_b log pi(y_b) / num_seqs``: its gradient is DPO's at pi_old (``advantages``)."""
    seq = sequence.sequence_logprobs(logprobs, batch["mask"])
    return -jnp.sum(batch["advantages"] * seq) / batch["num_seqs"]


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Any]:
    """Pairs for the invariant suite: rows ``2p, 2p + 1`` form pair ``p``; the chosen side alternates."""
    return sequence.example_pairs(key, batch_size)
