"""Training steps per second of several configs, timed back to back in one process (rounds interleave
the configs, so a change in the machine's load hits them alike). Used where a claim is about speed."""

from __future__ import annotations

import statistics
import tempfile

import torch

from iclab.config import Config
from iclab.experiments.throughput import time_steps


def steps_per_s(cfgs: list[Config], steps: int = 5, rounds: int = 3, warmup: int = 2, threads: int = 1) -> list[float]:
    """Median steps/s of each config at its last training step's curriculum (full dims, points, loops)."""
    return [statistics.median(r) for r in steps_per_s_rounds(cfgs, steps, rounds, warmup, threads)]


def steps_per_s_rounds(
    cfgs: list[Config], steps: int = 5, rounds: int = 3, warmup: int = 2, threads: int = 1
) -> list[list[float]]:
    """Steps/s of each config in each round (config i's list, one value per round; round r of every config
    timed back to back, so the rounds pair the configs)."""
    from iclab.training.trainer import Trainer

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        trainers = []
        for cfg in cfgs:
            t = Trainer(cfg, tempfile.mkdtemp(prefix="iclab-throughput-"))
            trainers.append(t)
            for _ in range(warmup):
                t.train_step(cfg.training.steps - 1)
        rates = [[] for _ in trainers]
        for _ in range(rounds):
            for i, t in enumerate(trainers):
                wall, _ = time_steps(t, [t.cfg.training.steps - 1] * steps)
                rates[i].append(steps / wall)
        return rates
    finally:
        torch.set_num_threads(old)
