"""The sampler: filters vs transformers' warpers, cached vs uncached logits, log-prob parity with
the trainer's recomputation, stops, seeding, prefixes, branching, buckets, sharding, errors, and
every registered decode backend against the reference."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers.generation import logits_process as hf_lp

from jaxrl_llm import config as config_lib
from jaxrl_llm import kernels, sampling, sharding
from jaxrl_llm.models import Decoder, ModelConfig, completion_logprobs, positions_from_mask
from jaxrl_llm.models.partition import shard_model
from jaxrl_llm.sampling import backend, decode, processors

CpuKernels = kernels.cpu_backend.CpuKernels

CFG = ModelConfig(
    vocab_size=48,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    architecture="llama",
)


def make_model(seed=0, logit_scale=30.0):
    """A tiny model whose next-token distributions are far from uniform (scaled lm_head)."""
    model = Decoder(CFG, rngs=nnx.Rngs(seed))
    model.lm_head[...] = model.lm_head[...] * logit_scale
    return model


# Shared configs: tests reuse the same compiled sampler where they can.
BASE = sampling.SamplingConfig(max_new_tokens=8, return_policy_logprobs=True)
GREEDY = sampling.SamplingConfig(max_new_tokens=8, greedy=True, return_policy_logprobs=True)


@pytest.fixture(scope="module")
def model():
    return make_model()


def prompts():
    return sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12, 13, 14], [3]], pad_id=0)


@jax.jit
def forward(model, tokens, mask):
    """Uncached full forward: logits [B, S, V]."""
    return model(tokens, positions_from_mask(mask), mask)[0]


@jax.jit
def recompute(model, tokens, mask, like):
    """The trainer's log-probs and entropies of the last ``like.shape[1]`` tokens."""
    return completion_logprobs(model, tokens, mask, like.shape[1], return_entropy=True)


def joined(out):
    """[prompt | completion] tokens and mask in the layout completion_logprobs scores."""
    tokens = jnp.concatenate([out.prompt_tokens, out.tokens], axis=1)
    mask = jnp.concatenate(
        [
            out.prompt_mask,
            (jnp.arange(out.tokens.shape[1])[None] < (out.prefix_lengths + out.lengths)[:, None]).astype(jnp.int32),
        ],
        1,
    )
    return tokens, mask


# ------------------------------------------------------------------ filters
def hf_filter(logits, temperature, top_k, top_p, min_p):
    scores = torch.tensor(np.asarray(logits))
    for warper in (
        [hf_lp.TemperatureLogitsWarper(temperature)]
        + ([hf_lp.TopKLogitsWarper(top_k)] if top_k else [])
        + ([hf_lp.TopPLogitsWarper(top_p)] if top_p < 1 else [])
        + ([hf_lp.MinPLogitsWarper(min_p)] if min_p > 0 else [])
    ):
        scores = warper(None, scores)
    return torch.log_softmax(scores, -1).numpy()


@pytest.mark.parametrize(
    "temperature,top_k,top_p,min_p",
    [
        (1.0, 0, 1.0, 0.0),
        (0.7, 0, 1.0, 0.0),
        (1.3, 5, 1.0, 0.0),
        (1.0, 0, 0.8, 0.0),
        (0.9, 0, 1.0, 0.1),
        (0.8, 10, 0.9, 0.05),
    ],
)
def test_filters_match_transformers_warpers(temperature, top_k, top_p, min_p):
    logits = jax.random.normal(jax.random.key(1), (6, 50)) * 3.0
    z = jax.jit(
        lambda x: processors.filtered_logits(x, jnp.full((6,), temperature), top_k=top_k, top_p=top_p, min_p=min_p)
    )(logits)
    logq, entropy = processors.log_softmax_and_entropy(z)
    expect = hf_filter(logits, temperature, top_k, top_p, min_p)
    np.testing.assert_array_equal(np.isfinite(logq), np.isfinite(expect))
    finite = np.isfinite(expect)
    np.testing.assert_allclose(np.asarray(logq)[finite], expect[finite], atol=1e-5)
    q = np.exp(expect)
    np.testing.assert_allclose(entropy, -np.sum(np.where(q > 0, q * np.where(finite, expect, 0), 0), -1), atol=1e-5)


