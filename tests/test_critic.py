"""The value head (``models/critic.py``) and PPO with a critic through the trainer: values read at
the right positions, both layouts train, the critic is sharded by the rules table, checkpointed
with the run (exact round trip) and exported as safetensors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as C
from jaxrl_llm import metrics_log, train
from jaxrl_llm.models import critic, get_model, positions_from_mask
from jaxrl_llm.policy import Policy

TASK = (
    'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
    '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 40}'
)


def ppo_config(run_dir, *overrides):
    return C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={run_dir}",
            "model.name=tiny",
            "task.name=rg:basic_arithmetic",
            TASK,
            "sft.steps=0",
            "train.steps=2",
            "train.prompts_per_step=2",
            "train.group_size=2",
            "train.share_prompt=false",
            "sampling.max_new_tokens=3",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "algorithm=ppo",
            "optim.learning_rate=1e-2",
            *overrides,
        ],
    )


def test_values_are_read_at_the_position_before_each_completion_token():
    model, _ = get_model("tiny", seed=0)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, model.cfg.vocab_size, (2, 7)), jnp.int32)
    mask = jnp.asarray([[0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]], jnp.float32)
    head = critic.init_head(model.cfg.hidden_size)
    head["w"][...] = jnp.asarray(rng.normal(size=model.cfg.hidden_size), jnp.float32)
    head["b"][...] = jnp.float32(0.5)
    v = critic.completion_values(model, head, tokens, mask, 3)
    hidden, _ = model.hidden_states(tokens, positions_from_mask(mask), mask)
    want = np.asarray(hidden, np.float32)[:, 3:6] @ np.asarray(head["w"][...]) + 0.5
    assert v.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(v), want, rtol=1e-5, atol=1e-5)


def test_create_copies_the_trunk_and_zeroes_the_head():
    model, _ = get_model("tiny", seed=0)
    params = nnx.state(model)
    sep = critic.create("separate", params)
    assert set(sep) == {"trunk", "head"} and float(jnp.abs(sep["head"]["w"][...]).sum()) == 0.0
    for a, b in zip(jax.tree.leaves(sep["trunk"]), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
        assert a is not b
    assert set(critic.create("shared", params)) == {"head"}
    with pytest.raises(ValueError, match="critic layout"):
        critic.create("both", params)


def test_critic_is_sharded_by_the_rules_table():
    cfg = C.apply_overrides(C.default_config(), ["model.name=tiny", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"])
    policy = Policy.create(C.resolve_algo(cfg))
    c = critic.create("separate", policy.params)
    sh = policy.shardings_of(c)
    assert sh["head"]["w"].spec == jax.sharding.PartitionSpec("fsdp")  # "embed" -> fsdp
    assert sh["trunk"]["layers"]["w_gate"].spec == policy.param_shardings["layers"]["w_gate"].spec


@pytest.mark.parametrize("layout", ["separate", "shared"])
def test_ppo_trains_its_critic_and_checkpoints_it(tmp_path, layout):
    tr = train.Trainer(ppo_config(tmp_path / layout, f"train.critic={layout}"))
    ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", async_save=False)
    try:
        assert tr.state.critic is not None and float(jnp.abs(tr.state.critic["head"]["w"][...]).sum()) == 0.0
        assert ("trunk" in tr.state.critic) == (layout == "separate")
        policy_before = [np.asarray(x).copy() for x in jax.tree.leaves(tr.policy.params)]
        m = train.rl_step(tr, metrics_log.Timer())
        tr.state.step += 1
        assert np.isfinite(m["loss"]) and "loss/value" in m and m["loss/value"] > 0
        assert float(jnp.abs(tr.state.critic["head"]["w"][...]).sum()) > 0  # the value loss moved the head
        moved = max(np.abs(np.asarray(a) - b).max() for a, b in zip(jax.tree.leaves(tr.policy.params), policy_before))
        assert moved > 0
        ckpt.save(tr.state.step, *tr.checkpoint(), wait=True)
        saved = [np.asarray(x).copy() for x in jax.tree.leaves(tr.state.critic)]
        train.rl_step(tr, metrics_log.Timer())
        step, tree, meta = ckpt.restore(tr.restore_target)
        tr.load(tree, meta)
        assert step == 1
        for a, b in zip(jax.tree.leaves(tr.state.critic), saved):
            np.testing.assert_array_equal(np.asarray(a), b)
        out = critic.save(tr.state.critic, tmp_path / "export", layout)
        tensors = load_file(str(out))
        np.testing.assert_array_equal(tensors["head.w"], np.asarray(tr.state.critic["head"]["w"][...]))
        assert ("trunk.embed" in tensors) == (layout == "separate")
    finally:
        ckpt.close()
        tr.close()
