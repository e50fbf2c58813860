"""`ktemplate runs`: the run folders under an output folder, with what state each is in.

This module must not import TensorFlow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ktemplate import locks


def key_metric(metrics: dict[str, Any]) -> str:
    """The metric a run is judged on: the one compared with its baseline, else its first test
    metric."""
    comparison = (metrics.get("baseline") or {}).get("comparison") or {}
    if isinstance(comparison.get("model"), (int, float)):
        text = f"{comparison['metric']}={comparison['model']:.4g}"
        verdict, name = comparison.get("verdict"), metrics["baseline"].get("name", "baseline")
        if verdict in ("better", "worse"):
            text += f" ({verdict} than {name})"
        elif verdict == "level":
            text += f" (level with {name})"
        elif verdict:
            text += f" ({verdict}: no verdict against {name})"
        return text
    for name, value in metrics.items():
        if name.startswith("test_") and isinstance(value, (int, float)):
            return f"{name}={value:.4g}"
    return ""


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def runs(output_dir: str | Path, template: str | None = None) -> list[dict[str, str]]:
    """One row per run folder under `output_dir` (sweep champions included), newest first.

    A run whose run.json says `training` while no process holds its lock was killed (the
    machine went down, or SIGKILL): it shows as `killed` and can be continued with --resume.
    """
    root = Path(output_dir)
    pattern = f"{template}/**/run.json" if template else "**/run.json"
    rows = []
    for record in root.glob(pattern):
        folder = record.parent
        try:
            info = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        status = info.get("status", "?")
        holder = locks.holder(folder)
        if status == "training" and holder is None:
            status = "killed"
        elif holder is not None:
            status = f"{status} (process {holder})"
        metrics_path = folder / "metrics.json"
        metric = ""
        if metrics_path.is_file():
            try:
                metric = key_metric(json.loads(metrics_path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                metric = "(metrics.json unreadable)"
        elif info.get("reason"):
            metric = info["reason"][:80]
        updated = record.stat().st_mtime
        rows.append(
            (
                updated,
                {
                    "run": str(folder),
                    "template": info.get("template", "?"),
                    "status": status,
                    "dataset": str(info.get("dataset", "")),
                    "metric": metric,
                    "age": _age(time.time() - updated),
                },
            )
        )
    return [row for _, row in sorted(rows, key=lambda pair: pair[0], reverse=True)]


def format_table(rows: list[dict[str, str]]) -> str:
    columns = ["run", "status", "dataset", "metric", "age"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    for row in rows:
        lines.append("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
    return "\n".join(lines)


def clean(output_dir: str | Path, template: str | None = None) -> list[Path]:
    """Removes what killed processes left in the run folders under `output_dir` (partial
    checkpoints, temporary exports: `files.remove_leftovers`), skipping every folder a live
    process holds. Returns what was removed."""
    from ktemplate import files

    root = Path(output_dir)
    removed: list[Path] = []
    for record in sorted(root.glob(f"{template}/**/run.json" if template else "**/run.json")):
        folder = record.parent
        if locks.holder(folder) is not None:
            continue
        try:
            with locks.hold(folder, "run"):
                removed += files.remove_leftovers(folder)
        except locks.FolderInUse:  # taken in the meantime: its process owns those files
            continue
    return removed
