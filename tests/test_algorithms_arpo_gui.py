"""ARPO (GUI) (Lu et al. 2025, https://arxiv.org/abs/2505.16282): the spec's hand-computed replay
example, the per-task FIFO buffer, when replay must not happen, the buffer through a checkpoint,
jit == eager, config checks, and training end to end through a kill and a resume."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms, envs, metrics_log, train
from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import arpo_gui
from jaxrl_llm.envs.base import Step
from jaxrl_llm.ops import replay
from jaxrl_llm.rollouts import replay_episode
from jaxrl_llm.types import Rollout

T, K = 6, 3  # tokens per episode row, steps
CFG = arpo_gui.Config(num_tasks=3, capacity=8, episode_tokens=T)


def group_rollout(ev, fmt, P=1, G=4, seed=0):
    """``P`` groups of ``G`` episode rows as ``replay_episode`` builds them (before replacement)."""
    rng = np.random.default_rng(seed)
    B = P * G
    mask = np.ones((B, T), np.float32)
    return Rollout(
        prompt_tokens=np.ones((B, 2), np.int32),
        prompt_mask=np.ones((B, 2), np.float32),
        tokens=rng.integers(5, 50, size=(B, T)).astype(np.int32),
        mask=mask,
        loss_mask=np.tile(np.array([1, 0, 1, 0, 1, 0], np.float32), (B, 1)),
        rewards=np.asarray(ev, np.float32),
        group_ids=np.repeat(np.arange(P, dtype=np.int32), G),
        prompt_ids=np.repeat(np.arange(P, dtype=np.int32), G),
        lengths=np.full((B,), T, np.int32),
        sampler_logprobs=-np.ones((B, T), np.float32),
        entropies=np.ones((B, T), np.float32),
        extras={
            "step_ids": np.tile(np.array([0, -1, 1, -1, 2, -1], np.int32), (B, 1)),
            "step_rewards": np.zeros((B, K), np.float32),
            "anchor_ids": np.zeros((B, K), np.int32),
            "episode_ids": np.arange(B, dtype=np.int32),
            "num_steps": np.full((B,), K, np.int32),
            "success": np.asarray(ev, np.float32),
            "eval": np.asarray(ev, np.float32),
            "format": np.asarray(fmt, np.float32),
            "task_ids": np.repeat(np.arange(P, dtype=np.int32) + 1, G),
            "episode_mask": mask,
            "replaced": np.zeros((B,), np.float32),
        },
        group_size=G,
    )


SUCCESS = {  # one buffered success of task 1: eval 1, format 0
    "tokens": np.array([7, 8, 9, 10, 0, 0], np.int32),
    "mask": np.array([1, 1, 1, 1, 0, 0], np.float32),
    "loss_mask": np.array([1, 0, 1, 0, 0, 0], np.float32),
    "step_ids": np.array([0, -1, 1, -1, -1, -1], np.int32),
    "eval": np.float32(1.0),
    "format": np.float32(0.0),
    "num_steps": np.int32(2),
    "lengths": np.int32(4),
}


def with_success(state, slot=1, row=SUCCESS):
    rows = {k: np.asarray(v)[None] for k, v in row.items()}
    buf = replay.push(state["buffer"], np.array([slot]), rows, np.array([True]))
    return {**state, "buffer": buf}


def batch_of(rollout, cfg=CFG):
    batch, metrics = algorithms.make_batch(algorithms.get("arpo_gui"), rollout, cfg)
    return batch, metrics


def test_spec_example_by_hand():
    """eval [0,0,0,0], format [0,0,-1,0]: R [0,0,-0.5,0]; with one buffered success of the task
    the first row is replaced, R [1,0,-0.5,0], A = [1.39076, -0.19868, -0.99340, -0.19868]; the
    buffer is unchanged after the step (no original eval > 0.1)."""
    rollout = group_rollout([0, 0, 0, 0], [0, 0, -1, 0])
    batch, _ = batch_of(rollout)
    np.testing.assert_allclose(batch["rewards"], [0, 0, -0.5, 0])
    state = with_success(arpo_gui.init_state(CFG))
    before = jax.tree.map(np.asarray, state)
    out, metrics = replay_episode.substitute(rollout, state, np.array([1]), jax.random.key(0), CFG)
    assert metrics["replay/all_fail_frac"] == 1.0 and metrics["replay/replaced"] == 1.0
    batch, adv_metrics = batch_of(out)
    np.testing.assert_allclose(batch["rewards"], [1, 0, -0.5, 0])
    np.testing.assert_allclose(batch["advantages"], [1.39076, -0.19868, -0.99340, -0.19868], atol=1e-5)
    assert float(adv_metrics["frac_zero_std_groups"]) == 0.0
    # the replayed row is the buffered episode, under the group's prompt; the others are untouched
    np.testing.assert_array_equal(out.tokens[0], SUCCESS["tokens"])
    np.testing.assert_array_equal(out.mask[0], SUCCESS["mask"])
    np.testing.assert_array_equal(out.loss_mask[0], SUCCESS["loss_mask"])
    np.testing.assert_array_equal(out["step_ids"][0], SUCCESS["step_ids"])
    assert out["replaced"].tolist() == [1, 0, 0, 0] and out.lengths[0] == 4 and out["num_steps"][0] == 2
    np.testing.assert_array_equal(out.tokens[1:], rollout.tokens[1:])
    np.testing.assert_array_equal(out.prompt_tokens, rollout.prompt_tokens)
    assert out.policy_logprobs is None  # pi_old is recomputed for every row by the trainer
    assert np.all(out.sampler_logprobs[0] == 0) and np.all(out.sampler_logprobs[1:] == -1)
    new = jax.jit(arpo_gui.update_state, static_argnums=(2,))(state, batch, CFG)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, new["buffer"]), before["buffer"])
    assert int(new["step"]) == 1


def test_original_successes_are_pushed_replaced_rows_are_not():
    ev = [1, 0, 0.5, 0.05, 0, 0, 0, 0]  # task 1: two successes (> 0.1), task 2: all-failure
    rollout = group_rollout(ev, [0] * 8, P=2, G=4)
    state = with_success(arpo_gui.init_state(CFG), slot=2)
    out, metrics = replay_episode.substitute(rollout, state, np.array([1, 2]), jax.random.key(1), CFG)
    assert metrics["replay/all_fail_frac"] == 0.5 and out["replaced"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    batch, _ = batch_of(out)
    new = arpo_gui.update_state(state, batch, CFG)
    assert np.asarray(new["buffer"]["count"]).tolist() == [0, 2, 1]  # the replayed success is not pushed again
    items = jax.tree.map(np.asarray, new["buffer"]["items"])
    np.testing.assert_array_equal(items["tokens"][1, :2], rollout.tokens[[0, 2]])
    np.testing.assert_allclose(items["eval"][1, :2], [1.0, 0.5])
    np.testing.assert_array_equal(items["mask"][1, 0], rollout["episode_mask"][0])
    np.testing.assert_array_equal(items["loss_mask"][1, 0], rollout.loss_mask[0])


def test_fifo_evicts_the_oldest():
    store = replay.init(2, 2, {"x": ((), jnp.int32)})
    rows = {"x": np.array([10, 11, 20, 12])}
    store = jax.jit(replay.push)(store, np.array([0, 0, 1, 0]), rows, np.array([True, True, True, True]))
    assert np.asarray(store["count"]).tolist() == [2, 1]
    assert sorted(np.asarray(store["items"]["x"][0]).tolist()) == [11, 12]  # 10 was the oldest
    assert np.asarray(store["items"]["x"][1, 0]) == 20
    store = replay.push(store, np.array([0, 0]), {"x": np.array([13, 99])}, np.array([True, False]))
    assert sorted(np.asarray(store["items"]["x"][0]).tolist()) == [12, 13] and int(store["count"][0]) == 2
    with pytest.raises(ValueError, match="capacity >= 1"):
        replay.init(2, 0, {"x": ((), jnp.int32)})


def test_draws_are_uniform_with_replacement():
    store = replay.init(1, 8, {"x": ((), jnp.int32)})
    store = replay.push(store, np.zeros(3, np.int32), {"x": np.array([1, 2, 3])}, np.ones(3, bool))
    draws = [int(replay.draw(store, 0, jax.random.key(i))["x"]) for i in range(300)]
    counts = np.bincount(draws, minlength=4)
    assert counts[0] == 0 and all(70 < c < 130 for c in counts[1:]), counts  # never an empty position


def test_draw_per_group_is_the_per_group_draw_in_one_program():
    store = replay.init(3, 4, {"x": ((), jnp.int32), "v": ((2,), jnp.float32)})
    store = replay.push(
        store, np.array([0, 0, 2, 2, 2]), {"x": np.arange(5), "v": np.arange(10.0).reshape(5, 2)}, np.ones(5, bool)
    )
    key = jax.random.key(7)
    before = replay.draw_per_group._cache_size()
    for slots in (np.array([0, 2, 2, 0]), np.array([2, 0, 0, 2]), np.array([1, 1, 0, 2])):
        rows = replay.draw_per_group(store, slots, key)
        for p, slot in enumerate(slots):
            if slot == 1:  # empty slot: a zero row, never used
                assert int(rows["x"][p]) == 0
                continue
            one = replay.draw(store, int(slot), jax.random.fold_in(key, p))
            assert int(rows["x"][p]) == int(one["x"]) and np.array_equal(rows["v"][p], one["v"])
    assert replay.draw_per_group._cache_size() - before <= 1  # new slots compile nothing new


@pytest.mark.parametrize(
    "ev,buffered,replay_on",
    [
        ([0, 0, 0, 0], False, True),  # all-failure, empty buffer
        ([1, 0, 0, 0], True, True),  # a success in the group: std 0.43 >= 0.05
        ([0.15, 0.15, 0.15, 0.15], True, True),  # std 0, mean 0.15 < 0.2: all-failure, replaced
        ([0.3, 0.3, 0.3, 0.3], True, True),  # equal evals, mean 0.3 >= 0.2: not a failure group
        ([0, 0, 0, 0], True, False),  # replay off: the GRPO baseline
    ],
)
def test_replacement_only_in_all_failure_groups_with_a_buffer(ev, buffered, replay_on):
    cfg = dataclasses.replace(CFG, replay=replay_on)
    rollout = group_rollout(ev, [0, 0, 0, 0])
    state = arpo_gui.init_state(cfg)
    if buffered:
        state = with_success(state)
    out, metrics = replay_episode.substitute(rollout, state, np.array([1]), jax.random.key(0), cfg)
    triggers = np.std(ev) < 0.05 and np.mean(ev) < 0.2
    assert metrics["replay/all_fail_frac"] == float(triggers)
    expect = 1.0 if (triggers and buffered and replay_on) else 0.0
    assert metrics["replay/replaced"] == expect
    if expect == 0.0:
        assert out is rollout


def test_buffer_survives_a_checkpoint(tmp_path):
    state = with_success(with_success(arpo_gui.init_state(CFG)), slot=0)
    state = {**state, "step": jnp.int32(5)}
    ckpt = checkpoint_lib.Checkpointer(tmp_path, async_save=False)
    try:
        ckpt.save(5, {"algo_state": state}, {"step": 5}, wait=True)
        step, tree, meta = ckpt.restore({"algo_state": jax.tree.map(np.asarray, arpo_gui.init_state(CFG))})
    finally:
        ckpt.close()
    assert step == 5
    jax.tree.map(
        np.testing.assert_array_equal, jax.tree.map(np.asarray, tree["algo_state"]), jax.tree.map(np.asarray, state)
    )


def test_loss_and_advantages_jit_equal_eager():
    rollout = group_rollout([1, 0, 0, 0, 0, 1, 1, 0], [0, -1, 0, 0, 0, 0, 0, -1], P=2)
    rng = np.random.default_rng(3)
    rollout = rollout.replace(old_logprobs=-np.abs(rng.normal(size=(8, T))).astype(np.float32))
    batch, _ = batch_of(rollout)
    logprobs = batch["old_logprobs"] + 0.3 * jnp.asarray(rng.normal(size=(8, T)), jnp.float32)
    eager = arpo_gui.loss(logprobs, batch, CFG)
    jitted = jax.jit(arpo_gui.loss, static_argnums=(2,))(logprobs, batch, CFG)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), eager, jitted)
    assert float(eager[1]["clip_frac"]) > 0  # the ratios leave [0.8, 1.3] somewhere: clipping is exercised
    adv = arpo_gui.advantages(batch, CFG)[0]
    np.testing.assert_allclose(jax.jit(lambda r: arpo_gui.advantages(r, CFG)[0])(batch), adv, rtol=1e-6)


def test_config_checks():
    with pytest.raises(ValueError, match="capacity"):
        arpo_gui.Config(capacity=0)
    with pytest.raises(ValueError, match="eps_low"):
        arpo_gui.Config(eps_low=0.0)
    base = C.resolve_algo(C.apply_overrides(C.default_config(), ["algorithm=arpo_gui", "env.max_episode_tokens=512"]))
    assert arpo_gui.check_config(base) is None

    def check(part, **changes):
        return arpo_gui.check_config(
            dataclasses.replace(base, **{part: dataclasses.replace(getattr(base, part), **changes)})
        )

    assert "episode_tokens" in check("algo", episode_tokens=64)
    assert "group_size" in check("train", group_size=1)
    assert "num_tasks" in check("train", prompts_per_step=20)
    assert "rollout_correction" in check("train", rollout_correction="token_tis")
    assert "staleness" in check("train", staleness=1)
    assert "env.rows" in check("env", rows="step")
    with pytest.raises(C.ConfigError, match="episode_tokens=64 must equal"):
        C.apply_overrides(base, ["algo.episode_tokens=64"])


class CoinEnv:
    """A one-step game whose outcome is the first character of the action (about a third of the
    characters win), so a random tiny policy's groups mix successes, all-failure groups and
    buffered tasks; an empty action is a format failure."""

    instructions = "Say a letter."

    def reset(self, seed):
        self.seed = seed
        return f"task {seed}"

    @property
    def anchor(self):
        return self.seed

    def step(self, action):
        if not action.strip():
            return Step("invalid", 0.0, True, {"invalid": True, "success": False})
        won = ord(action.strip()[0]) % 3 == 0
        return Step("done", float(won), True, {"success": won})


def tiny_run(run_dir, *overrides):
    return C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={run_dir}",
            "model.name=tiny",
            "algorithm=arpo_gui",
            "env.name=coin",
            "env.max_turns=1",
            "env.max_episode_tokens=8",
            "algo.episode_tokens=8",
            "algo.num_tasks=2",
            "algo.capacity=2",
            "algo.eval_every=2",
            "algo.eval_locks=2",
            "sft.steps=0",
            "train.steps=4",
            "train.prompts_per_step=2",
            "train.group_size=2",
            "sampling.max_new_tokens=2",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "checkpoint.every=1",
            "checkpoint.async_save=false",
            "mesh.num_devices=1",
            *overrides,
        ],
    )


@pytest.mark.slow
def test_train_kill_and_resume_keeps_the_buffers(tmp_path, monkeypatch):
    """Four RL steps of the tiny model; stopped after step 2 and resumed, the metrics (replacements
    included) and the final buffers equal those of a run never stopped."""
    monkeypatch.setitem(envs.ENVS, "coin", CoinEnv)
    assert train.train(tiny_run(tmp_path / "ref"))["status"] == "finished"
    assert train.train(tiny_run(tmp_path / "run"), stop_after=2)["status"] == "stopped"
    assert train.train(tiny_run(tmp_path / "run"))["status"] == "finished"

    def comparable(d):
        return [
            {k: v for k, v in r.items() if not k.startswith("time/") and k != "compiles"}
            for r in metrics_log.read_metrics(d)
        ]

    ref = comparable(tmp_path / "ref")
    assert comparable(tmp_path / "run") == ref and len(ref) == 4
    assert sum(r["replay/replaced"] for r in ref) > 0, "the test must exercise a replacement"
    assert ref[-1]["replay/buffer_fill"] > 0 and "heldout/success" in ref[0] and "heldout/success" in ref[2]

    def buffers(d):
        ckpt = checkpoint_lib.Checkpointer(d / "checkpoints", async_save=False)
        try:
            tr = train.Trainer(C.resolve_algo(tiny_run(d)))
            _, tree, _ = ckpt.restore(tr.restore_target)
            tr.close()
        finally:
            ckpt.close()
        return jax.tree.map(np.asarray, tree["algo_state"])

    jax.tree.map(np.testing.assert_array_equal, buffers(tmp_path / "run"), buffers(tmp_path / "ref"))
