"""INPO (https://arxiv.org/abs/2407.00617) under an intransitive preference.

The default run's setting (``small`` model, basic_arithmetic prompts, 120 SFT steps, 16 prompts x
K = 8 samples per step, lr 5e-5), shortened to 300 RL steps with a checkpoint every 100 (all
kept, so the class mix can be followed), with the objective swapped to ``inpo`` and its pairs labelled by
``judges.oracle.CyclicOracle``: a rock-paper-scissors preference over completions (each falls in
one of three classes by content), which no Bradley-Terry reward can represent. Each RL step is one
INPO iteration (pi_t = the policy that sampled the step); eta = 0.005, tau = eta / 3 (paper App.
B). What to measure: the class mix of the policy's samples (the Nash policy of the cyclic game
mixes the three classes), its exploitability and the win rate against the SFT start
(``experiments/results/inpo_measure.py``), compared with ``online_dpo`` given the same oracle's
(best, worst) pairs of the same K = 8 samples (a Bradley-Terry loss on an intransitive
preference). ``--set algo.oracle=reward`` ranks by the verifier instead (the paper's BT-RM setting).

Commands (seeds 1, 2: ``--set seed=1`` and names ``..._s1``):
    jaxrl-llm train inpo --set name=inpo_cyc_s0
    jaxrl-llm train inpo --set algorithm=online_dpo --set algo.oracle=cyclic --set name=odpo_cyc_s0
    python experiments/results/inpo_measure.py runs/inpo_cyc_s0 runs/odpo_cyc_s0

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time and expected result: not measured yet (the first run of this file is to be made).
"""

import dataclasses

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import inpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    cfg = baselines.config("inpo", "inpo", algo=dataclasses.replace(inpo.Config(), oracle="cyclic"), steps=300)
    return dataclasses.replace(cfg, checkpoint=dataclasses.replace(cfg.checkpoint, every=100, max_to_keep=4))
