"""Math answer equivalence with math-verify (Hugging Face): boxed answers, fractions, LaTeX."""

import threading

import math_verify

from jaxrl_llm.rewards import extract
from jaxrl_llm.types import Example


def _in_main_thread() -> bool:
    # math-verify enforces its time limits with SIGALRM, which only the main thread may set.
    return threading.current_thread() is threading.main_thread()


def parse_gold(answer: str, timeout_s: int = 5) -> list:
    """Parse a reference answer. Bare references (``"72"``, ``"\\frac{1}{2}"``) are wrapped in
    ``$...$`` because math-verify reads gold answers as LaTeX inside a math environment."""
    text = answer if ("$" in answer or "\\boxed" in answer) else f"${answer}$"
    return math_verify.parse(text, parsing_timeout=timeout_s if _in_main_thread() else None)


def is_equivalent(completion: str, answer: str, timeout_s: int = 5) -> bool:
    """True when the final answer of ``completion`` equals ``answer``. The final answer is the
    last ``\\boxed{}`` (math-verify alone would take the first of several, rewarding an answer
    the model later corrected), else what math-verify extracts ("final answer is ..."
    anchors, then a bare expression). Equality is math-verify's: ``answer``
    symbolically or numerically (6 decimals). ``timeout_s`` bounds parsing and verification
    each (whole seconds, SIGALRM: honoured in the main thread; elsewhere the caller's
    ``RewardRunner`` timeout applies)."""
    limit = timeout_s if _in_main_thread() else None
    gold = parse_gold(answer, timeout_s)
    boxed = extract.last_boxed(completion)
    pred = math_verify.parse(completion if boxed is None else f"$\\boxed{{{boxed}}}$", parsing_timeout=limit)
    if not gold or not pred:
        return False
    return bool(math_verify.verify(gold, pred, timeout_seconds=limit))


def math_equivalence(completion: str, example: Example, timeout_s: int = 5) -> float:
    """Reward 1.0 when ``completion``'s final answer equals ``example.answer`` under
    math-verify, else 0.0 (``is_equivalent``). The GSM8K/MATH default reward.

    Reference: Kydlíček et al., Math-Verify (github.com/huggingface/Math-Verify), as used by
    open-r1's accuracy reward.
    """
    if example.answer is None:
        raise ValueError(f"math_equivalence: example {example.id!r} has no reference answer")
    return float(is_equivalent(completion, example.answer, timeout_s))
