"""IPO: Identity Preference Optimization (the squared loss of Psi-PO with Psi = identity).

Citation: Mohammad Gheshlaghi Azar, Mark Rowland, Bilal Piot, Daniel Guo, Daniele Calandriello,
Michal Valko, Remi Munos, "A General Theoretical Paradigm to Understand Learning from Human
Preferences", AISTATS 2024, https://arxiv.org/abs/2310.12036 (Eq. 17); as in TRL's
``DPOTrainer`` (``loss_type="ipo"``, https://github.com/huggingface/trl), with the sequence
log-ratios averaged over each response's tokens (TRL: "the results reported in the paper
correspond to this normalized form", confirmed with the IPO authors).

Objective (minimized), over preference pairs ``(x, y_w, y_l)``:

    h = (1/|y_w|) log pi_theta(y_w|x)/pi_ref(y_w|x) - (1/|y_l|) log pi_theta(y_l|x)/pi_ref(y_l|x)
    L = E_pairs[ (h - 1/(2 tau))^2 ]

Rows and pairs as in ``dpo`` (the ``pairs`` rollout kind).

Differs from GRPO in:
  1. A squared regression of the (length-averaged) log-ratio margin onto the constant
     ``1/(2 tau)`` for each (chosen, rejected) pair, instead of a reward-weighted policy gradient;
     it stays bounded when preferences are deterministic, where DPO's logistic loss drives the
     margin to infinity (IPO paper Sec. 4).
  2. ``beta`` (= tau) is the KL weight inside the loss; the reference model is always needed.
  3. ``advantages`` report each row's weight in the IPO gradient at pi_old:
     ``A_w = -A_l = -4 (h_old - 1/(2 tau)) / |y|``.

Defaults: ``beta = tau = 0.1`` (TRL's default); ``length_normalized = True`` (TRL's
``DPOTrainer``; ``False`` gives the summed form of TRL's ``OnlineDPOTrainer``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.judges import pairing as pairing_lib
from jaxrl_llm.ops import sequence
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "ipo"
PAPER = "A General Theoretical Paradigm to Understand Learning from Human Preferences"
PAPER_URL = "https://arxiv.org/abs/2310.12036"
ROLLOUT = "pairs"
KL_IN_OBJECTIVE = True  # tau sits inside the loss (see algorithms/__init__.py)


@dataclasses.dataclass(frozen=True)
class Config:
    beta: float = 0.1  # tau: the regularization weight; the margin's target is 1 / (2 tau)
    length_normalized: bool = True  # average each response's log-ratio over its tokens (TRL DPOTrainer)


def pairing(cfg: Config) -> pairing_lib.Pairing:
    """The task's stored pairs when it has them (offline), else the best and worst of K samples of
    the current policy by the task's reward; a tie counts in no loss."""
    return pairing_lib.Pairing(source="auto", judge=None, drop_ties=True)


def check_config(run_cfg: Any) -> str | None:
    """IPO needs ``beta = tau > 0`` and whole pairs in every micro-batch."""
    if not run_cfg.algo.beta > 0:
        return f"ipo needs algo.beta = tau > 0 (the target is 1/(2 tau)), got {run_cfg.algo.beta}"
    return pairing_lib.check_pairs_config(run_cfg)


def pair_loss(h: Array, cfg: Config) -> Array:
    """``(h - 1/(2 tau))^2`` per pair margin ``h``."""
    return (h - 1.0 / (2.0 * cfg.beta)) ** 2


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """The weight of each row in the IPO gradient at pi_old (``ops.sequence.pair_implicit_advantages``,
    with ``1/|y|`` per row when length-normalized): ``[B]``."""
    return sequence.pair_implicit_advantages(rollout, pair_loss, cfg, cfg.length_normalized)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """The IPO loss ``pair_loss(h)`` on the (length-averaged) margin, mean over the batch's pairs
    (global ``num_seqs / 2``; ``ops.sequence.pair_objective``)."""
    return sequence.pair_objective(logprobs, batch, pair_loss, cfg, NAME, cfg.length_normalized)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """``-sum_b A_b log pi(y_b) / num_seqs``: its gradient is IPO's at pi_old (``advantages``)."""
    seq = sequence.sequence_logprobs(logprobs, batch["mask"])
    return -jnp.sum(batch["advantages"] * seq) / batch["num_seqs"]


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Any]:
    """Pairs for the invariant suite: rows ``2p, 2p + 1`` form pair ``p``."""
    return sequence.example_pairs(key, batch_size)
