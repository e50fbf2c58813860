"""README's CLI lines for timeseries_lstm, text_transformer and the two autoencoders, run as
written (see lines.py)."""

import pytest

from tests.readme.lines import OTHER_TEMPLATES, cli_lines, run_lines, write_inputs

pytest.importorskip("keras_hub")  # path/to/preset


def test_other_templates_cli_lines_run_as_written(project, monkeypatch):
    lines = cli_lines(other_templates=True)
    for name in OTHER_TEMPLATES:
        assert any(f"train {name}" in line for line in lines), name
    write_inputs(project.path, preset=True)
    elsewhere, _ = run_lines(lines, project, monkeypatch)
    assert elsewhere == []
    assert (project.path / "noisy.denoised.png").is_file()
    for name in OTHER_TEMPLATES:
        assert (project.path / "saved_models" / name).is_dir(), name
