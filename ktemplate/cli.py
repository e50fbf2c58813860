"""`ktemplate`: list, train, tune, export, predict and copy templates.

`--help` and `list` never import TensorFlow; the other commands import it only once their
arguments are checked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from ktemplate import files, signals, templates, tuning
from ktemplate.config import ConfigError
from ktemplate.locks import FolderInUse
from ktemplate.pipelines.sources import DataUnavailableError

# Errors a user can cause: reported as one clear line, never a traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    DataUnavailableError,
    ConfigError,
    FolderInUse,
)


def _quiet_tensorflow(verbose: bool) -> None:
    """Imports TensorFlow with its start-up banners filtered out, unless `verbose`."""
    if verbose or os.environ.get("KTEMPLATE_VERBOSE") == "1":
        os.environ["KTEMPLATE_VERBOSE"] = "1"  # the processes a launcher starts show it too
        return
    from ktemplate import startup

    startup.import_quietly()


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


def _add_strategy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy",
        default="auto",
        choices=tuning.STRATEGIES,
        help="tf.distribute strategy (default auto: TPU if found, Mirrored on >1 GPU, else "
        "default); batch_size is per replica",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktemplate",
        description="Keras 3 application templates: train, tune and export as SavedModels.",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's start-up messages (oneDNN, absl, CUDA probing), hidden otherwise",
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
    train.add_argument(
        "--run-dir",
        help="the run folder (default OUTPUT_DIR/NAME/<time stamp>); one that holds an "
        "unfinished run is continued, so a restarted multi-worker job resumes",
    )
    train.add_argument(
        "--workers",
        type=int,
        help="train in N local MultiWorkerMirroredStrategy processes (generated TF_CONFIG)",
    )
    _add_strategy_option(train)
    _add_format_options(train, "--export-formats")

    train.add_argument(
        "--smoke",
        action="store_true",
        help="the same as `ktemplate check NAME`: every hook on a few examples, in seconds",
    )

    check = sub.add_parser(
        "check",
        help="run every hook of a template on a few examples through to a served prediction",
        epilog="One epoch of one model on a few batches; nothing is kept. Run it on a copy "
        "made with `ktemplate new` before training it for real.",
    )
    check.add_argument("name", help="template name (see `ktemplate list`)")
    _add_config_options(check)

    tune = sub.add_parser(
        "tune",
        help="search hyperparameters with keras-tuner, then retrain and export the best",
        epilog="Fields set with --set/--config/--dataset are fixed (taken out of the search). "
        "Run the same command again to continue an interrupted sweep. Sweeps are written to "
        "OUTPUT_DIR/<template>/sweeps/<name>/.",
    )
    tune.add_argument("name", help="template name (see `ktemplate list`)")
    _add_config_options(tune)
    tune.add_argument("--tuner", default="random", choices=tuning.TUNERS)
    tune.add_argument("--max-trials", type=int, default=10, help="trials to run (default 10)")
    tune.add_argument(
        "--max-epochs", type=int, help="epochs per trial (default: the config's epochs)"
    )
    tune.add_argument("--executions-per-trial", type=int, default=1, help="fits averaged per trial")
    tune.add_argument(
        "--objective",
        help="a validation metric, e.g. val_loss or val_accuracy:max (default: the template's)",
    )
    tune.add_argument(
        "--max-retries-per-trial", type=int, default=0, help="re-runs of a trial that errored"
    )
    tune.add_argument(
        "--max-consecutive-failed-trials",
        type=int,
        default=3,
        help="stop after this many failed trials in a row (default 3)",
    )
    tune.add_argument(
        "--min-score", type=float, help="refuse to export a champion that scores worse"
    )
    tune.add_argument(
        "--no-champion", action="store_true", help="only search; do not retrain and export"
    )
    tune.add_argument("--name", dest="sweep_name", help="sweep folder name (default: the tuner)")
    tune.add_argument("--restart", action="store_true", help="delete the sweep and start over")
    tune.add_argument("--output-dir", default="saved_models", help="parent of sweep folders")
    _add_strategy_option(tune)
    tune.add_argument(
        "--workers", type=int, help="run trials in N worker processes on this machine"
    )
    tune.add_argument(
        "--role", choices=["chief", "worker"], help="this process's role in a cluster sweep"
    )
    tune.add_argument("--oracle", metavar="HOST:PORT", help="the chief's address (with --role)")
    tune.add_argument("--worker-id", help="unique id of this worker (with --role worker)")
    tune.add_argument(
        "--trials-per-process",
        type=int,
        metavar="K",
        help="a worker exits after K trials and --workers starts a fresh one (bounds memory "
        "over long sweeps); a --role worker exits with code 75 for its scheduler to restart",
    )

    report = sub.add_parser("report", help="print a sweep's leaderboard")
    report.add_argument("sweep_dir", help="a sweep folder, saved_models/<template>/sweeps/<name>")

    runs = sub.add_parser("runs", help="list run folders: status, dataset, key metric, age")
    runs.add_argument("name", nargs="?", help="only this template's runs")
    runs.add_argument("--output-dir", default="saved_models", help="parent of run folders")
    runs.add_argument(
        "--clean",
        action="store_true",
        help="first remove what killed processes left in the run folders (partial checkpoints, "
        "temporary exports); folders a live process holds are skipped",
    )

    export = sub.add_parser("export", help="export a run's best model as a SavedModel")
    export.add_argument("run_dir", help="a run folder, saved_models/<template>/<run-id>")
    export.add_argument("--output", help="export folder (default RUN_DIR/export)")
    export.add_argument("--force", action="store_true", help="replace an existing export")
    export.add_argument(
        "--serving-layout",
        action="store_true",
        help="TF Serving's layout: OUTPUT (default RUN_DIR/serving) is the model base path and "
        "this export its next version folder, OUTPUT/<n>/",
    )
    _add_format_options(export, "--format")

    predict = sub.add_parser("predict", help="run an exported SavedModel on raw inputs")
    predict.add_argument("export_dir", help="an export folder (holds manifest.json)")
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="what the export's template takes: image files (image_cnn, denoising_autoencoder), "
        ".npy/.csv windows (timeseries_lstm), texts or .txt files (text_transformer)",
    )
    reading = predict.add_mutually_exclusive_group()
    reading.add_argument(
        "--per-file",
        dest="per_line",
        action="store_false",
        help="texts: each .txt file is one text, as dir: folders are read for training "
        "(the default)",
    )
    reading.add_argument(
        "--per-line", dest="per_line", action="store_true", help="texts: one text per line"
    )
    predict.set_defaults(per_line=False)
    predict.add_argument(
        "--convert",
        choices=["auto", "gray", "rgb", "none"],
        default="auto",
        help="denoising: convert images whose channels differ from the model's (auto: to the "
        "model's, with a notice; none: refuse them)",
    )
    predict.add_argument(
        "--force",
        action="store_true",
        help="denoising: replace existing <name>.denoised.png files",
    )

    new = sub.add_parser("new", help="copy a template to start a new task")
    new.add_argument("new_name", help="the new template's name (a Python identifier)")
    new.add_argument("--from", dest="source", required=True, help="template to copy")
    new.add_argument(
        "--dir",
        help="the project's templates folder to write into (default $KTEMPLATE_TEMPLATES_DIR, "
        "else ./templates); `ktemplate train NAME` run from the same place finds it",
    )
    return parser


def cmd_list() -> int:
    rows = [templates.describe(name) for name in templates.names()]
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['summary']}")
        print(f"{'':<{width}}  default dataset: {r['dataset'] or '(none)'}")
    return 0


def cmd_show(name: str, verbose: bool = False) -> int:
    from ktemplate.config import config_help

    config = templates.config_class(name)  # from the source alone, without TensorFlow
    if config is None:
        _quiet_tensorflow(verbose)
        config = templates.load(name).Config
    print(f"{name}.Config fields (set with --set KEY=VALUE or --config FILE):")
    print(config_help(config))
    return 0


def _load_checked(args: argparse.Namespace):
    """The template, loaded after its config (--config file, --dataset, --set values) has been
    checked against its Config section alone, so that a user error comes before TensorFlow's
    import (`templates.config_class`)."""
    import types

    light = templates.config_class(args.name)
    if light is not None:
        # A check that needs the whole module runs after the load.
        with contextlib.suppress(NameError, AttributeError, ImportError):
            _config_and_fixed(types.SimpleNamespace(Config=light), args)
    _quiet_tensorflow(args.verbose)
    return templates.load(args.name)


def _add_format_options(parser: argparse.ArgumentParser, flag: str) -> None:
    """--format/--export-formats and --quantize: LiteRT and ONNX files beside the SavedModel."""
    parser.add_argument(
        flag,
        dest="formats",
        nargs="+",
        action="extend",
        metavar="FORMAT",
        help="saved_model (always written), litert, onnx (repeatable); each converted file is "
        "checked in its runtime (needs pip install 'ktemplate[export]'); on an existing export, "
        "the formats it lacks are added",
    )
    parser.add_argument(
        "--quantize",
        default="none",
        choices=["none", "dynamic", "float16", "int8"],
        help="post-training quantization of the LiteRT file (default none): dynamic (int8 "
        "weights), float16 (float16 weights), int8 (weights and activations, calibrated on "
        "train-split examples); a quantized file's test metric goes into the manifest",
    )


def cmd_check(args: argparse.Namespace) -> int:
    from ktemplate import check

    template = _load_checked(args)
    config, _ = _config_and_fixed(template, args)
    print(f"Checking {args.name} ({template.file}) on a few examples ...", flush=True)
    steps = check.check(template, config)
    seconds = steps.pop("seconds")
    for step, found in steps.items():
        print(f"  ok  {step}: {found}")
    print(f"{args.name} passes the check ({seconds:.0f} s). Next: ktemplate train {args.name}")
    return 0


def cmd_train(args: argparse.Namespace, argv: list[str]) -> int:
    if args.smoke:
        return cmd_check(args)
    template = _load_checked(args)
    config, fixed = _config_and_fixed(template, args)
    if args.resume and fixed:
        raise ValueError("--resume continues a run with its recorded config; drop --set/--config.")
    if args.workers is not None:
        return _train_workers(args, argv)

    from ktemplate import api, run
    from ktemplate.tuning import strategies

    strategy = strategies.make_strategy(args.strategy)
    try:
        result = api.train(
            template,
            config=config,
            output_dir=args.output_dir,
            resume=args.resume,
            run_dir=args.run_dir,
            strategy=strategy,
            export_formats=args.formats or ["saved_model"],
            quantize=args.quantize,
        )
    except KeyboardInterrupt as e:
        interrupted = getattr(e, "run_dir", None)
        if interrupted is None:
            print(
                f"\nInterrupted ({signals.describe(e)}) before a run folder was made: "
                "nothing to resume.",
                file=sys.stderr,
            )
        else:
            print(
                f"\nInterrupted ({signals.describe(e)}); the run folder is {interrupted}. "
                f"Resume with: ktemplate train {args.name} --resume {interrupted}",
                file=sys.stderr,
            )
        return signals.exit_code(e)
    if result is None:
        print(f"{run.worker_role(strategy).name}: done; the chief wrote the run folder.")
        return 0
    print_run_summary(result)
    return 0


def _train_workers(args: argparse.Namespace, argv: list[str]) -> int:
    """`train --workers N`: N local MultiWorkerMirroredStrategy processes, one run folder."""
    from ktemplate.tuning import launch

    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}.")
    if args.resume:
        raise ValueError("--workers with --resume: give the run folder as --run-dir instead.")
    if args.strategy not in ("auto", "multi_worker"):
        raise ValueError(f"--workers runs --strategy multi_worker, not {args.strategy}.")
    if "TF_CONFIG" in os.environ:
        raise ValueError("--workers generates TF_CONFIG for local workers; unset TF_CONFIG.")
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        run_dir = Path(args.output_dir) / args.name / time.strftime("%Y%m%d-%H%M%S")
        if run_dir.exists():
            raise FileExistsError(f"{run_dir} exists; give --run-dir.")
    child = argv
    for option in ("--workers", "--strategy", "--run-dir"):
        child = _without_option(child, option, True)
    # Worker 0, the chief, prints the run's summary to this terminal itself.
    return launch.run_training_workers(child, args.workers, run_dir)


def print_run_summary(result) -> None:
    """The run's (an `api.Run`) headline metrics, where it is, and last how it compares with
    its baseline."""
    from ktemplate import baselines

    metrics, run_dir = result.metrics, result.path
    headline = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    print(json.dumps(headline, indent=2))
    print(f"Run folder: {run_dir}\nExport: {run_dir / 'export'}")
    print(f"TensorBoard: tensorboard --logdir {run_dir}")
    for line in baselines.console_lines(metrics.get("baseline")):
        print(line)


def _config_and_fixed(template, args: argparse.Namespace):
    """The resolved config and the fields the user set (fixed in a sweep)."""
    from ktemplate.config import load_config_file, parse_assignments, resolve_config

    assignments = list(args.assignments)
    if args.dataset is not None:
        assignments.insert(0, f"dataset={args.dataset}")
    config = resolve_config(template.Config, args.config_file, assignments)
    keys = set(parse_assignments(assignments))
    if args.config_file:
        keys |= set(load_config_file(args.config_file))
    return config, {k: getattr(config, k) for k in sorted(keys)}


def _without_option(argv: list[str], option: str, takes_value: bool) -> list[str]:
    result, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = takes_value
        elif not item.startswith(option + "="):
            result.append(item)
    return result


def cmd_tune(args: argparse.Namespace, argv: list[str]) -> int:
    from ktemplate.tuning import launch, report

    template = _load_checked(args)
    config, fixed = _config_and_fixed(template, args)
    for option in ("max_trials", "executions_per_trial", "max_epochs"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {value}.")
    if args.trials_per_process is not None and args.trials_per_process < 1:
        raise ValueError(f"--trials-per-process must be at least 1, got {args.trials_per_process}.")
    if args.trials_per_process and not (args.workers or args.role):  # the chief ignores it
        raise ValueError("--trials-per-process applies to worker processes: add --workers N.")
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}.")
        if args.role:
            raise ValueError("--workers starts its own chief and workers; drop --role.")
        sweep_name = args.sweep_name or args.tuner
        folder = report.sweep_dir(args.output_dir, args.name, sweep_name)
        if args.restart and folder.exists():
            from ktemplate import files, locks

            with locks.hold(folder, "sweep chief"):  # not while another chief runs it
                files.clear_folder(folder, keep=locks.LOCK_FILE)
        child_argv = _without_option(_without_option(argv, "--workers", True), "--restart", False)
        return launch.run_local(child_argv, args.workers, folder.parent / f"{sweep_name}-processes")
    if args.role:
        if not args.oracle:
            raise ValueError("--role needs --oracle HOST:PORT (the chief's address).")
        os.environ.update(launch.role_environment(args.role, args.oracle, args.worker_id))

    from ktemplate import api
    from ktemplate.tuning import search

    try:
        result = api.tune(
            template,
            config=config,
            fixed=fixed,
            tuner=args.tuner,
            max_trials=args.max_trials,
            max_epochs=args.max_epochs,
            objective=args.objective,
            min_score=args.min_score,
            output_dir=args.output_dir,
            sweep_name=args.sweep_name,
            restart=args.restart,
            strategy=args.strategy,
            trials_per_process=args.trials_per_process,
            champion=not args.no_champion,
            executions_per_trial=args.executions_per_trial,
            max_retries_per_trial=args.max_retries_per_trial,
            max_consecutive_failed_trials=args.max_consecutive_failed_trials,
        )
    except search.Recycle as e:
        print(f"Worker {args.worker_id}: {e}; exiting for a fresh process.", file=sys.stderr)
        return launch.RECYCLE_EXIT
    except KeyboardInterrupt as e:
        print(
            f"\nInterrupted ({signals.describe(e)}). Run the same command again to continue "
            "the sweep.",
            file=sys.stderr,
        )
        return signals.exit_code(e)
    if result is None:  # a worker: the chief reports
        return 0
    folder = result if isinstance(result, Path) else result.sweep_dir
    print((folder / "leaderboard.md").read_text())
    print(f"Sweep folder: {folder}\nTensorBoard: tensorboard --logdir {folder}")
    if not isinstance(result, Path):
        print(f"Champion: {result.path}\nExport: {result.path / 'export'}")
        from ktemplate import baselines

        for line in baselines.console_lines(result.metrics.get("baseline")):  # {} if none
            print(line)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from ktemplate import listing

    if args.name is not None:
        templates.check_name(args.name)
    if args.clean:
        removed = listing.clean(args.output_dir, args.name)
        for path in removed:
            print(f"removed {path}")
        print(f"Removed {len(removed)} leftover(s) of killed processes (folders in use skipped).")
    rows = listing.runs(args.output_dir, args.name)
    if not rows:
        where = f"{args.output_dir}/{args.name}" if args.name else args.output_dir
        print(f"No runs under {where}.")
        return 0
    print(listing.format_table(rows))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ktemplate.tuning import report

    print(report.write_leaderboard(args.sweep_dir), end="")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ktemplate import api

    path = api.export(
        args.run_dir,
        args.output,
        overwrite=args.force,
        formats=args.formats or ["saved_model"],
        quantize=args.quantize,
        serving_layout=args.serving_layout,
    )
    print(f"Exported to {path}")
    for line in export_lines(path):
        print(f"  {line}")
    if args.serving_layout:
        print(
            f"TF Serving: --model_base_path={path.parent.resolve()} (serves version {path.name}, "
            "the highest); requests: README, 'Serving'"
        )
    return 0


def export_lines(path: Path) -> list[str]:
    """One line per file of an export's manifest: its size and the check it passed."""
    lines = []
    for fmt, entry in files.read_json(Path(path) / "manifest.json").get("formats", {}).items():
        if fmt == "saved_model":
            lines.append("saved_model.pb: the SavedModel (endpoints in manifest.json)")
            continue
        checks = []
        for output, d in entry.get("check", {}).items():
            if "mismatch" in d:
                checks.append(f"{output} differs on {d['mismatch']:.0%}")
            else:
                checks.append(
                    f"{output} max |diff| {d['max_abs_diff']:.2g} (tolerance {d['tolerance']:.2g})"
                )
        quantized = entry.get("test_metric")
        lines.append(
            f"{entry['path']}: {fmt}, {entry['bytes'] / 1e6:.2f} MB, checked against "
            f"{entry.get('compared_with', 'the SavedModel')}: {'; '.join(checks)}"
            + (
                f"; test {quantized['name']} {quantized['litert']} (float {quantized['float']})"
                if quantized
                else ""
            )
        )
    return lines