def test_inverse_cdf_sample_is_exact_and_avoids_zero_mass():
    # 3 rows, vocab 600 (three 256-chunks, the last partial); masses placed across chunk borders
    logits = np.full((3, 600), -np.inf, np.float32)
    logits[0, [0, 255, 256, 599]] = np.log([0.1, 0.2, 0.3, 0.4])
    logits[1, [300]] = 0.0
    logits[2, [511, 512]] = np.log([0.5, 0.5])
    logq = jax.nn.log_softmax(jnp.asarray(logits), -1)
    n = 20000
    u = jax.random.uniform(jax.random.key(0), (n, 3))
    u = jnp.concatenate([u, jnp.full((1, 3), 1 - 2**-24), jnp.zeros((1, 3))])  # the extremes
    draws = np.asarray(jax.jit(jax.vmap(lambda uu: processors.inverse_cdf_sample(logq, uu)))(u))
    assert np.isfinite(logits[np.arange(3)[None], draws]).all()
    freq = np.mean(draws[:n, 0][:, None] == np.array([0, 255, 256, 599]), axis=0)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.012)  # 4 sigma at n=20000
    assert (draws[:, 1] == 300).all()
    assert abs(np.mean(draws[:n, 2] == 511) - 0.5) < 0.015


# ------------------------------------------------------------------ cache
# every projection and the unembedding 64-column multiples: all of them run on the CPU kernel
KERNEL_CFG = CFG.replace(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=4, head_dim=16
)
# the backends other than the reference that can run here ("cpu" where its kernels built)
BACKENDS = [name for name in backend.names()[1:] if backend.registered(name).available()]


@pytest.mark.parametrize(
    "arch,cfg,backend_name",
    [
        ("llama", CFG, "xla"),
        ("qwen2", CFG, "xla"),
        ("qwen3", CFG, "xla"),
        ("llama", CFG, "cpu"),
        ("qwen2", KERNEL_CFG, "cpu"),
        ("qwen3", KERNEL_CFG, "cpu"),
    ],
)
def test_cached_decoding_matches_uncached_forward(arch, cfg, backend_name):
    """Prefill + one-token steps (a left-padded row, an in-context gap) give the logits of one
    uncached forward pass over the same tokens: through ``Decoder``'s own cache and through the
    sampler's ``decode_step`` on a backend (XLA's dots, and the packed CPU kernels: on ``CFG``
    only the gate/up projections are 64-column multiples, on ``KERNEL_CFG`` all, q/k/v and
    gate/up fused)."""
    if backend_name not in ("xla", *BACKENDS):
        pytest.skip(f"the {backend_name!r} backend did not build here")
    be = backend.resolve(backend_name, cfg, None, 2)
    cfg = cfg.replace(architecture=arch, attention_bias=arch == "qwen2", qk_norm=arch == "qwen3")
    model = Decoder(cfg, rngs=nnx.Rngs(1))
    if arch == "qwen2":
        for name in ("bq", "bk", "bv"):
            model.layers[name][...] = jax.random.normal(jax.random.key(2), model.layers[name].shape)
    tokens = jnp.array([[0, 0, 4, 5, 6, 7, 0, 9, 10, 11], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], jnp.int32)
    mask = jnp.array([[0, 0, 1, 1, 1, 1, 0, 1, 1, 1], [1] * 10], jnp.int32)
    positions = positions_from_mask(mask)
    full = forward(model, tokens, mask)
    real = np.asarray(mask, bool)

    @jax.jit
    def cached(model, tokens, positions, mask):
        pre, cache = model(tokens[:, :6], positions[:, :6], mask[:, :6], model.init_cache(2, 10))
        steps_model, steps_decode = [pre], [pre]
        dcache, weights = decode.DecodeCache.from_cache(cache), be.prepare(model)
        expected = {"xla": set(), "cpu": {"gate_up"} if cfg.hidden_size == 32 else {"qkv", "o", "gate_up", "down"}}
        assert set(weights.laid_out) == expected[backend_name]
        assert (weights.unembed is not None) == (backend_name == "cpu" and cfg.vocab_size == 128)
        for t in range(6, 10):
            step = (tokens[:, t : t + 1], positions[:, t : t + 1], mask[:, t : t + 1])
            logits, cache = model(*step, cache)
            steps_model.append(logits)
            logits, dcache = decode.decode_step(model, be, weights, *step, dcache)
            steps_decode.append(logits)
        return jnp.concatenate(steps_model, 1), jnp.concatenate(steps_decode, 1)

    for got in cached(model, tokens, positions, mask):
        np.testing.assert_allclose(np.asarray(got)[real], np.asarray(full)[real], atol=2e-5, rtol=1e-5)


