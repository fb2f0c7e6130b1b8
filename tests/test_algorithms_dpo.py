"""The DPO family (``dpo``, ``ipo``, ``online_dpo``): hand-computed cases, the formulas of TRL's
``DPOTrainer`` / ``OnlineDPOTrainer`` (written out here in NumPy over TRL's [chosen; rejected]
batch layout), row-order and micro-batch invariance, and an offline run on a preference file."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms, metrics_log, train
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import dpo, ipo, online_dpo
from jaxrl_llm.tasks import TaskDataError, make_task
from jaxrl_llm.types import Batch


def pair_batch(lp, ref, mask, chosen, group_ids, old=None):
    lp, ref, mask = (jnp.asarray(x, jnp.float32) for x in (lp, ref, mask))
    batch = Batch.from_mapping(
        {
            "old_logprobs": lp if old is None else jnp.asarray(old, jnp.float32),
            "ref_logprobs": ref,
            "mask": mask,
            "advantages": jnp.zeros(mask.shape[0]),
            "group_ids": jnp.asarray(group_ids, jnp.int32),
            "chosen": jnp.asarray(chosen, jnp.float32),
            "num_tokens": jnp.sum(mask),
            "num_seqs": jnp.float32(mask.shape[0]),
        }
    )
    return lp, batch


# One pair: chosen row 0 (2 tokens), rejected row 1 (1 token; the second entry is padding junk).
LP = [[-1.0, -1.0], [-4.0, 50.0]]
REF = [[-1.5, -1.5], [-3.5, -9.0]]
MASK = [[1.0, 1.0], [1.0, 0.0]]


def test_dpo_hand_computed():
    # h = (-2 - -3) - (-4 - -3.5) = 1.5 ; loss = -log sigmoid(0.1 * 1.5) = log(1 + e^-0.15)
    lp, batch = pair_batch(LP, REF, MASK, [1, 0], [0, 0])
    loss, m = dpo.loss(lp, batch, dpo.Config(beta=0.1))
    assert float(loss) == pytest.approx(0.6209573, rel=1e-6)
    assert float(m["rewards/margin"]) == pytest.approx(0.15, rel=1e-6)
    assert float(m["rewards/accuracy"]) == 1.0
    # label smoothing 0.1: 0.9 * log(1 + e^-0.15) + 0.1 * log(1 + e^0.15)
    loss_s, _ = dpo.loss(lp, batch, dpo.Config(beta=0.1, label_smoothing=0.1))
    assert float(loss_s) == pytest.approx(0.9 * 0.6209573 + 0.1 * 0.7709573, rel=1e-6)
    # gradient: d/d lp_w = -beta sigma(-beta h) / num_pairs, on each real chosen token
    g = jax.grad(lambda x: dpo.loss(x, batch, dpo.Config(beta=0.1))[0])(lp)
    w = 0.1 / (1 + math.exp(0.15))
    np.testing.assert_allclose(g, [[-w, -w], [w, 0.0]], rtol=1e-5)


def test_ipo_hand_computed():
    lp, batch = pair_batch(LP, REF, MASK, [1, 0], [0, 0])
    # length-averaged: chosen 1.0 / 2 = 0.5, rejected -0.5 / 1 ; h = 1.0 ; (1 - 1/(2*0.1))^2 = 16
    loss, _ = ipo.loss(lp, batch, ipo.Config(beta=0.1))
    assert float(loss) == pytest.approx(16.0, rel=1e-6)
    # summed (OnlineDPOTrainer's ipo): h = 1.5 ; (1.5 - 5)^2 = 12.25
    loss, _ = ipo.loss(lp, batch, ipo.Config(beta=0.1, length_normalized=False))
    assert float(loss) == pytest.approx(12.25, rel=1e-6)


def test_online_dpo_hand_computed_and_pairs_on_policy():
    lp, batch = pair_batch(LP, REF, MASK, [1, 0], [0, 0])
    loss, _ = online_dpo.loss(lp, batch, online_dpo.Config(beta=0.1))
    assert float(loss) == pytest.approx(0.6209573, rel=1e-6)
    assert online_dpo.pairing(online_dpo.Config()).source == "policy"


def test_online_dpo_takes_the_cyclic_oracle():
    """INPO's comparison: the same oracle's (best, worst) pairs feed online DPO's logistic loss."""
    from jaxrl_llm.config import default_config
    from jaxrl_llm.judges import oracle

    p = online_dpo.pairing(online_dpo.Config(oracle="cyclic", oracle_margin=0.3))
    assert isinstance(p.judge, oracle.CyclicOracle) and p.judge.margin == 0.3 and p.source == "policy"
    assert online_dpo.pairing(online_dpo.Config()).judge is None  # the task's reward
    run = dataclasses.replace(default_config(), algorithm="online_dpo", algo=online_dpo.Config(oracle="bt"))
    assert "algo.oracle must be one of ('reward', 'cyclic'), got 'bt'" in online_dpo.check_config(run)
    with pytest.raises(ValueError, match="algo.oracle must be one of"):
        oracle.pair_judge("bt")


