"""The learning suite: one method over six tasks x several seeds, under one recipe rule, in one table.

Why: a comparison on one task resolves accuracy to about +-6 points with one seed and cannot show
mechanisms that act on length, steps or format (issue #16). The suite gives every method the same
six tasks, shared SFT starts and the GRPO noise floor beside each number.

Tasks (``SUITE``; the first five train the from-scratch ``small`` model, 3.0M parameters):

| key | kind | task | completion |
|---|---|---|---|
| ``arith`` | short answer | ``rg:basic_arithmetic``, 2 one-digit operands, + - (the default run's) | 1-2 tokens |
| ``arith_hard`` | short answer, harder | ``rg:basic_arithmetic``, 2 two-digit operands, + - | 1-3 tokens |
| ``partial_sums`` | multi-step scratchpad | ``suite:partial_sums``, 4-5 one-digit terms, a sum a line | 40-72 tokens |
| ``tagged`` | format (answer tags) | ``suite:tagged_arithmetic``, 3 one-digit terms, +0.2 for any tag | 1-20 tokens |
| ``codegen`` | code, sandboxed tests | ``suite:codegen``, ``f(x)`` from 3 examples, 7 asserts | ~20 tokens |
| ``smollm2`` | pretrained model | ``suite:number_arithmetic`` (1 digit) on SmolLM2-135M-Instruct, no SFT | <= 48 tokens |

One task outside the six (``EXTRA``), run only when named (``--tasks dialogue``): ``dialogue``,
``arith``'s questions as the first turn of a dialogue with a scripted user ("Add k to your last
answer.", ``rollouts/dialogue.py``), whose SFT start learns whole three-turn dialogues, for
REFUEL's multi-turn comparison (experiments/results/refuel.md).

SFT starts (``SftRecipe``): the trainer's own SFT phase on the task's demonstrations
(``demonstrations=True``: the reference answer, or the worked scratchpad, tags, function body),
run by ``train.train(cfg, stop_after=sft_steps)`` and exported as a Hugging Face checkpoint to
``<cache>/<task>-<recipe hash>/model`` (``jaxrl-llm export``). The hash covers the model, the task
and its kwargs, the prompt length and the SFT fields, so a changed recipe builds a new start and
an unchanged one is reused by every method and seed. The RL runs load that directory as their
model with ``sft.steps=0``; their first evaluation ("before") is the start's accuracy.

Recipe rule (``RULE``; one setting for every from-scratch task, not tuned per task): GRPO-family
update with Adam lr 5e-5, constant schedule, gradient clipping 1.0; 16 prompts x 8 samples a step
at temperature 1; KL weight beta = 0.04 to the start (set on every method whose Config has
``beta``); 400 RL steps; held-out greedy accuracy and pass@1 / pass@4 every 100 steps. It is the
default run's setting (experiments/default.py), where GRPO learns basic_arithmetic (43% -> 79% in
1100 steps; 43% -> 54-59% in 400, experiments/results/family_a.md). The sweep that is to confirm
or replace it is in experiments/results/suite.md. The pretrained model's task runs under
``PRETRAINED_RULE`` (``Rule.for_task``): temperature 0.7, lr 1e-5, 40 steps of 8 x 4, the recipe of
experiments/smollm2_grpo.py, because under the from-scratch rule its groups carry no signal and a
step costs ~40x (see the comment at ``PRETRAINED_RULE``).

Outputs, under ``--out`` (default ``runs/suite``):
  ``<method>/<task>/s<seed>/``: each run (``metrics.jsonl``, checkpoints, ``summary.json``);
  ``suite_<method>.md`` / ``.json``: the table (held-out greedy accuracy at the start and the end,
  its change, sampled pass@1 and pass@k at the end, tokens sampled in RL, RL wall time; mean +-
  sample std over seeds, and GRPO's std over its seeds in brackets: the noise floor; then Welch's
  p of each method against GRPO's seeds on greedy accuracy, pass@1 and pass@k. GRPO's figures are
  its runs under ``--out``, or, where there are none, the committed
  ``experiments/results/suite_grpo_reference.json``: its runs under the rule, made on other
  machines, as suite.md reports them; ``--smoke`` uses no reference);
  ``plots/<task>.png``: held-out greedy accuracy against RL step, every method and seed.

Resumable: a run whose ``summary.json`` exists is skipped; an interrupted run resumes from its
last checkpoint (the trainer's own resume). ``--report`` only rewrites the tables and plots.

Commands (``--set`` overrides apply to every run, after the rule):
    python experiments/suite.py --method grpo --seeds 0 1 2                # the GRPO table
    python experiments/suite.py --method gtpo --seeds 0 1 2                # a family-A method
    python experiments/suite.py --method grpo --tasks arith partial_sums --jobs 2
    python experiments/suite.py --report                                   # tables + plots only
    python experiments/suite.py --smoke --out /tmp/suite                   # CI: tiny model, 2 steps
    jaxrl-llm train suite          # one run: GRPO on ``arith``, seed 0, SFT inline (``get_config``)

Hardware and time (2-core AMD EPYC CPU, f32): ``arith``, ``arith_hard`` ~3-6 min a run (``arith_hard``
measured 2026-12-06 beside one other job: 336 +- 39 s; its SFT start ~5 min, 350 steps at ~0.7 s); ``tagged`` ~17 min to build its SFT start (300 steps at 1.9-3.6 s) and
28-40 min a run (both measured on 2026-12-06 beside 1-3 other jobs; 3.7-4.6 s a step);
``partial_sums`` is the dearest of the from-scratch tasks (~57-token completions on 176-token
prompts): its SFT start took 30 min (200 steps at 3.4-9.6 s beside 2-4 other jobs), and an RL
step 4.6-7.4 s beside one other job and 14-17 s beside three (2026-12-06), so 0.5-2 h a run; ``codegen`` ~5 min to build its SFT start (200 steps at ~1.5 s) and ~38 min a run
(measured 2026-12-07 beside one other job: 5.4 s a step, 3.1 s of it in the 128 sandboxed test
runs); ``smollm2`` 20-27 min a run (measured with other jobs on the
machine; 25-34 s a step). ``--jobs`` on a machine with more cores divides the total.
"""

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxrl_llm import cli, metrics_log, train  # noqa: E402
from jaxrl_llm import config as config_lib  # noqa: E402
from jaxrl_llm import run_dir as run_dir_lib  # noqa: E402
from jaxrl_llm.config import (  # noqa: E402
    CheckpointConfig,
    Config,
    EvalConfig,
    LogConfig,
    MeshConfig,
    ModelConfig,
    OptimConfig,
    RewardConfig,
    SamplingConfig,
    SFTConfig,
    TaskConfig,
    TrainConfig,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SMOLLM2 = "smollm2-135m-instruct"
PRETRAINED = frozenset({SMOLLM2})
# Part of every SFT start's hash: raise it when a task's demonstrations or prompts change in code
# (jaxrl_llm/tasks/suite.py, codegen.py), so that stale starts are rebuilt, not reused.
SFT_START_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SftRecipe:
    """How a task's SFT start is built: the trainer's SFT phase on the task's demonstrations."""

    steps: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 20
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SuiteTask:
    """One task of the suite: its prompt source, model, lengths, SFT start and eval size."""

    key: str
    kind: str
    task: str
    kwargs: Mapping[str, Any]
    max_prompt_len: int
    max_new_tokens: int
    sft: SftRecipe | None  # None: the model as it is (a pretrained model)
    model: str = "small"
    system_prompt: str = ""
    eval_examples: int = 256
    steps: int | None = None  # None: the rule's steps; set only where a step's cost forbids it
    # Task kwargs of the SFT stage: the suite's own tasks put their worked demonstration in
    # ``answer``; reasoning-gym tasks' reference answer is already the whole completion.
    sft_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"demonstrations": True})
    # Completion width of the SFT stage when its demonstrations outgrow one RL completion (a whole
    # dialogue); None: ``max_new_tokens``.
    sft_max_new_tokens: int | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """The one recipe every task runs under (see the module docstring for why these values)."""

    learning_rate: float = 5e-5
    steps: int = 400
    prompts_per_step: int = 16
    group_size: int = 8
    beta: float = 0.04
    temperature: float = 1.0
    eval_every: int = 100
    eval_k: int = 4
    checkpoint_every: int = 50
    reward_workers: int = 2
    num_devices: int = 0  # mesh.num_devices: 0 = all
    # The rule for a pretrained model's tasks (None: this rule for every task); see PRETRAINED_RULE.
    pretrained: Any = None  # a Rule, or None

    def for_task(self, task: SuiteTask) -> "Rule":
        """The rule ``task`` runs under: ``pretrained`` for a pretrained model's task, else this."""
        return self.pretrained if task.model in PRETRAINED and self.pretrained is not None else self


