"""The ``episode`` rollout kind: the token stream is the truth (the trained rows equal, token for
token, the contexts the policy acted in), observations and tool output out of the loss, per-step
extras, turn limit and token budget, step rows, and a run killed mid-episode-batch resumes exactly."""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from jaxrl_llm import algorithms, envs, metrics_log, train
from jaxrl_llm import config as C
from jaxrl_llm.models.tokenizer import synthetic_tokenizer
from jaxrl_llm.policy import Policy
from jaxrl_llm.rollouts import Context, episode

BASE = [
    "model.name=tiny",
    "algorithm=gigpo",
    "train.prompts_per_step=2",
    "train.group_size=2",
    "sampling.max_new_tokens=4",
    "env.max_turns=3",
    "env.max_episode_tokens=256",
    "mesh.num_devices=1",
]


def make_cfg(*overrides):
    return C.resolve_algo(C.apply_overrides(C.default_config(), BASE + list(overrides)))


@pytest.fixture(scope="module")
def tiny_policy():
    return Policy.create(make_cfg())


def make_ctx(policy, cfg):
    return Context(cfg, algorithms.get(cfg.algorithm), policy, None, None, None)


class Recorder:
    """Wraps ``policy.generate``: keeps every call's input contexts and sampled tokens."""

    def __init__(self, policy):
        self.policy, self.calls = policy, []

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def generate(self, tokens, mask, *args, **kwargs):
        out = self.policy.generate(tokens, mask, *args, **kwargs)
        contexts = [row[m.astype(bool)].tolist() for row, m in zip(tokens, mask)]
        sampled = [row[:n].tolist() for row, n in zip(out["tokens"], out["lengths"])]
        self.calls.append((contexts, sampled))
        return out


def test_trained_rows_are_the_contexts_the_policy_saw(tiny_policy):
    cfg = make_cfg("env.kv_cache=reprefill")
    rec = Recorder(tiny_policy)
    rollout, metrics = episode.collect(make_ctx(rec, cfg), jax.random.key(0), None)
    B, T = rollout.tokens.shape
    assert B == 4 and T == 256 and rollout.group_size == 2
    rows = [
        np.concatenate([p[pm.astype(bool)], t[m.astype(bool)]]).tolist()
        for p, pm, t, m in zip(rollout.prompt_tokens, rollout.prompt_mask, rollout.tokens, rollout.mask)
    ]
    steps = np.asarray(rollout["num_steps"])
    assert len(rec.calls) == steps.max() >= 1
    for k, (contexts, sampled) in enumerate(rec.calls):
        for b in range(B):
            if k >= steps[b]:
                continue
            ctx = contexts[b]
            assert rows[b][: len(ctx)] == ctx, f"row {b} differs from what the policy saw at turn {k}"
            assert rows[b][len(ctx) : len(ctx) + len(sampled[b])] == sampled[b]  # the action as sampled
            # the loss covers exactly the sampled tokens of this turn
            start = len(ctx) - int(rollout.prompt_mask[b].sum())
            lm = np.asarray(rollout.loss_mask[b])
            assert lm[start : start + len(sampled[b])].all()
            assert (np.asarray(rollout["step_ids"][b, start : start + len(sampled[b])]) == k).all()
    # a decode / re-encode round trip of the sampled turns would not give these rows back
    tok = tiny_policy.tokenizer
    turns = [s[b] for k, (_, s) in enumerate(rec.calls) for b in range(B) if k < steps[b]]
    assert any(tok(tok.decode(t), add_special_tokens=False)["input_ids"] != t for t in turns)
    # everything else (observations and the template's message ends) is out of the loss
    lm, m = np.asarray(rollout.loss_mask), np.asarray(rollout.mask)
    assert lm.sum() == sum(len(s[b]) for k, (_, s) in enumerate(rec.calls) for b in range(B) if k < steps[b])
    assert (lm <= m).all() and (m - lm).sum() > 0
    assert ((np.asarray(rollout["step_ids"]) >= 0) == (lm > 0)).all()
    # the sampler's log-probs sit on the policy's tokens only
    assert (np.asarray(rollout.sampler_logprobs)[lm == 0] == 0).all()
    assert (np.asarray(rollout.sampler_logprobs)[lm > 0] < 0).all()
    # the trainer's log-probs of the rows equal the sampler's where the policy acted
    tokens, attention = train.model_inputs(rollout)
    lp = tiny_policy.logprobs(tiny_policy.params, tokens, attention, T)
    np.testing.assert_allclose(lp[lm > 0], np.asarray(rollout.policy_logprobs)[lm > 0], atol=2e-4)
    # per-step extras: a random tiny model never parses a move, every step is invalid (reward 0)
    anchors = np.asarray(rollout["anchor_ids"])
    assert anchors.shape == (4, 3) and ((anchors >= 0).sum(1) == steps).all()
    assert (anchors[0, : steps[0]] == anchors[1, 0]).all()  # a group starts from one state
    assert metrics["episode/invalid_frac"] == 1.0 and "time/sample" in metrics


