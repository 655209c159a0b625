"""The training loop.

Data for step s is a pure function of (seed, s): a fresh generator on the model's device is seeded
from both, so resuming needs no data-RNG state. The curriculum and the LR are pure functions of the
step too. The step itself never syncs with the host: losses are summed on the device and read only at
`logging.log_every`; a non-finite loss or gradient norm is flagged on the device and acted on at the
next log or checkpoint (before anything is written, so the last good checkpoint stays as it was),
unless `training.nonfinite=skip`, which checks every step and skips at most `max_skipped_steps` steps.

Resume restores the model, the optimizer, every RNG, the step and skip counters and the partial
log window, so a resumed run logs and ends exactly as an uninterrupted one (on the CPU, bit for bit).
If the latest checkpoint is damaged, resume falls back to the newest intact one (the data of every step
is a pure function of the step, so nothing but time is lost), renames the damaged file to
`*.safetensors.corrupt` and warns; a checkpoint made with another configuration is refused.
SIGINT (Ctrl-C) and SIGTERM finish the current step, save a checkpoint and raise `Interrupted`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import time
import warnings
from pathlib import Path

import torch

from iclab.config import Config
from iclab.training import checkpoint as ck
from iclab.training import distributed
from iclab.training.checkpoint import INIT_WEIGHTS, identity
from iclab.training.curriculum import Curriculum
from iclab.training.device import (
    COMPILE_BACKEND,
    ResumeWarning,
    TrainingError,
    resolve_amp_dtype,
    resolve_device,
)
from iclab.training.optim import eval_mode, train_mode, under_eval_weights
from iclab.training.optimizers import lr_factor, make_optimizer, set_lr
from iclab.workloads import make_workload


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM during training: a checkpoint was saved at `step` into `path`."""

    def __init__(self, step: int, path: Path):
        super().__init__(f"interrupted at step {step}; checkpoint saved to {path}")
        self.step, self.path = step, path


