"""Data-parallel training on the CPU (gloo): 2 ranks x B/2 train as 1 process x B; resume of a 2-process
run matches the uninterrupted one; a rank killed mid-run stops the run with one clear message and leaves
the checkpoints intact and is blamed on the rank that died; 20 launches in a row all succeed (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from _faultkit import REPO, CliProcess, write_yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.launch import check_launch, exit_code
from iclab.runs import train_run
from iclab.training import checkpoint as ck
from iclab.training.distributed import DistributedError
from iclab.workloads.base import shard_batch
from iclab.workloads.sequence.base import IGNORE, sequence_loss


def _cfg(steps=20, **training):
    return {
        "seed": 1,
        "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
        "training": {
            "steps": steps,
            "batch_size": 8,
            "lr": 3e-3,
            "device": "cpu",
            "threads": 1,
            "optimizer": {"name": "adamw"},
            **training,
        },
        "eval": {"n_prompts": 20, "batch_size": 20, "baselines": ["least_squares"]},
        "logging": {"log_every": 5, "ckpt_every": 10, "keep_last": 50, "tensorboard": False, "progress": False},
    }


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return ck.load_weights(run / "model.safetensors")


def _launch(args: list[str], cwd: Path, tag: str | None = None) -> CliProcess:
    """`iclab train ARGS --nproc 2` in cwd: the launcher forked from this process (torchrun runs in it and
    starts the two ranks as fresh `python -m iclab` processes), stdout and stderr together."""
    env = {"ICLAB_TEST_TAG": tag or uuid.uuid4().hex, "PYTHONUNBUFFERED": "1"}
    return CliProcess(["train", *args, "--nproc", "2"], cwd=cwd, env=env, merge=True)


def _rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the worker with RANK=rank among the processes started with ICLAB_TEST_TAG=tag."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = dict(kv.split("=", 1) for kv in (d / "environ").read_text().split("\0") if "=" in kv)
        except OSError:
            continue
        if env.get("ICLAB_TEST_TAG") == tag and env.get("RANK") == str(rank) and "TORCHELASTIC_RUN_ID" in env:
            return int(d.name)
    return None


def test_shard_splits_rows_and_refuses_an_uneven_batch():
    x, y = torch.arange(8).reshape(4, 2), torch.arange(4)
    a, b = shard_batch((x, y), 0, 2), shard_batch((x, y), 1, 2)
    assert torch.equal(torch.cat([a[0], b[0]]), x) and torch.equal(torch.cat([a[1], b[1]]), y)
    with pytest.raises(Exception, match="do not divide over 3"):
        shard_batch((x, y), 0, 3)


def test_sequence_shards_average_to_the_global_token_mean():
    """Rows with unequal numbers of counted tokens: each rank divides by the global count / world, so the
    mean over ranks (what DDP averages) is the global batch's mean, for every loop iteration's suffix."""
    from iclab.workloads.sequence.base import SequenceWorkload

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 5, generator=g)
    targets = torch.randint(0, 5, (4, 6), generator=g)
    targets[0, :5] = IGNORE  # row 0 counts 1 token, the others 6 (ranks: 7 vs 12 tokens)
    targets[2, 1] = IGNORE
    whole = sequence_loss([logits, logits[:, 2:]], targets)
    ranks = []
    for r in range(2):
        inputs, t, counts = SequenceWorkload.shard(SequenceWorkload.__new__(SequenceWorkload), (logits, targets), r, 2)
        ranks.append(sequence_loss([inputs, inputs[:, 2:]], t, counts))
    assert torch.allclose((ranks[0] + ranks[1]) / 2, whole, atol=1e-6)
    naive = (
        sequence_loss([logits[:2], logits[:2, 2:]], targets[:2])
        + sequence_loss([logits[2:], logits[2:, 2:]], targets[2:])
    ) / 2
    assert not torch.allclose(naive, whole, atol=1e-3)  # the per-rank means would not


def test_nproc_refuses_a_batch_that_does_not_divide(tmp_path):
    cfg = write_yaml(tmp_path / "c.yaml", _cfg(batch_size=7))
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r"), "--nproc", "2"])
    assert r.exit_code == 2 and "training.batch_size=7 does not divide over 2" in r.output
    assert not (tmp_path / "r").exists()


def test_nproc_resume_checks_the_saved_config(tmp_path):
    """--resume --nproc reads the run's own config.yaml before any process starts."""
    run = tmp_path / "r"
    train_run(validate(_cfg(steps=2, batch_size=6)), run, evaluate_after=False)
    check_launch(None, 2, run, resume=True)  # 6 divides over 2
    with pytest.raises(DistributedError, match="batch_size=6 does not divide over 4"):
        check_launch(None, 4, run, resume=True)
    r = CliRunner().invoke(app, ["train", "--resume", str(run), "--nproc", "4"])
    assert r.exit_code == 2 and "does not divide over 4" in r.output


