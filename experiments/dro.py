"""DRO (https://arxiv.org/abs/2405.19107), verl's per-token form on the default task.

The default run's setting (``experiments/bases/baselines.py``: ``small`` model, basic_arithmetic,
120 SFT steps, 1100 RL steps of 16 prompts x 8 samples, lr 5e-5) with the objective swapped to
``dro`` (DRO's per-token loss, -(log pi A - beta/2 (log pi - log pi_old)^2) with dro_beta = 0.05 and GRPO's group z-score for A, as verl's loss_mode=dro; the defaults of ``jaxrl_llm/algorithms/dro.py``). Compare with the default
run (GRPO).

Command:
    jaxrl-llm train dro
    jaxrl-llm plot runs/dro runs/default

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: about the default run's (~8-9 min alone on the 2 cores).

Expected result: not measured yet for this file; the default run's GRPO gives 43.4% -> 78.9% greedy
held-out accuracy in this setting (experiments/default.py). A method that trains should end well
above its SFT start; report the measured numbers here when the run is made.
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("dro", "dro")
