"""The progress bar of a training run (rich): steps done of all, the last logged loss, time elapsed and
left. Disabled (every call a no-op) with `logging.progress=false` and on data-parallel ranks other than 0."""

from __future__ import annotations


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

    def set_loss(self, loss: float) -> None:
        if self.bar:
            self.bar.update(self.task, loss=f"loss {loss:.4f}")

    def close(self) -> None:
        if self.bar:
            self.bar.stop()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