# The pretrained model's rule. Under the from-scratch rule (temperature 1) SmolLM2's sampled
# groups mostly carry no reward spread (probe in experiments/results/suite.md), and a step costs
# ~40x a ``small`` one. Its rule is the recipe experiments/smollm2_grpo.py found by a probe
# (experiments/results/smollm2_grpo.md: +40.7 +- 3.2 points over 3 seeds): temperature 0.7 in
# training and in pass@k, Adam lr 1e-5, 40 steps of 8 prompts x 4 samples, evaluations every 20
# steps. The regex reward runs in the trainer's process (no workers).
PRETRAINED_RULE = Rule(
    learning_rate=1e-5,
    steps=40,
    prompts_per_step=8,
    group_size=4,
    temperature=0.7,
    eval_every=20,
    checkpoint_every=10,
    reward_workers=0,
)
RULE = Rule(pretrained=PRETRAINED_RULE)

_ARITH = {
    "min_terms": 2,
    "max_terms": 2,
    "operators": ["+", "-"],
    "allow_parentheses": False,
    "allow_negation": False,
    "num_eval": 500,
}

SUITE: tuple[SuiteTask, ...] = (
    SuiteTask(
        "arith",
        "short answer",
        "rg:basic_arithmetic",
        {**_ARITH, "min_digits": 1, "max_digits": 1},
        max_prompt_len=40,
        max_new_tokens=4,
        sft=SftRecipe(steps=120),
        sft_kwargs={},
    ),
    SuiteTask(
        "arith_hard",
        "short answer, harder",
        "rg:basic_arithmetic",
        {**_ARITH, "min_digits": 2, "max_digits": 2},
        max_prompt_len=40,
        max_new_tokens=6,
        # 350 since 2026-12-06: the 300-step start scored 11.3% held-out and GRPO found no signal
        # in two thirds of its groups (all three seeds fell 2 points, session 8); 600 steps
        # scored 94.1% and 400 steps 75.8%, above the band (the SFT loss falls from ~1.0 to ~0.2
        # between steps 250 and 450 of the 600-step schedule).
        sft=SftRecipe(steps=350),
        sft_kwargs={},
    ),
    SuiteTask(
        "partial_sums",
        "multi-step scratchpad",
        "suite:partial_sums",
        # One-digit terms since 2026-12-06: with 1-2 digits the 200-step SFT start scored 4.3%
        # held-out (below the band; 62-88% zero-variance groups in RL). Prompts are 165-167
        # tokens, so a 176 cap pads less than the 256 bucket would.
        {"num_eval": 500, "max_digits": 1},
        max_prompt_len=176,
        max_new_tokens=80,
        sft=SftRecipe(steps=200),
    ),
    SuiteTask(
        "tagged",
        "format (answer tags)",
        "suite:tagged_arithmetic",
        {"num_eval": 500},
        max_prompt_len=160,
        max_new_tokens=24,
        sft=SftRecipe(steps=300),
    ),
    SuiteTask(
        "codegen",
        "code, sandboxed tests",
        "suite:codegen",
        {"num_eval": 128},
        max_prompt_len=64,
        max_new_tokens=32,
        sft=SftRecipe(steps=200),
        eval_examples=64,
    ),
    SuiteTask(
        "smollm2",
        "pretrained model",
        "suite:number_arithmetic",
        {"min_digits": 1, "max_digits": 1, "num_eval": 200},
        max_prompt_len=64,
        max_new_tokens=48,
        sft=None,
        model=SMOLLM2,
        eval_examples=100,
    ),
)
# Tasks outside the six, for a mechanism the six cannot show; run by ``--tasks <key>`` only.
EXTRA: tuple[SuiteTask, ...] = (
    SuiteTask(
        "dialogue",
        "multi-turn dialogue",
        "suite:dialogue_arithmetic",
        # ``arith``'s questions as turn 0 of a dialogue with the scripted user of
        # rollouts/dialogue.py (REFUEL's ``refuel_pairs``); the SFT start learns whole 3-turn
        # dialogues (~100 tokens), RL turns stay 4 tokens.
        {**_ARITH, "min_digits": 1, "max_digits": 1},
        max_prompt_len=40,
        max_new_tokens=4,
        sft=SftRecipe(steps=150),
        sft_kwargs={"demonstrations": True, "dialogue_turns": 3},
        sft_max_new_tokens=128,
    ),
)
TASKS = {t.key: t for t in SUITE + EXTRA}

