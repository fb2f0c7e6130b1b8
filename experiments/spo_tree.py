"""SPO-tree (Guo et al. 2025, "Segment Policy Optimization", https://arxiv.org/abs/2505.23564) vs
GRPO on scratchpad partial sums, a task with multi-step completions (a partial sum a line,
40-72 tokens), where segments can hold individual steps.

SPO-tree grows, for each of the step's 16 prompts, a tree of depth 3 with branching (2, 2, 2):
segments of at most M = 24 tokens at the first two levels (about one scratchpad line each), the
last level up to 48 tokens (the task's 96-token cap overall); children start from the parent's KV
cache (``rollouts/tree.py``). Values are averaged bottom-up, each edge p -> c trains its segment
with A = V(c) - V(p) on the tokens the policy found unlikely (pi_old < 0.9), and untrained edges
wait in the edge buffer (``algo.replay_rows`` = 64 rows a step). Setting otherwise the learning
suite's rule for ``partial_sums`` (``experiments/suite.py``: ``small`` model from the suite's SFT
start, Adam lr 5e-5, KL weight 0.04, 400 RL steps, held-out greedy accuracy every 100 steps).

The budget differs per step: a tree samples at most 16 x (2 x 24 + 4 x 24 + 8 x 48) = 8448 tokens,
GRPO's 16 x 8 completions up to 12288. Compare at equal sampled tokens: ``tree/sampled_tokens`` in
SPO-tree's metrics, the completion lengths times 128 in GRPO's (``jaxrl-llm plot`` can put both
on a sampled-token axis).

Commands:
    python experiments/suite.py --method grpo --tasks partial_sums --seeds 0 1 2      # the noise floor
    python experiments/suite.py --method spo_tree --tasks partial_sums --seeds 0 1 2 \
        --set "algo.branching=[2, 2, 2]" --set algo.segment_len=24 --set algo.last_segment_len=48
    jaxrl-llm train spo_tree          # one run, seed 0 (``get_config``; builds the SFT start first if missing)

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: not measured.

Expected result: not measured yet. The paper reports +7-11 pp over GRPO on MATH500 (2K/4K eval
context, DeepSeek-R1-Distill-Qwen-1.5B); here the claims to check are the credit localization (in
failed trees, the segment with the first wrong partial sum gets the most negative advantage) and
accuracy against GRPO at equal sampled tokens, with GRPO's spread over 3 seeds as the noise floor.
"""

import pathlib

import suite  # experiments/suite.py (``config.load_experiment`` puts experiments/ on sys.path)

from jaxrl_llm.config import Config

TREE = ["algo.branching=[2, 2, 2]", "algo.segment_len=24", "algo.last_segment_len=48", "algo.replay_rows=64"]


def get_config() -> Config:
    task = suite.TASKS["partial_sums"]
    start = suite.sft_start(task, pathlib.Path("runs/suite/sft_starts"))
    return suite.run_config(task, "spo_tree", 0, start, pathlib.Path("runs/spo_tree"), overrides=TREE)
