"""REFUEL (https://arxiv.org/abs/2410.04612): multi-turn dialogues with a scripted user.

The default run's ``small`` model and SFT warm start (basic_arithmetic, 120 steps), then REFUEL:
each step plays 16 three-turn dialogues (``rollouts/dialogue.py``, kind ``refuel_pairs``: the user
asks the task's question, then twice "Add k to your last answer.", k a digit fixed by the
question), picks H' ~ U{1..3} and h ~ U{0..H'-1}, replays each dialogue from the shared prefix
s_h with a fresh seed, and regresses the turn-h log-ratio difference onto the difference of the
two continuations' returns after turn H' (eta = 1). The single-turn baseline scores turn h alone
(``--set algo.horizon=immediate``: each turn a bandit, the REBEL reading). What to measure:
``refuel/success_turn{0,1,2}`` (correctness of each assistant turn of the on-policy dialogues)
and ``refuel/dialogue_success``, for both horizons, and as ``algo.num_turns`` grows.

Command:
    jaxrl-llm train refuel
    jaxrl-llm train refuel --set algo.horizon=immediate --set name=refuel_immediate --run-dir runs/refuel_immediate

This run's start answers single questions only: its later turns are right ~1% of the time, so the
two horizons get the same signal (experiments/results/refuel.md). The comparison runs from the
learning suite's ``dialogue`` start instead, an SFT on whole dialogues:
    python experiments/suite.py --method refuel --tasks dialogue --seeds 0 1 2 --set train.steps=150
    python experiments/suite.py --method refuel --tasks dialogue --seeds 0 1 2 --set train.steps=150 \
        --name refuel_immediate --set algo.horizon=immediate

Hardware: the project's 2-core CPU machine (no accelerator), f32; ~7-8 s a step (16 pairs of
three-turn dialogues) with two runs at a time.

Time and result: experiments/results/refuel.md.
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import refuel
from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("refuel", "refuel", algo=refuel.Config(num_turns=3, max_context=256))
