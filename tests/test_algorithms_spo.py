"""SPO-chain and SPO-tree (Segment Policy Optimization, arXiv 2505.23564): the paper's
hand-computed cases, the probability mask, whitening, and SPO-tree's edge buffer."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import spo_chain, spo_tree
from jaxrl_llm.rollouts import chain, tree
from jaxrl_llm.types import Rollout


# ------------------------------------------------------------------ SPO-chain
def chain_case():
    """q = [0.95, 0.5, 0.97, 0.3, 0.99, 0.6], K = 1: low-prob {1, 3, 5}, cuts {0, 2, 4};
    V(0) = 0.2, V(2) = 0.6, V(4) = 0.5, R = 1."""
    q = np.array([[0.95, 0.5, 0.97, 0.3, 0.99, 0.6]], np.float32)
    mask = np.ones((1, 6), np.float32)
    cut_mask = np.zeros((1, 6), np.float32)
    cut_values = np.zeros((1, 6), np.float32)
    cut_mask[0, [0, 2, 4]] = 1
    cut_values[0, [0, 2, 4]] = [0.2, 0.6, 0.5]
    return {
        "tokens": jnp.zeros((1, 6), jnp.int32),
        "mask": mask,
        "old_logprobs": np.log(q),
        "rewards": np.array([1.0], np.float32),
        "cut_mask": cut_mask,
        "cut_values": cut_values,
        "prompt_value": np.zeros(1, np.float32),
        "has_prompt_value": np.zeros(1, np.float32),
        "group_size": 1,
    }


def test_chain_cutpoints_of_the_spec_case():
    q = np.array([[0.95, 0.5, 0.97, 0.3, 0.99, 0.6]])
    cuts = chain.cutpoints(np.log(q), np.ones_like(q), 0.9, 1)
    np.testing.assert_array_equal(cuts[0], [0, 2, 4])
    np.testing.assert_array_equal(chain.cutpoints(np.log(q), np.ones_like(q), 0.9, 2)[0], [0, 4])  # L[::2] - 1


@pytest.mark.parametrize("jit", [False, True])
def test_chain_hand_computed_advantages(jit):
    cfg = spo_chain.Config(cutpoint_interval=1, whiten=False)
    rollout = Rollout.from_mapping(chain_case())
    fn = jax.jit(spo_chain.advantages, static_argnums=(1,)) if jit else spo_chain.advantages
    adv, _ = fn(rollout, cfg)
    np.testing.assert_allclose(adv[0], [0, 0.4, 0, -0.1, 0, 0.5], atol=1e-6)


def test_chain_prompt_value_gives_the_first_segment_a_base():
    case = chain_case()
    case["has_prompt_value"] = np.ones(1, np.float32)
    case["prompt_value"] = np.array([0.1], np.float32)
    # cut -1 (first token low-prob) is the prompt: segment (-1, 0] gets V(0) - V(-1) = 0.1
    case["old_logprobs"] = np.log(np.array([[0.5, 0.5, 0.97, 0.3, 0.99, 0.6]], np.float32))
    adv, _ = spo_chain.advantages(Rollout.from_mapping(case), spo_chain.Config(whiten=False))
    np.testing.assert_allclose(adv[0], [0.1, 0.4, 0, -0.1, 0, 0.5], atol=1e-6)


def test_chain_whitening_is_over_the_kept_tokens():
    adv, _ = spo_chain.advantages(Rollout.from_mapping(chain_case()), spo_chain.Config())
    raw = np.array([0.4, -0.1, 0.5])  # the kept tokens 1, 3, 5
    expect = (raw - raw.mean()) / np.sqrt(raw.var() + 1e-8)
    np.testing.assert_allclose(np.asarray(adv)[0, [1, 3, 5]], expect, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(adv)[0, [0, 2, 4]], 0)


def test_chain_frac_prob_masked_counts_the_completion_when_the_loss_mask_already_excludes():
    """The ``chain`` kind gives ``loss_mask`` = completion x (q < rho); the diagnostic is the
    fraction of completion tokens masked (3 of 6 here), not of the already-masked loss mask."""
    case = chain_case()
    q = np.exp(case["old_logprobs"])
    _, bare = spo_chain.advantages(Rollout.from_mapping(case), spo_chain.Config())
    _, kind = spo_chain.advantages(
        Rollout.from_mapping(case | {"loss_mask": case["mask"] * (q < 0.9)}), spo_chain.Config()
    )
    np.testing.assert_allclose([bare["frac_prob_masked"], kind["frac_prob_masked"]], [0.5, 0.5], atol=1e-6)


# ------------------------------------------------------------------ SPO-tree
def spec_tree():
    """root -> {a, b}; a -> leaves {1, 0}; b -> leaves {1, 1}."""
    parent = np.array([-1, 0, 0, 1, 1, 2, 2])
    valid = np.ones(7, bool)
    leaf = np.array([0, 0, 0, 1, 1, 1, 1], bool)
    rewards = np.array([np.nan, np.nan, np.nan, 1, 0, 1, 1], np.float32)
    return parent, valid, leaf, rewards


def test_tree_values_bottom_up_and_edge_advantages():
    parent, valid, leaf, rewards = spec_tree()
    v = tree.node_values(parent, valid, leaf, rewards)
    np.testing.assert_allclose(v, [0.75, 0.5, 1.0, 1, 0, 1, 1])
    kids = np.arange(1, 7)
    std = tree.sibling_std(parent, valid, v)
    adv = spo_tree.edge_advantages(v[kids], v[parent[kids]], std[kids], spo_tree.Config())
    np.testing.assert_allclose(adv, [-0.25, 0.25, 0.5, -0.5, 0, 0])  # b's leaves: 0 (dropped)
    grpo = spo_tree.edge_advantages(v[kids], v[parent[kids]], std[kids], spo_tree.Config(adv_method="grpo"))
    np.testing.assert_allclose(grpo, [-1, 1, 1, -1, 0, 0], atol=1e-6)  # sibling std 0.25, 0.5, 0


def test_tree_recursive_mean_differs_from_the_leaf_mean_when_a_branch_ends_early():
    # root -> {a (a leaf, R = 1), b}; b -> leaves {0, 0, 0}: V(root) = (1 + 0) / 2, not 1/4
    parent = np.array([-1, 0, 0, 2, 2, 2])
    leaf = np.array([0, 1, 0, 1, 1, 1], bool)
    v = tree.node_values(parent, np.ones(6, bool), leaf, np.array([0, 1, 0, 0, 0, 0], np.float32))
    assert v[0] == 0.5


def tree_rollout(seed=0, B=6, W=4):
    rng = np.random.default_rng(seed)
    mask = np.ones((B, W), np.float32)
    return Rollout.from_mapping(
        {
            "tokens": jnp.asarray(rng.integers(0, 9, (B, W)), jnp.int32),
            "mask": mask,
            "old_logprobs": np.log(np.full((B, W), 0.5, np.float32)),
            "node_values": np.array([0.5, 1.0, 1, 0, 1, 1], np.float32),
            "parent_values": np.array([0.75, 0.75, 0.5, 0.5, 1, 1], np.float32),
            "sibling_std": np.array([0.25, 0.25, 0.5, 0.5, 0, 0], np.float32),
            "group_size": 1,
        }
    )


def test_tree_token_advantages_prob_mask_and_whitening():
    r = tree_rollout()
    old = np.log(np.full((6, 4), 0.5, np.float32))
    old[0, 1] = np.log(0.95)  # prob-masked
    r = r.with_items(old_logprobs=old)
    adv, m = spo_tree.advantages(r, spo_tree.Config(whiten=False))
    expect = np.repeat(np.array([-0.25, 0.25, 0.5, -0.5, 0, 0])[:, None], 4, 1)
    expect[0, 1] = 0
    np.testing.assert_allclose(adv, expect, atol=1e-6)
    adv_w, _ = spo_tree.advantages(r, spo_tree.Config())
    keep = np.ones((6, 4), bool)
    keep[0, 1] = False
    raw = expect[keep]
    np.testing.assert_allclose(np.asarray(adv_w)[keep], (raw - raw.mean()) / np.sqrt(raw.var() + 1e-8), atol=1e-5)
    assert np.asarray(adv_w)[0, 1] == 0
    assert float(m["frac_prob_masked"]) == pytest.approx(1 / 24)
    # As the ``tree`` kind hands it over: ``loss_mask`` = segment x (q < rho), ``segment_mask`` the segment.
    keep_f = keep.astype(np.float32)
    _, m_kind = spo_tree.advantages(
        r.with_items(loss_mask=keep_f, segment_mask=np.ones((6, 4), np.float32)), spo_tree.Config()
    )
    assert float(m_kind["frac_prob_masked"]) == pytest.approx(1 / 24)


# ------------------------------------------------------------------ SPO-tree's edge buffer
SMALL = spo_tree.Config(
    branching=(2,), segment_len=2, last_segment_len=3, buffer_size=4, replay_rows=2, edges_per_question=2, max_age=2
)


def edge_batch(prompt_ids, pending, slots, values, W=3):
    """Rows that are also the step's new edges (``step_edges``, one per row, ``pending`` as given)."""
    B = len(prompt_ids)
    tok = np.arange(B * W, dtype=np.int32).reshape(B, W) + 100 * np.asarray(values, np.int32)[:, None]
    ones = np.ones((B, W), np.float32)
    rows = {
        "tokens": tok,
        "mask": ones,
        "loss_mask": ones,
        "policy_logprobs": -ones,
        "sampler_logprobs": -ones,
        "lengths": np.full(B, W, np.int32),
        "prompt_ids": np.asarray(prompt_ids, np.int32),
        "node_values": np.asarray(values, np.float32),
        "parent_values": np.zeros(B, np.float32),
        "sibling_std": np.zeros(B, np.float32),
        "depth": np.ones(B, np.int32),
        "tree_mask": ones,
        "segment_mask": ones,
        "edge_valid": np.ones(B, np.float32),
        "buffer_slot": np.asarray(slots, np.int32),
    }
    edges = {name: rows[name] for name in spo_tree.BUFFER_FIELDS} | {"pending": np.asarray(pending, np.float32)}
    return Rollout.from_mapping(rows | {"step_edges": {k: v[:, None] for k, v in edges.items()}})


