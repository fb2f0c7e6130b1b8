"""Evaluation of a trained control policy: the returns of whole episodes of its final (or any) checkpoint.

RL Baselines3 Zoo's benchmark (the reference of ``experiments/control_ppo*.py``) reports the mean
and std of the episode return of the DETERMINISTIC policy (the Gaussian's mean, the categorical's
argmax) of the trained agent; the training metrics (``episode/return`` in ``metrics.jsonl``) are the
returns of the stochastic policy while it learns. ``evaluate_run`` measures the former: it restores
the run's checkpoint (observations normalized with its frozen statistics when the run normalized them), starts ``episodes`` fresh envs (keys from ``eval_seed``, apart from training's)
and runs each to the end of its first episode (termination or time limit).

    python -m jaxrl_llm.control.evaluate control_ppo_cartpole --run-dir runs/control_ppo_cartpole_s0 \\
        --set seed=0 --episodes 300 [--stochastic] [--step 391]

PPO and on-policy MDPO runs (their policies are the same networks: ``params["policy"]``,
``ppo.policy_fns``), and off-policy MDPO / SAC runs in a discrete-action env (the categorical policy
``networks.CategoricalPolicy`` of their ``hidden`` and ``activation``: the same functions).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import checkpoint, errors
from jaxrl_llm.control import config as control_config
from jaxrl_llm.control import envs, ppo, rollout
from jaxrl_llm.control import train as train_lib
from jaxrl_llm.types import Array


def episode_returns(
    env: envs.AutoReset, act: Callable[[Array, Array], Array], key: Array, episodes: int, max_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return and length ``[episodes]`` of the first episode of each of ``episodes`` fresh envs, with
    ``act(key, obs [E, O]) -> action [E, A]``; raises if an episode is still running after ``max_steps``."""
    k_reset, k_run = jax.random.split(key)
    obs, state = rollout.reset(env, k_reset, episodes)
    step_envs = jax.vmap(env.step)

    def one(carry, k):
        state, obs, ret, length, finished = carry
        k_act, k_env = jax.random.split(k)
        action = act(k_act, obs)
        obs, state, _, done, info = step_envs(jax.random.split(k_env, episodes), state, action)
        ret = jnp.where(finished | ~done, ret, info["episode_return"])
        length = jnp.where(finished | ~done, length, info["episode_length"])
        return (state, obs, ret, length, finished | done), None

    zeros = jnp.zeros((episodes,))
    init = (state, obs, zeros, zeros.astype(jnp.int32), jnp.zeros((episodes,), bool))
    (_, _, ret, length, finished), _ = jax.jit(lambda c, ks: jax.lax.scan(one, c, ks))(
        init, jax.random.split(k_run, max_steps)
    )
    if not bool(jnp.all(finished)):
        raise errors.UserError(f"{int(jnp.sum(~finished))} of {episodes} episodes still ran after {max_steps} steps")
    return np.asarray(ret), np.asarray(length)


def time_limit(env: envs.AutoReset, default: int = 1000) -> int:
    """The env's episode step limit (gymnax ``max_steps_in_episode``, brax ``episode_length``), or ``default``."""
    base = env.base
    params = getattr(base, "params", None)
    if params is not None and hasattr(params, "max_steps_in_episode"):
        return int(params.max_steps_in_episode)
    return int(getattr(base, "episode_length", getattr(base, "horizon", default)))


def evaluate_run(
    cfg: control_config.ControlConfig,
    episodes: int = 300,
    deterministic: bool = True,
    eval_seed: int = 12345,
    step: int | None = None,
) -> dict[str, Any]:
    """Restores ``cfg``'s run (its newest checkpoint, or ``step``) and evaluates its policy."""
    cfg = control_config.validate(cfg)
    env = envs.make(cfg.env, **dict(cfg.env_kwargs))
    if not (cfg.method in ("ppo", "mdpo") or (cfg.method == "mdpo_offpolicy" and env.num_actions)):
        raise errors.UserError(
            f"evaluate: method {cfg.method!r} on {cfg.env}; ppo and mdpo runs, and mdpo_offpolicy runs in a "
            "discrete-action env, are evaluated"
        )
    env_kwargs = json.dumps(dict(cfg.env_kwargs), sort_keys=True)
    init_fn, _ = train_lib._compiled(cfg.env, env_kwargs, cfg.method, cfg.algo, cfg.iterations)
    like = init_fn(jax.random.split(jax.random.key(cfg.seed))[0])
    directory = pathlib.Path(cfg.resolved_run_dir) / "checkpoints"
    ckpt = checkpoint.Checkpointer(directory, max_to_keep=cfg.max_to_keep, async_save=False)
    try:
        restored = ckpt.restore(train_lib.pack(like), step=step)
    finally:
        ckpt.close()
    if restored is None:
        raise errors.UserError(f"no checkpoint in {directory}")
    ckpt_step, packed, _ = restored
    state = train_lib.unpack(packed, like)
    params = state.params["policy"]
    pi = ppo.policy_fns(env, cfg.algo)
    norm = getattr(state, "norm", None)  # PPO only

    def prep(obs):  # the run's observation normalization, frozen (VecNormalize(training=False))
        return obs if norm is None else ppo.normalize_obs(cfg.algo, norm, obs)

    if deterministic:
        act = lambda k, obs: pi.deterministic_action(params, prep(obs))  # noqa: E731
    else:  # gSDE: a fresh exploration matrix every step
        act = lambda k, obs: pi.sample(params, k, prep(obs))[0]  # noqa: E731
    limit = time_limit(env)
    ret, length = episode_returns(env, act, jax.random.key(eval_seed), episodes, limit + 1)
    return {
        "run_dir": cfg.resolved_run_dir,
        "env": cfg.env,
        "seed": cfg.seed,
        "checkpoint_step": int(ckpt_step),
        "env_steps": int(ckpt_step) * cfg.algo.num_envs * cfg.algo.num_steps,
        "policy": "deterministic" if deterministic else "stochastic",
        "episodes": episodes,
        "return_mean": float(np.mean(ret)),
        "return_std": float(np.std(ret)),
        "return_min": float(np.min(ret)),
        "return_max": float(np.max(ret)),
        "length_mean": float(np.mean(length)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("experiment")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--stochastic", action="store_true")
    p.add_argument("--eval-seed", type=int, default=12345)
    p.add_argument("--step", type=int, default=None)
    args = p.parse_args(argv)
    cfg = control_config.load_experiment(args.experiment)
    if not isinstance(cfg, control_config.ControlConfig):
        raise errors.UserError(f"{args.experiment} is not a control experiment")
    cfg = control_config.apply_overrides(dataclasses.replace(cfg, run_dir=args.run_dir), args.overrides)
    out = evaluate_run(cfg, args.episodes, not args.stochastic, args.eval_seed, args.step)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