# ------------------------------------------------------------------ log-probs vs the trainer
def test_logprobs_equal_trainer_recomputation_at_temperature_one(model):
    tokens, mask = prompts()
    out = sampling.sample(model, tokens, mask, jax.random.key(0), BASE, num_samples=2)
    full, full_mask = joined(out)
    recomputed, entropy = recompute(model, full, full_mask, out.tokens)
    m = np.asarray(out.mask)
    ratio = np.exp((np.asarray(recomputed) - np.asarray(out.logprobs)) * m)
    np.testing.assert_allclose(ratio, 1.0, atol=1e-5)
    np.testing.assert_allclose(out.policy_logprobs, out.logprobs, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.entropies) * m, np.asarray(entropy) * m, atol=1e-4)
    assert np.asarray(out.logprobs).min() < -0.5  # the test is not vacuous: tokens are uncertain


def test_filtered_sampling_logprobs_are_the_sampled_distribution_and_policy_logprobs_give_ratio_one(model):
    tokens, mask = prompts()
    cfg = sampling.SamplingConfig(
        max_new_tokens=10, temperature=0.7, top_k=6, top_p=0.9, min_p=0.02, return_policy_logprobs=True
    )
    out = sampling.sample(model, tokens, mask, jax.random.key(3), cfg, num_samples=2)
    full, full_mask = joined(out)
    m = np.asarray(out.mask)
    # the trainer's temperature-1 recomputation matches policy_logprobs: the PPO ratio is 1
    recomputed, _ = recompute(model, full, full_mask, out.tokens)
    np.testing.assert_allclose(np.exp((np.asarray(recomputed) - np.asarray(out.policy_logprobs)) * m), 1.0, atol=1e-5)
    # logprobs are log q under HF's warper chain applied to the same logits
    logits = forward(model, full, full_mask)
    Sp = out.prompt_tokens.shape[1]
    step_logits = np.asarray(logits[:, Sp - 1 : Sp + 9]).reshape(-1, CFG.vocab_size)
    logq = hf_filter(step_logits, 0.7, 6, 0.9, 0.02).reshape(out.tokens.shape + (-1,))
    expect = np.take_along_axis(logq, np.asarray(out.tokens)[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(out.logprobs) * m, expect * m, atol=1e-4)
    assert np.abs(np.asarray(out.logprobs) - np.asarray(out.policy_logprobs)).max() > 0.1  # q differs from pi


def test_greedy_is_argmax_of_the_full_forward(model):
    tokens, mask = prompts()
    out = sampling.sample(model, tokens, mask, jax.random.key(0), GREEDY, num_samples=2)
    full, full_mask = joined(out)
    logits = forward(model, full, full_mask)
    Sp = out.prompt_tokens.shape[1]
    np.testing.assert_array_equal(out.tokens, np.argmax(logits[:, Sp - 1 : Sp + 7], -1))
    np.testing.assert_array_equal(out.tokens[0::2], out.tokens[1::2])  # the G rows of a group agree
    assert float(jnp.abs(out.logprobs).max()) == 0.0 and float(jnp.abs(out.entropies).max()) == 0.0


# ------------------------------------------------------------------ stops, layout, seeding
def test_stop_tokens_mask_lengths_padding_and_early_exit(model):
    tokens, mask = prompts()
    free = sampling.sample(model, tokens, mask, jax.random.key(5), BASE, num_samples=2)
    stop = int(free.tokens[0, 3])  # a token that does occur
    cfg = dataclasses.replace(BASE, stop_token_ids=(stop,), pad_id=47)
    out = sampling.sample(model, tokens, mask, jax.random.key(5), cfg, num_samples=2)
    tok, m = np.asarray(out.tokens), np.asarray(out.mask)
    for b in range(tok.shape[0]):
        hits = np.flatnonzero(np.asarray(free.tokens[b]) == stop)
        n = hits[0] + 1 if hits.size else 8
        assert out.lengths[b] == n and m[b].sum() == n and (m[b, :n] == 1).all()
        np.testing.assert_array_equal(tok[b, :n], np.asarray(free.tokens[b, :n]))  # same key, same draws
        assert (tok[b, n:] == 47).all() and (np.asarray(out.logprobs)[b, n:] == 0).all()
        assert out.stop_reason[b] == (sampling.STOP_TOKEN if hits.size else sampling.STOP_LENGTH)
    assert (np.asarray(out.stop_reason) == sampling.STOP_TOKEN).any()
    # early exit: when every row stops at its first token, nothing after it is generated
    first = np.asarray(sampling.sample(model, tokens, mask, jax.random.key(0), GREEDY, num_samples=2).tokens[:, 0])
    cfg = dataclasses.replace(GREEDY, stop_token_ids=tuple(sorted(set(first.tolist()))))
    out = sampling.sample(model, tokens, mask, jax.random.key(0), cfg, num_samples=2)
    np.testing.assert_array_equal(out.lengths, 1)
    np.testing.assert_array_equal(out.stop_reason, sampling.STOP_TOKEN)


def test_seeded_and_group_major(model):
    tokens, mask = prompts()
    a = sampling.sample(model, tokens, mask, jax.random.key(7), BASE, num_samples=2)
    b = sampling.sample(model, tokens, mask, jax.random.key(7), BASE, num_samples=2)
    c = sampling.sample(model, tokens, mask, jax.random.key(8), BASE, num_samples=2)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    assert (np.asarray(a.tokens) != np.asarray(c.tokens)).any()
    np.testing.assert_array_equal(a.prompt_tokens, np.repeat(np.asarray(tokens), 2, axis=0))
    assert a.tokens.shape == (6, 8) and a.prompt_tokens.shape == (6, 16)
    # samples of one group differ (they are independent draws sharing the prompt's prefill)
    assert (np.asarray(a.tokens[0::2]) != np.asarray(a.tokens[1::2])).any(axis=1).all()


def test_temperature_rule_sets_the_temperature_per_row_and_step(model):
    tokens, mask = prompts()
    key = jax.random.key(2)

    def entropy_rule(logits, step):  # HAPO-like: hotter where the policy is uncertain, changes with step
        p = jax.nn.softmax(logits, -1)
        h = -jnp.sum(p * jnp.log(p + 1e-30), -1)
        return 0.5 + h / jnp.log(logits.shape[-1]) + 0.01 * step

    out = sampling.sample(model, tokens, mask, key, BASE, num_samples=2, temperature_rule=entropy_rule)
    full, full_mask = joined(out)
    logits = forward(model, full, full_mask)
    Sp = out.prompt_tokens.shape[1]
    step_logits = logits[:, Sp - 1 : Sp + 7]  # [B, T, V]
    temps = jax.vmap(entropy_rule, in_axes=(1, 0), out_axes=1)(step_logits, jnp.arange(8))
    expect = jax.nn.log_softmax(step_logits / temps[..., None], -1)
    expect = np.take_along_axis(np.asarray(expect), np.asarray(out.tokens)[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.logprobs, expect, atol=1e-4)
    assert np.ptp(np.asarray(temps)) > 0.1  # temperatures really vary across rows and steps


# ------------------------------------------------------------------ prefixes and branches
def test_continue_from_equals_sampling_with_the_prefix_in_the_prompt(model):
    """Greedy continuation of [prompt | prefix] with a gap in the context equals greedy sampling
    from the contiguous prompt + prefix, and the output layout is [prefix | new | pad]."""
    tokens, mask = sampling.pad_prompts([[5, 6, 7], [9, 10]], pad_id=0)
    prefix = np.array([[20, 21, 0, 0], [30, 0, 0, 0]], np.int32)
    prefix_mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], np.int32)
    out = sampling.continue_from(model, tokens, mask, prefix, prefix_mask, jax.random.key(0), GREEDY, num_samples=2)
    ref_tokens, ref_mask = sampling.pad_prompts([[5, 6, 7, 20, 21], [9, 10, 30]], pad_id=0)
    ref = sampling.sample(model, ref_tokens, ref_mask, jax.random.key(0), GREEDY, num_samples=2)
    np.testing.assert_array_equal(out.prefix_lengths, [2, 2, 1, 1])
    assert out.tokens.shape == (4, 16 + 8)
    for b in range(4):
        n = int(out.prefix_lengths[b])
        np.testing.assert_array_equal(out.tokens[b, :n], prefix[b // 2, :n])
        np.testing.assert_array_equal(out.tokens[b, n : n + 8], ref.tokens[b])
        np.testing.assert_array_equal(out.mask[b], (np.arange(24) >= n) & (np.arange(24) < n + 8))
    # the trainer's recomputation over [prompt | prefix + new] gives policy_logprobs on the new tokens
    full, full_mask = joined(out)
    recomputed, _ = recompute(model, full, full_mask, out.tokens)
    m = np.asarray(out.mask)
    np.testing.assert_allclose(np.asarray(recomputed) * m, np.asarray(out.policy_logprobs) * m, atol=1e-5)


def test_branch_keeps_the_prefix_and_samples_k_continuations(model):
    tokens, mask = prompts()
    cfg = BASE
    out = sampling.sample(model, tokens, mask, jax.random.key(0), cfg, num_samples=2)
    br = sampling.branch(model, out, rows=[1, 4], at=[3, 0], key=jax.random.key(1), cfg=cfg, num_branches=3)
    assert br.tokens.shape[0] == 6
    np.testing.assert_array_equal(br.prefix_lengths, [3, 3, 3, 0, 0, 0])
    for m in range(3):
        np.testing.assert_array_equal(br.tokens[m, :3], out.tokens[1, :3])
        np.testing.assert_array_equal(br.prompt_tokens[m], out.prompt_tokens[1])
        np.testing.assert_array_equal(br.prompt_tokens[3 + m], out.prompt_tokens[4])
    # a branch of a branch (a tree of depth 2) keeps both levels' tokens
    deeper = sampling.branch(model, br, rows=[0], at=[5], key=jax.random.key(2), cfg=cfg, num_branches=2)
    np.testing.assert_array_equal(deeper.tokens[:, :5], np.repeat(np.asarray(br.tokens[:1, :5]), 2, 0))
    full, full_mask = joined(deeper)
    recomputed, _ = recompute(model, full, full_mask, deeper.tokens)
    m = np.asarray(deeper.mask)
    np.testing.assert_allclose(np.asarray(recomputed) * m, np.asarray(deeper.logprobs) * m, atol=1e-5)
    with pytest.raises(ValueError, match="at\\[0\\] = 9"):
        sampling.branch(model, out, rows=[0], at=[9], key=jax.random.key(1), cfg=cfg)


# ------------------------------------------------------------------ buckets, compiles, sharding
def test_buckets_bound_the_number_of_compiles():
    model = make_model(seed=1)
    cfg = sampling.SamplingConfig(max_new_tokens=5, top_k=4)
    before = sampling.compile_count()
    for n in (3, 9, 16, 11):  # all in the 16 bucket
        t, m = sampling.pad_prompts([list(range(1, n + 1)), [4]], pad_id=0, bucket=n)
        sampling.sample(model, t, m, jax.random.key(n), cfg)
    assert sampling.compile_count() - before == 1
    t, m = sampling.pad_prompts([list(range(1, 20))], pad_id=0)
    assert t.shape == (1, 32) and m[0, :13].sum() == 0 and m[0, 13:].all()
    sampling.sample(model, t, m, jax.random.key(0), cfg)
    assert sampling.compile_count() - before == 2
    assert [sampling.bucket_length(n) for n in (0, 1, 16, 17, 64, 65, 1000)] == [16, 16, 16, 32, 64, 128, 1024]


def test_sharded_sampling_on_8_devices_matches_unsharded(model):
    mesh = sharding.make_mesh({"data": 4, "fsdp": 2})
    tokens, mask = sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12], [3], [8, 8]], pad_id=0)
    cfg = BASE
    plain = sampling.sample(model, tokens, mask, jax.random.key(4), cfg, num_samples=2)
    sharded_model = shard_model(make_model(), mesh)
    out = sampling.sample(sharded_model, tokens, mask, jax.random.key(4), cfg, num_samples=2, mesh=mesh)
    assert len(out.tokens.sharding.device_set) == 8
    assert out.tokens.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_array_equal(out.tokens, plain.tokens)
    np.testing.assert_allclose(out.logprobs, plain.logprobs, atol=1e-5)


