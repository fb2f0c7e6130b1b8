"""Built-in text environments (``jaxrl_llm.envs``) and tools (``jaxrl_llm.envs.tools``): seeded
resets, N copies from one seed, moves and anchors, invalid actions reported (never raised), and
hostile tool calls (a hang, a flood, a malformed call, a tool that raises) turned into text."""

import math

import pytest

from jaxrl_llm import envs
from jaxrl_llm.envs import grid, search, tools


def test_parse_move():
    assert grid.parse_move("<action>up</action>") == "up"
    assert grid.parse_move("I go left, no: RIGHT") == "right"
    assert grid.parse_move("<action>down</action> then up") == "down"
    assert grid.parse_move("jump") is None
    assert grid.parse_move(" d<|im_end|>", letters=True) == "down" and grid.parse_move("x", letters=True) is None
    assert grid.parse_move("up", letters=True) == "up"  # "u" first


BUILTIN = (
    "gridworld",
    "keydoor",
    "frozenlake",
    "keydoor_strategy",
)  # the adapters (optional extras): test_envs_adapters.py


@pytest.mark.parametrize("name", BUILTIN)
def test_group_reset_from_one_seed_is_identical(name):
    copies, observations = envs.reset_group(lambda: envs.make(name), 4, seed=123)
    assert len(set(observations)) == 1 and len({e.anchor for e in copies}) == 1
    other = envs.make(name)
    assert any(other.reset(s) != observations[0] for s in range(5))  # seeds give different games


def test_gridworld_moves_edges_invalid_and_goal():
    env = envs.make("gridworld", size=3)
    env.reset(0)
    env.pos, env.goal = (0, 0), (0, 2)
    step = env.step("up")  # into the edge: valid, blocked, same anchor
    assert step.info.get("blocked") and not step.done and env.anchor == ((0, 0), False)
    step = env.step("fly away")  # invalid: reported, the state unchanged, no exception
    assert step.info["invalid"] and "fly away" in step.info["reason"] and env.pos == (0, 0)
    assert step.observation.startswith("invalid action")
    assert env.step("right").observation == "pos=(0,1) goal=(0,2)"
    step = env.step("<action>right</action>")
    assert step.done and step.reward == 1.0 and step.info["success"]


def test_keydoor_needs_the_key():
    env = envs.make("keydoor", size=3)
    env.reset(0)
    env.pos, env.goal, env.key = (0, 0), (0, 1), (1, 0)
    assert env.step("right").info.get("blocked")  # the door is locked
    env.step("down")
    assert env.has_key and env.anchor == ((1, 0), True) and "key=held" in env.observation()
    env.step("up")
    assert env.step("right").reward == 1.0


def test_frozenlake_is_solvable_and_holes_end_the_episode():
    env = envs.make("frozenlake", size=4, hole_prob=0.5)
    for seed in range(20):
        obs = env.reset(seed)
        assert obs.startswith("P") and obs.endswith("G") and env._solvable(env.holes)
    env.reset(0)
    env.holes, env.pos = frozenset({(0, 1)}), (0, 0)
    step = env.step("right")
    assert step.done and step.reward == 0.0 and not step.info["success"]


def test_unknown_env_and_bad_kwargs_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        envs.make("nope")
    with pytest.raises(ValueError, match="env.kwargs for 'gridworld'"):
        envs.make("gridworld", width=3)
    with pytest.raises(ValueError, match="unknown tool 'bash'"):
        tools.make(("bash",))


def test_python_tool_runs_code_in_the_sandbox():
    tool = tools.make(("python",))["</python>"]
    assert tools.run_call(tool, "let me compute <python>print(6 * 7)</python>") == "42\n"


def test_hanging_tool_call_becomes_a_timeout_observation():
    tool = tools.PythonTool(timeout_s=1.0, cpu_s=1)
    assert tools.run_call(tool, "<python>while True:\n    pass</python>").startswith("error: ")


def test_flooding_tool_call_is_capped():
    tool = tools.PythonTool(max_chars=100)
    out = tools.run_call(tool, "<python>print('x' * 10**7)</python>")
    assert len(out) < 300 and out.startswith("x" * 100) and "error: output limit" in out


def test_malformed_and_raising_calls_become_error_text():
    tool = tools.PythonTool()
    assert tools.run_call(tool, "print(1)</python>") == "error: </python> without <python> before it"
    assert "SyntaxError" in tools.run_call(tool, "<python>def (:</python>")

    def boom(text):
        raise RuntimeError("disk on fire")

    f = tools.FunctionTool("calc", boom)
    assert tools.run_call(f, "<calc>1+1</calc>") == "error: RuntimeError: disk on fire"
    flood = tools.FunctionTool("echo", lambda t: t * 10_000, max_chars=50)
    assert len(tools.run_call(flood, "<echo>abc</echo>")) < 120


def test_bm25_scores_match_the_formula_by_hand():
    idx = search.BM25Index([("a", "x y"), ("b", "x x z w"), ("c", "q")], k1=1.5, b=0.75)
    # terms: a: [a, x, y] (3), b: [b, x, x, z, w] (5), c: [c, q] (2); avgdl = 10/3; n(x) = 2, N = 3
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    s_a = idf * 1 * 2.5 / (1 + 1.5 * (1 - 0.75 + 0.75 * 3 / (10 / 3)))
    s_b = idf * 2 * 2.5 / (2 + 1.5 * (1 - 0.75 + 0.75 * 5 / (10 / 3)))
    got = idx.scores("X?")
    assert set(got) == {0, 1} and math.isclose(got[0], s_a) and math.isclose(got[1], s_b)
    assert idx.search("x", 1) == [1] and idx.search("nothing", 3) == []


def test_search_tool_finds_bundled_passages():
    tool = tools.make(("search",))["</search>"]
    out = tools.run_call(tool, "I will look it up: <search>What is the capital of Peru?</search>")
    assert out.splitlines()[0] == "[Peru (country)] The capital of Peru is Lima." and len(out.splitlines()) == 3
    assert "atomic number 26" in tool.run("iron element symbol").splitlines()[0]
    assert len(search.load_corpus()) >= 300


def test_hostile_search_calls_become_error_text():
    tool = search.SearchTool()
    assert tool.run("   ?!  ").startswith("error: empty query")
    assert tools.run_call(tool, "capital of Peru</search>").startswith("error: </search> without <search>")
    flood = tool.run("capital " * 10_000)
    assert flood.startswith("note: query cut to 300 characters") and "The capital of" in flood
    slow = search.SearchTool(timeout_s=-1.0)  # any search is past its deadline
    assert slow.run("capital of Peru") == "error: search timed out after -1.0s"
    assert search.SearchTool(corpus="/nonexistent.tsv").run("x").startswith("error: the search index failed")
    assert tool.run("zzzzqqq") == "no results"
