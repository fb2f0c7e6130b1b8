"""Measures APO's two claims on finished runs of ``experiments/apo_vision.py``, the same way for
every run: restore the run's final checkpoint (policy and frozen reference), then on the held-out
canvases, split by difficulty (how many shapes: ``--buckets``),

* greedy accuracy, and the mean length of the greedy completions that are wrong;
* ``--k`` samples per canvas at temperature 1: pass@1, the mean length of the wrong samples (STCR
  should shorten them) and the KL of the policy to the reference, estimated on the policy's own
  samples as the per-token mean of ``log pi - log pi_ref`` (DADS should let the hard buckets
  drift further from the reference than the easy ones).

    python experiments/results/apo_vision_measure.py runs/apo_vision/apo_vision_s0 ... [--json out.json]
"""

import argparse
import json
import pathlib

import jax
import numpy as np

from jaxrl_llm import config as config_lib
from jaxrl_llm import evaluate, tasks
from jaxrl_llm.tasks.images import final_count_reward


def _sample(policy, examples, k: int, greedy: bool, key) -> dict:
    prompt_tokens, prompt_mask = policy.encode_prompts(examples)
    images = policy.prompt_images(examples)
    out = policy.generate(prompt_tokens, prompt_mask, key, k, greedy=greedy, images=images, temperature=1.0)
    rows = [e for e in examples for _ in range(k)]
    texts = policy.decode(out["tokens"], out["lengths"])
    hits = np.asarray([final_count_reward(t, e) for t, e in zip(texts, rows, strict=True)])
    return {
        "out": out,
        "hits": hits,
        "lengths": np.asarray(out["lengths"], np.float64),
        "prompt": (np.repeat(prompt_tokens, k, 0), np.repeat(prompt_mask, k, 0)),
        "images": None if images is None else np.repeat(images, k, 0),
    }


def _kl_per_token(policy, ref_params, s: dict) -> np.ndarray:
    """Per-row mean over the completion of ``log pi - log pi_ref`` on the policy's own samples."""
    out, (ptok, pmask) = s["out"], s["prompt"]
    T = out["tokens"].shape[1]
    mask = np.arange(T)[None, :] < out["lengths"][:, None]
    tokens = np.concatenate([ptok, out["tokens"]], axis=1)
    attention = np.concatenate([pmask, mask], axis=1)
    new = policy.logprobs(policy.params, tokens, attention, T, images=s["images"])
    ref = policy.logprobs(ref_params, tokens, attention, T, images=s["images"])
    return ((new - ref) * mask).sum(1) / np.maximum(mask.sum(1), 1)


def measure(run_dir: pathlib.Path, buckets: list[int], k: int) -> dict:
    cfg = config_lib.from_dict(json.loads((run_dir / "config.json").read_text()))
    policy, step, tree = evaluate.restore_run(cfg, run_dir)
    if step is None or tree.get("ref_params") is None:
        raise FileNotFoundError(f"no checkpoint with a reference model under {run_dir}/checkpoints")
    task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
    examples = task.eval_examples(cfg.eval.num_examples)
    counts = np.asarray([e.metadata["count"] for e in examples])
    greedy = _sample(policy, examples, 1, True, jax.random.key(0))
    sampled = _sample(policy, examples, k, False, jax.random.key(1))
    kl = _kl_per_token(policy, tree["ref_params"], sampled)
    result = {"step": step}
    edges = [0, *buckets, int(counts.max())]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        g = (counts > lo) & (counts <= hi)
        srows = np.repeat(g, k)
        name = f"{lo + 1}-{hi}"
        gw = g & (greedy["hits"] == 0)
        sw = srows & (sampled["hits"] == 0)
        result[name] = {
            "n": int(g.sum()),
            "greedy_acc": float(greedy["hits"][g].mean()),
            "greedy_wrong_len": float(greedy["lengths"][gw].mean()) if gw.any() else float("nan"),
            "pass@1": float(sampled["hits"][srows].mean()),
            "sampled_wrong_len": float(sampled["lengths"][sw].mean()) if sw.any() else float("nan"),
            "kl_to_ref": float(kl[srows].mean()),
        }
    result["all"] = {
        "greedy_acc": float(greedy["hits"].mean()),
        "pass@1": float(sampled["hits"].mean()),
        "sampled_wrong_len": float(sampled["lengths"][sampled["hits"] == 0].mean()),
        "kl_to_ref": float(kl.mean()),
    }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=pathlib.Path)
    ap.add_argument("--buckets", type=int, nargs="+", default=[4, 8], help="upper edges of the count buckets")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    results = {}
    for run in args.runs:
        results[str(run)] = measure(run, args.buckets, args.k)
        print(run, json.dumps(results[str(run)]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
