"""The workload interface: what the trainer trains (cf. AlgoPerf's workloads).

A workload turns a config into: the model it needs (a head around the shared trunk), the batch of
training step s (a pure function of (seed, s), made on the model's device), the loss of a batch, the
metrics logged at log steps beside the loss, and the evaluation after training. The trainer knows
nothing of (x, y) prompts or tokens; it calls these methods, and the optimizer never sees inside.

    family      regression     (iclab/workloads/regression: in-context learning of function classes)
                sequence       (iclab/workloads/sequence: language modelling, sorting, modular arithmetic,
                                multiple choice)
                classification (iclab/workloads/classification: a network on a fixed dataset)

The registry `TASKS` maps every `task.name` to a Workload class (regression: one per function class of
`FUNCTIONS`); `iclab.workloads.make_workload` builds it. Callers (runs, the CLI) never branch on the
family: they call `evaluate` with the options the workload lists in `eval_options` and print `summary`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from iclab.errors import IclabError
from iclab.evaluation import EvalError


def step_generator(seed: int, step: int, device) -> torch.Generator:
    """The random generator of training step `step`: seeded from (seed, step) alone, so the data of a
    step does not depend on what ran before (resume needs no data-RNG state)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


class ShardError(IclabError, ValueError):
    """A batch that cannot be split over data-parallel ranks (the message says how to fix the batch size)."""


def shard_batch(batch, rank: int, world: int, even: bool = True):
    """Rank `rank`'s contiguous 1/world of a batch: a tensor, or a tuple/list of batch-first tensors. `even=False`
    allows rows that do not divide (the first rows % world ranks get one more; the caller weights the loss)."""
    if isinstance(batch, torch.Tensor):
        rows = batch.shape[0]
        if not even:
            return torch.tensor_split(batch, world)[rank]
        if rows % world:
            raise ShardError(
                f"training.batch_size: this step's batch has {rows} rows, which do not divide "
                f"over {world} data-parallel ranks; choose a batch size divisible by {world}"
            )
        n = rows // world
        return batch[rank * n : (rank + 1) * n]
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(b, rank, world, even) for b in batch)
    raise ShardError(
        f"cannot split a batch of type {type(batch).__name__} over ranks; the workload must override Workload.shard"
    )


def check_loops(cfg, loops: int | None, flag: str = "--loops") -> None:
    """Refuse a loop count for a model that is not looped (model.loops = 1): applying the trunk again is not the
    model that was trained, and would silently change its numbers (layer surgery's `loops:N` op is the way to
    ask for that on purpose)."""
    if loops not in (None, 1) and cfg.model.loops == 1:
        raise EvalError(
            f"{flag} {loops}: the model is not looped (model.loops=1); use `iclab surgery RUN --op loops:{loops}` "
            "to run its trunk several times on purpose"
        )


class Workload:
    """Base class of workloads; `cfg` is the run's `iclab.config.Config`."""

    family: str = ""
    #: keyword options of `evaluate` beyond (run_dir, model, device): `check_eval_options` refuses others
    eval_options: tuple[str, ...] = ("n_prompts", "seed", "loops", "tag", "step", "seq_len")

    def __init__(self, cfg, run_dir=None):
        self.cfg = cfg

    # --- training ------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The model (on the CPU; the trainer moves it), initialized from torch's global RNG."""
        raise NotImplementedError

    def batch(self, step: int, cur: dict[str, int], device: torch.device) -> Any:
        """The training batch of `step` at curriculum values `cur` (a pure function of (seed, step))."""
        raise NotImplementedError

    def loss(self, forward, batch: Any, cur: dict[str, int]) -> torch.Tensor:
        """The scalar training loss of `batch`; `forward` is the (possibly compiled) model."""
        raise NotImplementedError

    def shard(self, batch: Any, rank: int, world: int) -> Any:
        """Data-parallel training: rank `rank`'s part of the global batch of a step (default: a contiguous
        1/world of the rows of every tensor; the loss of equal parts averages to the loss of the whole)."""
        return shard_batch(batch, rank, world)

    def log_metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Extra metrics written beside the loss at every log step (default none)."""
        return {}

    def curriculum_keys(self) -> tuple[str, ...]:
        """The curriculum values this workload logs (curriculum/<key> in metrics.jsonl)."""
        return ("loops",)

    # --- runs ------------------------------------------------------------------------------------------
    def identity(self) -> dict:
        """What a checkpoint must match besides model/task/optimizer config (e.g. the vocabulary)."""
        return {}

    def start_run(self, run_dir: Path) -> None:
        """Called once when a run directory is created (e.g. to record the data a run trains on)."""

    def tokens_per_step(self, batch_size: int) -> int:
        """Tokens a training step reads (for throughput)."""
        raise NotImplementedError

    def step_flops(self) -> int:
        """Matmul FLOPs of one training step at the config's full shapes (iclab/models/flops.py)."""
        raise NotImplementedError

    # --- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, run_dir: Path, model: nn.Module, device: torch.device, **options) -> dict:
        """Evaluate a trained model, write eval*.json and figures into `run_dir`, return the record."""
        raise NotImplementedError

    def check_eval_options(self, options: dict) -> None:
        """Raise EvalError naming the options (as `iclab eval` spells them) that `evaluate` does not take."""
        flag = lambda k: "--" + k.removesuffix("s" if k.endswith("_options") else "").replace("_", "-")  # noqa: E731
        extra = [k for k in options if k not in self.eval_options]
        if extra:
            takes = [flag(k) for k in self.eval_options if k not in ("step", "write_figure")]  # not on the CLI
            raise EvalError(
                f"{', '.join(map(flag, extra))}: not an evaluation option of task {self.cfg.task.name} "
                f"({self.family}); it takes {', '.join(takes)}"
            )
        check_loops(self.cfg, options.get("loops"))
        check_loops(self.cfg, options.get("max_loops"), "--max-loops")

    def summary(self, ev: dict) -> str:
        """One line for the terminal about an evaluation record."""
        return ""

    def headline(self, ev: dict) -> tuple[str, float, bool]:
        """The one number a comparison of runs reports from an evaluation record: (name, value,
        lower_is_better)."""
        raise NotImplementedError
