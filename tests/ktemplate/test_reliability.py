"""Reproducible runs, folder locks, SIGTERM and `ktemplate runs`."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from ktemplate.templates import image_cnn

from ktemplate import cli, files, listing, locks, run, signals, training
from tests.helpers.images import make_image_folder

TIMEOUT = 120
HOLD = "import sys, time; from ktemplate import locks\nwith locks.hold(sys.argv[1]):\n"
HOLD += "    print('held', flush=True); time.sleep(600)\n"


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def _wait_for(condition, process, what):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            err = process.stderr.read() if process.stderr else ""
            pytest.fail(f"the process ended (exit {process.returncode}) before {what}:\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _holding(folder):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_lock_names_the_holder_and_goes_with_it(tmp_path):
    holder = _holding(tmp_path)
    try:
        assert locks.holder(tmp_path) == str(holder.pid)
        in_use = pytest.raises(locks.FolderInUse, match=f"in use by process {holder.pid}")
        with in_use, locks.hold(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the OS drops the lock
        holder.wait()
    assert locks.holder(tmp_path) is None
    # With wait_s, a hold waits for the other holder to end instead of refusing.
    holder = _holding(tmp_path)
    threading.Timer(0.5, lambda: holder.send_signal(signal.SIGKILL)).start()
    start = time.monotonic()
    with locks.hold(tmp_path, wait_s=60):
        assert locks.holder(tmp_path) == str(os.getpid())
    assert 0.4 < time.monotonic() - start < 30
    holder.wait()
    with locks.hold(tmp_path), locks.hold(tmp_path):  # this process may nest its own hold
        assert locks.holder(tmp_path) == str(os.getpid())
    assert locks.holder(tmp_path) is None


def test_a_probe_of_the_lock_never_refuses_the_process_that_takes_it(tmp_path):
    # `ktemplate runs` asks whether a run folder is held by taking its lock for an instant; a
    # training that starts at that instant must not take the probe for another holder.
    probe = "import sys, time; from ktemplate import locks\nend = time.time() + 60\n"
    probe += "print('probing', flush=True)\nwhile time.time() < end: locks.holder(sys.argv[1])\n"
    prober = subprocess.Popen(
        [sys.executable, "-c", probe, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert prober.stdout.readline().strip() == "probing"
        for _ in range(500):
            with locks.hold(tmp_path):
                pass
    finally:
        prober.kill()
        prober.wait()


FAST = dict(epochs=2, batch_size=8, early_stopping_patience=0, conv_blocks=1, filters=8, members=1)


def _weights(run_dir):
    model = keras.models.load_model(run_dir / "checkpoints" / "best.keras", compile=False)
    return np.concatenate([w.numpy().ravel() for w in model.weights])


def test_same_seed_same_run_other_seed_other_weights(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=16)
    results = []
    for seed in (7, 7, 8):
        config = image_cnn.Config(dataset=f"dir:{data}", seed=seed, baseline=False, **FAST)
        run_dir = run.train(image_cnn, config, output_dir=tmp_path / "runs", verbose=0)
        metrics = files.read_json(run_dir / "metrics.json")
        results.append((metrics["test_log_loss"], _weights(run_dir)))
    (loss_a, weights_a), (loss_b, weights_b), (_, weights_c) = results
    assert loss_a == loss_b
    np.testing.assert_array_equal(weights_a, weights_b)
    assert np.abs(weights_a - weights_c).max() > 1e-3


def _train_command(tmp_path, *extra):
    data = tmp_path / "data"
    if not data.exists():
        make_image_folder(data, per_class=16)
    return [
        sys.executable, "-m", "ktemplate", "train", "image_cnn", "--dataset", f"dir:{data}",
        "--set", "epochs=500", "--set", "filters=8", "--set", "conv_blocks=1",
        "--set", "early_stopping_patience=0", "--set", "baseline=false", "--set", "members=1",
        *extra,
    ]  # fmt: skip


def _epochs_done(run_dir):
    history = run_dir / "history_train.csv"  # its header is written when training starts
    return len(history.read_text().splitlines()) - 1 if history.exists() else 0


def test_second_process_on_a_run_is_refused_and_sigterm_interrupts(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "image_cnn" / "one"
    first = subprocess.Popen(
        _train_command(tmp_path, "--run-dir", str(run_dir)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        _wait_for(lambda: _epochs_done(run_dir) >= 1, first, "the first epoch")
        # A second resume of the same run is refused while the first one trains.
        assert cli.main(["train", "image_cnn", "--resume", str(run_dir)]) == 2
        assert f"{run_dir.resolve()} is in use by process {first.pid}" in capsys.readouterr().err
        assert cli.main(["export", str(run_dir)]) == 2
        assert "in use by process" in capsys.readouterr().err
        (row,) = listing.runs(tmp_path / "runs")
        assert row["status"] == f"training (process {first.pid})"
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=TIMEOUT) == 143
    finally:
        first.kill()
    stderr = first.stderr.read()
    assert "Interrupted (SIGTERM)" in stderr
    # The console of an interrupted run names its folder and the exact command that resumes it.
    assert f"Resume with: ktemplate train image_cnn --resume {run_dir}" in stderr
    info = files.read_json(run_dir / "run.json")
    assert info["status"] == "interrupted" and info["reason"].startswith("SIGTERM")
    assert info["epochs_done"]["train"] >= 1
    assert (run_dir / "backup").is_dir() and not (run_dir / "metrics.json").exists()
    assert locks.holder(run_dir) is None
    # An unfinished run exports only when asked to, and its manifest says what it was.
    assert cli.main(["export", str(run_dir)]) == 2
    assert "is interrupted" in capsys.readouterr().err
    assert cli.main(["export", str(run_dir), "--force"]) == 0
    assert files.read_json(run_dir / "export" / "manifest.json")["run_status"] == "interrupted"

    # A resume killed outright (SIGKILL, the machine going down) leaves no lock behind, and
    # `ktemplate runs` tells it from a run that is still training.
    second = subprocess.Popen(
        [sys.executable, "-m", "ktemplate", "train", "image_cnn", "--resume", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        _wait_for(
            lambda: files.read_json(run_dir / "run.json")["status"] == "training",
            second,
            "the resume",
        )
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait()
    assert locks.holder(run_dir) is None
    (row,) = listing.runs(tmp_path / "runs")
    assert row["status"] == "killed"
    assert cli.main(["runs", "image_cnn", "--output-dir", str(tmp_path / "runs")]) == 0
    assert "killed" in capsys.readouterr().out


def test_second_chief_on_a_sweep_is_refused(tmp_path, capsys):
    folder = tmp_path / "image_cnn" / "sweeps" / "random"
    tune = ["tune", "image_cnn", "--output-dir", str(tmp_path), "--max-epochs", "1"]
    tune += ["--set", "filters=8", "--set", "dense_units=16", "--no-champion"]
    chief = _holding(folder)  # what a running chief holds
    try:
        assert cli.main([*tune, "--max-trials", "2"]) == 2
        assert f"is in use by process {chief.pid}" in capsys.readouterr().err
        assert cli.main([*tune, "--max-trials", "2", "--restart"]) == 2  # nothing is removed
        assert folder.is_dir()
    finally:
        chief.send_signal(signal.SIGKILL)
        chief.wait()


def _write_run(folder, status, metrics=None, reason=None):
    folder.mkdir(parents=True)
    info = {"template": "image_cnn", "dataset": "digits", "run_id": folder.name, "status": status}
    if reason:
        info["reason"] = reason
    files.write_json(folder / "run.json", info)
    if metrics is not None:
        files.write_json(folder / "metrics.json", metrics)


def test_runs_lists_status_metric_and_age(tmp_path, capsys):
    comparison = {"metric": "test_accuracy", "model": 0.9916, "verdict": "better"}
    _write_run(
        tmp_path / "image_cnn" / "a",
        "finished",
        {"test_accuracy": 0.9916, "baseline": {"name": "SVC", "comparison": comparison}},
    )
    _write_run(tmp_path / "image_cnn" / "b", "failed", reason="ValueError: loss became NaN")
    _write_run(tmp_path / "image_cnn" / "c", "training")  # no process holds it
    _write_run(tmp_path / "text_transformer" / "d", "rejected", {"test_accuracy": 0.5})
    rows = {Path(r["run"]).name: r for r in listing.runs(tmp_path)}
    assert rows["a"]["metric"] == "test_accuracy=0.9916 (better than SVC)"
    assert rows["b"]["status"] == "failed" and "NaN" in rows["b"]["metric"]
    assert rows["c"]["status"] == "killed"
    assert rows["d"]["metric"] == "test_accuracy=0.5"
    assert cli.main(["runs", "image_cnn", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["RUN", "STATUS", "DATASET", "METRIC", "AGE"]
    assert "text_transformer" not in out and out.count("image_cnn") == 3
    assert cli.main(["runs", "imag_cnn", "--output-dir", str(tmp_path)]) == 2
    assert "Unknown template 'imag_cnn'" in capsys.readouterr().err


def test_runs_clean_removes_what_killed_processes_left_but_not_a_live_ones(tmp_path, capsys):
    for name in ("dead", "live"):
        folder = tmp_path / "image_cnn" / name
        _write_run(folder, "training")
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / ".partial.best.keras").write_bytes(b"half")
        (folder / ".export.abc123.tmp").mkdir()
    live = _holding(tmp_path / "image_cnn" / "live")
    try:
        assert cli.main(["runs", "--clean", "--output-dir", str(tmp_path)]) == 0
        assert "Removed 2 leftover(s)" in capsys.readouterr().out
        dead, held = tmp_path / "image_cnn" / "dead", tmp_path / "image_cnn" / "live"
        assert not (dead / "checkpoints" / ".partial.best.keras").exists()
        assert not (dead / ".export.abc123.tmp").exists() and (dead / "run.json").is_file()
        assert (held / "checkpoints" / ".partial.best.keras").exists()  # its process writes it
        assert (held / ".export.abc123.tmp").is_dir()
    finally:
        live.kill()
        live.wait()


def test_runs_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys; from ktemplate import cli; code = cli.main(['runs', '--output-dir', "
        f"{str(tmp_path)!r}]); assert 'tensorflow' not in sys.modules; sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "No runs under" in result.stdout


def test_a_model_too_large_for_the_machine_is_refused_before_it_is_built(tmp_path, capsys):
    out = tmp_path / "runs"
    assert (
        cli.main(["train", "image_cnn", "--set", "filters=100000000", "--output-dir", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("ktemplate: error: Training this model needs about")
    assert "filters=100000000 (default 32)" in err and "Traceback" not in err
    assert not out.exists()


def test_max_params_guard(tmp_path, capsys):
    argv = ["train", "image_cnn", "--set", "max_params=1000", "--output-dir", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "parameters, more than max_params=1000" in err and "largest layer is" in err
    assert cli.main(["train", "image_cnn", "--set", "max_params=-1"]) == 2
    assert "'max_params' must be >= 0" in capsys.readouterr().err


def test_out_of_memory_while_training_is_one_line_and_recorded(tmp_path, monkeypatch, capsys):
    class OutOfMemory(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    real_callbacks = training.callbacks
    monkeypatch.setattr(
        training, "callbacks", lambda *a, **k: real_callbacks(*a, **k) + [OutOfMemory()]
    )
    data = make_image_folder(tmp_path / "data", per_class=8)
    argv = ["train", "image_cnn", "--dataset", f"dir:{data}", "--output-dir", str(tmp_path)]
    assert (
        cli.main([*argv, "--set", "batch_size=128", "--set", "epochs=1", "--set", "members=1"]) == 2
    )
    err = capsys.readouterr().err
    assert "Out of memory while training (OOM when allocating tensor)" in err
    assert "batch_size=128 (default 32)" in err
    (run_dir,) = (tmp_path / "image_cnn").iterdir()
    info = files.read_json(run_dir / "run.json")
    assert info["status"] == "failed" and info["reason"].startswith("Out of memory")
    assert info["epochs_done"] == {"train": 0}


def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path):
    folder = tmp_path / "image_cnn" / "sweeps" / "random"
    command = [sys.executable, "-m", "ktemplate", "tune", "image_cnn", "--output-dir"]
    command += [str(tmp_path), "--max-trials", "50", "--set", "filters=8", "--no-champion"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env()
    )
    try:
        _wait_for(lambda: locks.holder(folder) is not None, process, "the chief's lock")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 143
    finally:
        process.kill()
    assert "Interrupted (SIGTERM). Run the same command again" in process.stderr.read()
    assert locks.holder(folder) is None


def test_a_folder_this_process_cannot_write_is_used_without_a_lock(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(locks.os, "open", refuse)  # a read-only run, exported elsewhere
    with locks.hold(tmp_path):
        assert not (tmp_path / locks.LOCK_FILE).exists()

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(locks.os, "open", disk_full)  # any other failure is not hidden
    with pytest.raises(OSError, match="No space"), locks.hold(tmp_path / "other"):
        pass


def test_an_interrupt_inside_deferred_is_raised_when_the_block_ends():
    done = []
    with signals.sigterm_as_interrupt():
        with pytest.raises(signals.Terminated), signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now: it only took note
            done.append("written")
        with pytest.raises(KeyboardInterrupt) as interrupt, signals.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("written again")
        assert not isinstance(interrupt.value, signals.Terminated)
        # The raising handlers are back after the block.
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(signals.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    signals.received = False
    assert done == ["written", "written again"]


def _tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_a_checkpoint_or_backup_cut_short_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    class StopAtEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    x, y = np.ones((8, 3)), np.zeros((8, 2))
    config = image_cnn.Config(early_stopping_patience=0)
    model = _tiny_model()

    def fit(*extra):
        callbacks = training.callbacks(config, tmp_path) + list(extra)
        model.fit(x, y, validation_data=(x, y), epochs=5, verbose=0, callbacks=callbacks)

    with pytest.raises(KeyboardInterrupt):
        fit(StopAtEpoch2())
    backup = tmp_path / "backup" / "train"
    checkpoint = tmp_path / "checkpoints" / "best.keras"

    def dies_half_way(self, filepath, *args, **kwargs):  # the process killed while writing
        Path(filepath).write_bytes(b"half a file")
        raise KeyboardInterrupt

    # The backup dies half-written, then the best model's checkpoint (which the first resume
    # rewrote, as its epoch was the best so far).
    for method, written in (("save_weights", [*backup.iterdir()]), ("save", [checkpoint])):
        saved = {path: path.read_bytes() for path in written}
        monkeypatch.setattr(keras.Model, method, dies_half_way)
        with pytest.raises(KeyboardInterrupt):
            fit()  # resumes at epoch 2 and dies saving it
        monkeypatch.undo()
        for path, content in saved.items():
            assert path.read_bytes() == content, f"{path} changed when {method} died"
    _tiny_model().load_weights(backup / "latest.weights.h5")
    keras.models.load_model(checkpoint)
    assert files.read_json(backup / "training_metadata.json")["epoch"] == 2


def test_epoch_history_keeps_one_row_per_epoch(tmp_path):
    history = training.EpochHistory(tmp_path / "history_train.csv")
    history.on_epoch_end(0, {"loss": 2.0, "val_loss": 2.5})
    history.on_epoch_end(1, {"loss": 1.0, "val_loss": 1.5})
    history.on_epoch_end(1, {"loss": 0.9, "val_loss": 1.4})  # epoch 1 again, after a resume
    lines = (tmp_path / "history_train.csv").read_text().splitlines()
    assert lines == ["epoch,loss,val_loss", "0,2.0,2.5", "1,0.9,1.4"]


def _export_process(run_dir, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "ktemplate", "export", str(run_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip


def test_killed_and_racing_exports_leave_one_whole_export(tmp_path, capsys):
    config = image_cnn.Config(epochs=1, members=1, conv_blocks=1, filters=8, baseline=False)
    run_dir = run.train(image_cnn, config, output_dir=tmp_path / "runs", verbose=0)
    # Two runs exported at once into one new folder: one wins, the other says so; nothing else
    # is left. (Two exports of one run take turns: the run's lock.)
    twin = run_dir.with_name(run_dir.name + "-twin")
    shutil.copytree(run_dir, twin)
    target = tmp_path / "shipped"
    racers = [_export_process(folder, "--output", str(target)) for folder in (run_dir, twin)]
    codes = sorted(racer.wait(timeout=TIMEOUT) for racer in racers)
    errors = "".join(racer.stderr.read() for racer in racers)
    assert codes == [0, 2], errors
    assert "another process" in errors or "already exists" in errors
    assert (target / "saved_model.pb").is_file() and (target / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # Two runs exported at once into one TF Serving base path: each takes its own version,
    # chosen under the base path's lock, and both succeed.
    base = tmp_path / "serving"
    argv = ["--output", str(base), "--serving-layout"]
    racers = [_export_process(folder, *argv) for folder in (run_dir, twin)]
    codes = [racer.wait(timeout=TIMEOUT) for racer in racers]
    assert codes == [0, 0], "".join(racer.stderr.read() for racer in racers)
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == ["1", "2"]
    for version in ("1", "2"):
        assert (base / version / "saved_model.pb").is_file()
        assert (base / version / "manifest.json").is_file()
    # An export killed outright leaves its temporary folder; the next export removes it.
    killed = _export_process(run_dir, "--force")
    try:
        _wait_for(lambda: list(run_dir.glob(".export.*.tmp")), killed, "the temporary export")
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert list(run_dir.glob(".export.*.tmp"))
    assert cli.main(["export", str(run_dir), "--force"]) == 0
    assert "Removed what a killed process left" in capsys.readouterr().out
    assert not list(run_dir.glob(".export.*")) and (run_dir / "export" / "saved_model.pb").is_file()


def test_an_output_folder_that_cannot_take_the_run_is_one_line_before_any_folder(
    tmp_path, monkeypatch, capsys
):
    argv = ["train", "image_cnn", "--set", "epochs=1", "--set", "members=1"]
    argv += ["--set", "baseline=false", "--output-dir", str(tmp_path / "out")]
    # Read-only (what a read-only mount answers).
    real = files.tempfile.TemporaryFile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "TemporaryFile", read_only)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be written (Read-only file system)" in err[0]
    assert not (tmp_path / "out").exists()
    # Full: the free space is checked against the run's estimated checkpoints and export.
    monkeypatch.setattr(files.tempfile, "TemporaryFile", real)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 1))
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 0 KiB free, and this run needs about" in err[0]
    assert not (tmp_path / "out").exists()


TMPFS = """
set -u
mount -t tmpfs -o size=256k tmpfs "$1/small"
mount -t tmpfs -o size=64m,ro tmpfs "$1/read_only"
for where in small read_only; do
  "$2" -m ktemplate train tabular_mlp --set members=1 --output-dir "$1/$where/out" \
    > "$1/$where.out" 2> "$1/$where.err"
  echo $? > "$1/$where.rc"
  ls -A "$1/$where" > "$1/$where.left"
