"""The rollout kinds' and the trainer's calls to the algorithms' optional hooks: prompt ids,
``select_prompts``, ``replay_tokens``, ``group_prompts``, COPO's ``answer_ids``, ``temperature_rule``, the
start-up checks of per-prompt state sizes, and an exact resume of a stateful method's state from a
checkpoint."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as C
from jaxrl_llm import metrics_log, train
from jaxrl_llm.algorithms import hapo, single_stream_spo
from jaxrl_llm.rewards import extract
from jaxrl_llm.rollouts import single_stream
from jaxrl_llm.sampling import sampler

# 28 problems, 16 held out: 12 training examples, so a few steps revisit prompts.
TASK = (
    'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
    '"allow_parentheses": false, "allow_negation": false, "num_eval": 16, "size": 28}'
)


def hook_config(run_dir, algorithm, *overrides):
    return C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={run_dir}",
            "model.name=tiny",
            "task.name=rg:basic_arithmetic",
            TASK,
            "sft.steps=0",
            "train.steps=3",
            "train.prompts_per_step=4",
            "train.group_size=2",
            "sampling.max_new_tokens=4",
            "eval.num_examples=8",
            "eval.k=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "mesh.num_devices=1",
            f"algorithm={algorithm}",
            *overrides,
        ],
    )


def make_trainer(tmp_path, algorithm, *overrides):
    return train.Trainer(hook_config(tmp_path / algorithm, algorithm, *overrides))


def collect(tr, key):
    """The trainer's rollout kind on its context: ``(rollout, metrics)``."""
    return tr.kind.collect(tr.ctx, key, tr.state.algo_arrays())


def examples_of(tr, rollout):
    return [tr.task.train_example(int(i)) for i in rollout["prompt_ids"]]


def test_prompt_ids_are_the_training_example_indices(tmp_path):
    tr = make_trainer(tmp_path, "grpo")
    stream = tr.task.train_iter(tr.cfg.seed)  # a second iterator in the same order
    try:
        for step in range(2):
            rollout, metrics = collect(tr, jax.random.key(step))
            ids = rollout["prompt_ids"]
            assert ids.dtype == np.int32 and ids.shape == (8,)
            assert (ids.reshape(4, 2) == ids[::2, None]).all(), ids  # constant within a group
            want = [next(stream) for _ in range(4)]
            assert [e.id for e in examples_of(tr, rollout)[::2]] == [e.id for e in want]
            assert "frac_zero_std_groups" in metrics
    finally:
        tr.close()


def test_num_prompts_is_set_or_checked_against_the_task():
    cfg = C.resolve_algo(hook_config("/tmp/unused", "dcpo"))
    fitted = C.fit_to_task(cfg, 24)
    assert fitted.algo.num_prompts == 24 and cfg.algo.num_prompts == 0
    with pytest.raises(C.ConfigError, match=r"num_prompts=30 != the 24 training examples"):
        C.fit_to_task(dataclasses.replace(cfg, algo=dataclasses.replace(cfg.algo, num_prompts=30)), 24)

    spo = C.resolve_algo(
        hook_config("/tmp/unused", "single_stream_spo", "algo.num_prompts=24", "algo.max_response_len=4")
    )
    assert C.fit_to_task(spo, 24) is spo
    assert C.fit_to_task(spo, 100) is spo  # a pool of the first 24
    with pytest.raises(C.ConfigError, match=r"num_prompts=24 > the 10 training examples"):
        C.fit_to_task(spo, 10)
    with pytest.raises(C.ConfigError, match=r"max_response_len=8 != sampling.max_new_tokens=4"):
        hook_config("/tmp/unused", "single_stream_spo", "algo.num_prompts=24", "algo.max_response_len=8")


def test_copo_answer_classes_reach_the_rollout_from_the_reward_side(tmp_path):
    tr = make_trainer(tmp_path, "copo")
    try:
        rollout, _ = collect(tr, jax.random.key(0))
        completions = tr.policy.decode(rollout["tokens"], rollout["lengths"])
        examples = [tr.task.train_example(int(i)) for i in rollout["prompt_ids"]]
        # the answer the task's reward reads (reasoning-gym "auto": tag, else boxed, else the bare completion)
        answers = [tr.task.answer_fn(c, e) for c, e in zip(completions, examples)]
        assert answers == [extract.auto_answer(c) for c in completions]
        np.testing.assert_array_equal(rollout["answer_ids"], extract.answer_classes(answers, 2))
        assert len(set(answers)) > 1  # the untrained model's bare completions differ: not one "no answer" class
    finally:
        tr.close()


