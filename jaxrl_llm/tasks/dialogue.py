"""The scripted user of the multi-turn arithmetic dialogues (REFUEL's ``refuel_pairs``,
``rollouts/dialogue.py``; ``suite:dialogue_arithmetic``'s SFT demonstrations).

User turn 0 is the task's question; after each assistant turn t the user says ``"Add k_{t+1} to
your last answer."`` with ``k`` a digit fixed by the example id and the turn, so the correct answer
of assistant turn t is ``answer + k_1 + ... + k_t``. Turns are ChatML text; the rollout and the
demonstrations build them with the same functions, so a demonstration's tokens are the rollout's
stream for the same answers.
"""

from __future__ import annotations

import zlib

from jaxrl_llm.tasks.example import Example


def increment(example: Example, turn: int) -> int:
    """k_turn in 1..9 of the user's ``Add k`` at ``turn`` >= 1 (fixed by the example id and turn)."""
    return 1 + zlib.crc32(f"{example.id}:{turn}".encode()) % 9


def reference(example: Example, turn: int) -> int | None:
    """The correct answer of assistant turn ``turn`` (0-based), or None for a non-integer task answer."""
    try:
        base = int(str(example.answer).strip())
    except (TypeError, ValueError):
        return None
    return base + sum(increment(example, t) for t in range(1, turn + 1))


def follow_up(example: Example, turn: int) -> str:
    """The scripted user's message before assistant turn ``turn`` >= 1."""
    return f"Add {increment(example, turn)} to your last answer."


def user_text(message: str, closed: bool) -> str:
    """The user's turn as ChatML text (closing the assistant's turn first if it hit the length limit)."""
    close = "" if closed else "<|im_end|>"
    return f"{close}\n<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"


def demonstration(example: Example, num_turns: int) -> str:
    """The dialogue of ``num_turns`` assistant turns answered right, as one completion text: turn
    0's answer, then for each later turn the user's follow-up and the running total. Its tokens are
    the rollout's stream for the same answers (each assistant turn closed by ``<|im_end|>``; the
    last turn's stop token is the SFT's own). The SFT warm start of ``suite:dialogue_arithmetic``."""
    answers = [reference(example, t) for t in range(num_turns)]
    if answers[0] is None:
        raise ValueError(
            f"example {example.id!r}: a dialogue demonstration needs an integer answer, got {example.answer!r}"
        )
    text = str(answers[0])
    for t in range(1, num_turns):
        text += user_text(follow_up(example, t), closed=False) + str(answers[t])
    return text
