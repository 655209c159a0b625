"""What a run logs while it trains: the log window, the training clock and the writers.

- `LogWindow`: the log interval in progress, kept on the device (the sum of the finite losses, their
  count, and the number of steps), so the step never syncs with the host; read at a log step only, and
  stored in checkpoints so a resumed run logs the interval that the interruption cut in two as one.
- `TrainClock`: `train_seconds` (time spent in training steps only: no logging, evaluation or checkpoints;
  a resumed run continues from the last logged value at or before its checkpoint, so checkpoints stay bit
  for bit reproducible) and `steps_per_s` (steps over wall time since the previous log).
- `MetricsWriter`: metrics.jsonl (always; on resume, the records after the checkpoint are dropped),
  TensorBoard and W&B (optional). Ranks other than 0 get a `NullWriter`.

metrics.jsonl is read back with `iclab.files.read_jsonl`, which skips a line torn by a crash.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from time import perf_counter

import torch

from iclab.config import Config, LoggingConfig
from iclab.files import atomic_write, read_jsonl
from iclab.training.device import TrainingError

METRICS = "metrics.jsonl"
EMPTY_WINDOW = {"loss_sum": 0.0, "n_ok": 0, "n": 0}  # the window state of a run at step 0 / after a log


class LogWindow:
    """The log interval in progress, on the device; `state()` (a host sync) is what a checkpoint stores."""

    def __init__(self, state: dict, device: torch.device):
        self.loss_sum = torch.full((), float(state["loss_sum"]), device=device)
        self.n_ok = torch.full((), int(state["n_ok"]), dtype=torch.long, device=device)
        self.n = int(state["n"])

    def add(self, loss: torch.Tensor, ok: torch.Tensor) -> None:
        """One step: its loss counts if it was finite (`ok`, a device bool); no host sync."""
        self.loss_sum = self.loss_sum + torch.where(ok, loss, torch.zeros_like(loss))
        self.n_ok = self.n_ok + ok.long()
        self.n += 1

    def mean_loss(self) -> float:
        n = int(self.n_ok)
        return float(self.loss_sum) / n if n else float("nan")

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.n_ok.zero_()
        self.n = 0

    def state(self) -> dict:
        return {"loss_sum": float(self.loss_sum), "n_ok": int(self.n_ok), "n": self.n}


class TrainClock:
    """Time in training steps (`train_seconds`, paused around logging and checkpoints) and steps per second
    between two logs."""

    def __init__(self, train_seconds: float = 0.0):
        self.train_seconds = train_seconds
        self.n_since_log = 0
        self.t_log = perf_counter()
        self.t_mark = self.t_log

    def resume(self) -> None:
        """Steps run from here on count as training time."""
        self.t_mark = perf_counter()

    def pause(self) -> None:
        self.train_seconds += perf_counter() - self.t_mark

    def tick(self) -> None:
        self.n_since_log += 1

    def steps_per_s(self) -> float:
        """Steps per second since the previous call (or the clock's start); restarts the count."""
        now = perf_counter()
        rate = self.n_since_log / max(now - self.t_log, 1e-9)
        self.n_since_log, self.t_log = 0, now
        return rate


def _step_of(rec: dict) -> int | None:
    try:
        return int(rec["step"])
    except (ValueError, KeyError, TypeError):
        return None


def logged_train_seconds(run_dir: Path, step: int) -> float:
    """train_seconds of the last metrics.jsonl record at or before `step` (0 if none): the clock a resumed run
    continues (a checkpoint between log steps loses the time since the last log)."""
    secs = 0.0
    for rec in read_jsonl(Path(run_dir) / METRICS):
        s = _step_of(rec)
        if s is not None and s <= step:
            secs = float(rec.get("train_seconds", secs))
    return secs


def check_backends(logging: LoggingConfig) -> None:
    """Refuse at start-up a logging backend that is asked for but not installed."""
    if logging.wandb and importlib.util.find_spec("wandb") is None:
        raise TrainingError("logging.wandb=true but wandb is not installed (pip install 'iclab[wandb]')")


class MetricsWriter:
    """metrics.jsonl (always), TensorBoard and W&B (optional); a context manager that closes them all."""

    def __init__(self, run_dir: Path, cfg: Config, start_step: int):
        self.path = Path(run_dir) / METRICS
        if self.path.exists():  # on resume, forget what was logged after the checkpoint (and any half-written line)
            kept = [rec for rec in read_jsonl(self.path) if (s := _step_of(rec)) is not None and s <= start_step]
            atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in kept)))
        self.f = open(self.path, "a")
        self.tb = None
        if cfg.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step or None)
        self.wandb = None
        if cfg.logging.wandb:
            try:
                import wandb
            except ImportError:
                raise TrainingError(
                    "logging.wandb=true but wandb is not installed (pip install 'iclab[wandb]')"
                ) from None
            self.wandb = wandb.init(
                project=cfg.logging.wandb_project, config=cfg.model_dump(mode="json"), dir=str(run_dir)
            )

    def log(self, rec: dict) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        for k, v in rec.items():
            if k != "step" and self.tb is not None and isinstance(v, (int, float)) and math.isfinite(v):
                self.tb.add_scalar(k, v, rec["step"])
        if self.wandb is not None:
            self.wandb.log(rec, step=rec["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullWriter:
    """The metrics writer of data-parallel ranks other than 0: writes nothing."""

    def log(self, rec: dict) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def open_writer(run_dir: Path, cfg: Config, start_step: int, main: bool) -> MetricsWriter | NullWriter:
    """The writer of this process: the real one on rank 0, a `NullWriter` elsewhere."""
    return MetricsWriter(run_dir, cfg, start_step) if main else NullWriter()
