"""README.md's algorithm table is the registry's ``markdown_table()``, so the two cannot drift."""

import pathlib
import re

from jaxrl_llm import algorithms

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _block() -> str:
    text = README.read_text()
    m = re.search(r"<!-- algorithms:begin -->\n(.*?)<!-- algorithms:end -->", text, re.S)
    assert m, "README.md lacks the <!-- algorithms:begin --> ... <!-- algorithms:end --> block"
    return m.group(1)


def test_readme_table_equals_registry():
    block = _block()
    table = "".join(line + "\n" for line in block.splitlines() if line.startswith("|"))
    assert table == algorithms.markdown_table(), (
        "README algorithm table is stale; paste jaxrl_llm.algorithms.markdown_table() between the markers"
    )


def test_readme_says_how_to_add_a_method():
    block = _block()
    assert "How to add a method" in block and "tests/test_invariants.py" in block


def test_markdown_table_lists_every_registered_method():
    table = algorithms.markdown_table()
    for name, algo in algorithms.REGISTRY.items():
        assert f"| `{name}` |" in table and algo.paper_url in table
