"""Runs the family-A comparison in the learning regime and tabulates it.

Every run is ``jaxrl-llm train <experiment> --set seed=<s>`` (configs in ``experiments/``, all
built by ``experiments/bases/family_a.py::learning_config``), started as its own process, at most
``--parallel`` at a time, each pinned to its own ``--cores-per-run`` CPU cores (``taskset``) so
that parallel runs do not share cores. Each run writes ``<out>/<experiment>_s<seed>/`` (its
``metrics.jsonl``, checkpoints) and ``<out>/<experiment>_s<seed>.log``. When all have ended (or
``--deadline-s`` has passed: the runs still going are stopped, what they logged is kept), the
sweep reads every ``metrics.jsonl`` and writes ``<out>/summary.json`` and prints the table:
held-out greedy accuracy, pass@1 and pass@4 at every evaluation, and per-run means of the
metrics each method's claim is about.

    python experiments/results/family_a_sweep.py --out runs/family_a               # all runs
    python experiments/results/family_a_sweep.py --out runs/family_a --only family_a_grpo:0,gtpo:0
    python experiments/results/family_a_sweep.py --out runs/family_a --summarize   # table only

The recorded sweep ran on the project's 2-core machine, one run at a time on both cores (the
defaults ``--parallel 1 --cores-per-run 2``), about 4 min a run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from jaxrl_llm import metrics_log

# (experiment, seed). Two GRPO seeds give the baseline's own spread (and SFT starts: the seed also
# drives SFT); gtpo_grpo_baseline is GRPO run through GTPO's module (same gradient, and it logs the
# conflict-token metric GTPO's claim is about). Single-stream SPO runs 128 prompts x 1 sample per
# step and shares no prompt computation, so a step costs ~5x GRPO's; the recorded sweep gave it
# 100 steps (``--set train.steps=100`` via --only, see experiments/results/single_stream_spo.md).
RUNS: tuple[tuple[str, int], ...] = (
    ("family_a_grpo", 0),
    ("family_a_grpo", 1),
    ("gtpo_grpo_baseline", 0),
    ("gtpo", 0),
    ("dcpo", 0),
    ("bnpo", 0),
    ("copo", 0),
    ("riskpo", 0),
    ("hapo", 0),
    ("apo", 0),
)

# Means over RL steps of these metrics (when a run logs them) go into the summary.
METRICS = (
    "reward/mean",
    "entropy",
    "kl",
    "grad_norm",
    "clip_frac",
    "frac_zero_std_groups",
    "completion_len/mean",
    "completion_len/wrong",
    "completion_len/correct",
    "time/step",
    "time/sample",
    "time/update",
    "gtpo/conflict_logprob",
    "dcpo/frac_tokens_with_grad",
    "dcpo/frac_nonzero_adv",
    "dcpo/frac_revisited",
    "frac_signal_rows",
    "frac_signal_rows/local",
    "local_weight/mean",
    "answer_entropy/mean",
    "frac_zero_adv",
    "adv/mean",
    "adv/max",
    "adv/std",
    "apo/kl_weight_pos",
    "apo/len_wrong",
)


def run_name(experiment: str, seed: int) -> str:
    return f"{experiment}_s{seed}"


def launch(
    experiment: str, seed: int, out: pathlib.Path, cores: list[int] | None, extra_sets: list[str]
) -> subprocess.Popen:
    name = run_name(experiment, seed)
    run_dir = out / name
    if run_dir.exists():  # a rerun starts fresh rather than resuming a run of other settings
        shutil.rmtree(run_dir)
    cmd = [
        sys.executable,
        "-m",
        "jaxrl_llm.cli",
        "train",
        experiment,
        "--set",
        f"seed={seed}",
        "--run-dir",
        str(run_dir),
    ]
    for s in extra_sets:
        cmd += ["--set", s]
    if cores and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(map(str, cores))] + cmd
    log = open(out / f"{name}.log", "w")
    log.write(" ".join(cmd) + "\n")
    log.flush()
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def sweep(
    runs, out: pathlib.Path, parallel: int, cores_per_run: int, deadline_s: float, extra_sets: list[str]
) -> dict[str, int | None]:
    out.mkdir(parents=True, exist_ok=True)
    pending = list(runs)
    active: dict[str, tuple[subprocess.Popen, float]] = {}
    free_slots = list(range(parallel))
    slot_of: dict[str, int] = {}
    returncodes: dict[str, int | None] = {}
    start = time.monotonic()
    n_cpu = os.cpu_count() or 1
    while pending or active:
        while pending and free_slots and time.monotonic() - start < deadline_s:
            experiment, seed = pending.pop(0)
            slot = free_slots.pop(0)
            cores = [(slot * cores_per_run + i) % n_cpu for i in range(cores_per_run)]
            name = run_name(experiment, seed)
            active[name] = (launch(experiment, seed, out, cores, extra_sets), time.monotonic())
            slot_of[name] = slot
            print(f"[{time.monotonic() - start:6.0f}s] start {name} on cores {cores}", flush=True)
        time.sleep(2.0)
        for name, (proc, t0) in list(active.items()):
            rc = proc.poll()
            if rc is None and time.monotonic() - start > deadline_s:
                os.killpg(proc.pid, signal.SIGINT)  # the trainer checkpoints on SIGINT and exits
                try:
                    rc = proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    rc = proc.wait()
                print(f"[{time.monotonic() - start:6.0f}s] deadline: stopped {name}", flush=True)
            if rc is not None:
                returncodes[name] = rc
                del active[name]
                free_slots.append(slot_of.pop(name))
                print(
                    f"[{time.monotonic() - start:6.0f}s] end {name} rc={rc} ({time.monotonic() - t0:.0f}s)", flush=True
                )
        if not active and pending and time.monotonic() - start >= deadline_s:
            for experiment, seed in pending:
                returncodes[run_name(experiment, seed)] = None  # never started
            pending = []
    return returncodes


def read_run(run_dir: pathlib.Path) -> dict:
    """Evaluations and per-metric RL means of one run's metrics.jsonl."""
    rows = metrics_log.read_metrics(run_dir)  # skips the torn last line of a run stopped at the deadline
    if not rows:
        return {"error": f"no {metrics_log.METRICS_FILE} records in {run_dir}"}
    evals = [
        {k: r[k] for k in ("step", "eval/accuracy", "eval/pass@1", "eval/pass@k", "eval/completion_len") if k in r}
        for r in rows
        if r.get("phase") == "eval"
    ]
    rl = [r for r in rows if r.get("phase") == "rl"]
    means = {}
    for key in METRICS:
        vals = [r[key] for r in rl if key in r]
        if vals:
            tail = vals[-min(100, len(vals)) :]
            mean = sum(vals) / len(vals)
            means[key] = {
                "mean": mean,
                "std": (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5,
                "first100": sum(vals[:100]) / len(vals[:100]),
                "last100": sum(tail) / len(tail),
            }
    return {"evals": evals, "rl_steps": len(rl), "means": means}


def summarize(out: pathlib.Path, runs, returncodes: dict | None = None) -> dict:
    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}  # runs of earlier invocations stay
    for experiment, seed in runs:
        name = run_name(experiment, seed)
        summary[name] = read_run(out / name)
        if returncodes is not None:
            summary[name]["returncode"] = returncodes.get(name)
    path.write_text(json.dumps(summary, indent=1))
    print(f"\n{'run':26s} {'RL steps':>8s}  greedy accuracy at each eval (pass@1, pass@4 at the last)")
    for name in (run_name(e, s) for e, s in runs):
        s = summary[name]
        if "error" in s:
            print(f"{name:26s} {s['error']}")
            continue
        acc = " ".join(f"{e['eval/accuracy']:.3f}" for e in s["evals"])
        last = s["evals"][-1] if s["evals"] else {}
        tail = f"  ({last.get('eval/pass@1', float('nan')):.3f}, {last.get('eval/pass@k', float('nan')):.3f})"
        print(f"{name:26s} {s['rl_steps']:8d}  {acc}{tail if last else ''}")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/family_a")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--cores-per-run", type=int, default=2)
    ap.add_argument(
        "--deadline-s",
        type=float,
        default=float("inf"),
        help="stop runs still going after this many seconds (their logs are kept)",
    )
    ap.add_argument("--only", default="", help="comma-separated experiment:seed pairs (default: all RUNS)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        help="a config override passed to every run, e.g. train.steps=5",
    )
    ap.add_argument("--summarize", action="store_true", help="only read the runs already in --out")
    args = ap.parse_args(argv)
    runs = RUNS
    if args.only:
        runs = tuple((p.split(":")[0], int(p.split(":")[1])) for p in args.only.split(","))
    out = pathlib.Path(args.out)
    returncodes = None
    if not args.summarize:
        returncodes = sweep(runs, out, args.parallel, args.cores_per_run, args.deadline_s, args.sets)
    summarize(out, runs, returncodes)
    return 0 if returncodes is None or all(rc == 0 for rc in returncodes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
