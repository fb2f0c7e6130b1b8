"""Row-chunked forward passes and the micro-batch checks on a step's real row count.

``train.micro_batch_size`` > 0 runs the whole-batch forward passes (pi_ref, a recomputed pi_old,
the critic's values: ``Policy.by_row_chunks``) in chunks of that many rows, one compiled shape
whatever the row count; the update checks ``train.num_minibatches`` and ``micro_batch_size``
against the rows the kind produced (``update.check_rows``), and ``config.validate`` against
``prompts_per_step * group_size`` only for the kinds whose rows that is."""

import dataclasses

import jax
import numpy as np
import pytest
from test_registry_train import tiny_run
from test_shared_prompt import grouped_batch

from jaxrl_llm import config as C
from jaxrl_llm import metrics_log, train, update
from jaxrl_llm.policy import Policy


def with_train(cfg, **train_fields):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_fields))


@pytest.fixture(scope="module")
def policies():
    """The ``tiny`` policy on one device and on the 8-device data mesh."""
    cfg = C.apply_overrides(C.default_config(), ["model.name=tiny"])
    one = Policy.create(dataclasses.replace(cfg, mesh=dataclasses.replace(cfg.mesh, num_devices=1)))
    eight = Policy.create(cfg)
    return one, eight


def micro(policy, rows):
    """``policy`` (same params and mesh) with ``train.micro_batch_size=rows``."""
    cfg = with_train(policy.cfg, micro_batch_size=rows)
    return Policy(cfg, policy.graphdef, policy.params, policy.tokenizer, policy.mesh, policy.param_shardings)


def rows(policy, B, T=5):
    """B rows of random ``[prompt | completion]`` tokens, left-padded prompts, ragged completions."""
    tokens, attention, _ = grouped_batch(policy.model_cfg.vocab_size, P=B, G=1, T=T)
    return tokens, attention


@pytest.mark.parametrize("mesh, rows_per_chunk, B", [("one", 3, 10), ("one", 4, 4), ("eight", 4, 13)])
def test_chunked_logprobs_equal_one_pass(policies, mesh, rows_per_chunk, B):
    """A row count that is not a multiple of the chunk (padded, the padding dropped) and one that
    is: the chunked log-probs equal the one-pass ones (measured: bitwise, or within 2 ulps of
    log-probs ~ -5 where XLA picks other kernels for the chunk's shape)."""
    policy = policies[0] if mesh == "one" else policies[1]
    tokens, attention = rows(policy, B)
    whole = micro(policy, 0).logprobs(policy.params, tokens, attention, 5)
    chunked = micro(policy, rows_per_chunk).logprobs(policy.params, tokens, attention, 5)
    assert chunked.shape == whole.shape == (B, 5) and chunked.dtype == np.float32
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5)


def test_chunks_compile_once_whatever_the_row_count(policies):
    """Every chunk, the padded last one too, is the same [3, S] call: 10 and 31 rows (4 and 11
    chunks) compile nothing after the first call."""
    policy = micro(policies[0], 3)
    calls = []
    real = policy._logprobs
    policy._logprobs = lambda params, tokens, *a: calls.append(tokens.shape) or real(params, tokens, *a)
    tokens, attention = rows(policy, 31)
    policy.logprobs(policy.params, tokens[:7], attention[:7], 5)  # compiles the [3, S] chunk
    compiles = metrics_log.CompileCounter()
    calls.clear()
    for B in (10, 31):  # 4 and 11 chunks
        policy.logprobs(policy.params, tokens[:B], attention[:B], 5)
    assert compiles.take() == 0
    assert calls == [(3, tokens.shape[1])] * 15


