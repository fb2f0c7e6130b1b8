"""Code rewards: judge a completion by HumanEval-style tests in the sandbox.

The completion runs in one sandboxed process and the tests in another (``sandbox.run_tests``):
the reward is 1 only when the tests' ``check(candidate)`` ran to its end, seen by the judging
process, so a completion cannot score by exiting early, printing, patching the assertion
machinery, reading the tests, or returning an object that equals everything.
"""

import re

from jaxrl_llm.rewards import sandbox
from jaxrl_llm.types import Example

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(completion: str) -> str:
    """The last fenced code block (```python ... ```) if there is one, else the completion."""
    blocks = _FENCE.findall(completion)
    return blocks[-1] if blocks else completion


def humaneval_programs(completion: str, example: Example) -> tuple[str, str]:
    """The candidate's program and the tests' program of a HumanEval-style example.

    Program: the completion continues the prompt (function header + docstring) as in the
    HumanEval paper (Chen et al., 2021, "Evaluating Large Language Models Trained on Code",
    https://arxiv.org/abs/2107.03374, https://github.com/openai/human-eval). A chat-style
    answer that redefines the function in a fenced block is also accepted: the prompt's body
    is closed with ``pass`` (keeping its imports) and the new definition follows.

    Tests: the prompt (for its imports and helpers, e.g. HumanEval/32's ``poly``; its stub of
    ``entry_point`` is never called) followed by the problem's ``test``, which defines
    ``check(candidate)``. The completion never sees this text.
    """
    meta = example.metadata
    for key in ("test", "entry_point", "prompt"):
        if key not in meta:
            raise ValueError(f"humaneval_programs: example {example.id!r} metadata lacks {key!r}")
    code = extract_code(completion)
    if re.search(rf"^\s*def\s+{re.escape(meta['entry_point'])}\s*\(", code, re.MULTILINE):
        program = meta["prompt"] + "    pass\n\n" + code
    else:
        program = meta["prompt"] + code
    return program + "\n", f"{meta['prompt']}\n\n{meta['test']}\n"


def humaneval_tests(completion: str, example: Example) -> float:
    """1.0 when the problem's ``check(candidate)`` runs to its end on the completion's
    ``entry_point`` in ``sandbox.run_tests`` (default ``SandboxLimits``, or
    ``example.metadata["sandbox_limits"]``), else 0.0 (a failed test, a crash, an early exit,
    a timeout or any limit hit)."""
    limits = example.metadata.get("sandbox_limits", sandbox.SandboxLimits())
    program, tests = humaneval_programs(completion, example)
    return float(sandbox.run_tests(program, tests, example.metadata["entry_point"], limits).passed)
