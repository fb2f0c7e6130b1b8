"""``jaxrl-llm train | eval | sample | export | plot``.

  jaxrl-llm train [EXPERIMENT] [--set a.b=value ...]   run (or resume) an experiment; with no
                                                       EXPERIMENT, the embedded default run
  jaxrl-llm eval RUN_DIR [--set eval.num_examples=N]   held-out accuracy of a run's latest checkpoint
                                                       (an ``episode`` run: greedy episodes from
                                                       held-out seeds, ``--episodes N``)
  jaxrl-llm sample RUN_DIR --prompt TEXT [--n N]       completions from a run's latest checkpoint
  jaxrl-llm export RUN_DIR OUT_DIR                     the policy as a Hugging Face checkpoint
  jaxrl-llm plot RUN_DIR [RUN_DIR ...] [--out F.png]   curves comparing runs

EXPERIMENT is a file in ``experiments/`` (by stem, e.g. ``smollm2_grpo``) or a path to a ``.py``
file with ``get_config()`` (one that returns a ``jaxrl_llm.control.config.ControlConfig`` trains a
control policy on a JAX environment: ``jaxrl_llm.control.train``). A run lives in ``runs/<name>``
(``--run-dir`` to choose): its
``config.json``, checkpoints, ``metrics.jsonl``, TensorBoard events under ``tb/`` (view them with
``pip install 'jaxrl_llm[tensorboard]'`` then ``tensorboard --logdir runs``), ``summary.json`` and
``curves.png``. A run directory holds one config: running again with the same config resumes it
(or, when it finished, prints its result and changes nothing); another config is refused, naming
the keys that differ, unless ``--extend`` may change them (``jaxrl_llm.run_dir``).

Errors in the input (config keys and values, a run directory, a model path, a checkpoint or
weights file, an argument) end in one line ``jaxrl-llm ...: error: <what and where>`` and exit
status 2. ``train`` exits 0 when the run finished (or had finished) or stopped at
``--stop-after``, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from collections.abc import Sequence

import jax

from jaxrl_llm import algorithms, distributed, errors, evaluate, models, plot, rollouts, run_dir, tasks, train
from jaxrl_llm import config as config_lib
from jaxrl_llm import policy as policy_lib
from jaxrl_llm.control import config as control_config
from jaxrl_llm.control import train as control_train
from jaxrl_llm.models import hf_io, safetensors_io
from jaxrl_llm.rollouts import episode
from jaxrl_llm.types import Example

# Exceptions that mean the input is wrong (reported in one line); anything else is a bug and keeps
# its traceback.
INPUT_ERRORS = (errors.UserError, hf_io.CheckpointError, safetensors_io.SafetensorsError)

TENSORBOARD_HELP = (
    "TensorBoard: pip install 'jaxrl_llm[tensorboard]', then tensorboard --logdir runs "
    "(each run's events are in <run_dir>/tb)"
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _prompt(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the prompt is empty; give the user message to complete")
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jaxrl-llm", description="JAX-native policy optimization for LLMs", epilog=TENSORBOARD_HELP
    )
    sub = p.add_subparsers(dest="command")

    def with_overrides(sp):
        sp.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config field, e.g. --set train.steps=20 (repeatable)",
        )

    t = sub.add_parser("train", help="run or resume an experiment", epilog=TENSORBOARD_HELP)
    t.add_argument(
        "experiment", nargs="?", default=None, help="experiment name or .py path (default: the embedded default)"
    )
    with_overrides(t)
    t.add_argument("--run-dir", default=None, help="run directory (default: runs/<name>)")
    t.add_argument(
        "--extend",
        action="store_true",
        help="let this run's directory take a config that differs from the one it holds in keys "
        f"that do not invalidate it ({', '.join(sorted(run_dir.EXTENDABLE))}; train.steps only "
        "upwards); recorded in config_history.jsonl",
    )
    t.add_argument(
        "--stop-after",
        type=_positive_int,
        default=None,
        help="checkpoint and stop at this global step (exit 0); run again to continue",
    )
    t.add_argument("--distributed", action="store_true", help="initialize jax.distributed from the environment")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint on the held-out split")
    e.add_argument("run_dir")
    e.add_argument(
        "--episodes",
        type=_positive_int,
        default=64,
        help="an episode run (rollout kind 'episode'): greedy episodes from this many held-out seeds",
    )
    with_overrides(e)

    s = sub.add_parser("sample", help="sample completions from a run's latest checkpoint")
    s.add_argument("run_dir")
    s.add_argument("--prompt", action="append", required=True, type=_prompt, help="user message (repeatable)")
    s.add_argument("--n", type=_positive_int, default=1, help="samples per prompt (>= 1)")
    s.add_argument("--greedy", action="store_true")
    with_overrides(s)

    x = sub.add_parser("export", help="write a run's latest policy as a Hugging Face checkpoint")
    x.add_argument("run_dir")
    x.add_argument("out_dir")

    pl = sub.add_parser("plot", help="PNG curves comparing runs")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument("--out", default=None, help="output PNG (default: <first run>/compare.png)")
    pl.add_argument("--keys", nargs="*", default=None, help="metric keys to draw")
    pl.add_argument(
        "--smooth",
        type=float,
        default=0.6,
        help="EMA weight of the training curves in [0, 1) (0 = raw); the figure says which",
    )
    return p


def _run_config(path: str, overrides: Sequence[str]) -> config_lib.Config:
    """The config a run directory holds, with ``overrides`` applied."""
    file = pathlib.Path(path) / run_dir.CONFIG_FILE
    if not file.is_file():
        raise errors.UserError(f"{path} is not a run directory (no {run_dir.CONFIG_FILE})")
    try:
        saved = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise errors.UserError(f"cannot read {file} ({type(e).__name__}: {e})") from None
    try:
        cfg = config_lib.from_dict(saved)
    except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f"{file}: {e}") from None
    cfg = dataclasses.replace(cfg, run_dir=str(path))
    return config_lib.apply_overrides(cfg, overrides)


def check_model(name: str) -> None:
    """Raises ``UserError`` unless ``name`` is a built-in model (a benchmark shape paired with a
    tokenizer, ``models.zoo.with_tokenizer``, too) or a directory holding a Hugging Face checkpoint
    (``config.json`` and safetensors weights)."""
    if name.split(models.zoo.PAIRED, 1)[0] in models.list_models():
        return
    path = pathlib.Path(name)
    if not path.is_dir():
        raise errors.UserError(
            f"model.name={name!r} is neither a built-in model ({', '.join(models.list_models())}) nor a directory"
        )
    if not (path / "config.json").is_file():
        raise errors.UserError(
            f"model.name={name!r}: {path} has no config.json, so it is not a Hugging Face checkpoint directory"
        )
    if not any((path / f).is_file() for f in (hf_io.SINGLE_FILE, hf_io.INDEX_FILE)):
        raise errors.UserError(
            f"model.name={name!r}: {path} has no weights ({hf_io.SINGLE_FILE} or {hf_io.INDEX_FILE})"
        )


def _plays_episodes(cfg: config_lib.Config) -> bool:
    """Whether the run's rollout kind plays ``env`` episodes (``rollouts.episode``)."""
    return (cfg.train.rollout or algorithms.get(cfg.algorithm).rollout) in episode.PLAYING_KINDS