def test_groups_share_their_prompt_in_whole_group_chunks(policies):
    """Rows in groups of G sharing a prompt: chunks of whole groups compute each prompt once (the
    last chunk's padding is whole groups too); a chunk that would split a group computes every
    row's prompt (equal up to float rounding, as ``train.share_prompt`` says)."""
    policy = policies[0]
    G, T = 2, 5
    tokens, attention, _ = grouped_batch(policy.model_cfg.vocab_size, P=5, G=G, T=T)
    whole = micro(policy, 0).logprobs(policy.params, tokens, attention, T, G)
    np.testing.assert_allclose(micro(policy, 4).logprobs(policy.params, tokens, attention, T, G), whole, atol=1e-5)
    np.testing.assert_allclose(micro(policy, 3).logprobs(policy.params, tokens, attention, T, G), whole, atol=1e-5)


def test_chunks_are_split_over_the_row_shards(policies):
    """On the 8-device data mesh a chunk of 4 rows would be replicated (every device running all
    4); the chunk is rounded up to 8 rows, one a device. With data x fsdp = 4 shards, 6 -> 12."""
    policy = micro(policies[1], 4)
    assert policy.row_chunk() == 8
    seen = []

    def fn(x):
        seen.append((x.shape, {s.data.shape for s in x.addressable_shards}))
        return x * 2

    x = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    np.testing.assert_array_equal(policy.by_row_chunks(fn, x), x * 2)
    assert seen == [((8, 3), {(1, 3)})] * 3
    cfg = dataclasses.replace(policy.cfg, mesh=C.MeshConfig(data=2, fsdp=2, tensor=2))
    fsdp = Policy.create(with_train(cfg, micro_batch_size=6))
    assert fsdp.row_chunk() == 12


