"""The machine record every benchmark JSON carries: CPU model, the vector extensions that decide CPU
throughput, core count, jax/jaxlib versions and the backend's device kind.

The project's CPU machines are not all alike (Intel with AVX-512 / AVX512_BF16 / AMX, or AMD EPYC
with AVX2 only), and float results and rates differ across them, so a number without this record
cannot be compared with another. Read from ``/proc/cpuinfo`` (Linux); elsewhere the model falls back
to ``platform.processor()`` and the flags are empty.

    from benchmarks._machine import machine_info   # or: import _machine (scripts run as files)
    json.dump({"machine": machine_info(), ...}, f)
"""

from __future__ import annotations

import os
import platform

import jax
import jaxlib

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_model_and_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """``(model name, flags)`` of the first CPU in ``cpuinfo`` (the text of ``/proc/cpuinfo``; read
    from the file when None)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model or platform.processor() or "unknown", flags


def machine_info() -> dict:
    """``{"cpu_model", "isa": {flag: bool for ISA_FLAGS}, "amx", "cpu_count", "jax", "jaxlib",
    "backend", "device_kind", "device_count", "python"}``; ``amx`` is True when any AMX tile unit is
    present."""
    model, flags = cpu_model_and_flags()
    isa = {flag: flag in flags for flag in ISA_FLAGS}
    devices = jax.devices()
    return {
        "cpu_model": model,
        "isa": isa,
        "amx": isa["amx_tile"] or isa["amx_bf16"],
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "python": platform.python_version(),
    }


def legacy_cpu(info: dict) -> dict:
    """The older ``{"model", "isa": [flags present]}`` block some results files still use, from
    ``machine_info()``'s record."""
    return {"model": info["cpu_model"], "isa": sorted(k for k, v in info["isa"].items() if v)}