def _run_block(block, u):
    return block(u)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, resume: bool = False):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = resolve_device(cfg.training.device)
        self.dist = distributed.current(self.device)  # rank 0 of 1 unless under torchrun (data parallel)
        self.device = self.dist.device(self.device)
        distributed.check_batch(cfg, self.dist.world)
        if cfg.training.threads is not None:
            torch.set_num_threads(cfg.training.threads)
        torch.manual_seed(cfg.seed if cfg.init_seed is None else cfg.init_seed)
        self.workload = make_workload(cfg)
        self.model = self.workload.build_model().to(self.device)
        self.sharded = self.dist.parallel and cfg.training.fsdp  # FSDP2: parameters/optimizer state split over ranks
        self.wrapped = distributed.wrap(self.model, self.dist, self.device, fsdp=self.sharded)  # DDP, FSDP or the model
        self.opt = make_optimizer(self.model, cfg.training)
        self.curriculum = Curriculum(cfg)
        self.step = 0
        self.skipped = 0
        self.window = {"loss_sum": 0.0, "n_ok": 0, "n": 0}  # the log interval in progress (restored on resume)
        self.train_seconds = 0.0  # time in training steps only (no logging/evaluation/checkpoints); on resume, the
        # last logged value at or before the checkpoint (not stored in checkpoints: they stay bit-for-bit reproducible)
        self.resumed_from: Path | None = None
        if cfg.logging.wandb and importlib.util.find_spec("wandb") is None:
            raise TrainingError("logging.wandb=true but wandb is not installed (pip install 'iclab[wandb]')")
        self.amp_dtype = resolve_amp_dtype(cfg.training.dtype, self.device)
        self.forward = self.wrapped
        if cfg.training.compile:
            if cfg.training.compile_scope == "model":  # static: the loop count is unrolled into the graph
                self.forward = torch.compile(self.wrapped, backend=COMPILE_BACKEND, dynamic=False)
            elif cfg.model.attention.name != "causal":
                raise TrainingError(
                    f"model.attention.name={cfg.model.attention.name} passes a K/V cache between blocks, "
                    "which the per-block compile hook does not take; set training.compile_scope=model"
                )
            elif hasattr(self.model, "train_block_call"):  # one graph for every block: a bounded few compiles
                self.model.train_block_call = torch.compile(_run_block, backend=COMPILE_BACKEND)
            else:
                raise TrainingError(
                    f"model {cfg.model.name!r} has no per-block compile hook (train_block_call); "
                    "set training.compile_scope=model"
                )
        if resume:
            self._resume()
        elif cfg.training.init_from:
            self._init_from(cfg.training.init_from)

    # --- checkpoints --------------------------------------------------------------------------------
    def _resume(self) -> None:
        """Load the newest intact checkpoint (call with the run's lock held). See the module docstring."""
        if self.dist.is_main:
            ck.remove_stale_temps(self.ckpt_dir)
        ckpts = ck.list_checkpoints(self.ckpt_dir)
        if not ckpts:
            warnings.warn(
                f"no checkpoint in {self.ckpt_dir}: the run restarts from step 0", ResumeWarning, stacklevel=2
            )
            return
        damaged: list[tuple[Path, ck.CorruptCheckpointError]] = []
        for _, path in reversed(ckpts):
            try:
                state = ck.load_checkpoint(path, identity(self.cfg, self.workload))
            except ck.CorruptCheckpointError as e:
                damaged.append((path, e))
                continue
            break
        else:
            raise TrainingError(
                f"cannot resume: every checkpoint in {self.ckpt_dir} is damaged ("
                + "; ".join(str(e) for _, e in damaged)
                + "); start the run again with --overwrite"
            )
        try:
            distributed.load_state_dicts(self.model, self.opt, state["model"], state["optim"], self.sharded)
            ck.set_rng_state(state["rng"], self.device)
            tr = state["trainer"]
            self.step = int(tr["step"])
            self.skipped = int(tr.get("skipped", 0))
            self.window = {k: tr.get("window", {}).get(k, 0) for k in self.window}
            self.train_seconds = _logged_train_seconds(self.run_dir / "metrics.jsonl", self.step)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            msg = " ".join(str(e).split())
            raise ck.IncompatibleCheckpointError(
                f"checkpoint {path} does not fit this run's model/optimizer: {msg}"
            ) from None
        self.resumed_from = path
        self.dist.same(self.step, "the step to resume from")  # every rank read the same checkpoint
        self.dist.barrier()  # ... before rank 0 renames a damaged one
        for bad, err in damaged if self.dist.is_main else []:
            moved = ck.quarantine(bad)
            warnings.warn(
                f"{err}; resuming from the previous intact checkpoint {path.name} (step {self.step}) instead; "
                f"the damaged file was renamed to {moved.name}",
                ResumeWarning,
                stacklevel=2,
            )

    def _init_from(self, src: str) -> None:
        """Start from the final weights of another run (fine-tuning); the optimizer starts fresh."""
        path = Path(src) / "model.safetensors" if Path(src).is_dir() else Path(src)
        if not path.is_file():
            raise TrainingError(
                f"training.init_from={src}: {path} does not exist (a finished run's directory or its model.safetensors)"
            )
        saved = json.loads(ck.read_metadata(path).get("identity", "{}"))
        ours = identity(self.cfg, self.workload)
        for key in ("vocab_size", "tokenizer"):
            if key in ours and saved.get(key) != ours[key]:
                raise TrainingError(
                    f"training.init_from={src}: vocabulary mismatch: the weights were trained with "
                    f"{key}={saved.get(key)!r}, this run's data has {ours[key]!r}"
                )
        try:
            distributed.load_model_state(self.model, ck.load_weights(path), self.sharded)
        except RuntimeError as e:
            raise TrainingError(
                f"training.init_from={src}: the weights do not fit this model (" + " ".join(str(e).split())[:300] + ")"
            ) from None

    def save(self, window: dict | None = None) -> Path:
        path = ck.checkpoint_path(self.ckpt_dir, self.step)
        model_state, optim_state = distributed.state_dicts(
            self.model, self.opt, self.sharded
        )  # FSDP: every rank gathers
        if not self.dist.is_main:  # data parallel: rank 0 writes, every rank holds the same state
            return path
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        trainer = {"step": self.step, "skipped": self.skipped, "window": window or {"loss_sum": 0.0, "n_ok": 0, "n": 0}}
        ck.save_checkpoint(
            path,
            model_state=model_state,
            optim_state=optim_state,
            rng=ck.rng_state(self.device),
            trainer=trainer,
            identity=identity(self.cfg, self.workload),
        )
        ck.prune_checkpoints(self.ckpt_dir, self.cfg.logging.keep_last, self.cfg.logging.milestone_every)
        return path

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

    def save_init(self) -> Path:
        """The weights before step 1 (`init.safetensors`): the start of the loss-landscape interpolation."""
        path = self.run_dir / INIT_WEIGHTS
        state = distributed.model_state(self.model, self.sharded)  # FSDP: every rank gathers
        if not self.dist.is_main:
            return path
        ck.save_weights(path, state, identity=identity(self.cfg, self.workload), step=0)
        return path

    # --- one step ---------------------------------------------------------------------------------------
    def train_step(self, step: int) -> torch.Tensor:
        cfg = self.cfg
        cur = self.curriculum.at(step)
        batch = self.workload.batch(step, cur, self.device)
        if self.dist.parallel:  # this rank's slice of the step's global batch; its dropout from (seed, step, rank)
            batch = self.workload.shard(batch, self.dist.rank, self.dist.world)
            torch.manual_seed(distributed.step_seed(cfg.seed, step, self.dist.rank))
        set_lr(self.opt, lr_factor(cfg.training, step))
        self.model.train()
        train_mode(self.opt)  # schedule-free optimizers step at y (no-op for the others)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            loss = self.workload.loss(self.forward, batch, cur)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.training.grad_clip is not None:
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.training.grad_clip)
        else:
            gnorm = _grad_norm(self.model)
        gnorm = distributed.plain(gnorm)  # FSDP: a DTensor
        ok = torch.isfinite(loss) & torch.isfinite(gnorm)
        self.last_gnorm = gnorm.detach()
        if cfg.training.nonfinite == "skip":
            if not bool(ok):  # opt-in: one host sync per step
                self.skipped += 1
                if self.skipped > cfg.training.max_skipped_steps:
                    raise TrainingError(
                        f"non-finite loss or gradient at step {step} (loss={loss.item()}, grad norm={gnorm.item()}): "
                        f"more than training.max_skipped_steps={cfg.training.max_skipped_steps} bad steps; the run stopped "
                        f"and its last good checkpoint is kept in {self.ckpt_dir}"
                    )
                return loss.detach(), ok
        self.opt.step()
        return loss.detach(), ok

    # --- the loop -----------------------------------------------------------------------------------------
    def run(self, on_log=None) -> dict:
        cfg, lg = self.cfg, self.cfg.logging
        writer = _Writers(self.run_dir, cfg, start_step=self.step) if self.dist.is_main else distributed.NoWriter()
        interrupted = {"flag": False}

        def _on_signal(signum, frame):
            if interrupted["flag"] and not self.dist.parallel:  # a second Ctrl-C: stop now (checkpoints are atomic,
                raise KeyboardInterrupt  # nothing is damaged); data parallel: torchrun forwards the terminal's SIGINT too
            interrupted["flag"] = True

        old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        # the log interval in progress: sum of finite losses, their count, and all steps (restored on resume)
        loss_sum = torch.full((), float(self.window["loss_sum"]), device=self.device)
        n_ok = torch.full((), int(self.window["n_ok"]), dtype=torch.long, device=self.device)
        n_in_window = int(self.window["n"])
        bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        bad_loss = torch.zeros((), device=self.device)
        bad_gnorm = torch.zeros((), device=self.device)
        n_timed, t_last, last = 0, time.perf_counter(), {}
        progress = _progress(cfg.training.steps, self.step, enabled=lg.progress and self.dist.is_main)
        if self.step == 0 and (self.dist.is_main or self.sharded):
            self.save_init()
        t_mark = time.perf_counter()  # train_seconds counts from here to the next log/checkpoint boundary
        try:
            while self.step < cfg.training.steps:
                loss, ok = self.train_step(self.step)
                first = (~ok) & (bad_step < 0)
                bad_step = torch.where(first, torch.full_like(bad_step, self.step), bad_step)
                bad_loss = torch.where(first, loss, bad_loss)
                bad_gnorm = torch.where(first, self.last_gnorm.to(bad_gnorm.dtype), bad_gnorm)
                loss_sum = loss_sum + torch.where(ok, loss, torch.zeros_like(loss))
                n_ok = n_ok + ok.long()
                n_in_window += 1
                n_timed += 1
                self.step += 1
                progress.advance()
                at_log = self.step % lg.log_every == 0 or self.step == cfg.training.steps
                at_ckpt = self.step % lg.ckpt_every == 0 or self.step == cfg.training.steps
                stop = interrupted["flag"]
                if self.dist.parallel:  # the ranks agree on the loss and on stopping at log/checkpoint steps only
                    stop = False
                    if at_log or at_ckpt:
                        loss_sum, stop = self.dist.window(loss_sum, interrupted["flag"])
                if at_log or at_ckpt or stop:
                    if cfg.training.nonfinite == "stop" and int(bad_step) >= 0:
                        raise TrainingError(
                            f"non-finite loss or gradient at step {int(bad_step)} (loss={float(bad_loss)}, grad norm="
                            f"{float(bad_gnorm)}); the run stopped and its last good checkpoint is kept in {self.ckpt_dir}. "
                            f"Lower training.lr or set training.grad_clip (edit {self.run_dir / 'config.yaml'}, then "
                            f"--resume), or use training.nonfinite=skip"
                        )
                    self.train_seconds += time.perf_counter() - t_mark
                if at_log:
                    now = time.perf_counter()
                    cur = self.curriculum.at(self.step - 1)
                    n = int(n_ok)
                    last = {
                        "step": self.step,
                        "loss": float(loss_sum) / n if n else float("nan"),
                        "lr": cfg.training.lr * lr_factor(cfg.training, self.step - 1),
                        "steps_per_s": n_timed / max(now - t_last, 1e-9),
                        "train_seconds": self.train_seconds,
                        **{f"curriculum/{k}": cur[k] for k in self.workload.curriculum_keys()},
                        **(
                            under_eval_weights(self.opt, self.workload.log_metrics, self.model, self.device)
                            if self.dist.is_main or self.sharded
                            else {}
                        ),
                    }
                    if cfg.training.nonfinite == "skip":
                        last["skipped"] = self.skipped
                    writer.log(last)
                    progress.set_loss(last["loss"])
                    if on_log:
                        on_log(last)
                    loss_sum.zero_()
                    n_ok.zero_()
                    n_in_window, n_timed, t_last = 0, 0, now
                if at_ckpt or stop:
                    path = self.save({"loss_sum": float(loss_sum), "n_ok": int(n_ok), "n": n_in_window})
                if stop:
                    raise Interrupted(self.step, path)
                if at_log or at_ckpt:
                    t_mark = time.perf_counter()
        except RuntimeError as e:  # data parallel: a collective failed because another rank died
            if self.dist.parallel and distributed.lost_peer(e):
                raise distributed.DistributedError(distributed.rank_failed_message(e)) from None
            raise
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            progress.close()
            writer.close()
        eval_mode(self.opt)  # finished: a schedule-free model now holds x (model.safetensors, evaluation)
        return last


