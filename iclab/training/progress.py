"""The progress bar of a training run (rich): steps done of all, the last logged loss, time elapsed and
left. Disabled (every call a no-op) with `logging.progress=false` and on data-parallel ranks other than 0."""

from __future__ import annotations

import math


def loss_text(loss: float, nats: bool = False) -> str:
    """The loss as the bar shows it: a cross-entropy with its units (nats, and bits per token as eval.json)."""
    if nats:
        return f"loss {loss:.4f} nats = {loss / math.log(2):.4f} bits per token"
    return f"loss {loss:.4f}"


class ProgressBar:
    """A context manager; `advance()` after each step, `set_loss()` at each log."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.bar = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task("train", total=total, completed=done, loss="")
            self.bar.start()

    def advance(self) -> None:
        if self.bar:
            self.bar.advance(self.task)

    def set_loss(self, loss: float, nats: bool = False) -> None:
        """`nats`: a cross-entropy (token workloads), shown in nats and in bits per token."""
        if self.bar:
            self.bar.update(self.task, loss=loss_text(loss, nats))

    def close(self) -> None:
        if self.bar:
            self.bar.stop()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