@dataclasses.dataclass(frozen=True)
class CharTool:
    """A tool whose closing tag is one common character: the random tiny model writes one of ten
    such tags within a few turns, so turns get cut, the tool answers, and the policy resumes."""

    name: str
    close_tag: str

    def run(self, text):
        return "ok"


CHAR_TOOLS = {f"c{i}": functools.partial(CharTool, f"c{i}", ch) for i, ch in enumerate(" eaoitnsrl")}


def test_grown_cache_gives_the_rows_of_a_full_prefill(tiny_policy, monkeypatch):
    """Turns decoded from a cache grown by observations and tool results (cut turns truncated):
    the trainer's log-probs of the rows (a full prefill) equal the sampler's, and the rows equal
    those of the re-prefilling sampler with the same key."""
    for name, make in CHAR_TOOLS.items():
        monkeypatch.setitem(episode.tools_lib.TOOLS, name, make)
    tools = ", ".join(f'"{n}"' for n in CHAR_TOOLS)
    over = ["sampling.max_new_tokens=8", f"env.tools=[{tools}]", "env.max_tool_output_tokens=8"]
    grown, metrics = episode.collect(make_ctx(tiny_policy, make_cfg(*over)), jax.random.key(1), None)
    assert episode.grow_cache(make_ctx(tiny_policy, make_cfg(*over)))
    assert metrics["episode/tool_calls"] > 0  # some turns were cut and resumed
    lm = np.asarray(grown.loss_mask)
    tokens, attention = train.model_inputs(grown)
    lp = tiny_policy.logprobs(tiny_policy.params, tokens, attention, grown.tokens.shape[1])
    np.testing.assert_allclose(lp[lm > 0], np.asarray(grown.policy_logprobs)[lm > 0], atol=2e-4)
    cfg = make_cfg(*over, "env.kv_cache=reprefill")
    again, _ = episode.collect(make_ctx(tiny_policy, cfg), jax.random.key(1), None)
    np.testing.assert_array_equal(again.tokens, grown.tokens)
    np.testing.assert_array_equal(again.loss_mask, grown.loss_mask)


def test_observations_are_chat_messages_encoded_once():
    tok = synthetic_tokenizer()
    pieces = episode.ChatPieces(tok)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    after = pieces.after_action("pos=(0,1) goal=(2,2)", eos)
    assert tok.decode(after) == "\n<|im_start|>user\npos=(0,1) goal=(2,2)<|im_end|>\n<|im_start|>assistant\n"
    # a turn cut by the length limit gets the end-of-turn token from the environment
    assert tok.decode(pieces.after_action("x", 5)).startswith("<|im_end|>\n<|im_start|>user")
    first = tok.decode(pieces.first("Rules.", "obs"))
    assert first == "<|im_start|>user\nRules.\n\nobs<|im_end|>\n<|im_start|>assistant\n"


class ScriptedPolicy:
    """A policy whose turns are given texts (synthetic tokenizer), to drive tools and the game."""

    def __init__(self, script):
        self.tokenizer = synthetic_tokenizer()
        self.pad_id = 0
        self.eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.script, self.calls = script, 0

    def generate(self, tokens, mask, key, num_samples, greedy=False, **kwargs):
        texts = self.script(self.calls, tokens.shape[0])
        self.calls += 1
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] + [self.eos] for t in texts]
        width = max(len(x) for x in ids)
        out = np.zeros((len(ids), width), np.int32)
        for i, x in enumerate(ids):
            out[i, : len(x)] = x
        lens = np.array([len(x) for x in ids], np.int32)
        lp = np.where(np.arange(width)[None] < lens[:, None], -0.5, 0.0).astype(np.float32)
        return {"tokens": out, "lengths": lens, "logprobs": lp, "policy_logprobs": lp, "entropies": -lp}


def _ctx(policy, *overrides):
    cfg = make_cfg("sampling.max_new_tokens=40", "env.kv_cache=reprefill", *overrides)
    return make_ctx(policy, cfg)


