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
    python experiments/suite.py --method spo_chain --tasks partial_sums --seeds 0 1 2 --set algo.num_continuations=4
    jaxrl-llm train spo_chain         # one run, seed 0 (``get_config``; builds the SFT start first if missing)

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: not measured.

Expected result: not measured yet. The paper reports +6-12 pp over PPO and GRPO on GSM8K
(Rho-1.1B SFT); here: accuracy against GRPO at equal sampled tokens, with GRPO's spread over 3
seeds as the noise floor, and the fraction of tokens receiving gradient (``frac_prob_masked``).
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
