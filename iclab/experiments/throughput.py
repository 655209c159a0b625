"""The one step-throughput timer: wall and process CPU seconds of training steps of a built Trainer.

`iclab bench` (iclab/bench.py) and the speed claims of `iclab reproduce` (iclab/reproduce/throughput.py)
time steps with it. The timed loop reads nothing from the device; after the last step the loss is read
once and, on CUDA, the device is synchronized before and after, so queued work is included. The runs of
many-run experiments log their own steps/s (metrics.jsonl), read by iclab/experiments/metrics.py.
Beside it: the measured matmul peak (`measure_peak`, the denominator of MFU) and peak memory (`MemoryMeter`).
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

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


def measure_peak(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 3) -> float:
    """Matmul FLOP/s of an n x n x n matmul in `dtype` (median of `reps` after one warm-up)."""
    return peak_flops(device, dtype, n, reps)[0]


def peak_flops(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 3) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per second of process CPU time)."""
    n = n or (2048 if device.type == "cpu" else 8192)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    wall, cpu = [], []
    inner = 1 if device.type == "cpu" else 20
    for _ in range(reps):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(inner):
            a @ b
        sync(device)
        wall.append((time.perf_counter() - t0) / inner)
        cpu.append((time.process_time() - c0) / inner)
    return 2 * n**3 / statistics.median(wall), 2 * n**3 / max(statistics.median(cpu), 1e-9)


class MemoryMeter:
    """Peak memory of a stretch of work: CUDA allocator peak, or the process RSS high-water mark."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = (
            "cuda_max_memory_allocated"
            if device.type == "cuda"
            else ("rss_hwm_reset" if self._can_reset() else "ru_maxrss_process_lifetime")
        )
        self.base = 0

    @staticmethod
    def _can_reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return _vm_hwm() is not None
        except OSError:
            return False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.kind == "rss_hwm_reset":
            _malloc_trim()  # hand memory freed by earlier work back to the OS, so the RSS starts low
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.base = _vm_hwm()
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        if self.kind == "rss_hwm_reset":
            return _vm_hwm()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _vm_hwm() -> int | None:
    try:
        m = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{os.cpu_count()}cores"
