"""``lock_demos``: next-button demonstrations of the ``combination_lock`` environment, the SFT warm
start of a small agent before ARPO / GRPO on episodes (``experiments/arpo_gui.py``).

Each example is one step of the shortest solution (``CombinationLock.expert_action``) of a lock:
its prompt is the conversation so far as chat messages, exactly as the ``episode`` rollout kind
writes it (the instructions and the first screen in the first user message, then each earlier
button as an assistant message and each screen after it as a user message), and its answer is the
next button key (``sft.template = "{answer}"``). Training locks are seeds ``DEMO_SEED_BASE + j``,
``j < num_locks``; held-out examples come from locks ``rollouts.episode.EVAL_SEED_BASE + j`` (the
locks the held-out episodes are played on). Both ranges are disjoint from the RL training locks
(seeds below ``num_tasks``, far below ``DEMO_SEED_BASE``). Reward: the completion names the
expert's button (``next_button``). The remaining keyword arguments build the environment.
"""

from __future__ import annotations

from typing import Any

from jaxrl_llm.envs import combination_lock
from jaxrl_llm.tasks.example import Example
from jaxrl_llm.tasks.task import Task

DEMO_SEED_BASE = 1 << 29
EVAL_SEED_BASE = 1 << 30  # rollouts.episode.EVAL_SEED_BASE (tasks do not import rollouts)


def demonstration(seed: int, **env_kwargs: Any) -> list[Example]:
    """The examples of lock ``seed``: one per step of its shortest solution."""
    env = combination_lock.CombinationLock(**env_kwargs)
    screen = env.reset(seed)
    messages = [{"role": "user", "content": f"{env.instructions}\n\n{screen}"}]
    out = []
    while True:
        button = env.expert_action()
        out.append(Example(prompt=list(messages), answer=button, metadata={}, id=f"lock/{seed}/{len(out)}"))
        step = env.step(button)
        if step.done:
            return out
        messages += [{"role": "assistant", "content": button}, {"role": "user", "content": step.observation}]


def next_button(completion: str, example: Example) -> float:
    """1 when the completion names the example's button (``combination_lock.parse_button``), else 0."""
    return float(combination_lock.parse_button(completion) == example.answer)


def lock_demos_task(num_locks: int = 256, num_eval_locks: int = 16, **env_kwargs: Any) -> Task:
    """The task of the module docstring (``num_locks`` training locks, ``num_eval_locks`` held out)."""
    if num_locks < 1 or num_eval_locks < 0:
        raise combination_lock.LockConfigError(
            f"lock_demos needs num_locks >= 1 and num_eval_locks >= 0, got {num_locks}, {num_eval_locks}"
        )
    train = [e for j in range(num_locks) for e in demonstration(DEMO_SEED_BASE + j, **env_kwargs)]
    evals = [e for j in range(num_eval_locks) for e in demonstration(EVAL_SEED_BASE + j, **env_kwargs)]
    return Task(
        name="lock_demos",
        num_train=len(train),
        train_example=train.__getitem__,
        num_eval=len(evals),
        eval_example=evals.__getitem__,
        reward_fns=((next_button, 1.0),),
    )


BUILDERS = {"lock_demos": lock_demos_task}
