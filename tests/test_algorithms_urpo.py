"""URPO (``algorithms/urpo.py``, kind ``self_judged``): GRPO's objective on self-judged rewards,
and a referee that reads the policy's LIVE params."""

import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_llm import algorithms, models
from jaxrl_llm.algorithms import grpo, urpo
from jaxrl_llm.judges import generative
from jaxrl_llm.types import Example


def test_loss_is_grpo_on_the_given_rewards():
    rng = np.random.default_rng(0)
    B, T = 4, 3
    rollout = {
        "tokens": jnp.zeros((B, T), jnp.int32),
        "mask": jnp.ones((B, T)),
        "rewards": jnp.asarray([0.9, 0.1, 0.5, 0.5]),
        "group_ids": jnp.asarray([0, 0, 1, 1]),
        "group_size": 2,
        "old_logprobs": jnp.asarray(-rng.random((B, T)), jnp.float32),
        "ref_logprobs": jnp.asarray(-rng.random((B, T)), jnp.float32),
    }
    lp = rollout["old_logprobs"] + 0.1
    cfg = urpo.Config()
    ub, _ = algorithms.make_batch(algorithms.get("urpo"), rollout, cfg)
    gb, _ = algorithms.make_batch(algorithms.get("grpo"), rollout, grpo.Config())
    # A = (r - mean) / (std_ddof1 + eps): group 0 -> +-0.7071, group 1 (equal rewards) -> 0
    np.testing.assert_allclose(ub["advantages"], [0.70710, -0.70710, 0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(urpo.loss(lp, ub, cfg)[0], grpo.loss(lp, gb, grpo.Config())[0], rtol=1e-6)


def test_referee_reads_live_params_and_check_config():
    model, tok = models.get_model("tiny", dtype="float32")
    graphdef, params = nnx.split(model)
    policy = types.SimpleNamespace(graphdef=graphdef, params=params, tokenizer=tok, mesh=None)
    jm = generative.SamplerJudgeModel.from_policy(policy, batch_size=2, max_prompt_len=256)
    judge = generative.GenerativeJudge.on_sampler(jm, mode="logprobs", low=0, high=9)
    e = Example(prompt="1+1?", answer="2", metadata={}, id="0")
    before, _ = judge.score([e, e], ["2", "3"])
    policy.params = jax.tree.map(lambda x: x * 1.5 if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
    after, _ = judge.score([e, e], ["2", "3"])
    assert not np.allclose(before, after), "the referee must judge with the policy's current params"
    run = lambda **a: types.SimpleNamespace(algo=urpo.Config(**a), train=types.SimpleNamespace(group_size=2))
    assert urpo.check_config(run()) is None
    assert "referee_mode" in urpo.check_config(run(referee_mode="votes"))
    assert "self_reward_weight" in urpo.check_config(run(self_reward_weight=1.5))
