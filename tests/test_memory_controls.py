"""Memory and compile controls (issue #23 item 3): remat policies by name, the rolled layer loop
(``scan_layers``), the donated update, f32 master weights and optimizer state under bf16."""

import dataclasses
import typing
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_train import tiny_config

from jaxrl_llm import config as run_config
from jaxrl_llm import metrics_log, policy, train
from jaxrl_llm.models import completion_logprobs, remat, zoo
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.decoder import Decoder

B, S, T = 4, 16, 6
# (remat, scan_layers) besides the default. A policy rolls the loop whatever scan_layers says, and
# the cached (shared-prompt) path always loops: scan_layers changes only the uncached program.
CONTROLS = {
    "uncached": [(p, False) for p in remat.POLICIES[1:]] + [("none", True)],
    "shared_prompt": [("full", False), ("dots", False)],
}


def _batch():
    """Two groups of two rows, each group sharing its (left-padded) prompt; ragged completions."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, zoo.TINY.vocab_size, (B, S)).astype(np.int32)
    tokens[1, : S - T], tokens[3, : S - T] = tokens[0, : S - T], tokens[2, : S - T]
    mask = np.ones((B, S), np.int32)
    mask[:2, :4] = 0
    mask[1, -3:] = mask[2, -1:] = 0
    return jnp.asarray(tokens), jnp.asarray(mask)


@pytest.fixture(scope="module")
def tiny():
    """``tiny`` (2 layers), scaled-up weights so that attention is far from uniform."""
    model = Decoder(zoo.TINY.replace(attention_impl="xla"), rngs=nnx.Rngs(0))
    for name, var in model.layers.items():
        if name.startswith("w"):
            var[...] = var[...] * 4
    return nnx.split(model)


def _loss_and_grads(tiny, cfg, group_size):
    graphdef, params = tiny
    tokens, mask = _batch()

    def loss(p):
        model = nnx.merge(graphdef, p)
        model.cfg = cfg
        logp = completion_logprobs(model, tokens, mask, T, chunk_size=None, group_size=group_size)
        return -jnp.sum(logp * mask[:, -T:]) / jnp.sum(mask[:, -T:])

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("path", ["uncached", "shared_prompt"])
def test_every_control_gives_the_default_loss_and_gradients(tiny, path):
    base_cfg, group_size = nnx.merge(*tiny).cfg, 1 if path == "uncached" else 2
    want_loss, want_grads = _loss_and_grads(tiny, base_cfg, group_size)
    want = jax.tree.leaves(want_grads)
    assert np.isfinite(float(want_loss)) and max(float(jnp.max(jnp.abs(g))) for g in want) > 1e-3
    for policy_name, scan in CONTROLS[path]:
        loss, grads = _loss_and_grads(tiny, base_cfg.replace(remat=policy_name, scan_layers=scan), group_size)
        what = f"remat={policy_name} scan_layers={scan}"
        np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-6, err_msg=what)
        for got, ref in zip(jax.tree.leaves(grads), want):
            np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=2e-5, atol=2e-6, err_msg=what)


REMAT_PRIMITIVES = ("checkpoint", "remat2")  # jax.checkpoint's primitive, by jax version


def _all_eqns(jaxpr):
    """The equations of ``jaxpr`` and of every jaxpr nested in them (scan bodies, jit calls)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)  # a ClosedJaxpr's jaxpr, or a Jaxpr
            if hasattr(inner, "eqns"):
                yield from _all_eqns(inner)


def _layer_scans(cfg, cached=False):
    """(unroll, has jax.checkpoint) of each scan over the layers in a forward pass of ``cfg``."""
    model = Decoder(cfg, rngs=nnx.Rngs(0))
    tokens, mask = _batch()
    pos = jnp.broadcast_to(jnp.arange(S), (B, S))
    cache = model.init_cache(B, S) if cached else None
    jaxpr = jax.make_jaxpr(lambda t: model(t, pos, mask, cache))(tokens)
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    return [
        (e.params["unroll"], any(b.primitive.name in REMAT_PRIMITIVES for b in e.params["jaxpr"].jaxpr.eqns))
        for e in scans
    ]


