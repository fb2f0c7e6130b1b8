"""Image-prefilled sampling: the small VLM's tokens/s against the same decoder with a text-only
prompt of equal length, and the image path's extra cost against the vision encoder's own FLOPs.

    python benchmarks/vision_sampling.py [--model tiny-vlm] [--batch 64] [--new-tokens 32] [--reps 20]

Both rows run ``sampling.sample`` on ONE model (a zoo vision-language model, random weights, f32,
XLA backend) with the same prompt width, batch, stop rule (none: every row decodes
``--new-tokens`` tokens) and key:

* ``image``: each prompt is ``[placeholders x num_patches] + text`` and carries its picture; the
  prefill runs the vision tower and projector and writes the patch embeddings into the placeholder
  slots (``VisionLanguageModel.image_inputs``), decode is unchanged.
* ``text``: the same prompt with the placeholders replaced by ordinary text tokens and no picture:
  the plain decoder path, the same number of prompt tokens.

The rows are timed in interleaved rounds (each round times both once; compilation excluded by a
warm-up call) and each keeps its best round. ``extra_s`` = image - text; ``encoder_s`` = the vision
tower + projector alone on the batch's pictures (jitted, same rounds). The issue's target: the
image path costs no more than the encoder's own work, i.e. ``extra_s <= encoder_s`` (within
noise). Also printed: the encoder's FLOPs (XLA's cost analysis) against the whole call's.
Writes ``benchmarks/results/vision_sampling.json`` with the machine record.
"""

from __future__ import annotations

import argparse
import json
import os

import _machine
import _timing
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import models
from jaxrl_llm.models import vision
from jaxrl_llm.sampling import SamplingConfig, sample


def _flops(fn, *args) -> float | None:
    try:
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost.get("flops", float("nan")))
    except Exception:  # cost analysis is best effort on some backends
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-vlm", choices=models.vision_models())
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--text-tokens", type=int, default=24, help="text tokens after the placeholders")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "vision_sampling.json"))
    args = p.parse_args()

    model, _ = models.get_model(args.model, dtype="float32")
    vc = model.vision_cfg
    rng = np.random.default_rng(0)
    B, n = args.batch, vc.num_patches
    text = rng.integers(4, 100, size=(B, args.text_tokens)).astype(np.int32)
    image_prompt = np.concatenate([np.full((B, n), vc.image_token_id, np.int32), text], axis=1)
    text_prompt = np.concatenate([rng.integers(4, 100, size=(B, n)).astype(np.int32), text], axis=1)
    mask = np.ones_like(image_prompt)
    pixels = vision.normalize(rng.random((B, 1, vc.image_size, vc.image_size, vc.num_channels), np.float32))
    scfg = SamplingConfig(max_new_tokens=args.new_tokens, stop_token_ids=(), pad_id=0, backend="xla")
    key = jax.random.key(0)

    encoder = jax.jit(lambda images: model.image_embeds(images))
    calls = {
        "image": lambda: sample(model, image_prompt, mask, key, scfg, images=pixels).tokens,
        "text": lambda: sample(model, text_prompt, mask, key, scfg).tokens,
        "encoder": lambda: encoder(jnp.asarray(pixels)),
    }
    load_before = os.getloadavg()[0]
    best, median = _timing.interleaved(calls, args.reps)
    tokens = B * args.new_tokens
    encoder_flops = _flops(lambda images: model.image_embeds(images), jnp.asarray(pixels))
    result = {
        "model": args.model,
        "batch": B,
        "prompt_tokens": int(image_prompt.shape[1]),
        "image_tokens": n,
        "new_tokens": args.new_tokens,
        "reps": args.reps,
        "timing": "interleaved rounds; best round per row (median in median_seconds)",
        "machine": _machine.machine_info(),
        "loadavg_1min": [load_before, os.getloadavg()[0]],
        "rows": {
            k: {"seconds": best[k], "median_seconds": median[k], "tokens_per_s": tokens / best[k]}
            for k in ("image", "text")
        },
        "encoder_seconds": best["encoder"],
        "encoder_median_seconds": median["encoder"],
        "extra_seconds": best["image"] - best["text"],
        "extra_median_seconds": median["image"] - median["text"],
        "encoder_flops": encoder_flops,
        "image_over_text_tokens_per_s": best["text"] / best["image"],
    }
    print(f"{'':10s} {'s/call':>9s} {'tokens/s':>10s}")
    for k in ("image", "text"):
        print(f"{k:10s} {best[k]:9.4f} {tokens / best[k]:10.0f}")
    print(f"encoder alone {best['encoder'] * 1e3:.2f} ms ({encoder_flops or float('nan'):.3g} FLOPs)")
    print(
        f"image path extra: {result['extra_seconds'] * 1e3:.2f} ms best round, "
        f"{result['extra_median_seconds'] * 1e3:.2f} ms median; image/text tokens/s "
        f"{result['image_over_text_tokens_per_s']:.3f}"
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
