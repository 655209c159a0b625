"""The non-finite guard: what a run does about a NaN/inf loss or gradient norm.

Each step's loss and gradient norm are checked on the device (no host sync). With `training.nonfinite=stop`
(the default) the first bad step is recorded there, and `check()`, called at the next log or checkpoint
step before anything is written, stops the run with the step and the values, so the last good checkpoint
stays as it was. With `training.nonfinite=skip` every step is checked on the host (one sync per step,
opt-in): a bad step makes no update, and more than `training.max_skipped_steps` of them stop the run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from iclab.config import TrainingConfig
from iclab.training import distributed
from iclab.training.device import TrainingError


def grad_norm(params: torch.nn.Module | list[torch.Tensor], clip: float | None) -> torch.Tensor:
    """The total 2-norm of the gradients of a model (or of a list of its parameters: the trainer keeps one,
    since `Module.parameters()` walks every submodule on every call) before clipping (clipped to `clip` when
    set), on the device as an ordinary tensor (FSDP's DTensor gathered; no host sync)."""
    if isinstance(params, torch.nn.Module):
        params = list(params.parameters())
    if clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
    else:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return torch.zeros(())
        if hasattr(torch.nn.utils, "get_total_norm"):
            norm = torch.nn.utils.get_total_norm(grads)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return distributed.plain(norm)


class NonFiniteGuard:
    """Flags non-finite steps on the device and applies the run's policy (see the module docstring)."""

    def __init__(self, training: TrainingConfig, run_dir: Path, device: torch.device):
        self.policy, self.max_skipped = training.nonfinite, training.max_skipped_steps
        self.run_dir = Path(run_dir)
        self.skipped = 0  # bad steps skipped so far (restored on resume)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)  # the first bad step, -1: none
        self.bad_loss = torch.zeros((), device=device)
        self.bad_gnorm = torch.zeros((), device=device)

    def observe(self, step: int, loss: torch.Tensor, gnorm: torch.Tensor) -> torch.Tensor:
        """Whether the step was finite (a device bool); under `stop`, remember the first bad step."""
        ok = torch.isfinite(loss) & torch.isfinite(gnorm)
        if self.policy == "stop":
            first = (~ok) & (self.bad_step < 0)
            self.bad_step = torch.where(first, torch.full_like(self.bad_step, step), self.bad_step)
            self.bad_loss = torch.where(first, loss.detach(), self.bad_loss)
            self.bad_gnorm = torch.where(first, gnorm.detach().to(self.bad_gnorm.dtype), self.bad_gnorm)
        return ok

    def skip(self, step: int, ok: torch.Tensor, loss: torch.Tensor, gnorm: torch.Tensor) -> bool:
        """Under `skip`: whether this step must make no update (a host sync); stops the run after too many."""
        if self.policy != "skip" or bool(ok):
            return False
        self.skipped += 1
        if self.skipped > self.max_skipped:
            raise TrainingError(
                f"non-finite loss or gradient at step {step} (loss={loss.item()}, grad norm={gnorm.item()}): "
                f"more than training.max_skipped_steps={self.max_skipped} bad steps; the run stopped "
                f"and its last good checkpoint is kept in {self.run_dir / 'checkpoints'}"
            )
        return True

    def check(self) -> None:
        """At a log or checkpoint step, before anything is written: under `stop`, end the run if a step was bad."""
        if self.policy == "stop" and int(self.bad_step) >= 0:
            raise TrainingError(
                f"non-finite loss or gradient at step {int(self.bad_step)} (loss={float(self.bad_loss)}, grad norm="
                f"{float(self.bad_gnorm)}); the run stopped and its last good checkpoint is kept in "
                f"{self.run_dir / 'checkpoints'}. Lower training.lr or set training.grad_clip (edit "
                f"{self.run_dir / 'config.yaml'}, then --resume), or use training.nonfinite=skip"
            )
