"""tabular_mlp's defaults on its bundled tables (wine: classes; diabetes: numbers), next to the
run's own baseline (a linear model and gradient boosting, picked on validation).

Each run is `ktemplate train tabular_mlp [--dataset diabetes]` with the defaults and a seed.
Prints a Markdown table; benchmarks/RESULTS.md records it.

    python benchmarks/tabular_mlp_bundled.py --seeds 42 43 44
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ktemplate import config as config_lib  # noqa: E402
from ktemplate import files, run, templates  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    args = parser.parse_args()
    template = templates.load("tabular_mlp")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"python {platform.python_version()}\n"
    )
    print(
        "| data | seed | metric | model | baseline | baseline method | test, p | verdict | run s |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as out:
        for dataset in ("wine", "diabetes"):
            for seed in args.seeds:
                config = config_lib.apply_overrides(
                    template.Config(), {"dataset": dataset, "seed": str(seed)}, from_text=True
                )
                start = time.perf_counter()
                with contextlib.redirect_stdout(sys.stderr):
                    run_dir = run.train(template, config, output_dir=out, verbose=0)
                seconds = time.perf_counter() - start
                block = files.read_json(run_dir / "metrics.json")["baseline"]
                c = block["comparison"]
                print(
                    f"| {dataset} | {seed} | {c['metric']} | {c['model']:.4g} | "
                    f"{c['baseline']:.4g} | {block['name']} | {c['test']} {c['p_value']:.2g} "
                    f"({c['n']} {c['unit']}) | {c['verdict']} | {seconds:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
