"""examples/quickstart.ipynb: stored without outputs, and every cell runs (nbclient) on the
shortest settings with the real smollm2-135m model on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    source = code[0]["source"]
    assert "".join(source).startswith("# parameters")  # the cell the test (and a reader) sets


@pytest.mark.slow
def test_notebook_runs_every_cell(tmp_path, smollm2):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if c.cell_type == "code")
    out = tmp_path / "nb"
    params.source = (f"OUT = {str(out)!r}\nQUESTIONS = 2\nTRAIN_EXAMPLES = 8\nTRAIN_MINUTES = 0.1\n"
                     "MAX_NEW_TOKENS = 16\nGUIDED = {'constrain': 'schema'}")  # fmt: skip
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError if any cell errors
    for stage in ("baseline", "baseline-guided", "finetuned", "finetuned-guided"):
        summary = json.loads((out / stage / "eval" / "summary.json").read_text())
        assert summary["scored"] == 2
    assert (out / "model" / "adapter_config.json").is_file() and (out / "report.html").is_file()
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("text/html" in o.get("data", {}) and "iframe" in o["data"]["text/html"] for o in shown)  # the report inline
    assert any("fine-tuned" in o.get("text", "") for o in shown)  # the comparison printed
