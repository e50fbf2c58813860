"""Runs a serving script in a fresh, isolated Python process (no project on its path)."""

import json
import subprocess
import sys
from pathlib import Path


def serve_in_fresh_process(script: str, folder: Path, *args: str):
    """Writes `script` to `folder/serve.py`, runs it with `python -I` in `folder` and returns
    the JSON its last output line holds."""
    path = Path(folder) / "serve.py"
    path.write_text(script)
    result = subprocess.run(
        [sys.executable, "-I", str(path), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
