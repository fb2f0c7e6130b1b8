"""PAPO vs GRPO on images:digits with a text prior: SFT warm start of a small VLM, then RL.

Paper: https://arxiv.org/abs/2507.06448 (method file: ``jaxrl_llm/algorithms/papo.py``). The claim
measured: PAPO's perception term (KL between the policy with the image and with 60 % of its
patches blacked out) makes the policy rely on the image, so accuracy on questions that NEED the
image improves over GRPO at the same budget, while questions the text answers ("Hint: the answer
is 7.") stay solved; a blind evaluation (every image black) drops further under PAPO.

The model: the project's decoder (qwen3 block, d=96, 2 layers, synthetic character tokenizer)
plus ``models.vision`` (SigLIP-architecture tower, 8x8 grey input, 2x2 patches -> 16 soft tokens,
d_v=48, 2 layers; LLaVA MLP projector), trained from scratch. The trainer's loop
(``jaxrl-llm train``) does not carry images yet, so this script runs the same phases itself with
the library's pieces: ``sampling.sample(..., images=)``, ``models.completion_logprobs(...,
images=)``, ``algorithms.make_batch`` and the method's ``loss``; one on-policy update per rollout.

Prompt layout: ``<|im_start|> <image> x 16 "Which digit is shown?[ Hint: ...] A:"``; the answer
is the digit then ``<|im_end|>``. Rewards: ``tasks.images.answer_reward`` (exact digit).

Command (SFT alone, then each method from the same SFT start; seeds are RL seeds):
    python experiments/papo.py --sft-steps 300 --rl-steps 60 --methods grpo papo --seeds 0 1 2 --out runs/papo

Hardware: the project's 2-core CPU machine, f32. Time and expected result: NOT MEASURED yet. The
script was written at the end of its session, on a machine at load average ~40, and its 2-step
smoke run did not finish there; nothing about its accuracy is claimed until
``experiments/results/papo.md`` records a run (with its command, load and seeds).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrl_llm import algorithms, tasks
from jaxrl_llm.algorithms import grpo, papo
from jaxrl_llm.models import completion_logprobs, get_tokenizer, vision
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.sampling import SamplingConfig, sample
from jaxrl_llm.tasks.images import answer_reward

IMG = 127  # placeholder id: the synthetic tokenizer uses 0..100
BOS, EOS, PAD = 1, 2, 0
DECODER = ModelConfig(
    vocab_size=128,
    hidden_size=96,
    intermediate_size=192,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    architecture="qwen3",
    tie_word_embeddings=True,
    bos_token_id=BOS,
    eos_token_id=EOS,
    pad_token_id=PAD,
)
VISION = vision.VisionConfig(
    image_size=8, num_channels=1, patch_size=2, hidden_size=48, intermediate_size=96, num_heads=2, image_token_id=IMG
)
METHODS = {
    "grpo": grpo.Config(beta=0.0, aggregation="token_mean"),  # the same aggregation as PAPO (verl)
    "papo": papo.Config(beta=0.0, mask_patch=VISION.patch_size),
}


def encode(tokenizer, examples, answers: bool):
    """Left-padded prompts [P, Sp], their pixels [P, 1, 8, 8, 1] in [0, 1]; with ``answers`` also
    the right-padded completions [P, 3] (digit, eos, pad) and their mask."""
    ids = [
        [BOS]
        + [IMG] * VISION.num_patches
        + tokenizer(e.metadata["question"] + " A:", add_special_tokens=False)["input_ids"]
        for e in examples
    ]
    width = max(map(len, ids))
    prompt = np.zeros((len(ids), width), np.int32)
    pmask = np.zeros((len(ids), width), np.int32)
    for i, row in enumerate(ids):
        prompt[i, width - len(row) :], pmask[i, width - len(row) :] = row, 1
    pixels = np.stack([e.metadata["image"] for e in examples])[:, None]
    if not answers:
        return prompt, pmask, pixels
    comp = np.zeros((len(ids), 3), np.int32)
    cmask = np.zeros((len(ids), 3), np.int32)
    for i, e in enumerate(examples):
        row = tokenizer(e.answer, add_special_tokens=False)["input_ids"] + [EOS]
        comp[i, : len(row)], cmask[i, : len(row)] = row, 1
    return prompt, pmask, pixels, comp, cmask


@functools.partial(jax.jit, static_argnums=0)
def _sft_step(graphdef, params, opt_state, tokens, mask, images, cmask):
    def nll(p):
        lp = completion_logprobs(nnx.merge(graphdef, p), tokens, mask, cmask.shape[1], images=images, chunk_size=None)
        return -jnp.sum(lp * cmask) / jnp.sum(cmask)

    loss, grads = jax.value_and_grad(nll)(params)
    updates, opt_state = OPT.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


OPT = optax.adam(1e-3)
RL_OPT = optax.adam(2e-5)


def sft(model, task, tokenizer, steps: int, batch: int, seed: int):
    graphdef, params = nnx.split(model)
    opt_state = OPT.init(params)
    it = task.train_iter(seed)
    for step in range(steps):
        prompt, pmask, pixels, comp, cmask = encode(tokenizer, [next(it) for _ in range(batch)], True)
        tokens = jnp.concatenate([prompt, comp], axis=1)
        mask = jnp.concatenate([pmask, cmask], axis=1)
        params, opt_state, loss = _sft_step(
            graphdef, params, opt_state, tokens, mask, vision.normalize(pixels), jnp.asarray(cmask, jnp.float32)
        )
        if step % 50 == 0 or step == steps - 1:
            print(f"sft step {step} loss {float(loss):.4f}", flush=True)
    return nnx.merge(graphdef, params)


def evaluate(model, tokenizer, examples, blind: bool = False) -> dict[str, float]:
    """Greedy accuracy, overall and split by whether the question needs the image."""
    prompt, pmask, pixels = encode(tokenizer, examples, False)
    if blind:
        pixels = np.zeros_like(pixels)
    cfg = SamplingConfig(max_new_tokens=3, greedy=True, stop_token_ids=(EOS,), pad_id=PAD, backend="xla")
    out = sample(model, prompt, pmask, jax.random.key(0), cfg, images=vision.normalize(pixels))
    texts = tokenizer.batch_decode(np.asarray(out.tokens), skip_special_tokens=True)
    hits = np.asarray([answer_reward(t, e) for t, e in zip(texts, examples)])
    need = np.asarray([e.metadata["needs_image"] for e in examples])
    res = {"acc": float(hits.mean())}
    if need.any():
        res["acc/needs_image"] = float(hits[need].mean())
    if (~need).any():
        res["acc/text_answerable"] = float(hits[~need].mean())
    return res


def _rl_loss(params, graphdef, batch, tokens, mask, images, T, algo, cfg):
    lp = completion_logprobs(nnx.merge(graphdef, params), tokens, mask, T, images=images, chunk_size=None)
    return algo.loss(lp, batch, cfg)


@functools.partial(jax.jit, static_argnums=0)
def _masked_logprobs(graphdef, params, tokens, mask, images):
    lp = completion_logprobs(nnx.merge(graphdef, params), tokens, mask, 3, images=images, chunk_size=None)
    return jax.lax.stop_gradient(lp)


def rl(model, task, tokenizer, method: str, steps: int, prompts: int, group: int, seed: int):
    algo, cfg = algorithms.get(method), METHODS[method]
    graphdef, params = nnx.split(model)
    opt_state = RL_OPT.init(params)
    it = task.train_iter(1000 + seed)
    key = jax.random.key(seed)
    scfg = SamplingConfig(
        max_new_tokens=3, stop_token_ids=(EOS,), pad_id=PAD, return_policy_logprobs=True, backend="xla"
    )

    @jax.jit
    def update(params, opt_state, batch, tokens, mask, images):
        (loss, metrics), grads = jax.value_and_grad(_rl_loss, has_aux=True)(
            params, graphdef, batch, tokens, mask, images, 3, algo, cfg
        )
        updates, opt_state = RL_OPT.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    log = []
    for step in range(steps):
        key, k_sample, k_mask = jax.random.split(key, 3)
        examples = [next(it) for _ in range(prompts)]
        prompt, pmask, pixels = encode(tokenizer, examples, False)
        out = sample(
            nnx.merge(graphdef, params),
            prompt,
            pmask,
            k_sample,
            scfg,
            num_samples=group,
            images=vision.normalize(pixels),
        )
        texts = tokenizer.batch_decode(np.asarray(out.tokens), skip_special_tokens=True)
        rows = [e for e in examples for _ in range(group)]
        rewards = np.asarray([answer_reward(t, e) for t, e in zip(texts, rows)], np.float32)
        tokens = jnp.concatenate([out.prompt_tokens, out.tokens], axis=1)
        mask = jnp.concatenate([out.prompt_mask, out.mask.astype(jnp.int32)], axis=1)
        row_pixels = np.repeat(pixels, group, axis=0)
        rollout = {
            "tokens": out.tokens,
            "mask": out.mask,
            "rewards": jnp.asarray(rewards),
            "group_ids": jnp.repeat(jnp.arange(prompts), group),
            "old_logprobs": out.policy_logprobs,
            "group_size": group,
        }
        if method == "papo":  # the corrupted-image pass, one mask per group, old params, detached
            corrupted = papo.corrupt_images(k_mask, jnp.asarray(row_pixels), group, cfg)
            rollout["masked_logprobs"] = _masked_logprobs(graphdef, params, tokens, mask, vision.normalize(corrupted))
            rollout["has_image"] = jnp.ones((prompts * group,), jnp.float32)
        batch, _ = algorithms.make_batch(algo, rollout, cfg)
        params, opt_state, metrics = update(params, opt_state, batch, tokens, mask, vision.normalize(row_pixels))
        log.append({"step": step, "reward": float(rewards.mean()), **{k: float(v) for k, v in metrics.items()}})
        if step % 10 == 0 or step == steps - 1:
            print(f"{method} seed {seed} step {step} reward {rewards.mean():.3f}", flush=True)
    return nnx.merge(graphdef, params), log


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--sft-batch", type=int, default=32)
    ap.add_argument("--rl-steps", type=int, default=60)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--methods", nargs="*", default=["grpo", "papo"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--text-prior", type=float, default=0.5)
    ap.add_argument("--num-eval", type=int, default=200)
    ap.add_argument("--out", default="runs/papo")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = get_tokenizer("synthetic")
    task = tasks.make_task("images:digits", text_prior=args.text_prior, num_eval=args.num_eval)
    evals = task.eval_examples()
    t0 = time.perf_counter()
    base = sft(
        vision.VisionLanguageModel(DECODER, VISION, rngs=nnx.Rngs(0)),
        task,
        tokenizer,
        args.sft_steps,
        args.sft_batch,
        0,
    )
    report = {"args": vars(args), "sft_seconds": time.perf_counter() - t0, "sft": evaluate(base, tokenizer, evals)}
    report["sft_blind"] = evaluate(base, tokenizer, evals, blind=True)
    print("after SFT", report["sft"], "blind", report["sft_blind"], f"{report['sft_seconds']:.0f} s", flush=True)
    _, sft_params = nnx.split(base)
    for method in args.methods:
        for seed in args.seeds:
            start = nnx.merge(nnx.split(base)[0], jax.tree.map(jnp.copy, sft_params))
            t0 = time.perf_counter()
            model, log = rl(start, task, tokenizer, method, args.rl_steps, args.prompts, args.group, seed)
            res = {
                "seconds": time.perf_counter() - t0,
                "eval": evaluate(model, tokenizer, evals),
                "eval_blind": evaluate(model, tokenizer, evals, blind=True),
                "log": log,
            }
            report[f"{method}/seed{seed}"] = res
            print(method, seed, res["eval"], "blind", res["eval_blind"], flush=True)
            (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
