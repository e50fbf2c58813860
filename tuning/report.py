"""The sweep's leaderboard: every trial with its hyperparameters, score, epochs, time, status.

Read from the files keras-tuner and the sweep write (no TensorFlow import), so
`ktemplate report SWEEP_DIR` is instant and works on a sweep that is still running.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ktemplate import files
from ktemplate.config import ConfigError


def sweep_dir(output_dir: str | Path, template_name: str, name: str) -> Path:
    """Where sweep `name` of a template lives: `output_dir/<template>/sweeps/<name>`."""
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"Bad sweep name {name!r}: use a plain folder name.")
    return Path(output_dir) / template_name / "sweeps" / name


def trials(directory: str | Path) -> list[dict[str, Any]]:
    """One row per trial, best first; unfinished and failed trials last.

    Raises:
        FileNotFoundError: `directory` is not a sweep folder.
    """
    directory = Path(directory)
    if not (directory / "sweep.json").is_file():
        raise FileNotFoundError(
            f"{directory} is not a sweep folder (sweep.json is missing). Pass a folder like "
            "saved_models/<template>/sweeps/<name>."
        )
    sweep = files.read_json(directory / "sweep.json")
    minimize = sweep["objective"].endswith(":min")
    rows = []
    for path in sorted((directory / "tuner").glob("trial_*/trial.json")):
        state = files.read_json(path)
        trial_id = state["trial_id"]
        values = state["hyperparameters"]["values"]
        timing_path = directory / "trials" / f"{trial_id}.json"
        runs = files.read_json(timing_path)["runs"] if timing_path.exists() else []
        initial = values.get("tuner/initial_epoch", 0)
        best_step = state.get("best_step")
        rows.append(
            {
                "trial": trial_id,
                "status": state["status"],
                "score": state.get("score"),
                "best_epoch": None if best_step is None else initial + best_step + 1,
                "epochs_run": sum(r["epochs"] for r in runs),
                "fit_seconds": round(sum(r["fit_seconds"] for r in runs), 2),
                "runs": len(runs),
                "ran_by": ",".join(sorted({r["tuner_id"] for r in runs})),
                "peak_rss_mb": max((r["peak_rss_mb"] for r in runs), default=None),
                "message": (state.get("message") or "").strip().splitlines()[-1:],
                "hyperparameters": {k: v for k, v in values.items() if not k.startswith("tuner/")},
            }
        )

    def key(row):
        score = row["score"]
        if row["status"] != "COMPLETED" or score is None:
            return (1, 0.0)
        return (0, score if minimize else -score)

    return sorted(rows, key=key)


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in row.items() if k not in ("hyperparameters", "message")}
    flat["message"] = row["message"][0] if row["message"] else ""
    return {**flat, **row["hyperparameters"]}


def to_csv(rows: list[dict[str, Any]]) -> str:
    flat = [_flat(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def to_markdown(rows: list[dict[str, Any]], objective: str = "score") -> str:
    flat = [_flat(r) for r in rows]
    columns = ["rank"] + list(
        dict.fromkeys(k for r in flat for k in r if k not in ("message", "runs"))
    )
    columns = [objective if c == "score" else c for c in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for rank, row in enumerate(flat, 1):
        row = {objective if k == "score" else k: v for k, v in row.items()}
        cells = [str(rank)] + [_cell(row.get(c)) for c in columns[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in flat if r["message"]]
    if failed:
        lines += ["", "Failed trials:"] + [f"- {r['trial']}: {r['message']}" for r in failed]
    return "\n".join(lines) + "\n"


def write_leaderboard(directory: str | Path) -> str:
    """Writes leaderboard.csv and leaderboard.md into the sweep folder; returns the Markdown."""
    directory = Path(directory)
    rows = trials(directory)
    objective = files.read_json(directory / "sweep.json")["objective"].split(":")[0]
    markdown = to_markdown(rows, objective)
    files.write_text(directory / "leaderboard.csv", to_csv(rows))
    files.write_text(directory / "leaderboard.md", markdown)
    return markdown