def cmd_predict(args: argparse.Namespace) -> int:
    from ktemplate import predict

    rows, failures = predict.predict_each(
        Path(args.export_dir),
        args.inputs,
        per_line=args.per_line,
        convert=args.convert,
        force=args.force,
    )
    for row in rows:
        print(json.dumps(row))
    for _, message in failures:  # one line per input that could not be read
        print(f"ktemplate: error: {message}", file=sys.stderr)
    if failures:
        print(
            f"ktemplate: {len(failures)} of {len(args.inputs)} input(s) failed; the others' "
            "results are above.",
            file=sys.stderr,
        )
        return 2
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    path = templates.copy_template(args.new_name, args.source, Path(args.dir) if args.dir else None)
    found_here = path.parent.resolve() == templates.project_dir().resolve()
    prefix = "" if found_here else f"KTEMPLATE_TEMPLATES_DIR={path.parent} "
    print(
        f"Created {path}\nEdit its description line, Config, data and model sections, then:\n"
        f"  {prefix}ktemplate check {args.new_name}   # every hook on a few examples, in seconds\n"
        f"  {prefix}ktemplate train {args.new_name}"
    )
    return 0


def main_for(template_file: str, argv: list[str] | None = None) -> int:
    """`python path/to/TEMPLATE.py [train options]`, from any folder: `ktemplate train` of the
    template in that file (its folder is where templates are looked up)."""
    path = Path(template_file).resolve()
    if path.parent != templates.TEMPLATES_DIR:
        os.environ[templates.PROJECT_DIR_ENV] = str(path.parent)
    return main(["train", path.stem, *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None  # the `ktemplate` command or `python -m ktemplate`
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if as_program and not args.verbose:  # TensorFlow's C++ noise, for the whole process
        from ktemplate import startup

        startup.filter_process_stderr()
    # The template commands import TensorFlow once their user errors are found (_load_checked).
    if args.command not in ("list", "new", "report", "runs", "show", "train", "tune", "check"):
        _quiet_tensorflow(args.verbose)
    try:
        with signals.sigterm_as_interrupt():
            return _dispatch(args, argv)
    except USER_ERRORS as e:
        print(f"ktemplate: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk: full, read-only or not ours to write
        if files.disk_error(e) is None and not isinstance(e, NotADirectoryError):
            raise
        print(f"ktemplate: error: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # outside train/tune, which say how to continue
        return signals.exit_code(e)
    except BrokenPipeError:  # `ktemplate list | head`: the reader has gone; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "list":
        return cmd_list()
    if args.command == "show":
        return cmd_show(args.name, args.verbose)
    if args.command == "train":
        return cmd_train(args, argv)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "tune":
        return cmd_tune(args, argv)
    if args.command == "report":
        return cmd_report(args)
    if args.command == "runs":
        return cmd_runs(args)
    if args.command == "export":
        return cmd_export(args)
    if args.command == "predict":
        return cmd_predict(args)
    return cmd_new(args)


if __name__ == "__main__":
    raise SystemExit(main())
