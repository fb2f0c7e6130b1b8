"""Build the suite's ``dialogue`` SFT start at a given step count and print its held-out greedy
dialogues' per-turn success (how the recipe's 150 steps were chosen; experiments/results/refuel.md).

    python experiments/results/dialogue_start_probe.py STEPS [TURNS]

The start goes to ``runs/suite/sft_starts/dialogue-<hash>/`` (the suite's cache, so a recipe step
count the suite uses is reused by its runs); then ``rollouts.dialogue.evaluate`` plays ``TURNS``
(default 3) turns greedily on the first 256 held-out questions and prints one JSON line.
"""

import dataclasses
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/
import jax  # noqa: E402
import suite as runner  # noqa: E402

from jaxrl_llm import tasks  # noqa: E402
from jaxrl_llm.config import Config, ModelConfig, SamplingConfig, TaskConfig  # noqa: E402
from jaxrl_llm.policy import Policy  # noqa: E402
from jaxrl_llm.rollouts import dialogue  # noqa: E402


def main() -> None:
    steps, turns = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3
    t = runner.TASKS["dialogue"]
    t = dataclasses.replace(t, sft=dataclasses.replace(t.sft, steps=steps))
    t0 = time.time()
    start = runner.sft_start(t, pathlib.Path("runs/suite/sft_starts"))
    print(f"start {start}: {time.time() - t0:.0f} s", flush=True)
    cfg = Config(
        model=ModelConfig(name=start),
        task=TaskConfig(name=t.task, kwargs=dict(t.kwargs), max_prompt_len=t.max_prompt_len),
        sampling=SamplingConfig(max_new_tokens=t.max_new_tokens),
    )
    task = tasks.make_task(t.task, **dict(t.kwargs))
    held_out = [task.eval_example(i) for i in range(256)]
    result = dialogue.evaluate(Policy.create(cfg), held_out, turns, 256, jax.random.key(0))
    print(json.dumps({"steps": steps, "turns": turns, **result}), flush=True)


if __name__ == "__main__":
    main()
