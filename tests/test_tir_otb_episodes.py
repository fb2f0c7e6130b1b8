"""The multi-turn optimal token baseline on the rows it is for: ``train.rollout=episode`` runs
``tir_optimal_token_baseline`` on multi-turn episodes, whose kind then supplies ``sum_pi_squared``;
a kind the method does not declare is refused by the config check."""

import jax
import numpy as np
import pytest

from jaxrl_llm import algorithms, metrics_log, train
from jaxrl_llm import config as C
from jaxrl_llm.policy import Policy
from jaxrl_llm.rollouts import Context, episode, token_stats

BASE = [
    "model.name=tiny",
    "algorithm=tir_optimal_token_baseline",
    "train.rollout=episode",
    "train.prompts_per_step=2",
    "train.group_size=2",
    "train.steps=2",
    "sampling.max_new_tokens=4",
    "env.max_turns=3",
    "env.max_episode_tokens=128",
    "mesh.num_devices=1",
    "eval.every=0",
    "sft.steps=0",
]


def make_cfg(*overrides):
    return C.resolve_algo(C.apply_overrides(C.default_config(), BASE + list(overrides)))


def test_the_kind_must_be_one_the_method_reads():
    assert algorithms.get("tir_optimal_token_baseline").rollouts == ("group", "episode")
    assert algorithms.get("grpo").rollouts == ("group",)
    C.validate(make_cfg())
    with pytest.raises(C.ConfigError, match=r"train.rollout='episode'.*'grpo'.*\['group'\]"):
        C.validate(make_cfg("algorithm=grpo"))


def test_episode_rows_carry_sum_pi_squared_and_give_per_loss_token_advantages():
    cfg = make_cfg()
    policy = Policy.create(cfg)
    algo = algorithms.get(cfg.algorithm)
    ctx = Context(cfg, algo, policy, None, None, None)
    rollout, _ = episode.collect(ctx, jax.random.key(0), None)
    want = token_stats.sum_pi_squared(policy, rollout.prompt_tokens, rollout.prompt_mask, rollout.tokens, rollout.mask)
    np.testing.assert_array_equal(rollout.extras["sum_pi_squared"], want)
    policy_tokens = np.asarray(rollout.loss_mask) > 0
    # the rows hold observation tokens too (mask 1, loss_mask 0): the case the estimator is for
    assert policy_tokens.any() and (np.asarray(rollout.mask)[~policy_tokens] > 0).any()
    s = np.asarray(rollout.extras["sum_pi_squared"])[policy_tokens]
    assert ((s > 0) & (s <= 1 + 1e-6)).all()
    adv, _ = algo.advantages(rollout.with_items(old_logprobs=rollout.sampler_logprobs), algo.Config())
    adv = np.asarray(adv)
    assert adv.shape == rollout.tokens.shape and np.isfinite(adv).all()
    assert (adv[~policy_tokens] == 0).all()


def test_tir_otb_trains_on_episodes(tmp_path):
    assert train.train(make_cfg(f"run_dir={tmp_path}"))["status"] == "finished"
    rows = [r for r in metrics_log.read_metrics(tmp_path) if r.get("phase") == "rl"]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    assert all("episode/success" in r for r in rows)