done
"""


def test_a_real_small_or_read_only_filesystem_is_one_line_before_any_folder(tmp_path):
    """Real filesystems, where the test can mount them (a private mount namespace): a 256 KiB
    tmpfs and a read-only one. Each run ends in one line before its run folder exists."""
    for where in ("small", "read_only"):
        (tmp_path / where).mkdir()
    unshare = ["unshare", "--mount", "--map-root-user"]
    try:
        probe = subprocess.run(
            [*unshare, "mount", "-t", "tmpfs", "tmpfs", str(tmp_path / "small")],
            capture_output=True,
            timeout=30,
        )
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if probe.returncode != 0:
        pytest.skip(f"this machine cannot mount a tmpfs in a namespace: {probe.stderr[:200]}")
    subprocess.run(
        [*unshare, "sh", "-c", TMPFS, "sh", str(tmp_path), sys.executable],
        check=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    expected = {
        "small": "has 256 KiB free, and this run needs about",
        "read_only": "cannot be written (Read-only file system)",
    }
    for where, message in expected.items():
        err = (tmp_path / f"{where}.err").read_text()
        assert (tmp_path / f"{where}.rc").read_text().strip() == "1", err[-3000:]
        errors = [line for line in err.splitlines() if line.startswith("ktemplate")]
        assert len(errors) == 1 and message in errors[0], err[-3000:]
        assert "Traceback" not in err
        assert (tmp_path / f"{where}.left").read_text() == ""  # no run folder, nothing else


def test_a_real_size_limit_while_training_is_one_line_and_leaves_no_partial_file(tmp_path):
    """A real write fault, not a patched one: the training process may write no file over
    16 KiB (`ulimit -f`, as a quota or a small filesystem's largest file), so the run folder's
    small files are written and its first checkpoint is refused by the kernel (EFBIG)."""
    import resource

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # refused writes fail, nothing is killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "ktemplate", "train", "tabular_mlp", "--set", "epochs=2",
         "--set", "members=1", "--set", "baseline=false", "--output-dir", str(tmp_path)],
        preexec_fn=limited,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]  # not a traceback, not a crash at exit
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ktemplate")]
    assert len(errors) == 1 and "File too large" in errors[0], result.stderr[-3000:]
    (run_dir,) = (tmp_path / "tabular_mlp").iterdir()
    info = files.read_json(run_dir / "run.json")
    assert info["status"] == "failed" and "File too large" in info["reason"]
    assert [p.name for p in run_dir.rglob("*") if p.name.startswith(".partial")] == []


def test_a_disk_fault_while_training_is_one_line_and_the_status_says_it(
    tmp_path, monkeypatch, capsys
):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "best.keras")

    monkeypatch.setattr(training.BestCheckpoint, "on_epoch_end", full)
    argv = ["train", "image_cnn", "--set", "epochs=1", "--set", "members=1"]
    argv += ["--set", "conv_blocks=1", "--set", "filters=8"]
    argv += ["--set", "baseline=false", "--output-dir", str(tmp_path)]
    assert cli.main(argv) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ktemplate")]
    assert err == [line for line in err if "No space left on device" in line] and len(err) == 1
    (run_dir,) = (tmp_path / "image_cnn").iterdir()
    info = files.read_json(run_dir / "run.json")
    assert info["status"] == "failed" and "No space left on device" in info["reason"]