def test_cpu_kernels_on_a_data_mesh_match_one_device():
    """On a data-only mesh each device runs the CPU kernels on its own rows (``shard_map``): the
    same tokens and log-probs as one device; a mesh that shards the weights keeps XLA's dots."""
    if "cpu" not in BACKENDS:
        pytest.skip("the CPU kernels did not build here")
    model = Decoder(KERNEL_CFG, rngs=nnx.Rngs(3))
    model.lm_head[...] = model.lm_head[...] * 30.0  # peaked next-token distributions (no near-ties)
    tokens, mask = sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12], [3], [8, 8]], pad_id=0)
    mesh = sharding.make_mesh({"data": 8})
    assert CpuKernels.unsupported(KERNEL_CFG, mesh, 8) is None and CpuKernels.unsupported(KERNEL_CFG, None, 1) is None
    assert "6 rows do not split" in CpuKernels.unsupported(KERNEL_CFG, mesh, 6)
    assert "'fsdp': 2" in CpuKernels.unsupported(KERNEL_CFG, sharding.make_mesh({"data": 4, "fsdp": 2}), 8)
    cfg = sampling.SamplingConfig(max_new_tokens=6, return_entropies=True, backend="cpu")
    assert sampling.resolve_backend(model, cfg, 8, mesh) == CpuKernels(mesh=mesh)
    plain = sampling.sample(model, tokens, mask, jax.random.key(4), cfg, num_samples=2)
    sharded = Decoder(KERNEL_CFG, rngs=nnx.Rngs(3))
    sharded.lm_head[...] = sharded.lm_head[...] * 30.0
    sharded = shard_model(sharded, mesh)
    out = sampling.sample(sharded, tokens, mask, jax.random.key(4), cfg, num_samples=2, mesh=mesh)
    assert len(out.tokens.sharding.device_set) == 8
    np.testing.assert_array_equal(out.tokens, plain.tokens)
    np.testing.assert_allclose(out.logprobs, plain.logprobs, atol=1e-5)
    np.testing.assert_allclose(out.entropies, plain.entropies, atol=1e-5)