def trl_reference(lp, ref, mask, chosen_rows, rejected_rows, beta, loss_type, average):
    """TRL's formulas over its [chosen; rejected] layout: per-sequence summed log-probs (averaged
    over completion tokens for DPOTrainer's ipo), logits = (pi_c - ref_c) - (pi_r - ref_r)."""
    lp, ref, mask = (np.asarray(x, np.float64) for x in (lp, ref, mask))
    s = (lp * mask).sum(1) - (ref * mask).sum(1)
    if average:
        s = s / np.maximum(mask.sum(1), 1)
    logits = s[chosen_rows] - s[rejected_rows]
    if loss_type == "sigmoid":
        losses = np.log1p(np.exp(-beta * logits))
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    return losses.mean()


@pytest.mark.parametrize(
    "mod,cfg,loss_type,average",
    [
        (dpo, dpo.Config(beta=0.3), "sigmoid", False),
        (ipo, ipo.Config(beta=0.2), "ipo", True),
        (ipo, ipo.Config(beta=0.2, length_normalized=False), "ipo", False),
        (online_dpo, online_dpo.Config(beta=0.05), "sigmoid", False),
    ],
)
def test_matches_trl_formulas_in_any_row_order(mod, cfg, loss_type, average):
    rng = np.random.default_rng(0)
    B, T = 10, 5
    lp = -np.abs(rng.normal(size=(B, T)))
    ref = -np.abs(rng.normal(size=(B, T)))
    mask = (np.arange(T)[None] < rng.integers(1, T + 1, size=B)[:, None]).astype(np.float32)
    perm = rng.permutation(B)  # pair p = rows perm[2p] (chosen), perm[2p + 1] (rejected), scattered
    group_ids = np.empty(B, np.int32)
    group_ids[perm] = np.repeat(np.arange(B // 2), 2)
    chosen = np.zeros(B, np.float32)
    chosen[perm[0::2]] = 1.0
    expected = trl_reference(lp, ref, mask, perm[0::2], perm[1::2], cfg.beta, loss_type, average)
    x, batch = pair_batch(lp, ref, mask, chosen, group_ids)
    loss, _ = mod.loss(x, batch, cfg)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(jax.jit(lambda a, b: mod.loss(a, b, cfg)[0])(x, batch)) == pytest.approx(expected, rel=1e-5)


def test_pairs_split_by_pair_add_up_and_dropped_pairs_count_in_no_loss():
    rng = np.random.default_rng(1)
    lp = -np.abs(rng.normal(size=(8, 3)))
    ref = -np.abs(rng.normal(size=(8, 3)))
    mask = np.ones((8, 3), np.float32)
    x, batch = pair_batch(lp, ref, mask, [1, 0, 0, 1, 1, 0, 0, 1], [0, 0, 1, 1, 2, 2, 3, 3])
    cfg = dpo.Config(beta=0.2)
    full = jax.value_and_grad(lambda a: dpo.loss(a, batch, cfg)[0])(x)
    rows = lambda t, i: jax.tree.map(lambda v: v[i : i + 2] if v.ndim and v.shape[0] == 8 else v, t)
    parts = [jax.value_and_grad(lambda a: dpo.loss(a, rows(batch, i), cfg)[0])(x[i : i + 2]) for i in range(0, 8, 2)]
    assert float(sum(p[0] for p in parts)) == pytest.approx(float(full[0]), rel=1e-6)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), full[1], rtol=1e-6)
    # zeroing one pair's loss mask (a tie) removes it: 3 pairs left, still divided by num_pairs = 4
    dropped = batch.with_items(mask=batch["mask"].at[2:4].set(0.0))
    loss_d = dpo.loss(x, dropped, cfg)[0]
    assert float(loss_d) == pytest.approx(float(full[0]) - float(parts[1][0]), rel=1e-6)


