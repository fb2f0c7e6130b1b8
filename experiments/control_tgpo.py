"""TGPO (arXiv 2510.00225) against flat PPO with the STL robustness as its reward, on the 2-D single
integrator with the sequenced spec ``F_[10,40] A AND F_[50,90] B AND G not O`` (horizon 100).

``get_config()`` is the TGPO run (time-conditioned policy, dense stage-wise reward, critic-guided MH
over the allocation ``(t_A, t_B)``); ``baseline_config()`` is the flat PPO of ``control/ppo.py`` on
the same env with the sparse terminal reward ``rho(phi, x_{0:100})`` and the observation
``[x, t/H]``, at the same budget (16 envs x 100 steps x ``ITERATIONS``, same optimizer, epochs,
minibatches, gamma, lambda). ``uniform_config()`` is the ablation without MH (the paper's plain TGPO:
uniform allocations throughout). All are scored the same way on the same 256 start states per seed:
mean actions, and again sampled actions (``.../sampled``); TGPO rolls out the allocation with the
highest critic value among 16 uniform candidates per start state; STL satisfaction = fraction of
episodes with ``rho > 0``, ``rho`` computed by stljax. ``--spec sequence_far`` runs the same on a
spec whose wide windows leave ~13% of uniform allocations dynamically feasible. Re-running the
comparison into the same ``--out`` re-scores finished runs without training them again.

Commands (``pip install 'jaxrl_llm[stl]'`` first):
    jaxrl-llm train control_tgpo --set seed=0 --run-dir runs/control_tgpo_s0       # one TGPO run
    python experiments/control_tgpo.py --seeds 0 1 2 [--spec sequence_far]       # the comparison

Hardware: the project's shared 2-core CPU. Time and result: experiments/results/tgpo.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_llm import checkpoint
from jaxrl_llm.control import config, envs, networks, ppo, tgpo
from jaxrl_llm.control import distributions as dist
from jaxrl_llm.control import train as control_train

SPEC = "sequence"
ITERATIONS = 100  # 160,000 env steps
EVAL_EPISODES = 256
SHARED = dict(
    num_envs=16,
    num_steps=100,
    update_epochs=4,
    num_minibatches=8,
    lr=3e-4,
    gamma=0.99,
    gae_lambda=0.95,
    clip_eps=0.2,
    ent_coef=0.0,
    max_grad_norm=0.5,
)


def get_config(spec: str = SPEC) -> config.ControlConfig:
    return config.ControlConfig(
        name="control_tgpo",
        env="stl_integrator",
        env_kwargs={"spec": spec, "reward": "none"},
        method="tgpo",
        algo=tgpo.Config(**SHARED),
        iterations=ITERATIONS,
        checkpoint_every=25,
        log_every=5,
    )


def baseline_config(spec: str = SPEC) -> config.ControlConfig:
    return config.ControlConfig(
        name="control_tgpo_flat_ppo",
        env="stl_integrator",
        env_kwargs={"spec": spec, "reward": "robustness"},
        method="ppo",
        algo=ppo.Config(**SHARED),
        iterations=ITERATIONS,
        checkpoint_every=25,
        log_every=5,
    )


def uniform_config(spec: str = SPEC) -> config.ControlConfig:
    """The ablation: TGPO with uniform allocations throughout (no critic-guided MH)."""
    cfg = get_config(spec)
    return dataclasses.replace(cfg, name="control_tgpo_uniform", algo=dataclasses.replace(cfg.algo, mh_warmup=10**9))


RUNS = {"tgpo": get_config, "tgpo_uniform": uniform_config, "flat_ppo": baseline_config}


def final_state(cfg: config.ControlConfig):
    """The train state in the newest checkpoint of ``cfg``'s run directory."""
    init, _ = control_train._compiled(
        cfg.env, json.dumps(dict(cfg.env_kwargs), sort_keys=True), cfg.method, cfg.algo, cfg.iterations
    )
    like = init(jax.random.key(0))
    ckpt = checkpoint.Checkpointer(pathlib.Path(cfg.resolved_run_dir) / "checkpoints")
    _, packed, _ = ckpt.restore(control_train.pack(like))
    ckpt.close()
    return control_train.unpack(packed, like)


@functools.lru_cache(maxsize=16)
def _evaluator(spec: str, method: str, algo, iterations: int):
    """``(state, key, deterministic) -> rho [EVAL_EPISODES]``-based metrics, jitted once per setting."""
    env = envs.make("stl_integrator", spec=spec, reward="none", stl_backend="stljax")
    if method == "tgpo":
        agent = tgpo.make(env, algo, iterations)
        return jax.jit(lambda state, key, det: agent.evaluate(state, key, EVAL_EPISODES, det), static_argnums=2)
    policy_def, _ = networks.split(
        networks.GaussianPolicy(env.obs_dim, env.action_dim, algo.hidden, algo.activation, rngs=nnx.Rngs(0))
    )

    def run(state, key, det):
        def act(k, obs):
            mean, log_std = networks.apply(policy_def, state.params["policy"], obs)
            return (mean if det else dist.gaussian_sample(k, mean, log_std)), {}

        rho, _ = tgpo.episode_robustness(env, act, key, EVAL_EPISODES)
        return {"stl/satisfaction": jnp.mean(rho > 0), "stl/robustness": jnp.mean(rho)}

    return jax.jit(run, static_argnums=2)


def evaluate(cfg: config.ControlConfig, state, key) -> dict:
    """STL satisfaction and robustness (by stljax) of ``EVAL_EPISODES`` episodes from the same start
    states, with the mean action and (``.../sampled``) with sampled actions."""
    fn = _evaluator(cfg.env_kwargs["spec"], cfg.method, cfg.algo, cfg.iterations)
    out = {k: float(v) for k, v in fn(state, key, True).items()}
    out.update({f"{k}/sampled": float(v) for k, v in fn(state, key, False).items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--spec", default=SPEC, help="a name in jaxrl_llm.control.stl.SPECS")
    parser.add_argument("--out", default="runs/control_tgpo_compare")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        for label, make_cfg in RUNS.items():
            cfg = make_cfg(args.spec)
            cfg = dataclasses.replace(cfg, seed=seed, iterations=args.iterations, run_dir=f"{args.out}/{label}_s{seed}")
            t0 = time.perf_counter()
            summary = control_train.train(cfg)
            wall = time.perf_counter() - t0
            result = evaluate(cfg, final_state(cfg), jax.random.key(10_000 + seed))
            row = {"method": label, "seed": seed, "wall_s": round(wall, 1), "train_last": summary["last"], **result}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "train_last"}), flush=True)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    for method in RUNS:
        sat = np.array([r["stl/satisfaction"] for r in rows if r["method"] == method])
        rob = np.array([r["stl/robustness"] for r in rows if r["method"] == method])
        sampled = np.array([r["stl/satisfaction/sampled"] for r in rows if r["method"] == method])
        print(
            f"{method}: satisfaction {sat.mean():.3f} +/- {sat.std(ddof=1) if len(sat) > 1 else 0:.3f} "
            f"[{sat.min():.3f}, {sat.max():.3f}]  robustness {rob.mean():.3f}  "
            f"sampled-action satisfaction {sampled.mean():.3f} [{sampled.min():.3f}, {sampled.max():.3f}]  "
            f"seeds {len(sat)}"
        )


if __name__ == "__main__":
    main()
