"""The trainer: sharded == single-device update, gradient accumulation, non-finite skipping,
optimizer schedule, pass@k, and a short end-to-end run (SFT -> eval -> GRPO -> eval)."""

import dataclasses
import json
import math

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrl_llm import cli, evaluate, metrics_log, models, train, update
from jaxrl_llm import config as C
from jaxrl_llm.rollouts import group
from jaxrl_llm.types import Rollout

TASK = (
    'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
    '"allow_parentheses": false, "allow_negation": false, "num_eval": 16, "size": 2000}'
)


def tiny_config(run_dir, *overrides):
    """A run that compiles and steps in seconds on CPU."""
    return C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={run_dir}",
            "model.name=tiny",
            "task.name=rg:basic_arithmetic",
            TASK,
            "sft.steps=2",
            "sft.batch_size=8",
            "train.steps=2",
            "train.prompts_per_step=4",
            "train.group_size=2",
            "sampling.max_new_tokens=4",
            "eval.num_examples=8",
            "eval.k=0",
            "eval.batch_size=8",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "checkpoint.every=1",
            "algo.beta=0.04",
            *overrides,
        ],
    )


def synthetic_update_inputs(tr, seed=0, B=8, T=4):
    """A GRPO minibatch of random tokens with a ragged completion mask."""
    rng = np.random.default_rng(seed)
    S = 16 + T
    vocab = tr.policy.model_cfg.vocab_size
    tokens = rng.integers(4, vocab, (B, S)).astype(np.int32)
    attention = np.ones((B, S), np.float32)
    attention[:, :3] = 0  # left padding
    mask = (np.arange(T)[None] < rng.integers(1, T + 1, (B, 1))).astype(np.float32)
    attention[:, 16:] = mask
    batch = {
        "mask": mask,
        "advantages": rng.normal(size=B).astype(np.float32),
        "old_logprobs": rng.normal(-3.0, 0.1, (B, T)).astype(np.float32) * mask,
        "ref_logprobs": rng.normal(-3.0, 0.1, (B, T)).astype(np.float32) * mask,
    }
    scalars = {"num_tokens": float(mask.sum()), "num_seqs": float(B)}
    return tokens, attention, batch, scalars


def update_once(tr, name, loss, tokens, attention, batch, scalars, micro_batch_size):
    """One optimizer update of the trainer's policy through its RL ``Updater``."""
    tr.policy.params, tr.state.opt_state, metrics = tr.updater("rl", None).step(
        name,
        tr.rl_tx,
        loss,
        tr.policy.params,
        tr.state.opt_state,
        {"tokens": tokens, "attention_mask": attention},
        batch,
        scalars,
        micro_batch_size,
    )
    return metrics


def run_one_update(tr, micro_batch_size=0, seed=0):
    tokens, attention, batch, scalars = synthetic_update_inputs(tr, seed)
    T = batch["mask"].shape[1]
    metrics = update_once(tr, f"rl/T={T}/G=1", tr.rl_loss(T, 1), tokens, attention, batch, scalars, micro_batch_size)
    return metrics, [np.asarray(jax.device_get(x)) for x in jax.tree.leaves(tr.policy.params)]


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    made = {}
    for name, mesh in [
        ("single", ["mesh.num_devices=1"]),
        ("dp8", ["mesh.data=8"]),
        ("fsdp_tp", ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]),
    ]:
        # Adam divides by |g| + eps: with eps=1e-8 a coordinate whose gradient is float noise
        # (~1e-9, summation-order dependent) moves by a full lr-sized step. eps=1e-3 keeps the
        # comparison about the engine (sharded sums == unsharded sums), not about that noise.
        made[name] = train.Trainer(tiny_config(d / name, "sft.steps=0", "optim.eps=1e-3", *mesh))
    yield made
    for tr in made.values():
        tr.close()


def fresh_state(tr):
    """Snapshot of (params, opt_state) to rewind a trainer to (updates donate the live buffers)."""
    copy = lambda t: jax.tree.map(lambda x: x.copy(), t)
    saved = (copy(tr.policy.params), copy(tr.state.opt_state))

    def rewind():
        tr.policy.params, tr.state.opt_state = copy(saved[0]), copy(saved[1])

    return rewind


def test_sharded_update_equals_single_device(trainers):
    assert len(trainers["dp8"].policy.mesh.devices.flat) == 8
    rewind = fresh_state(trainers["single"])
    ref_metrics, ref_params = run_one_update(trainers["single"])
    rewind()
    assert ref_metrics["finite"] == 1.0 and ref_metrics["grad_norm"] > 0
    for name in ("dp8", "fsdp_tp"):
        metrics, params = run_one_update(trainers[name])
        for k in ("loss", "loss/policy", "kl", "grad_norm"):
            np.testing.assert_allclose(metrics[k], ref_metrics[k], rtol=2e-5, atol=1e-7, err_msg=f"{name} {k}")
        for a, b in zip(params, ref_params):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    # the updated params keep the layout of the rules table (tensor-sharded MLP)
    w = trainers["fsdp_tp"].policy.params["layers"]["w_gate"][...]
    assert w.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")


