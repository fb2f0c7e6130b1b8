"""Held-out multi-turn accuracy of REFUEL runs: greedy dialogues with the scripted user, per turn.

    python experiments/results/refuel_measure.py ARM=RUN_DIR[,RUN_DIR...] [ARM=...] [--turns 3] [--examples 256]

For each run (one per seed) its newest checkpoint plays ``--turns``-turn dialogues greedily on the
first ``--examples`` held-out questions of its task (``rollouts.dialogue.evaluate``); the SFT start
the runs share (their ``model.name``) is measured once as "start". Prints, per arm, the mean +-
sample std over its runs of each turn's success and of "all turns right", and Welch's p between the
first two arms. The held-out measure of experiments/results/refuel.md: the suite table
(experiments/suite.py) holds only turn 0, a single-turn question.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/
import jax  # noqa: E402
import suite  # noqa: E402
from results.window_means import welch_p  # noqa: E402

from jaxrl_llm import config as config_lib  # noqa: E402
from jaxrl_llm import evaluate, tasks  # noqa: E402
from jaxrl_llm.policy import Policy  # noqa: E402
from jaxrl_llm.rollouts import dialogue  # noqa: E402


def measure(cfg, run_dir: pathlib.Path | None, turns: int, examples: int) -> dict[str, float]:
    """``dialogue.evaluate`` of ``run_dir``'s newest checkpoint (None: ``cfg``'s model as loaded)."""
    policy = Policy.create(cfg) if run_dir is None else evaluate.load_policy(cfg, run_dir)[0]
    task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
    held_out = [task.eval_example(i) for i in range(min(examples, task.num_eval))]
    return dialogue.evaluate(policy, held_out, turns, cfg.algo.max_context, jax.random.key(0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("arms", nargs="+", metavar="ARM=RUN_DIR[,RUN_DIR...]")
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--examples", type=int, default=256)
    p.add_argument("--json", default=None, help="write every run's figures here")
    args = p.parse_args(argv)
    arms = {a.split("=", 1)[0]: [pathlib.Path(d) for d in a.split("=", 1)[1].split(",")] for a in args.arms}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for arm, dirs in arms.items():
        for d in dirs:
            cfg = config_lib.from_dict(json.loads((d / "config.json").read_text()))
            cfg = dataclasses.replace(cfg, algo=dataclasses.replace(cfg.algo, num_turns=args.turns))
            if "start" not in results:
                results["start"] = {cfg.model.name: measure(cfg, None, args.turns, args.examples)}
            results.setdefault(arm, {})[str(d)] = measure(cfg, d, args.turns, args.examples)
            print(arm, d, json.dumps(results[arm][str(d)]), flush=True)
    keys = list(next(iter(results["start"].values())))
    print("\n| arm | runs | " + " | ".join(keys) + " |\n|---|---|" + "---|" * len(keys))
    for arm, runs in results.items():
        cells = []
        for k in keys:
            st = suite._stats([r[k] for r in runs.values()])  # the suite table's mean / sample std
            cells.append(
                f"{100 * st['mean']:.1f} ± {100 * st['std']:.1f}" if st["n"] > 1 else f"{100 * st['mean']:.1f}"
            )
        print(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    names = [a for a in results if a != "start"]
    if len(names) >= 2:
        for k in keys:
            a, b = ([r[k] for r in results[n].values()] for n in names[:2])
            print(f"{k}: {names[0]} vs {names[1]}: Welch p = {welch_p(a, b):.3f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
