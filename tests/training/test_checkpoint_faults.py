"""Damaged, altered, foreign and half-written checkpoints: refused with a message naming the file and the
problem, never loaded silently, never unpickled; resume falls back past a damaged latest checkpoint."""

import json
import pickle
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from _faultkit import assert_same_metrics, assert_same_weights, cfg_dict, ckpt_steps, crash_after
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import iclab
import iclab.training.checkpoint as ck
from iclab.cli import app
from iclab.config import validate
from iclab.runs import train_run
from iclab.training.checkpoint import identity
from iclab.training.device import ResumeWarning, TrainingError


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory):
    """One finished run (checkpoints at 10, 20, 30), shared read-only by the tests of this module."""
    run = tmp_path_factory.mktemp("ref") / "run"
    train_run(validate(cfg_dict()), run, evaluate_after=False)
    return run


@pytest.fixture
def run(ref_run, tmp_path):
    """A private copy of the finished run."""
    dst = tmp_path / "run"
    shutil.copytree(ref_run, dst)
    return dst


def _ckpt(run_dir, step):
    return run_dir / "checkpoints" / f"step_{step:09d}.safetensors"


def _header_len(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


# --- truncated, altered, foreign ----------------------------------------------------------------------
def test_truncated_at_random_offsets_is_refused(run):
    path = _ckpt(run, 30)
    data = path.read_bytes()
    rng = random.Random(20240601)
    offsets = sorted(
        {0, 1, 8, _header_len(data) - 1, _header_len(data), len(data) - 1}
        | {rng.randrange(len(data)) for _ in range(12)}
    )
    for off in offsets:
        path.write_bytes(data[:off])
        with pytest.raises(ck.CorruptCheckpointError, match=re.escape(str(path))) as ei:
            ck.load_checkpoint(path, identity(validate(cfg_dict())))
        assert "unreadable" in str(ei.value) or "corrupt" in str(ei.value), (off, str(ei.value))
    path.write_bytes(data + b"\0" * 16)  # trailing garbage
    with pytest.raises(ck.CorruptCheckpointError):
        ck.load_checkpoint(path)
    path.write_bytes(data)  # the pristine file still loads
    assert ck.load_checkpoint(path)["trainer"]["step"] == 30


def test_every_flipped_byte_is_detected(run):
    """A single flipped byte anywhere (length prefix, JSON header, metadata, tensor data) is refused."""
    path = _ckpt(run, 30)
    data = path.read_bytes()
    hl = _header_len(data)
    rng = random.Random(7)
    positions = (
        [0, 3, 9, hl - 2, hl, len(data) - 1]
        + [rng.randrange(8, hl) for _ in range(10)]
        + [rng.randrange(hl, len(data)) for _ in range(10)]
    )
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x01 if pos >= hl else 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(ck.CorruptCheckpointError, match=re.escape(str(path))):
            ck.load_checkpoint(path)
    # a flip in the tensor data is named as a digest mismatch
    bad = bytearray(data)
    bad[len(data) - 5] ^= 0x01
    path.write_bytes(bytes(bad))
    with pytest.raises(ck.CorruptCheckpointError, match="SHA-256"):
        ck.load_checkpoint(path)


def _rewrite(path, edit_meta=None, edit_tensors=None):
    """Rewrite a checkpoint with valid safetensors structure but edited metadata/tensors (digest kept)."""
    tensors = load_file(str(path))
    meta = ck.read_metadata(path)
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(path), metadata={"iclab": json.dumps(meta)})


@pytest.mark.parametrize(
    "edit, message",
    [
        (dict(edit_meta=lambda m: m.update(trainer=m["trainer"].replace('"step": 30', '"step": 31'))), "SHA-256"),
        (dict(edit_meta=lambda m: m.update(identity=m["identity"].replace('"n_embd": 16', '"n_embd": 17'))), "SHA-256"),
        (dict(edit_meta=lambda m: m.pop("sha256")), "SHA-256"),
        (dict(edit_meta=lambda m: m.update(format="something-else")), "not an iclab file"),
        (
            dict(edit_tensors=lambda t: t.__setitem__("model/read_in.weight", t["model/read_in.weight"] + 1e-6)),
            "SHA-256",
        ),
        (dict(edit_tensors=lambda t: t.pop("model/read_in.bias")), "SHA-256"),
    ],
)
def test_altered_contents_are_refused(run, edit, message):
    path = _ckpt(run, 30)
    _rewrite(path, **edit)
    with pytest.raises(ck.CorruptCheckpointError, match=message) as ei:
        ck.load_checkpoint(path)
    assert str(path) in str(ei.value)


