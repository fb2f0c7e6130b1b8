"""Steps/s of the disaggregated off-policy trainer (k = 1) against the synchronous one, and the
learner -> sampler weight push, on 8 fake CPU devices.

Throughput: the default task's GRPO step on the from-scratch ``small`` model (16 prompts x 8
samples, 4 new tokens, no SFT, no evaluation, no checkpoints), three placements of the same
8 devices: ``sync`` (colocated, k = 0: the synchronous trainer on all 8), ``split_k0`` (learner on
4, sampler on 4, k = 0: sampling and update in turn), ``split_k1`` (learner 4 + sampler 4, k = 1:
the sampler's work for step v + 1 runs in a thread while the learner updates on step v). The first
``--warmup`` steps (compilation) are excluded; steps/s = 1 / mean ``time/step`` of the next
``--steps``.

Push: SmolLM2-135M-Instruct (134.5M parameters, f32) on a learner mesh of 4 devices pushed to a
sampler mesh of 4 (``Policy.push``: ``jax.device_put`` to the sampler's shardings by the rules
table), timed to completion ``--push-repeats`` times; and its share of a disaggregated k = 1 RL
step of that model (2 prompts x 2 samples, 16 new tokens): mean ``time/push`` / ``time/step``.

    python benchmarks/offpolicy.py [--steps 4] [--warmup 2] [--out benchmarks/results/offpolicy_cpu.json]

The JSON is rewritten after each section (push, each placement, the SmolLM2 step).

The fake devices share the machine's cores, so on a CPU a thread gains only what the sampler's
dispatch-bound decode leaves idle; on separate accelerators the two sides run in parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import _machine  # noqa: E402
import numpy as np  # noqa: E402

from jaxrl_llm import config, metrics_log, policy, train  # noqa: E402

PLACEMENTS = {  # split_k1 before split_k0: the comparison the benchmark is for comes first
    "sync": [],
    "split_k1": ["mesh.sampler_devices=4", "train.staleness=1"],
    "split_k0": ["mesh.sampler_devices=4"],
}


def machine() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model, flags = info.get("Model name", "").strip(), info.get("Flags", "").split()
    except (OSError, subprocess.CalledProcessError):
        model, flags = platform.processor(), []
    return {
        **_machine.machine_info(),
        "cpu": model,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "jax": jax.__version__,
        "devices": jax.device_count(),
    }


def run(name: str, overrides: list[str], steps: int, warmup: int, base: list[str], cache: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cfg = config.apply_overrides(
            config.default_config(),
            [
                f"run_dir={d}",
                f"compilation_cache_dir={cache}",
                "sft.steps=0",
                f"train.steps={warmup + steps}",
                "eval.num_examples=0",
                "checkpoint.every=0",
                "log.every=1",
                "log.progress=false",
                "log.tensorboard=false",
                *base,
                *overrides,
            ],
        )
        t0 = time.perf_counter()
        assert train.train(cfg)["status"] == "finished"
        wall = time.perf_counter() - t0
        rows = metrics_log.read_metrics(d)[warmup:]
    step = float(np.mean([r["time/step"] for r in rows]))
    out = {"name": name, "overrides": overrides, "seconds_per_step": step, "steps_per_s": 1.0 / step, "wall_s": wall}
    for key in ("time/sample", "time/update", "time/logprobs", "time/push", "time/sample_wait"):
        if key in rows[0]:
            out[key] = float(np.mean([r[key] for r in rows]))
    print(f"{name:10s} {1.0 / step:8.3f} steps/s  ({step:.3f} s/step)", flush=True)
    return out


def push_seconds(repeats: int) -> dict:
    cfg = config.apply_overrides(
        config.default_config(), ["model.name=smollm2-135m-instruct", "mesh.sampler_devices=4"]
    )
    learner = policy.Policy.create(cfg)
    sampler = learner.on_mesh(policy.make_sampler_mesh(cfg))
    n = sum(int(x.size) for x in jax.tree.leaves(learner.params))
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        sampler.push(learner.params)
        jax.block_until_ready(sampler.params)
        times.append(time.perf_counter() - t0)
    s = float(np.mean(times[1:]))
    print(f"push of {n / 1e6:.1f}M f32 parameters, 4 -> 4 devices: {s:.3f} s", flush=True)
    return {"parameters": n, "bytes": 4 * n, "seconds_per_push": s, "all_seconds": times[1:], "first_s": times[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--push-repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/offpolicy_cpu.json")
    p.add_argument("--cache", default="", help="compilation cache directory (default: a temporary one)")
    args = p.parse_args(argv)
    cache = args.cache or tempfile.mkdtemp(prefix="offpolicy_xla_cache_")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "args": vars(args),
        "throughput": [],
    }

    def write() -> None:  # after each section, so a cut-short run keeps what it measured
        result["machine"]["load_average_now"] = os.getloadavg()
        out.write_text(json.dumps(result, indent=2) + "\n")

    result["push"] = push_seconds(args.push_repeats)
    write()
    for name, o in PLACEMENTS.items():
        result["throughput"].append(run(name, o, args.steps, args.warmup, ["reward.num_workers=0"], cache))
        write()
    by = {r["name"]: r for r in result["throughput"]}
    result["speedup_split_k1_vs_sync"] = by["split_k1"]["steps_per_s"] / by["sync"]["steps_per_s"]
    print(f"split_k1 / sync steps/s: {result['speedup_split_k1_vs_sync']:.3f}")
    write()
    smol = run(
        "smollm2_k1",
        ["mesh.sampler_devices=4", "train.staleness=1"],
        args.steps,
        args.warmup,
        [
            "model.name=smollm2-135m-instruct",
            "task.max_prompt_len=128",
            "train.prompts_per_step=2",
            "train.group_size=2",
            "sampling.max_new_tokens=16",
            "optim.learning_rate=1e-6",
            "reward.num_workers=0",
        ],
        cache,
    )
    smol["push_share_of_step"] = smol["time/push"] / smol["seconds_per_step"]
    result["push_in_smollm2_step"] = smol
    print(
        f"SmolLM2 push {smol['time/push']:.3f} s of a {smol['seconds_per_step']:.2f} s step ({100 * smol['push_share_of_step']:.1f}%)"
    )
    write()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
