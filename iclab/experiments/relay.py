"""Passing this process's SIGTERM on to a backend's workers (the local and pool backends).

While a `SigtermRelay` is entered in the main thread (where signal handlers live), SIGTERM calls its
`_on_sigterm`, which each backend fills in (signal its worker processes, stop the queue); the previous
handler is restored on exit. Entered in another thread it does nothing: Python allows handlers only there.
"""

from __future__ import annotations

import signal
import threading


class SigtermRelay:
    _old = None

    def _on_sigterm(self, signum, frame) -> None:
        raise NotImplementedError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
