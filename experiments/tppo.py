"""T-PPO (Fan et al. 2025, https://arxiv.org/abs/2506.15050) vs synchronous PPO on scratchpad
partial sums, a task whose response length has a tail (40-72 tokens; 30-85 with the 1-2-digit
terms used before 2026-12-06).

T-PPO trains on windows: every step advances 128 in-flight responses by at most w = 16 tokens
(the ``window`` rollout kind), refills finished slots with new prompts, and updates the policy on
the new windows (EGAE advantages, the bootstrap V(s_l) := V(s_{l-1}) for truncated responses) and
the critic on finished responses only. Synchronous PPO (``ppo``) samples every response to its end
before each update, so each step waits for the longest one. Setting: the learning suite's
``partial_sums`` (``experiments/suite.py``'s rule: ``small`` model from the suite's cached SFT
start, 16 x 8 = 128 rows a step, Adam lr 5e-5, KL weight 0.04 in the reward, 400 RL steps, held-out
greedy accuracy every 100 steps). The in-flight set is sized to the run (``algo.num_slots`` = 128
rows, ``algo.max_prompt_len`` = 192, ``algo.max_response_len`` = 96 = sampling.max_new_tokens).

Commands:
    python experiments/suite.py --method ppo --tasks partial_sums --seeds 0 1 2
    python experiments/suite.py --method tppo --tasks partial_sums --seeds 0 1 2 \
        --set algo.num_slots=128 --set algo.max_prompt_len=192 --set algo.max_response_len=96 --set algo.window=16
    jaxrl-llm train tppo               # one run, seed 0 (``get_config``; builds the SFT start first if missing)
    python benchmarks/window_throughput.py   # tokens/s of the window trainer vs synchronous PPO

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: not measured. A T-PPO step samples at most 16 tokens per row (PPO's up to 96), so it is
several times shorter than a PPO step, but a response needs several steps to finish: compare at
equal wall time or equal sampled tokens, not at equal steps.

Expected result: not measured yet. The paper's claim (Qwen2.5-32B, AIME 2024): up to 2.5x
training efficiency over synchronous PPO at matching accuracy; here the claim to check is the
throughput ratio (target >= 1.5x tokens/s, ``benchmarks/window_throughput.py``) with learning
curves that reach PPO's accuracy.
"""

import pathlib

import suite  # experiments/suite.py (``config.load_experiment`` puts experiments/ on sys.path)

from jaxrl_llm.config import Config


def get_config() -> Config:
    task = suite.TASKS["partial_sums"]
    start = suite.sft_start(task, pathlib.Path("runs/suite/sft_starts"))
    rows = suite.RULE.prompts_per_step * suite.RULE.group_size
    sizes = [
        "algo.window=16",
        f"algo.num_slots={rows}",
        f"algo.max_prompt_len={task.max_prompt_len}",
        f"algo.max_response_len={task.max_new_tokens}",
    ]
    return suite.run_config(task, "tppo", 0, start, pathlib.Path("runs/tppo"), overrides=sizes)
