"""Picks the `tf.distribute` strategy that trials and plain training run under.

    auto          TPU when a TPU cluster resolves, Mirrored when more than one GPU is visible,
                  otherwise the default strategy
    default       no distribution (whatever device TensorFlow places ops on)
    one_device    everything on one device: the first GPU, else the CPU
    mirrored      synchronous data parallelism over the visible GPUs (or logical CPU devices)
    multi_worker  synchronous data parallelism over machines, configured by `TF_CONFIG`
    tpu           a TPU (Cloud TPU VM, Colab, or `TPU_NAME`)

The config's `batch_size` is per replica: the global batch is `batch_size * replicas`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import tensorflow as tf
from ktemplate.tuning import STRATEGIES


class StrategyError(ValueError):
    """The requested strategy cannot run on this machine."""


def _tpu_resolver() -> tf.distribute.cluster_resolver.TPUClusterResolver:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise StrategyError(
            f"--strategy tpu: no TPU could be reached ({str(e).splitlines()[0]}). Run on a "
            "TPU VM or set TPU_NAME, or pick --strategy auto/default/mirrored."
        ) from None
    return resolver


def _tpu_likely() -> bool:
    """A cheap check before trying the resolver, which may wait on a metadata server."""
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")) or any(
        name.startswith("accel") for name in _dev_entries()
    )


def _dev_entries() -> list[str]:
    try:
        return os.listdir("/dev")
    except OSError:
        return []


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Returns the strategy called `name` (one of `STRATEGIES`).

    Raises:
        StrategyError: the strategy needs hardware or a cluster this machine does not have.
    """
    if name not in STRATEGIES:
        raise StrategyError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
    if name == "auto":
        if _tpu_likely():
            try:
                return make_strategy("tpu")
            except StrategyError:
                pass
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        # Without GPUs, mirror over the logical CPU devices (one unless the CPU was split).
        devices = [d.name for d in gpus] or [d.name for d in cpus]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise StrategyError(
                "--strategy multi_worker needs TF_CONFIG describing the cluster and this "
                'worker, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise StrategyError(f"TF_CONFIG is not valid JSON: {e}.") from None
        from ktemplate import compat

        compat.keras_multi_worker_fit()
        return _multi_worker(float(os.environ.get("KTEMPLATE_CLUSTER_TIMEOUT", "300")))
    return tf.distribute.TPUStrategy(_tpu_resolver())


_WATCHDOG = """
import os, signal, sys, time
pid, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(timeout)
sys.stderr.write(message)
sys.stderr.flush()
os.kill(pid, signal.SIGKILL)
"""


def _multi_worker(timeout: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy, once every worker of TF_CONFIG has joined.

    TensorFlow waits for missing workers without a limit, inside a call that holds Python's
    lock, so no thread or signal handler of this process can stop it. A watchdog process ends
    this one with a clear error when the cluster is not complete after `timeout` seconds
    (`KTEMPLATE_CLUSTER_TIMEOUT`, default 300). One all-reduce proves every worker is there.
    """
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    message = (
        f"ktemplate: error: the multi-worker cluster did not come up within {timeout:.0f} s "
        f"(TF_CONFIG cluster {json.dumps(cluster)}): a worker is not running or cannot be "
        "reached at its address. Start every worker with the same cluster and its own task "
        "index (or use --workers N on one machine); KTEMPLATE_CLUSTER_TIMEOUT sets the wait.\n"
    )
    from ktemplate import startup

    watchdog = subprocess.Popen(  # it writes past the stderr filter: it kills this process
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout), message],
        stderr=startup.real_stderr(),
    )
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        strategy.reduce(
            tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None
        )
    finally:
        watchdog.kill()
        watchdog.wait()
    return strategy


def split_cpu(count: int) -> None:
    """Splits the CPU into `count` logical devices, so Mirrored runs on a GPU-less machine.

    Must run before TensorFlow initializes its devices (before any op runs).
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def describe(strategy: tf.distribute.Strategy) -> dict:
    """What the manifest and sweep record about a strategy."""
    return {
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
    }
