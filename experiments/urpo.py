"""URPO (https://arxiv.org/abs/2507.17515): the policy as its own referee.

The default run's setting (``small`` model, basic_arithmetic, 120 SFT steps, 16 prompts x 8
samples, lr 5e-5) with the objective swapped to ``urpo``: each group is scored by the same model,
with its live params, through the generative judge (``rollouts/judged.py``, kind
``self_judged``; ``referee_mode="logprobs"``: the expected score over the tokens 0..9 after the
rubric's "Score:"). The verifiable reward is not in the loss (``self_reward_weight = 1``); it
measures the referee (``urpo/referee_accuracy``) and the player (``urpo/verifiable_reward``).
``--set algo.self_reward_weight=0.5`` mixes the verifier in.

Command:
    jaxrl-llm train urpo

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time and expected result: see experiments/results/urpo.md.
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import urpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("urpo", "urpo", algo=urpo.Config())
