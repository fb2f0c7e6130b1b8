"""``Pairing``: how a preference method's pairs are made (read by the ``pairs`` rollout kind).

A method returns one from its ``pairing(cfg)`` hook; ``check_pairs_config`` is the run-config check
that keeps the two rows of a pair in one minibatch and one micro-batch (a pair loss couples them).
Kept here, beside the judges, because method modules may not import the rollout layer (the run
config imports the algorithm registry, which the rollout layer imports).
"""

from __future__ import annotations

import dataclasses
from typing import Any

SOURCES = ("auto", "static", "policy")


@dataclasses.dataclass(frozen=True)
class Pairing:
    """``source``: ``"auto"`` (the examples' stored pairs when every drawn example has one, else
    on-policy), ``"static"`` (stored pairs required), ``"policy"`` (always on-policy samples).
    ``judge``: a ``judges.Judge`` or ``judges.PairwiseJudge`` ranking on-policy samples; ``None`` =
    the task's verifiable reward. ``drop_ties``: zero the loss mask of pairs the judge does not
    separate (no preference to learn from)."""

    source: str = "auto"
    judge: Any = None
    drop_ties: bool = True

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"Pairing.source must be one of {SOURCES}, got {self.source!r}")


def check_pairs_config(run_cfg: Any, on_policy: bool = True) -> str | None:
    """Why the run config would split a pair across minibatches or micro-batches, or could not
    sample a pair (``None`` when it cannot)."""
    t = run_cfg.train
    rows = 2 * t.prompts_per_step
    if t.num_minibatches > 1 and not t.share_prompt:
        return "pairs need train.share_prompt=true when train.num_minibatches > 1 (minibatches of whole pairs)"
    if rows % t.num_minibatches or (rows // t.num_minibatches) % 2:
        return f"train.num_minibatches={t.num_minibatches} must split the {rows} rows of a step into whole pairs"
    if t.micro_batch_size % 2:
        return f"train.micro_batch_size={t.micro_batch_size} must be even (a pair is two rows)"
    if t.micro_batch_size and (rows // t.num_minibatches) % t.micro_batch_size:
        return (
            f"train.micro_batch_size={t.micro_batch_size} must divide the minibatch of "
            f"{rows // t.num_minibatches} rows (2 rows per prompt)"
        )
    if on_policy and t.group_size < 2:
        return f"on-policy pairs need train.group_size >= 2 samples per prompt, got {t.group_size}"
    return None
