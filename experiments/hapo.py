"""HAPO vs GRPO (copo_grpo_baseline.py) on mixed-difficulty chain sums, tiny model, same budget.

Command (2-core CPU, a few minutes each; run sequentially):
    python experiments/hapo.py                 # = jaxrl-llm train hapo, with the temperature rule wired
    jaxrl-llm train copo_grpo_baseline
    jaxrl-llm plot runs/hapo runs/copo_grpo_baseline

HAPO samples with a per-token temperature (``hapo.temperature_rule(cfg, state)``, from the
previous step's entropy statistics in the algorithm state). Until the trainer passes that rule to
the sampler itself, ``python experiments/hapo.py`` runs the standard trainer with
``Trainer.generate`` wrapped to pass it for RL rollouts (evaluation keeps the plain temperature);
``jaxrl-llm train hapo`` runs HAPO without the adaptive temperature. The sampler takes the rule as
a static argument, so each step's new statistics compile a new sampling program (counted in the
summary's compile count).

What it measures (spec group_rlvr_and_credit.md §10): the mean token entropy over training
(``entropy``; HAPO's claim: higher than the baseline), the adapted clip bounds and advantage
scale (``clip_bound/*``, ``adv_scale/mean``), accuracy and pass@k.
Settings: the paper's defaults (tau 0.05, pivot 0.8, beta_A = alpha_c = 1, eps 0.2, dual-clip 10,
token-mean, paper sign convention), except ``dynamic_sampling = False``: DAPO's filter would spend
extra generation rounds, breaking the same-budget comparison. Results:
``experiments/results/hapo.md``.
"""

import importlib.util
import pathlib

from jaxrl_llm.algorithms import hapo
from jaxrl_llm.config import Config

_here = pathlib.Path(__file__).with_name("copo_grpo_baseline.py")
_spec = importlib.util.spec_from_file_location("copo_grpo_baseline", _here)
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)


def get_config() -> Config:
    return baseline.base_config("hapo", "hapo", hapo.Config(dynamic_sampling=False))


def wire_temperature_rule() -> None:
    """Wraps ``Trainer.generate`` so RL rollouts sample with HAPO's rule (stand-in for trainer support)."""
    import functools

    from jaxrl_llm import sampling, train

    generate = train.Trainer.generate

    def generate_adaptive(self, prompt_tokens, prompt_mask, key, num_samples, greedy=False, temperature=None):
        if greedy or temperature is not None or self.phase != "rl":
            return generate(self, prompt_tokens, prompt_mask, key, num_samples, greedy, temperature)
        plain = sampling.sample
        sampling.sample = functools.partial(plain, temperature_rule=hapo.temperature_rule(self.algo_cfg, self.algo_state))
        try:
            return generate(self, prompt_tokens, prompt_mask, key, num_samples, greedy, temperature)
        finally:
            sampling.sample = plain

    train.Trainer.generate = generate_adaptive


if __name__ == "__main__":
    from jaxrl_llm import train
    from jaxrl_llm.config import validate

    wire_temperature_rule()
    print(train.train(validate(get_config())))