def test_hapo_temperature_rule_follows_the_state_without_recompiling(tmp_path):
    # A large tau and a state whose entropy statistics are far from the tiny model's make the
    # rule's temperatures differ from the base: log q (tempered) != log pi (untempered).
    tr = make_trainer(tmp_path, "hapo", "algo.tau=0.9", "algo.dynamic_sampling=false")
    try:
        base, _ = collect(tr, jax.random.key(0))
        np.testing.assert_allclose(base["sampler_logprobs"], base["policy_logprobs"], atol=1e-5)
        traces = sampler.compile_count()
        gaps = []
        rule_of = lambda: tr.algo.temperature(tr.cfg.algo, tr.state.algo_arrays())
        for m in (-5.0, 5.0):
            tr.state.algo_state = {
                "m": jnp.float32(m),
                "s": jnp.float32(0.1),
                "k_pos": jnp.float32(1.0),
                "k_neg": jnp.float32(1.0),
                "ready": jnp.asarray(True),
            }
            out, _ = collect(tr, jax.random.key(0))
            gaps.append(np.abs(out["sampler_logprobs"] - out["policy_logprobs"]) * out["mask"])
            rule, params = rule_of()  # the state goes to the sampler traced
            assert float(params["m"]) == m
        assert gaps[0].max() > 1e-2 and gaps[1].max() > 1e-2
        assert not np.allclose(gaps[0], gaps[1])
        assert sampler.compile_count() == traces, "new statistics recompiled the sampler"
        # an equal rule every step (one compiled program), computing HAPO's temperatures
        assert rule_of()[0] == rule and hash(rule_of()[0]) == hash(rule)
        t = rule(jnp.zeros((2, 5)), jnp.int32(0), params)
        np.testing.assert_allclose(t, hapo.temperature_from_stats(jnp.zeros((2, 5)), params, tr.cfg.algo))
    finally:
        tr.close()


def test_single_stream_spo_selects_prompts_and_replays_stored_responses(tmp_path):
    # num_prompts == prompts_per_step: each step draws the whole pool, so step 2 revisits every prompt.
    tr = make_trainer(
        tmp_path,
        "single_stream_spo",
        "train.group_size=1",
        "algo.num_prompts=4",
        "algo.max_response_len=4",
        "algo.n_offline=0",
    )
    st = tr.state
    try:
        key = jax.random.key(3)
        rollout, metrics = collect(tr, key)
        want = single_stream_spo.select_prompts(
            st.algo_state, 4, jax.random.fold_in(jax.random.fold_in(key, 0), 1), tr.cfg.algo
        )
        np.testing.assert_array_equal(rollout["prompt_ids"], np.asarray(want))
        assert sorted(rollout["prompt_ids"].tolist()) == [0, 1, 2, 3]
        assert "frac_zero_std_groups" not in metrics

        rollout = single_stream.state_inputs(tr.ctx, rollout, st.algo_arrays())
        assert rollout["replay_logprobs"].shape == (4, 4)  # first visits: scored, masked out by the state
        st.algo_state = single_stream_spo.update_state(st.algo_state, rollout, tr.cfg.algo)

        # Unchanged params: replaying each prompt's stored response after its prompt must give back
        # the behaviour log-probs stored with it (temperature 1, no filters: log q == log pi).
        again, _ = collect(tr, jax.random.key(4))
        again = single_stream.state_inputs(tr.ctx, again, st.algo_arrays())
        ids = again["prompt_ids"]
        stored = np.asarray(st.algo_state["last_logprobs"])[ids]
        m = np.asarray(st.algo_state["last_mask"])[ids]
        assert m.sum() > 0
        np.testing.assert_allclose(again["replay_logprobs"] * m, stored * m, atol=2e-4)
        shift = single_stream_spo.policy_shift(st.algo_state, again, tr.cfg.algo)
        assert float(jnp.max(shift)) < 2e-4

        # Full steps run the hooks end to end (no frac_zero_std_groups with G = 1); once warm, a
        # step compiles nothing (an eager update_state re-traced its scan every step).
        compiles = metrics_log.CompileCounter()
        for step in range(3):
            step_metrics = train.rl_step(tr, metrics_log.Timer())
            st.step += 1
            assert "frac_zero_std_groups" not in step_metrics
            if step == 2:
                assert compiles.take() == 0
            else:
                compiles.take()
        assert int(np.asarray(st.algo_state["visits"]).sum()) == 16
    finally:
        tr.close()