def test_update_warns_once_when_its_micro_batches_would_be_replicated(policies):
    """The update's micro-batches are not padded (the losses' normalizers count real rows), so a
    micro-batch the row shards do not divide is replicated: the Updater says so once per program,
    naming the setting. 8 rows on 8 devices split one a device and say nothing."""
    import warnings

    import jax.numpy as jnp
    import optax

    one, eight = policies
    tx = optax.sgd(0.1)

    def loss_fn(w, inputs, batch):
        loss = jnp.sum(w["w"] ** 2) + jnp.mean(inputs["tokens"].astype(jnp.float32))
        return loss, {}

    def run(policy, name, micro_batch):
        up = update.Updater({"w": policy.replicated}, policy.put, policy.replicated)
        w = {"w": jax.device_put(jnp.ones(3), policy.replicated)}
        tokens = np.zeros((8, 5), np.int32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                w, opt, _ = up.step(name, tx, loss_fn, w, up.init(tx, w), {"tokens": tokens}, {}, {}, micro_batch)
        return up, [str(c.message) for c in caught if "row shards" in str(c.message)]

    up, said = run(eight, "rl/4", 4)
    assert up.row_shards == 8 and len(said) == 1
    assert "micro-batches of 4 rows" in said[0] and "multiple of 8" in said[0]
    assert run(eight, "rl/8", 8)[1] == [] and run(eight, "rl/all", 0)[1] == []
    assert run(one, "rl/4", 4)[1] == []  # one device: nothing to split


def test_update_checks_the_rows_of_the_step():
    update.check_rows(12, 2, 3, "tree")
    update.check_rows(12, 1, 0, "tree")
    with pytest.raises(
        C.ConfigError,
        match=r"train\.micro_batch_size=4 must divide the minibatch of 6 rows .*12 rows.*'tree'.*train\.num_minibatches=2",
    ):
        update.check_rows(12, 2, 4, "tree")
    with pytest.raises(C.ConfigError, match=r"train\.num_minibatches=5 must divide the 12 rows .*'pairs'"):
        update.check_rows(12, 5, 0, "pairs")


def test_minibatch_orders_refuse_to_drop_rows():
    key = jax.random.key(0)
    orders = update.minibatch_orders(key, 12, 3, 0, 2)
    assert sorted(np.concatenate(orders).tolist()) == list(range(12))
    with pytest.raises(ValueError, match="12 rows do not split into 5 minibatches"):
        update.minibatch_orders(key, 12, 5, 0, 1)


def test_config_checks_the_micro_batch_only_for_kinds_of_prompts_x_group_rows():
    """grpo (``group`` kind, P x G rows): checked up front. spo_tree (``tree`` kind, rows: the
    edges that train plus replay, rounded up to the micro-batches): any micro-batch size passes
    the config, the update checks the real count."""
    base = ["train.prompts_per_step=2", "train.group_size=2"]
    with pytest.raises(C.ConfigError, match="train.micro_batch_size=8 must divide the minibatch size 4"):
        C.apply_overrides(C.default_config(), ["algorithm=grpo", *base, "train.micro_batch_size=8"])
    cfg = C.apply_overrides(C.default_config(), ["algorithm=spo_tree", *base, "train.micro_batch_size=8"])
    assert cfg.train.micro_batch_size == 8


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """grpo with pi_ref (beta > 0) and pi_old recomputed, 2 x 2 rows on one device, no chunking."""
    run = tiny_run(
        tmp_path_factory.mktemp("chunks") / "run",
        "grpo",
        "algo.beta=0.04",
        "train.old_logprobs=recompute",
        "mesh.num_devices=1",
    )
    tr = train.Trainer(run)
    yield tr
    tr.close()


def test_trainer_log_prob_passes_run_in_chunks(trainer, monkeypatch):
    tr = trainer
    rollout, _ = tr.kind.collect(tr.ctx, jax.random.key(0), tr.state.algo_arrays())
    whole, _ = train.score_rollout(tr, rollout, 1)
    shapes = []
    real = tr.policy._logprobs
    spy = lambda params, tokens, *a: shapes.append(tokens.shape[0]) or real(params, tokens, *a)
    monkeypatch.setattr(tr.policy, "_logprobs", spy)
    monkeypatch.setattr(tr.policy, "cfg", with_train(tr.cfg, micro_batch_size=3))
    chunked, _ = train.score_rollout(tr, rollout, 1)
    assert shapes == [3, 3, 3, 3]  # pi_old, then pi_ref: 4 rows in 2 chunks of 3 each
    np.testing.assert_allclose(chunked.old_logprobs, whole.old_logprobs, atol=1e-5)
    np.testing.assert_allclose(chunked.ref_logprobs, whole.ref_logprobs, atol=1e-5)


def test_trainer_names_the_settings_when_the_rows_do_not_split(trainer, monkeypatch):
    """A micro-batch size that does not divide the step's 4 rows stops the update before it splits
    them, naming the settings and the kind's row count (not a reshape error mid-update)."""
    tr = trainer
    monkeypatch.setattr(tr, "cfg", with_train(tr.cfg, micro_batch_size=3))
    with pytest.raises(C.ConfigError, match=r"micro_batch_size=3 .* 4 rows of a step of the 'group' rollout kind"):
        train.rl_step(tr, metrics_log.Timer())


def test_axis_shards_and_divisible_sharding_agree_on_the_mesh():
    """``axis_shards`` counts a logical axis's shards; ``divisible_sharding`` keeps a dim split only
    where that count divides it (8 fake devices as data 2 x fsdp 2 x tensor 2)."""
    from jax.sharding import PartitionSpec

    from jaxrl_llm import sharding

    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert [sharding.axis_shards(mesh, a) for a in ("batch", "vocab", "seq")] == [4, 2, 1]
    assert sharding.divisible_sharding(mesh, ("batch", "vocab"), (8, 6)).spec == PartitionSpec(
        ("data", "fsdp"), "tensor"
    )
    assert sharding.divisible_sharding(mesh, ("batch", "vocab"), (6, 5)).spec == PartitionSpec(None, None)
    assert sharding.divisible_sharding(mesh, ("batch",), (4, 3)).spec == PartitionSpec(("data", "fsdp"), None)
