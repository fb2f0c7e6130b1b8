"""Every registered method trains: three RL steps through ``train.train`` on the ``tiny`` model,
finite losses, and no compilation after warm-up (the first two RL steps); a registered method the
trainer cannot run fails here."""

import math

import pytest

from jaxrl_llm import algorithms, metrics_log, train
from jaxrl_llm import config as C

TASK = (
    'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
    '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 40}'
)

# Settings a method needs beyond the shared tiny run (its defaults are sized for real models).
NEEDS = {
    "hbpo": ["algo.budgets=[1, 2]", "algo.l_max=2", "task.max_prompt_len=128"],
    "gigpo": ["env.max_turns=2", "env.max_episode_tokens=64"],
    "epo": ["env.max_turns=2", "env.max_episode_tokens=64"],
    "epo_strategic": ["env.name=keydoor_strategy", "env.max_turns=2", "env.max_episode_tokens=64"],
    "poad": ["env.max_turns=2", "env.max_episode_tokens=64"],
    "arpo_gui": ["env.max_turns=2", "env.max_episode_tokens=64", "algo.episode_tokens=64", "algo.num_tasks=2"],
    "arpo": ['env.tools=["python"]', "algo.initial_rollouts=1"],
    "dialtree": ["algo.branching=2", "algo.width=2", "algo.max_turns=2"],
    "single_stream_spo": ["algo.max_response_len=2", "algo.num_prompts=8", "algo.n_offline=2"],
    "tppo": ["algo.num_slots=4", "algo.max_prompt_len=40", "algo.max_response_len=2", "algo.window=1"],
    "spo_tree": [
        "algo.branching=[2, 2]",
        "algo.segment_len=1",
        "algo.last_segment_len=2",
        "algo.buffer_size=16",
        "algo.replay_rows=4",
    ],
    "spo_chain": ["algo.num_continuations=2"],
}


def tiny_run(run_dir, algorithm, *overrides):
    return C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={run_dir}",
            "model.name=tiny",
            "task.name=rg:basic_arithmetic",
            TASK,
            "sft.steps=0",
            "train.steps=3",
            "train.prompts_per_step=2",
            "train.group_size=2",
            "train.share_prompt=false",
            "sampling.max_new_tokens=2",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "checkpoint.every=0",
            f"algorithm={algorithm}",
            *NEEDS.get(algorithm, []),
            *overrides,
        ],
    )


@pytest.mark.parametrize("name", sorted(algorithms.REGISTRY))
def test_every_method_trains_without_recompiling(tmp_path, name):
    summary = train.train(tiny_run(tmp_path / name, name))
    assert summary["status"] == "finished" and summary["step"] == 3
    rl = [r for r in metrics_log.read_metrics(tmp_path / name) if r["phase"] == "rl"]
    assert len(rl) == 3
    assert all(math.isfinite(r["loss"]) and r["finite"] == 1.0 for r in rl), rl
    assert rl[-1]["compiles"] == 0, [r["compiles"] for r in rl]
    assert summary["counters"]["compiles_after_warmup"] == 0
