"""`ktemplate`: list, train, export, predict and copy templates.

`--help` and `list` never import TensorFlow; the other commands import it only once their
arguments are checked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import templates
from ktemplate.config import ConfigError
from pipelines.sources import DataUnavailableError

# Errors a user can cause: reported as one clear line, never a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, DataUnavailableError, ConfigError)


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a Config field, e.g. --set epochs=3 --set filters=16 (repeatable)",
    )
    parser.add_argument(
        "--config", dest="config_file", help="JSON, TOML or YAML file of Config fields"
    )
    parser.add_argument("--dataset", help="the data source (same as --set dataset=...)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktemplate",
        description="Keras 3 application templates: train, tune and export as SavedModels.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list templates and their default datasets")

    show = sub.add_parser("show", help="print a template's Config fields, defaults and meaning")
    show.add_argument("name", help="template name")

    train = sub.add_parser(
        "train",
        help="train a template; writes saved_models/<template>/<run-id>/",
        epilog="Config fields: `ktemplate show NAME`. Precedence: defaults < --config < "
        "--dataset < --set.",
    )
    train.add_argument("name", help="template name (see `ktemplate list`)")
    _add_config_options(train)
    train.add_argument("--output-dir", default="saved_models", help="parent of run folders")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")

    export = sub.add_parser("export", help="export a run's best model as a SavedModel")
    export.add_argument("run_dir", help="a run folder, saved_models/<template>/<run-id>")
    export.add_argument("--output", help="export folder (default RUN_DIR/export)")
    export.add_argument("--force", action="store_true", help="replace an existing export")

    predict = sub.add_parser("predict", help="run an exported SavedModel on input files")
    predict.add_argument("export_dir", help="an export folder (holds manifest.json)")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="input files, e.g. images")

    new = sub.add_parser("new", help="copy a template to start a new task")
    new.add_argument("new_name", help="the new template's name (a Python identifier)")
    new.add_argument("--from", dest="source", required=True, help="template to copy")
    return parser


def cmd_list() -> int:
    rows = [templates.describe(name) for name in templates.names()]
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['summary']}")
        print(f"{'':<{width}}  default dataset: {r['dataset'] or '(none)'}")
    return 0


def cmd_show(name: str) -> int:
    from ktemplate.config import config_help

    template = templates.load(name)
    print(f"{name}.Config fields (set with --set KEY=VALUE or --config FILE):")
    print(config_help(template.Config))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ktemplate.config import resolve_config

    template = templates.load(args.name)
    assignments = list(args.assignments)
    if args.dataset is not None:
        assignments.insert(0, f"dataset={args.dataset}")
    config = resolve_config(template.Config, args.config_file, assignments)
    if args.resume and (assignments or args.config_file):
        raise ValueError("--resume continues a run with its recorded config; drop --set/--config.")

    from ktemplate import run

    try:
        run_dir = run.train(template, config, output_dir=args.output_dir, resume=args.resume)
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Resume with: ktemplate train "
            f"{args.name} --resume <run folder printed above>",
            file=sys.stderr,
        )
        return 130
    metrics = json.loads((run_dir / "metrics.json").read_text())
    headline = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    print(json.dumps(headline, indent=2))
    print(f"Run folder: {run_dir}\nExport: {run_dir / 'export'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ktemplate import run

    info = run.read_run(args.run_dir)
    template = templates.load(info["template"])
    path = run.export(template, args.run_dir, output=args.output, overwrite=args.force)
    print(f"Exported to {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ktemplate import predict

    for row in predict.predict(Path(args.export_dir), args.inputs):
        print(json.dumps(row))
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    path = templates.copy_template(args.new_name, args.source)
    print(
        f"Created {path}\nEdit its Config, data and model sections, then: "
        f"ktemplate train {args.new_name}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("list", "new"):
        _quiet_tensorflow()
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "show":
            return cmd_show(args.name)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "predict":
            return cmd_predict(args)
        return cmd_new(args)
    except USER_ERRORS as e:
        print(f"ktemplate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
