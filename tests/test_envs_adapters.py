"""Adapters to TextArena, ScienceWorld and TextWorld (optional extra ``agents``): each plays two
steps through ``envs.make`` when its package is installed (skipped otherwise): a seeded reset, an
invalid action reported in ``info`` (never raised, the state unchanged), a valid action."""

import pytest

from jaxrl_llm import envs


def test_textarena_frozenlake_two_steps():
    pytest.importorskip("textarena")
    env = envs.make("textarena", game="FrozenLake-v0")
    first = env.reset(0)
    assert "Frozen Lake" in first and env.reset(0) == first  # the same seed, the same game
    anchor = env.anchor
    bad = env.step("fly away")
    assert bad.info.get("invalid") and bad.info["reason"] and not bad.done and bad.reward == 0.0
    good = env.step("[right]")
    assert not good.info.get("invalid") and good.observation and good.observation != first
    assert good.observation not in first  # only the new text, not TextArena's whole log
    assert env.anchor != anchor


def test_textarena_frozenlake_ends_with_reward_and_success():
    pytest.importorskip("textarena")
    env = envs.make("textarena", game="FrozenLake-v0")
    env.reset(0)  # seed 0's map: holes at (1,3), (3,1), (3,2); the goal at (3,3)
    steps = [env.step(a) for a in ("[down]", "[down]", "[right]", "[right]", "[right]", "[down]")]
    assert steps[-1].done and steps[-1].reward == 1.0 and steps[-1].info["success"]
    assert all(s.reward == 0.0 and not s.done for s in steps[:-1])


def test_textarena_negotiation_with_a_partner_two_steps():
    pytest.importorskip("textarena")
    seen = []
    partner = lambda obs: seen.append(obs) or "[Deny]"
    env = envs.make("textarena", game="SimpleNegotiation-v0-short", num_players=2, partner=partner)
    first = env.reset(3)
    assert "Negotiation" in first and not seen  # player 0 moves first
    s1 = env.step("Hello, shall we trade?")
    s2 = env.step("[Offer: 1 Wheat -> 1 Ore]")
    assert len(seen) == 2 and not s1.done and not s2.done
    assert "Player 1" in s1.observation  # the partner's move is part of the policy's observation


def test_scienceworld_two_steps():
    pytest.importorskip("scienceworld")
    env = envs.make("scienceworld", task="boil")
    try:
        first = env.reset(2)
        assert "room" in first.lower() and "boil" in env.instructions.lower()
        bad = env.step("fly to the moon")
        assert bad.info["invalid"] and not bad.done and bad.reward == 0.0
        good = env.step("look around")
        assert not good.info.get("invalid") and "this room is called" in good.observation.lower()
        with pytest.raises(ValueError, match="unknown ScienceWorld task 'nope'"):
            envs.make("scienceworld", task="nope")
    finally:
        env.close()


def test_textworld_two_steps(tmp_path):
    pytest.importorskip("textworld")
    env = envs.make("textworld", game_dir=str(tmp_path))
    try:
        first = env.reset(7)
        assert env.instructions and "Available actions:" in first
        bad = env.step("fly to the moon")
        assert bad.info["invalid"] and not bad.done and bad.reward == 0.0
        action = env.state.admissible_commands[0]
        good = env.step(action)
        assert not good.info.get("invalid") and good.observation
        env.reset(7)  # the second reset of a seed reuses the generated game
        assert len(list(tmp_path.iterdir())) >= 1
    finally:
        env.close()
