"""TSPO (arXiv 2508.04369, code https://github.com/Hui-design/TSPO) on synthetic needle-in-a-haystack
feature "videos" (jaxrl_llm/video): train the temporal agent with TSPO (K = 8, G = 8) and compare,
on held-out videos, R_T (fraction of the K selected frames inside the answer segment), the hit
rate (>= 2 selected frames in the segment) and the frozen answerer's accuracy against
(a) uniform sampling (K evenly spaced frames), (b) K uniformly random frames, (c) raw-cosine
top-K (no learning), (d) the untrained agent's top-K; TSPO with linear tau annealing vs fixed tau0,
and with the exact Plackett-Luce log-probability instead of the product-of-marginals surrogate.
Evaluation drops the Gumbel noise (deterministic top-K of the scores), as the reference does at
inference.

Command (CPU; the spec's setting, then a harder one with 2 question-like distractor segments):
    nice -n 10 python experiments/tspo.py --out experiments/results/tspo --seeds 3
    nice -n 10 python experiments/tspo.py --out /tmp/tspo --seeds 1 --steps 20   # smoke run

Hardware: the project's shared 2-core CPU machine, f32. Time: see the results note.
Result: experiments/results/tspo.md (numbers in ``<out>.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrl_llm.video import needle, selector, tspo


def evaluate(indices: jax.Array, videos: needle.Videos, ncfg: needle.Config, key: jax.Array) -> dict[str, float]:
    """R_T, hit rate and answer accuracy of selections ``indices`` [B, K] on ``videos``."""
    mask, answer = jnp.asarray(videos.mask), jnp.asarray(videos.answer)
    hits = jnp.take_along_axis(mask, indices, axis=-1).sum(-1)  # [B]
    pred = needle.answerer(key, indices, mask, answer, ncfg.num_options, ncfg.min_hits)
    return {
        "r_t": float(needle.temporal_reward(indices, mask).mean()),
        "hit_rate": float((hits >= ncfg.min_hits).mean()),
        "accuracy": float((pred == answer).mean()),
    }


def train(seed: int, pool: needle.Videos, ncfg: needle.Config, cfg: tspo.Config, args) -> tuple:
    """TSPO on batches of ``args.batch`` questions drawn from ``pool``; returns (graphdef, params, curve)."""
    graphdef, params = nnx.split(selector.TemporalAgent(ncfg.feature_dim, args.heads, args.window, rngs=nnx.Rngs(seed)))
    opt = optax.adam(cfg.learning_rate)
    opt_state = opt.init(params)
    step_fn = jax.jit(tspo.make_train_step(graphdef, opt, cfg, ncfg))
    rng = np.random.default_rng(1000 + seed)
    key = jax.random.PRNGKey(seed)
    curve = []
    for k in range(cfg.total_steps):
        key, sub = jax.random.split(key)
        batch = pool[rng.integers(0, len(pool.answer), size=args.batch)]
        params, opt_state, m = step_fn(params, opt_state, batch, sub, k)
        if k % 25 == 0 or k == cfg.total_steps - 1:
            curve.append({"step": k, **{n: float(v) for n, v in m.items()}})
    return graphdef, params, curve


def run_setting(num_distractors: int, args) -> dict:
    ncfg = needle.Config(num_distractors=num_distractors)
    world = needle.World.make(0, ncfg)
    out = {"needle_config": dataclasses.asdict(ncfg), "seeds": {}}
    variants = {
        "tspo_annealed": (True, "marginal"),
        "tspo_fixed_tau0": (False, "marginal"),
        "tspo_annealed_plackett_luce": (True, "plackett_luce"),
    }
    for seed in range(args.seeds):
        t0 = time.time()
        pool = needle.sample(np.random.default_rng(10 + seed), args.pool, world, ncfg)
        held_out = needle.sample(np.random.default_rng(10_000 + seed), args.eval, world, ncfg)
        frames, question = jnp.asarray(held_out.frames), jnp.asarray(held_out.question)
        eval_key = jax.random.PRNGKey(777 + seed)
        b, t = held_out.mask.shape
        rows = {
            "uniform": evaluate(
                jnp.broadcast_to(jnp.linspace(0, t - 1, args.k).round().astype(jnp.int32), (b, args.k)),
                held_out,
                ncfg,
                eval_key,
            ),
            "random": evaluate(
                selector.topk(jax.random.uniform(jax.random.PRNGKey(seed), (b, t)), args.k), held_out, ncfg, eval_key
            ),
            "raw_cosine_topk": evaluate(
                selector.topk(selector.cosine(frames, question), args.k), held_out, ncfg, eval_key
            ),
        }
        init_agent = selector.TemporalAgent(ncfg.feature_dim, args.heads, args.window, rngs=nnx.Rngs(seed))
        rows["untrained_agent_topk"] = evaluate(
            selector.topk(init_agent(frames, question, 1.0), args.k), held_out, ncfg, eval_key
        )
        curves = {}
        for name, (anneal, logprob) in variants.items():
            cfg = tspo.Config(
                k=args.k,
                group_size=args.group_size,
                anneal=anneal,
                total_steps=args.steps,
                learning_rate=args.lr,
                logprob=logprob,
            )
            graphdef, params, curve = train(seed, pool, ncfg, cfg, args)
            scores = nnx.merge(graphdef, params)(frames, question, 1.0)
            rows[name] = evaluate(selector.topk(scores, args.k), held_out, ncfg, eval_key)
            curves[name] = curve
        out["seeds"][seed] = {"rows": rows, "curves": curves, "wall_s": time.time() - t0}
        print(f"distractors={num_distractors} seed={seed} ({time.time() - t0:.0f}s)")
        for name, r in rows.items():
            print(f"  {name:28s} R_T {r['r_t']:.3f}  hit {r['hit_rate']:.3f}  acc {r['accuracy']:.3f}")
    names = out["seeds"][0]["rows"].keys()
    out["summary"] = {
        name: {
            metric: (
                float(np.mean([s["rows"][name][metric] for s in out["seeds"].values()])),
                float(np.std([s["rows"][name][metric] for s in out["seeds"].values()])),
            )
            for metric in ("r_t", "hit_rate", "accuracy")
        }
        for name in names
    }
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="experiments/results/tspo")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8, help="questions per step (P)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--window", type=int, default=12)
    parser.add_argument("--pool", type=int, default=4096, help="training videos")
    parser.add_argument("--eval", type=int, default=1000, help="held-out videos")
    parser.add_argument("--distractors", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    t0 = time.time()
    result = {"args": vars(args), "settings": {}}
    for nd in args.distractors:
        result["settings"][nd] = run_setting(nd, args)
        print(f"summary, distractors={nd} (mean ± std over {args.seeds} seeds):")
        for name, r in result["settings"][nd]["summary"].items():
            cells = "  ".join(f"{m} {mu:.3f} ± {sd:.3f}" for m, (mu, sd) in r.items())
            print(f"  {name:28s} {cells}")
    result["wall_s"] = time.time() - t0
    print(f"total {result['wall_s']:.0f}s")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