def test_edge_buffer_push_replay_remove_and_age():
    update = jax.jit(spo_tree.update_state, static_argnums=(2,))
    state = spo_tree.init_state(SMALL)
    # step 1: edges 0, 1 of question 7 pending (not trained), edge 2 trained
    state = update(state, edge_batch([7, 7, 7], [1, 1, 0], [-1, -1, -1], [1, 2, 3]), SMALL)
    buf = jax.tree.map(np.asarray, state["buffer"])
    np.testing.assert_array_equal(buf["valid"], [1, 1, 0, 0])
    np.testing.assert_array_equal(buf["node_values"][:2], [1, 2])
    np.testing.assert_array_equal(buf["age"][:2], [1, 1])
    # select: the pool is 2 buffered + 3 new edges of question 7 -> 2 drawn in all
    new = edge_batch([7, 7, 7], [0, 0, 0], [-1, -1, -1], [4, 5, 6])
    take, slots, eligible = spo_tree.select_edges(state, new, jax.random.key(0), SMALL)
    assert eligible.all()
    assert take.sum() + (slots >= 0).sum() == 2 and slots.shape == (2,)
    # step 2: slot 0 replayed, a new edge pending -> slot 0 leaves, slot 1 ages to 2, new one age 1
    state = update(state, edge_batch([7, 8, 7], [0, 1, 0], [-1, -1, 0], [4, 5, 1]), SMALL)
    buf = jax.tree.map(np.asarray, state["buffer"])
    valid = buf["valid"] > 0
    assert sorted(buf["node_values"][valid].tolist()) == [2, 5]
    assert sorted(buf["age"][valid].tolist()) == [1, 2]
    # step 3: nothing new; the age-2 edge reaches age 3 > max_age and leaves
    state = update(state, edge_batch([7], [0], [-1], [0]), SMALL)
    buf = jax.tree.map(np.asarray, state["buffer"])
    assert buf["node_values"][buf["valid"] > 0].tolist() == [5]


