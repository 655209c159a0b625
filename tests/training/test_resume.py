"""Resume is exact: a run killed (SIGKILL), interrupted (SIGINT/SIGTERM) or crashed after a checkpoint and
then resumed ends with the same parameters, bit for bit, and the same metrics as an uninterrupted run."""

import os
import shutil
import signal
import time

import pytest
from _faultkit import (
    assert_same_metrics,
    assert_same_weights,
    cfg_dict,
    ckpt_steps,
    crash_after,
    launch_cli,
    metrics,
    wait_for_checkpoint,
    write_yaml,
)

from iclab.config import validate
from iclab.runs import train_run
from iclab.training.device import ResumeWarning
from iclab.training.trainer import Interrupted, Trainer


def _reference(tmp_path, d, name="ref"):
    ref = tmp_path / name
    train_run(validate(d), ref, evaluate_after=False)
    return ref


def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path):
    d = cfg_dict(training={"steps": 40})
    cfg_file = write_yaml(tmp_path / "c.yaml", d)
    run = tmp_path / "run"
    proc = launch_cli(["train", str(cfg_file), "--out", str(run), "--no-eval"])
    try:
        wait_for_checkpoint(proc, run, 10)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "model.safetensors").exists(), "the process finished before it was killed"
    assert ckpt_steps(run) in ([10], [10, 20])

    train_run(None, run, resume=True, evaluate_after=False)
    ref = _reference(tmp_path, d)
    assert_same_weights(ref, run)
    assert_same_metrics(ref, run)  # the records logged after step 10 by the killed process were replaced
    assert_same_checkpoints(ref, run)  # incl. step 10, written by the killed process
    assert [r["step"] for r in metrics(run)] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 40]


def test_sigint_saves_a_checkpoint_exits_130_and_resume_finishes_identically(tmp_path):
    d = cfg_dict(training={"steps": 40})
    cfg_file = write_yaml(tmp_path / "c.yaml", d)
    run = tmp_path / "run"
    proc = launch_cli(["train", str(cfg_file), "--out", str(run), "--no-eval"])
    try:
        wait_for_checkpoint(proc, run, 10)
        time.sleep(0.05)  # a few steps past the checkpoint (the test holds wherever the signal lands)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    steps = ckpt_steps(run)
    stopped = steps[-1]
    assert 10 <= stopped < 40, steps  # a checkpoint at the step where it stopped
    assert f"interrupted at step {stopped}; checkpoint saved to" in err and f"--resume {run}" in err
    assert not (run / "model.safetensors").exists()

    train_run(None, run, resume=True, evaluate_after=False)
    ref = _reference(tmp_path, d)
    assert_same_weights(ref, run)
    assert_same_metrics(ref, run)  # incl. the log interval that the interruption cut in two


def test_sigterm_in_process_saves_then_resume_matches(tmp_path, monkeypatch):
    """SIGTERM (what a cluster scheduler sends) during step 13: the step finishes, a checkpoint at 14 holds
    the half-done log interval (steps 12-13 of 12-14), and the resumed run logs step 15 as if never stopped."""
    d = cfg_dict(training={"steps": 30})
    run = tmp_path / "run"
    step = Trainer.train_step

    def signalling_step(self, s):
        if s == 13:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, s)

    monkeypatch.setattr(Trainer, "train_step", signalling_step)
    with pytest.raises(Interrupted) as ei:
        train_run(validate(d), run, evaluate_after=False)
    monkeypatch.undo()
    assert ei.value.step == 14 and ckpt_steps(run) == [10, 14]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers are restored
    assert [r["step"] for r in metrics(run)] == [3, 6, 9, 12]
    train_run(None, run, resume=True, evaluate_after=False)
    ref = _reference(tmp_path, d)
    assert_same_weights(ref, run)
    assert_same_metrics(ref, run)


VARIANTS = {
    "adam": {"training": {"optimizer": {"name": "adam"}}},
    "adamw": {"training": {"optimizer": {"name": "adamw", "options": {"weight_decay": 0.1}}}},
    "sgd_nesterov": {"training": {"optimizer": {"name": "sgd", "options": {"momentum": 0.9, "nesterov": True}}}},
    "rmsprop": {"training": {"optimizer": {"name": "rmsprop", "options": {"momentum": 0.5}}}},
    "adagrad": {"training": {"optimizer": {"name": "adagrad"}}},
    "adadelta": {"training": {"optimizer": {"name": "adadelta"}}},
    "muon": {"training": {"optimizer": {"name": "muon", "options": {"muon_lr": 0.01}}}},
    "looped": {
        "model": {"n_layer": 1, "loops": 4, "loop_window": 2, "drop_tokens": 2, "min_tokens": 6},
        "curriculum": {"loops": {"start": 2, "end": 4, "inc": 1, "interval": 7}},
    },
    "no_clip_skip_mode": {"training": {"grad_clip": None, "nonfinite": "skip"}},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("crash_step", [7, 21])
def test_resume_after_a_crash_is_bit_identical(tmp_path, variant, crash_step):
    """Crash after the checkpoint at `crash_step` (checkpoints every 7 steps, logs every 3), resume, compare."""
    d = cfg_dict(logging={"ckpt_every": 7})
    for section, upd in VARIANTS[variant].items():
        d[section].update(upd)
    ref = _reference(tmp_path, d)
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    crash_after(run, crash_step)
    assert ckpt_steps(run)[-1] == crash_step
    train_run(None, run, resume=True, evaluate_after=False)
    assert_same_weights(ref, run)
    assert_same_metrics(ref, run)
    # every checkpoint written after the resume (model, optimizer state, RNG, counters) is byte-identical
    assert_same_checkpoints(ref, run)
    assert (ref / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()


def assert_same_checkpoints(ref, run):
    steps = ckpt_steps(run)
    assert steps == ckpt_steps(ref)
    for s in steps:
        name = f"checkpoints/step_{s:09d}.safetensors"
        assert (ref / name).read_bytes() == (run / name).read_bytes(), name


def test_resume_without_any_checkpoint_restarts_from_step_zero(tmp_path):
    d = cfg_dict()
    ref = _reference(tmp_path, d)
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    crash_after(run, 0)
    shutil.rmtree(run / "checkpoints")
    with pytest.warns(ResumeWarning, match="restarts from step 0"):
        train_run(None, run, resume=True, evaluate_after=False)
    assert_same_weights(ref, run)
    assert_same_metrics(ref, run)


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    ref = _reference(tmp_path, cfg_dict())
    before = (ref / "model.safetensors").read_bytes()
    train_run(None, ref, resume=True, evaluate_after=False)
    assert (ref / "model.safetensors").read_bytes() == before
    assert [r["step"] for r in metrics(ref)] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