# ------------------------------------------------------------------ decode backends
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    "model_cfg,base",
    [
        (CFG, GREEDY),
        (CFG, dataclasses.replace(BASE, temperature=0.8, top_k=5)),
        (KERNEL_CFG, dataclasses.replace(BASE, max_new_tokens=40)),
    ],
    ids=["greedy", "filtered", "sampled"],
)
def test_every_backend_equals_the_reference(name, model_cfg, base):
    """Tokens, log q, log pi and H(q) of the backend equal the XLA reference's: greedy and
    filtered (the reference's draw after the backend's step) on a model of which the "cpu"
    backend accelerates only some products, sampled (the backend's own draw) on one of which it
    runs all, with attention over up to 55 slots (the CPU attention once skipped the scores of a
    last 49-63 slots)."""
    model = Decoder(model_cfg, rngs=nnx.Rngs(5))
    model.lm_head[...] = model.lm_head[...] * 30.0  # peaked next-token laws: no near-ties
    tokens, mask = prompts()
    ref = sampling.sample(
        model, tokens, mask, jax.random.key(6), dataclasses.replace(base, backend="xla"), num_samples=2
    )
    cfg = dataclasses.replace(base, backend=name)
    assert sampling.resolve_backend(model, cfg, 6).name == name
    out = sampling.sample(model, tokens, mask, jax.random.key(6), cfg, num_samples=2)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_array_equal(out.mask, ref.mask)
    for field in ("logprobs", "policy_logprobs", "entropies"):
        np.testing.assert_allclose(getattr(out, field), getattr(ref, field), atol=2e-5, err_msg=field)
    if not base.greedy:
        assert np.asarray(ref.logprobs).min() < -0.1  # the draws come from spread laws


