"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (what a cluster scheduler sends).

While `StopSignals` is entered, either signal only sets `requested`: the trainer finishes the current step,
saves a checkpoint and raises `Interrupted` (data parallel: the ranks agree on stopping at the next log or
checkpoint step). A second Ctrl-C in a single process stops at once (checkpoints are written atomically, so
nothing is damaged). The previous handlers are restored on exit.
"""

from __future__ import annotations

import signal
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM during training: a checkpoint was saved at `step` into `path`."""

    def __init__(self, step: int, path: Path):
        super().__init__(f"interrupted at step {step}; checkpoint saved to {path}")
        self.step, self.path = step, path


class StopSignals:
    """Context manager: SIGINT/SIGTERM set `requested` instead of ending the process."""

    def __init__(self, parallel: bool = False):
        self.parallel = parallel  # torchrun forwards the terminal's SIGINT too: never stop a rank at once
        self.requested = False
        self._old: dict = {}

    def _on_signal(self, signum, frame) -> None:
        if self.requested and not self.parallel:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopSignals:
        self._old = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
