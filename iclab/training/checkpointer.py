"""The checkpoint manager of a run: save, resume, start from another run's weights, save the initial weights.

The file format (safetensors + SHA-256 + identity, written atomically) is `checkpoint.py`; this module decides
which files a run writes and reads:

- `save`: `checkpoints/step_XXXXXXXXX.safetensors` with the model, the optimizer, every RNG and the trainer's
  counters (step, skipped steps, the log window in progress), then prunes to `logging.keep_last` plus the
  milestones. Data parallel: every rank takes part (FSDP gathers), rank 0 writes.
- `resume`: loads the newest intact checkpoint. A damaged one (truncated, altered) is skipped for the one
  before it (the data of every step is a pure function of the step, so nothing but time is lost), renamed
  to `*.safetensors.corrupt` and reported with a `ResumeWarning`; a checkpoint made with another
  configuration, or one that does not fit the model/optimizer, is refused (`IncompatibleCheckpointError`).
- `init_from`: the final weights of another run (fine-tuning; same vocabulary), with a fresh optimizer.
- `save_init`: `init.safetensors`, the weights before step 1 (the start of the loss-landscape interpolation).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from iclab.config import Config
from iclab.training import checkpoint as ck
from iclab.training import distributed
from iclab.training.checkpoint import INIT_WEIGHTS, identity
from iclab.training.device import ResumeWarning, TrainingError

_LOAD_ERRORS = (RuntimeError, ValueError, KeyError, TypeError, IndexError)  # a state that does not fit


@dataclass(frozen=True)
class Resumed:
    """What a checkpoint gives back besides the model, optimizer and RNG states."""

    step: int
    skipped: int
    window: dict
    path: Path


class Checkpointer:
    def __init__(self, run_dir: Path, cfg: Config, workload, model: torch.nn.Module, opt, *, dist, device, sharded):
        self.run_dir, self.ckpt_dir = Path(run_dir), Path(run_dir) / "checkpoints"
        self.cfg, self.workload, self.model, self.opt = cfg, workload, model, opt
        self.dist, self.device, self.sharded = dist, device, sharded

    @cached_property
    def identity(self) -> dict:
        return identity(self.cfg, self.workload)

    def save(self, step: int, trainer: dict) -> Path:
        """Checkpoint at `step`; `trainer` holds the counters to restore (step, skipped, window)."""
        path = ck.checkpoint_path(self.ckpt_dir, step)
        model_state, optim_state = distributed.state_dicts(self.model, self.opt, self.sharded)  # FSDP: all gather
        if not self.dist.is_main:  # data parallel: rank 0 writes, every rank holds the same state
            return path
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        ck.save_checkpoint(
            path,
            model_state=model_state,
            optim_state=optim_state,
            rng=ck.rng_state(self.device),
            trainer=trainer,
            identity=self.identity,
        )
        ck.prune_checkpoints(self.ckpt_dir, self.cfg.logging.keep_last, self.cfg.logging.milestone_every)
        return path

    def resume(self) -> Resumed | None:
        """Load the newest intact checkpoint (call with the run's lock held); None if there is none."""
        if self.dist.is_main:
            ck.remove_stale_temps(self.ckpt_dir)
        if not ck.list_checkpoints(self.ckpt_dir):
            warnings.warn(
                f"no checkpoint in {self.ckpt_dir}: the run restarts from step 0", ResumeWarning, stacklevel=3
            )
            return None
        path, state, damaged = self._newest_intact()
        try:
            distributed.load_state_dicts(self.model, self.opt, state["model"], state["optim"], self.sharded)
            ck.set_rng_state(state["rng"], self.device)
            tr = state["trainer"]
            window = tr.get("window", {})
            resumed = Resumed(
                step=int(tr["step"]),
                skipped=int(tr.get("skipped", 0)),
                window={k: window.get(k, 0) for k in ("loss_sum", "n_ok", "n")},
                path=path,
            )
        except _LOAD_ERRORS as e:
            msg = " ".join(str(e).split())
            raise ck.IncompatibleCheckpointError(
                f"checkpoint {path} does not fit this run's model/optimizer: {msg}"
            ) from None
        self.dist.same(resumed.step, "the step to resume from")  # every rank read the same checkpoint
        self.dist.barrier()  # ... before rank 0 renames a damaged one
        for bad, err in damaged if self.dist.is_main else []:
            moved = ck.quarantine(bad)
            warnings.warn(
                f"{err}; resuming from the previous intact checkpoint {path.name} (step {resumed.step}) instead; "
                f"the damaged file was renamed to {moved.name}",
                ResumeWarning,
                stacklevel=3,
            )
        return resumed

    def _newest_intact(self) -> tuple[Path, dict, list[tuple[Path, ck.CorruptCheckpointError]]]:
        """(path, state) of the newest checkpoint that loads, and the damaged ones newer than it."""
        damaged: list[tuple[Path, ck.CorruptCheckpointError]] = []
        for _, path in reversed(ck.list_checkpoints(self.ckpt_dir)):
            try:
                return path, ck.load_checkpoint(path, self.identity), damaged
            except ck.CorruptCheckpointError as e:
                damaged.append((path, e))
        raise TrainingError(
            f"cannot resume: every checkpoint in {self.ckpt_dir} is damaged ("
            + "; ".join(str(e) for _, e in damaged)
            + "); start the run again with --overwrite"
        )

    def init_from(self, src: str) -> None:
        """Start from the final weights of another run (fine-tuning); the optimizer starts fresh."""
        path = Path(src) / "model.safetensors" if Path(src).is_dir() else Path(src)
        if not path.is_file():
            raise TrainingError(
                f"training.init_from={src}: {path} does not exist (a finished run's directory or its model.safetensors)"
            )
        ck.check_vocabulary(json.loads(ck.read_metadata(path).get("identity", "{}")), self.identity, src)
        try:
            distributed.load_model_state(self.model, ck.load_weights(path), self.sharded)
        except RuntimeError as e:
            raise TrainingError(
                f"training.init_from={src}: the weights do not fit this model (" + " ".join(str(e).split())[:300] + ")"
            ) from None

    def save_init(self) -> Path:
        """The weights before step 1 (`init.safetensors`)."""
        path = self.run_dir / INIT_WEIGHTS
        state = distributed.model_state(self.model, self.sharded)  # FSDP: every rank gathers
        if not self.dist.is_main:
            return path
        ck.save_weights(path, state, identity=self.identity, step=0)
        return path
