"""``python -m jaxrl_llm.algorithms``: rewrite README.md's algorithm block from the registry.

Run it after registering a method; ``tests/test_readme_table.py`` fails until the README matches.
"""

import pathlib
import re
import sys

from jaxrl_llm import algorithms

HOW_TO = """
How to add a method: write `jaxrl_llm/algorithms/<name>.py` to the contract in
`jaxrl_llm/algorithms/__init__.py` (citation + objective + numbered "differs from GRPO in ..."
docstring; `NAME`, `PAPER`, `PAPER_URL`; a frozen `Config` with the paper's symbols and defaults;
`advantages(rollout, cfg, state=None)`; `loss(logprobs, batch, cfg)`; hooks only if the method has
them), compose it from `jaxrl_llm/ops/`, and add it to `REGISTRY`. You then get
`tests/test_invariants.py` for free: shapes and finiteness, jit == eager, masked values inert,
on-policy gradient == REINFORCE, micro-batch and 8-device partition invariance, bf16 vs f32.
Add `tests/test_algorithms_<name>.py` with the paper's hand-computed case, and run
`python -m jaxrl_llm.algorithms` to regenerate this table (`tests/test_readme_table.py` checks it).
"""


def main(readme: str = "README.md") -> None:
    path = pathlib.Path(readme)
    text = path.read_text()
    pattern = r"(<!-- algorithms:begin -->\n).*?(<!-- algorithms:end -->)"
    if not re.search(pattern, text, flags=re.S):
        sys.exit(f"{readme} has no <!-- algorithms:begin --> / <!-- algorithms:end --> block")
    block = algorithms.markdown_table() + HOW_TO
    path.write_text(re.sub(pattern, lambda m: m.group(1) + block + m.group(2), text, flags=re.S))


if __name__ == "__main__":
    main(*sys.argv[1:])