def test_backend_config_and_registry_errors(model):
    tokens, mask = prompts()
    with pytest.raises(ValueError, match="backend must be a backend name"):
        sampling.SamplingConfig(max_new_tokens=4, backend="")
    with pytest.raises(ValueError, match="backend 'tpu_magic' is not registered \\(registered: \\['xla'"):
        sampling.sample(
            model, tokens, mask, jax.random.key(0), sampling.SamplingConfig(max_new_tokens=4, backend="tpu_magic")
        )
    bf16 = make_model().cfg.replace(dtype="bfloat16")
    assert backend.resolve("auto", bf16, None, 4) == backend.Xla()  # auto: the kernels do not apply
    with pytest.raises(ValueError, match="backend 'cpu' cannot run this call: the kernels compute in float32"):
        backend.resolve("cpu", bf16, None, 4)
    with pytest.raises(TypeError, match="must subclass"):
        backend.register(object)
    with pytest.raises(ValueError, match="'cpu' is taken"):
        backend.register(type("Other", (backend.Xla,), {"name": "cpu"}))


def test_run_config_names_a_bad_backend_and_knows_every_registered_one():
    assert config_lib.apply_overrides(config_lib.default_config(), ["sampling.backend=xla"]).sampling.backend == "xla"
    bad = "sampling.backend must be one of \\['auto', 'xla', 'cpu', 'ragged'\\], got 'gpu'"
    with pytest.raises(config_lib.ConfigError, match=bad):
        config_lib.apply_overrides(config_lib.default_config(), ["sampling.backend=gpu"])
    assert set(config_lib.DECODE_BACKENDS) == {"auto", *backend.names()}  # with jaxrl_llm.kernels imported


