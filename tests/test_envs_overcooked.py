"""The Overcooked adapter (``envs.overcooked_env``, optional extra ``agents``: ``overcooked-ai``),
through ``envs.make``: a seeded reset, invalid actions reported (never raised, the kitchen
unchanged), one onion soup cooked and served by macro-actions for the delivery reward, the partner
asked once per step, the horizon. Each test but the first skips without the package (importing the
adapter applies the NumPy 2 shim overcooked_ai 1.1.0 needs)."""

import pytest

from jaxrl_llm import envs
from jaxrl_llm.envs import overcooked_env

# cramped_room: onions at (0,1) and (4,1), the pot at (2,0), dishes at (1,3), serving at (3,3).
ONE_SOUP = ("pick up onion", "put onion in pot") * 3 + ("start cooking", "pick up dish", "pick up soup", "serve soup")


def test_building_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(overcooked_env, "overcooked_mdp", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxrl_llm\[agents\]'"):
        envs.make("overcooked")


def test_seeded_reset_is_deterministic():
    pytest.importorskip("overcooked_ai_py")
    env = envs.make("overcooked")
    first = env.reset(0)
    assert first.splitlines()[:3] == [
        "You: at (1,2) facing up, holding nothing.",
        "Partner: at (3,1) facing up, holding nothing.",
        "Pot (2,0): empty.",
    ]
    assert "XXPXX\nO...O\nX...X\nXDXSX" in env.instructions and "put onion in pot" in env.instructions
    env.step("pick up onion")
    assert env.reset(7) == first  # the layout's start: the seed is ignored
    copies, observations = envs.reset_group(lambda: envs.make("overcooked", random_start=True), 3, seed=4)
    assert len(set(observations)) == 1 and len({e.anchor for e in copies}) == 1
    other = envs.make("overcooked", random_start=True)
    assert len({other.reset(seed) for seed in range(8)}) > 1  # the seed draws chef 0's start


def test_invalid_actions_are_reported_and_leave_the_kitchen_unchanged():
    pytest.importorskip("overcooked_ai_py")
    asked = []
    env = envs.make("overcooked", partner=lambda text: asked.append(text) or "wait")
    first = env.reset(0)
    anchor = env.anchor
    refused = {
        "dance a jig": "no action in 'dance a jig'",
        "serve soup": "serve soup needs a soup in hand; you are holding nothing",
        "put the onion in the pot": "put onion in pot needs an onion in hand",
        "pick up soup": "pick up soup: no soup on a counter within reach",
        "start cooking": "start cooking: no pot with ingredients waiting to cook within reach",
    }
    for text, reason in refused.items():
        step = env.step(text)
        assert step.info["invalid"] and reason in step.info["reason"]
        assert step.reward == 0.0 and not step.done and not step.info["success"]
        assert env.anchor == anchor and env.observation() == first and step.observation.endswith(first)
    assert not asked  # a refused turn does not ask the partner
    env.step("<action>pick up the onion</action>")
    held = env.anchor
    step = env.step("pick up dish")
    assert step.info["invalid"] and "needs empty hands; you are holding an onion" in step.info["reason"]
    assert env.anchor == held and len(asked) == 1


def test_macro_actions_cook_and_serve_one_soup_for_the_delivery_reward():
    pytest.importorskip("overcooked_ai_py")
    env = envs.make("overcooked", reward_scale=1.0)
    envs.make("overcooked", layout="cramped_room_tomato")  # other cook times and soup values, set globally
    env.reset(0)
    steps = [env.step(action) for action in ONE_SOUP]
    assert not any(s.info.get("invalid") or s.info.get("blocked") for s in steps)
    assert [s.reward for s in steps] == [0.0] * 9 + [20.0]  # overcooked_ai's delivery reward
    assert [s.done for s in steps] == [False] * 9 + [True]  # target_soups=1
    assert steps[-1].info["success"] and steps[-1].info["soups"] == 1 and "Soups served: 1." in steps[-1].observation
    assert "You: at (1,1) facing left, holding an onion." in steps[0].observation
    assert "Pot (2,0): 3 onions, full, not cooking." in steps[5].observation
    assert "Pot (2,0): 3 onions, cooking, ready in 19 ticks." in steps[6].observation  # cramped_room's 20
    assert "holding a soup of 3 onions" in steps[8].observation  # waited at the pot until it was ready
    scaled = envs.make("overcooked")
    scaled.reset(0)
    assert [scaled.step(action) for action in ONE_SOUP][-1].reward == 1.0  # default scale 1/20: 1 a soup


def test_the_partner_is_asked_once_per_step_and_its_action_is_played():
    pytest.importorskip("overcooked_ai_py")
    asked = []
    plan = ["pick up onion", "put onion in pot", "serve soup"]
    env = envs.make("overcooked", partner=lambda text: asked.append(text) or plan[len(asked) - 1])
    env.reset(0)
    first = env.step("wait")  # the policy's wait lasts until the partner's action has finished
    assert len(asked) == 1 and asked[0].startswith("You: at (3,1)")  # told from chef 1's side
    assert "Partner: at (3,1) facing right, holding an onion." in first.observation
    second = env.step("wait")
    assert len(asked) == 2 and "Pot (2,0): 1 onion, not cooking." in second.observation
    third = env.step("wait")  # the partner's "serve soup" is refused: it waits
    assert len(asked) == 3 and "serve soup needs a soup in hand" in third.info["partner_invalid"]
    assert not third.info.get("invalid")


def test_the_scripted_partner_serves_a_soup_while_the_policy_waits():
    pytest.importorskip("overcooked_ai_py")
    env = envs.make("overcooked", partner="scripted")
    env.reset(0)
    steps = []
    while not (steps and steps[-1].done):
        steps.append(env.step("wait"))  # chef 0 stands beside the dishes: it steps aside
    assert len(steps) == 10 and steps[-1].reward == 1.0 and steps[-1].info["success"]


def test_primitive_moves_and_the_horizon():
    pytest.importorskip("overcooked_ai_py")
    env = envs.make("overcooked", moves=True, horizon=4)
    env.reset(0)
    steps = [env.step(action) for action in ("up", "left", "dance", "interact")]
    assert "You: at (1,1) facing up" in steps[0].observation
    assert "You: at (1,1) facing left" in steps[1].observation  # a move toward the onions turns
    assert steps[2].info["invalid"] and "holding an onion" in steps[3].observation
    assert [s.done for s in steps] == [False, False, False, True] and not steps[-1].info["success"]
    after = env.step("wait")
    assert after.done and after.info["invalid"] and after.info["reason"] == "step after the episode ended"
