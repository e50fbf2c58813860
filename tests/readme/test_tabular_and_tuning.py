"""README's tabular_mlp and Tuning lines, run as written (see lines.py)."""

import numpy as np

from tests.helpers.readme import section, shell_lines
from tests.readme.lines import run_line


def test_tabular_and_tuning_lines_run_as_written(project, capsys):
    rng = np.random.default_rng(0)
    hours = rng.uniform(0, 10, 120)
    group = rng.choice(["a", "b", "c"], 120)
    score = 2 * hours + (group == "b") * 3 + rng.normal(0, 1, 120)
    rows = [f"{h:.2f},{g},{s:.2f}" for h, g, s in zip(hours, group, score, strict=True)]
    (project.path / "survey.csv").write_text("hours,group,score\n" + "\n".join(rows) + "\n")
    lines = shell_lines(section("### tabular_mlp")) + shell_lines(section("## Tuning"))
    assert len(lines) == 11
    for line in lines:
        run_line(line, capsys=capsys)
    sweeps = project.path / "saved_models" / "image_cnn" / "sweeps"
    assert (sweeps / "random" / "leaderboard.md").is_file()
