"""Training under MultiWorkerMirroredStrategy: local worker processes on loopback ports."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from ktemplate.tuning import launch

from ktemplate import files
from tests.helpers.fresh import serve_in_fresh_process

TIMEOUT = 300
IMAGE = ["--set", "conv_blocks=1", "--set", "filters=8", "--set", "baseline=false"]
IMAGE += ["--set", "members=1"]  # one model: its history is the run folder's own


def _env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **extra}


def _train(*args):
    return [sys.executable, "-m", "ktemplate", "train", *args]


def _history(run_dir, phase="train"):
    path = run_dir / f"history_{phase}.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


FRESH_ACCURACY = textwrap.dedent(
    """
    import json, sys
    for name in ("ktemplate", "templates", "pipelines", "tuning"):
        sys.modules[name] = None
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits
    export_dir, index_path = sys.argv[1:3]
    test = json.load(open(index_path))
    digits = load_digits()
    pixels = np.round(digits.images[test][..., None] * (255.0 / 16.0)).astype("uint8")
    out = tf.saved_model.load(export_dir).signatures["serve"](pixels=tf.constant(pixels))
    correct = out["class_id"].numpy() == digits.target[test]
    print(json.dumps({"accuracy": float(correct.mean())}))
    """
)


def test_two_local_workers_write_one_run_folder_that_serves(tmp_path):
    from ktemplate.pipelines import images, splits

    out = tmp_path / "out"
    result = subprocess.run(
        _train("image_cnn", "--workers", "2", "--output-dir", str(out), "--set", "epochs=2")
        + IMAGE,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folders = [p for p in (out / "image_cnn").iterdir() if not p.name.endswith(".workers")]
    assert len(folders) == 1  # one run folder, whatever the number of workers
    run_dir = folders[0]
    run_info = files.read_json(run_dir / "run.json")
    assert run_info["status"] == "finished" and run_info["replicas"] == 2
    per_replica = files.read_json(run_dir / "config.json")["batch_size"]
    assert run_info["global_batch_size"] == 2 * per_replica  # the batch scales with replicas
    metrics = files.read_json(run_dir / "metrics.json")
    assert f"Run folder: {run_dir}" in result.stdout
    assert f"TensorBoard: tensorboard --logdir {run_dir}" in result.stdout
    log = (out / "image_cnn" / f"{run_dir.name}.workers" / "worker1.log").read_text()
    assert "worker1: done; the chief wrote the run folder" in log

    # The export, served in a fresh process on the test split, scores what metrics.json says.
    digits_labels = images.digits_arrays()[1]
    test = splits.stratified_split(digits_labels, images.SPLIT_FRACTIONS)["test"]
    (tmp_path / "test.json").write_text(json.dumps([int(i) for i in test]))
    served = serve_in_fresh_process(
        FRESH_ACCURACY, tmp_path, str(run_dir / "export"), str(tmp_path / "test.json")
    )
    assert served["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)


@pytest.mark.slow
def test_two_workers_train_the_time_series_template(tmp_path):
    run_dir = tmp_path / "run"
    ts = ["--set", "epochs=1", "--set", "units=8", "--set", "baseline=false"]
    result = subprocess.run(
        _train("timeseries_lstm", "--workers", "2", "--run-dir", str(run_dir), *ts),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert files.read_json(run_dir / "run.json")["status"] == "finished"
    assert (run_dir / "export" / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.workers"]


@pytest.mark.slow
def test_a_killed_worker_job_resumes_from_the_last_finished_epoch(tmp_path):
    run_dir = tmp_path / "run"
    # Small batches: an epoch is long enough to kill a worker in the middle of one.
    command = _train(
        "image_cnn",
        "--workers",
        "2",
        "--run-dir",
        str(run_dir),
        "--set",
        "epochs=6",
        "--set",
        "batch_size=4",
        "--set",
        "early_stopping_patience=0",
        *IMAGE,
    )
    job = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
    )
    worker_pid = None
    deadline = time.monotonic() + TIMEOUT
    try:
        for line in job.stdout:
            match = re.search(r"started worker1 \(pid (\d+)\)", line)
            if match:
                worker_pid = int(match.group(1))
                break
        assert worker_pid is not None
        while len(_history(run_dir)) < 2:  # two epochs finished and backed up
            assert job.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(worker_pid, signal.SIGKILL)
        job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0  # the launcher stopped the chief when a worker died
    done = len(_history(run_dir))
    assert 2 <= done < 6
    # The chief saw its peer fail (failed), or the launcher's SIGTERM stopped it between two
    # ops (interrupted) or inside a collective op it never returned from (still "training").
    assert files.read_json(run_dir / "run.json")["status"] in ("failed", "interrupted", "training")

    # The same command again: it continues the run folder from the last finished epoch.
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [int(row["epoch"]) for row in _history(run_dir)]
    assert epochs == list(range(6)), epochs  # no epoch trained twice, none skipped
    assert files.read_json(run_dir / "run.json")["status"] == "finished"
    assert files.read_json(run_dir / "metrics.json")["epochs"] == {"train": 6}


def test_a_worker_that_never_comes_up_is_a_clear_error_in_bounded_time(tmp_path):
    (config,) = launch.multi_worker_environments(2)[:1]  # worker 0 of 2; worker 1 never starts
    start = time.monotonic()
    result = subprocess.run(
        _train("image_cnn", "--strategy", "multi_worker", "--output-dir", str(tmp_path), *IMAGE),
        capture_output=True,
        text=True,
        env=_env(KTEMPLATE_CLUSTER_TIMEOUT="15", **config),
        timeout=TIMEOUT,
    )
    assert result.returncode != 0
    assert "did not come up within 15 s" in result.stderr
    assert time.monotonic() - start < 120
    assert not list(tmp_path.iterdir())  # nothing half-written
