"""``jaxrl-llm train | eval | sample | export | plot``.

  jaxrl-llm train [EXPERIMENT] [--set a.b=value ...]   run (or resume) an experiment; with no
                                                       EXPERIMENT, the embedded default run
  jaxrl-llm eval RUN_DIR [--set eval.num_examples=N]   held-out accuracy of a run's latest checkpoint
  jaxrl-llm sample RUN_DIR --prompt TEXT [--n N]       completions from a run's latest checkpoint
  jaxrl-llm export RUN_DIR OUT_DIR                     the policy as a Hugging Face checkpoint
  jaxrl-llm plot RUN_DIR [RUN_DIR ...] [--out F.png]   curves comparing runs

EXPERIMENT is a file in ``experiments/`` (by stem, e.g. ``smollm2_grpo``) or a path to a ``.py``
file with ``get_config()``. Config errors (unknown keys, bad values) are reported before anything
runs, with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Sequence

from jaxrl_llm import config as config_lib


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxrl-llm", description="JAX-native policy optimization for LLMs")
    sub = p.add_subparsers(dest="command")

    def with_overrides(sp):
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.steps=20 (repeatable)")

    t = sub.add_parser("train", help="run or resume an experiment")
    t.add_argument("experiment", nargs="?", default=None, help="experiment name or .py path (default: the embedded default)")
    with_overrides(t)
    t.add_argument("--run-dir", default=None, help="run directory (default: runs/<name>)")
    t.add_argument("--stop-after", type=int, default=None, help="checkpoint and stop at this global step")
    t.add_argument("--distributed", action="store_true", help="initialize jax.distributed from the environment")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint on the held-out split")
    e.add_argument("run_dir")
    with_overrides(e)

    s = sub.add_parser("sample", help="sample completions from a run's latest checkpoint")
    s.add_argument("run_dir")
    s.add_argument("--prompt", action="append", required=True, help="user message (repeatable)")
    s.add_argument("--n", type=int, default=1, help="samples per prompt")
    s.add_argument("--greedy", action="store_true")
    with_overrides(s)

    x = sub.add_parser("export", help="write a run's latest policy as a Hugging Face checkpoint")
    x.add_argument("run_dir")
    x.add_argument("out_dir")

    pl = sub.add_parser("plot", help="PNG curves comparing runs")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument("--out", default=None, help="output PNG (default: <first run>/compare.png)")
    pl.add_argument("--keys", nargs="*", default=None, help="metric keys to draw")
    return p


def _run_config(run_dir: str, overrides: Sequence[str]) -> config_lib.Config:
    path = pathlib.Path(run_dir) / "config.json"
    if not path.exists():
        raise config_lib.ConfigError(f"{run_dir} is not a run directory (no config.json)")
    cfg = config_lib.from_dict(json.loads(path.read_text()))
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
    return config_lib.apply_overrides(cfg, overrides)


def _restored_trainer(cfg: config_lib.Config):
    from jaxrl_llm import checkpoint, train

    tr = train.Trainer(cfg)
    ckpt = checkpoint.Checkpointer(tr.run_dir / "checkpoints", cfg.checkpoint.max_to_keep, async_save=False)
    restored = ckpt.restore(tr.restore_target)
    ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {tr.run_dir}/checkpoints")
    tr.load(restored[1], restored[2])
    return tr


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        args = _parser().parse_args(["train", *(argv or [])])
    try:
        if args.command == "train":
            cfg = config_lib.load_experiment(args.experiment)
            if args.run_dir:
                cfg = dataclasses.replace(cfg, run_dir=args.run_dir)
            cfg = config_lib.apply_overrides(cfg, args.overrides)
            cfg = config_lib.resolve_algo(cfg)
            if args.print_config:
                print(json.dumps(config_lib.to_dict(cfg), indent=2))
                return 0
        elif args.command in ("eval", "sample"):
            cfg = _run_config(args.run_dir, args.overrides)
        elif args.command == "export":
            cfg = _run_config(args.run_dir, [])
    except config_lib.ConfigError as e:
        print(f"jaxrl-llm: config error: {e}", file=sys.stderr)
        return 2

    if args.command == "plot":
        from jaxrl_llm import plot

        out = args.out or str(pathlib.Path(args.run_dirs[0]) / "compare.png")
        try:
            keys = plot.plot_runs(args.run_dirs, out, args.keys)
        except (FileNotFoundError, ValueError) as e:
            print(f"jaxrl-llm plot: {e}", file=sys.stderr)
            return 2
        print(f"wrote {out} ({', '.join(keys)})")
        return 0

    from jaxrl_llm import distributed, train

    if args.command == "train":
        if args.distributed:
            distributed.initialize(force=True)
        summary = train.train(cfg, stop_after=args.stop_after)
        return 130 if summary["status"] == "interrupted" else 0

    tr = _restored_trainer(cfg)
    if args.command == "eval":
        result = train.evaluate(tr)
        print(json.dumps({"step": tr.step, **result}, indent=2))
    elif args.command == "sample":
        import jax
        from jaxrl_llm.tasks import Example

        examples = [Example(prompt=[{"role": "user", "content": p}], answer=None, metadata={}, id=str(i))
                    for i, p in enumerate(args.prompt)]
        prompt_tokens, prompt_mask = tr.encode_prompts(examples)
        out = tr.generate(prompt_tokens, prompt_mask, jax.random.key(cfg.seed), args.n, greedy=args.greedy)
        for i, text in enumerate(tr.decode(out["tokens"], out["lengths"])):
            print(f"[prompt {i // args.n} sample {i % args.n}] {text}")
    elif args.command == "export":
        from jaxrl_llm import models

        models.save_pretrained(tr.model(tr.params), args.out_dir, tokenizer=tr.tokenizer)
        print(f"wrote {args.out_dir}")
    tr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
