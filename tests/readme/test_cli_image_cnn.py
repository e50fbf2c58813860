"""README's Quickstart and CLI lines for image_cnn and for no template in particular (list,
check, runs, tune, report, new), run as written (see lines.py)."""

from ktemplate import files
from tests.readme.lines import ELSEWHERE, cli_lines, run_lines, write_inputs


def test_image_cnn_and_general_cli_lines_run_as_written(project, monkeypatch, capsys):
    lines = cli_lines(other_templates=False)
    assert len(lines) >= 20
    write_inputs(project.path)
    elsewhere, interrupted = run_lines(lines, project, monkeypatch)
    assert len(elsewhere) == len(ELSEWHERE), elsewhere  # pip install, pytest, --workers 2
    out = capsys.readouterr().out
    assert "Checking tabular_mlp" in out and "passes the check" in out
    assert files.read_json(interrupted / "run.json")["status"] == "finished"
    assert (project.path / "models" / "digits" / "1" / "saved_model.pb").is_file()
    assert (project.path / "templates" / "my_task.py").is_file()
    champion = project.path / "saved_models" / "image_cnn" / "sweeps" / "random" / "champion"
    assert (champion / "export" / "saved_model.pb").is_file()
