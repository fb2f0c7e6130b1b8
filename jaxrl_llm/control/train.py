"""The control training loop: build -> restore -> for each iteration: jitted step -> log / checkpoint.

One iteration is the method's ``step(state, key)``, a single pure jitted function (rollout by
``lax.scan`` over vectorized envs, advantages, updates), with ``key = fold_in(run_key, iteration)``,
so the random stream depends only on the seed and the iteration: a run killed at any point and
resumed from its newest checkpoint computes the same states and writes the same
``metrics.jsonl`` (``time/`` keys aside) as one never killed.

A run directory (``runs/<name>``) holds ``config.json``, ``checkpoints/<iteration>/`` (the whole
train state: networks, optimizer states, env states, observations, replay buffer, counters),
``metrics.jsonl`` (phase ``control``) and, once finished, ``summary.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import checkpoint, errors, metrics_log, run_dir
from jaxrl_llm.control import config as control_config
from jaxrl_llm.control import envs

PHASE = "control"


def pack(state: Any) -> dict[str, Any]:
    """The train state as a flat ``{index: array}`` dict (Orbax saves it whatever pytree node types
    the env states use); typed PRNG keys become their raw ``uint32`` data."""
    leaves = jax.tree.leaves(state)
    return {
        f"{i:05d}": jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        for i, x in enumerate(leaves)
    }


def unpack(packed: dict[str, Any], like: Any) -> Any:
    """Inverse of ``pack`` onto the structure (and key types) of ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    if len(packed) != len(leaves):
        raise errors.UserError(f"checkpoint holds {len(packed)} arrays, this run's state has {len(leaves)}")
    out = []
    for i, ref in enumerate(leaves):
        x = packed[f"{i:05d}"]
        if jnp.issubdtype(ref.dtype, jax.dtypes.prng_key):
            x = jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
        out.append(x)
    return jax.tree.unflatten(treedef, out)


@functools.lru_cache(maxsize=8)
def _compiled(env_name: str, env_kwargs: str, method: str, algo: Any, iterations: int):
    """The jitted ``(init, step)`` of a method on an env, cached so that runs of one setting in one
    process (a resumed run, seeds of a sweep, tests) compile once."""
    env = envs.make(env_name, **json.loads(env_kwargs))
    agent = control_config.METHODS[method].make(env, algo, iterations)
    return jax.jit(agent.init), jax.jit(agent.step)


def train(cfg: control_config.ControlConfig, stop_after: int | None = None, extend: bool = False) -> dict[str, Any]:
    """Runs (or resumes) ``cfg`` until ``cfg.iterations`` or ``stop_after``; returns the summary
    (``status``: ``finished`` or ``stopped``, ``step``, the last logged metrics)."""
    cfg = control_config.validate(cfg)
    directory = pathlib.Path(cfg.resolved_run_dir)
    if run_dir.prepare(directory, control_config.to_dict(cfg), extend=extend) == "finished":
        return run_dir.read_summary(directory) or {"status": "finished", "run_dir": str(directory)}
    init_fn, step_fn = _compiled(
        cfg.env, json.dumps(dict(cfg.env_kwargs), sort_keys=True), cfg.method, cfg.algo, cfg.iterations
    )
    key_init, key_loop = jax.random.split(jax.random.key(cfg.seed))
    state = init_fn(key_init)
    ckpt = checkpoint.Checkpointer(directory / "checkpoints", max_to_keep=cfg.max_to_keep, async_save=cfg.async_save)
    restored = ckpt.restore(pack(state))
    start = 0
    if restored is not None:
        start, packed, _ = restored
        state = unpack(packed, state)
    logger = metrics_log.MetricsLogger(
        directory, resume_step=start if restored is not None else None, tensorboard=cfg.tensorboard
    )
    env_steps_per_iter = cfg.algo.num_envs * cfg.algo.num_steps
    end = cfg.iterations if stop_after is None else min(stop_after, cfg.iterations)
    record: dict[str, Any] = {}
    try:
        for it in range(start, end):
            t0 = time.perf_counter()
            state, metrics = step_fn(state, jax.random.fold_in(key_loop, it))
            step = it + 1
            if step % cfg.log_every == 0 or step == end:
                metrics = {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
                metrics["env_steps"] = float(step * env_steps_per_iter)
                metrics["time/step_s"] = time.perf_counter() - t0
                record = logger.log(PHASE, step, metrics)
            if step % cfg.checkpoint_every == 0 or step == end:
                ckpt.save(step, pack(state), {"step": step, "env_steps": step * env_steps_per_iter})
    finally:
        ckpt.close()
        logger.close()
    summary = {
        "status": "finished" if end == cfg.iterations else "stopped",
        "step": end,
        "run_dir": str(directory),
        "last": record,
    }
    if summary["status"] == "finished":
        (directory / run_dir.SUMMARY_FILE).write_text(json.dumps(summary, indent=2, allow_nan=True))
    return summary


def run_cli(cfg: control_config.ControlConfig, args: argparse.Namespace) -> int:
    """``jaxrl-llm train <control experiment>``: the same flags as an LLM run (``--set``, ``--run-dir``,
    ``--stop-after``, ``--extend``, ``--print-config``); returns the exit status."""
    if args.distributed:
        raise errors.UserError("--distributed is not supported by control runs (one process, vmap over envs)")
    if args.run_dir:
        cfg = dataclasses.replace(cfg, run_dir=args.run_dir)
    cfg = control_config.apply_overrides(cfg, args.overrides)
    if args.print_config:
        print(json.dumps(control_config.to_dict(cfg), indent=2))
        return 0
    summary = train(cfg, stop_after=args.stop_after, extend=args.extend)
    last = summary.get("last") or {}
    print(
        f"{summary.get('status')} at iteration {summary.get('step')} of {cfg.resolved_run_dir}; "
        f"last episode/return {last.get('episode/return')}",
        file=sys.stderr,
    )
    return 0
