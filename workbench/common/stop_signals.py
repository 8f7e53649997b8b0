"""Ctrl-C and SIGTERM during training: note the request, let the current step finish, then save and stop."""
from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType


class StopRequests:
    """While active, SIGINT and SIGTERM set `signal_name` instead of killing the process; a second Ctrl-C
    raises KeyboardInterrupt at once (quit without saving). Previous handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if number == signal.SIGINT and self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(number).name

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def ignore_interrupts(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: workers ignore SIGINT, so that Ctrl-C (sent to the whole foreground process
    group) reaches only the main process, which finishes the step, saves and stops its workers. SIGTERM keeps its
    default: the DataLoader and multiprocessing end their workers with it, so stop a run with SIGTERM to the main
    process (`kill PID`), not to every process of the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
