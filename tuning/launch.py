"""Runs a sweep's trials in several processes with keras-tuner's own chief/worker oracle.

keras-tuner's distributed mode: one chief process serves the oracle over gRPC; each worker
asks it for a trial, runs it and reports back. A process learns its role from three variables:

    KERASTUNER_TUNER_ID      "chief", or a unique worker id such as "tuner0"
    KERASTUNER_ORACLE_IP     the chief's address
    KERASTUNER_ORACLE_PORT   the chief's port

`ktemplate tune NAME --workers N` starts the chief and N workers on this machine (loopback),
one GPU per worker when there are GPUs; `--role chief|worker --oracle HOST:PORT` runs one
process of a cluster (see README for a SLURM example). No TensorFlow is imported here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# A worker's exit code after its --trials-per-process trials: start a fresh one in its place.
RECYCLE_EXIT = 75


def parse_oracle(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--oracle expects HOST:PORT (e.g. 10.0.0.5:8000), got {address!r}.")
    return host, int(port)


def role_environment(role: str, oracle: str, worker_id: str | None) -> dict[str, str]:
    """The keras-tuner variables for a chief or a worker process."""
    host, port = parse_oracle(oracle)
    if role == "chief":
        tuner_id = "chief"
    else:
        if not worker_id:
            raise ValueError("--role worker needs --worker-id (unique per worker, e.g. 0, 1).")
        tuner_id = worker_id if worker_id.startswith("tuner") else f"tuner{worker_id}"
    return {
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": host,
        "KERASTUNER_ORACLE_PORT": str(port),
    }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def gpu_count() -> int:
    """GPUs `nvidia-smi` lists (0 without NVIDIA drivers), honouring CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return  # the chief exited early; the caller reports its log
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.5)


def _stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def run_local(tune_argv: list[str], workers: int, log_dir: Path) -> int:
    """Runs `ktemplate tune` as a chief plus `workers` worker processes on this machine.

    `tune_argv` is the tune command line without `--workers`. Each process logs to
    `log_dir/<role>.log`. Returns the chief's exit code; when any process fails, or on
    Ctrl-C, all of them are stopped. A worker that exits with `RECYCLE_EXIT` (it ran its
    `--trials-per-process`) is replaced by a fresh process while the chief runs.
    """
    host, port = "127.0.0.1", free_port()
    oracle = f"{host}:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    gpus = gpu_count()
    command = [sys.executable, "-m", "ktemplate", *tune_argv]
    processes: list[subprocess.Popen] = []
    logs: list[Path] = []
    launches: list[tuple[str, list[str], dict[str, str]]] = []

    def start(role: str, extra: list[str], env_extra: dict[str, str], slot: int | None = None):
        name = "chief" if role == "chief" else f"worker{extra[-1]}"
        log = log_dir / f"{name}.log"
        env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
        with open(log, "a" if slot is not None else "w") as f:
            process = subprocess.Popen(
                [*command, "--role", role, "--oracle", oracle, *extra],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if slot is None:
            processes.append(process)
            logs.append(log)
            launches.append((role, extra, env_extra))
        else:
            processes[slot] = process
        verb = "restarted" if slot is not None else "started"
        print(f"{verb} {name} (pid {process.pid}), log: {log}", flush=True)

    try:
        start("chief", [], {})
        _wait_for_port(host, port, processes[0], timeout=300)
        for i in range(workers if processes[0].poll() is None else 0):
            # One GPU per worker when there are GPUs; the chief only serves the oracle.
            env = {"CUDA_VISIBLE_DEVICES": str(i % gpus)} if gpus else {}
            start("worker", ["--worker-id", str(i)], env)
        while True:
            codes = [p.poll() for p in processes]
            for i, code in enumerate(codes):
                if i > 0 and code == RECYCLE_EXIT and codes[0] is None:
                    start(*launches[i], slot=i)  # a fresh process for the next trials
                    codes[i] = None
            failed = [i for i, c in enumerate(codes) if c not in (None, 0, RECYCLE_EXIT)]
            if failed:
                i = failed[0]
                print(
                    f"ktemplate: error: {logs[i].stem} exited with code {codes[i]}; "
                    f"stopping the others. End of {logs[i]}:\n{_tail(logs[i])}",
                    file=sys.stderr,
                )
                _stop(processes)
                return 1
            if codes[0] == 0:
                _stop(processes[1:])  # workers exit by themselves once the oracle stops
                return 0
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nInterrupted: stopping the chief and workers.", file=sys.stderr)
        _stop(processes)
        return 130


def multi_worker_environments(workers: int, host: str = "127.0.0.1") -> list[dict[str, str]]:
    """One `TF_CONFIG` per worker for a cluster of `workers` processes on free local ports."""
    addresses = [f"{host}:{free_port(host)}" for _ in range(workers)]
    return [
        {
            "TF_CONFIG": json.dumps(
                {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
            )
        }
        for i in range(workers)
    ]


def run_training_workers(train_argv: list[str], workers: int, run_dir: Path) -> int:
    """Runs `ktemplate train` as `workers` MultiWorkerMirroredStrategy processes here.

    `train_argv` is the train command line without `--workers`/`--strategy`/`--run-dir`. Every
    process gets a generated loopback `TF_CONFIG` and the same `--run-dir`, which only worker 0
    (the chief) writes; its output goes to this terminal, the others' to
    `<run_dir>.workers/worker<i>.log`. When any process fails, or on Ctrl-C, all are stopped.
    Returns the chief's exit code (1 when another worker failed).
    """
    log_dir = run_dir.parent / f"{run_dir.name}.workers"
    log_dir.mkdir(parents=True, exist_ok=True)
    gpus = gpu_count()
    command = [
        sys.executable,
        "-m",
        "ktemplate",
        *train_argv,
        "--strategy",
        "multi_worker",
        "--run-dir",
        str(run_dir),
    ]
    processes: list[subprocess.Popen] = []
    logs: list[Path | None] = []
    try:
        for i, env_extra in enumerate(multi_worker_environments(workers)):
            env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
            if i == 0:
                processes.append(subprocess.Popen(command, env=env))
                logs.append(None)
                continue
            log = log_dir / f"worker{i}.log"
            with open(log, "w") as f:
                processes.append(
                    subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env)
                )
            logs.append(log)
            print(f"started worker{i} (pid {processes[-1].pid}), log: {log}", flush=True)
        while True:
            codes = [p.poll() for p in processes]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i = failed[0]
                tail = f" End of {logs[i]}:\n{_tail(logs[i])}" if logs[i] else ""
                print(
                    f"ktemplate: error: worker{i} exited with code {codes[i]}; stopping the "
                    f"others.{tail}",
                    file=sys.stderr,
                )
                _stop(processes)
                return codes[0] if i == 0 else 1
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nInterrupted: stopping the workers.", file=sys.stderr)
        _stop(processes)
        return 130
