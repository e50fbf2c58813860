"""SIGTERM, which schedulers and `kill` send before killing, handled like Ctrl-C.

Inside `sigterm_as_interrupt()` a SIGTERM raises `Terminated`, a `KeyboardInterrupt`, so a run
stops the way Ctrl-C stops it: the epoch's backup is kept, run.json says `interrupted`, and
`--resume` (or the same tune command) continues. The CLI then exits with 143 (128 + SIGTERM).

Inside `deferred()` (a checkpoint or backup being written) Ctrl-C and SIGTERM wait for the end
of the block, so an interrupt never leaves a half-written file for `--resume` to trip on.

This module must not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT
EXIT_TERMINATED = 143  # SIGTERM: 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


received = False  # set by the handler: a Terminated swallowed by a finalizer is raised again


def _raise_terminated(signum, frame):
    global received
    received = True
    raise Terminated()


def raise_if_received() -> None:
    """Raises `Terminated` when a SIGTERM arrived (Python drops an exception raised while a
    finalizer runs, so the handler's own may have been lost)."""
    if received:
        raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread for the `with` block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive inside the block are raised when it ends.

    Only handlers that raise (Python's Ctrl-C handler, `sigterm_as_interrupt`'s) are deferred;
    any other handler, or a block outside the main thread, is left as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def remember(signum, frame):
        pending.append(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler in (signal.default_int_handler, _raise_terminated):
            previous[signum] = signal.signal(signum, remember)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if pending:
        previous[pending[0]](pending[0], None)  # raises KeyboardInterrupt or Terminated


def exit_code(interrupt: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


def describe(interrupt: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
