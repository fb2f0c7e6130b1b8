"""REFUEL (``algorithms/refuel.py``, kind ``refuel_pairs``): the paper's hand-computed regression
case, the equivalence of the code and paper forms, the implicit advantages, and the scripted
multi-turn user."""

import jax.numpy as jnp
import numpy as np

from jaxrl_llm import algorithms
from jaxrl_llm.algorithms import refuel
from jaxrl_llm.rollouts import dialogue
from jaxrl_llm.tasks import dialogue as script
from jaxrl_llm.types import Example


def _batch(cfg, chosen=(1.0, 0.0), rewards=(1.0, 0.5)):
    rollout = {
        "tokens": jnp.zeros((2, 1), jnp.int32),
        "mask": jnp.ones((2, 1)),
        "rewards": jnp.asarray(rewards),
        "group_ids": jnp.asarray([0, 0]),
        "group_size": 2,
        "chosen": jnp.asarray(chosen),
        "old_logprobs": jnp.asarray([[-1.0], [-1.0]]),
    }
    return algorithms.make_batch(algorithms.get("refuel"), rollout, cfg)[0]


def test_hand_computed_loss_and_forms():
    # chosen log-ratio 0.2, rejected -0.1 (Delta 0.3); rewards 1.0, 0.5; eta 1: (0.3 - 0.5)^2 = 0.04
    lp = jnp.asarray([[-0.8], [-1.1]])
    loss, m = refuel.loss(lp, _batch(refuel.Config(eta=1.0)), refuel.Config(eta=1.0))
    np.testing.assert_allclose(loss, 0.04, atol=1e-6)
    np.testing.assert_allclose(m["refuel/target"], 0.5, atol=1e-6)
    # eta = 2: code form (0.3 - 2 * 0.5)^2 = 0.49 = eta^2 x the paper form ((0.3 / 2) - 0.5)^2 = 0.1225
    code = refuel.loss(lp, _batch(refuel.Config(eta=2.0)), refuel.Config(eta=2.0))[0]
    np.testing.assert_allclose(code, 0.49, atol=1e-6)
    np.testing.assert_allclose(code / 4.0, (0.3 / 2 - 0.5) ** 2, atol=1e-6)
    # the chosen label is bookkeeping: swapping it (and the rewards' order with it) changes nothing
    swapped = refuel.loss(lp, _batch(refuel.Config(), chosen=(0.0, 1.0)), refuel.Config())[0]
    np.testing.assert_allclose(swapped, 0.04, atol=1e-6)


def test_advantages_are_the_gradient_weights_at_pi_t():
    b = _batch(refuel.Config(eta=1.0))
    np.testing.assert_allclose(b["advantages"], [4 * 0.5, -4 * 0.5], atol=1e-6)  # 4 eta (Q_self - Q_other)
    # beta > 0: the KL of turn h's tokens is subtracted from each return
    cfg = refuel.Config(beta=0.5)
    rollout = {
        "rewards": jnp.asarray([1.0, 0.5]),
        "old_logprobs": jnp.asarray([[-1.0], [-1.0]]),
        "ref_logprobs": jnp.asarray([[-1.2], [-0.8]]),
    }
    np.testing.assert_allclose(refuel.returns(rollout, jnp.ones((2, 1)), cfg), [1.0 - 0.1, 0.5 + 0.1], atol=1e-6)


def test_scripted_user_and_turn_rewards():
    e = Example(prompt="Calculate 3 + 4.", answer="7", metadata={}, id="a")
    ks = [script.increment(e, t) for t in (1, 2)]
    assert all(1 <= k <= 9 for k in ks) and ks == [script.increment(e, t) for t in (1, 2)]
    assert script.reference(e, 0) == 7 and script.reference(e, 2) == 7 + sum(ks)
    assert dialogue.turn_reward("<answer>7</answer>", e, 0) == 1.0
    assert dialogue.turn_reward(f"so {7 + ks[0]}", e, 1) == 1.0  # the last integer when no tag
    assert dialogue.turn_reward("<answer>7</answer>", e, 1) == 0.0
    assert script.reference(Example(prompt="q", answer="x", metadata={}, id="b"), 0) is None


def test_check_config():
    import types

    run = lambda **a: types.SimpleNamespace(
        algo=refuel.Config(**a),
        train=types.SimpleNamespace(
            prompts_per_step=2, num_minibatches=1, share_prompt=False, micro_batch_size=0, group_size=1
        ),
    )
    assert refuel.check_config(run()) is None
    assert "horizon" in refuel.check_config(run(horizon="past"))
    assert "eta > 0" in refuel.check_config(run(eta=0.0))


