"""Start-up time of `ktemplate --help` and `ktemplate list` against bare Python and TensorFlow.

Both commands must stay under 1 s, which means never importing TensorFlow. Prints the median
of several runs of each command, in fresh processes.

    python benchmarks/cli_startup.py --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "ktemplate --help": [sys.executable, "-m", "ktemplate.cli", "--help"],
    "ktemplate list": [sys.executable, "-m", "ktemplate.cli", "list"],
    "python -c 'import tensorflow' (for scale)": [sys.executable, "-c", "import tensorflow"],
}


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print("| command | median wall s |\n|---|---|")
    for name, command in COMMANDS.items():
        print(f"| {name} | {median_seconds(command, args.runs):.3f} |")


if __name__ == "__main__":
    main()