def test_tool_call_result_is_appended_masked_and_the_turn_resumes(monkeypatch):
    def script(call, rows):
        return ["<python>print(6*7)</python> ignored"] * rows if call == 0 else ["<action>up</action>"] * rows

    policy = ScriptedPolicy(script)
    ctx = _ctx(policy, 'env.tools=["python"]', "env.max_turns=1")
    rollout, metrics = episode.collect(ctx, jax.random.key(0), None)
    tok = policy.tokenizer
    n = int(rollout.lengths[0])
    row, lm = rollout.tokens[0, :n], np.asarray(rollout.loss_mask[0, :n])
    text = tok.decode(row)
    call = "<python>print(6*7)</python>"
    # cut right after the closing tag (" ignored" and the stop token dropped), result masked, resumed
    assert text == call + "<output>\n42\n\n</output>\n<action>up</action><|im_end|>"
    assert tok.decode(row[lm > 0]) == call + "<action>up</action><|im_end|>"
    assert metrics["episode/tool_calls"] == 1.0
    assert (np.asarray(rollout["step_ids"][0, :n])[lm > 0] == 0).all()


def test_hanging_tool_in_an_episode_is_an_observation():
    def script(call, rows):
        return ["<python>while True: pass</python>"] * rows if call == 0 else ["<action>up</action>"] * rows

    policy = ScriptedPolicy(script)
    ctx = _ctx(policy, 'env.tools=["python"]', "env.max_turns=1")
    tool = episode.tools_lib.PythonTool(timeout_s=1.0, cpu_s=1)
    ctx_tools = dict(episode.tools_lib.TOOLS)
    episode.tools_lib.TOOLS["python"] = lambda: tool
    try:
        rollout, _ = episode.collect(ctx, jax.random.key(0), None)
    finally:
        episode.tools_lib.TOOLS.clear()
        episode.tools_lib.TOOLS.update(ctx_tools)
    text = policy.tokenizer.decode(rollout.tokens[0, : int(rollout.lengths[0])])
    assert "<output>\nerror: " in text and text.endswith("<action>up</action><|im_end|>")


def _solver(env_rows):
    """Moves every episode's agent to its goal (gridworld): a script that reads the games."""

    def script(call, rows):
        out = []
        for game in env_rows:
            (r, c), (gr, gc) = game.pos, game.goal
            move = "down" if gr > r else "up" if gr < r else "right" if gc > c else "left"
            out.append(f"<action>{move}</action>")
        return out

    return script


def test_goal_turn_limit_rewards_and_anchors(monkeypatch):
    games = []
    real = envs.ENVS["gridworld"]
    monkeypatch.setitem(envs.ENVS, "gridworld", lambda **kw: games.append(real(**kw)) or games[-1])
    policy = ScriptedPolicy(lambda call, rows: _solver(games)(call, rows))
    ctx = _ctx(policy, "env.max_turns=8", 'env.kwargs={"size": 5}')
    rollout, metrics = episode.collect(ctx, jax.random.key(3), None)
    assert metrics["episode/success"] == 1.0 and metrics["episode/stop_done"] == 1.0
    steps = np.asarray(rollout["num_steps"])
    np.testing.assert_array_equal(np.asarray(rollout.rewards), 1.0)
    sr = np.asarray(rollout["step_rewards"])
    for b in range(4):
        assert sr[b, steps[b] - 1] == 1.0 and sr[b].sum() == 1.0
    # same seed, same shortest path: the two episodes of a group visit the same anchors
    a = np.asarray(rollout["anchor_ids"])
    np.testing.assert_array_equal(a[0], a[1])
    assert not set(a[0][a[0] >= 0]) & set(a[2][a[2] >= 0])  # groups never share ids
    # a policy that never reaches the goal stops at the turn limit
    policy = ScriptedPolicy(lambda call, rows: ["<action>up</action>"] * rows)
    _, metrics = episode.collect(_ctx(policy, "env.max_turns=2"), jax.random.key(3), None)
    assert metrics["episode/steps"] <= 2.0 and metrics["episode/stop_done"] + metrics["episode/stop_turns"] == 1.0


def test_token_budget_ends_episodes():
    policy = ScriptedPolicy(lambda call, rows: ["hmm " * 8] * rows)
    ctx = _ctx(policy, "env.max_turns=50", "env.max_episode_tokens=200")
    rollout, metrics = episode.collect(ctx, jax.random.key(0), None)
    assert metrics["episode/stop_budget"] == 1.0
    assert (np.asarray(rollout.lengths) <= 200).all() and rollout.tokens.shape[1] == 200
    with pytest.raises(ValueError, match="env.max_episode_tokens=20 < sampling.max_new_tokens=40"):
        episode.collect(_ctx(policy, "env.max_episode_tokens=20"), jax.random.key(0), None)


