"""Non-finite losses and gradients: the run stops with the step and the value, the last good checkpoint
stays byte-identical; training.nonfinite=skip skips at most max_skipped_steps bad steps."""

import math
import re

import pytest
import torch
from _faultkit import cfg_dict, ckpt_steps, metrics, write_yaml
from typer.testing import CliRunner

import iclab.workloads.regression.workload as wl_mod
from iclab.cli import app
from iclab.config import validate
from iclab.runs import train_run
from iclab.training.checkpoint import list_checkpoints, load_checkpoint
from iclab.training.device import TrainingError
from iclab.training.trainer import Trainer


@pytest.fixture
def inject(monkeypatch):
    """inject(nan_ys={steps}, nan_grad={steps}): poison the labels, or the gradient only, at chosen steps."""
    current = {"step": -1}
    real_gen = wl_mod.step_generator

    def spying_gen(seed, step, device):
        current["step"] = step
        return real_gen(seed, step, device)

    monkeypatch.setattr(wl_mod, "step_generator", spying_gen)

    def arm(nan_ys=(), nan_grad=()):
        real_make_task, real_make_model = wl_mod.make_task, wl_mod.make_model

        def make_task(*a, **k):
            task = real_make_task(*a, **k)
            real_sample = task.sample

            def sample(*a, **k):
                xs, ys = real_sample(*a, **k)
                if current["step"] in nan_ys:
                    ys = ys.clone()
                    ys[0, -1] = float("nan")
                return xs, ys

            task.sample = sample
            return task

        def make_model(*a, **k):
            model = real_make_model(*a, **k)
            poison = lambda g: g * float("nan") if current["step"] in nan_grad else g  # noqa: E731
            model.read_in.weight.register_hook(poison)
            return model

        monkeypatch.setattr(wl_mod, "make_task", make_task)
        monkeypatch.setattr(wl_mod, "make_model", make_model)

    return arm


@pytest.fixture
def saved_bytes(monkeypatch):
    """Every checkpoint's bytes right after it was written."""
    seen = {}
    real_save = Trainer.save

    def save(self, *a, **k):
        path = real_save(self, *a, **k)
        seen[path.name] = path.read_bytes()
        return path

    monkeypatch.setattr(Trainer, "save", save)
    return seen


@pytest.mark.parametrize("bad_step, kept", [(13, [10]), (19, [10]), (9, []), (25, [10, 20])])
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, inject, saved_bytes, bad_step, kept):
    inject(nan_ys={bad_step})
    run = tmp_path / "run"
    d = cfg_dict(logging={"log_every": 5, "ckpt_every": 10})
    with pytest.raises(TrainingError) as ei:
        train_run(validate(d), run, evaluate_after=False)
    msg = str(ei.value)
    assert f"non-finite loss or gradient at step {bad_step} (loss=nan" in msg and str(run / "checkpoints") in msg
    assert ckpt_steps(run) == kept  # nothing written at or after the boundary that saw the NaN
    for s in kept:
        name = f"step_{s:09d}.safetensors"
        assert (run / "checkpoints" / name).read_bytes() == saved_bytes[name]
    assert not (run / "model.safetensors").exists()
    logged = [r["step"] for r in metrics(run)]
    assert logged == list(range(5, bad_step + 1, 5)) and all(math.isfinite(r["loss"]) for r in metrics(run))


@pytest.mark.parametrize("grad_clip", [1.0, None])
def test_nan_gradient_with_a_finite_loss_stops_the_run(tmp_path, inject, saved_bytes, grad_clip):
    """The gradient is checked even without clipping: otherwise a NaN update right before a checkpoint
    would be saved (the loss only turns NaN at the next step)."""
    inject(nan_grad={19})
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"at step 19 \(loss=[0-9.]+, grad norm=nan\)"):
        train_run(validate(cfg_dict(training={"grad_clip": grad_clip})), run, evaluate_after=False)
    assert ckpt_steps(run) == [10]
    assert (run / "checkpoints" / "step_000000010.safetensors").read_bytes() == saved_bytes[
        "step_000000010.safetensors"
    ]


def test_a_huge_learning_rate_diverges_into_a_clean_stop(tmp_path):
    d = cfg_dict(
        training={"lr": 1e12, "grad_clip": None, "schedule": "constant", "optimizer": {"name": "sgd"}},
        model={"dropout": 0.0},
    )
    with pytest.raises(TrainingError, match=r"non-finite loss or gradient at step \d+ \(loss=(nan|inf)"):
        train_run(validate(d), tmp_path / "run", evaluate_after=False)


def test_cli_reports_divergence_in_one_line(tmp_path, inject):
    inject(nan_ys={4})
    cfg = write_yaml(tmp_path / "c.yaml", cfg_dict())
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert r.output.startswith("error: non-finite loss or gradient at step 4 (loss=nan")


def test_skip_mode_skips_a_bounded_number_of_bad_steps(tmp_path, inject):
    inject(nan_ys={3, 11}, nan_grad={17})
    run = tmp_path / "run"
    d = cfg_dict(training={"nonfinite": "skip", "max_skipped_steps": 3})
    train_run(validate(d), run, evaluate_after=False)
    assert all(
        torch.isfinite(v).all() for v in load_checkpoint(list_checkpoints(run / "checkpoints")[-1][1])["model"].values()
    )
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1][1])["trainer"]["skipped"] == 3
    recs = metrics(run)
    assert all(math.isfinite(r["loss"]) for r in recs)
    assert [r["skipped"] for r in recs if r["step"] in (3, 6, 12, 18)] == [0, 1, 2, 3]


def test_skip_mode_stops_after_max_skipped_steps(tmp_path, inject):
    inject(nan_ys={3, 5, 8})
    d = cfg_dict(training={"nonfinite": "skip", "max_skipped_steps": 2})
    with pytest.raises(TrainingError, match=re.escape("at step 8 (loss=nan") + ".*max_skipped_steps=2"):
        train_run(validate(d), tmp_path / "run", evaluate_after=False)


def test_a_skipped_step_changes_neither_weights_nor_optimizer_state(tmp_path, inject):
    inject(nan_ys={2})
    t = Trainer(validate(cfg_dict(training={"nonfinite": "skip"})), tmp_path)
    t.train_step(0)
    t.train_step(1)
    before = (
        {k: v.clone() for k, v in t.model.state_dict().items()},
        [{k: v.clone() for k, v in s.items()} for s in t.opt.state_dict()["state"].values()],
    )
    t.train_step(2)
    assert t.skipped == 1
    after = (t.model.state_dict(), list(t.opt.state_dict()["state"].values()))
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert all(torch.equal(a[k], b[k]) for a, b in zip(before[1], after[1]) for k in a)
    t.train_step(3)  # a good step moves the weights again
    assert not torch.equal(before[0]["read_in.weight"], t.model.state_dict()["read_in.weight"])
