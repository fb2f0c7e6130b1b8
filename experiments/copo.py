"""COPO vs GRPO (copo_grpo_baseline.py) on mixed-difficulty chain sums, tiny model, same budget.

Command (2-core CPU, a few minutes each; run sequentially):
    python experiments/copo.py                 # = jaxrl-llm train copo, with COPO's host hook wired
    jaxrl-llm train copo_grpo_baseline
    jaxrl-llm plot runs/copo runs/copo_grpo_baseline

COPO needs ``rollout["answer_ids"]`` (which completions of a group gave the same final answer),
computed on the host from the decoded completions by ``copo.host_extras``. Until the trainer calls
that hook itself, ``python experiments/copo.py`` runs the standard trainer with
``train.collect_rollout`` wrapped to add it (decoding with the trainer's own ``decode``);
``jaxrl-llm train copo`` stops with a KeyError naming ``answer_ids``.

What it measures (spec group_rlvr_and_credit.md §8): the fraction of rows that carry gradient
(COPO: ``frac_signal_rows``; GRPO: 1 - ``frac_zero_std_groups`` with binary rewards), the answer
entropy (``answer_entropy/mean``), held-out greedy accuracy and pass@k.
Settings: the paper's defaults (``soft_with_forced``, k=20, b=0.5, eps 0.2, seq-mean-token-mean,
no KL); everything else is the shared baseline run. Results: ``experiments/results/copo.md``.
"""

import importlib.util
import pathlib

from jaxrl_llm.algorithms import copo
from jaxrl_llm.config import Config

_here = pathlib.Path(__file__).with_name("copo_grpo_baseline.py")
_spec = importlib.util.spec_from_file_location("copo_grpo_baseline", _here)
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)


def get_config() -> Config:
    return baseline.base_config("copo", "copo", copo.Config())


def wire_host_hook() -> None:
    """Wraps ``jaxrl_llm.train.collect_rollout`` to add ``copo.host_extras`` (stand-in for trainer support)."""
    from jaxrl_llm import train

    collect = train.collect_rollout

    def collect_with_answers(tr, key):
        rollout, examples, metrics = collect(tr, key)
        completions = tr.decode(rollout["tokens"], rollout["lengths"])
        rollout.update(copo.host_extras(completions, rollout["group_size"], tr.algo_cfg))
        return rollout, examples, metrics

    train.collect_rollout = collect_with_answers


if __name__ == "__main__":
    from jaxrl_llm import train
    from jaxrl_llm.config import validate

    wire_host_hook()
    print(train.train(validate(get_config())))
