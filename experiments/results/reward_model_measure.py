"""Trains the Bradley-Terry reward model (``jaxrl_llm.judges.reward_model``) on verifier-labelled
pairs of basic_arithmetic and prints held-out pair accuracy, agreement with the verifiable reward,
and how many held-out prompts / pairs also occur in training (the task has few distinct questions).

    python experiments/results/reward_model_measure.py     # ~8 min on the 2-core machine (loaded)
"""

import json
import time

import numpy as np

from jaxrl_llm import tasks
from jaxrl_llm.judges import reward_model as RM

STEPS, LR, BATCH = 300, 3e-4, 32


def main(seed: int = 0) -> dict:
    t0 = time.time()
    task = tasks.make_task(
        "rg:basic_arithmetic",
        min_terms=2,
        max_terms=2,
        min_digits=1,
        max_digits=1,
        operators=["+"],
        allow_parentheses=False,
        allow_negation=False,
        num_eval=64,
        size=400,
    )
    train_pairs = RM.verifiable_pairs(task, 256, seed=seed)
    heldout = RM.verifiable_pairs(task, 64, seed=seed + 1, split="eval")
    rm = RM.create("tiny", max_len=48, seed=seed)
    history = RM.train(rm, train_pairs, steps=STEPS, batch_size=BATCH, learning_rate=LR, seed=seed)
    rng = np.random.default_rng(seed + 2)
    prompts, completions, rewards = [], [], []
    for e, _, _ in heldout:  # the reference answer and three wrong ones per held-out prompt
        value = int(e.answer)
        for c in [value] + [value + int(d) for d in rng.choice([-3, -2, -1, 1, 2, 3], size=3, replace=False)]:
            text = f"<answer>{c}</answer>"
            prompts.append(e)
            completions.append(text)
            rewards.append(sum(w * fn(text, e) for fn, w in task.reward_fns))
    seen = {str(e.prompt) for e, _, _ in train_pairs}
    same = {(str(e.prompt), c, r) for e, c, r in train_pairs}
    return {
        "model": "tiny",
        "steps": STEPS,
        "lr": LR,
        "batch_size": BATCH,
        "train_pairs": len(train_pairs),
        "heldout_pairs": len(heldout),
        "final_train_loss": history[-1]["loss"],
        "train_pair_accuracy": RM.pair_accuracy(rm, train_pairs),
        "heldout_pair_accuracy": RM.pair_accuracy(rm, heldout),
        "agreement_with_verifier": RM.agreement(rm, prompts, completions, np.asarray(rewards)),
        "heldout_prompts_seen_in_training": sum(str(e.prompt) in seen for e, _, _ in heldout),
        "heldout_pairs_identical_to_a_training_pair": sum((str(e.prompt), c, r) in same for e, c, r in heldout),
        "seconds": time.time() - t0,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
