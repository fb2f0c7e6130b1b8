"""OPPO (arXiv 2305.16217) against a return-conditioned Decision Transformer on offline Pendulum data.

Data: ``experiments/oppo_data.py`` (PPO policies saved at 4 stages of training, a noisy expert, a
decoy and a random policy on gymnax Pendulum-v1; 260 episodes of 200 steps). Both methods train
the same Decision Transformer (``jaxrl_llm.control.decision_transformer``) on the same segments;
OPPO conditions it on a hindsight embedding z and deploys it with the learned z* (preferences from
the scripted teacher on true segment rewards), the baseline on the scaled return-to-go, deployed
with the best return of the data as its target. Sizes are cut to fit a shared 2-core CPU (the
paper's: K 20, width 128, 3 layers, batch 64, 1e5 steps at lr 1e-4): K 10, width 64, 2 layers,
batch 32, ``--steps`` (default 1000) at lr 1e-3 with a 100-step warm-up. The seeds run together
as one ``vmap``-ed train step.

Commands (need ``pip install 'jaxrl_llm[control]'``):
    nice -n 10 python experiments/oppo_data.py --out runs/oppo_data/pendulum_mix.npz
    nice -n 10 python experiments/control_oppo.py --data runs/oppo_data/pendulum_mix.npz

Hardware: the project's shared 2-core CPU. Result and times: experiments/results/oppo.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.control import envs, oppo

ENV = "gymnax:Pendulum-v1"


def oppo_config(conditioning: str = "preference") -> oppo.Config:
    """The comparison's settings (both methods share all but ``conditioning``)."""
    return oppo.Config(
        conditioning=conditioning,
        context=10,
        dim=64,
        layers=2,
        heads=1,
        batch_size=32,
        lr=1e-3,
        warmup_steps=100,
        foresee=10,  # the segment's own return (Pendulum episodes are 200 steps; see oppo.py)
        return_scale=1000.0,
        max_ep_len=200,
    )


def run(
    data_path: str, cfg: oppo.Config, seeds: list[int], steps: int, eval_every: int, eval_episodes: int, chunk: int = 10
) -> dict:
    """Trains ``cfg`` for every seed at once (``vmap``), evaluating every ``eval_every`` steps; returns
    the per-seed evaluation returns and the last training metrics."""
    if steps % chunk or eval_every % chunk:
        raise ValueError(f"--steps {steps} and --eval-every {eval_every} must be multiples of {chunk}")
    data, _ = oppo.load_dataset(data_path)
    env = envs.make(ENV)
    agent = oppo.make(env, data, cfg, eval_episodes=eval_episodes)
    seed_keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    init_keys, train_keys, eval_keys = (jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(seed_keys) for i in range(3))
    state = jax.jit(jax.vmap(agent.init))(init_keys)

    @jax.jit
    def train_chunk(state, start):
        def body(state, i):
            keys = jax.vmap(lambda k: jax.random.fold_in(k, start + i))(train_keys)
            return jax.vmap(agent.step)(state, keys)

        state, metrics = jax.lax.scan(body, state, jnp.arange(chunk))
        return state, jax.tree.map(lambda x: jnp.mean(x, axis=0), metrics)

    @jax.jit
    def evaluate(state, at):
        keys = jax.vmap(lambda k: jax.random.fold_in(k, at))(eval_keys)
        return jax.vmap(agent.evaluate)(state, keys)

    curve, metrics, t0 = [], {}, time.time()
    for done in range(0, steps + 1, chunk):
        if done % eval_every == 0:
            ev = jax.device_get(evaluate(state, done))
            curve.append({"step": done, "return": [float(x) for x in ev["eval/return"]]})
            r = np.asarray(curve[-1]["return"])
            print(
                f"{cfg.conditioning:10s} step {done:5d}: eval return {r.mean():8.1f} +- {r.std(ddof=1) if len(r) > 1 else 0:6.1f} "
                f"(per seed {np.round(r, 1).tolist()}) {time.time() - t0:6.0f} s",
                flush=True,
            )
        if done == steps:
            break
        state, m = train_chunk(state, done)
        metrics = {k: np.asarray(v).tolist() for k, v in jax.device_get(m).items()}
    return {
        "config": dataclasses.asdict(cfg),
        "seeds": seeds,
        "curve": curve,
        "last_train_metrics": metrics,
        "wall_s": time.time() - t0,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="runs/oppo_data/pendulum_mix.npz")
    p.add_argument("--conditioning", nargs="+", default=list(oppo.CONDITIONINGS), choices=oppo.CONDITIONINGS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--out", default="runs/oppo/comparison.json")
    args = p.parse_args(argv)
    results = {}
    for cond in args.conditioning:
        results[cond] = run(args.data, oppo_config(cond), args.seeds, args.steps, args.eval_every, args.eval_episodes)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"data": args.data, "env": ENV, "loadavg": os.getloadavg(), "results": results}, f, indent=2)
    print(f"wrote {args.out}")
    for cond, r in results.items():
        final = np.asarray(r["curve"][-1]["return"])
        print(f"{cond:10s} final eval return {final.mean():8.1f} +- {final.std(ddof=1):6.1f} over seeds {args.seeds}")


if __name__ == "__main__":
    main()
