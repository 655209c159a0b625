"""The training loop.

Data for step s is a pure function of (seed, s): a fresh generator on the model's device is seeded
from both, so resuming needs no data-RNG state. The curriculum and the LR are pure functions of the
step too. The step itself never syncs with the host: losses are summed on the device and read only at
`logging.log_every`; a non-finite loss is flagged on the device and acted on at the next log or
checkpoint (before anything is written), unless `training.nonfinite=skip`, which checks every step.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch

from iclab import checkpoint as ck
from iclab.config import Config, dump_config
from iclab.curriculum import Curriculum
from iclab.models import count_params, make_model
from iclab.optim import lr_factor, make_optimizer, set_lr
from iclab.tasks import make_task


class TrainingError(RuntimeError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"training.device={name!r} but CUDA is not available")
    return dev


def resolve_amp_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """training.dtype -> the autocast dtype of the step (None: plain fp32)."""
    if name == "float32":
        return None
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        return torch.bfloat16 if cuda_bf16 else None
    if device.type != "cuda":
        raise TrainingError(f"training.dtype=bfloat16 (autocast) is supported on CUDA only; on {device.type} the "
                            f"step runs in float32: set training.dtype=float32 (or auto)")
    if not cuda_bf16:
        raise TrainingError("training.dtype=bfloat16 but this CUDA device does not support bfloat16; set training.dtype=float32")
    return torch.bfloat16


# torch.compile backend of the step ("inductor"; tests use "aot_eager", which traces the same graphs
# without generating code)
COMPILE_BACKEND = "inductor"


def _run_block(block, u):
    return block(u)


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


def identity(cfg: Config) -> dict:
    """What a checkpoint must match to be loaded into a run of `cfg`."""
    return {"model": cfg.model.model_dump(mode="json"), "task": cfg.task.model_dump(mode="json"),
            "optimizer": cfg.training.optimizer.name}


def prediction_loss(preds: list[torch.Tensor], ys: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the predicted positions of each iteration, averaged over iterations."""
    n = ys.shape[1]
    return sum(((p - ys[:, n - p.shape[1] :]) ** 2).mean() for p in preds) / len(preds)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, resume: bool = False):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = resolve_device(cfg.training.device)
        if cfg.training.threads is not None:
            torch.set_num_threads(cfg.training.threads)
        torch.manual_seed(cfg.seed)
        self.task = make_task(cfg.task.name, cfg.task.n_dims, cfg.task.options)
        self.model = make_model(cfg.model, cfg.task.n_dims).to(self.device)
        self.opt = make_optimizer(self.model, cfg.training)
        self.curriculum = Curriculum(cfg)
        self.step = 0
        self.skipped = 0
        self.amp_dtype = resolve_amp_dtype(cfg.training.dtype, self.device)
        self.forward = self.model
        if cfg.training.compile:
            if cfg.training.compile_scope == "model":  # static: the loop count is unrolled into the graph
                self.forward = torch.compile(self.model, backend=COMPILE_BACKEND, dynamic=False)
            elif hasattr(self.model, "train_block_call"):  # one graph for every block: a bounded few compiles
                self.model.train_block_call = torch.compile(_run_block, backend=COMPILE_BACKEND)
            else:
                raise TrainingError(f"model {cfg.model.name!r} has no per-block compile hook (train_block_call); "
                                    "set training.compile_scope=model")
        if resume:
            self._resume()

    # --- checkpoints --------------------------------------------------------------------------------
    def _resume(self) -> None:
        ckpts = ck.list_checkpoints(self.ckpt_dir)
        if not ckpts:
            raise TrainingError(f"nothing to resume: no checkpoint in {self.ckpt_dir}")
        state = ck.load_checkpoint(ckpts[-1][1], identity(self.cfg))
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optim"])
        ck.set_rng_state(state["rng"], self.device)
        self.step = state["trainer"]["step"]
        self.skipped = state["trainer"].get("skipped", 0)

    def save(self) -> Path:
        path = ck.checkpoint_path(self.ckpt_dir, self.step)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        ck.save_checkpoint(path, model_state=self.model.state_dict(), optim_state=self.opt.state_dict(),
                           rng=ck.rng_state(self.device), trainer={"step": self.step, "skipped": self.skipped},
                           identity=identity(self.cfg))
        ck.prune_checkpoints(self.ckpt_dir, self.cfg.logging.keep_last, self.cfg.logging.milestone_every)
        return path

    # --- one step ---------------------------------------------------------------------------------------
    def train_step(self, step: int) -> torch.Tensor:
        cfg = self.cfg
        cur = self.curriculum.at(step)
        gen = step_generator(cfg.seed, step, self.device)
        xs, ys = self.task.sample(cfg.training.batch_size, cur["points"], cur["dims"], gen, self.device)
        set_lr(self.opt, lr_factor(cfg.training, step))
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            preds = self.forward(xs, ys, loops=cur["loops"], window=cfg.model.window)
        loss = prediction_loss(preds, ys)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.training.grad_clip is not None:
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.training.grad_clip)
        else:
            gnorm = torch.zeros((), device=self.device)
        ok = torch.isfinite(loss) & torch.isfinite(gnorm)
        if cfg.training.nonfinite == "skip":
            if not bool(ok):  # opt-in: one host sync per step
                self.skipped += 1
                if self.skipped > cfg.training.max_skipped_steps:
                    raise TrainingError(f"non-finite loss/gradient at step {step} (loss={loss.item()}); "
                                        f"more than training.max_skipped_steps={cfg.training.max_skipped_steps} bad steps")
                return loss.detach(), ok
        self.opt.step()
        return loss.detach(), ok

    # --- the loop -----------------------------------------------------------------------------------------
    def run(self, on_log=None) -> dict:
        cfg, lg = self.cfg, self.cfg.logging
        writer = _Writers(self.run_dir, cfg, start_step=self.step)
        interrupted = {"flag": False}

        def _sigint(signum, frame):
            interrupted["flag"] = True

        old = signal.signal(signal.SIGINT, _sigint)
        loss_sum = torch.zeros((), device=self.device)
        bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        bad_loss = torch.zeros((), device=self.device)
        n_in_window, t_last, last = 0, time.perf_counter(), {}
        progress = _progress(cfg.training.steps, self.step, enabled=lg.progress)
        try:
            while self.step < cfg.training.steps:
                loss, ok = self.train_step(self.step)
                first = (~ok) & (bad_step < 0)
                bad_step = torch.where(first, torch.full_like(bad_step, self.step), bad_step)
                bad_loss = torch.where(first, loss, bad_loss)
                loss_sum = loss_sum + torch.where(ok, loss, torch.zeros_like(loss))
                n_in_window += 1
                self.step += 1
                progress.advance()
                at_log = self.step % lg.log_every == 0 or self.step == cfg.training.steps
                at_ckpt = self.step % lg.ckpt_every == 0 or self.step == cfg.training.steps
                if at_log or at_ckpt or interrupted["flag"]:
                    if cfg.training.nonfinite == "stop" and int(bad_step) >= 0:
                        raise TrainingError(
                            f"non-finite loss or gradient at step {int(bad_step)} (loss={float(bad_loss)}); the run stopped "
                            f"and its last good checkpoint is kept in {self.ckpt_dir}. Lower training.lr, set "
                            f"training.grad_clip, or use training.nonfinite=skip")
                if at_log:
                    now = time.perf_counter()
                    cur = self.curriculum.at(self.step - 1)
                    last = {"step": self.step, "loss": float(loss_sum) / n_in_window,
                            "lr": cfg.training.lr * lr_factor(cfg.training, self.step - 1),
                            "steps_per_s": n_in_window / (now - t_last), **{f"curriculum/{k}": v for k, v in cur.items()}}
                    writer.log(last)
                    progress.set_loss(last["loss"])
                    if on_log:
                        on_log(last)
                    loss_sum.zero_()
                    n_in_window, t_last = 0, now
                if at_ckpt or interrupted["flag"]:
                    self.save()
                if interrupted["flag"]:
                    raise KeyboardInterrupt
        finally:
            signal.signal(signal.SIGINT, old)
            progress.close()
            writer.close()
        return last


class _Writers:
    """metrics.jsonl (always), TensorBoard and W&B (optional)."""

    def __init__(self, run_dir: Path, cfg: Config, start_step: int):
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():  # on resume, forget what was logged after the checkpoint
            kept = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= start_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
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
                raise TrainingError("logging.wandb=true but wandb is not installed (pip install 'iclab[wandb]')") from None
            self.wandb = wandb.init(project=cfg.logging.wandb_project, config=cfg.model_dump(mode="json"), dir=str(run_dir))

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
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                                TimeElapsedColumn(), TimeRemainingColumn())
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


def describe(cfg: Config) -> str:
    m = make_model(cfg.model, cfg.task.n_dims)
    return dump_config(cfg) + f"# parameters: {count_params(m):,}\n"
