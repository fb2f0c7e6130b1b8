"""``train.rollout_correction``: the sampler's and the trainer's log-probs give the importance
weights ``is_weights`` (token TIS) or drop rows (sequence MIS) before the batch's normalizers."""

import math

import numpy as np
import pytest

from jaxrl_llm import algorithms, metrics_log, train
from jaxrl_llm import config as C
from jaxrl_llm.rollouts import correction
from jaxrl_llm.types import Rollout


def rollout_with(old, sampler, mask=None):
    old = np.asarray(old, np.float32)
    mask = np.ones_like(old) if mask is None else np.asarray(mask, np.float32)
    return Rollout(
        tokens=np.zeros(old.shape, np.int32),
        mask=mask,
        rewards=np.array([1.0, 0.0], np.float32),
        group_ids=np.zeros(2, np.int32),
        old_logprobs=old,
        ref_logprobs=old,
        sampler_logprobs=np.asarray(sampler, np.float32),
        group_size=2,
    )


def test_token_weights_are_one_when_sampler_and_trainer_agree():
    lp = np.log(np.array([[0.5, 0.25, 0.125], [0.9, 0.3, 0.2]], np.float32))
    out, metrics = correction.apply(rollout_with(lp, lp), "token_tis", cap=2.0)
    np.testing.assert_allclose(out["is_weights"], np.ones((2, 3)), rtol=1e-6)
    assert metrics["rollout_is/mean"] == pytest.approx(1.0) and metrics["rollout_is/kl_k3"] == pytest.approx(
        0.0, abs=1e-7
    )


def test_token_weights_are_the_capped_ratio_when_they_differ():
    old = np.log(np.array([[0.5, 0.2, 0.9], [0.3, 0.3, 0.3]], np.float32))
    mu = np.log(np.array([[0.25, 0.4, 0.1], [0.3, 0.6, 0.3]], np.float32))
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    out, _ = correction.apply(rollout_with(old, mu, mask), "token_tis", cap=3.0)
    # pi_old / mu = 2, 0.5, 9 -> capped at 3; 1, 0.5; padding 0
    np.testing.assert_allclose(out["is_weights"], [[2.0, 0.5, 3.0], [1.0, 0.5, 0.0]], rtol=1e-5)


def test_sequence_mis_drops_rows_whose_ratio_leaves_the_band():
    old = np.log(np.array([[0.5, 0.5], [0.5, 0.5]], np.float32))
    mu = np.log(np.array([[0.5, 0.45], [0.1, 0.1]], np.float32))  # row 1: ratio 5 per token
    out, metrics = correction.apply(rollout_with(old, mu), "sequence_mis", low=0.5, high=2.0)
    np.testing.assert_array_equal(out.loss_mask, [[1, 1], [0, 0]])
    assert metrics["rollout_is/frac_masked"] == pytest.approx(0.5)
    algo = algorithms.get("grpo")
    batch, _ = algorithms.make_batch(algo, out, algo.Config())
    assert float(batch["num_tokens"]) == 2.0  # the dropped row leaves the normalizer too
    assert correction.apply(rollout_with(old, mu), "off")[0].loss_mask is None
    with pytest.raises(ValueError, match="rollout_correction"):
        correction.apply(rollout_with(old, mu), "tis")


def test_the_weights_reach_the_loss():
    algo = algorithms.get("grpo")
    old = np.log(np.array([[0.5, 0.2, 0.9], [0.3, 0.3, 0.3]], np.float32))
    mu = np.log(np.array([[0.25, 0.4, 0.1], [0.3, 0.6, 0.3]], np.float32))
    plain, _ = algorithms.make_batch(algo, rollout_with(old, mu), algo.Config())
    weighted, _ = algorithms.make_batch(
        algo, correction.apply(rollout_with(old, mu), "token_tis", cap=3.0)[0], algo.Config()
    )
    assert "is_weights" not in plain and weighted.is_weights is not None
    lp = old + 0.1
    l_plain = float(algo.loss(lp, plain, algo.Config())[0])
    l_weighted = float(algo.loss(lp, weighted, algo.Config())[0])
    assert l_plain != pytest.approx(l_weighted)


def test_the_trainer_applies_it(tmp_path):
    TASK = (
        'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
        '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 40}'
    )
    cfg = C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={tmp_path}",
            "model.name=tiny",
            "task.name=rg:basic_arithmetic",
            TASK,
            "sft.steps=0",
            "train.steps=1",
            "train.prompts_per_step=2",
            "train.group_size=2",
            "sampling.max_new_tokens=2",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "train.old_logprobs=recompute",
            "train.rollout_correction=token_tis",
        ],
    )
    tr = train.Trainer(cfg)
    try:
        m = train.rl_step(tr, metrics_log.Timer())
    finally:
        tr.close()
    # f32 sampler and f32 trainer: the weights are 1 up to float rounding
    assert math.isfinite(m["loss"]) and m["rollout_is/mean"] == pytest.approx(1.0, abs=1e-3)
