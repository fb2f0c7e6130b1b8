"""One-way dependencies: every ``jaxrl_llm`` module imports, and the module import graph has no
cycle (rewards know no tasks, models' tokenizer and zoo do not import each other, ...).

The graph is read from the source with ``ast``: an edge ``a -> b`` for every import of a
``jaxrl_llm`` module ``b`` anywhere in ``a`` (function-local imports count: they only hide a cycle),
plus an edge to each package ``b`` sits in (importing ``jaxrl_llm.p.x`` runs ``jaxrl_llm/p/__init__``
first) unless ``a`` is inside that package itself.
"""

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "jaxrl_llm"


def module_names() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = module_names()


def _resolve(name: str) -> str | None:
    """The module ``name`` refers to: itself, else its longest prefix that is a module."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("jaxrl_llm"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                if base.startswith("jaxrl_llm"):
                    targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
        for t in targets:
            t = _resolve(t)
            if t is None or t == mod:
                continue
            chain = t.split(".")
            for i in range(2, len(chain) + 1):
                target = ".".join(chain[:i])
                if target in MODULES and not (mod == target or mod.startswith(target + ".")):
                    graph[mod].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_the_module_import_graph_has_no_cycle():
    graph = import_graph()
    assert "jaxrl_llm.rollouts.group" in graph["jaxrl_llm.train"] or "jaxrl_llm.rollouts" in graph["jaxrl_llm.train"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_rewards_know_no_tasks():
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("jaxrl_llm.rewards"):
            assert not [d for d in deps if d.startswith("jaxrl_llm.tasks")], mod
