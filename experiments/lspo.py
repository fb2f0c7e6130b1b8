"""LSPO (https://arxiv.org/abs/2502.04686) on the paper's own proof of concept: Rock-Paper-Scissors-
Lizard-Spock as a language game (``jaxrl_llm.games.rpsls``), played by SmolLM2-135M-Instruct.

Setting: each step samples 4 states x 8 candidate utterances (temperature 1, 16 new tokens) from
the prompt "We play rock, paper, scissors, lizard, spock. Say your move in a short sentence.";
the policy's mean final hidden state over each utterance is its embedding; spherical k-means with
k = 5 gives the latent strategies; regret matching (1000 iterations) on the clusters' payoff
matrix gives the equilibrium sigma_bar; per state the candidate of the highest-sigma_bar strategy
is preferred to that of the lowest, and the policy takes a DPO step (beta 0.1, Adam lr 1e-5,
reference = the starting model), 15 steps.

What to read (``metrics.jsonl``): ``lspo/exploitability`` (what a best response wins against the
mixture of moves the policy's candidates name: 0 at the uniform Nash equilibrium, 1 for a pure
move; the prompted model's bias is the paper's motivation), ``lspo/move_*`` (move frequencies),
``lspo/invalid_frac``, ``lspo/clusters``, ``lspo/pairs``. The baseline is the prompted model
itself (step 1's candidates, before any update): LSPO should lower the exploitability.

Command:
    jaxrl-llm train lspo            (seeds: --set seed=1 --set name=lspo_s1 ...)

Hardware and time: the project's 2-core CPU machine, f32; measured numbers are in
``experiments/results/lspo.md`` (none are claimed here).
"""

import jax
import numpy as np
from bases import episodes  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import dpo, lspo
from jaxrl_llm.config import Config
from jaxrl_llm.games import rpsls


def get_config() -> Config:
    return episodes.config(
        "lspo",
        lspo.Config(beta=0.1, num_strategies=5),
        model="smollm2-135m-instruct",
        max_prompt_len=128,
        max_new_tokens=16,
        learning_rate=1e-5,
        steps=15,
        prompts_per_step=4,
        group_size=8,
        checkpoint_every=0,
    )


def toy(
    method: str,
    seed: int,
    preference: str = "ratio",
    iterations: int = 8,
    candidates: int = 64,
    lr: float = 0.5,
    dpo_steps: int = 20,
):
    """The paper's proof of concept with a softmax-over-tokens "LLM" (no transformer), as the spec's
    tiny reproduction: 40 surface tokens, 8 per move of Rock-Paper-Scissors-Lizard-Spock, each with a
    fixed 16-d embedding (its move's random center plus noise); the prior is biased to rock and
    paper (logit +3) and almost never says spock (logit -6). Per iteration: ``candidates`` tokens
    sampled at an exploration temperature of 3, then

    * ``lspo``: spherical k-means (k = 5) on their embeddings, regret matching on the clusters'
      payoff matrix, DPO (``dpo.pair_loss``, beta 0.1, pi_ref = this iteration's policy) on every
      candidate pair whose strategy scores differ (``preference``), ``dpo_steps`` steps of ``lr``;
    * ``grpo``: self-play GRPO at the same sample budget: each candidate's reward is its payoff
      against another candidate of the same batch, group-normalized advantages, ``dpo_steps``
      policy-gradient steps of ``lr``.

    Returns per iteration (exploitability of the policy's move distribution at temperature 1, the
    number of distinct moves among the candidates)."""
    rng = np.random.default_rng(seed)
    move_of = np.arange(40) % 5
    emb = rng.normal(size=(5, 16))[move_of] + 0.3 * rng.normal(size=(40, 16))
    theta = np.where(np.isin(move_of, [0, 1]), 3.0, 0.0) + np.where(move_of == 4, -6.0, 0.0)
    cfg = lspo.Config(preference=preference)
    dl = jax.jit(jax.vmap(jax.grad(lambda h: dpo.pair_loss(h, cfg))))
    softmax = lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    out = []
    for it in range(iterations):
        toks = rng.choice(40, size=candidates, p=softmax(theta / 3.0))
        moves = [int(move_of[t]) for t in toks]
        if method == "lspo":
            labels, _ = lspo.kmeans(emb[toks], cfg.num_strategies, cfg.kmeans_iters, seed * 1000 + it)
            sigma = lspo.equilibrium(labels, moves, rpsls.payoff, cfg)
            score = lspo.strategy_scores(sigma, labels, cfg.preference)
            w, l = np.nonzero(score[:, None] > score[None, :] + 1e-9)
            ref = theta.copy()
            for _ in range(dpo_steps):
                if not len(w):
                    break
                h = (theta - ref)[toks[w]] - (theta - ref)[toks[l]]  # log-ratio margins (normalizers cancel)
                g = np.asarray(dl(h))[:, None] * (np.eye(40)[toks[w]] - np.eye(40)[toks[l]])
                theta = theta - lr * g.mean(axis=0)
        else:
            opp = rng.permutation(candidates)
            r = np.asarray([rpsls.payoff(moves[i], moves[j]) for i, j in zip(range(candidates), opp)])
            adv = (r - r.mean()) / (r.std(ddof=1) + 1e-6)
            for _ in range(dpo_steps):
                pi = softmax(theta)
                theta = theta + lr * np.mean(adv[:, None] * (np.eye(40)[toks] - pi), axis=0)
        pi_moves = np.bincount(move_of, weights=softmax(theta), minlength=5)
        out.append((rpsls.exploitability(pi_moves), len(set(moves))))
    return out


if __name__ == "__main__":  # the toy comparison of experiments/results/lspo.md
    for method, pref, lr in (
        ("grpo", "ratio", 0.5),
        ("lspo", "sigma", 2.0),
        ("lspo", "ratio", 2.0),
        ("lspo", "ratio", 5.0),
    ):
        for seed in range(3):
            trace = toy(method, seed, pref, lr=lr)
            print(method, pref, lr, seed, " ".join(f"{e:.3f}/{n}" for e, n in trace))
