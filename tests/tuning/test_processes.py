"""Sweeps across processes: Mirrored on two logical CPUs, kill and resume, chief + workers."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from ktemplate.tuning import launch, report, strategies

from ktemplate import cli, files

TINY = ["--max-epochs", "1", "--set", "filters=8", "--set", "dense_units=16", "--set", "members=1"]
TIMEOUT = 300


def _tune(out, *extra):
    return [sys.executable, "-m", "ktemplate", "tune", "image_cnn", "--output-dir", str(out)] + [
        *TINY,
        *extra,
    ]


def _runs(path):
    return files.read_json(path)["runs"]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def test_sweep_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    argv = ["tune", "image_cnn", "--output-dir", str(tmp_path), "--strategy", "mirrored"]
    argv += ["--max-trials", "2", *TINY]
    script = textwrap.dedent(
        """
        from ktemplate.tuning import strategies
        strategies.split_cpu(2)  # before TensorFlow initializes its devices
        from ktemplate import cli
        raise SystemExit(cli.main(ARGV))
        """
    ).replace("ARGV", repr(argv))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "image_cnn" / "sweeps" / "random"
    sweep = files.read_json(folder / "sweep.json")
    assert sweep["strategy"] == "MirroredStrategy" and sweep["replicas"] == 2
    assert [r["status"] for r in report.trials(folder)] == ["COMPLETED"] * 2
    manifest = files.read_json(folder / "champion" / "export" / "manifest.json")
    assert manifest["replicas"] == 2
    assert manifest["global_batch_size"] == 2 * manifest["config"]["batch_size"]


def _completed(folder) -> int:
    return (
        sum(r["status"] == "COMPLETED" for r in report.trials(folder))
        if (folder / "sweep.json").exists()
        else 0
    )


@pytest.mark.slow
def test_killed_sweep_resumes_without_rerunning_completed_trials(tmp_path):
    folder = tmp_path / "image_cnn" / "sweeps" / "random"
    command = _tune(tmp_path, "--max-trials", "3", "--no-champion")
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    deadline = time.monotonic() + TIMEOUT
    while _completed(folder) < 1:  # kill it once the first trial is done
        assert process.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {r["trial"] for r in report.trials(folder) if r["status"] == "COMPLETED"}
    assert 1 <= len(done_before) < 3

    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = report.trials(folder)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3
    for row in rows:
        if row["trial"] in done_before:
            assert row["runs"] == 1, f"trial {row['trial']} ran again after the resume"


def test_chief_and_two_workers_run_every_trial_exactly_once(tmp_path):
    # Each worker process runs at most 2 trials, then a fresh process takes its place.
    result = subprocess.run(
        _tune(
            tmp_path,
            "--max-trials",
            "4",
            "--workers",
            "2",
            "--trials-per-process",
            "2",
            "--no-champion",
        ),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT,
    )
    logs = tmp_path / "image_cnn" / "sweeps" / "random-processes"
    assert result.returncode == 0, result.stderr[-2000:] + (logs / "chief.log").read_text()[-2000:]
    folder = tmp_path / "image_cnn" / "sweeps" / "random"
    rows = report.trials(folder)
    assert len(rows) == 4 and len({r["trial"] for r in rows}) == 4
    assert all(r["status"] == "COMPLETED" and r["runs"] == 1 for r in rows)
    assert {r["ran_by"] for r in rows} <= {"tuner0", "tuner1"}  # workers ran them, not the chief
    assert (folder / "leaderboard.md").read_text().count("| COMPLETED |") == 4
    assert sorted(p.name for p in logs.iterdir()) == ["chief.log", "worker0.log", "worker1.log"]
    pids = [run["pid"] for p in (folder / "trials").glob("*.json") for run in _runs(p)]
    assert max(pids.count(pid) for pid in pids) <= 2
    assert result.stdout.count("restarted worker") >= 1


def test_ctrl_c_on_the_launcher_stops_the_chief_and_workers(tmp_path):
    launcher = subprocess.Popen(
        _tune(tmp_path, "--max-trials", "50", "--workers", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    pids = []
    for line in launcher.stdout:  # "started worker1 (pid 123), log: ..."
        if line.startswith("started "):
            pids.append(int(line.split("(pid ")[1].split(")")[0]))
        if len(pids) == 3:
            break
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=60) == 130
    assert "Interrupted: stopping the chief and workers" in launcher.stderr.read()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_launcher_stops_everything_when_a_process_fails(tmp_path, capsys):
    code = launch.run_local(["tune", "no_such_template"], workers=2, log_dir=tmp_path)
    assert code == 1
    err = capsys.readouterr().err
    assert "chief exited with code 2" in err and "Unknown template" in err


def test_role_and_oracle_checks(capsys):
    assert launch.role_environment("worker", "127.0.0.1:8000", "1") == {
        "KERASTUNER_TUNER_ID": "tuner1",
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": "8000",
    }
    assert launch.role_environment("chief", "127.0.0.1:8000", None)["KERASTUNER_TUNER_ID"] == (
        "chief"
    )
    with pytest.raises(ValueError, match="HOST:PORT"):
        launch.parse_oracle("localhost")
    with pytest.raises(ValueError, match="--worker-id"):
        launch.role_environment("worker", "127.0.0.1:8000", None)
    assert cli.main(["tune", "image_cnn", "--role", "worker"]) == 2
    assert "--oracle HOST:PORT" in capsys.readouterr().err
    assert cli.main(["tune", "image_cnn", "--trials-per-process", "3"]) == 2
    assert "add --workers N" in capsys.readouterr().err
    assert cli.main(["tune", "image_cnn", "--workers", "2", "--trials-per-process", "0"]) == 2
    assert "--trials-per-process must be at least 1" in capsys.readouterr().err


def test_tpu_strategy_without_a_tpu_fails_clearly(tmp_path, capsys):
    with pytest.raises(strategies.StrategyError, match="no TPU could be reached"):
        strategies.make_strategy("tpu")
    code = cli.main(
        [
            "train",
            "image_cnn",
            "--strategy",
            "tpu",
            "--output-dir",
            str(tmp_path),
            "--set",
            "epochs=1",
        ]
    )
    assert code == 2 and "no TPU could be reached" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_multi_worker_strategy_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(strategies.StrategyError, match="TF_CONFIG"):
        strategies.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(strategies.StrategyError, match="not valid JSON"):
        strategies.make_strategy("multi_worker")


def test_auto_strategy_on_a_cpu_machine_is_the_default_one():
    import tensorflow as tf

    strategy = strategies.make_strategy("auto")
    assert strategy.num_replicas_in_sync == 1
    assert strategy is tf.distribute.get_strategy()
