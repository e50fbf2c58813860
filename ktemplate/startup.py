"""TensorFlow's start-up noise, kept from users who did not ask for it.

Importing TensorFlow and finding its devices print banners to the process's stderr from C++,
before any Python logging is set up: absl's "All log messages before absl::InitializeLog()"
line, oneDNN's and the CPU feature guard's notes, and on a machine without an NVIDIA GPU
`failed call to cuInit: ... UNKNOWN ERROR (303)`, which reads like a failure. `import_quietly`
captures stderr at the file-descriptor level while that happens and prints back every line
that is not one of those, so a real error still shows. The cuInit line is dropped only when
the machine has no NVIDIA driver (`nvidia-smi` is absent); with one it is a real problem.

This module must not import TensorFlow at module level.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator

_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^[IW]\d{4} "),  # absl INFO and WARNING lines
    re.compile(r"^To enable the following instructions: "),  # the CPU feature guard's 2nd line
    re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"),  # LiteRT's note
    # tf.data's graphs name an attribute this TensorFlow's own op definition lacks (harmless).
    re.compile(r"^E\d{4} .*NodeDef mentions attribute use_unbounded_threadpool"),
    # oneDNN's note that an int64 op falls back to Eigen on CPUs without AVX-512 (harmless).
    re.compile(r"^E\d{4} .*oneDNN supports DT_INT64 only on platforms with AVX-512"),
)
_CUINIT = re.compile(r"^E\d{4} .*failed call to cuInit")


def is_noise(line: str, has_nvidia_driver: bool) -> bool:
    if any(pattern.search(line) for pattern in _NOISE):
        return True
    return not has_nvidia_driver and bool(_CUINIT.search(line))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Captures the process's stderr (file descriptor 2, where TensorFlow's C++ logs go) while
    the block runs, then prints back every line that is not start-up noise (`is_noise`).
    With KTEMPLATE_VERBOSE=1 it does nothing."""
    if os.environ.get("KTEMPLATE_VERBOSE") == "1":
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            driver = shutil.which("nvidia-smi") is not None
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not is_noise(line, driver):
                    print(line, file=sys.stderr)


def import_quietly() -> None:
    """Imports TensorFlow and lists its devices with the start-up banners filtered out."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()


_FILTER: dict = {}  # the installed process-wide filter: {"real": fd, "thread": Thread}


def filter_process_stderr() -> None:
    """From now on, routes file descriptor 2 through a pipe whose reader forwards every line
    that is not noise (`is_noise`) to the real stderr: TensorFlow's C++ logs a NodeDef line
    whenever a tf.data graph is built, long after start-up. The CLI installs it when it runs as
    a program (not for in-process callers); the pipe is drained and closed at exit, after
    Python has printed any traceback. With KTEMPLATE_VERBOSE=1 it does nothing."""
    if os.environ.get("KTEMPLATE_VERBOSE") == "1" or _FILTER:
        return
    import atexit
    import threading

    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    real = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    driver = shutil.which("nvidia-smi") is not None

    def forward() -> None:
        with os.fdopen(read_fd, "rb") as lines:
            for line in lines:
                if not is_noise(line.decode("utf-8", "replace").rstrip("\n"), driver):
                    os.write(real, line)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    _FILTER.update(real=real, thread=thread)
    atexit.register(_restore_stderr)


def real_stderr() -> int | None:
    """The process's own stderr behind the filter (a file descriptor), for a helper process
    whose last words must not wait on this one (e.g. a watchdog that then kills it); None
    when no filter is installed (the helper inherits stderr as usual)."""
    return _FILTER.get("real")


def _restore_stderr() -> None:
    """Points fd 2 back at the real stderr (closing the pipe) and lets the reader finish."""
    if not _FILTER:
        return
    sys.stderr.flush()
    os.dup2(_FILTER["real"], 2)  # the pipe's last writer goes: the reader reads to its end
    _FILTER["thread"].join(timeout=5)  # a child process may still hold the pipe open