def test_metadata_that_is_not_json_is_refused(run):
    path = _ckpt(run, 30)
    save_file(load_file(str(path)), str(path), metadata={"iclab": "{not json"})
    with pytest.raises(ck.CorruptCheckpointError, match=re.escape(str(path))):
        ck.load_checkpoint(path)


def test_checkpoint_of_another_config_is_refused_naming_the_keys(run):
    other = cfg_dict(model={"n_embd": 32, "n_head": 4}, task={"n_dims": 5})
    with pytest.raises(ck.IncompatibleCheckpointError) as ei:
        ck.load_checkpoint(_ckpt(run, 30), identity(validate(other)))
    msg = str(ei.value)
    assert str(_ckpt(run, 30)) in msg
    assert "model.n_embd: checkpoint has 16, the config has 32" in msg
    assert "model.n_head: checkpoint has 2, the config has 4" in msg
    assert "task.n_dims: checkpoint has 4, the config has 5" in msg
    assert "n_layer" not in msg  # only what differs


def test_final_weights_are_verified_too(run):
    path = run / "model.safetensors"
    assert set(ck.load_weights(path, identity(validate(cfg_dict())))) == set(load_file(str(path)))
    bad = bytearray(path.read_bytes())
    bad[-3] ^= 0x01
    path.write_bytes(bytes(bad))
    r = CliRunner().invoke(app, ["eval", str(run)])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert r.output.startswith("error: checkpoint ") and str(path) in r.output and "SHA-256" in r.output


# --- nothing is unpickled or executed ---------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


def test_a_pickle_posing_as_a_checkpoint_is_refused_without_running_it(run, tmp_path):
    live = tmp_path / "live_marker"
    pickle.loads(pickle.dumps(_Payload(live)))  # the payload is live: plain unpickling runs it
    assert live.exists()
    marker = tmp_path / "marker"
    path = _ckpt(run, 30)
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(ck.CorruptCheckpointError, match="unreadable"):
        ck.load_checkpoint(path)
    for s in (10, 20):
        torch.save({"model": _Payload(marker)}, _ckpt(run, s))
    crash_after(run, 30)
    with pytest.raises(TrainingError, match="every checkpoint"):
        train_run(None, run, resume=True, evaluate_after=False)
    torch.save({"w": _Payload(marker)}, run / "model.safetensors")
    r = CliRunner().invoke(app, ["eval", str(run)])
    assert r.exit_code == 2
    assert not marker.exists()


