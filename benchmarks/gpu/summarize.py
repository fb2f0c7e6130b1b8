"""Prints one table of a run's benchmark JSON files (``forward_backward*.json``, ``sampling*.json``,
``rl_step*.json``).

    python benchmarks/gpu/summarize.py $OUT

Figures are read from the files as written: tokens/s, the ratio to the peer (> 1: ours faster),
MFU against the run's matmul peak (forward+backward), the fraction of the roofline and of the
HBM roofline (decoding steps at their memory floor; sampling), per model and decode backend.
Forward+backward rows also show the memory controls (``remat``; ``loop``: the layers rolled, by
``--scan-layers`` or a remat policy, or unrolled), the step's compile time (lower + compile; older
files: the first call, compile included), the device's peak memory (``peak GiB``; a dash where
the backend reports none, e.g. the CPU) and XLA's temporary buffers for the step (``temp GiB``).
GRPO step rows (``rl_step.py``): seconds per step, ours split into sample / reward / update
(log-probs + advantages + optimizer update), the first step (compilation included), completion
tokens per second of step, ours' peak device memory, and TRL's seconds per step (its generate
part) with the ratio (TRL / ours: > 1, ours faster).
"""

from __future__ import annotations

import glob
import json
import os
import sys


def _f(x, fmt: str) -> str:
    """``format(x, fmt)``, or a dash as wide as the format for a missing figure (no peer)."""
    return "-".rjust(int(fmt.split(".")[0])) if x is None else format(x, fmt)


def _load(path: str) -> dict | None:
    """The JSON of ``path``, or None (with a note) when a killed step left it unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: unreadable ({e})")
        return None


def _gib(x) -> float | None:
    return None if x is None else x / 2**30


def forward_backward_rows(paths: list[str]) -> list[str]:
    lines = [
        f"{'forward+backward':21s} {'[B, S]':12s} {'attention':>11s} {'remat':>13s} {'loop':>8s} {'dtype':>9s} "
        f"{'ours tok/s':>11s} {'peer tok/s':>11s} {'ratio':>6s} {'MFU':>6s} {'peer MFU':>8s} {'peak TFLOP/s':>12s} "
        f"{'compile s':>9s} {'peak GiB':>8s} {'temp GiB':>8s}"
    ]
    results = [_load(path) for path in paths]
    for r in results:  # files written before the model / attention / memory fields
        if r is not None:
            r.setdefault("model", "smollm2-135m-instruct")
            r.setdefault("attention_used", "xla")
            r.setdefault("remat", "none")
            r.setdefault("layers_rolled", r.get("scan_layers", False) or r["remat"] != "none")
            used, asked = r["attention_used"], r.get("attention", r["attention_used"])
            r["attention_label"] = used if asked == used else f"{asked}={used}"  # e.g. auto=cudnn
    key = lambda r: (r["model"], r["seq"], r["batch"], r["attention_label"], r["remat"], r["layers_rolled"])
    for r in sorted(filter(None, results), key=key):
        peak = next(v for k, v in r.items() if k.endswith("_matmul_peak_gflops"))
        temp = (r.get("compiled_memory_bytes") or {}).get("temp")
        lines.append(
            f"{r['model']:21s} {'[%d, %d]' % (r['batch'], r['seq']):12s} {r['attention_label']:>11s} "
            f"{r['remat']:>13s} {'rolled' if r['layers_rolled'] else 'unrolled':>8s} {r['dtype']:>9s} {r['tokens_per_s']:11.0f} "
            f"{_f(r['peer_tokens_per_s'], '11.0f')} {_f(r['ratio_vs_peer'], '6.2f')} "
            f"{r['fraction_of_peak']:6.1%} {_f(r['peer_fraction_of_peak'], '8.1%')} "
            f"{peak / 1e3:12.1f} {r['compile_seconds']:9.1f} {_f(_gib(r.get('peak_bytes_in_use')), '8.2f')} "
            f"{_f(_gib(temp), '8.2f')}"
        )
    return lines


def sampling_rows(path: str) -> list[str]:
    out = _load(path)
    if out is None:
        return []
    m = out["machine"]
    lines = [
        f"sampling ({out['settings']}); matmul {m['matmul_flops_per_s'] / 1e12:.1f} TFLOP/s, "
        f"copy {m['copy_bytes_per_s'] / 1e9:.0f} GB/s",
        f"{'model':21s} {'backend':>7s} {'batch':>5s} {'new':>4s} {'ours tok/s':>11s} {'peer tok/s':>11s} "
        f"{'ratio':>6s} {'roofline':>8s} {'HBM roofl.':>10s} {'peer roofl.':>11s} {'floor tok/s':>11s} "
        f"{'1st call s':>10s}",
    ]
    for r in out["results"]:  # files written before the model / backend / HBM fields
        lines.append(
            f"{r.get('model', out.get('model', '-')):21s} {r.get('backend', '-'):>7s} {r['batch']:5d} "
            f"{r['new_tokens']:4d} {r['tokens_per_s']:11.0f} "
            f"{_f(r['peer_tokens_per_s'], '11.0f')} {_f(r['ratio_vs_peer'], '6.2f')} "
            f"{r['fraction_of_roofline']:8.1%} {_f(r.get('fraction_of_hbm_roofline'), '10.1%')} "
            f"{_f(r['peer_fraction_of_roofline'], '11.1%')} "
            f"{r['roofline_tokens_per_s']:11.0f} {r['first_call_s_incl_compile']:10.1f}"
        )
    return lines


def rl_step_rows(paths: list[str]) -> list[str]:
    lines = [
        f"{'GRPO step':21s} {'P x G x T':>11s} {'dtype':>9s} {'ours s':>7s} {'sample':>7s} {'reward':>7s} "
        f"{'update':>7s} {'1st step':>8s} {'tok/s':>7s} {'peak GiB':>8s} {'TRL s':>7s} {'TRL gen':>7s} {'ratio':>6s}"
    ]
    for r in filter(None, (_load(path) for path in paths)):
        ours, peer = r["ours"], r.get("peer_detail") or {}
        size = f"{r['prompts']}x{r['samples_per_prompt']}x{r['new_tokens']}"
        lines.append(
            f"{r['model']:21s} {size:>11s} {r.get('dtype', 'float32'):>9s} {ours['seconds_per_step']:7.2f} "
            f"{ours['sample_s']:7.2f} {ours['reward_s']:7.2f} {ours['update_s']:7.2f} {ours['first_step_s']:8.1f} "
            f"{_f(ours.get('tokens_per_s'), '7.0f')} {_f(_gib(ours.get('peak_bytes_in_use')), '8.2f')} "
            f"{_f(r['peer_seconds_per_step'], '7.2f')} {_f(peer.get('generate_s'), '7.2f')} "
            f"{_f(r['ratio_vs_peer'], '6.2f')}"
        )
        if r.get("peer_note"):
            lines.append(f"  {r['model']}: {r['peer_note']}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print(__doc__, file=sys.stderr)
        return 2
    fb = sorted(glob.glob(os.path.join(argv[0], "forward_backward*.json")))
    lines = forward_backward_rows(fb) if fb else ["forward+backward: no result file"]
    for path in sorted(glob.glob(os.path.join(argv[0], "sampling*.json"))) or [None]:
        lines += [""] + (sampling_rows(path) if path else ["sampling: no result file"])
    rl = sorted(glob.glob(os.path.join(argv[0], "rl_step*.json")))
    lines += [""] + (rl_step_rows(rl) if rl else ["GRPO step: no result file"])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
