"""A random sweep of image_cnn on the digits: tuner overhead, memory per trial, worker processes.

Three runs of the same sweep (same tuner seed, so the same hyperparameters in the same order):

1. in this process, as `ktemplate tune` runs it: sweep wall time against the summed `fit`
   time of its trials (the overhead ratio: model building, data loading, oracle bookkeeping,
   checkpoints and logs), and the process's RSS after trial 1 against after the last trial;
2. `ktemplate tune image_cnn` in a fresh process (wall time including TensorFlow's import);
3. `ktemplate tune image_cnn --workers 2`: a chief and two worker processes, same wall clock;
4. `--workers 2 --trials-per-process 1`: every trial in a fresh worker process (the remedy for
   the memory TensorFlow keeps per trained model), its RSS at the first and last trial.

The champion is skipped (`--no-champion`): this measures the search. Prints a Markdown table;
the figures in benchmarks/RESULTS.md come from this script.

    python benchmarks/tuning_sweep.py --trials 10 --max-epochs 8
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ktemplate.templates import image_cnn  # noqa: E402
from ktemplate.tuning import report, search  # noqa: E402

from ktemplate import files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def runs(folder: Path) -> list[dict]:
    """Every fit of the sweep in trial order (trial ids count up from 00)."""
    found = []
    for path in sorted((folder / "trials").glob("*.json")):
        for entry in files.read_json(path)["runs"]:
            found.append({"trial": path.stem, **entry})
    return found


def hyperparameters(folder: Path) -> list[tuple]:
    return sorted(tuple(sorted(r["hyperparameters"].items())) for r in report.trials(folder))


def cli_sweep(out: Path, trials: int, max_epochs: int, extra: list[str]) -> float:
    command = [sys.executable, "-m", "ktemplate", "tune", "image_cnn", "--no-champion"]
    command += ["--max-trials", str(trials), "--max-epochs", str(max_epochs)]
    command += ["--output-dir", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--max-epochs", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sweep = search.Sweep(
            template="image_cnn",
            max_trials=args.trials,
            max_epochs=args.max_epochs,
            champion=False,
        )
        start = time.perf_counter()
        folder = search.tune(image_cnn, image_cnn.Config(), {}, sweep, output_dir=tmp / "a")
        wall = time.perf_counter() - start
        fits = runs(folder)
        fit_total = sum(r["fit_seconds"] for r in fits)
        first, last = fits[0], fits[-1]

        single = cli_sweep(tmp / "b", args.trials, args.max_epochs, [])
        workers = cli_sweep(tmp / "c", args.trials, args.max_epochs, ["--workers", "2"])
        fresh = cli_sweep(
            tmp / "d", args.trials, args.max_epochs, ["--workers", "2", "--trials-per-process", "1"]
        )
        fresh_runs = runs(report.sweep_dir(tmp / "d", "image_cnn", "random"))
        sweep_b = report.sweep_dir(tmp / "b", "image_cnn", "random")
        sweep_c = report.sweep_dir(tmp / "c", "image_cnn", "random")
        by_worker: dict[str, int] = {}
        for r in runs(sweep_c):
            by_worker[r["tuner_id"]] = by_worker.get(r["tuner_id"], 0) + 1
        same = hyperparameters(sweep_b) == hyperparameters(sweep_c)
        fit_b = sum(r["fit_seconds"] for r in runs(sweep_b))
        fit_c = sum(r["fit_seconds"] for r in runs(sweep_c))

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"sweep: random, {args.trials} trials, --max-epochs {args.max_epochs}, default config\n")
    print("| figure | value | target |")
    print("|---|---|---|")
    print(
        f"| sweep wall / summed fit time (in process) | {wall:.1f} s / {fit_total:.1f} s = "
        f"{wall / fit_total:.3f} | < 1.15 |"
    )
    print(
        f"| RSS after trial 1 → after trial {len(fits)} | {first['rss_mb']:.0f} → "
        f"{last['rss_mb']:.0f} MB ({last['rss_mb'] / first['rss_mb'] - 1:+.1%}) | ≤ +10% |"
    )
    print(
        f"| peak RSS at trial 1 → at trial {len(fits)} | {first['peak_rss_mb']:.0f} → "
        f"{last['peak_rss_mb']:.0f} MB ({last['peak_rss_mb'] / first['peak_rss_mb'] - 1:+.1%}) "
        "| ≤ +10% |"
    )
    print(f"| `ktemplate tune` one process, wall (summed fit) | {single:.1f} s ({fit_b:.1f} s) | |")
    print(
        f"| `--workers 2`, wall (summed fit) | {workers:.1f} s ({fit_c:.1f} s); trials per "
        f"worker {dict(sorted(by_worker.items()))}; same hyperparameters as one process: {same} | |"
    )
    print(f"| `--workers 2` / one process, wall | {workers / single:.2f} | |")
    a, b = fresh_runs[0], fresh_runs[-1]
    print(
        f"| `--workers 2 --trials-per-process 1`: wall; RSS at trial 1 → trial {len(fresh_runs)} "
        f"| {fresh:.1f} s; {a['rss_mb']:.0f} → {b['rss_mb']:.0f} MB "
        f"({b['rss_mb'] / a['rss_mb'] - 1:+.1%}), {len({r['pid'] for r in fresh_runs})} "
        "processes | ≤ +10% |"
    )


if __name__ == "__main__":
    main()