def _logged_train_seconds(path: Path, step: int) -> float:
    """train_seconds of the last metrics.jsonl record at or before `step` (0 if none): the clock a resumed run
    continues (a checkpoint between log steps loses the time since the last log)."""
    secs = 0.0
    if path.is_file():
        for ln in path.read_text().splitlines():
            s = _logged_step(ln)
            if s is not None and s <= step:
                secs = float(json.loads(ln).get("train_seconds", secs))
    return secs


def _grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """The total 2-norm of the gradients, on the device (no host sync)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _logged_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut short by a crash
        return None


class _Writers:
    """metrics.jsonl (always), TensorBoard and W&B (optional)."""

    def __init__(self, run_dir: Path, cfg: Config, start_step: int):
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():  # on resume, forget what was logged after the checkpoint (and any half-written line)
            kept = [
                ln
                for ln in self.path.read_text().splitlines()
                if (s := _logged_step(ln)) is not None and s <= start_step
            ]
            ck.atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(ln + "\n" for ln in kept)))
        self.f = open(self.path, "a")
        self.tb = None
        if cfg.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)
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


class _progress:
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

    def advance(self):
        if self.bar:
            self.bar.advance(self.task)

    def set_loss(self, loss: float):
        if self.bar:
            self.bar.update(self.task, loss=f"loss {loss:.4f}")

    def close(self):
        if self.bar:
            self.bar.stop()