def test_the_rank_that_died_is_blamed_not_the_one_that_lost_it():
    """torchrun stamps failures in whole seconds and lists them in the order it saw them: a killed rank,
    a rank that lost its peers (PEER_LOST_EXIT) and a rank torchrun stopped itself (SIGTERM) often tie."""
    from types import SimpleNamespace as F

    from iclab.launch import PEER_LOST_EXIT, _first_failure

    t = 1_700_000_000
    # seen in the same poll (torchrun walks the ranks in order): rank 0 had already exited after losing rank 1
    assert _first_failure({0: F(exitcode=PEER_LOST_EXIT, timestamp=t), 1: F(exitcode=-9, timestamp=t)})[0] == 1
    # rank 1 seen dead first, rank 0 then stopped by torchrun in the same second (launch_stress --mode kill)
    assert _first_failure({1: F(exitcode=-9, timestamp=t), 0: F(exitcode=-15, timestamp=t)})[0] == 1
    assert _first_failure({0: F(exitcode=2, timestamp=t), 1: F(exitcode=PEER_LOST_EXIT, timestamp=t)})[0] == 0
    assert _first_failure({0: F(exitcode=1, timestamp=t + 1), 1: F(exitcode=-9, timestamp=t)})[0] == 1


def _one_vs_two(tmp_path, steps: int):
    """Train the same config in this process (batch 8) and on 2 ranks (batch 4 each); check the logged losses
    and the final weights agree; return (config path, the 2-rank run, its weights)."""
    d = _cfg(steps=steps)
    d["logging"].update(log_every=10, ckpt_every=30)
    cfg_path = write_yaml(tmp_path / "c.yaml", d)
    one = tmp_path / "one"
    train_run(validate(d), one, evaluate_after=False)
    p = _launch([str(cfg_path), "--out", "two", "--no-eval"], tmp_path)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    two = tmp_path / "two"
    l1, l2 = _losses(one), _losses(two)
    assert [s for s, _ in l1] == [s for s, _ in l2]
    assert torch.allclose(torch.tensor([v for _, v in l2]), torch.tensor([v for _, v in l1]), rtol=1e-4, atol=1e-6), (
        l1,
        l2,
    )
    w1, w2 = _weights(one), _weights(two)
    for k in w1:  # the attention's key bias gets a zero gradient up to rounding, which Adam scales up to lr-size
        a, b = w1[k].clone(), w2[k].clone()  # steps: its rounding noise is not comparable; every other weight is
        if k.endswith("attn.c_attn.bias"):
            a[16:32] = b[16:32] = 0
        assert torch.allclose(a, b, rtol=0, atol=2e-5), (k, (a - b).abs().max())
    return cfg_path, two, w2


def test_two_ranks_match_one_process(tmp_path):
    """The fast sibling of the slow test below: one 2-rank launch of 40 steps equals one process."""
    _one_vs_two(tmp_path, steps=40)