def _load_policy(cfg: config_lib.Config) -> tuple[policy_lib.Policy, int]:
    """The policy of a run directory's newest readable checkpoint (no optimizer, no reward workers)."""
    policy, step = evaluate.load_policy(cfg)
    if step is None:
        directory = pathlib.Path(cfg.resolved_run_dir) / "checkpoints"
        raise errors.UserError(f"{cfg.resolved_run_dir} has no checkpoint yet (nothing in {directory})")
    return policy, step


def _draw_curves(directory: pathlib.Path) -> None:
    """``curves.png`` of a finished run, unless it is already newer than the run's metrics (a
    finished run's files are left alone); a failure is a warning, not an error."""
    out = directory / "curves.png"
    metrics = directory / "metrics.jsonl"
    if not metrics.exists() or (out.exists() and out.stat().st_mtime >= metrics.stat().st_mtime):
        return
    try:
        plot.plot_runs([directory], out)
    except (OSError, ValueError) as e:
        print(f"jaxrl-llm: warning: no curves written to {out}: {e}", file=sys.stderr)
        return
    print(f"curves: {out}")


def _say_finished(directory: pathlib.Path, summary: dict) -> None:
    """What a finished run that was asked to run again tells the user (it changed nothing)."""
    ev = summary.get("eval") or {}
    acc = {k: ev[k].get("eval/accuracy") for k in ("before", "after") if isinstance(ev.get(k), dict)}
    result = (
        f"; held-out accuracy {100 * acc['before']:.1f}% -> {100 * acc['after']:.1f}%"
        if None not in (acc.get("before"), acc.get("after"))
        else ""
    )
    print(
        f"{directory} holds a finished run (step {summary.get('step')}{result}); nothing to do. Its summary: "
        f"{directory / run_dir.SUMMARY_FILE}. To train it further: --set train.steps=MORE --extend",
        file=sys.stderr,
    )


