"""AEPO (algorithms/aepo.py, rewards/gui_grounding.py): the spec's hand-computed rewards and RLOO
advantages, the named parse failures, the collinearity rule, and the clip-high-0.4 loss by hand."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm.algorithms import aepo, grpo
from jaxrl_llm.rewards import gui_grounding as gg
from jaxrl_llm.types import Example

BOX = (10, 10, 20, 20)


def completion(points, think=True):
    return gg.format_points(points, think=think, thought="look")


def example(bbox=BOX):
    return Example("Click the disc.", None, {"bbox": bbox}, "ex")


AER = gg.AdaptiveExplorationReward()


def test_spec_n3_first_hit_at_rank_2():
    c = completion([(0, 0), (15, 15), (30, 5)])  # miss, hit, miss; not collinear
    np.testing.assert_allclose(AER(c, example()), 1.40825, atol=1e-5)  # 1 + 1/sqrt(3 * 2)
    assert gg.first_hit_rank(gg.parse_points(c).points, BOX) == 2


def test_spec_n2_no_hit():
    assert AER(completion([(0, 0), (30, 5)]), example()) == pytest.approx(0.5)  # 1 - 1/2


def test_spec_collinear_points_get_minus_one():
    c = completion([(0, 0), (1, 1), (2, 2)])
    assert gg.aer_breakdown(c, BOX) == (-1.0, gg.COLLINEAR)
    # also when a point hits: the rule comes before the accuracy term (code: total -1, not 1 - 1)
    assert gg.aer_breakdown(completion([(15, 15), (16, 16), (17, 17)]), BOX) == (-1.0, gg.COLLINEAR)


def test_duplicates_count_as_collinear_and_the_cross_product_is_exact():
    assert gg.aer_breakdown(completion([(15, 15), (15, 15), (0, 7)]), BOX) == (-1.0, gg.COLLINEAR)
    assert gg.has_collinear_triple([(0, 0), (1, 1), (2, 2)])
    assert not gg.has_collinear_triple([(0, 0), (1, 1)])  # N < 3: no triple
    # nearly collinear: cross = 1e-12 * ... is not 0; isclose(c, 0) at default tolerances is exact too
    assert not gg.has_collinear_triple([(0, 0), (1, 1), (2, 2.000000000001)])
    assert gg.has_collinear_triple([(0.5, 0.5), (1.5, 1.5), (1e6, 1e6)])
    assert gg.cross((0, 0), (1, 0), (0, 1)) == 1


def test_hit_at_rank_1_and_single_point():
    assert AER(completion([(15, 15)]), example()) == pytest.approx(2.0)  # 1 + 1/sqrt(1*1)
    assert AER(completion([(15, 15), (0, 3)]), example()) == pytest.approx(1 + 1 / math.sqrt(2))
    assert AER(completion([(0, 0)]), example()) == pytest.approx(0.0)  # 1 - 1/1
    assert AER(completion([(10, 20)]), example()) == pytest.approx(2.0)  # the box is inclusive
    assert gg.accuracy_reward(4, None) == -0.25
    with pytest.raises(ValueError, match="N=0"):
        gg.accuracy_reward(0, None)


@pytest.mark.parametrize(
    "text, reason",
    [
        ('<think>a</think>[{"point_2d": [1, 2]', gg.MALFORMED_JSON),
        ("<think>a</think>hello", gg.MALFORMED_JSON),
        ('<think>a</think>{"point_2d": [1, 2]}', gg.NOT_A_LIST),
        ('<think>a</think>"[1, 2]"', gg.NOT_A_LIST),
        ('<think>a</think>[{"point_2d": [1, 2, 3]}]', gg.BAD_POINT),  # wrong arity
        ('<think>a</think>[{"point_2d": [1]}]', gg.BAD_POINT),
        ('<think>a</think>[{"point_2d": [1, 2]}, {"point_2d": ["1", 2]}]', gg.BAD_POINT),
        ('<think>a</think>[{"point_2d": [true, 2]}]', gg.BAD_POINT),
        ('<think>a</think>[{"point": [1, 2]}]', gg.BAD_POINT),
        ("<think>a</think>[[1, 2]]", gg.BAD_POINT),  # a bare pair is not the point_2d format
        ("<think>a</think>[]", gg.EMPTY),
        ('[{"point_2d": [15, 15]}]', gg.THINK_FORMAT),  # no <think>
        ('x<think>a</think>[{"point_2d": [15, 15]}]', gg.THINK_FORMAT),  # not first
        ('<think>a</think><think>b</think>[{"point_2d": [15, 15]}]', gg.THINK_FORMAT),  # two pairs
        ("<think>a</think>   ", gg.THINK_FORMAT),  # empty answer
        ('<think>a[{"point_2d": [15, 15]}]', gg.THINK_FORMAT),  # unclosed
    ],
)
def test_malformed_answers_get_minus_one_with_the_named_reason(text, reason):
    assert gg.parse_points(text).reason == reason
    assert gg.aer_breakdown(text, BOX) == (-1.0, reason)
    assert AER(text, example()) == -1.0
    assert gg.SingleAnswerReward()(text, example()) == -1.0
    assert gg.num_points(text) == 0 and gg.FirstPoint()(text) is None


def test_tiny_model_knobs_and_round_trip():
    pair = gg.AdaptiveExplorationReward(think=False, point_format="pair")
    assert pair(" [[15,15],[0,3]]\n", example()) == pytest.approx(1 + 1 / math.sqrt(2))
    assert gg.parse_points('[{"point_2d":[15,15]}]', think=False, point_format="pair").reason == gg.BAD_POINT
    assert gg.parse_points("[[1,2],[3]]", think=False, point_format="pair").reason == gg.BAD_POINT
    pts = ((3, 4), (5.5, 6))
    for think in (True, False):
        for fmt in gg.POINT_FORMATS:
            assert gg.parse_points(gg.format_points(pts, think, fmt), think, fmt).points == pts
    assert json.loads(gg.format_points(pts, False)) == [{"point_2d": [3, 4]}, {"point_2d": [5.5, 6]}]
    with pytest.raises(ValueError, match="point_format='xy'"):
        gg.parse_points("[]", point_format="xy")
    with pytest.raises(ValueError, match=r"example 'ex' needs metadata\['bbox'\]"):
        AER(completion([(1, 1)]), example(bbox=(5, 5, 1, 1)))


def test_single_answer_reads_the_first_point_only():
    single = gg.SingleAnswerReward()
    assert single(completion([(15, 15), (0, 0)]), example()) == 1.0
    assert single(completion([(0, 0), (15, 15)]), example()) == -1.0
    assert single(completion([(15, 15), (16, 16), (17, 17)]), example()) == 1.0  # no collinear rule
    assert gg.first_point_hit(completion([(15, 15), (0, 0)]), example())
    assert not gg.first_point_hit(completion([(0, 0), (15, 15)]), example())
    assert gg.any_point_hit(completion([(0, 0), (15, 15)]), example())
    assert gg.num_points(completion([(0, 0), (15, 15)])) == 2
    assert gg.FirstPoint()(completion([(3, 4), (15, 15)])) == "3,4"


@pytest.mark.parametrize("jit", [False, True])
def test_spec_rloo_advantages(jit):
    rollout = {"rewards": jnp.asarray([1.40825, 0.5, -1.0, 2.0]), "mask": jnp.ones((4, 3)), "group_size": 4}
    fn = (lambda r: aepo.advantages({**rollout, "rewards": r}, aepo.Config())) if jit else None
    adv, metrics = jax.jit(fn)(rollout["rewards"]) if jit else aepo.advantages(rollout, aepo.Config())
    np.testing.assert_allclose(adv, [0.90825, -0.30275, -2.30275, 1.69725], atol=1e-5)
    assert float(metrics["frac_zero_std_groups"]) == 0.0
    same, m = aepo.advantages({**rollout, "rewards": jnp.full((4,), 2.0)}, aepo.Config())
    assert float(m["frac_zero_std_groups"]) == 1.0 and np.all(np.asarray(same) == 0.0)


def hand_batch():
    # row 0: A = +1, ratios 1.3 (inside 1 + 0.4) and 1.5 (clipped high); row 1: A = -1, ratio 3.5 (dual-clip
    # at c = 3) and a padding token
    old = jnp.log(jnp.asarray([[0.2, 0.2], [0.1, 0.1]]))
    new = jnp.log(jnp.asarray([[0.26, 0.3], [0.35, 0.9]]))
    batch = {
        "old_logprobs": old,
        "advantages": jnp.asarray([1.0, -1.0]),
        "mask": jnp.asarray([[1.0, 1.0], [1.0, 0.0]]),
        "num_tokens": jnp.float32(3.0),
        "num_seqs": jnp.float32(2.0),
    }
    return new, batch


@pytest.mark.parametrize("jit", [False, True])
def test_hand_computed_loss_and_gradient_with_clip_high_0_4(jit):
    new, batch = hand_batch()
    fn = lambda lp: aepo.loss(lp, batch, aepo.Config())
    fn = jax.jit(fn) if jit else fn
    (loss, metrics), grad = jax.value_and_grad(fn, has_aux=True)(new)
    # per token: -1.3 (unclipped), -1.4 (clipped at 1 + 0.4), min(3.5, 3) = 3 (dual-clip); token mean over 3
    np.testing.assert_allclose(loss, (-1.3 - 1.4 + 3.0) / 3, rtol=1e-5)
    # d/dlogpi of -rho A / 3 = -rho A / 3 on the unclipped token only
    np.testing.assert_allclose(grad, [[-1.3 / 3, 0.0], [0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(metrics["clip_frac/high"], 1 / 3, rtol=1e-5)
    np.testing.assert_allclose(metrics["clip_frac/dual"], 1 / 3, rtol=1e-5)
    assert "kl" not in metrics
    # GRPO's symmetric 0.2 clip would switch off the 1.3 token too: the clip-high is what differs
    g_grpo = jax.grad(lambda lp: grpo.loss(lp, batch, grpo.Config(beta=0.0, aggregation="token_mean"))[0])(new)
    assert float(g_grpo[0, 0]) == 0.0
    # without the dual clip the negative-advantage token keeps its gradient rho A / 3
    g_plain = jax.grad(lambda lp: aepo.loss(lp, batch, aepo.Config(clip_c=None))[0])(new)
    np.testing.assert_allclose(g_plain[1, 0], 3.5 / 3, rtol=1e-5)


def test_config_and_registry():
    with pytest.raises(ValueError, match="no KL term"):
        aepo.Config(beta=0.1)
    with pytest.raises(ValueError, match="must be > 0"):
        aepo.Config(eps_high=0.0)
    algo = algorithms.get("aepo")
    assert algo.rollout == "group" and not algo.uses_reference(aepo.Config())
    assert (aepo.Config().eps_low, aepo.Config().eps_high, aepo.Config().aggregation) == (0.2, 0.4, "token_mean")
