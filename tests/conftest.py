import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# A suite started in the background (`nohup ... &`) inherits Ctrl-C ignored, and Python then
# installs no KeyboardInterrupt handler; the interruption tests need the usual one.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest  # noqa: E402


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
