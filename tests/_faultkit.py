"""Shared helpers of the fault-injection tests (resume, checkpoints, divergence, bad input)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
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


# --- subprocesses ---------------------------------------------------------------------------------------
# The CLI, exactly as `python -m iclab.cli`, but each training step sleeps `ICLAB_TEST_STEP_SLEEP` seconds
# so a test can reliably signal it between two checkpoints. The sleep changes no number.
_BOOT = """
import os, runpy, sys, time
import torch
torch.set_num_threads(1)
import iclab.training.trainer as t
_step = t.Trainer.train_step
def _slow(self, step):
    time.sleep(float(os.environ["ICLAB_TEST_STEP_SLEEP"]))
    return _step(self, step)
t.Trainer.train_step = _slow
sys.argv = ["iclab"] + sys.argv[1:]
runpy.run_module("iclab.cli", run_name="__main__")
"""


def launch_cli(args: list[str], step_sleep: float = 0.02) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), ICLAB_TEST_STEP_SLEEP=str(step_sleep), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", _BOOT, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120.0) -> None:
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
