"""The trainer carries images: a vision-language policy renders image placeholders, samples and
scores with the pictures, keeps them in ``Rollout.images`` for pi_old / pi_ref / the update and the
SFT stage, and PAPO's corrupted-image pass comes from the group kind. Bad combinations are named."""

import jax
import numpy as np
import pytest

from jaxrl_llm import algorithms, tasks, train
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import papo
from jaxrl_llm.models import vision
from jaxrl_llm.policy import Policy
from jaxrl_llm.rollouts import Context, group
from jaxrl_llm.types import Example

pytest.importorskip("sklearn")

BASE = [
    "model.name=tiny-vlm",
    "algorithm=papo",
    "task.name=images:digits",
    "task.kwargs={}",
    "train.prompts_per_step=2",
    "train.group_size=3",
    "train.steps=2",
    "sampling.max_new_tokens=3",
    "mesh.num_devices=1",
    "eval.every=0",
    "eval.num_examples=4",
    "eval.k=2",
    "sft.steps=2",
    "sft.batch_size=4",
    "reward.num_workers=0",
]


def make_cfg(*overrides):
    return C.resolve_algo(C.apply_overrides(C.default_config(), BASE + list(overrides)))


@pytest.fixture(scope="module")
def setup():
    cfg = make_cfg()
    policy = Policy.create(cfg)
    task = tasks.make_task("images:digits")
    algo = algorithms.get("papo")
    runner = train.evaluate.make_scorer(task, cfg)
    data = task.train_iter(0)
    yield cfg, policy, task, algo, Context(cfg, algo, policy, task, data, runner.score)
    runner.close()


def test_prompts_hold_one_placeholder_per_patch_before_the_text(setup):
    _, policy, task, _, _ = setup
    e = task.eval_examples(1)[0]
    ids = policy.render(e)
    n = policy.vision_cfg.num_patches
    assert ids[:n] == [policy.vision_cfg.image_token_id] * n
    assert policy.vision_cfg.image_token_id not in ids[n:]
    assert ids[n:] == policy.encode_text(policy.tokenizer.decode(ids[n:]))  # the question text follows
    images = policy.prompt_images([e, e])
    assert images.shape == (2, 1, 8, 8, 1) and images.min() >= 0 and images.max() <= 1


def test_rollout_rows_carry_images_and_papo_gets_its_corrupted_pass(setup):
    cfg, policy, _, algo, ctx = setup
    key = jax.random.key(3)
    rollout, _ = group.collect(ctx, key, None)
    P, G = cfg.train.prompts_per_step, cfg.train.group_size
    assert rollout.images.shape == (P * G, 1, 8, 8, 1)
    # the G rows of a group share their prompt's picture
    np.testing.assert_array_equal(rollout.images[::G], rollout.images[G - 1 :: G])
    tokens, attention = train.model_inputs(rollout)
    T = rollout.tokens.shape[1]
    # the sampler's log-probs are the trainer's recomputation WITH the pictures, not without
    with_images = policy.logprobs(policy.params, tokens, attention, T, images=rollout.images)
    blind = policy.logprobs(policy.params, tokens, attention, T, images=np.zeros_like(rollout.images))
    m = rollout.mask > 0
    np.testing.assert_allclose(rollout.policy_logprobs[m], with_images[m], atol=2e-5)
    assert np.abs(blind[m] - with_images[m]).max() > 1e-4
    # PAPO's masked pass: the same tokens, pictures corrupted by its hook (one mask per group)
    corrupted = np.asarray(papo.corrupt_images(jax.random.fold_in(key, 2), rollout.images, G, cfg.algo))
    want = policy.logprobs(policy.params, tokens, attention, T, images=corrupted)
    np.testing.assert_allclose(rollout.extras["masked_logprobs"][m], want[m], atol=2e-5)
    np.testing.assert_array_equal(rollout.extras["has_image"], np.ones(P * G, np.float32))
    batch, _ = algorithms.make_batch(
        algo, rollout.replace(old_logprobs=with_images, ref_logprobs=with_images), cfg.algo
    )
    assert batch["has_image"].sum() == P * G


def test_a_run_with_sft_and_rl_on_images_trains_and_evaluates_split_by_need(tmp_path):
    cfg = make_cfg(f"run_dir={tmp_path / 'run'}")
    summary = train.train(cfg)
    assert summary["status"] == "finished"
    after = summary["eval"]["after"]
    assert "eval/accuracy/needs_image" in after and 0.0 <= after["eval/accuracy"] <= 1.0
    rows = [r for r in train.metrics_log.read_metrics(tmp_path / "run") if r.get("phase") == "rl"]
    assert rows and all(r["papo/image_rows"] == 1.0 and np.isfinite(r["loss"]) for r in rows)
    assert all(np.isfinite(r["sft/loss"]) for r in train.metrics_log.read_metrics(tmp_path / "run") if "sft/loss" in r)


def test_image_batches_reach_the_sft_loss(setup):
    cfg, policy, task, _, _ = setup
    from jaxrl_llm import sft

    examples = task.eval_examples(2)
    tokens, attention, cmask = sft.make_batch(policy, examples, cfg)
    fn = sft.loss_fn(policy, cmask.shape[1])
    inputs = {"tokens": tokens, "attention_mask": attention}
    batch = {"mask": cmask, "num_tokens": float(cmask.sum())}
    with_images, _ = fn(policy.params, inputs | {"images": policy.prompt_images(examples)}, batch)
    blind, _ = fn(policy.params, inputs | {"images": np.zeros((2, 1, 8, 8, 1), np.float32)}, batch)
    assert float(with_images) != float(blind)


def test_bad_combinations_are_named(setup):
    _, policy, task, _, _ = setup
    text_only = Policy.create(make_cfg("model.name=tiny"))
    with pytest.raises(ValueError, match=r"holds an image but model 'tiny' has no vision encoder.*tiny-vlm"):
        text_only.render(task.eval_examples(1)[0])
    prompt = np.asarray([policy.render(task.eval_examples(1)[0])], np.int32)
    with pytest.raises(ValueError, match="image placeholders but no images"):
        policy.generate(prompt, np.ones_like(prompt), jax.random.key(0), 1)
    e = task.eval_examples(1)[0]
    wrong = Example(e.prompt, e.answer, {**e.metadata, "image": np.zeros((16, 16, 1))}, "wrong-size")
    with pytest.raises(ValueError, match=r"image of example 'wrong-size'.*16x16 pixels.*8x8"):
        policy.prompt_images([wrong])
    two = Example(e.prompt, e.answer, {"images": np.zeros((2, 8, 8, 1))}, "two")
    with pytest.raises(ValueError, match="same number of images"):
        policy.prompt_images([e, two])
    with pytest.raises(C.ConfigError, match="trains a critic, which reads no images"):
        train.Trainer(make_cfg("algorithm=ppo"))
    with pytest.raises(tasks.TaskDataError, match=r"task 'images:digits' takes no argument\(s\) \['min_terms'\]"):
        tasks.make_task("images:digits", min_terms=2)


def test_vision_models_are_listed():
    from jaxrl_llm import models

    assert set(models.vision_models()) <= set(models.list_models())
    for name in models.vision_models():
        model, _ = models.get_model(name)
        assert isinstance(model, vision.VisionLanguageModel)