# Smoke (CI) settings: every task on the ``tiny`` model, two SFT and two RL steps, a few prompts.
SMOKE_RULE = Rule(
    steps=2,
    prompts_per_step=2,
    group_size=2,
    beta=0.0,
    eval_every=0,
    eval_k=0,
    checkpoint_every=0,
    reward_workers=0,
    num_devices=1,
)


def smoke_task(task: SuiteTask) -> SuiteTask:
    """``task`` shrunk for CI: the tiny model (SmolLM2's task too), 4 eval prompts, 16 new tokens
    and a prompt cap of 192, so that the tasks fall into two shape buckets (prompts padded to 64
    or to 192) and the shared compilation cache compiles each jitted function twice, not six
    times. Only ``arith`` keeps an SFT start (2 steps of 4), so that the start's build, cache and
    load are exercised once; the others start from the random tiny model."""
    sft = SftRecipe(steps=2, batch_size=4, warmup_steps=1) if task.key == "arith" else None
    return dataclasses.replace(
        task, model="tiny", sft=sft, eval_examples=4, steps=None, max_new_tokens=16, max_prompt_len=192
    )


# ---------------------------------------------------------------------------------------------
# SFT starts


def recipe_hash(task: SuiteTask) -> str:
    """12 hex digits of sha256 over everything that determines the SFT start."""
    recipe = {
        "version": SFT_START_VERSION,
        "model": task.model,
        "task": task.task,
        "kwargs": dict(task.kwargs),
        "max_prompt_len": task.max_prompt_len,
        "system_prompt": task.system_prompt,
        "sft": dataclasses.asdict(task.sft) if task.sft else None,
        "sft_kwargs": dict(task.sft_kwargs),
    }
    if task.sft_max_new_tokens is not None:  # absent otherwise: the six tasks' hashes stay as they were
        recipe["sft_max_new_tokens"] = task.sft_max_new_tokens
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def sft_config(task: SuiteTask, run_dir: pathlib.Path, compilation_cache: str = "", num_devices: int = 0) -> Config:
    """The SFT-stage run: the task with ``demonstrations=True``, SFT only (stopped before RL)."""
    r = task.sft
    return Config(
        name=f"sft_{task.key}",
        run_dir=str(run_dir),
        seed=r.seed,
        algorithm="grpo",
        compilation_cache_dir=compilation_cache,
        model=ModelConfig(name=task.model),
        task=TaskConfig(
            name=task.task,
            kwargs={**task.kwargs, **task.sft_kwargs},
            max_prompt_len=task.max_prompt_len,
            system_prompt=task.system_prompt,
        ),
        sampling=SamplingConfig(max_new_tokens=task.sft_max_new_tokens or task.max_new_tokens),
        train=TrainConfig(steps=1),
        sft=SFTConfig(
            steps=r.steps,
            batch_size=r.batch_size,
            learning_rate=r.learning_rate,
            warmup_steps=r.warmup_steps,
            template="{answer}",
        ),
        eval=EvalConfig(num_examples=0),
        checkpoint=CheckpointConfig(every=0, max_to_keep=1, async_save=False),
        reward=RewardConfig(num_workers=0),
        mesh=MeshConfig(num_devices=num_devices),
        log=LogConfig(tensorboard=False, progress=False),
    )


