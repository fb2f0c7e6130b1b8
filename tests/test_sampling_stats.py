"""Statistical tests: whole-sequence sampling, prefix continuation and branching all draw from the
exact sampling distribution, enumerated with full (uncached) forward passes on a tiny model.

Vocabulary 8, 3 new tokens: all 512 continuations are scored exactly. Each test draws 4096
samples with a fixed key and runs Pearson's chi-square test against the exact probabilities
(cells with expected count < 5 pooled); the keys are fixed, so the tests are deterministic.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_llm import sampling
from jaxrl_llm.models import Decoder, ModelConfig, positions_from_mask
from jaxrl_llm.sampling import processors

V, T, N = 8, 3, 4096
PROMPT = [1, 2, 3, 4]
CFG = sampling.SamplingConfig(max_new_tokens=T, temperature=0.8, top_k=6)
P_MIN = 1e-3  # reject at p < 0.001


@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8
    )
    m = Decoder(cfg, rngs=nnx.Rngs(3))
    m.lm_head[...] = m.lm_head[...] * 6.0  # ~1.5 nats per step, and top-k cuts real mass
    return m


@pytest.fixture(scope="module")
def exact(model):
    """log q(y_t | prompt, y_<t) for all 512 sequences y: [512, T], and the sequences [512, T]."""
    seqs = np.array(list(itertools.product(range(V), repeat=T)), np.int32)
    tokens = jnp.concatenate([jnp.tile(jnp.array(PROMPT, jnp.int32), (len(seqs), 1)), seqs], axis=1)
    mask = jnp.ones_like(tokens)

    @jax.jit
    def step_logq(model, tokens):
        logits = model(tokens, positions_from_mask(mask), mask)[0][:, len(PROMPT) - 1 : -1]  # [512, T, V]
        flat = logits.reshape(-1, V)
        z = processors.filtered_logits(flat, jnp.full(flat.shape[:1], CFG.temperature), top_k=CFG.top_k)
        return jax.nn.log_softmax(z, -1).reshape(logits.shape)

    logq = np.asarray(step_logq(model, tokens))
    picked = np.take_along_axis(logq, seqs[..., None], -1)[..., 0]
    # not vacuous: the next-token law depends on the context (total variation across first tokens)
    q1 = np.exp(logq[:: V * V, 1])  # [V, V]: q(y1 | y0)
    assert 0.5 * np.abs(q1[:, None] - q1[None]).sum(-1).max() > 0.2
    return seqs, picked


def chi_square_p(observed, expected):
    """p-value of Pearson's chi-square, pooling cells with expected count < 5."""
    observed, expected = np.asarray(observed, float), np.asarray(expected, float)
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    assert obs[~keep].sum() == 0, "a sample fell where the exact probability is 0"
    stat = np.sum((obs[keep] - exp[keep]) ** 2 / exp[keep])
    dof = keep.sum() - 1
    return float(jax.scipy.special.gammaincc(dof / 2, stat / 2))


def counts(tokens, cells):
    index = {tuple(c): i for i, c in enumerate(cells)}
    out = np.zeros(len(cells))
    for row in np.asarray(tokens):
        out[index[tuple(row)]] += 1
    return out


def test_whole_sequences_follow_the_exact_distribution(model, exact):
    seqs, logq = exact
    t, m = sampling.pad_prompts([PROMPT], pad_id=0)
    out = sampling.sample(model, t, m, jax.random.key(11), CFG, num_samples=N)
    assert (np.asarray(out.lengths) == T).all()
    probs = np.exp(logq.sum(-1))
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    p = chi_square_p(counts(out.tokens, seqs), N * probs)
    assert p > P_MIN, p
    # the per-token log-probs the sampler reports are the exact ones
    rows = [np.flatnonzero((seqs == r).all(1))[0] for r in np.asarray(out.tokens[:64])]
    np.testing.assert_allclose(out.logprobs[:64], logq[rows], atol=1e-4)


def _conditional(seqs, logq, prefix):
    """Exact q(y_k.. | prompt, prefix) over the cells of the remaining tokens."""
    k = len(prefix)
    hit = (seqs[:, :k] == prefix).all(1)
    return seqs[hit][:, k:], np.exp(logq[hit][:, k:].sum(-1))


def test_prefix_continuation_follows_the_exact_conditional(model, exact):
    seqs, logq = exact
    t, m = sampling.pad_prompts([PROMPT], pad_id=0)
    first = int(np.argmax(np.exp(logq[:, 0])[:: V * V]))  # a likely first token, used as a reset prefix
    cfg = sampling.SamplingConfig(max_new_tokens=T - 1, temperature=0.8, top_k=6)
    out = sampling.continue_from(
        model, t, m, np.array([[first, 0]]), np.array([[1, 0]]), jax.random.key(12), cfg, num_samples=N
    )
    assert (np.asarray(out.tokens[:, 0]) == first).all()
    cells, probs = _conditional(seqs, logq, [first])
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    p = chi_square_p(counts(out.tokens[:, 1:T], cells), N * probs)
    assert p > P_MIN, p


def test_branches_follow_the_exact_conditional(model, exact):
    seqs, logq = exact
    t, m = sampling.pad_prompts([PROMPT], pad_id=0)
    base = sampling.sample(model, t, m, jax.random.key(13), CFG, num_samples=4)
    # branch K = N continuations after the first token of row 2, and after two tokens of row 3
    br = sampling.branch(model, base, rows=[2, 3], at=[1, 2], key=jax.random.key(14), cfg=CFG, num_branches=N)
    for point, (row, at) in enumerate([(2, 1), (3, 2)]):
        kept = np.asarray(base.tokens[row, :at])
        got = np.asarray(br.tokens[point * N : (point + 1) * N])
        assert (got[:, :at] == kept).all()
        cells, probs = _conditional(seqs, logq, kept)
        # the branch samples T new tokens; the first T - at of them continue the enumerated sequence
        p = chi_square_p(counts(got[:, at:T], cells), N * probs)
        assert p > P_MIN, (point, p)


def test_the_chi_square_test_rejects_a_wrong_distribution(model, exact):
    """The test has power: samples at temperature 1.3 are rejected against the temperature-0.8 law."""
    seqs, logq = exact
    t, m = sampling.pad_prompts([PROMPT], pad_id=0)
    hot = sampling.SamplingConfig(max_new_tokens=T, temperature=1.3, top_k=6)
    out = sampling.sample(model, t, m, jax.random.key(11), hot, num_samples=N)
    assert chi_square_p(counts(out.tokens, seqs), N * np.exp(logq.sum(-1))) < 1e-6
