"""The ``reset`` rollout kind (DR-PO's dataset resets) on the tiny model: forced tokens equal the
reference's, the masks split forced from sampled tokens, and the trainer's update attends to the
forced tokens although they are in no policy loss."""

import jax
import numpy as np
import pytest
from test_registry_train import tiny_run

from jaxrl_llm import metrics_log, train, update
from jaxrl_llm.rollouts import reset

# two-digit terms: every reference answer has >= 2 tokens, so with beta_reset = 1 every row resets
TWO_DIGITS = (
    'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2, "operators": ["+"], '
    '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 40}'
)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    cfg = tiny_run(tmp_path_factory.mktemp("reset") / "run", "drpo", TWO_DIGITS, "sampling.max_new_tokens=6")
    tr = train.Trainer(cfg)
    yield tr
    tr.close()


def test_forced_tokens_are_the_reference_and_masks_split_them(trainer):
    ro, m = trainer.kind.collect(trainer.ctx, jax.random.key(0), None)
    B, T = ro.tokens.shape
    assert B == 4 and T == 6 and m["reset/frac"] == 1.0
    rollin = ro.extras["rollin_mask"]
    np.testing.assert_array_equal(ro.loss_mask, ro.mask - rollin)
    np.testing.assert_array_equal(ro.mask, (np.arange(T)[None] < ro.lengths[:, None]).astype(np.float32))
    for b in range(B):
        ref = trainer.policy.encode_text(reset.reference_text(trainer.task.train_example(int(ro.prompt_ids[b]))))
        h = int(rollin[b].sum())
        assert 1 <= h <= min(len(ref), T) - 1, (h, ref)
        assert rollin[b, :h].all() and not rollin[b, h:].any()  # the forced tokens come first
        np.testing.assert_array_equal(ro.tokens[b, :h], ref[:h])  # ... and are the reference's exactly
        assert ro.loss_mask[b, h : ro.lengths[b]].all()  # every later response token is sampled
        assert (ro.sampler_logprobs[b, :h] == 0).all() and ro.policy_logprobs is None
    # the same key gives the same rollout (the stream moved on, so compare a fresh draw's resets)
    h1 = reset.prefix_lengths(jax.random.key(5), np.array([4, 4, 9]), 1.0)
    np.testing.assert_array_equal(h1, reset.prefix_lengths(jax.random.key(5), np.array([4, 4, 9]), 1.0))


@pytest.mark.slow
def test_update_attends_to_forced_tokens(trainer, monkeypatch):
    """Regression: the update's attention mask was the batch's ``mask`` (= the loss mask), so the
    policy was trained on continuations of prefixes it could not see."""
    seen = []
    real_step = update.Updater.step

    def recording_step(self, name, tx, loss_fn, trainable, opt_state, inputs, batch, scalars, mbs):
        seen.append((np.asarray(inputs["attention_mask"]), np.asarray(batch.mask)))
        return real_step(self, name, tx, loss_fn, trainable, opt_state, inputs, batch, scalars, mbs)

    monkeypatch.setattr(update.Updater, "step", recording_step)
    m = train.rl_step(trainer, metrics_log.Timer())
    assert np.isfinite(m["loss"]) and seen
    for attention, loss_mask in seen:
        T = loss_mask.shape[1]
        completion = attention[:, -T:]
        assert (completion >= loss_mask).all()
        assert (completion > loss_mask).any(), "forced tokens must be attended to but carry no policy loss"
