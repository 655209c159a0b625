"""The training loop: a `Trainer` composing small parts, each in its own module of this package.

    device.py        the device, the autocast dtype of the step, CPU threads
    distributed.py   the data-parallel process group, DDP/FSDP wrapping, collectives
    compilation.py   the compile policy (whole model or per block)
    nonfinite.py     the non-finite guard: NaN/inf flagged on the device; stop, or skip a bounded number
    metrics.py       the log window, the training clock, metrics.jsonl / TensorBoard / W&B
    checkpointer.py  save, resume (falling back to the newest intact checkpoint), init_from, init weights
    signals.py       SIGINT/SIGTERM: finish the step, save a checkpoint, raise `Interrupted`
    progress.py      the progress bar

Data for step s is a pure function of (seed, s): a fresh generator on the model's device is seeded
from both, so resuming needs no data-RNG state. The curriculum and the LR are pure functions of the
step too. The step itself never syncs with the host: losses are summed on the device and read only at
`logging.log_every`; a non-finite loss or gradient norm is flagged on the device and acted on at the
next log or checkpoint (before anything is written, so the last good checkpoint stays as it was),
unless `training.nonfinite=skip`, which checks every step and skips at most `max_skipped_steps` steps.

Resume restores the model, the optimizer, every RNG, the step and skip counters and the partial
log window, so a resumed run logs and ends exactly as an uninterrupted one (on the CPU, bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from iclab.config import Config
from iclab.errors import IclabError
from iclab.training import distributed
from iclab.training.checkpointer import Checkpointer
from iclab.training.compilation import compiled_forward
from iclab.training.curriculum import Curriculum
from iclab.training.device import autocast, resolve_amp_dtype, resolve_device, set_threads
from iclab.training.metrics import (
    EMPTY_WINDOW,
    LogWindow,
    TrainClock,
    check_backends,
    logged_train_seconds,
    open_writer,
)
from iclab.training.nonfinite import NonFiniteGuard, grad_norm
from iclab.training.optim import eval_mode, lr_factor, make_optimizer, set_lr, train_mode, under_eval_weights
from iclab.training.progress import ProgressBar
from iclab.training.signals import Interrupted, StopSignals
from iclab.workloads import make_workload

__all__ = ["Interrupted", "Trainer"]


class Trainer:
    """One run's training: `__init__` builds the parts (and resumes), `run()` trains to `training.steps`."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool = False):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        device = resolve_device(cfg.training.device)
        self.dist = distributed.current(device)  # rank 0 of 1 unless under torchrun (data parallel)
        self.device = self.dist.device(device)  # data parallel on CUDA: cuda:LOCAL_RANK
        distributed.check_batch(cfg, self.dist.world)
        set_threads(cfg.training.threads)
        torch.manual_seed(cfg.seed if cfg.init_seed is None else cfg.init_seed)
        self.workload = make_workload(cfg)
        self.model = self.workload.build_model().to(self.device)
        self.sharded = self.dist.parallel and cfg.training.fsdp  # FSDP2: parameters/optimizer state split over ranks
        wrapped = distributed.wrap(self.model, self.dist, self.device, fsdp=self.sharded)  # DDP, FSDP or the model
        self.opt = make_optimizer(self.model, cfg.training)
        self.params = list(self.model.parameters())  # for the gradient norm, every step
        self.curriculum = Curriculum(cfg)
        self.guard = NonFiniteGuard(cfg.training, self.run_dir, self.device)
        self.checkpoints = Checkpointer(
            self.run_dir,
            cfg,
            self.workload,
            self.model,
            self.opt,
            dist=self.dist,
            device=self.device,
            sharded=self.sharded,
        )
        self.step, self.window, self.resumed_from = 0, dict(EMPTY_WINDOW), None  # window: the log interval in progress
        self.train_seconds = 0.0  # time in steps only; on resume, the last logged value at or before the checkpoint
        check_backends(cfg.logging)
        self.amp_dtype = resolve_amp_dtype(cfg.training.dtype, self.device)
        self.forward = compiled_forward(self.model, wrapped, cfg)
        if resume:
            self._resume()
        elif cfg.training.init_from:
            self.checkpoints.init_from(cfg.training.init_from)

    @property
    def skipped(self) -> int:
        """Non-finite steps skipped so far (training.nonfinite=skip)."""
        return self.guard.skipped

    # --- checkpoints --------------------------------------------------------------------------------
    def _resume(self) -> None:
        """Continue from the newest intact checkpoint (call with the run's lock held); see checkpointer.py."""
        resumed = self.checkpoints.resume()
        if resumed is None:  # no checkpoint (warned): the run restarts from step 0
            return
        self.step, self.window, self.resumed_from = resumed.step, resumed.window, resumed.path
        self.guard.skipped = resumed.skipped
        self.train_seconds = logged_train_seconds(self.run_dir, self.step)

    def save(self, window: dict | None = None) -> Path:
        """A checkpoint at the current step; `window` is the log interval in progress (`LogWindow.state()`)."""
        trainer = {"step": self.step, "skipped": self.skipped, "window": window or dict(EMPTY_WINDOW)}
        return self.checkpoints.save(self.step, trainer)

    def save_init(self) -> Path:
        """The weights before step 1 (`init.safetensors`): the start of the loss-landscape interpolation."""
        return self.checkpoints.save_init()

    def full_model(self) -> torch.nn.Module | None:
        """The trained model as one ordinary module (FSDP: gathered into a fresh copy on rank 0, None on the
        other ranks; call on every rank), e.g. to save the final weights and evaluate."""
        if not self.sharded:
            return self.model
        state = distributed.model_state(self.model, True)
        if not self.dist.is_main:
            return None
        model = self.workload.build_model()
        model.load_state_dict(state)
        return model.to(self.device)

    # --- one step ---------------------------------------------------------------------------------------
    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the data of `step`. Returns (the loss, whether the loss and the gradient norm
        were finite), both on the device: no host sync (except under training.nonfinite=skip)."""
        cfg = self.cfg
        cur = self.curriculum.at(step)
        batch = self.workload.batch(step, cur, self.device)
        if self.dist.parallel:  # this rank's slice of the step's global batch; its dropout from (seed, step, rank)
            batch = self.workload.shard(batch, self.dist.rank, self.dist.world)
            torch.manual_seed(distributed.step_seed(cfg.seed, step, self.dist.rank))
        set_lr(self.opt, lr_factor(cfg.training, step))
        if not self.model.training:  # Module.train() walks every submodule: ~0.7 ms of host time per step
            self.model.train()
        train_mode(self.opt)  # schedule-free optimizers step at y (no-op for the others)
        with autocast(self.device, self.amp_dtype):
            loss = self.workload.loss(self.forward, batch, cur)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = grad_norm(self.params, cfg.training.grad_clip)
        ok = self.guard.observe(step, loss, gnorm)
        if not self.guard.skip(step, ok, loss, gnorm):
            self.opt.step()
        return loss.detach(), ok

    # --- the loop -----------------------------------------------------------------------------------------
    def run(self, on_log: Callable[[dict], None] | None = None) -> dict:
        """Train from `self.step` to training.steps, logging and checkpointing; returns the last logged record.
        SIGINT/SIGTERM: save a checkpoint at the step reached and raise `Interrupted`."""
        lg, steps, main = self.cfg.logging, self.cfg.training.steps, self.dist.is_main
        window, clock, last = LogWindow(self.window, self.device), TrainClock(self.train_seconds), {}
        with (
            open_writer(self.run_dir, self.cfg, self.step, main) as writer,
            StopSignals(self.dist.parallel) as signals,
            ProgressBar(steps, self.step, enabled=lg.progress and main) as progress,
            _rank_failures(self.dist),
        ):
            if self.step == 0 and (main or self.sharded):
                self.save_init()
            clock.resume()  # train_seconds counts from here to the next log/checkpoint boundary
            while self.step < steps:
                loss, ok = self.train_step(self.step)
                window.add(loss, ok)
                clock.tick()
                self.step += 1
                progress.advance()
                at_log = self.step % lg.log_every == 0 or self.step == steps
                at_ckpt = self.step % lg.ckpt_every == 0 or self.step == steps
                stop = self._agree_to_stop(window, at_log or at_ckpt, signals.requested)
                if at_log or at_ckpt or stop:
                    self.guard.check()  # a non-finite step stops the run here, before anything is written
                    clock.pause()
                if at_log:
                    last = self._log(window, clock, writer, progress, on_log)
                if at_ckpt or stop:
                    path = self.save(window.state())
                if stop:
                    raise Interrupted(self.step, path)
                if at_log or at_ckpt:
                    clock.resume()
        self.train_seconds = clock.train_seconds
        eval_mode(self.opt)  # finished: a schedule-free model now holds x (model.safetensors, evaluation)
        return last

    def _agree_to_stop(self, window: LogWindow, boundary: bool, requested: bool) -> bool:
        """Whether to stop after this step (a signal arrived). Data parallel: the ranks agree on it, and average
        the window's loss, at log/checkpoint steps only (one all-reduce; none in the other steps)."""
        if not self.dist.parallel:
            return requested
        if not boundary:
            return False
        window.loss_sum, stop = self.dist.window(window.loss_sum, requested)
        return stop

    def _log(self, window: LogWindow, clock: TrainClock, writer, progress: ProgressBar, on_log) -> dict:
        """Write the record of a log step (the window's mean finite loss, the LR, speed, curriculum and the
        workload's own metrics at the evaluation weights) and start a new window."""
        cfg, step = self.cfg, self.step
        cur = self.curriculum.at(step - 1)
        rec = {
            "step": step,
            "loss": window.mean_loss(),
            "lr": cfg.training.lr * lr_factor(cfg.training, step - 1),
            "steps_per_s": clock.steps_per_s(),
            "train_seconds": clock.train_seconds,
            **{f"curriculum/{k}": cur[k] for k in self.workload.curriculum_keys()},
            **(
                under_eval_weights(self.opt, self.workload.log_metrics, self.model, self.device)
                if self.dist.is_main or self.sharded
                else {}
            ),
        }
        if cfg.training.nonfinite == "skip":
            rec["skipped"] = self.skipped
        writer.log(rec)
        progress.set_loss(rec["loss"], nats=self.workload.family == "sequence")
        if on_log:
            on_log(rec)
        window.reset()
        return rec


@contextmanager
def _rank_failures(dist: distributed.Dist) -> Iterator[None]:
    """Data parallel: a collective that failed because another rank died becomes one clear DistributedError
    (iclab's own errors, which already say what happened, pass unchanged)."""
    try:
        yield
    except RuntimeError as e:
        if dist.parallel and not isinstance(e, IclabError) and distributed.lost_peer(e):
            raise distributed.DistributedError(distributed.rank_failed_message(e)) from None
        raise
