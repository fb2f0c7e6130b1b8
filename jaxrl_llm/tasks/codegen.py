"""``suite:codegen``: a generated family of tiny Python functions, checked by tests in the sandbox.

Each problem is a function ``f(x)`` given by three input/output examples in its docstring
(programming by example, as in the HumanEval prompt layout of Chen et al., 2021, "Evaluating
Large Language Models Trained on Code", https://arxiv.org/abs/2107.03374,
https://github.com/openai/human-eval). The model continues the function body:

    def f(x):
        \"\"\"f(0) == 3, f(1) == 5, f(2) == 7\"\"\"
        return 2 * x + 3

Families: ``linear`` (``a * x + b``, a in [-9, 9] without 0, b in [-20, 20]) and ``square``
(``x * x + b``). Held-out problems are never training problems: all 779 problems are enumerated,
permuted with ``split_seed``, the first ``num_eval`` held out and the rest trained on. The reward
is ``rewards.code.humaneval_tests``: the problem's ``check(candidate)`` asserts ``f`` on seven
inputs (the three shown and four unseen ones) and runs in ``rewards.sandbox``.
"""

import dataclasses
import functools

import numpy as np

from jaxrl_llm.rewards import code as code_rewards
from jaxrl_llm.tasks.example import Example, TaskDataError
from jaxrl_llm.tasks.task import Task

SHOWN = (0, 1, 2)
CHECKED = (0, 1, 2, 3, 5, -1, -4)


@functools.lru_cache(maxsize=1)
def problems() -> tuple[tuple[str, int, int], ...]:
    """Every problem as ``(family, a, b)`` in a fixed order (``a`` is 1 for ``square``)."""
    linear = [("linear", a, b) for a in range(-9, 10) if a for b in range(-20, 21)]
    square = [("square", 1, b) for b in range(-20, 21)]
    return tuple(linear + square)


def body(family: str, a: int, b: int) -> str:
    """The reference function body (one ``return`` line, 4-space indent)."""
    sign = "+" if b >= 0 else "-"
    if family == "square":
        return f"    return x * x {sign} {abs(b)}\n"
    return f"    return {a} * x {sign} {abs(b)}\n"


def evaluate(family: str, a: int, b: int, x: int) -> int:
    return x * x + b if family == "square" else a * x + b


def example_of(problem: tuple[str, int, int], pid: int, split: str, demonstrations: bool) -> Example:
    """The ``Example`` of one problem: the prompt is the function header and docstring, metadata
    holds HumanEval's fields (``prompt``, ``test``, ``entry_point``, ``canonical_solution``)."""
    family, a, b = problem
    shown = ", ".join(f"f({x}) == {evaluate(family, a, b, x)}" for x in SHOWN)
    prompt = f'def f(x):\n    """{shown}"""\n'
    asserts = "".join(f"    assert candidate({x}) == {evaluate(family, a, b, x)}\n" for x in CHECKED)
    solution = body(family, a, b)
    meta = {
        "prompt": prompt,
        "test": f"def check(candidate):\n{asserts}",
        "entry_point": "f",
        "canonical_solution": solution,
        "demonstration": solution,
        "family": family,
    }
    return Example(
        prompt=prompt, answer=solution if demonstrations else None, metadata=meta, id=f"suite:codegen/{split}/{pid}"
    )


@dataclasses.dataclass(frozen=True)
class _ProblemAt:
    indices: tuple[int, ...]
    split: str
    demonstrations: bool

    def __call__(self, i: int) -> Example:
        pid = self.indices[int(i)]
        return example_of(problems()[pid], pid, self.split, self.demonstrations)


def codegen_task(num_eval: int = 128, split_seed: int = 0, demonstrations: bool = False) -> Task:
    """``suite:codegen`` (see the module docstring). ``demonstrations=True`` sets each
    ``Example.answer`` to the reference body, for the trainer's SFT warm start
    (``sft.template="{answer}"``); RL and evaluation use ``demonstrations=False``, where
    ``answer`` is None and the tests decide."""
    n = len(problems())
    if not 0 < num_eval < n:
        raise TaskDataError(f"suite:codegen: num_eval must be in (0, {n}), got {num_eval}")
    perm = np.random.default_rng(split_seed).permutation(n)
    evals, train = tuple(int(j) for j in np.sort(perm[:num_eval])), tuple(int(j) for j in np.sort(perm[num_eval:]))
    return Task(
        name="suite:codegen",
        num_train=len(train),
        train_example=_ProblemAt(train, "train", demonstrations),
        num_eval=len(evals),
        eval_example=_ProblemAt(evals, "eval", demonstrations),
        reward_fns=((code_rewards.humaneval_tests, 1.0),),
    )