def test_micro_batches_accumulate_to_the_full_batch_gradient(trainers):
    tr = trainers["single"]
    rewind = fresh_state(tr)
    m_full, p_full = run_one_update(tr, 0)
    rewind()
    m_micro, p_micro = run_one_update(tr, 2)
    rewind()
    for k in ("loss", "kl", "grad_norm", "clip_frac"):
        np.testing.assert_allclose(m_micro[k], m_full[k], rtol=2e-5, atol=1e-7, err_msg=k)
    for a, b in zip(p_micro, p_full):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_non_finite_update_is_skipped(trainers):
    tr = trainers["single"]
    tokens, attention, batch, scalars = synthetic_update_inputs(tr)
    before = [np.asarray(x) for x in jax.tree.leaves(tr.policy.params)]
    nan_loss = lambda params, inputs, b: (b["mask"].sum() * np.nan, {})
    m = update_once(tr, "nan_update", nan_loss, tokens, attention, batch, scalars, 0)
    after = [np.asarray(x) for x in jax.tree.leaves(tr.policy.params)]
    assert m["finite"] == 0.0 and math.isnan(m["loss"])
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_prompt_bucket_is_capped_by_max_prompt_len(trainers):
    """Prompts pad to the power-of-two bucket of the longest, capped at task.max_prompt_len: a
    cap just above the task's prompt lengths (40 for 35-token prompts) wastes no padding."""
    tr = trainers["single"]
    p = tr.policy
    examples = [tr.task.train_example(i) for i in range(4)]
    longest = max(len(p.render(e)) for e in examples)
    assert 32 < longest <= 40
    old = p.cfg
    try:
        p.cfg = dataclasses.replace(old, task=dataclasses.replace(old.task, max_prompt_len=64))
        tokens, mask = p.encode_prompts(examples)
        assert tokens.shape == (4, 64)  # the power-of-two bucket
        capped = dataclasses.replace(old, task=dataclasses.replace(old.task, max_prompt_len=40))
        p.cfg = capped
        tokens40, mask40 = p.encode_prompts(examples)
        assert tokens40.shape == (4, 40)
        np.testing.assert_array_equal(tokens40, tokens[:, 24:])
        np.testing.assert_array_equal(mask40, mask[:, 24:])
        assert mask[:, :24].sum() == 0
        p.cfg = dataclasses.replace(capped, task=dataclasses.replace(capped.task, max_prompt_len=longest - 1))
        with pytest.raises(ValueError, match="task.max_prompt_len"):
            p.encode_prompts(examples)
    finally:
        p.cfg = old


def test_a_run_without_sft_gets_its_reference_model(tmp_path):
    """sft.steps=0 with a KL weight: the frozen reference is set up at construction (the
    smollm2_grpo experiment runs this way)."""
    summary = train.train(tiny_config(tmp_path / "run", "sft.steps=0", "train.steps=1", "algo.beta=0.04"))
    assert summary["status"] == "finished" and summary["step"] == 1
    rl = [r for r in metrics_log.read_metrics(tmp_path / "run") if r["phase"] == "rl"]
    assert len(rl) == 1 and "kl" in rl[0] and math.isfinite(rl[0]["kl"])


def test_optimizer_warmup_cosine_and_clipping():
    tx = update.make_optimizer(
        1.0,
        total_steps=10,
        warmup_steps=2,
        schedule="cosine",
        min_lr_ratio=0.1,
        b1=0.0,
        b2=0.0,
        eps=0.0,
        max_grad_norm=0.5,
    )
    params = {"w": np.zeros(2, np.float32)}
    state = tx.init(params)
    # Adam with b1=b2=0, eps=0 moves each coordinate by lr * sign(g): the step size is the lr.
    steps = []
    for _ in range(4):
        updates, state = tx.update({"w": np.array([3.0, -4.0], np.float32)}, state, params)
        steps.append(float(abs(updates["w"][0])))
    np.testing.assert_allclose(steps[:3], [0.0, 0.5, 1.0], atol=1e-6)
    assert 0.1 < steps[3] < 1.0
    clipped, _ = optax.clip_by_global_norm(0.5).update({"w": np.array([3.0, -4.0])}, None)
    np.testing.assert_allclose(np.linalg.norm(clipped["w"]), 0.5, rtol=1e-6)


def test_pass_at_k_matches_the_combinatorial_formula():
    for n, c, k in [(4, 0, 1), (4, 1, 1), (4, 2, 2), (10, 3, 5), (5, 5, 3)]:
        expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert evaluate.pass_at_k(n, c, k) == pytest.approx(expected)


def test_metric_combination_rules():
    a = {"loss": np.float32(1.0), "ratio/max": np.float32(2.0), "ratio/min": np.float32(0.5)}
    b = {"loss": np.float32(2.0), "ratio/max": np.float32(1.5), "ratio/min": np.float32(0.25)}
    out = update.combine_metrics(a, b)
    assert float(out["loss"]) == 3.0 and float(out["ratio/max"]) == 2.0 and float(out["ratio/min"]) == 0.25


