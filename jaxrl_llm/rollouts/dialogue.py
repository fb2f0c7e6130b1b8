"""``refuel_pairs``: two continuations of a multi-turn dialogue from a shared prefix (REFUEL).

The dialogue (a scripted user on the task's integer-answer questions; no LLM plays the user): user
turn 0 is the task's prompt; after each assistant turn t the user says ``"Add k_{t+1} to your last
answer."`` with ``k`` a digit fixed by the example and the turn, so the correct answer of turn t is
``answer + k_1 + ... + k_t`` and an early mistake misleads every later turn (the future depends on
the present turn); the script is ``tasks/dialogue.py``. The reward of a dialogue truncated after
turn H' is 1 when the assistant's last answer (``<answer>n</answer>``, else its last integer) is
that turn's correct value, else 0: a single terminal score, as the REFUEL code scores a dialogue
cut at H' with its reward model.

Per prompt (REFUEL setting one, https://github.com/ZhaolinGao/REFUEL ``setting_one``):

1. Dialogue A: ``algo.num_turns`` (H) assistant turns sampled from the current policy pi_t.
2. H' ~ U{1..H}, h ~ U{0..H'-1} (0-based turns) from the step's key.
3. Dialogue B: A's history up to and including user turn h (the shared prefix s_h), then assistant
   turns h..H'-1 sampled again with a fresh key (the user answering by the same script).
4. Rewards Q(A), Q(B) of both cut at H' (``algo.horizon="future"``), or of turn h alone
   (``"immediate"``: the single-turn baseline that treats each turn as a bandit).

Rows: pair p is rows ``2p`` (A's turn h) and ``2p + 1`` (B's turn h), both with prompt s_h: only
assistant turn h's tokens are in the loss (the later turns are in the return, not the loss).
``extras["chosen"]`` marks the higher-reward row (bookkeeping: REFUEL's loss is symmetric). A pair
whose two turn-h responses are identical is dropped (zero ``loss_mask``), as the code filters them.

Token stream: turns are concatenated as token ids (the assistant's sampled tokens are kept as
sampled; user turns are ChatML text tokens), left-padded to the fixed width ``algo.max_context``
so every turn reuses one compiled sampler program; a longer history is an error naming the limit.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from jaxrl_llm.judges.rubric import answer_int
from jaxrl_llm.policy import left_pad, right_pad
from jaxrl_llm.rollouts import group
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.sampling import bucket_length
from jaxrl_llm.tasks.dialogue import follow_up, reference, user_text
from jaxrl_llm.types import Example, Rollout

HORIZONS = ("future", "immediate")


def turn_reward(text: str, example: Example, turn: int) -> float:
    ref = reference(example, turn)
    return float(ref is not None and answer_int(text) == ref)


def user_tokens(policy: Any, message: str, closed: bool) -> list[int]:
    return policy.encode_text(user_text(message, closed))


def _sample_turn(
    policy: Any, histories: list[list[int]], width: int, key: jax.Array, greedy: bool = False
) -> dict[str, np.ndarray]:
    longest = max(len(h) for h in histories)
    if longest > width:
        raise ValueError(f"refuel_pairs: a dialogue history has {longest} tokens > algo.max_context={width}; raise it")
    tokens, mask = left_pad(histories, width, policy.pad_id)
    return policy.generate(tokens, mask, key, 1, greedy=greedy)


def play(
    policy: Any,
    examples: list[Example],
    num_turns: int,
    width: int,
    key: jax.Array,
    greedy: bool = False,
    start: np.ndarray | None = None,
    copy_from: list[list[list[int]]] | None = None,
) -> tuple[list[list[list[int]]], list[list[list[int]]]]:
    """Assistant turns ``0..num_turns-1`` of one dialogue per example, the user answering by the
    script. Returns ``(turns, prefixes)``: ``turns[t][i]`` the tokens of row i's turn t,
    ``prefixes[t][i]`` its history before that turn. With ``copy_from``, rows before their
    ``start`` turn replay ``copy_from``'s turns instead of sampling them (the shared prefix)."""
    eos = set(policy.eos_ids)
    hist = [policy.render(e) for e in examples]
    turns, prefixes = [], []
    for t in range(num_turns):
        prefixes.append([list(x) for x in hist])
        out = _sample_turn(policy, hist, width, jax.random.fold_in(key, t), greedy)
        toks = [out["tokens"][i, : int(out["lengths"][i])].tolist() for i in range(len(examples))]
        if copy_from is not None:
            toks = [copy_from[t][i] if t < start[i] else toks[i] for i in range(len(examples))]
        turns.append(toks)
        for i, e in enumerate(examples):
            hist[i] += toks[i]
            closed = bool(toks[i]) and toks[i][-1] in eos
            hist[i] += user_tokens(policy, follow_up(e, t + 1), closed)
    return turns, prefixes