def sft_start(task: SuiteTask, cache: pathlib.Path, compilation_cache: str = "", num_devices: int = 0) -> str:
    """The model the RL runs of ``task`` start from: the pretrained model itself when the task
    has no SFT recipe, else the cached SFT start (built here when missing)."""
    if task.sft is None:
        return task.model
    home = cache / f"{task.key}-{recipe_hash(task)}"
    model_dir, done = home / "model", home / "start.json"
    if done.exists() and model_dir.is_dir():
        return str(model_dir)
    run_dir = home / "sft_run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = sft_config(task, run_dir, compilation_cache, num_devices)
    summary = train.train(cfg, stop_after=task.sft.steps)
    if summary["step"] != task.sft.steps:
        raise RuntimeError(f"SFT start of {task.key!r} stopped at step {summary['step']}, expected {task.sft.steps}")
    if model_dir.exists():
        shutil.rmtree(model_dir)
    if cli.main(["export", str(run_dir), str(model_dir)]) != 0:
        raise RuntimeError(f"exporting the SFT start of {task.key!r} from {run_dir} failed")
    sft_loss = [r["sft/loss"] for r in metrics_log.read_metrics(run_dir) if "sft/loss" in r]
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    done.write_text(
        json.dumps(
            {
                "task": task.key,
                "hash": recipe_hash(task),
                "config": config_lib.to_dict(cfg),
                "final_sft_loss": sft_loss[-1] if sft_loss else None,
            },
            indent=2,
        )
    )
    return str(model_dir)


# ---------------------------------------------------------------------------------------------
# RL runs


def run_dir(out: pathlib.Path, name: str, task: SuiteTask, seed: int) -> pathlib.Path:
    return out / name / task.key / f"s{seed}"


def run_config(
    task: SuiteTask,
    method: str,
    seed: int,
    start: str,
    directory: pathlib.Path,
    rule: Rule = RULE,
    overrides: Sequence[str] = (),
    compilation_cache: str = "",
) -> Config:
    """One RL run of ``method`` on ``task`` from ``start`` under ``rule`` (its ``for_task``),
    then ``overrides``."""
    rule = rule.for_task(task)
    cfg = Config(
        name=f"{method}_{task.key}_s{seed}",
        run_dir=str(directory),
        seed=seed,
        algorithm=method,
        compilation_cache_dir=compilation_cache,
        model=ModelConfig(name=start),
        task=TaskConfig(
            name=task.task,
            kwargs=dict(task.kwargs),
            max_prompt_len=task.max_prompt_len,
            system_prompt=task.system_prompt,
        ),
        sampling=SamplingConfig(temperature=rule.temperature, max_new_tokens=task.max_new_tokens),
        optim=OptimConfig(learning_rate=rule.learning_rate, max_grad_norm=1.0),
        train=TrainConfig(
            steps=task.steps or rule.steps, prompts_per_step=rule.prompts_per_step, group_size=rule.group_size
        ),
        sft=SFTConfig(steps=0),
        eval=EvalConfig(
            every=rule.eval_every,
            num_examples=task.eval_examples,
            k=rule.eval_k,
            temperature=rule.temperature,
            batch_size=min(task.eval_examples, 256),
        ),
        checkpoint=CheckpointConfig(every=rule.checkpoint_every),
        reward=RewardConfig(num_workers=rule.reward_workers, timeout_s=10.0),
        mesh=MeshConfig(num_devices=rule.num_devices),
        log=LogConfig(tensorboard=False, progress=False),
    )
    cfg = config_lib.resolve_algo(cfg)
    if hasattr(cfg.algo, "beta"):
        cfg = dataclasses.replace(cfg, algo=dataclasses.replace(cfg.algo, beta=rule.beta))
    return config_lib.apply_overrides(cfg, list(overrides))


