"""The trainer's parts on their own: the log window, the training clock, the metrics writer on resume, the
non-finite guard, the gradient norm, stop signals and the compile policy. Each is checked against an
independent computation or an observable effect; the whole loop is covered by test_train/test_resume."""

import json
import math
import os
import signal
import sys

import pytest
import torch

from iclab.config import validate
from iclab.training.compilation import compiled_forward
from iclab.training.device import TrainingError
from iclab.training.metrics import LogWindow, MetricsWriter, TrainClock, logged_train_seconds, open_writer
from iclab.training.nonfinite import NonFiniteGuard, grad_norm
from iclab.training.signals import Interrupted, StopSignals

CPU = torch.device("cpu")
NAN, INF = float("nan"), float("inf")


def _tensor_reads(monkeypatch):
    """Record every host read of a tensor made from iclab's package code (not from tests)."""
    calls = []
    for name in ("item", "__float__", "__bool__", "__int__", "cpu", "tolist"):
        orig = getattr(torch.Tensor, name)

        def counting(self, *a, _orig=orig, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename
            if "iclab" in caller and "tests" not in caller:
                calls.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return calls


# --- the log window ----------------------------------------------------------------------------------------
def test_log_window_averages_the_finite_losses_only(monkeypatch):
    losses = [1.5, NAN, 2.25, INF, 0.75]
    w = LogWindow({"loss_sum": 0.0, "n_ok": 0, "n": 0}, CPU)
    reads = _tensor_reads(monkeypatch)
    for x in losses:
        t = torch.tensor(x)
        w.add(t, torch.isfinite(t))
    assert reads == []  # adding a step never syncs
    monkeypatch.undo()
    finite = [x for x in losses if math.isfinite(x)]
    assert w.mean_loss() == pytest.approx(sum(finite) / len(finite))
    assert w.state() == {"loss_sum": pytest.approx(4.5), "n_ok": 3, "n": 5}


def test_log_window_restored_from_its_state_continues_the_interval():
    a = LogWindow({"loss_sum": 0.0, "n_ok": 0, "n": 0}, CPU)
    for x in (1.0, 2.0):
        a.add(torch.tensor(x), torch.tensor(True))
    b = LogWindow(a.state(), CPU)  # what a checkpoint stores and resume restores
    b.add(torch.tensor(6.0), torch.tensor(True))
    assert b.mean_loss() == pytest.approx(3.0) and b.n == 3
    b.reset()
    assert b.state() == {"loss_sum": 0.0, "n_ok": 0, "n": 0} and math.isnan(b.mean_loss())


def test_train_clock_counts_only_the_time_between_resume_and_pause(monkeypatch):
    now = {"t": 100.0}
    monkeypatch.setattr("iclab.training.metrics.perf_counter", lambda: now["t"])
    c = TrainClock(train_seconds=7.0)  # resumed: continues the logged clock
    now["t"] = 103.0  # e.g. saving the initial weights: not training time
    c.resume()
    for _ in range(4):
        c.tick()
    now["t"] = 105.0
    c.pause()
    now["t"] = 111.0  # logging/evaluation/checkpoint time
    assert c.train_seconds == pytest.approx(9.0)
    assert c.steps_per_s() == pytest.approx(4 / 11.0)  # wall time since the clock started
    assert c.steps_per_s() == 0.0  # the count restarts at each log


# --- metrics.jsonl ---------------------------------------------------------------------------------------
def _cfg(**logging):
    return validate({"logging": {"tensorboard": False, "progress": False, **logging}})


def test_writer_on_resume_drops_later_records_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    recs = [{"step": s, "loss": 1.0 / s, "train_seconds": 0.5 * s} for s in (5, 10, 15)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 20, "loss": 0.')
    assert logged_train_seconds(tmp_path, 12) == 5.0 and logged_train_seconds(tmp_path, 4) == 0.0
    with MetricsWriter(tmp_path, _cfg(), start_step=10) as w:
        w.log({"step": 11, "loss": NAN})
    lines = path.read_text().splitlines()
    assert lines[:2] == [json.dumps(r) for r in recs[:2]]  # the kept lines byte for byte
    assert json.loads(lines[2])["step"] == 11 and math.isnan(json.loads(lines[2])["loss"]) and len(lines) == 3


def test_other_ranks_write_nothing(tmp_path):
    with open_writer(tmp_path, _cfg(), start_step=0, main=False) as w:
        w.log({"step": 1, "loss": 1.0})
    assert list(tmp_path.iterdir()) == []


# --- the non-finite guard --------------------------------------------------------------------------------
def _guard(tmp_path, **training):
    return NonFiniteGuard(validate({"training": training}).training, tmp_path, CPU)


def test_stop_guard_reports_the_first_bad_step_at_the_boundary(tmp_path, monkeypatch):
    g = _guard(tmp_path)
    steps = {0: (1.0, 2.0), 1: (0.5, NAN), 2: (NAN, 3.0), 3: (0.4, 1.0)}
    reads = _tensor_reads(monkeypatch)
    oks = [g.observe(s, torch.tensor(lo), torch.tensor(gn)) for s, (lo, gn) in steps.items()]
    skips = [g.skip(s, ok, torch.tensor(0.0), torch.tensor(0.0)) for s, ok in enumerate(oks)]
    assert reads == []  # stop policy: nothing read on the host until the boundary
    monkeypatch.undo()
    assert [bool(ok) for ok in oks] == [True, False, False, True] and skips == [False] * 4
    with pytest.raises(TrainingError, match=r"at step 1 \(loss=0.5, grad norm=nan\).*kept in .*checkpoints"):
        g.check()


def test_stop_guard_is_silent_when_every_step_was_finite(tmp_path):
    g = _guard(tmp_path)
    g.observe(0, torch.tensor(1.0), torch.tensor(1.0))
    g.check()


def test_skip_guard_skips_bad_steps_up_to_the_limit(tmp_path):
    g = _guard(tmp_path, nonfinite="skip", max_skipped_steps=2)
    bad = torch.tensor(NAN)
    assert not g.skip(0, g.observe(0, torch.tensor(1.0), torch.tensor(1.0)), bad, bad)
    assert g.skip(1, g.observe(1, bad, torch.tensor(1.0)), bad, bad)
    assert g.skip(2, g.observe(2, torch.tensor(1.0), bad), bad, bad) and g.skipped == 2
    g.check()  # the skip policy never stops at a boundary
    with pytest.raises(TrainingError, match="at step 3 .*max_skipped_steps=2"):
        g.skip(3, g.observe(3, bad, bad), bad, bad)


@pytest.mark.parametrize("clip", [None, 0.1])
def test_grad_norm_is_the_norm_of_all_gradients_before_clipping(clip):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model(torch.randn(5, 4)).square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    expected = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    assert float(grad_norm(model, clip)) == pytest.approx(expected, rel=1e-6)
    after = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in model.parameters()))
    assert after == pytest.approx(min(expected, clip) if clip else expected, rel=1e-5)


# --- signals ---------------------------------------------------------------------------------------------
def test_stop_signals_set_a_flag_then_restore_the_handlers():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as sig:
        assert not sig.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert sig.requested  # the process goes on: the trainer saves, then raises Interrupted
        with pytest.raises(KeyboardInterrupt):  # a second signal in a single process: stop at once
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_data_parallel_ranks_never_stop_at_once():
    with StopSignals(parallel=True) as sig:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # torchrun forwards the terminal's Ctrl-C as well
        assert sig.requested


def test_interrupted_names_the_step_and_the_checkpoint(tmp_path):
    e = Interrupted(14, tmp_path / "step_000000014.safetensors")
    assert isinstance(e, KeyboardInterrupt) and e.step == 14 and "interrupted at step 14" in str(e)


# --- the compile policy ----------------------------------------------------------------------------------
def test_without_compile_the_step_calls_the_wrapped_model():
    model = torch.nn.Linear(2, 2)
    assert compiled_forward(model, model, validate({})) is model


def test_per_block_compile_is_refused_where_it_cannot_work():
    cfg = validate({"training": {"compile": True}})
    with pytest.raises(TrainingError, match="no per-block compile hook.*compile_scope=model"):
        compiled_forward(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), cfg)