def test_end_to_end_tiny_run(tmp_path):
    cfg = tiny_config(tmp_path, "checkpoint.every=2")
    summary = train.train(cfg)
    assert summary["status"] == "finished" and summary["step"] == 4
    records = metrics_log.read_metrics(tmp_path)
    phases = [r["phase"] for r in records]
    assert phases == ["sft", "sft", "eval", "rl", "rl", "eval"]
    rl = [r for r in records if r["phase"] == "rl"]
    for key in (
        "loss",
        "kl",
        "reward/mean",
        "entropy",
        "grad_norm",
        "time/sample",
        "time/reward",
        "time/update",
        "time/other",
        "completion_len/mean",
        "frac_zero_std_groups",
    ):
        assert key in rl[-1], key
    assert all(math.isfinite(r["loss"]) for r in rl)
    # no recompilation once the first steps have compiled everything
    assert rl[-1]["compiles"] == 0, rl
    assert summary["counters"]["compiles_after_warmup"] == 0
    assert {"before", "after"} <= set(summary["eval"])
    assert json.loads((tmp_path / "summary.json").read_text())["step"] == 4
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    # a finished run resumes to "nothing to do" and keeps its metrics
    again = train.train(cfg)
    assert again["step"] == 4 and metrics_log.read_metrics(tmp_path) == records

    # the CLI around the run directory: plot, sample, export (HF format, reloads to the same weights)
    assert cli.main(["plot", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    assert cli.main(["sample", str(tmp_path), "--prompt", "Calculate 1 + 2.", "--greedy"]) == 0
    assert cli.main(["export", str(tmp_path), str(tmp_path / "hf")]) == 0
    exported, tokenizer = models.load_pretrained(tmp_path / "hf")
    assert tokenizer is not None
    policy, step = evaluate.load_policy(cfg)  # the newest checkpoint's policy, without a trainer
    assert step == 4
    want = jax.tree.leaves(policy.params)
    got = jax.tree.leaves(nnx.state(exported))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    older, step = evaluate.load_policy(cfg, step=2)  # a named step: the params of step 2, not 4's
    assert step == 2
    # the same run stopped after step 2 elsewhere (the trainer is deterministic for a seed) holds
    # step 2's params; comparing with step 4's would not do, as two RL steps whose groups all score
    # alike leave the params where SFT left them
    short = tiny_config(tmp_path / "stopped_at_2", "checkpoint.every=2")
    train.train(short, stop_after=2)
    at_2, step = evaluate.load_policy(short)
    assert step == 2
    for a, b in zip(jax.tree.leaves(older.params), jax.tree.leaves(at_2.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(FileNotFoundError, match="no checkpoint step 3"):
        evaluate.load_policy(cfg, step=3)


@pytest.mark.slow  # a run stopped and resumed: ~15 s
def test_a_resumed_run_does_not_count_its_own_warmup_as_recompiles(tmp_path):
    """A resumed process compiles its programs again in its first two RL steps, its first checkpoint
    save (step 4's, on 8 devices, counted with step 5) and its first evaluation (step 5's, after
    those two steps); none is a recompilation. (Counted from the run's step 1 instead, a run
    resumed at step 50 reported 9 compiles after warm-up.)"""
    cfg = tiny_config(tmp_path, "sft.steps=0", "train.steps=7", "eval.every=5", "checkpoint.every=2")
    assert train.train(cfg, stop_after=2)["status"] == "stopped"
    # as a new process would: nothing compiled in memory, and no persistent cache (the suite's)
    jax.clear_caches()
    cache_was_on = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        summary = train.train(cfg)
    finally:
        jax.config.update("jax_enable_compilation_cache", cache_was_on)
    assert summary["status"] == "finished" and summary["step"] == 7
    rl = {r["step"]: r["compiles"] for r in metrics_log.read_metrics(tmp_path) if r["phase"] == "rl"}
    assert summary["counters"]["compiles_after_warmup"] == 0, sorted(rl.items())
    assert rl[3] > 0 and rl[5] > 0, rl  # the resumed process did compile: step 3, its first save and evaluation
    assert rl[6] == rl[7] == 0, rl


def test_rollout_metrics_split_lengths_by_correctness():
    rewards = np.array([1.0, 0.0, 0.5, 1.0], np.float32)  # 0.5 is below the threshold of 1.0: wrong
    lengths = np.array([2, 3, 5, 4], np.int32)
    m = group.rollout_metrics(Rollout(rewards=rewards, lengths=lengths, group_size=2), 1.0)
    assert m["completion_len/wrong"] == pytest.approx(4.0) and m["completion_len/correct"] == pytest.approx(3.0)
    m = group.rollout_metrics(Rollout(rewards=np.ones(4, np.float32), lengths=lengths, group_size=2), 1.0)
    assert "completion_len/wrong" not in m and m["completion_len/correct"] == pytest.approx(3.5)