def test_step_rows_hold_each_turn_with_its_history():
    games = []
    real = envs.ENVS["gridworld"]
    envs.ENVS["gridworld"] = lambda **kw: games.append(real(**kw)) or games[-1]
    try:
        policy = ScriptedPolicy(lambda call, rows: _solver(games)(call, rows))
        ctx = _ctx(policy, "env.max_turns=8", "env.rows=step", "algorithm=grpo")
        ctx = dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, algo=algorithms.get("grpo").Config()))
        rollout, _ = episode.collect(ctx, jax.random.key(3), None)
    finally:
        envs.ENVS["gridworld"] = real
    K = 8
    assert rollout.tokens.shape[0] == 4 * K and rollout.group_size == 2 * K
    valid = np.asarray(rollout["step_valid"]).reshape(4, K)
    tok = policy.tokenizer
    for b in range(4):
        n = int(valid[b].sum())
        for k in range(n):
            r = b * K + k
            turn = tok.decode(rollout.tokens[r, : int(rollout.lengths[r])])
            assert turn.startswith("<action>") and turn.endswith("</action><|im_end|>")
            history = tok.decode(rollout.prompt_tokens[r][rollout.prompt_mask[r].astype(bool)])
            assert history.count("<|im_start|>assistant") == k + 1
        assert np.asarray(rollout.loss_mask[b * K + n : (b + 1) * K]).sum() == 0  # steps not taken
    assert np.asarray(rollout.rewards).reshape(4, K).sum(1).tolist() == [1.0] * 4


class Killed(Exception):
    pass


@pytest.mark.slow
def test_killed_mid_episode_batch_resumes_identically(tmp_path, monkeypatch):
    """A run dies inside step 3's episodes (the last step) (an environment raises mid-batch); run again, it resumes
    from the step-2 checkpoint and its metrics equal those of a run never killed."""
    overrides = [
        "task.name=rg:basic_arithmetic",
        'task.kwargs={"size": 20, "num_eval": 4}',
        "sft.steps=0",
        "train.steps=3",
        "sampling.max_new_tokens=2",
        "env.max_turns=2",
        "env.max_episode_tokens=64",
        f"compilation_cache_dir={tmp_path / 'xla_cache'}",
        "eval.num_examples=0",
        "reward.num_workers=0",
        "log.progress=false",
        "log.tensorboard=false",
        "checkpoint.every=1",
        "checkpoint.async_save=false",
    ]
    cfg = lambda d: C.apply_overrides(make_cfg(), [f"run_dir={d}", *overrides])
    assert train.train(cfg(tmp_path / "ref"))["status"] == "finished"

    real, calls = envs.ENVS["gridworld"], {"n": 0}

    class Dying:
        def __init__(self, **kw):
            self.env = real(**kw)
            self.instructions = self.env.instructions

        def reset(self, seed):
            return self.env.reset(seed)

        @property
        def anchor(self):
            return self.env.anchor

        def step(self, action):
            calls["n"] += 1
            if calls["n"] == 2 * 4 * 2 + 3:  # two whole steps of 4 episodes x 2 turns, then 3 more
                raise Killed()
            return self.env.step(action)

    monkeypatch.setitem(envs.ENVS, "gridworld", Dying)
    with pytest.raises(Killed):
        train.train(cfg(tmp_path / "run"))
    assert [r["step"] for r in metrics_log.read_metrics(tmp_path / "run")] == [1, 2]
    monkeypatch.setitem(envs.ENVS, "gridworld", real)
    assert train.train(cfg(tmp_path / "run"))["status"] == "finished"

    def comparable(d):
        return [
            {k: v for k, v in r.items() if not k.startswith("time/") and k != "compiles"}
            for r in metrics_log.read_metrics(d)
        ]

    assert comparable(tmp_path / "run") == comparable(tmp_path / "ref")


def test_evaluate_plays_held_out_seeds_greedily(monkeypatch):
    games, greedy = [], []
    real = envs.ENVS["gridworld"]
    monkeypatch.setitem(envs.ENVS, "gridworld", lambda **kw: games.append(real(**kw)) or games[-1])
    policy = ScriptedPolicy(lambda call, rows: _solver(games)(call, rows))
    generate = policy.generate
    policy.generate = lambda *a, **kw: greedy.append(kw["greedy"]) or generate(*a, **kw)
    metrics = episode.evaluate(_ctx(policy, "env.max_turns=8", "env.max_episode_tokens=1024"), 3, jax.random.key(0))
    assert metrics["episode/success"] == 1.0 and all(greedy)
    fresh = real()
    assert games[0].goal == (fresh.reset(episode.EVAL_SEED_BASE), fresh.goal)[1]