def _fake_ctx(P=4, T=3):
    import types

    import jax

    enc = lambda text: [4 + ord(c) % 90 for c in text]
    dec = {4 + ord(c) % 90: c for c in "0123456789"}

    def generate(tokens, mask, key, n, greedy=False):
        digits = np.asarray(jax.random.randint(key, (tokens.shape[0],), 0, 3))  # few values: some pairs tie
        out = np.zeros((tokens.shape[0], T), np.int32)
        out[:, 0] = [enc(str(d))[0] for d in digits]
        out[:, 1] = 2  # eos
        return {"tokens": out, "lengths": np.full(tokens.shape[0], 2, np.int32)}

    tokenizer = types.SimpleNamespace(decode=lambda t, skip_special_tokens=True: "".join(dec.get(x, "") for x in t))
    policy = types.SimpleNamespace(
        render=lambda e: [1, 5, 6], encode_text=enc, eos_ids=[2], pad_id=0, tokenizer=tokenizer, generate=generate
    )
    examples = iter([(i, Example(prompt="q", answer=str(i % 3), metadata={}, id=str(i))) for i in range(P)])
    return types.SimpleNamespace(
        cfg=types.SimpleNamespace(
            train=types.SimpleNamespace(prompts_per_step=P), sampling=types.SimpleNamespace(max_new_tokens=T)
        ),
        algo_cfg=refuel.Config(num_turns=3, max_context=256),
        policy=policy,
        data=types.SimpleNamespace(next_indexed=lambda: next(examples)),
    )


def test_refuel_pairs_share_the_prefix_at_turn_h():
    import jax

    ctx = _fake_ctx()
    rollout, m = dialogue.collect(ctx, jax.random.key(3), None)
    P = 4
    assert rollout.tokens.shape == (2 * P, 3) and rollout.prompt_tokens.shape == (2 * P, 256)
    np.testing.assert_array_equal(rollout.prompt_tokens[0::2], rollout.prompt_tokens[1::2])  # the shared s_h
    np.testing.assert_array_equal(rollout.group_ids, np.repeat(np.arange(P), 2))
    # the prefix is the first user turn, plus 2 tokens (answer + eos) and one scripted user turn per earlier turn
    user = len(dialogue.user_tokens(ctx.policy, "Add 1 to your last answer.", True))
    widths = rollout.prompt_mask[0::2].sum(axis=1)
    assert set(((widths - 3) % (2 + user)).tolist()) == {0} and (widths - 3).max() <= 2 * (2 + user)
    # chosen marks the higher return; identical turn-h responses drop the pair
    r = rollout.rewards.reshape(P, 2)
    chosen = rollout.extras["chosen"].reshape(P, 2)
    assert ((chosen[:, 0] == 1) == (r[:, 0] >= r[:, 1])).all() and (chosen.sum(axis=1) == 1).all()
    same = (rollout.tokens[0::2] == rollout.tokens[1::2]).all(axis=1)
    np.testing.assert_array_equal(rollout.loss_mask[0::2].sum(axis=1) == 0, same)
    assert m["refuel/identical"] == same.mean() and 0 <= m["refuel/h_mean"] <= 2


def test_dialogue_demonstration_is_the_rollout_token_stream():
    """The SFT demonstration of ``suite:dialogue_arithmetic`` tokenizes to exactly the stream the
    rollout builds when every turn answers right (each turn closed by the stop token)."""
    import types

    from jaxrl_llm.models import zoo
    from jaxrl_llm.tasks import make_task

    tok = zoo.get_tokenizer("small")
    enc = lambda text: list(tok(text, add_special_tokens=False)["input_ids"])
    policy = types.SimpleNamespace(encode_text=enc)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    kw = dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1, num_eval=10)
    for i in range(5):
        demo = make_task("suite:dialogue_arithmetic", demonstrations=True, dialogue_turns=3, **kw).train_example(i)
        plain = make_task("suite:dialogue_arithmetic", **kw).train_example(i)
        rg = make_task("rg:basic_arithmetic", **kw).train_example(i)
        assert (
            (plain.prompt, plain.answer, plain.id) == (rg.prompt, rg.answer, rg.id) == (demo.prompt, rg.answer, demo.id)
        )
        stream = []
        for t in range(3):
            if t:
                stream += dialogue.user_tokens(policy, script.follow_up(rg, t), closed=True)
            stream += enc(str(script.reference(rg, t))) + ([eos] if t < 2 else [])
        assert enc(demo.answer) == stream
        answers = [chunk.split("<|im_end|>")[0] for chunk in demo.answer.split("<|im_start|>assistant\n")]
        assert [dialogue.turn_reward(a, rg, t) for t, a in enumerate(answers)] == [1.0] * 3


def test_dialogue_evaluate_counts_right_turns():
    """Greedy held-out evaluation: a policy that answers turn 0 right and then repeats itself is
    right on turn 0 only; all_turns needs every turn."""
    import jax

    ctx = _fake_ctx(P=4)
    right = {e.id: script.reference(e, 0) for _, e in [ctx.data.next_indexed() for _ in range(4)]}
    examples = [Example(prompt="q", answer=str(v), metadata={}, id=k) for k, v in right.items()]
    enc = ctx.policy.encode_text

    def generate(tokens, mask, key, n, greedy=False):
        assert greedy
        out = np.zeros((tokens.shape[0], 3), np.int32)
        for i, e in enumerate(examples):  # rows are examples in order; every turn says turn 0's answer
            out[i, :2] = enc(e.answer)[0], 2
        return {"tokens": out, "lengths": np.full(tokens.shape[0], 2, np.int32)}

    ctx.policy.generate = generate
    r = dialogue.evaluate(ctx.policy, examples, 3, 200, jax.random.key(0), batch_size=len(examples))
    assert r == {
        "dialogue/success_turn0": 1.0,
        "dialogue/success_turn1": 0.0,
        "dialogue/success_turn2": 0.0,
        "dialogue/all_turns": 0.0,
    }
