"""Answer extraction from completions: last ``\\boxed{}``, ``<answer>...</answer>``, last number."""

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# Thousands separators only between digit groups of three, so "1,2" (a list) stays two numbers.
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched, so nested
    LaTeX like ``\\boxed{\\frac{1}{2}}`` comes out whole; ``\\boxed 5`` (no braces) gives ``5``.
    None when there is none or its braces never close."""
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    cmd = "\\boxed" if text.startswith("\\boxed", start) else "\\fbox"
    rest = text[start + len(cmd) :]
    if rest.startswith(" "):
        token = re.split(r"[\s$]", rest.lstrip(), maxsplit=1)[0]
        return token or None
    if not rest.startswith("{"):
        return None
    depth = 0
    for j, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:j].strip()
    return None


def answer_tag(text: str) -> str | None:
    """Stripped content of the last ``<answer>...</answer>``, or None."""
    matches = _ANSWER_TAG.findall(text)
    return matches[-1].strip() if matches else None


def last_number(text: str) -> str | None:
    """The last number in ``text`` with thousands separators removed (``"1,234.5"`` ->
    ``"1234.5"``; signs, decimals and ``a/b`` fractions kept), or None."""
    matches = _NUMBER.findall(text)
    return matches[-1].replace(",", "") if matches else None


def final_answer(text: str) -> str | None:
    """The answer a completion commits to: ``<answer>`` tag first, else the last ``\\boxed{}``."""
    tagged = answer_tag(text)
    return tagged if tagged is not None else last_boxed(text)
