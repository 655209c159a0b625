"""Shared helpers of the fault-injection tests (resume, checkpoints, divergence, bad input)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]

# A run that exercises every piece of state resume must restore: dropout (global RNG), a warmup+cosine LR,
# dims/points curricula, a log interval that does not divide the checkpoint interval, AdamW moments.
BASE = {
    "seed": 3,
    "task": {"name": "linear_regression", "n_dims": 4, "n_points": 9},
    "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32, "dropout": 0.1},
    "training": {
        "steps": 30,
        "batch_size": 8,
        "lr": 3e-3,
        "device": "cpu",
        "schedule": "warmup_cosine",
        "warmup_steps": 5,
        "optimizer": {"name": "adamw"},
    },
    "curriculum": {
        "dims": {"start": 2, "end": 4, "inc": 1, "interval": 8},
        "points": {"start": 5, "end": 9, "inc": 2, "interval": 8},
    },
    "eval": {"n_prompts": 20, "batch_size": 20, "baselines": ["least_squares"]},
    "logging": {"log_every": 3, "ckpt_every": 10, "keep_last": 10, "tensorboard": False, "progress": False},
}


def cfg_dict(**sections) -> dict:
    """BASE with some sections updated, e.g. cfg_dict(training={"steps": 40})."""
    d = copy.deepcopy(BASE)
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k].update(v)
        else:
            d[k] = v
    return d


def write_yaml(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d))
    return path


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between {a} and {b}"


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def assert_same_metrics(a: Path, b: Path) -> None:
    """Same records (steps_per_s and train_seconds aside: they are timings), no step logged twice."""
    ma, mb = metrics(a), metrics(b)
    steps = [r["step"] for r in mb]
    assert steps == sorted(set(steps)), f"duplicate or unordered steps in {b}: {steps}"
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("steps_per_s", "train_seconds")} for r in recs]  # noqa: E731
    assert strip(ma) == strip(mb)


def ckpt_steps(run_dir: Path) -> list[int]:
    from iclab.training.checkpoint import list_checkpoints

    return [s for s, _ in list_checkpoints(Path(run_dir) / "checkpoints")]


def crash_after(run_dir: Path, step: int) -> None:
    """Make `run_dir` look like a run killed right after its checkpoint at `step` was written, while it
    was writing a metrics line: later checkpoints, final weights and eval outputs gone, a torn last line."""
    run_dir = Path(run_dir)
    for p in (run_dir / "checkpoints").iterdir():
        if p.name.startswith("step_") and int(p.name[5:14]) > step:
            p.unlink()
    for name in ("model.safetensors", "eval.json", "error_vs_examples.png"):
        (run_dir / name).unlink(missing_ok=True)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 99999, "loss": 0.')  # a line cut short by the crash


# --- a CLI process --------------------------------------------------------------------------------------------
# The CLI (`iclab ARGS`, the entry's own error, interrupt and exit-code handling), in a child forked from the
# test process: it starts with torch and iclab already imported (a fresh `python -m iclab` spends ~3 s of CPU
# on imports), and each training step sleeps `step_sleep` seconds so a test can reliably signal it between two
# checkpoints. The sleep changes no number. (tests/test_docs.py runs the real `python -m iclab` entry.)
class CliProcess:
    """A forked `iclab ARGS` with the part of subprocess.Popen's interface the fault tests use."""

    def __init__(
        self, args: list[str], step_sleep: float = 0.0, cwd: Path = REPO, env: dict | None = None, merge: bool = False
    ):
        """`merge`: stderr into stdout (communicate() then returns (both, ""), as with stderr=STDOUT); `env`:
        variables set in the child (and so in the processes it starts)."""
        self._out, self._err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover  (the child: never returns)
            self._child(args, step_sleep, cwd, env or {}, merge)

    def _child(self, args: list[str], step_sleep: float, cwd: Path, env: dict, merge: bool) -> None:
        code = 1
        try:
            os.dup2(self._out.fileno(), 1)
            os.dup2(self._out.fileno() if merge else self._err.fileno(), 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.chdir(cwd)
            os.environ.update(env)
            import iclab.training.trainer as t
            from iclab.cli import app

            step = t.Trainer.train_step

            def slow(self, i):
                time.sleep(step_sleep)
                return step(self, i)

            if step_sleep:
                t.Trainer.train_step = slow
            app(args, prog_name="iclab")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001  (reported on the child's stderr, like an uncaught error)
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        t0 = time.monotonic()
        while self.poll() is None:
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise subprocess.TimeoutExpired(f"iclab (pid {self.pid})", timeout)
            time.sleep(0.005)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        texts = []
        for f in (self._out, self._err):  # the child's fds 1 and 2 shared these files' offsets
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
        return texts[0], texts[1]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        self.wait()


def launch_cli(args: list[str], step_sleep: float = 0.02) -> CliProcess:
    return CliProcess(args, step_sleep, env={"OMP_NUM_THREADS": "1"})


def wait_for_checkpoint(proc: CliProcess, run_dir: Path, step: int, timeout: float = 120.0) -> None:
    target = Path(run_dir) / "checkpoints" / f"step_{step:09d}.safetensors"
    t0 = time.monotonic()
    while not target.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"the training process ended (rc={proc.returncode}) before {target} appeared:\n{out}\n{err}"
            )
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{target} did not appear within {timeout} s")
        time.sleep(0.005)
