"""The one step-throughput timer: wall and process CPU seconds of training steps of a built Trainer.

`iclab bench` (iclab/bench.py) and the speed claims of `iclab reproduce` (iclab/reproduce/throughput.py)
time steps with it. The timed loop reads nothing from the device; after the last step the loss is read
once and, on CUDA, the device is synchronized before and after, so queued work is included. The runs of
many-run experiments log their own steps/s (metrics.jsonl), read by iclab/experiments/metrics.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer, steps: Iterable[int]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of `trainer.train_step(s)` for each s in `steps`."""
    sync(trainer.device)
    t0, c0 = time.perf_counter(), time.process_time()
    loss = None
    for s in steps:
        loss, _ = trainer.train_step(s)
    if loss is not None:
        loss.item()  # one host read after the timed steps: the queued work is finished
    sync(trainer.device)
    return time.perf_counter() - t0, time.process_time() - c0
