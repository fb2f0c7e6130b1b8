"""SPO-chain (Guo et al. 2025, "Segment Policy Optimization", https://arxiv.org/abs/2505.23564) vs
GRPO on scratchpad partial sums, a task with multi-step completions (a partial sum a line,
40-72 tokens, 57 on average).

Each step samples the rule's 16 prompts x 8 completions, cuts every completion before every K-th
low-probability token (q < 0.9, K = 5) and runs N = 4 Monte Carlo continuations from each distinct
cut prefix, starting from the completion's own KV cache (``rollouts/chain.py``; N = 4 is the
official long-CoT chain config, 9 the Rho-1.1B one). Segment advantages are differences of the MC
values between cuts; only the low-probability tokens train. Setting otherwise the learning suite's
rule for ``partial_sums`` (``experiments/suite.py``: ``small`` model from the suite's SFT start,
Adam lr 5e-5, KL weight 0.04, 400 RL steps, held-out greedy accuracy every 100 steps).

The continuations cost samples: ``chain/sampled_tokens`` (completions + continuations) is the
budget; compare with GRPO at equal sampled tokens as well as at equal steps.

Commands:
    python experiments/suite.py --method grpo --tasks partial_sums --seeds 0 1 2      # the noise floor
    python experiments/suite.py --method spo_chain --tasks partial_sums --seeds 0 1 2 --set algo.num_continuations=4 \
        --set train.steps=150         # ~GRPO's 400-step token budget (3.0e6): 150 steps sampled 3.6e6
    python experiments/results/equal_tokens.py runs/suite/grpo/partial_sums/s{0,1,2} runs/suite/spo_chain/partial_sums/s0 --at 3e6
    jaxrl-llm train spo_chain         # one run, seed 0 (``get_config``; builds the SFT start first if missing)

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time (2026-12-07, beside one other job): 150 steps in 2,559 s, 16-21 s a step (GRPO's step on
this task: 5-9 s). A step samples ~2.4e4 tokens (continuations ~1.7e4 of them), ~3.2x GRPO's 7.5e3.

Result (seed 0, ``experiments/results/spo_chain.md``): the paper reports +6-12 pp over PPO and
GRPO on GSM8K (Rho-1.1B SFT); here SPO-chain's held-out greedy accuracy at GRPO's token budget is
inside GRPO's spread over 3 seeds, and like GRPO it ends below the SFT start. 11-13% of the
completion tokens carry gradient (``frac_prob_masked`` 0.87-0.89).
"""

import pathlib

import suite  # experiments/suite.py (``config.load_experiment`` puts experiments/ on sys.path)

from jaxrl_llm.config import Config


def get_config() -> Config:
    task = suite.TASKS["partial_sums"]
    start = suite.sft_start(task, pathlib.Path("runs/suite/sft_starts"))
    return suite.run_config(
        task, "spo_chain", 0, start, pathlib.Path("runs/spo_chain"), overrides=["algo.num_continuations=4"]
    )