def test_edge_buffer_keeps_the_youngest_when_full_and_drops_zero_advantages():
    state = spo_tree.init_state(SMALL)
    state = spo_tree.update_state(state, edge_batch([1, 1, 1, 1], [1, 1, 1, 1], [-1] * 4, [1, 2, 3, 4]), SMALL)
    state = spo_tree.update_state(state, edge_batch([2, 2], [1, 1], [-1, -1], [5, 6]), SMALL)
    buf = jax.tree.map(np.asarray, state["buffer"])
    assert buf["valid"].sum() == 4 and {5, 6} <= set(buf["node_values"].tolist())
    new = edge_batch([3, 3], [0, 0], [-1, -1], [0, 0])  # V(c) = V(p) = 0: A = 0
    take, _, eligible = spo_tree.select_edges(spo_tree.init_state(SMALL), new, jax.random.key(0), SMALL)
    assert not take.any() and not eligible.any()  # not trained now, and not buffered for later
    take, _, eligible = spo_tree.select_edges(
        spo_tree.init_state(SMALL), new, jax.random.key(0), dataclasses.replace(SMALL, drop_zero_adv=False)
    )
    assert take.all() and eligible.all()


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="adv_method"):
        spo_tree.Config(adv_method="x")
    with pytest.raises(ValueError, match="branching"):
        spo_tree.Config(branching=())
    with pytest.raises(ValueError, match="cutpoint_interval"):
        spo_chain.Config(cutpoint_interval=0)
