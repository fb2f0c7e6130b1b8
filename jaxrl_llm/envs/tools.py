"""Tools the policy calls inside its turn: stop on a closing tag, run, append the result, resume.

A tool call is text the policy writes between ``<name>`` and ``</name>`` (``<python>print(2+3)
</python>``). The ``episode`` rollout kind stops the policy's turn at the first token that
completes a registered closing tag (the tokens sampled after it are dropped: the policy's
distribution over the kept tokens is unchanged), runs the tool on the text between the last
opening tag and the closing tag, and appends ``<output>\n{result}\n</output>\n`` as environment
tokens (out of the loss) before the policy resumes. Results are capped in tokens by the rollout
(``env.max_tool_output_tokens``).

``Tool.run`` never raises: an exception, a timeout, an output flood or a call without its opening
tag becomes the result text (``error: ...``), i.e. an observation the policy reads, never a
crash of the rollout. ``search`` is BM25 over a bundled corpus (``envs.search``). ``python`` runs the code in the sandbox of ``jaxrl_llm.rewards.sandbox``
(its own process, wall-clock and CPU limits, output cap, no network); in-process tools
(``FunctionTool``) must not block: put anything that can hang behind the sandbox.
Tool-integrated reasoning of this shape: Dong et al. 2025, "Agentic Reinforced Policy
Optimization" (ARPO), https://arxiv.org/abs/2507.19849.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jaxrl_llm.envs import search
from jaxrl_llm.rewards import sandbox

OUTPUT_OPEN = "<output>\n"
OUTPUT_CLOSE = "\n</output>\n"


def _cap(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n... [{len(text) - max_chars} more characters cut]"


@dataclasses.dataclass(frozen=True)
class FunctionTool:
    """An in-process tool: ``fn(call text) -> result text``; exceptions become ``error: ...``."""

    name: str
    fn: Callable[[str], str]
    max_chars: int = 2000

    @property
    def close_tag(self) -> str:
        return f"</{self.name}>"

    def run(self, text: str) -> str:
        try:
            return _cap(str(self.fn(text)), self.max_chars)
        except Exception as e:  # noqa: BLE001 -- any failure of a tool is an observation
            return _cap(f"error: {type(e).__name__}: {e}", self.max_chars)


@dataclasses.dataclass(frozen=True)
class PythonTool:
    """``python``: runs the call as a program in the sandbox; the result is its stdout (and the
    tail of stderr when it failed), or ``error: timed out after {timeout_s}s``."""

    name: str = "python"
    timeout_s: float = 5.0
    cpu_s: int = 5
    max_chars: int = 2000

    @property
    def close_tag(self) -> str:
        return f"</{self.name}>"

    def run(self, code: str) -> str:
        limits = sandbox.SandboxLimits(
            timeout_s=self.timeout_s, cpu_s=self.cpu_s, output_bytes=max(4 * self.max_chars, 4096)
        )
        try:
            res = sandbox.run_python(code, limits)
        except Exception as e:  # noqa: BLE001 -- a sandbox that cannot start is an observation too
            return f"error: the sandbox failed: {type(e).__name__}: {e}"
        if res.status == "timeout":
            return f"error: timed out after {self.timeout_s}s"
        if res.status in ("cpu_limit", "killed"):
            return _cap(res.stdout, self.max_chars) + f"\nerror: killed ({res.status})"
        if res.status == "output_limit" or len(res.stdout) > self.max_chars:
            return _cap(res.stdout, self.max_chars) + "\nerror: output limit reached"
        if res.status != "ok":
            return _cap(res.stdout + res.stderr[-self.max_chars // 2 :], self.max_chars)
        return res.stdout


TOOLS: dict[str, Callable[[], object]] = {"python": PythonTool, "search": search.SearchTool}


def make(names: tuple[str, ...]) -> dict[str, object]:
    """The tools named (``env.tools``) by closing tag; an unknown name raises, listing the known."""
    out = {}
    for name in names:
        if name not in TOOLS:
            raise ValueError(f"env.tools: unknown tool {name!r}; known: {sorted(TOOLS)}")
        tool = TOOLS[name]()
        out[tool.close_tag] = tool
    return out


def call_text(tool, text: str) -> str | None:
    """The argument of the call that ``text`` ends with (between the last ``<name>`` and the
    closing tag), or ``None`` when the opening tag is missing (a malformed call)."""
    body = text[: text.rindex(tool.close_tag)]
    start = body.rfind(f"<{tool.name}>")
    return None if start < 0 else body[start + len(tool.name) + 2 :]


def run_call(tool, text: str) -> str:
    """The tool's result for the call ``text`` ends with; a malformed call is an error result."""
    arg = call_text(tool, text)
    if arg is None:
        return f"error: {tool.close_tag} without <{tool.name}> before it"
    return tool.run(arg)
