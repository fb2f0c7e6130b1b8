"""Tree rollouts from the parent's KV cache (``rollouts/tree.py``) and cutpoint continuations
(``rollouts/chain.py``): tree structure, segments equal to sampling from a re-prefilled parent,
values bottom-up, one row per edge with ``parent_ids``, the kinds under the trainer, and a run of
SPO-tree stopped and resumed with its edge buffer giving the metrics of a run never stopped."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_registry_train import tiny_run

from jaxrl_llm import algorithms, checkpoint, metrics_log, sampling, train, update
from jaxrl_llm.algorithms import spo_tree
from jaxrl_llm.models import Decoder, ModelConfig, completion_logprobs
from jaxrl_llm.rollouts import chain, tree
from jaxrl_llm.sampling import cached

CFG = ModelConfig(
    vocab_size=48, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8
)
BRANCHING, M, LAST = (2, 3), 2, 3


@pytest.fixture(scope="module")
def model():
    m = Decoder(CFG, rngs=nnx.Rngs(0))
    m.lm_head[...] = m.lm_head[...] * 3.0
    return m


@pytest.fixture(scope="module")
def grown(model):
    prompts, pmask = sampling.pad_prompts([[5, 6, 7], [9, 10]], pad_id=0)
    # a stop token the first level emits somewhere, so that some branches end early
    probe = tree.grow(
        model, prompts, pmask, jax.random.key(0), sampling.SamplingConfig(1, backend="xla"), BRANCHING, M, LAST
    )
    first = probe.path_tokens[2:6, :M]
    stop = int(np.bincount(first.ravel()).argmax())
    scfg = sampling.SamplingConfig(1, stop_token_ids=(stop,), pad_id=0, backend="xla")
    return prompts, pmask, scfg, tree.grow(model, prompts, pmask, jax.random.key(0), scfg, BRANCHING, M, LAST)


def test_tree_structure_and_paths(grown):
    prompts, pmask, scfg, t = grown
    P = 2
    assert t.parent.shape == (P + P * 2 + P * 6,)
    np.testing.assert_array_equal(t.parent[:P], -1)
    np.testing.assert_array_equal(t.parent[P : P + 4], [0, 0, 1, 1])
    np.testing.assert_array_equal(t.parent[P + 4 :], np.repeat(np.arange(P, P + 4), 3))
    np.testing.assert_array_equal(t.root[P + 4 :], np.repeat([0, 0, 1, 1], 3))
    level1, level2 = np.arange(P, P + 4), np.arange(P + 4, P + 16)
    ends = t.leaf[level1]
    assert ends.any() and (~ends).any(), "the probe stop token should end some first-level branches"
    # a first-level node is a leaf iff it emitted the stop token; its children are then not sampled
    for n in level1:
        assert t.leaf[n] == (scfg.stop_token_ids[0] in t.path_tokens[n, : t.lengths[n]].tolist())
        kids = level2[t.parent[level2] == n]
        assert (t.valid[kids] == (not t.leaf[n])).all()
        if not t.leaf[n]:  # an inner node's segment is full: M tokens
            assert t.lengths[n] == M
            assert t.leaf[kids].all()  # the last level: leaves
            np.testing.assert_array_equal(t.path_tokens[kids, :M], np.repeat(t.path_tokens[n : n + 1, :M], 3, 0))
            np.testing.assert_array_equal(t.segment_mask[kids, :M], 0)
            assert (t.segment_mask[kids].sum(1) == t.lengths[kids] - M).all()
    assert t.sampled_tokens == int(t.segment_mask[t.valid].sum())


def test_segments_equal_sampling_from_a_re_prefilled_parent(model, grown):
    """The second level, forked from the first level's caches, samples what decoding from a fresh
    prefill of [prompt | parent's segment] samples with the same key; and its log-probs are the
    trainer's recomputation over the whole path."""
    prompts, pmask, scfg, t = grown
    level1 = np.arange(2, 6)
    ctx = [
        np.asarray(prompts[t.root[n]])[np.asarray(pmask[t.root[n]]) > 0].tolist()
        + t.path_tokens[n, : t.lengths[n]].tolist()
        for n in level1
    ]
    ctx_t, ctx_m = sampling.pad_prompts(ctx, pad_id=0)
    session = cached.fork(cached.prefill(model, ctx_t, ctx_m), np.arange(4), 3)
    cfg = dataclasses.replace(scfg, max_new_tokens=LAST, return_policy_logprobs=True, return_entropies=False)
    going = ~t.leaf[level1]
    ref, _ = cached.decode(model, session, jax.random.fold_in(jax.random.key(0), 1), cfg, np.repeat(going, 3))
    kids = np.arange(6, 18)
    live = t.valid[kids]
    np.testing.assert_array_equal(t.path_tokens[kids][live][:, M:], np.asarray(ref.tokens)[live])
    # log-probs: the trainer's recomputation over [prompt | path]
    full = np.concatenate([np.asarray(prompts)[t.root[kids]], t.path_tokens[kids]], axis=1)
    fmask = np.concatenate([np.asarray(pmask)[t.root[kids]], t.path_mask[kids].astype(np.int32)], axis=1)
    W = t.path_tokens.shape[1]
    recomputed = np.asarray(completion_logprobs(model, jnp.asarray(full), jnp.asarray(fmask), W, chunk_size=None))
    m = t.path_mask[kids]
    np.testing.assert_allclose(recomputed * m, t.policy_logprobs[kids] * m, atol=1e-4)


def test_edge_rows_values_and_parent_ids(grown):
    prompts, pmask, _, t = grown
    rng = np.random.default_rng(0)
    rewards = np.where(t.leaf, rng.integers(0, 2, t.leaf.shape), np.nan).astype(np.float32)
    values = tree.node_values(t.parent, t.valid, t.leaf, rewards)
    for n in np.flatnonzero(t.valid & ~t.leaf):  # every inner node: the mean of its children
        kids = np.flatnonzero(t.valid & (t.parent == n))
        assert np.isclose(values[n], values[kids].mean())
    t = dataclasses.replace(t, rewards=rewards, values=values)
    rows = tree.edge_rows(t, prompts, pmask, np.array([11, 12]), prob_threshold=0.9)
    kids = np.arange(2, t.parent.shape[0])
    assert rows.num_rows == kids.size and rows.tokens.shape[1] == (len(BRANCHING) - 1) * M + LAST
    np.testing.assert_array_equal(rows.extras["node_ids"], kids)
    np.testing.assert_array_equal(rows.extras["parent_ids"], t.parent[kids])
    np.testing.assert_array_equal(rows.group_ids, t.parent[kids])
    np.testing.assert_array_equal(rows.extras["parent_values"], values[t.parent[kids]])
    np.testing.assert_array_equal(rows.prompt_ids, np.array([11, 12])[t.root[kids]])
    prob = (np.exp(t.policy_logprobs[kids]) < 0.9) & (t.segment_mask[kids] > 0) & t.valid[kids, None]
    np.testing.assert_array_equal(rows.loss_mask, prob)
    assert not rows.mask[~t.valid[kids]].any()  # edges never sampled are inert


def test_truncate_and_refeed_continue_a_prefix_from_its_cache(model):
    prompts, pmask = sampling.pad_prompts([[5, 6, 7], [9, 10]], pad_id=0)
    cfg = sampling.SamplingConfig(5, backend="xla")
    out, s = cached.decode(model, cached.prefill(model, prompts, pmask), jax.random.key(2), cfg)
    cut = np.array([2, 0])  # keep o_{<=2} of row 0, o_{<=0} of row 1
    s = cached.truncate(s, np.asarray(pmask).sum(1) + cut)
    s = cached.extend(model, s, np.asarray(out.tokens)[[0, 1], cut][:, None], np.ones((2, 1), np.int32))
    prefix, pm = sampling.pad_prompts(
        [[5, 6, 7] + np.asarray(out.tokens[0, :3]).tolist(), [9, 10, int(out.tokens[1, 0])]], 0
    )
    np.testing.assert_allclose(s.logits, cached.prefill(model, prefix, pm).logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="keep must be"):
        cached.truncate(s, [99, 0])


# ------------------------------------------------------------------ the kinds under the trainer
TREE = [
    "algo.branching=[2, 2]",
    "algo.segment_len=1",
    "algo.last_segment_len=2",
    "algo.buffer_size=16",
    "algo.replay_rows=4",
    "algo.edges_per_question=3",
]


@pytest.fixture(scope="module")
def tree_trainer(tmp_path_factory):
    tr = train.Trainer(tiny_run(tmp_path_factory.mktemp("tree") / "run", "spo_tree", *TREE))
    yield tr
    tr.close()


def step_edges(rollout, E):
    """The E new edges that ride along with a batch (``tree.pack_edges`` undone)."""
    return {k: v.reshape((-1,) + v.shape[2:])[:E] for k, v in rollout.extras["step_edges"].items()}


def test_tree_kind_rows_replay_and_buffer(tree_trainer):
    tr = tree_trainer
    a = tr.cfg.algo
    state = tr.algo.init_state(a)
    rollout, m = tr.kind.collect(tr.ctx, jax.random.key(0), state)
    E, N = 2 * (2 + 4), 2 * a.edges_per_question  # P = 2 trees of branching (2, 2); at most N edges train
    assert rollout.num_rows == N + a.replay_rows and rollout.tokens.shape[1] == a.path_width
    new = slice(0, N)
    edges = step_edges(rollout, E)
    assert m["tree/edges"] == (edges["segment_mask"].sum(1) > 0).sum()
    assert m["tree/sampled_tokens"] == edges["segment_mask"].sum()
    trained = rollout.loss_mask[new].sum(1) > 0
    assert trained.sum() == m["tree/edges_trained"] and trained.sum() <= N
    np.testing.assert_array_equal(rollout.extras["edge_valid"][new] > 0, trained)
    # every edge with loss tokens and a nonzero advantage (drop_zero_adv) either trains now or
    # waits in the buffer; the others do neither
    has_loss = (edges["segment_mask"] * (np.exp(edges["policy_logprobs"]) < a.prob_threshold)).sum(1) > 0
    adv = np.asarray(spo_tree.edge_advantages(edges["node_values"], edges["parent_values"], edges["sibling_std"], a))
    assert a.drop_zero_adv
    eligible = has_loss & (adv != 0)
    assert trained.sum() + edges["pending"].sum() == eligible.sum()
    assert not edges["pending"][~eligible].any()
    assert not rollout.loss_mask[N:].any()  # nothing buffered yet: replay rows inert
    batch = rollout.with_items(old_logprobs=rollout.policy_logprobs)
    state = jax.jit(tr.algo.update_state, static_argnums=(2,))(state, batch, a)
    buffered = int(np.asarray(state["buffer"]["valid"]).sum())
    assert buffered == int(edges["pending"].sum())
    if buffered:  # next step: buffered edges come back as replay rows, rebuilt from the state
        again, m2 = tr.kind.collect(tr.ctx, jax.random.key(1), state)
        assert m2["tree/replayed"] > 0
        slots = again.extras["buffer_slot"][N:]
        used = slots >= 0
        buf = jax.tree.map(np.asarray, state["buffer"])
        np.testing.assert_array_equal(again.tokens[N:][used], buf["tokens"][slots[used]])
        np.testing.assert_array_equal(
            again.policy_logprobs[N:][used], buf["policy_logprobs"][slots[used]] * buf["tree_mask"][slots[used]]
        )


def test_tree_rows_do_not_grow_with_the_tree_and_split_into_micro_batches(tmp_path, monkeypatch):
    """The memory fix: the update's rows are the edges that can train, not every potential edge
    (each row is a forward and backward pass over the whole path; the rows of every edge, 580 at
    branching (6, 6, 6), held ~22 GB in one pass with ``tiny``), and their count is a multiple of
    ``train.micro_batch_size``, which the update then uses (E + R = 43 rows here did not divide)."""
    run = tiny_run(
        tmp_path / "run",
        "spo_tree",
        *TREE,
        "algo.branching=[4, 4]",
        "algo.replay_rows=3",
        "train.micro_batch_size=4",
    )
    tr = train.Trainer(run)
    seen = []
    step = update.Updater.step

    def spy(self, name, tx, loss_fn, trainable, opt_state, inputs, batch, scalars, micro_batch_size):
        seen.append((inputs["tokens"].shape[0], micro_batch_size))
        return step(self, name, tx, loss_fn, trainable, opt_state, inputs, batch, scalars, micro_batch_size)

    monkeypatch.setattr(update.Updater, "step", spy)
    try:
        a = tr.cfg.algo
        rollout, _ = tr.kind.collect(tr.ctx, jax.random.key(0), tr.state.algo_arrays())
        E = 2 * (4 + 16)
        assert rollout.num_rows == 12  # 2 * 3 new + 3 replay rows, rounded up to a multiple of 4
        assert rollout.extras["step_edges"]["tokens"].shape[:2] == (12, 4)  # the 40 edges ride along
        assert step_edges(rollout, E)["tokens"].shape == (E, a.path_width)
        m = train.rl_step(tr, metrics_log.Timer())
    finally:
        tr.close()
    assert seen == [(12, 4)] and np.isfinite(m["loss"])


def test_training_rows_give_the_loss_and_gradient_of_every_edge_as_a_row(model, grown):
    """Only the taken edges (and the replay rows) as rows, padded with inert copies: the loss and
    its gradient equal those of the batch that held every potential edge as a row."""
    prompts, pmask, _, t = grown
    rng = np.random.default_rng(0)
    rewards = np.where(t.leaf, rng.integers(0, 2, t.leaf.shape), np.nan).astype(np.float32)
    t = dataclasses.replace(t, rewards=rewards, values=tree.node_values(t.parent, t.valid, t.leaf, rewards))
    new = tree.edge_rows(t, prompts, pmask, np.array([11, 12]), prob_threshold=0.9)
    E = new.num_rows
    candidates = np.flatnonzero((new.extras["edge_valid"] > 0) & (new.loss_mask.sum(1) > 0))
    take = np.zeros(E, bool)
    take[candidates[::2]] = True
    replayed = jax.tree.map(lambda x: np.asarray(x)[candidates[1:4]], new).with_items(
        buffer_slot=np.array([0, 1, 2], np.int32)
    )
    assert 1 < take.sum() <= 5
    old_layout = jax.tree.map(
        lambda *xs: np.concatenate(xs),
        new.replace(loss_mask=new.loss_mask * take[:, None]).with_items(buffer_slot=np.full(E, -1, np.int32)),
        replayed,
    )
    rows = tree.training_rows(new, take, replayed, new_rows=5, multiple=4)
    assert rows.num_rows == 8 < old_layout.num_rows  # 5 + 3

    cfg = spo_tree.Config(branching=BRANCHING, segment_len=M, last_segment_len=LAST)
    algo = algorithms.get("spo_tree")
    graphdef, params = nnx.split(model)

    def loss_and_grad(rollout):
        old = jnp.asarray(rollout.policy_logprobs) - 0.05 * jnp.asarray(rollout.mask)
        batch, _ = algorithms.make_batch(
            algo, rollout.with_items(old_logprobs=old, ref_logprobs=old - 0.1), cfg, algo.init_state(cfg)
        )
        tokens, attention = train.model_inputs(rollout)
        T = rollout.tokens.shape[1]

        def loss(p):
            logp = completion_logprobs(nnx.merge(graphdef, p), jnp.asarray(tokens), jnp.asarray(attention), T)
            return spo_tree.loss(logp, batch, cfg)[0]

        return jax.value_and_grad(loss)(params)

    want_loss, want_grad = loss_and_grad(old_layout)
    got_loss, got_grad = loss_and_grad(rows)
    assert float(want_loss) != 0.0
    # equal up to f32 summation order: the whitened advantages make the loss a near-cancelling sum
    # of O(1) terms, so its error is absolute (~1e-7 = f32 eps x the terms), not relative
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-7)
    for g, w in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * np.abs(w).max())