def turn_correct(policy: Any, turns: list[list[list[int]]], examples: list[Example]) -> np.ndarray:
    """``[N, T]``: 1 where row i's answer at turn t is that turn's running total."""
    text = lambda toks: policy.tokenizer.decode(toks, skip_special_tokens=True)
    return np.asarray(
        [[turn_reward(text(row[i]), e, t) for t, row in enumerate(turns)] for i, e in enumerate(examples)]
    )


def evaluate(
    policy: Any, examples: list[Example], num_turns: int, width: int, key: jax.Array, batch_size: int = 64
) -> dict[str, float]:
    """Greedy held-out dialogues: ``dialogue/success_turn{t}`` (turn t's answer right) and
    ``dialogue/all_turns`` (every turn right), over ``examples`` in batches of ``batch_size``."""
    width = bucket_length(width)
    ok = []
    for lo in range(0, len(examples), batch_size):
        batch = examples[lo : lo + batch_size]
        ok.append(turn_correct(policy, play(policy, batch, num_turns, width, key, greedy=True)[0], batch))
    ok = np.concatenate(ok)
    return {
        **{f"dialogue/success_turn{t}": float(ok[:, t].mean()) for t in range(num_turns)},
        "dialogue/all_turns": float(ok.all(axis=1).mean()),
    }


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """``train.prompts_per_step`` pairs of turn-h continuations (module docstring)."""
    cfg, p = ctx.algo_cfg, ctx.policy
    P, H = ctx.cfg.train.prompts_per_step, cfg.num_turns
    width = bucket_length(cfg.max_context)
    examples, ids = group.draw_from_stream(ctx, P, jax.random.fold_in(key, 1), state)
    t0 = time.perf_counter()
    rng = np.random.default_rng(np.asarray(jax.random.key_data(jax.random.fold_in(key, 2))).astype(np.uint64))
    h_max = rng.integers(1, H + 1, size=P)  # H' (turns kept)
    h = np.asarray([rng.integers(0, n) for n in h_max])  # the branching turn, 0-based

    turns_a, prefixes_a = play(p, examples, H, width, jax.random.fold_in(key, 3))
    turns_b, _ = play(p, examples, H, width, jax.random.fold_in(key, 4), start=h, copy_from=turns_a)
    sample_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    text = lambda toks: p.tokenizer.decode(toks, skip_special_tokens=True)
    at = h_max - 1 if cfg.horizon == "future" else h  # the turn whose answer is scored
    correct_a = turn_correct(p, turns_a, examples)  # [P, H]: dialogue A's every turn
    q_a = correct_a[np.arange(P), at].astype(np.float32)
    q_b = np.asarray([turn_reward(text(turns_b[at[i]][i]), examples[i], at[i]) for i in range(P)], np.float32)
    T = ctx.cfg.sampling.max_new_tokens
    rows = [turns_a[h[i]][i] if s == 0 else turns_b[h[i]][i] for i in range(P) for s in (0, 1)]
    tokens, mask = right_pad(rows, T, p.pad_id)
    prompt_tokens, prompt_mask = left_pad([prefixes_a[h[i]][i] for i in range(P) for _ in (0, 1)], width, p.pad_id)
    rewards = np.stack([q_a, q_b], axis=1).reshape(-1)  # [2P]
    chosen = np.stack([q_a >= q_b, q_a < q_b], axis=1).reshape(-1).astype(np.float32)
    identical = np.asarray([turns_a[h[i]][i] == turns_b[h[i]][i] for i in range(P)])
    loss_mask = np.where(np.repeat(identical, 2)[:, None], 0.0, mask).astype(np.float32)
    rollout = Rollout(
        prompt_tokens=prompt_tokens,
        prompt_mask=prompt_mask,
        tokens=tokens,
        mask=mask,
        loss_mask=loss_mask,
        rewards=rewards,
        group_ids=np.repeat(np.arange(P, dtype=np.int32), 2),
        prompt_ids=np.repeat(np.asarray(ids, np.int32), 2),
        lengths=mask.sum(axis=1).astype(np.int32),
        extras={"chosen": chosen},
        group_size=2,
    )
    metrics = {
        "time/sample": sample_time,
        "time/reward": time.perf_counter() - t0,
        "reward/failures": 0.0,
        "reward/mean": float(rewards.mean()),
        "completion_len/mean": float(mask.sum(axis=1).mean()),
        "refuel/identical": float(identical.mean()),
        "refuel/reward_gap": float(np.abs(q_a - q_b).mean()),
        "refuel/h_mean": float(h.mean()),
        "refuel/dialogue_success": float(correct_a[np.arange(P), h_max - 1].mean()),
        **{f"refuel/success_turn{t}": float(s) for t, s in enumerate(correct_a.mean(axis=0))},
    }
    return rollout, metrics


KIND = Kind(name="refuel_pairs", collect=collect)
