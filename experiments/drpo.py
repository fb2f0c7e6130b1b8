"""DR-PO (Chang et al. 2024, https://arxiv.org/abs/2404.08495) vs PPO on scratchpad partial sums.

DR-PO is PPO whose rollouts are reset to a prefix of the example's worked solution (the
``reset`` rollout kind: with probability ``beta_reset`` a row's first h ~ U{1..L-1} response
tokens are the reference's, the policy continues; the forced tokens are in no policy loss). Its
baseline is the same run with ``algo.beta_reset=0`` (no resets: exactly ``ppo``'s objective on the
same rows). The task is the learning suite's ``partial_sums`` (``suite:partial_sums``: 4-5 one-digit
terms, one partial sum a line, then ``<answer>total</answer>``; 40-72 response tokens), whose
examples carry the worked solution (``metadata["demonstration"]``) that the resets start from;
the reward is the task's verifier (the paper's reward model is replaced by it). Setting: the
suite's rule (``experiments/suite.py``: ``small`` model from the suite's cached SFT start, 16
prompts x 8 samples, Adam lr 5e-5, 400 RL steps, KL weight 0.04 in the reward, held-out greedy
accuracy every 100 steps); the evaluation never resets (it samples from the prompt).

Commands (the suite runner builds or reuses the SFT start and writes the table):
    python experiments/suite.py --method drpo --tasks partial_sums --seeds 0 1 2
    python experiments/suite.py --method drpo --tasks partial_sums --seeds 0 1 2 --set algo.beta_reset=0.0 --out runs/suite_noreset
    jaxrl-llm train drpo              # one run, seed 0 (``get_config``; builds the SFT start first if missing)

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: not measured. A GRPO ``partial_sums`` run under the suite's rule took 35-60 min here
beside one other job (4.6-9 s a step; ``experiments/suite.py``); DR-PO adds the critic (PPO's step
costs ~2.7x GRPO's, experiments/ppo.py) and a forward pass for pi_old over the forced tokens, so
expect ~1.5-3 h a run on this machine.

Expected result: not measured yet. The paper's claim (TL;DR, 3 seeds): DR-PO's win rate 70.2 +-
1.7% vs PPO's 62.3 +- 2.5%; its tiny-reproduction claim is that the held-out reward from the
initial state (no reset) rises faster, because the suffixes are learned first.
"""

import pathlib

import suite  # experiments/suite.py (``config.load_experiment`` puts experiments/ on sys.path)

from jaxrl_llm.config import Config


def get_config() -> Config:
    task = suite.TASKS["partial_sums"]
    start = suite.sft_start(task, pathlib.Path("runs/suite/sft_starts"))
    return suite.run_config(task, "drpo", 0, start, pathlib.Path("runs/drpo"))