def test_chain_kind_cutpoints_values_and_token_budget(tmp_path):
    tr = train.Trainer(
        tiny_run(
            tmp_path / "run",
            "spo_chain",
            "algo.num_continuations=2",
            "sampling.max_new_tokens=4",
            "algo.cutpoint_interval=1",
            "algo.prob_threshold=1.0",
        )
    )
    try:
        rollout, m = tr.kind.collect(tr.ctx, jax.random.key(0), None)
    finally:
        tr.close()
    B = rollout.num_rows
    cuts = chain.cutpoints(rollout.policy_logprobs, rollout.mask, 1.0, 1)  # every token: c = t - 1
    for b in range(B):
        c = cuts[b]
        np.testing.assert_array_equal(np.flatnonzero(rollout.extras["cut_mask"][b]), c[c >= 0])
        assert rollout.extras["has_prompt_value"][b] == (c.size > 0 and c[0] == -1)
    v = rollout.extras["cut_values"][rollout.extras["cut_mask"] > 0]
    assert ((v >= 0) & (v <= 1)).all()
    assert m["chain/sampled_tokens"] == rollout.lengths.sum() + m["chain/continuation_tokens"]
    assert m["chain/continuation_tokens"] > 0 and m["chain/unique_cuts"] <= m["chain/cuts"]
    # a continuation never runs past the trajectory budget: at most N * (T - (c + 1)) tokens per cut
    budget = sum(2 * (4 - (c + 1)) for row in cuts for c in set(row.tolist()))
    assert m["chain/continuation_tokens"] <= budget