def test_the_default_keeps_the_unrolled_loop_and_the_controls_roll_it():
    L = zoo.TINY.num_layers
    assert ModelConfig.remat == "none" and ModelConfig.scan_layers is False
    assert _layer_scans(zoo.TINY) == [(L, False)]  # today's program: fully unrolled, no checkpoint
    assert not zoo.TINY.layers_rolled
    assert _layer_scans(zoo.TINY.replace(scan_layers=True)) == [(1, False)]
    for name in remat.POLICIES[1:]:  # a policy rolls the loop too (remat.py: unrolled, it saved nothing)
        assert zoo.TINY.replace(remat=name).layers_rolled
        assert _layer_scans(zoo.TINY.replace(remat=name)) == [(1, True)]
    assert _layer_scans(zoo.TINY, cached=True) == [(1, False)]
    assert _layer_scans(zoo.TINY.replace(remat="dots"), cached=True) == [(1, True)]


def test_remat_lowers_the_backward_memory():
    """XLA's temporary buffers for fwd+bwd: none > dots_saveable > dots > full (CPU buffer assignment)."""
    cfg = zoo.TINY.replace(num_layers=3, attention_impl="xla")
    graphdef, params = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    tokens = jax.ShapeDtypeStruct((4, 128), jnp.int32)
    mask = jnp.ones((4, 128), jnp.int32)

    def temp_bytes(name):
        def loss(p, t):
            model = nnx.merge(graphdef, p)
            model.cfg = cfg.replace(remat=name)
            return -jnp.mean(completion_logprobs(model, t, mask, 64, chunk_size=None))

        return jax.jit(jax.grad(loss)).lower(params, tokens).compile().memory_analysis().temp_size_in_bytes

    sizes = {name: temp_bytes(name) for name in ("none", "dots_saveable", "dots", "full")}
    assert sizes["none"] > sizes["dots_saveable"] > sizes["dots"] > sizes["full"], sizes
    assert sizes["full"] < sizes["none"] / 2, sizes


def test_bad_names_are_named_errors():
    with pytest.raises(ValueError, match=r"remat='flash'; expected one of none, full, dots, dots_saveable"):
        zoo.TINY.replace(remat="flash")
    with pytest.raises(ValueError, match=r"scan_layers='yes'; expected True or False"):
        zoo.TINY.replace(scan_layers="yes")
    with pytest.raises(ValueError, match=r"remat='offload'; expected one of"):
        remat.wrap(lambda x: x, "offload")
    with pytest.raises(run_config.ConfigError, match=r"model\.remat must be one of \['none', 'full', 'dots'"):
        run_config.apply_overrides(run_config.default_config(), ["model.remat=flash"])
    with pytest.raises(run_config.ConfigError, match=r"model\.scan_layers"):
        run_config.apply_overrides(run_config.default_config(), ["model.scan_layers=sometimes"])


def test_run_config_choices_reach_the_model():
    hint = typing.get_type_hints(run_config.ModelConfig)["remat"]
    assert typing.get_args(hint) == remat.POLICIES
    assert run_config.ModelConfig().remat == "none" and run_config.ModelConfig().scan_layers is False
    cfg = run_config.apply_overrides(
        run_config.default_config(), ["model.name=tiny", "model.remat=full", "model.scan_layers=true"]
    )
    model, _ = policy.build_model(cfg)
    assert (model.cfg.remat, model.cfg.scan_layers) == ("full", True)
    model, _ = policy.build_model(dataclasses.replace(cfg, model=run_config.ModelConfig(name="tiny")))
    assert model.cfg == zoo.TINY


@pytest.fixture(scope="module")
def bf16_trainer(tmp_path_factory):
    cfg = tiny_config(
        tmp_path_factory.mktemp("bf16"),
        "sft.steps=0",
        "mesh.num_devices=1",
        "model.param_dtype=bfloat16",
        "model.compute_dtype=bfloat16",
        "optim.learning_rate=1e-5",
    )
    tr = train.Trainer(cfg)
    yield tr
    tr.close()


