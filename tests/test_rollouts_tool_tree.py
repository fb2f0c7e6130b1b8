"""The ``tool_tree`` rollout kind (ARPO, https://arxiv.org/abs/2507.19849): the entropy proxy and
the branch rule by hand, shared prefixes of a fork tree, and a tiny-model rollout whose branches
continue from their parent's cache: the trainer's log-probs of every row equal the sampler's."""

import dataclasses
import functools
import math

import jax
import numpy as np
import pytest

from jaxrl_llm import algorithms, train
from jaxrl_llm import config as C
from jaxrl_llm.policy import Policy
from jaxrl_llm.rollouts import Context, tool_tree
from jaxrl_llm.types import Example


def test_entropy_proxy_and_branch_rule_by_hand():
    # one token, top-2 log-probs [ln .5, ln .5], |V| = 4: H = ln 2 / ln 4 = 0.5
    assert math.isclose(tool_tree.segment_entropy(np.log([[0.5, 0.5]]), 20, 4), 0.5, rel_tol=1e-9)
    # a sum over the first k tokens, not a mean
    two = np.log([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    assert math.isclose(tool_tree.segment_entropy(two, 2, 4), 1.0, rel_tol=1e-9)
    # alpha 0.5, beta 0.2, H_init 0.30, H_now 0.55: P = 0.55; u = 0.60 -> s = 0.55 > 0.5; u = 0.54 -> 0.49
    assert math.isclose(tool_tree.branch_probability(0.55, 0.30, 0.5, 0.2), 0.55, rel_tol=1e-9)
    assert not tool_tree.should_branch(0.60, 0.55, 0.30, 0.5, 0.2)
    assert tool_tree.should_branch(0.54, 0.55, 0.30, 0.5, 0.2)


def traj(n, parent=-1, pos=0):
    return tool_tree.Trajectory(tokens=[0] * n, parent=parent, branch_pos=pos)


def test_shared_prefix_of_a_fork_tree():
    # group of 4: 0 root (10 tokens); 1 forked from 0 at 4; 2 forked from 1 at 7; 3 a fresh root
    shared = tool_tree.shared_prefix([traj(10), traj(9, 0, 4), traj(12, 1, 7), traj(5)], 4)
    np.testing.assert_array_equal(shared, [[10, 4, 4, 0], [4, 9, 7, 0], [4, 7, 12, 0], [0, 0, 0, 5]])


@dataclasses.dataclass(frozen=True)
class CharTool:
    """A tool whose closing tag is one common character, so the random tiny model calls it."""

    name: str
    close_tag: str

    def run(self, text):
        return "42"


TOOLS = {f"c{i}": functools.partial(CharTool, f"c{i}", ch) for i, ch in enumerate(" eaoitnsrl")}


class Stream:
    def __init__(self):
        self.i = 0

    def next_indexed(self):
        self.i += 1
        return self.i, Example(prompt=f"What is {self.i} + 1?", answer=str(self.i + 1), metadata={}, id=str(self.i))


def test_branches_continue_from_the_parent_cache(monkeypatch):
    for name, make in TOOLS.items():
        monkeypatch.setitem(tool_tree.tools_lib.TOOLS, name, make)
    tools = ", ".join(f'"{n}"' for n in TOOLS)
    cfg = C.resolve_algo(
        C.apply_overrides(
            C.default_config(),
            [
                "model.name=tiny",
                "algorithm=arpo",
                "train.prompts_per_step=2",
                "train.group_size=4",
                "algo.initial_rollouts=2",
                "algo.alpha=1.0",  # every tool result branches while slots remain
                "sampling.max_new_tokens=8",
                f"env.tools=[{tools}]",
                "env.max_tool_calls=2",
                "env.max_tool_output_tokens=8",
                "mesh.num_devices=1",
            ],
        )
    )
    policy = Policy.create(cfg)
    seen = []

    def score(texts, examples):
        seen.extend(texts)
        info = {"failures": {"score": 1}, "timeouts": {}, "errors": ["one failed call"]}  # counted, not lost
        return np.asarray([float("42" in t) for t in texts], np.float32), info

    ctx = Context(cfg, algorithms.get("arpo"), policy, None, Stream(), score)
    with pytest.warns(UserWarning, match="reward failures"):
        rollout, metrics = tool_tree.collect(ctx, jax.random.key(0), None)
    assert metrics["reward/failures"] == 1.0  # the scorer's failure reaches the step's metrics
    B, W = rollout.tokens.shape
    assert B == 8 and rollout.group_size == 4 and metrics["arpo/branches"] > 0
    assert metrics["arpo/tool_calls"] > 0
    parent, pos = rollout["branch_parent"], rollout["branch_pos"]
    for b in np.flatnonzero(parent >= 0):  # a branch starts with its parent's tokens, tool result included
        assert parent[b] // 4 == b // 4
        np.testing.assert_array_equal(rollout.tokens[b, : pos[b]], rollout.tokens[parent[b], : pos[b]])
        assert rollout.loss_mask[b, pos[b] - 1] == 0  # the last shared token is the tool result's
    lm = np.asarray(rollout.loss_mask)
    assert (lm < np.asarray(rollout.mask)).any()  # tool results are out of the loss
    assert np.all(rollout.lengths > 0)  # every slot of the budget was used
    # the tool's "42" never reaches the scorer: it reads the policy's own text
    assert not any("42" in t for t in seen) and float(rollout.rewards.sum()) == 0.0
    tokens, attention = train.model_inputs(rollout)
    lp = policy.logprobs(policy.params, tokens, attention, W)
    np.testing.assert_allclose(lp[lm > 0], np.asarray(rollout.policy_logprobs)[lm > 0], atol=2e-4)
    np.testing.assert_array_equal(rollout["shared_prefix"][np.arange(B), np.arange(B) % 4], rollout.lengths)
