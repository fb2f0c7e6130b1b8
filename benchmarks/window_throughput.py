"""Trained response tokens per second: T-PPO's window trainer vs the synchronous PPO trainer.

T-PPO (Fan et al. 2025, https://arxiv.org/abs/2506.15050) claims its throughput: a synchronous
trainer's step waits for the longest response of its batch, while the window trainer advances
every in-flight response by at most ``w`` tokens per step and refills finished slots.

Setting (both sides, one process, alternating rounds so that load from other processes hits
both alike): the same model (``--model``, default the random-init ``tiny`` model, whose
near-uniform next-token distribution over a ~128-token vocabulary makes the response length
roughly geometric: a long tail cut at ``--max-len``), the same prompts (reasoning-gym
basic_arithmetic), ``--rows`` rows a step (PPO: that many prompts, one sample each; T-PPO: that
many in-flight slots), temperature 1, one optimizer update per step, the critic on both. Each
side first runs ``--warmup`` steps (compilation, and the window trainer's in-flight set filling
up); then ``--rounds`` rounds of ``--steps`` steps each are timed with ``train.rl_step``
(sampling, log-probs, values, update, state; no evaluation or checkpoint). Throughput =
response tokens entering the policy loss / wall seconds: PPO's whole responses, T-PPO's windows.

    python benchmarks/window_throughput.py [--rows 16 --max-len 128 --window 16 --steps 4 --rounds 2]

Prints a table (with the fraction of the timed seconds spent sampling and in the update) and writes ``benchmarks/results/window_throughput.json`` (``--out``) with the
ratio (T-PPO / PPO tokens per second; the issue's target is >= 1.5) and the CPU's model and flags.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import _machine  # noqa: E402
import numpy as np  # noqa: E402

from jaxrl_llm import config as C  # noqa: E402
from jaxrl_llm import metrics_log, train  # noqa: E402

TASK = (
    'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
    '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 4000}'
)


def cpu_info() -> dict[str, str]:
    """The model name and SIMD flags (avx*, fma*, amx*) of ``_machine``'s record."""
    model, flags = _machine.cpu_model_and_flags()
    simd = " ".join(sorted(f for f in flags if f.startswith(("avx", "fma", "amx"))))
    return {"model": model, "simd_flags": simd, "cores": str(os.cpu_count())}


def trainer(algorithm: str, args, run_dir: str) -> train.Trainer:
    sizes = {
        "ppo": [f"train.prompts_per_step={args.rows}"],
        "tppo": [
            f"train.prompts_per_step={args.rows}",
            f"algo.num_slots={args.rows}",
            f"algo.window={args.window}",
            f"algo.max_response_len={args.max_len}",
            "algo.max_prompt_len=40",
        ],
    }[algorithm]
    cfg = C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={run_dir}",
            f"model.name={args.model}",
            "task.name=rg:basic_arithmetic",
            TASK,
            "task.max_prompt_len=40",
            "sft.steps=0",
            "train.steps=1000",
            "train.group_size=1",
            "train.share_prompt=false",
            f"sampling.max_new_tokens={args.max_len}",
            "sampling.temperature=1.0",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "checkpoint.every=0",
            f"algorithm={algorithm}",
            *sizes,
            "algo.beta=0.0",
        ],
    )
    return train.Trainer(cfg)


def timed_steps(tr: train.Trainer, steps: int) -> tuple[float, float, list[float], dict[str, float]]:
    """(seconds, policy-loss tokens, per-step response lengths of finished rows, seconds per phase:
    sample, reward, logprobs (pi_old, values), advantages, update) over ``steps`` RL steps."""
    seconds, tokens, lengths, phases = 0.0, 0.0, [], {}
    for _ in range(steps):
        timer = metrics_log.Timer()
        t0 = time.perf_counter()
        m = train.rl_step(tr, timer)
        seconds += time.perf_counter() - t0
        for k, v in timer.split().items():
            if k not in ("time/step", "time/other"):
                phases[k] = phases.get(k, 0.0) + v
        tr.state.step += 1
        if "window/new_tokens" in m:
            tokens += m["window/new_tokens"]
        else:
            tokens += m["completion_len/mean"] * tr.cfg.train.prompts_per_step * tr.cfg.train.group_size
        if "completion_len/mean" in m:
            lengths.append(m["completion_len/mean"])
    return seconds, tokens, lengths, phases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "window_throughput.json"))
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="window_throughput_")
    trainers = {name: trainer(name, args, f"{tmp}/{name}") for name in ("ppo", "tppo")}
    for tr in trainers.values():
        timed_steps(tr, args.warmup)
    totals = {name: [0.0, 0.0, [], {}] for name in trainers}
    for _ in range(args.rounds):
        for name, tr in trainers.items():
            s, n, lengths, phases = timed_steps(tr, args.steps)
            totals[name][0] += s
            totals[name][1] += n
            totals[name][2] += lengths
            for k, v in phases.items():
                totals[name][3][k] = totals[name][3].get(k, 0.0) + v
    for tr in trainers.values():
        tr.close()
    rows = {}
    for name, (s, n, lengths, phases) in totals.items():
        rows[name] = {
            "phase_fraction": {k.removeprefix("time/"): v / s for k, v in sorted(phases.items())},
            "seconds": s,
            "tokens": n,
            "tokens_per_s": n / s,
            "seconds_per_step": s / (args.steps * args.rounds),
            "finished_len_mean": float(np.mean(lengths)) if lengths else None,
        }
    ratio = rows["tppo"]["tokens_per_s"] / rows["ppo"]["tokens_per_s"]
    print(f"{'trainer':8} {'s/step':>8} {'tokens':>8} {'tokens/s':>9} {'finished len':>13} {'sample':>7} {'update':>7}")
    for name, r in rows.items():
        f = r["phase_fraction"]
        print(
            f"{name:8} {r['seconds_per_step']:8.2f} {r['tokens']:8.0f} {r['tokens_per_s']:9.1f} "
            f"{r['finished_len_mean'] or float('nan'):13.1f} {f.get('sample', 0):7.0%} {f.get('update', 0):7.0%}"
        )
    print(f"T-PPO / PPO tokens/s: {ratio:.2f}x (target >= 1.5x)")
    out = {
        "args": vars(args),
        "results": rows,
        "ratio_tppo_over_ppo": ratio,
        "target": 1.5,
        "cpu": cpu_info(),
        "machine": _machine.machine_info(),
        "loadavg_end": os.getloadavg(),
        "python": platform.python_version(),
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
