"""image_cnn's default run with 1 and 2 local MultiWorkerMirroredStrategy workers, side by side.

Each row is `ktemplate train image_cnn --workers N --set seed=S` in a fresh set of processes
(wall time includes starting TensorFlow in every worker). The global batch is `batch_size x
workers`, so 2 workers take half as many, twice as large steps per epoch. On one machine the
workers share its cores; with one worker per machine each does half the work per step plus an
all-reduce of the gradients.

    python benchmarks/multi_worker.py --workers 1 2 --seeds 42
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

from ktemplate import files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    args = parser.parse_args()
    rows = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for workers in args.workers:
                run_dir = Path(tmp) / f"w{workers}-s{seed}"
                command = [sys.executable, "-m", "ktemplate", "train", "image_cnn"]
                command += ["--workers", str(workers), "--run-dir", str(run_dir)]
                command += ["--set", f"seed={seed}"]
                start = time.perf_counter()
                subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - start
                metrics = files.read_json(run_dir / "metrics.json")
                run_info = files.read_json(run_dir / "run.json")
                rows.append((workers, seed, run_info, metrics, wall))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores\n")
    print("| workers | seed | global batch | test accuracy | epochs | fit s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for workers, seed, run_info, metrics, wall in rows:
        print(
            f"| {workers} | {seed} | {run_info['global_batch_size']} "
            f"| {metrics['test_accuracy']:.4f} | {metrics['epochs']['train']} "
            f"| {metrics['train_seconds']:.1f} | {wall:.1f} |"
        )


if __name__ == "__main__":
    main()
