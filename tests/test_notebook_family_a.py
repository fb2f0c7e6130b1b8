"""Executes notebooks/family_a.ipynb top to bottom (its cells assert what their plots show)."""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "family_a.ipynb"
FAMILY_A = ("gtpo", "dcpo", "bnpo", "copo", "riskpo", "hapo", "single_stream_spo", "hbpo", "apo")


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_backup = {k: os.environ.get(k) for k in ("JAX_PLATFORMS", "MPLBACKEND")}
    os.environ["JAX_PLATFORMS"] = "cpu"  # the kernel inherits the environment
    os.environ["MPLBACKEND"] = "Agg"
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        ).execute()
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _text(nb):
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


@pytest.mark.slow  # executes the notebook in a kernel: ~60 s with its setup
def test_notebook_runs_and_covers_all_nine(executed):
    text = _text(executed)
    for name in FAMILY_A:
        assert f"\n{name}" in "\n" + text, f"{name} missing from the notebook's tables"
    assert "BNPO fit on the toy batch" in text


def test_notebook_has_no_stale_outputs_in_git():
    """The committed notebook carries no outputs (CI regenerates them)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