def test_dpo_config_checks():
    with pytest.raises(C.ConfigError, match="dpo needs algo.beta > 0"):
        C.apply_overrides(C.default_config(), ["algorithm=dpo", "algo.beta=0.0"])
    with pytest.raises(C.ConfigError, match="micro_batch_size=3 must be even"):
        C.apply_overrides(C.default_config(), ["algorithm=dpo", "train.prompts_per_step=3", "train.micro_batch_size=3"])
    with pytest.raises(C.ConfigError, match="share_prompt"):
        C.apply_overrides(C.default_config(), ["algorithm=ipo", "train.num_minibatches=2", "train.share_prompt=false"])


def _write_pairs(path, n):
    rows = [{"prompt": f"What is {i} + {i}?", "chosen": f"{2 * i} it is", "rejected": f"no idea {i}"} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


@pytest.mark.slow
def test_offline_dpo_trains_on_preference_file(tmp_path):
    """dpo on the ``preference`` task's stored pairs (4 steps, ~60 s on the 2-core machine): the
    implicit-reward margin rises (the DPO loss falls) on a fixed set of pairs, no recompilation
    after warm-up."""
    path = _write_pairs(tmp_path / "pairs.jsonl", 4)
    cfg = C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={tmp_path / 'run'}",
            "model.name=tiny",
            "task.name=preference",
            f'task.kwargs={{"path": "{path}"}}',
            "sft.steps=0",
            "train.steps=4",
            "train.prompts_per_step=4",
            "train.group_size=2",
            "sampling.max_new_tokens=16",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "checkpoint.every=0",
            "optim.learning_rate=0.01",
            "algorithm=dpo",
            "algo.beta=0.5",
        ],
    )
    summary = train.train(cfg)
    assert summary["status"] == "finished"
    rl = [r for r in metrics_log.read_metrics(tmp_path / "run") if r["phase"] == "rl"]
    assert len(rl) == 4 and all(math.isfinite(r["loss"]) for r in rl)
    assert rl[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-4)  # pi = pi_ref at the first step
    assert rl[-1]["loss"] < rl[0]["loss"] - 1e-3 and rl[-1]["rewards/margin"] > 0
    assert rl[-1]["compiles"] == 0


def test_malformed_preference_files_are_named_errors(tmp_path):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": \n')
    with pytest.raises(TaskDataError, match=r"bad\.jsonl:2"):
        make_task("preference", path=str(bad_json))
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(TaskDataError, match=r"missing\.jsonl:1: record lacks field 'rejected'"):
        make_task("preference", path=str(missing))


def test_registered_with_pairs_rollout():
    for name in ("dpo", "ipo", "online_dpo"):
        algo = algorithms.get(name)
        assert algo.rollout == "pairs" and algo.uses_reference(algo.Config())
    assert dataclasses.replace(dpo.Config(), beta=0.2).beta == 0.2