def test_single_stream_spo_offline_prior_is_set_at_rl_start(tmp_path):
    """``n_offline > 0`` runs the offline pass: N prompts x n samples from the initial policy set
    the tracker's prior (before, ``n_offline`` did nothing: the state stayed at alpha = beta = 0.5)."""
    tr = make_trainer(
        tmp_path,
        "single_stream_spo",
        "train.group_size=1",
        "algo.num_prompts=6",
        "algo.max_response_len=4",
        "algo.n_offline=3",
        "train.prompts_per_step=4",
    )
    try:
        a = tr.cfg.algo
        rewards = single_stream.offline_rewards(
            tr.ctx, jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 10**9 + 1), 7), a.num_prompts, a.n_offline
        )
        assert rewards.shape == (6, 3)
        want = single_stream_spo.with_offline_prior(single_stream_spo.init_state(a), rewards, a)
        for k in ("alpha", "beta"):
            np.testing.assert_allclose(np.asarray(tr.state.algo_state[k]), np.asarray(want[k]), err_msg=k)
        assert not np.allclose(np.asarray(tr.state.algo_state["alpha"]), 0.5)
    finally:
        tr.close()


def test_hbpo_group_prompts_give_each_row_its_budget(tmp_path):
    tr = make_trainer(
        tmp_path, "hbpo", "train.group_size=4", "algo.budgets=[2, 4]", "algo.l_max=4", "task.max_prompt_len=512"
    )
    try:
        rollout, _ = collect(tr, jax.random.key(0))
        B = 16
        np.testing.assert_array_equal(rollout["budgets"], np.tile([2, 2, 4, 4], 4))
        assert (
            rollout["tokens"].shape[0] == B
            and (rollout["prompt_ids"].reshape(4, 4) == rollout["prompt_ids"][::4, None]).all()
        )
        examples = examples_of(tr, rollout)
        for b in range(B):
            prompt = tr.policy.tokenizer.decode(rollout["prompt_tokens"][b][rollout["prompt_mask"][b] > 0].tolist())
            assert prompt.endswith(tr.cfg.algo.budget_template.format(budget=int(rollout["budgets"][b]))), prompt
            assert prompt.startswith(tr.policy.tokenizer.decode(tr.policy.render(examples[b]))), prompt
        metrics = train.rl_step(tr, metrics_log.Timer())
        assert np.isfinite(metrics["loss"])
    finally:
        tr.close()


def test_dcpo_state_resumes_exactly_from_a_checkpoint(tmp_path):
    tr = make_trainer(tmp_path, "dcpo")
    ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", async_save=False)
    st = tr.state
    try:
        assert tr.cfg.algo.num_prompts == tr.task.num_train == 12
        for _ in range(2):
            train.rl_step(tr, metrics_log.Timer())
            st.step += 1
        ckpt.save(st.step, *tr.checkpoint(), wait=True)
        for _ in range(2):
            train.rl_step(tr, metrics_log.Timer())
            st.step += 1
        straight = jax.tree.map(np.asarray, st.algo_state)
        assert straight["count"].sum() == 16 and straight["count"].max() >= 2  # prompts were revisited

        step, state, meta = ckpt.restore(tr.restore_target)
        assert step == 2
        tr.load(state, meta)
        for _ in range(2):
            train.rl_step(tr, metrics_log.Timer())
            st.step += 1
        resumed = jax.tree.map(np.asarray, st.algo_state)
        for k in straight:
            np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    finally:
        tr.close()