@pytest.mark.slow
def test_spo_tree_stopped_and_resumed_with_its_edge_buffer_matches_a_run_never_stopped(tmp_path):
    # the random tiny model earns no reward, so every advantage is 0: keep those edges, or the
    # buffer stays empty (drop_zero_adv is tested in test_algorithms_spo)
    setting = (*TREE, "train.steps=4", "checkpoint.every=1", "algo.drop_zero_adv=false")
    ref = train.train(tiny_run(tmp_path / "ref", "spo_tree", *setting))
    assert ref["status"] == "finished"
    run = tiny_run(tmp_path / "run", "spo_tree", *setting)
    assert train.train(run, stop_after=2)["status"] == "stopped"
    ckpt = checkpoint.Checkpointer(tmp_path / "run" / "checkpoints", async_save=False)
    _, saved, _ = ckpt.restore(lambda meta: train.Trainer(run).restore_target(meta))
    ckpt.close()
    assert np.asarray(saved["algo_state"]["buffer"]["valid"]).sum() > 0, "the checkpoint should hold buffered edges"
    assert train.train(run)["status"] == "finished"
    comparable = lambda d: [
        {k: v for k, v in r.items() if not k.startswith(("time/", "tree/prefill", "tree/decode")) and k != "compiles"}
        for r in metrics_log.read_metrics(d)
    ]
    got, want = comparable(tmp_path / "run"), comparable(tmp_path / "ref")
    assert any(r.get("tree/replayed", 0) > 0 for r in want[2:]), "the resumed steps should replay buffered edges"
    assert got == want
