"""Running the benchmarks on an accelerator: ``bash benchmarks/gpu/run.sh`` (see its header).

``device``: device selection, the SmolLM2-135M architecture with random weights (no GGUF file
needed), and bf16 matmul / copy rates measured on the device. ``check_imports``: proves the
benchmarks' imports need none of the packages the GPU image lacks. ``summarize``: the table of a
run's JSON files.
"""
