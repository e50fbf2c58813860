"""The example notebook runs from top to bottom (tiny settings), so it cannot rot."""

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("KTEMPLATE_EXAMPLE_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, with the cell, when a cell fails

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for noise in ("INFO:tensorflow", "cuInit", "oneDNN", "absl::InitializeLog"):
        assert noise not in streams, f"{noise!r} reached the notebook"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the loss curve (inline backend still on) and the confusion matrix
    texts = json.dumps([o.get("data", {}).get("text/plain", "") for o in outputs])
    assert "Run(image_cnn, finished" in texts
    assert (tmp_path / "saved_models" / "image_cnn" / "sweeps" / "random" / "champion").is_dir()
