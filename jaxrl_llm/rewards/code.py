"""Code rewards: run a completion against HumanEval-style tests in the sandbox."""

import re

from jaxrl_llm.rewards import sandbox
from jaxrl_llm.tasks.example import Example

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(completion: str) -> str:
    """The last fenced code block (```python ... ```) if there is one, else the completion."""
    blocks = _FENCE.findall(completion)
    return blocks[-1] if blocks else completion


def humaneval_program(completion: str, example: Example) -> str:
    """The program that checks a HumanEval completion.

    The completion continues the prompt (function header + docstring) as in the HumanEval
    paper (Chen et al., 2021). A chat-style answer that redefines the function in a fenced
    block is also accepted: the prompt's body is closed with ``pass`` (keeping its imports)
    and the new definition follows. Then the problem's ``check(candidate)`` is called on
    ``entry_point``.
    """
    meta = example.metadata
    for key in ("test", "entry_point", "prompt"):
        if key not in meta:
            raise ValueError(f"humaneval_program: example {example.id!r} metadata lacks {key!r}")
    code = extract_code(completion)
    if re.search(rf"^\s*def\s+{re.escape(meta['entry_point'])}\s*\(", code, re.MULTILINE):
        body = meta["prompt"] + "    pass\n\n" + code
    else:
        body = meta["prompt"] + code
    return f"{body}\n\n{meta['test']}\n\ncheck({meta['entry_point']})\n"


def humaneval_tests(completion: str, example: Example) -> float:
    """1.0 when the completion passes the problem's tests in ``sandbox.run_python`` (default
    ``SandboxLimits``, or ``example.metadata["sandbox_limits"]``), else 0.0 (failure, crash,
    timeout or any limit hit)."""
    limits = example.metadata.get("sandbox_limits", sandbox.SandboxLimits())
    return float(sandbox.run_python(humaneval_program(completion, example), limits).passed)
