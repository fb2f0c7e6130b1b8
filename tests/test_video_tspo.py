"""TSPO (jaxrl_llm/video): the spec's hand-computed case in eager and under jit, loss value
-mean(A) with REINFORCE's gradient, Gumbel-top-k (distinct, time-sorted, Plackett-Luce inclusion
frequencies), window-attention locality, the tau schedule, the needle data and answerer, named
errors for bad input, and a jitted train step."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrl_llm.video import needle, selector, tspo

S = jnp.asarray([2.0, 1.0, 0.0, -1.0])
P = np.asarray([0.643914, 0.236883, 0.087144, 0.032059])
GRAD = np.asarray([0.143914, -0.263117, 0.087144, 0.032059])


def _spec_loss(scores):
    """s = [2, 1, 0, -1], tau = 1, S = {0, 1}, A = 1 (one subset)."""
    logprobs = selector.marginal_logprobs(scores[None], jnp.asarray([[0, 1]]))  # [1, 2]
    return tspo.loss(logprobs, jnp.asarray([1.0]))[0]


@pytest.mark.parametrize("jit", [False, True])
def test_spec_case(jit):
    """softmax p = [0.643914, ...]; the REINFORCE loss -mean(log p0, log p1); dL/ds as the spec."""
    np.testing.assert_allclose(jax.nn.softmax(S), P, atol=1e-6)
    reinforce = -(np.log(P[0]) + np.log(P[1])) / 2
    logprobs = selector.marginal_logprobs(S[None], jnp.asarray([[0, 1]]))
    np.testing.assert_allclose(-logprobs.mean(), reinforce, rtol=1e-5)
    fn = jax.jit(jax.value_and_grad(_spec_loss)) if jit else jax.value_and_grad(_spec_loss)
    value, grad = fn(S)
    np.testing.assert_allclose(value, -1.0, rtol=1e-6)  # -mean(A) at ratio 1
    np.testing.assert_allclose(grad, GRAD, atol=1e-6)
    assert grad[0] > 0  # the surrogate pushes the dominant selected frame down (spec note)


def test_loss_value_is_minus_mean_advantage_and_gradient_is_reinforce():
    key = jax.random.PRNGKey(0)
    scores = jax.random.normal(key, (6, 10))  # [B, T]
    idx, _ = selector.gumbel_topk(jax.random.PRNGKey(1), scores, 3)  # [B, K]
    rewards = jnp.asarray([[1.0, 0.0, 0.5], [0.2, 0.9, 0.1]])  # [P=2, G=3]
    adv = tspo.advantages(rewards).reshape(6)
    np.testing.assert_allclose(adv.reshape(2, 3).mean(-1), 0.0, atol=1e-6)

    def tspo_loss(s):
        return tspo.loss(selector.marginal_logprobs(s, idx), adv)[0]

    def reinforce(s):
        return -(adv * selector.marginal_logprobs(s, idx).mean(-1)).mean()

    np.testing.assert_allclose(tspo_loss(scores), -adv.mean(), atol=1e-6)
    np.testing.assert_allclose(jax.grad(tspo_loss)(scores), jax.grad(reinforce)(scores), atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(tspo_loss))(scores), jax.grad(reinforce)(scores), atol=1e-6)


def test_advantages_hand_computed():
    """R = [1, 0, 0, 0]: mean 0.25, unbiased std 0.5 -> A = [0.75, -0.25 x3] / 0.5001."""
    adv = tspo.advantages(jnp.asarray([[1.0, 0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(adv, [[0.75 / 0.5001] + [-0.25 / 0.5001] * 3], rtol=1e-6)
    np.testing.assert_allclose(tspo.advantages(jnp.ones((1, 4))), 0.0)


def test_gumbel_topk_distinct_sorted_and_follows_softmax():
    scores = jnp.asarray([1.5, 0.5, 0.0, -1.0])
    n = 20000
    idx, order = selector.gumbel_topk(jax.random.PRNGKey(0), jnp.broadcast_to(scores, (n, 4)), 2)
    idx, order = np.asarray(idx), np.asarray(order)
    assert idx.shape == (n, 2) and np.all(idx[:, 0] < idx[:, 1])  # distinct and sorted by time
    np.testing.assert_array_equal(np.sort(order, -1), idx)
    # k = 1: the first draw follows softmax(s).
    first = np.bincount(order[:, 0], minlength=4) / n
    np.testing.assert_allclose(first, jax.nn.softmax(scores), atol=0.015)
    # k = 2: inclusion frequencies follow the Plackett-Luce law of drawing without replacement.
    p = np.asarray(jax.nn.softmax(scores))
    inclusion = np.zeros(4)
    for a, b in itertools.permutations(range(4), 2):
        pr = p[a] * p[b] / (1 - p[a])
        inclusion[[a, b]] += pr
    np.testing.assert_allclose(np.bincount(idx.ravel(), minlength=4) / n, inclusion, atol=0.015)
    # independent draws per row: not all rows identical
    assert len({tuple(r) for r in idx[:50]}) > 1


def test_topk_deterministic_and_bad_k():
    np.testing.assert_array_equal(selector.topk(jnp.asarray([0.1, 3.0, 2.0, -1.0, 2.5]), 3), [1, 2, 4])
    with pytest.raises(ValueError, match="k=0"):
        selector.gumbel_topk(jax.random.PRNGKey(0), S, 0)
    with pytest.raises(ValueError, match="k=5"):
        selector.topk(S, 5)


def test_plackett_luce_logprobs():
    """Order (0, 1) of s = [2, 1, 0, -1]: log p0 + (1 - log(e + 1 + 1/e)); all ordered pairs sum to 1."""
    lp = selector.plackett_luce_logprobs(S[None], jnp.asarray([[0, 1]]))[0]
    np.testing.assert_allclose(lp, [np.log(P[0]), 1 - np.log(np.e + 1 + 1 / np.e)], rtol=1e-5)
    np.testing.assert_allclose(
        selector.plackett_luce_logprobs(S[None], jnp.asarray([[2]])),
        selector.marginal_logprobs(S[None], jnp.asarray([[2]])),
    )
    pairs = jnp.asarray(list(itertools.permutations(range(4), 2)))  # [12, 2]
    total = jnp.exp(selector.plackett_luce_logprobs(jnp.broadcast_to(S, (12, 4)), pairs).sum(-1)).sum()
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


@pytest.mark.parametrize("window", [1, 4, 5])
def test_window_attention_is_local(window):
    t, e, j = 16, 8, 7
    attn = selector.WindowAttention(e, 2, window, rngs=nnx.Rngs(0))
    agent = selector.TemporalAgent(e, 2, window, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (1, t, e))
    x2 = x.at[0, j].add(3.0)
    expected = np.asarray([-(window // 2) <= j - i <= window - 1 - window // 2 for i in range(t)])
    for fn in (attn, agent.enhance):
        changed = np.abs(np.asarray(fn(x2) - fn(x))[0]).max(-1) > 1e-6  # [T]
        np.testing.assert_array_equal(changed, expected)
    assert expected.sum() == window


def test_tau_schedule_endpoints():
    cfg = tspo.Config(total_steps=100)
    np.testing.assert_allclose(tspo.tau_schedule(0, cfg), 0.025)
    np.testing.assert_allclose(tspo.tau_schedule(50, cfg), 0.0175, rtol=1e-6)
    np.testing.assert_allclose(tspo.tau_schedule(100, cfg), 0.01, rtol=1e-6)
    np.testing.assert_allclose(tspo.tau_schedule(100, tspo.Config(total_steps=100, anneal=False)), 0.025)


def test_needle_mask_and_answerer():
    cfg = needle.Config()
    videos = needle.sample(np.random.default_rng(0), 32, needle.World.make(0, cfg), cfg)
    assert videos.frames.shape == (32, 64, 32) and videos.question.shape == (32, 32)
    for row in videos.mask:
        (where,) = np.nonzero(row)
        assert len(where) == 6 and where[-1] - where[0] == 5  # one contiguous 6-frame segment
    mask = jnp.asarray(videos.mask[:1])
    answer = jnp.asarray(videos.answer[:1])
    seg = np.nonzero(videos.mask[0])[0]
    off = np.nonzero(~videos.mask[0])[0]
    two_in = jnp.asarray([[seg[0], seg[3], off[0], off[1]]])
    one_in = jnp.asarray([[seg[0], off[0], off[1], off[2]]])
    assert needle.temporal_reward(two_in, mask)[0] == 0.5
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    for key in keys[:20]:
        assert needle.answerer(key, two_in, mask, answer, 4)[0] == answer[0]
    guesses = np.asarray([needle.answerer(k, one_in, mask, answer, 4)[0] for k in keys])
    assert set(guesses.tolist()) == {0, 1, 2, 3}  # a random option when < 2 hits
    assert abs((guesses == int(answer[0])).mean() - 0.25) < 0.08


def test_question_points_at_segment():
    cfg = needle.Config()
    videos = needle.sample(np.random.default_rng(1), 64, needle.World.make(0, cfg), cfg)
    cos = np.asarray(selector.cosine(jnp.asarray(videos.frames), jnp.asarray(videos.question)))
    assert cos[videos.mask].mean() > cos[~videos.mask].mean() + 0.2


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="segment_len"):
        needle.Config(segment_len=65)
    with pytest.raises(ValueError, match="num_distractors"):
        needle.Config(num_distractors=20)
    with pytest.raises(ValueError, match="min_hits"):
        needle.Config(min_hits=0)
    with pytest.raises(ValueError, match="num_videos"):
        needle.sample(np.random.default_rng(0), 0, needle.World.make(0, needle.Config()), needle.Config())
    with pytest.raises(ValueError, match="logprob"):
        tspo.Config(logprob="exact")
    with pytest.raises(ValueError, match="tau_min"):
        tspo.Config(tau0=0.01, tau_min=0.02)
    with pytest.raises(ValueError, match="group size"):
        tspo.advantages(jnp.ones((2, 1)))
    with pytest.raises(ValueError, match="advantages"):
        tspo.loss(jnp.zeros((4, 2)), jnp.zeros(3))
    with pytest.raises(ValueError, match="num_heads"):
        selector.WindowAttention(10, 4, 3, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("logprob", ["marginal", "plackett_luce"])
def test_train_step_runs_under_jit(logprob):
    ncfg = needle.Config()
    cfg = tspo.Config(total_steps=10, logprob=logprob)
    graphdef, params = nnx.split(selector.TemporalAgent(ncfg.feature_dim, 4, 12, rngs=nnx.Rngs(0)))
    opt = optax.adam(cfg.learning_rate)
    opt_state = opt.init(params)
    step = jax.jit(tspo.make_train_step(graphdef, opt, cfg, ncfg))
    videos = needle.sample(np.random.default_rng(0), 4, needle.World.make(0, ncfg), ncfg)
    before = jax.tree.leaves(params)[0]
    for k in range(2):
        params, opt_state, metrics = step(params, opt_state, videos, jax.random.PRNGKey(k), k)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    np.testing.assert_allclose(metrics["loss"], 0.0, atol=1e-5)  # -mean(A), A normalized per group
    np.testing.assert_allclose(metrics["tau"], 0.025 - 0.015 * 0.1, rtol=1e-6)
    assert 0.0 <= float(metrics["reward/temporal"]) <= 0.75
    assert not np.allclose(jax.tree.leaves(params)[0], before)