# ------------------------------------------------------------------ errors
def test_bad_inputs_raise_clear_errors(model):
    tokens, mask = prompts()
    key = jax.random.key(0)
    cfg = sampling.SamplingConfig(max_new_tokens=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sampling.SamplingConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        sampling.SamplingConfig(max_new_tokens=4, temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        sampling.SamplingConfig(max_new_tokens=4, top_p=0.0)
    with pytest.raises(ValueError, match="stop_token_ids \\[99\\]"):
        sampling.sample(model, tokens, mask, key, sampling.SamplingConfig(max_new_tokens=4, stop_token_ids=(99,)))
    with pytest.raises(ValueError, match="prompt_tokens\\[0, 15\\] = 48 is outside"):
        sampling.sample(model, np.where(np.arange(16) == 15, 48, tokens), mask, key, cfg)
    with pytest.raises(ValueError, match="row 0 is not left-padded"):
        sampling.sample(model, tokens, mask[:, ::-1], key, cfg)
    with pytest.raises(ValueError, match="no real token"):
        sampling.sample(model, tokens, np.zeros_like(mask), key, cfg)
    with pytest.raises(ValueError, match="has shape"):
        sampling.sample(model, tokens, mask[:, 1:], key, cfg)
    with pytest.raises(ValueError, match="bucket 2 is shorter"):
        sampling.pad_prompts([[1, 2, 3]], pad_id=0, bucket=2)


# ------------------------------------------------------------------ windowed decoding (T >= 64)
def test_windows_cover_every_step_with_growing_caches():
    from jaxrl_llm.sampling import decode

    for context, T in ((3, 64), (8, 70), (64, 128), (5, 200)):
        ws = decode.windows(CFG, 6, context, T)
        ends = [end for end, _ in ws]
        assert 1 < len(ws) <= 4 and ends == sorted(ends) and len(set(ends)) == len(ends)
        assert ends[-1] == T  # the last window runs up to the last step
        assert all(0 <= slots - (context + end - 1) < 16 and slots % 16 == 0 for end, slots in ws)
    assert len(decode.windows(CFG, 6, 8, 63)) == 1  # short generations keep one loop
    big = dataclasses.replace(CFG, vocab_size=100_000)  # weights dwarf the cache: one loop
    assert len(decode.windows(big, 1, 8, 128)) == 1


def test_windowed_decoding_matches_the_uncached_forward_and_gives_ratio_one(model):
    from jaxrl_llm.sampling import decode

    tokens, mask = prompts()
    T = 70
    assert len(decode.windows(CFG, 6, tokens.shape[1], T)) > 1  # this test runs the windowed path
    greedy = sampling.SamplingConfig(max_new_tokens=T, greedy=True, return_policy_logprobs=True)
    out = sampling.sample(model, tokens, mask, jax.random.key(0), greedy, num_samples=2)
    full, full_mask = joined(out)
    logits = forward(model, full, full_mask)
    Sp = out.prompt_tokens.shape[1]
    np.testing.assert_array_equal(out.tokens, np.argmax(logits[:, Sp - 1 : Sp + T - 1], -1))
    cfg = sampling.SamplingConfig(max_new_tokens=T, return_policy_logprobs=True)
    out = sampling.sample(model, tokens, mask, jax.random.key(1), cfg, num_samples=2)
    full, full_mask = joined(out)
    recomputed, entropies = recompute(model, full, full_mask, out.tokens)
    m = np.asarray(out.mask)
    assert m[:, -1].all()  # no stop tokens: every row ran all T steps, through every window
    np.testing.assert_allclose(np.asarray(recomputed) * m, np.asarray(out.policy_logprobs) * m, atol=2e-5)
    np.testing.assert_allclose(np.asarray(entropies) * m, np.asarray(out.entropies) * m, atol=2e-5)
