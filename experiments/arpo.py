"""ARPO (https://arxiv.org/abs/2507.19849) against GRPO with the same tool and budget, on arithmetic
with large numbers where a Python tool computes: SmolLM2-135M-Instruct, CPU scale.

Setting: reasoning-gym ``basic_arithmetic`` with 2-3 terms of 3-4 digits (+, -, *), the ``python``
tool (``env.tools``: ``<python>...</python>`` runs in the sandbox, ``<output>`` appended out of the
loss, at most 2 calls per trajectory), segments of 48 new tokens, a system prompt that shows the
tool's syntax, 4 prompts x M = 8 trajectories per step, Adam lr 1e-6, no KL, 10 steps. ARPO: N = 4
initial rollouts, beam 2, alpha 0.5, beta_h 0.2, entropy proxy over 20 tokens' top-10 log-probs,
hard attribution of shared prefixes (``algo.attribution="hard"``; the paper's default is "soft").

The baseline is GRPO over M independent tool-using trajectories: the same file with
``algo.initial_rollouts=8`` (no slot is left for branches, so the rollout is M independent samples
and the advantage is GRPO's; dual-clip as in the ARPO scripts), every other number equal.

Commands:
    jaxrl-llm train arpo
    jaxrl-llm train arpo --set name=arpo_grpo --set algo.initial_rollouts=8 --set algo.attribution=soft
    (seeds: --set seed=1 ...)

What to read (``metrics.jsonl``): ``reward/mean`` (accuracy), ``arpo/tool_calls`` (per trajectory),
``arpo/tool_calls_per_solved``, ``arpo/branches``, ``arpo/branch_entropy_delta``,
``arpo/sampled_tokens`` (the paper's claim: equal or better accuracy with fewer tool calls).
Hardware and time: the project's 2-core CPU machine, f32; measured numbers are in
``experiments/results/arpo.md`` (none are claimed here).
"""

from jaxrl_llm.algorithms import arpo
from jaxrl_llm.config import (
    CheckpointConfig,
    Config,
    EnvConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    SamplingConfig,
    TaskConfig,
    TrainConfig,
)

SYSTEM = (
    "You can run Python: write <python>print(EXPRESSION)</python> and the result appears in <output>. "
    "Give the final answer as <answer>NUMBER</answer>."
)


def get_config() -> Config:
    return Config(
        name="arpo",
        seed=0,
        algorithm="arpo",
        algo=arpo.Config(initial_rollouts=4, beam_size=2, attribution="hard"),
        model=ModelConfig(name="smollm2-135m-instruct"),
        task=TaskConfig(
            name="rg:basic_arithmetic",
            kwargs={
                "min_terms": 2,
                "max_terms": 3,
                "min_digits": 3,
                "max_digits": 4,
                "operators": ["+", "-", "*"],
                "allow_parentheses": False,
                "allow_negation": False,
                "num_eval": 8,
                "size": 400,
            },
            max_prompt_len=256,
            system_prompt=SYSTEM,
        ),
        env=EnvConfig(tools=("python",), max_tool_calls=2, max_tool_output_tokens=24),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=48),
        optim=OptimConfig(learning_rate=1e-6, max_grad_norm=1.0),
        train=TrainConfig(steps=10, prompts_per_step=4, group_size=8),
        eval=EvalConfig(num_examples=0),
        checkpoint=CheckpointConfig(every=0),
    )
