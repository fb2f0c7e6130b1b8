"""The ``combination_lock`` GUI stand-in (ARPO's tiny reproduction) and its SFT demonstrations:
the screen, the buttons and their parsing, the end of an episode (success, wrong code, format
error), the solution-length range, named config errors, and demonstrations whose prompts are, token
for token, the contexts the ``episode`` rollout kind builds."""

import pytest

from jaxrl_llm import envs, tasks
from jaxrl_llm.envs import combination_lock
from jaxrl_llm.envs.combination_lock import CombinationLock, LockConfigError, parse_button
from jaxrl_llm.models.tokenizer import synthetic_tokenizer
from jaxrl_llm.rollouts.episode import EVAL_SEED_BASE, ChatPieces
from jaxrl_llm.tasks import lock_demos


def set_lock(env, digits, code, sel=0):
    env.digits, env.code, env.sel = list(digits), list(code), sel


def test_screen_buttons_and_feedback():
    env = CombinationLock()
    env.reset(0)
    set_lock(env, [1, 0, 2], [1, 3, 3])
    assert env.observation() == "A1* B0 C2 sel:A"
    assert env.step("n").observation == "A1* B0 C2 sel:B"
    assert env.step("click(up)").observation == "A1* B1 C2 sel:B"
    assert env.step(" U\n").observation == "A1* B2 C2 sel:B"
    step = env.step("u")
    assert step.observation == "A1* B3* C2 sel:B" and not step.done and step.reward == 0.0
    assert env.anchor == ((1, 3, 2), 1)
    env.step("u")  # 3 -> 0: the dial wraps
    assert env.digits[1] == 0
    env.step("n"), env.step("n")
    assert env.sel == 0  # the selection wraps
    count = CombinationLock(feedback="count")
    count.reset(0)
    set_lock(count, [1, 0, 2], [1, 3, 2])
    assert count.observation() == "A1 B0 C2 sel:A ok:2"
    none = CombinationLock(feedback="none")
    none.reset(0)
    set_lock(none, [1, 0, 2], [1, 3, 2])
    assert none.observation() == "A1 B0 C2 sel:A"
    assert "*" in CombinationLock().instructions and "*" not in none.instructions


def test_parse_button():
    assert [parse_button(t) for t in ("u", " n", "O", "up", "click(open)", "click( n )", "click(Next)")] == [
        "u",
        "n",
        "o",
        "u",
        "o",
        "n",
        "n",
    ]
    assert [parse_button(t) for t in ("", "  ", "x", "1", "click(left)", "<|im_end|>")] == [None] * 6


def test_open_and_format_error_end_the_episode():
    env = CombinationLock()
    env.reset(3)
    set_lock(env, [1, 3, 2], [1, 3, 2], sel=2)
    step = env.step("o")
    assert step.done and step.reward == 1.0 and step.info["success"] is True
    env.reset(3)
    set_lock(env, [1, 3, 0], [1, 3, 2])
    step = env.step("o")
    assert step.done and step.reward == 0.0 and step.info["success"] is False and not step.info.get("invalid")
    env.reset(3)
    step = env.step("hello")
    assert step.done and step.reward == 0.0 and step.info["invalid"] is True and step.info["success"] is False
    assert "no button" in step.info["reason"]
    cont = CombinationLock(wrong_open="continue")
    cont.reset(3)
    set_lock(cont, [1, 3, 0], [1, 3, 2])
    step = cont.step("o")
    assert not step.done and step.observation.startswith("wrong code; A1* B3* C0 sel:A")


@pytest.mark.parametrize("kwargs", [{}, {"num_dials": 4, "num_digits": 3, "min_solution": 8, "max_solution": 10}])
def test_every_lock_is_solved_by_its_shortest_solution_in_range(kwargs):
    lengths = set()
    for seed in range(300):
        env = CombinationLock(**kwargs)
        env.reset(seed)
        n = env.solution_length()
        assert env.min_solution <= n <= env.max_solution
        lengths.add(n)
        for k in range(n):
            step = env.step(env.expert_action())
            assert step.done == (k == n - 1)
        assert step.reward == 1.0 and step.info["success"]
    assert lengths == set(range(env.min_solution, env.max_solution + 1))
    a, b = CombinationLock(**kwargs), CombinationLock(**kwargs)
    assert a.reset(7) == b.reset(7) and a.code == b.code  # the seed is the task
    assert [CombinationLock().reset(s) for s in range(20)] != [CombinationLock().reset(0)] * 20


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"num_dials": 0}, "num_dials"),
        ({"num_dials": 27}, "num_dials"),
        ({"num_digits": 1}, "num_digits"),
        ({"num_digits": 11}, "num_digits"),
        ({"min_solution": 8, "max_solution": 6}, "min_solution"),
        ({"num_dials": 2, "num_digits": 2, "min_solution": 6, "max_solution": 9}, "min_solution=6 > 4"),
        ({"feedback": "full"}, "feedback"),
        ({"wrong_open": "retry"}, "wrong_open"),
    ],
)
def test_bad_config_values_are_named(kwargs, field):
    with pytest.raises(LockConfigError, match=field):
        CombinationLock(**kwargs)
    with pytest.raises(ValueError, match=field):
        envs.make("combination_lock", **kwargs)
    with pytest.raises(ValueError, match="env.kwargs for 'combination_lock'"):
        envs.make("combination_lock", dials=3)


def test_demonstrations_are_the_episode_contexts():
    """A demonstration's rendered prompt equals the ids the ``episode`` kind builds for the same
    conversation (first prompt, then the policy's button + stop token and the next screen)."""
    tok = synthetic_tokenizer()
    pieces = ChatPieces(tok)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    examples = lock_demos.demonstration(11)
    env = CombinationLock()
    ids = pieces.first(env.instructions, env.reset(11))
    for k, ex in enumerate(examples):
        text = tasks.render_prompt(ex, tok)
        assert tok(text, add_special_tokens=False)["input_ids"] == ids, k
        assert ex.answer == env.expert_action()
        step = env.step(ex.answer)
        if step.done:
            break
        action = tok(ex.answer, add_special_tokens=False)["input_ids"] + [eos]
        ids = ids + action + pieces.after_action(step.observation, action[-1])
    assert step.info["success"] and k == len(examples) - 1


def test_demo_task_splits_and_reward():
    task = tasks.make_task("lock_demos", num_locks=3, num_eval_locks=2)
    train_ids = {task.train_example(i).id.split("/")[1] for i in range(task.num_train)}
    eval_ids = {task.eval_example(i).id.split("/")[1] for i in range(task.num_eval)}
    assert train_ids == {str(lock_demos.DEMO_SEED_BASE + j) for j in range(3)}
    assert eval_ids == {str(EVAL_SEED_BASE + j) for j in range(2)}
    assert lock_demos.EVAL_SEED_BASE == EVAL_SEED_BASE
    ex = task.train_example(0)
    assert lock_demos.next_button(ex.answer, ex) == 1.0 and lock_demos.next_button("x", ex) == 0.0
    with pytest.raises(LockConfigError, match="num_locks"):
        tasks.make_task("lock_demos", num_locks=0)
    with pytest.raises(LockConfigError, match="feedback"):
        tasks.make_task("lock_demos", feedback="nope")
    assert combination_lock.BUTTONS == {"u": "up", "n": "next", "o": "open"}
