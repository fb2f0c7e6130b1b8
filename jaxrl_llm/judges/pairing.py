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


# Texts a verifier may read as the same answer (the "equivalent forms" of a GEPO group), shortest
# first (a static row is cut at sampling.max_new_tokens), and ways to make a wrong one;
# ``verifiable_group`` keeps only what the verifier itself labels.
EQUIVALENT_FORMS = ("{v}", " {v}", "{v} ", "<answer>{v}</answer>", "<answer> {v} </answer>")
WRONG_OFFSETS = (1, -1, 2, -2, 3, -3, 10, -10)


def verifiable_group(example: Any, n_winners: int, n_losers: int, score_fn: Any) -> tuple[list[str], list[str]] | None:
    """A static preference group from a verifiable task with integer answers: ``n_winners``
    equivalent forms of the reference answer (``EQUIVALENT_FORMS``) and ``n_losers`` wrong values
    (plain numbers). ``score_fn(texts, examples) -> (rewards, info)`` labels them: a winner
    needs the top reward, a loser a lower one. ``None`` when the answer is not an integer or the
    verifier does not yield enough of either side."""
    try:
        v = int(str(example.answer).strip())
    except (TypeError, ValueError):
        return None
    winners = [f.format(v=v) for f in EQUIVALENT_FORMS]
    losers = [str(v + d) for d in WRONG_OFFSETS]
    rewards, _ = score_fn(winners + losers, [example] * (len(winners) + len(losers)))
    rewards = [float(r) for r in rewards]
    top = max(rewards[: len(winners)])
    won = [w for w, r in zip(winners, rewards) if r == top]
    lost = [t for t, r in zip(losers, rewards[len(winners) :]) if r < top]
    if len(won) < n_winners or len(lost) < n_losers:
        return None
    return won[:n_winners], lost[:n_losers]
