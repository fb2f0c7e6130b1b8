"""The quickstart notebook runs top to bottom on CPU (executed with nbclient)."""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "config error: unknown config key 'train.stpes'" in outputs
    assert "eval/accuracy" in outputs and "reward/mean" in outputs
    assert any(
        o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})
        for c in nb.cells
        for o in c.get("outputs", [])
    )
