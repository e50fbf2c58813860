"""Re-runs the quick benchmarks and fails when a figure in RESULTS.md no longer reproduces.

The figures checked, their commit and their tolerance live in `benchmarks/recorded.json`
(RESULTS.md quotes the same numbers, and names the same commit):

- image_cnn on the digits (`image_cnn_digits.py`), test accuracy per seed. Runs are
  deterministic (`deterministic=true`): on the machine type recorded the figure comes back
  exactly; on another CPU type oneDNN may choose other kernels, so the stated tolerance is
  the number of test digits `tolerance_errors` allows.
- CLI start-up (`cli_startup.py`): `ktemplate --help` and `ktemplate list` under their limit.

Exit code 0 when every figure reproduces, 1 otherwise (a table says which).

    python benchmarks/check_results.py            # both (about 2 minutes on 2 cores)
    python benchmarks/check_results.py --only cli_startup
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cli_startup

RECORDED = Path(__file__).with_name("recorded.json")


def head_commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    return result.stdout.strip() or "unknown"


def check_digits(recorded: dict) -> list[tuple[str, str, str, bool]]:
    import image_cnn_digits  # imports TensorFlow: only when this check runs

    expected = {int(seed): value for seed, value in recorded["test_accuracy"].items()}
    rows, test_examples = image_cnn_digits.run_seeds(sorted(expected), {})
    tolerance = recorded["tolerance_errors"] / test_examples
    result = []
    for seed, _, _, accuracy, *_ in rows:
        ok = abs(accuracy - expected[seed]) <= tolerance + 1e-9
        result.append(
            (
                f"image_cnn digits seed {seed} test accuracy",
                f"{expected[seed]:.4f} ± {tolerance:.4f}",
                f"{accuracy:.4f}",
                ok,
            )
        )
    return result


def check_cli(recorded: dict) -> list[tuple[str, str, str, bool]]:
    result = []
    for name in ("ktemplate --help", "ktemplate list"):
        seconds = cli_startup.median_seconds(cli_startup.COMMANDS[name], recorded["runs"])
        result.append(
            (
                f"{name} median s",
                f"< {recorded['limit_s']} (recorded {recorded['seconds'][name]})",
                f"{seconds:.3f}",
                seconds < recorded["limit_s"],
            )
        )
    return result


CHECKS = {"image_cnn_digits": check_digits, "cli_startup": check_cli}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CHECKS), action="append")
    args = parser.parse_args()
    recorded = json.loads(RECORDED.read_text())
    print(f"HEAD {head_commit()}")
    print("| figure | recorded at | recorded | now | reproduces |\n|---|---|---|---|---|")
    failed = 0
    for name in args.only or sorted(CHECKS):
        entry = recorded[name]
        for figure, expected, now, ok in CHECKS[name](entry):
            failed += not ok
            verdict = "yes" if ok else "NO"
            print(f"| {figure} | {entry['commit']} | {expected} | {now} | {verdict} |")
    if failed:
        print(f"\n{failed} figure(s) no longer reproduce: re-run the benchmark, update "
              "RESULTS.md and recorded.json, or fix the regression.")  # fmt: skip
        return 1
    print("\nEvery checked figure reproduces.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