def test_no_unsafe_loader_in_the_package():
    """Loading never executes code: no pickle, no torch.load without weights_only, no yaml.load / eval / exec."""
    pkg = Path(iclab.__file__).parent
    bad = []
    for src in pkg.rglob("*.py"):
        for i, line in enumerate(src.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(
                r"\bpickle\b|\bdill\b|\bmarshal\.loads?\b|yaml\.(unsafe_)?load\(|yaml\.full_load|(?<![\w.])(eval|exec)\(",
                code,
            ) or ("torch.load(" in code and "weights_only=True" not in code):
                bad.append(f"{src.name}:{i}: {line.strip()}")
    assert not bad, bad


# --- resume past damage -------------------------------------------------------------------------------
def test_resume_falls_back_past_a_damaged_latest_checkpoint(run, ref_run):
    """Documented choice: the newest intact checkpoint is used, the damaged one is renamed *.corrupt,
    a warning names both; the run then ends exactly as the uninterrupted one."""
    crash_after(run, 30)
    data = _ckpt(run, 30).read_bytes()
    _ckpt(run, 30).write_bytes(data[: len(data) // 2])  # the latest: truncated
    bad = bytearray(_ckpt(run, 20).read_bytes())
    bad[-1] ^= 0x01
    _ckpt(run, 20).write_bytes(bytes(bad))  # the one before: one flipped bit
    with pytest.warns(ResumeWarning) as rec:
        train_run(None, run, resume=True, evaluate_after=False)
    msgs = [str(w.message) for w in rec]
    assert any(
        "step_000000030.safetensors" in m and "truncated" in m and "step_000000010.safetensors (step 10)" in m
        for m in msgs
    ), msgs
    assert any("step_000000020.safetensors" in m and "SHA-256" in m for m in msgs), msgs
    assert (run / "checkpoints" / "step_000000030.safetensors.corrupt").exists()
    assert (run / "checkpoints" / "step_000000020.safetensors.corrupt").exists()
    assert ckpt_steps(run) == [10, 20, 30]  # rewritten by the resumed run
    assert_same_weights(ref_run, run)
    assert_same_metrics(ref_run, run)


def test_resume_refuses_when_every_checkpoint_is_damaged(run):
    crash_after(run, 30)
    for s in (10, 20, 30):
        _ckpt(run, s).write_bytes(_ckpt(run, s).read_bytes()[:100])
    with pytest.raises(TrainingError) as ei:
        train_run(None, run, resume=True, evaluate_after=False)
    msg = str(ei.value)
    assert all(f"step_0000000{s}.safetensors" in msg for s in (10, 20, 30)) and "--overwrite" in msg
    assert ckpt_steps(run) == [10, 20, 30]  # nothing renamed or deleted when nothing can be resumed


def test_resume_refuses_a_checkpoint_of_another_config(run):
    crash_after(run, 20)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["n_layer"] = 3
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert str(_ckpt(run, 20)) in r.output and "model.n_layer: checkpoint has 2, the config has 3" in r.output
    assert ckpt_steps(run) == [10, 20]  # a foreign checkpoint is not "damaged": nothing renamed


# --- atomic writes, temp files, retention ------------------------------------------------------------
def test_a_crash_while_writing_leaves_the_previous_checkpoint_as_latest(tmp_path, monkeypatch, ref_run):
    real_save = ck.save_file
    calls = {"n": 0}

    def failing_save(tensors, filename, metadata=None):
        calls["n"] += 1
        if "step_000000020" in str(filename):  # the checkpoint at step 20 (init.safetensors also goes through
            #                                     save_file): write half a file, then fail
            real_save(tensors, filename, metadata=metadata)
            data = Path(filename).read_bytes()
            Path(filename).write_bytes(data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ck, "save_file", failing_save)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        train_run(validate(cfg_dict()), run, evaluate_after=False)
    monkeypatch.undo()
    assert ckpt_steps(run) == [10]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000000010.safetensors"]  # no temp left
    train_run(None, run, resume=True, evaluate_after=False)
    assert_same_weights(ref_run, run)
    assert_same_metrics(ref_run, run)


def test_leftover_temp_files_are_ignored_and_cleaned_on_resume(run, ref_run):
    """SIGKILL during a write leaves `.tmp-PID-step_...`: never listed, removed by the next resume."""
    crash_after(run, 20)
    stray = run / "checkpoints" / ".tmp-4242-step_000000030.safetensors"
    stray.write_bytes(_ckpt(ref_run, 30).read_bytes()[:5000])
    assert ckpt_steps(run) == [10, 20]
    train_run(None, run, resume=True, evaluate_after=False)
    assert not stray.exists()
    assert_same_weights(ref_run, run)


def test_keep_last_and_milestones(tmp_path):
    run = tmp_path / "run"
    d = cfg_dict(training={"steps": 42}, logging={"ckpt_every": 5, "keep_last": 2, "milestone_every": 15})
    train_run(validate(d), run, evaluate_after=False)
    assert ckpt_steps(run) == [15, 30, 40, 42]  # milestones 15, 30 + the last two (40, 42 = the end)
    d["logging"].update(milestone_every=None, keep_last=1)
    train_run(validate(d), run, overwrite=True, evaluate_after=False)
    assert ckpt_steps(run) == [42]