def _floats(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


def _update(tr, seed=0):
    """One RL update of random rows through the trainer's donated ``Updater``; returns metrics."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, tr.policy.model_cfg.vocab_size, (8, 16 + 4)).astype(np.int32)
    attention = np.ones(tokens.shape, np.float32)
    mask = np.ones((8, 4), np.float32)
    batch = {
        "mask": mask,
        "advantages": rng.normal(size=8).astype(np.float32),
        "old_logprobs": np.full((8, 4), -3.0, np.float32),
        "ref_logprobs": np.full((8, 4), -3.0, np.float32),
    }
    tr.policy.params, tr.state.opt_state, metrics = tr.updater("rl", None).step(
        "rl/T=4/G=1",
        tr.rl_tx,
        tr.rl_loss(4, 1),
        tr.policy.params,
        tr.state.opt_state,
        {"tokens": tokens, "attention_mask": attention},
        batch,
        {"num_tokens": float(mask.sum()), "num_seqs": 8.0},
        0,
    )
    return metrics


def test_bf16_keeps_f32_master_weights_and_optimizer_state(bf16_trainer):
    tr = bf16_trainer
    p = tr.policy
    assert {x.dtype for x in _floats(p.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in _floats(tr.state.opt_state)} == {jnp.dtype(jnp.float32)}  # Adam's mu and nu
    # The forward pass computes in bf16, on the very weights the sampler reads (its bf16 copy).
    tokens, mask = _batch()
    pos = jnp.broadcast_to(jnp.arange(S), (B, S))
    sampler_params = policy._cast_floats(p.params, jnp.bfloat16)  # what Policy.generate samples with
    master_logits = p.model(p.params)(tokens, pos, mask)[0]
    np.testing.assert_array_equal(master_logits, p.model(sampler_params)(tokens, pos, mask)[0])
    jaxpr = jax.make_jaxpr(lambda prm: p.model(prm)(tokens, pos, mask)[0])(p.params)
    dots = [e for e in _all_eqns(jaxpr.jaxpr) if e.primitive.name == "dot_general"]
    assert len(dots) > 9 and all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)
    # An update keeps f32, and keeps changes a bf16 master copy would round away.
    before = [np.asarray(x) for x in _floats(p.params)]
    assert _update(tr)["finite"] == 1.0
    after = [np.asarray(x) for x in _floats(p.params)]
    assert {x.dtype for x in _floats(p.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in _floats(tr.state.opt_state)} == {jnp.dtype(jnp.float32)}
    bf16 = lambda x: x.astype(jnp.bfloat16)
    assert any(np.any((a != b) & (bf16(a) == bf16(b))) for a, b in zip(after, before))


def test_the_update_donates_params_and_optimizer_state(bf16_trainer):
    tr = bf16_trainer
    with warnings.catch_warnings(record=True) as caught:  # JAX warns when it compiles an unusable donation
        warnings.simplefilter("always")
        _update(tr, seed=1)
        old = jax.tree.leaves(tr.policy.params) + jax.tree.leaves(tr.state.opt_state)
        _update(tr, seed=2)
    assert all(x.is_deleted() for x in old)  # their buffers became the new params / state
    assert not [w for w in caught if "donated" in str(w.message)], [str(w.message) for w in caught]


def test_a_trainer_step_with_remat_and_scan_layers(tmp_path):
    """A whole RL step (rollout, shared-prompt update), then an update with nonzero advantages."""
    cfg = tiny_config(tmp_path / "run", "sft.steps=0", "model.remat=dots", "model.scan_layers=true")
    tr = train.Trainer(cfg)
    try:
        assert (tr.policy.model_cfg.remat, tr.policy.model_cfg.scan_layers) == ("dots", True)
        step = train.rl_step(tr, metrics_log.Timer())
        update = _update(tr)
    finally:
        tr.close()
    assert step["finite"] == 1.0 and np.isfinite(step["loss"])
    assert update["finite"] == 1.0 and update["grad_norm"] > 0