@pytest.mark.slow  # two more 2-process launches; the fast sibling above checks the 2-rank == 1-process part
def test_two_ranks_match_one_process_resume_and_a_killed_rank(tmp_path):
    steps = 160
    cfg_path, two, w2 = _one_vs_two(tmp_path, steps)
    # 2 processes again; kill rank 1 once the first checkpoint exists
    tag = uuid.uuid4().hex
    p = _launch([str(cfg_path), "--out", "killed", "--no-eval"], tmp_path, tag)
    killed = tmp_path / "killed"
    deadline = time.time() + 120
    while not ck.list_checkpoints(killed / "checkpoints") and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    pid = _rank_pid(tag, 1)
    assert pid is not None and p.poll() is None, "the run ended before rank 1 could be killed"
    os.kill(pid, signal.SIGKILL)
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "data-parallel rank 1 failed first (signal 9)" in out and "--resume" in out, out
    assert not (killed / "model.safetensors").exists()
    ckpts = ck.list_checkpoints(killed / "checkpoints")
    assert ckpts and ckpts[-1][0] < steps
    ck.load_checkpoint(ckpts[-1][1])  # intact: the hash verifies
    # resume with 2 processes: ends exactly where the uninterrupted 2-process run ended
    p = subprocess.run(
        [sys.executable, "-m", "iclab", "train", "--resume", "killed", "--nproc", "2", "--no-eval"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert _losses(killed) == _losses(two)
    wk = _weights(killed)
    assert all(torch.equal(wk[k], w2[k]) for k in w2)


@pytest.mark.slow  # two more 2-process launches (~30 s on a loaded 2-core machine)
def test_fsdp_matches_one_process_and_resumes(tmp_path):
    d = _cfg(steps=20, optimizer={"name": "muon"}, fsdp=True)  # Muon + AdamW: a two-part optimizer state
    cfg_path = write_yaml(tmp_path / "c.yaml", d)
    one = tmp_path / "one"
    train_run(validate(d), one, evaluate_after=False)  # fsdp has no effect in one process
    p = subprocess.run(
        [sys.executable, "-m", "iclab", "train", str(cfg_path), "--out", "two", "--nproc", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    two = tmp_path / "two"
    assert (two / "eval.json").is_file()  # evaluated on rank 0 with the gathered model
    l1, l2 = _losses(one), _losses(two)
    assert torch.allclose(torch.tensor([v for _, v in l2]), torch.tensor([v for _, v in l1]), rtol=1e-4)
    w1, w2 = _weights(one), _weights(two)  # ordinary, whole tensors
    assert all(w1[k].shape == w2[k].shape for k in w1)
    final = dict(_weights(two))
    (two / "model.safetensors").unlink()
    (two / "eval.json").unlink()
    (two / "checkpoints" / "step_000000020.safetensors").unlink()
    p = subprocess.run(
        [sys.executable, "-m", "iclab", "train", "--resume", "two", "--nproc", "2", "--no-eval"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert _losses(two) == l2
    assert all(torch.equal(_weights(two)[k], final[k]) for k in final)


@pytest.mark.slow  # 20 two-process launches (~5-20 min on a loaded 2-core machine); fast sibling: test_two_ranks_...
def test_twenty_two_process_launches_all_succeed(tmp_path):
    """The launch stress (benchmarks/launch_stress.py): torchrun --standalone and iclab's --nproc, alternating."""
    cfg_path = write_yaml(tmp_path / "c.yaml", _cfg(steps=10))
    out = tmp_path / "stress"
    cmd = [sys.executable, str(REPO / "benchmarks" / "launch_stress.py"), "-n", "20", "--config", str(cfg_path)]
    p = subprocess.run(
        [*cmd, "--steps", "10", "--no-eval", "--out", str(out)], capture_output=True, text=True, timeout=3600
    )
    launches = json.loads((out / "launch_stress.json").read_text())["launches"]
    failed = [r for r in launches if r["failed"]]
    first = (Path(failed[0]["kept"]) / "output.txt").read_text() if failed else ""
    assert p.returncode == 0 and len(launches) == 20 and not failed, p.stdout + p.stderr + first


_RANK_SCRIPT = """
import atexit, sys
from iclab.launch import rank_main
atexit.register(lambda: print("finalized", flush=True))
def app():
    print("trained", end="")  # stdout is a pipe: block-buffered, lost unless flushed before os._exit
    if sys.argv[1] == "raise":
        raise RuntimeError("boom")
    raise SystemExit(int(sys.argv[1]))
rank_main(app)
"""


@pytest.mark.parametrize(
    ("rank", "what", "rc", "out"),
    [(1, "3", 3, "trained"), (1, "raise", 1, "trained"), (None, "0", 0, "trainedfinalized\n")],
)
def test_a_rank_exits_without_finalizing_and_keeps_its_code_and_output(rank, what, rc, out):
    """Issue 27: a rank of a 2-process job ends with os._exit (gloo's worker threads raced the interpreter's
    finalization into std::terminate), keeping the exit status, the buffered output and an uncaught error's
    traceback; outside torchrun the interpreter finalizes as usual (the atexit handler runs)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env.update({"WORLD_SIZE": "2", "RANK": str(rank)} if rank is not None else {})
    p = subprocess.run([sys.executable, "-c", _RANK_SCRIPT, what], capture_output=True, text=True, env=env, timeout=120)
    assert (p.returncode, p.stdout) == (rc, out), p.stderr
    assert ("RuntimeError: boom" in p.stderr) == (what == "raise")


def test_exit_code_is_what_sys_exit_would_give(capsys):
    assert [exit_code(c) for c in (None, 0, 3, 130, 256 + 2)] == [0, 0, 3, 130, 2]
    assert exit_code("stopped: a message") == 1 and capsys.readouterr().err == "stopped: a message\n"
