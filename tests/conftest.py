import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# A suite started in the background (`nohup ... &`) inherits Ctrl-C ignored, and Python then
# installs no KeyboardInterrupt handler; the interruption tests need the usual one.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest  # noqa: E402

# The suite runs in two processes, a test file whole in one (pyproject.toml's `--dist loadfile`),
# files handed out in collection order: the longest start first, so none starts last alone.
LONGEST_FIRST = (
    "tests/readme/test_cli_image_cnn.py",
    "tests/readme/test_cli_other_templates.py",
    "tests/templates/test_text_transformer.py",
    "tests/ktemplate/test_check.py",
    "tests/test_copies.py",
    "tests/ktemplate/test_reliability.py",
    "tests/ktemplate/test_convert.py",
    "tests/tuning/test_processes.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.fixture(autouse=True)
def _float32_policy():
    """Tests that switch to mixed precision must not leak the global policy into others."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


@pytest.fixture
def online(monkeypatch):
    """Points the network probe at a listening loopback socket: 'the internet is reachable'."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    monkeypatch.setenv("KTEMPLATE_NETWORK_PROBE", f"127.0.0.1:{server.getsockname()[1]}")
    yield
    server.close()
