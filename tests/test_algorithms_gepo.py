"""GEPO (``algorithms/gepo.py``): the paper's hand-computed group preference case, the gradient
weights its advantages report, the mixed rollout's layout and its bad-input errors."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm.algorithms import gepo
from jaxrl_llm.judges import pairing
from jaxrl_llm.rollouts import pairs
from jaxrl_llm.types import Example


def test_hand_computed_group_loss():
    # beta 0.1, winner log-ratios [1, 3] (r_hat 0.1, 0.3), loser [-1] (r_hat -0.1): margin 0.3,
    # -log sigma(0.3) = 0.554355, population Var = 0.01 -> L_GEPO (lambda 1) = 0.564355.
    cfg = gepo.Config(beta=0.1, lam=1.0)
    log_ratio = jnp.asarray([9.0, 1.0, 3.0, -1.0])  # row 0 on-policy: ignored
    group_ids = jnp.asarray([0, 1, 1, 1])
    role = jnp.asarray([0.0, 1.0, 1.0, -1.0])
    t = gepo.group_terms(log_ratio, group_ids, role, cfg)
    np.testing.assert_allclose(t["margin"], [0.0, 0.3, 0.3, 0.3], atol=1e-6)
    np.testing.assert_allclose(t["var"], [0.0, 0.01, 0.01, 0.01], atol=1e-6)
    np.testing.assert_allclose(gepo.gepo_loss(log_ratio, group_ids, role, 1.0, cfg), 0.564355, atol=1e-6)
    # lambda = 0 is DPO on group means; a second, different group averages in.
    np.testing.assert_allclose(
        gepo.gepo_loss(log_ratio, group_ids, role, 1.0, gepo.Config(beta=0.1, lam=0.0)), 0.554355, atol=1e-6
    )
    two = gepo.gepo_loss(
        jnp.asarray([1.0, 3.0, -1.0, 0.0, 0.0]),
        jnp.asarray([1, 1, 1, 2, 2]),
        jnp.asarray([1.0, 1.0, -1.0, 1.0, -1.0]),
        2.0,
        cfg,
    )
    np.testing.assert_allclose(two, (0.564355 + np.log(2.0)) / 2, atol=1e-6)


def _batch(cfg, lp_old, lp_ref):
    B, T = lp_old.shape
    rollout = {
        "tokens": jnp.zeros((B, T), jnp.int32),
        "mask": jnp.ones((B, T)),
        "rewards": jnp.asarray([1.0, 0.0, 1.0, 1.0, 0.0]),
        "group_ids": jnp.asarray([0, 0, 1, 1, 1]),
        "group_size": 1,
        "old_logprobs": lp_old,
        "ref_logprobs": lp_ref,
        "gepo_role": jnp.asarray([0.0, 0.0, 1.0, 1.0, -1.0]),
    }
    batch, _ = algorithms.make_batch(algorithms.get("gepo"), rollout, cfg)
    return batch


def test_loss_value_and_static_advantages_are_the_gepo_gradient():
    cfg = gepo.Config(beta=0.1, w_gepo=0.5, kl_coef=0.0)
    ref = jnp.zeros((5, 2))
    old = jnp.asarray([[-1.0, -1.0], [-2.0, -1.0], [0.5, 0.5], [1.5, 1.5], [-0.5, -0.5]])  # static log-ratios 1, 3, -1
    batch = _batch(cfg, old, ref)
    loss, m = gepo.loss(old, batch, cfg)
    np.testing.assert_allclose(m["loss/gepo"], 0.564355, atol=1e-6)
    np.testing.assert_allclose(loss, m["loss/on_policy"] + 0.5 * 0.564355, atol=1e-6)
    # the static rows' advantages are -w_gepo dL/ds_b: winners pushed up, the loser down
    adv = np.asarray(batch["advantages"])[:, 0]
    s = jnp.asarray([1.0, 3.0, -1.0])
    grad = jax.grad(lambda s: gepo.gepo_loss(s, jnp.asarray([1, 1, 1]), jnp.asarray([1.0, 1.0, -1.0]), 1.0, cfg))(s)
    np.testing.assert_allclose(adv[2:], -0.5 * np.asarray(grad), rtol=1e-5)
    # winner 1 (r_hat 0.1) is below the winners' mean: the variance term pushes it up more than winner 2
    assert adv[2] > adv[3] > 0 > adv[4]
    # w_gepo = 0 is REINFORCE++ alone: the static rows carry no weight
    plain = _batch(gepo.Config(w_gepo=0.0, kl_coef=0.0), old, ref)
    np.testing.assert_allclose(np.asarray(plain["advantages"])[2:], 0.0)
    np.testing.assert_allclose(np.asarray(plain["advantages"])[:2], np.asarray(batch["advantages"])[:2], rtol=1e-6)


def test_check_config_keeps_groups_whole():
    run = lambda **t: types.SimpleNamespace(
        algo=gepo.Config(),
        train=types.SimpleNamespace(
            **{"num_minibatches": 1, "micro_batch_size": 0, "prompts_per_step": 2, "group_size": 4, **t}
        ),
    )
    assert gepo.check_config(run()) is None
    assert "num_minibatches" in gepo.check_config(run(num_minibatches=2))
    assert "micro_batch_size=6" in gepo.check_config(run(micro_batch_size=6))
    assert gepo.check_config(run(micro_batch_size=4)) is None


def ex(i, meta=None, answer="7"):
    return Example(prompt=f"q{i}", answer=answer, metadata=meta or {}, id=str(i))


def test_stored_groups_and_malformed_preference_rows():
    e = ex(0, {"chosen": ["a", "b", "c"], "rejected": "x"})
    assert pairs.stored_group(e, 2, 1) == (["a", "b"], ["x"])
    with pytest.raises(ValueError, match="example '0' has 1 'rejected' texts, the method needs 2"):
        pairs.stored_group(e, 2, 2)
    with pytest.raises(ValueError, match="example '1': 'chosen' must be a text or a list of texts"):
        pairs.stored_group(ex(1, {"chosen": [1, 2], "rejected": "x"}), 1, 1)


def test_verifiable_group_is_labelled_by_the_verifier():
    score = lambda texts, exs: (np.asarray([float("<answer>7</answer>" == t.strip() or t == "7") for t in texts]), {})
    won, lost = pairing.verifiable_group(ex(0), 2, 2, score)
    assert won == ["7", "<answer>7</answer>"]  # " 7", "7 ", "<answer> 7 </answer>" scored 0 here: not winners
    assert lost == ["8", "6"]
    assert pairing.verifiable_group(ex(0, answer="seven"), 1, 1, score) is None
    assert pairing.verifiable_group(ex(0), 3, 1, score) is None  # the verifier accepts only 2 forms


def test_mixed_rollout_shares_prompts_in_runs_of_gcd_rows_and_matches_the_unshared_update(tmp_path, monkeypatch):
    """On-policy groups of G = 4 and static groups of 2 + 4 = 6 rows: runs of gcd = 2 rows share a
    prompt, so the update computes each prompt once per run; the step's loss equals the one with
    prompt sharing off (every row computes its prompt)."""
    from test_registry_train import TASK, tiny_run

    from jaxrl_llm import metrics_log, train

    def run(name, share):
        cfg = tiny_run(
            tmp_path / name,
            "gepo",
            TASK,
            "train.steps=1",
            "train.group_size=4",
            f"train.share_prompt={str(share).lower()}",
            "algo.n_winners=2",
            "algo.n_losers=4",
            "algo.groups_per_step=2",
            "sampling.max_new_tokens=4",
        )
        train.train(cfg)
        return [r for r in metrics_log.read_metrics(tmp_path / name) if r.get("phase") == "rl"][0]

    from jaxrl_llm import update

    shares = []
    real = update.prompt_sharing
    monkeypatch.setattr(update, "prompt_sharing", lambda *a: shares.append(real(*a)) or shares[-1])
    shared, unshared = run("shared", True), run("unshared", False)
    assert shares == [2, 1]
    assert "loss" in shared and "grad_norm" in shared
    for k in ("loss", "grad_norm"):
        np.testing.assert_allclose(shared[k], unshared[k], rtol=2e-4, atol=1e-6)