def _train(args: argparse.Namespace, cfg: config_lib.Config) -> int:
    if args.distributed:
        distributed.initialize(force=True)
    summary_file = pathlib.Path(cfg.resolved_run_dir) / run_dir.SUMMARY_FILE
    before = summary_file.stat().st_mtime_ns if summary_file.exists() else None
    summary = train.train(cfg, stop_after=args.stop_after, extend=args.extend)
    directory = pathlib.Path(summary.get("run_dir") or cfg.resolved_run_dir)
    status = summary.get("status")
    if status == "finished":
        if jax.process_index() == 0:
            if before is not None and summary_file.exists() and summary_file.stat().st_mtime_ns == before:
                _say_finished(directory, summary)
            _draw_curves(directory)
        return 0
    if status == "stopped" or (
        status == "interrupted" and args.stop_after is not None and summary.get("step", 0) >= args.stop_after
    ):
        print(
            f"stopped after step {summary.get('step')} (--stop-after {args.stop_after}); the checkpoint is in "
            f"{directory / 'checkpoints'}; run the same command again to continue",
            file=sys.stderr,
        )
        return 0
    return 130


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "plot":
        out = args.out or str(pathlib.Path(args.run_dirs[0]) / "compare.png")
        try:
            keys = plot.plot_runs(args.run_dirs, out, args.keys, smooth=args.smooth)
        except (FileNotFoundError, ValueError) as e:
            raise errors.UserError(str(e)) from None
        print(f"wrote {out} ({', '.join(keys)})")
        return 0

    if args.command == "train":
        cfg = control_config.load_experiment(args.experiment)
        if isinstance(cfg, control_config.ControlConfig):  # an env-control experiment (jaxrl_llm.control)
            return control_train.run_cli(cfg, args)
        if args.run_dir:
            cfg = dataclasses.replace(cfg, run_dir=args.run_dir)
        cfg = config_lib.apply_overrides(cfg, args.overrides)
        cfg = config_lib.resolve_algo(cfg)
        if args.print_config:
            print(json.dumps(config_lib.to_dict(cfg), indent=2))
            return 0
        check_model(cfg.model.name)
        return _train(args, cfg)

    cfg = _run_config(args.run_dir, args.overrides if args.command != "export" else [])
    check_model(cfg.model.name)
    policy, step = _load_policy(cfg)
    # the key of the run's own evaluations, so a finished run's "after" numbers repeat
    eval_key = jax.random.fold_in(jax.random.key(cfg.seed), 10**9)
    if args.command == "eval" and _plays_episodes(cfg):
        # A policy acting in an environment: its held-out split is the environment's held-out seeds
        # (``env.*`` overrides evaluate it elsewhere, e.g. with another frozen actor).
        episode.make_env(cfg.env)  # a bad env.name or env.kwargs fails in one line, before any episode
        ctx = rollouts.Context(cfg, algorithms.get(cfg.algorithm), policy, None, None, None)
        result = episode.evaluate(ctx, args.episodes, eval_key)
        print(json.dumps({"step": step, "episodes": args.episodes, **result}, indent=2))
    elif args.command == "eval":
        task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
        scorer = evaluate.make_scorer(task, cfg)
        try:
            result = evaluate.evaluate(policy, task, scorer.score, cfg.eval, eval_key)
        finally:
            scorer.close()
        print(json.dumps({"step": step, **result}, indent=2))
    elif args.command == "sample":
        examples = [
            Example(prompt=[{"role": "user", "content": p}], answer=None, metadata={}, id=str(i))
            for i, p in enumerate(args.prompt)
        ]
        try:
            prompt_tokens, prompt_mask = policy.encode_prompts(examples)
        except ValueError as e:  # a prompt longer than task.max_prompt_len
            raise errors.UserError(f"--prompt: {e}") from None
        out = policy.generate(prompt_tokens, prompt_mask, jax.random.key(cfg.seed), args.n, greedy=args.greedy)
        for i, text in enumerate(policy.decode(out["tokens"], out["lengths"])):
            print(f"[prompt {i // args.n} sample {i % args.n}] {text}")
    elif args.command == "export":
        models.save_pretrained(policy.model(policy.params), args.out_dir, tokenizer=policy.tokenizer)
        print(f"wrote {args.out_dir} (step {step} of {cfg.resolved_run_dir})")
    return 0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command is None:
        args = _parser().parse_args(["train", *argv])
    try:
        return _run_command(args)
    except config_lib.ConfigError as e:
        print(f"jaxrl-llm: config error: {_one_line(e)}", file=sys.stderr)
        return 2
    except INPUT_ERRORS as e:
        print(f"jaxrl-llm {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxrl-llm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