def is_finished(directory: pathlib.Path) -> bool:
    path = directory / "summary.json"
    return path.exists() and json.loads(path.read_text()).get("status") == "finished"


def _run_one(cfg_json: str) -> str:
    """Runs one RL run from its config dict (in this process); returns its status."""
    return train.train(config_lib.from_dict(json.loads(cfg_json)))["status"]


def run_all(
    method: str,
    tasks: Sequence[SuiteTask],
    seeds: Sequence[int],
    out: pathlib.Path,
    cache: pathlib.Path,
    rule: Rule = RULE,
    overrides: Sequence[str] = (),
    jobs: int = 1,
    name: str | None = None,
) -> list[pathlib.Path]:
    """Runs every (task, seed) of ``method`` that has not finished, under ``out/<name>/`` (``name``
    defaults to the method; a sweep variant names itself, e.g. ``grpo_lr1e-4``); returns the run dirs.

    SFT starts are built first, one after another (runs of one task share its start). With
    ``jobs`` > 1 the runs go to that many worker processes, each pinned to its own share of the
    CPU cores; otherwise they run here, one after another. All runs share one persistent XLA
    compilation cache (``<out>/xla_cache``): the seeds of a task compile nothing after the first.
    """
    name = name or method
    xla_cache = str(out / "xla_cache")
    starts = {t.key: sft_start(t, cache, xla_cache, rule.num_devices) for t in tasks}
    todo = []
    for t in tasks:
        for s in seeds:
            d = run_dir(out, name, t, s)
            if is_finished(d):
                print(f"[suite] {d} finished earlier: skipped", flush=True)
                continue
            cfg = run_config(t, method, s, starts[t.key], d, rule, overrides, xla_cache)
            todo.append((d, json.dumps(config_lib.to_dict(cfg))))
    if jobs <= 1:
        for d, cfg_json in todo:
            print(f"[suite] {d}: {_run_one(cfg_json)}", flush=True)
    else:
        cores = sorted(os.sched_getaffinity(0))
        share = max(1, len(cores) // jobs)
        slots = [cores[i * share : (i + 1) * share] or cores for i in range(jobs)]
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            free = list(range(jobs))
            futures = {}
            for d, cfg_json in todo:
                if not free:
                    done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
                    for f in done:
                        free.append(futures.pop(f))
                slot = free.pop()
                futures[pool.submit(_subprocess_run, d, cfg_json, slots[slot])] = slot
            for f in concurrent.futures.as_completed(futures):
                f.result()
    return [run_dir(out, name, t, s) for t in tasks for s in seeds]


def _subprocess_run(directory: pathlib.Path, cfg_json: str, cores: list[int]) -> None:
    # Beside the run directory, not in it: the trainer takes only an empty directory or its own run.
    directory.parent.mkdir(parents=True, exist_ok=True)
    cfg_file = directory.parent / f"{directory.name}.config.json"
    cfg_file.write_text(cfg_json)
    cmd = ["taskset", "-c", ",".join(map(str, cores)), sys.executable, __file__, "--run-config", str(cfg_file)]
    with open(directory.parent / f"{directory.name}.log", "a") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    print(f"[suite] {directory}: exit {rc}", flush=True)


def get_config() -> Config:
    """``jaxrl-llm train suite``: one suite run as a single trainer config, GRPO under the rule on
    ``arith`` with seed 0, its SFT recipe run inline (``sft.steps``) instead of loaded from the
    cache. Only ``arith`` can do both in one run: its demonstrations are its reference answers,
    where the other tasks' SFT stage needs ``demonstrations=True``."""
    t = TASKS["arith"]
    r = t.sft
    cfg = run_config(t, "grpo", r.seed, t.model, pathlib.Path("runs/suite_arith_grpo_s0"))
    return dataclasses.replace(
        cfg,
        name="suite_arith_grpo_s0",
        run_dir="",
        sft=SFTConfig(
            steps=r.steps,
            batch_size=r.batch_size,
            learning_rate=r.learning_rate,
            warmup_steps=r.warmup_steps,
            template="{answer}",
        ),
    )


# ---------------------------------------------------------------------------------------------
# The table and the plots

# Training signals that say why GRPO does or does not learn a task: mean over the first and the last
# ``SIGNAL_WINDOW`` RL steps of each run (a quarter of the run where it is shorter than 200 steps).
SIGNALS = ("reward/mean", "frac_zero_std_groups", "entropy", "grad_norm", "kl", "completion_len/mean")
SIGNAL_WINDOW = 50

COLUMNS = (
    ("start", "greedy acc (start)"),
    ("final", "greedy acc (end)"),
    ("delta", "change"),
    ("pass@1", "pass@1 (end)"),
    ("pass@k", "pass@k (end)"),
    ("tokens", "tokens sampled"),
    ("wall_s", "RL time (s)"),
)


# Rollout kinds that sample more than the rows they train on log their own count of sampled tokens
# (SPO-chain's Monte Carlo continuations, SPO-tree's tree nodes, ARPO's branches); the table uses it.
SAMPLED_TOKEN_KEYS = ("chain/sampled_tokens", "tree/sampled_tokens", "arpo/sampled_tokens")


def step_tokens(record: Mapping[str, Any], batch: int) -> float:
    """Tokens sampled in one RL step: the kind's own count (``SAMPLED_TOKEN_KEYS``) when it logs
    one, else the mean completion length x prompts x group size x sampling rounds."""
    for key in SAMPLED_TOKEN_KEYS:
        if key in record:
            return float(record[key])
    return float(record.get("completion_len/mean", 0.0) * batch * record.get("sampling_rounds", 1))


def rows_per_step(directory: pathlib.Path) -> int:
    """``prompts_per_step x group_size`` of the run's ``config.json`` (1 when it has none): the
    completions a step samples, which ``step_tokens`` multiplies by the mean completion length."""
    cfg_path = directory / "config.json"
    if not cfg_path.exists():
        return 1
    t = json.loads(cfg_path.read_text())["train"]
    return t["prompts_per_step"] * t["group_size"]


def run_record(directory: pathlib.Path) -> dict[str, Any] | None:
    """What the table needs from one run's ``metrics.jsonl``: the first and last held-out
    evaluations, the eval curve, tokens sampled in RL (``step_tokens`` summed over the steps) and
    RL wall time (sum of ``time/step``). None when the run has no evaluation yet."""
    records = metrics_log.read_metrics(directory)
    evals = [r for r in records if r.get("phase") == "eval" and "eval/accuracy" in r]
    if not evals:
        return None
    batch = rows_per_step(directory)
    rl = [r for r in records if r.get("phase") == "rl"]
    first, last = evals[0], evals[-1]
    window = max(1, min(SIGNAL_WINDOW, len(rl) // 4))  # a short run's windows must not overlap
    return {
        "run_dir": str(directory),
        "finished": is_finished(directory),
        "rl_steps": len(rl),
        "start": first["eval/accuracy"],
        "final": last["eval/accuracy"],
        "delta": last["eval/accuracy"] - first["eval/accuracy"],
        "pass@1": last.get("eval/pass@1"),
        "pass@k": last.get("eval/pass@k"),
        "tokens": float(sum(step_tokens(r, batch) for r in rl)),
        "wall_s": float(sum(r.get("time/step", 0.0) for r in rl)),
        "curve": [(r["step"] - first["step"], r["eval/accuracy"]) for r in evals],
        "signals": {k: [_window_mean(rl[:window], k), _window_mean(rl[-window:], k)] for k in SIGNALS},
    }


def _window_mean(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if key in r]
    return float(np.mean(values)) if values else None


def _stats(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return {"mean": float(np.mean(values)), "std": std, "n": len(values)}


def collect(out: pathlib.Path, method: str, tasks: Sequence[SuiteTask]) -> dict[str, Any]:
    """Per task: each seed's ``run_record`` and, per column, mean / std over seeds."""
    table = {}
    for t in tasks:
        base = out / method / t.key
        seeds = sorted(d for d in base.glob("s*") if d.is_dir()) if base.is_dir() else []
        runs = {d.name: rec for d in seeds if (rec := run_record(d)) is not None}
        if runs:
            table[t.key] = {
                "kind": t.kind,
                "runs": runs,
                "stats": {c: _stats([r[c] for r in runs.values()]) for c, _ in COLUMNS},
            }
    return table


GRPO_REFERENCE = ROOT / "experiments" / "results" / "suite_grpo_reference.json"
# Columns compared against GRPO by Welch's t-test in a method's table (seeds are the samples).
COMPARED = ("final", "pass@1", "pass@k")


def reference_floor(path: pathlib.Path = GRPO_REFERENCE) -> dict[str, Any]:
    """GRPO's figures under the rule as ``{task: {"stats": {column: {mean, std, n}}}}`` (the shape
    ``collect`` gives), from the committed reference (per-seed lists or mean / std / n). ``delta``
    gets ``final``'s spread: every seed of a task starts from the same SFT start."""
    tasks = json.loads(path.read_text())["tasks"]
    out = {}
    for key, columns in tasks.items():
        stats = {}
        for column, value in columns.items():
            stats[column] = _stats(value) if isinstance(value, list) else {k: value[k] for k in ("mean", "std", "n")}
        if "final" in stats:
            stats["delta"] = {**stats["final"], "mean": None}  # the spread only: starts are not recorded
        out[key] = {"stats": stats}
    return out


def welch_p(a: Mapping[str, float] | None, b: Mapping[str, float] | None) -> float | None:
    """Two-sided Welch's t-test p-value from two ``{mean, std, n}`` (None unless both have n >= 2
    and a spread)."""
    from scipy import stats as scipy_stats

    if a is None or b is None or a["n"] < 2 or b["n"] < 2 or not (a["std"] > 0 or b["std"] > 0):
        return None
    return float(
        scipy_stats.ttest_ind_from_stats(
            a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"], equal_var=False
        ).pvalue
    )


def _cell(stats: dict[str, float] | None, floor: dict[str, float] | None, column: str) -> str:
    if stats is None:
        return "-"
    fmt = (lambda v: f"{v:.3g}") if column in ("tokens", "wall_s") else (lambda v: f"{v:.3f}")
    text = fmt(stats["mean"])
    if stats["n"] > 1:
        text += f" ± {fmt(stats['std'])}"
    if floor is not None and floor["n"] > 1 and math.isfinite(floor["std"]):
        text += f" [{fmt(floor['std'])}]"
    return text


# Run-config keys that name a run (``run_dir_lib.diff`` leaves out those that place or show it).
_BOOKKEEPING = ("name", "algorithm")


def config_diff(base: Mapping[str, Any], run: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Every setting in which ``run``'s config differs from ``base``'s, as ``(key, base, run)``
    (``"-"`` where a config has no such key): the method's delta AND what came with it (clip
    bounds, aggregation, dynamic sampling, ...), so a comparison states all of its differences."""
    # a run field missing from an older run's config.json (the field was added since) counts at
    # its default, so schema growth is not reported as a difference; ``algo`` has no default
    defaults = config_lib.to_dict(config_lib.default_config())

    def filled(cfg: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in defaults.items() if k != "algo"} | dict(cfg)
        for section, values in defaults.items():
            if section != "algo" and isinstance(values, Mapping) and isinstance(cfg.get(section), Mapping):
                out[section] = {**values, **cfg[section]}
        return out

    changed = run_dir_lib.diff(filled(base), filled(run), missing="-")
    return [(k, a, b) for k, (a, b) in changed.items() if k not in _BOOKKEEPING]


def _settings_against_grpo(out: pathlib.Path, method: str, table: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, row in table.items():
        seed = sorted(row["runs"])[0]
        mine, theirs = out / method / key / seed / "config.json", out / "grpo" / key / seed / "config.json"
        if not (mine.exists() and theirs.exists()):
            continue
        diff = config_diff(json.loads(theirs.read_text()), json.loads(mine.read_text()))
        cells = ", ".join(f"`{k}` {a} -> {b}" for k, a, b in diff) or "none"
        lines.append(f"| {key} | {cells} |")
    if not lines:
        return []
    return [
        "",
        "Settings that differ from GRPO's run of the same task and seed (`config.json`; `-` = no such field):",
        "",
        "| task | differences |",
        "|---|---|",
        *lines,
    ]


def report(
    out: pathlib.Path,
    methods: Sequence[str] | None = None,
    tasks: Sequence[SuiteTask] = SUITE + EXTRA,
    reference: pathlib.Path | None = None,
) -> dict[str, pathlib.Path]:
    """Writes ``suite_<method>.md`` / ``.json`` for every method with runs under ``out`` and one
    plot per task (``plots/<task>.png``); returns the markdown paths by method. GRPO's noise floor
    is its runs under ``out``; where there are none, the committed ``reference`` (pass
    ``GRPO_REFERENCE``: runs made on other machines under the same rule). Each method's table is
    followed by Welch's p against GRPO's seeds on greedy accuracy, pass@1 and pass@k."""
    if methods is None:
        methods = sorted(
            p.name for p in out.iterdir() if p.is_dir() and p.name not in ("plots", "sft_starts", "xla_cache")
        )
    tables = {m: collect(out, m, tasks) for m in methods}
    grpo = tables.get("grpo") or (collect(out, "grpo", tasks) if (out / "grpo").is_dir() else {})
    floor_source = "grpo runs under this folder" if grpo else None
    if not grpo and reference is not None and reference.exists():
        grpo, floor_source = reference_floor(reference), f"reference ({reference.name})"
    written = {}
    for method, table in tables.items():
        if not table:
            continue
        lines = [
            f"# Learning suite: {method}",
            "",
            "Mean ± sample std over seeds; [GRPO's std over its seeds on the same task] is the "
            "noise floor. Accuracy is held-out greedy; pass@1 / pass@k are sampled at the rule's "
            "temperature (1; 0.7 for the pretrained model's task, `PRETRAINED_RULE`).",
            "",
            "| task | kind | seeds | " + " | ".join(label for _, label in COLUMNS) + " |",
            "|---|---|---|" + "---|" * len(COLUMNS),
        ]
        for key, row in table.items():
            floors = grpo.get(key, {}).get("stats", {})
            cells = [_cell(row["stats"][c], floors.get(c), c) for c, _ in COLUMNS]
            unfinished = sum(not r["finished"] for r in row["runs"].values())
            seeds = f"{len(row['runs'])}" + (f" ({unfinished} unfinished)" if unfinished else "")
            lines.append(f"| {key} | {row['kind']} | {seeds} | " + " | ".join(cells) + " |")
        against = {}  # finished runs only: an unfinished run's last evaluation is not an end point
        if method != "grpo":
            for key, row in table.items():
                done = [r for r in row["runs"].values() if r["finished"]]
                floors = grpo.get(key, {}).get("stats", {})
                against[key] = {c: welch_p(_stats([r[c] for r in done]), floors.get(c)) for c in COMPARED}
        if floor_source and any(p is not None for ps in against.values() for p in ps.values()):
            lines += [
                "",
                f"Welch's p against GRPO's seeds on the same task, finished runs only (noise floor: {floor_source}):",
                "",
                "| task | greedy acc (end) | pass@1 (end) | pass@k (end) |",
                "|---|---|---|---|",
                *(
                    f"| {key} | " + " | ".join("-" if ps[c] is None else f"{ps[c]:.2g}" for c in COMPARED) + " |"
                    for key, ps in against.items()
                ),
            ]
        lines += [
            "",
            f"Training signals (mean over seeds; first -> last {SIGNAL_WINDOW} RL steps, or a quarter "
            "of a shorter run):",
            "",
            "| task | " + " | ".join(SIGNALS) + " |",
            "|---|" + "---|" * len(SIGNALS),
        ]
        for key, row in table.items():
            cells = []
            for k in SIGNALS:
                pairs = [r["signals"][k] for r in row["runs"].values() if None not in r["signals"][k]]
                cells.append(
                    f"{np.mean([a for a, _ in pairs]):.3g} -> {np.mean([b for _, b in pairs]):.3g}" if pairs else "-"
                )
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        if method != "grpo":
            lines += _settings_against_grpo(out, method, table)
        md = out / f"suite_{method}.md"
        md.write_text("\n".join(lines) + "\n")
        (out / f"suite_{method}.json").write_text(
            json.dumps(
                {
                    "method": method,
                    "noise_floor": floor_source,
                    "tasks": table,
                    "grpo_stats": {k: v["stats"] for k, v in grpo.items()},
                    "p_vs_grpo": against,
                },
                indent=2,
                default=float,
            )
        )
        written[method] = md
    _plots(out, tables, tasks)
    return written


def _plots(out: pathlib.Path, tables: Mapping[str, Mapping[str, Any]], tasks: Sequence[SuiteTask]) -> None:
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for t in tasks:
        rows = {m: tab[t.key] for m, tab in tables.items() if t.key in tab}
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (method, row) in enumerate(rows.items()):
            color = f"C{i}"
            curves = [r["curve"] for r in row["runs"].values()]
            for c in curves:
                ax.plot(*zip(*c), color=color, alpha=0.3, lw=1)
            steps = sorted({s for c in curves for s, _ in c})
            at = [[a for c in curves for s2, a in c if s2 == s] for s in steps]
            mean = np.array([np.mean(v) for v in at])
            std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in at])
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
            ax.plot(steps, mean, color=color, lw=2, marker="o", label=f"{method} (mean ± std of {len(curves)})")
        ax.set_title(f"{t.key}: held-out greedy accuracy")
        ax.set_xlabel("RL step")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "plots" / f"{t.key}.png", dpi=100)
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--method", default="grpo", help="a registered algorithm (jaxrl_llm.algorithms)")
    p.add_argument(
        "--name",
        default=None,
        help="results folder and table name (default: the method); a sweep variant names itself, e.g. grpo_lr1e-4",
    )
    p.add_argument(
        "--tasks",
        nargs="*",
        default=None,
        help=f"task keys of {list(TASKS)} (default: the six, {[t.key for t in SUITE]})",
    )
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="runs/suite")
    p.add_argument("--cache", default=None, help="SFT start cache (default: <out>/sft_starts)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied to every run after the rule (repeatable)",
    )
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process and cores")
    p.add_argument("--smoke", action="store_true", help="CI size: tiny model, 2 SFT + 2 RL steps per task")
    p.add_argument("--report", action="store_true", help="only rewrite the tables and plots")
    p.add_argument("--run-config", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_config:
        return 0 if _run_one(pathlib.Path(args.run_config).read_text()) == "finished" else 1
    unknown = [k for k in args.tasks or [] if k not in TASKS]
    if unknown:
        p.error(f"unknown task keys {unknown}; known: {list(TASKS)}")
    tasks = [TASKS[k] for k in args.tasks] if args.tasks else list(SUITE)
    rule = RULE
    if args.smoke:
        tasks, rule = [smoke_task(t) for t in tasks], SMOKE_RULE
    out = pathlib.Path(args.out)
    if not args.report:
        try:  # bad method names and overrides fail here, before any SFT start is built
            config_lib.apply_overrides(config_lib.resolve_algo(Config(algorithm=args.method)), args.overrides)
        except config_lib.ConfigError as e:
            print(f"suite: config error: {e}", file=sys.stderr)
            return 2
        run_all(
            args.method,
            tasks,
            args.seeds,
            out,
            pathlib.Path(args.cache or out / "sft_starts"),
            rule,
            args.overrides,
            args.jobs,
            args.name,
        )
    for method, path in report(out, reference=None if args.smoke else GRPO_REFERENCE).items():
        print(f"[suite] {method}: {path}", flush=True)
        print(path.read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
