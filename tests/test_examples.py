"""The example notebook runs from top to bottom (tiny settings), so it cannot rot."""

import json
from pathlib import Path

import pytest

from tests.helpers import readme

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


def test_readme_commands_are_valid_cli_commands():
    """Each README command parses with the CLI's own parser, with its placeholders filled: a
    renamed option or command in the CLI fails here until README follows."""
    import re
    import shlex

    from ktemplate import cli

    commands = readme.commands()  # in every section, indented blocks included
    assert len(commands) >= 30
    parser = cli.build_parser()
    for command in commands:
        filled = re.sub(r"\[[^\]]*\]", "", command.replace("<run-id>", "20260101-000000"))
        words = shlex.split(filled)  # [optional parts] dropped
        words = words[3:] if words[0] == "python" else words[1:]
        try:
            parser.parse_args(words)
        except SystemExit as e:  # argparse's way of refusing
            raise AssertionError(f"README command does not parse: {command}") from e
