"""The paths that only a GPU exercises: every workload's model on the device computes the CPU's loss and gradients
on the same batch, the samplers generate on the device, a run trains, checkpoints, resumes and evaluates there,
bf16 autocast and torch.compile (inductor) agree with the fp32 eager step.

Skipped without CUDA. `ICLAB_TEST_DEVICE=cpu` runs the same tests against the CPU (the device side then is a
second CPU copy): that checks the tests themselves on a machine without a GPU, not the GPU paths.
benchmarks/gpu_check.py runs this file on a CUDA machine (its "tests" step)."""

import os
import shutil
from pathlib import Path

import pytest
import torch
from _faultkit import crash_after

from iclab.config import load_config
from iclab.runs import evaluate_run, load_run_model, train_run
from iclab.training.trainer import Trainer

DEVICE = os.environ.get("ICLAB_TEST_DEVICE", "cuda")
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="needs CUDA (or ICLAB_TEST_DEVICE=cpu)"
)

# one config per workload and model family, shrunk to a few steps; the models keep their own shapes
CONFIGS = {
    "regression": ("configs/quickstart.yaml", []),
    "looped": ("configs/looped/tiny/lr_b30_T15.yaml", []),
    "reflex": ("configs/reflex/tiny/reflex_6l6h_521.yaml", []),
    "lm": ("configs/lm/char_tiny.yaml", ["task.options.max_bytes=200000"]),
    "sorting": ("configs/sorting/tiny.yaml", []),
    "modular": ("configs/modular/tiny.yaml", []),
    "multiple_choice": ("configs/multiple_choice/tiny.yaml", []),
}
FEW = [
    "training.steps=20",
    "training.warmup_steps=2",
    "training.batch_size=8",
    "logging.tensorboard=false",
    "logging.progress=false",
]


def _cfg(name: str, device: str, extra=()):
    path, over = CONFIGS[name]
    return load_config(REPO / path, [*over, *FEW, f"training.device={device}", *extra])


def _to(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _tensors(batch):
    if torch.is_tensor(batch):
        yield batch
    elif isinstance(batch, dict):
        for v in batch.values():
            yield from _tensors(v)
    elif isinstance(batch, (tuple, list)):
        for v in batch:
            yield from _tensors(v)


def _loss_and_grads(trainer, batch):
    trainer.model.eval()  # no dropout: the two devices draw different random streams
    trainer.model.zero_grad(set_to_none=True)
    cur = trainer.curriculum.at(0)
    loss = trainer.workload.loss(trainer.forward, batch, cur)
    loss.backward()
    grads = {n: p.grad.detach().cpu() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach().cpu(), grads


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_device_computes_the_cpus_loss_and_gradients(tmp_path, name):
    """The same weights and the same batch (drawn on the CPU, moved): fp32 loss and every gradient agree."""
    cpu = Trainer(_cfg(name, "cpu", ["training.dtype=float32"]), tmp_path / "cpu")
    dev = Trainer(_cfg(name, DEVICE, ["training.dtype=float32"]), tmp_path / "dev")
    dev.model.load_state_dict(cpu.model.state_dict())
    batch = cpu.workload.batch(0, cpu.curriculum.at(0), torch.device("cpu"))
    loss_c, grads_c = _loss_and_grads(cpu, batch)
    loss_d, grads_d = _loss_and_grads(dev, _to(batch, dev.device))
    assert torch.isfinite(loss_c)
    torch.testing.assert_close(loss_d, loss_c, rtol=1e-4, atol=1e-5)
    assert grads_d.keys() == grads_c.keys() and grads_c
    for n, g in grads_c.items():
        torch.testing.assert_close(grads_d[n], g, rtol=1e-3, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batches_are_generated_on_the_device(tmp_path, name):
    t = Trainer(_cfg(name, DEVICE), tmp_path)
    batch = t.workload.batch(3, t.curriculum.at(3), t.device)
    ts = list(_tensors(batch))
    assert ts and all(x.device.type == t.device.type for x in ts)


def test_a_run_trains_checkpoints_resumes_and_evaluates_on_the_device(tmp_path):
    """Quickstart for 60 steps on the device: the loss falls, the evaluation runs there; training 30 steps and
    resuming to 60 gives the uninterrupted run's weights; the weights load on the CPU and compute the same."""
    extra = ["training.steps=60", "logging.ckpt_every=30", "logging.log_every=10", "eval.n_prompts=200"]
    cfg = _cfg("regression", DEVICE, extra)
    whole = train_run(cfg, tmp_path / "whole")
    assert whole["final"]["loss"] < 0.9 * _first_logged_loss(tmp_path / "whole")
    assert whole["eval"] and (tmp_path / "whole" / "eval.json").is_file()

    # killed right after the checkpoint at step 30, resumed: the uninterrupted run's weights
    shutil.copytree(tmp_path / "whole", tmp_path / "part")
    crash_after(tmp_path / "part", 30)
    train_run(None, tmp_path / "part", resume=True, evaluate_after=False)
    a = load_run_model(tmp_path / "whole", cfg, "cpu").state_dict()
    b = load_run_model(tmp_path / "part", cfg, "cpu").state_dict()
    for n in a:
        torch.testing.assert_close(b[n], a[n], rtol=1e-4, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")

    m_cpu = load_run_model(tmp_path / "whole", cfg, "cpu").eval()
    m_dev = load_run_model(tmp_path / "whole", cfg, DEVICE).eval()
    xs, ys = torch.randn(4, 11, 5), torch.randn(4, 11)
    with torch.no_grad():
        torch.testing.assert_close(
            m_dev(xs.to(DEVICE), ys.to(DEVICE))[-1].cpu(), m_cpu(xs, ys)[-1], rtol=1e-4, atol=1e-5
        )
    again = evaluate_run(tmp_path / "whole", tag="again")
    assert again.keys() == whole["eval"].keys()


def _first_logged_loss(run: Path) -> float:
    from iclab.files import read_jsonl

    return next(r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r)


@pytest.mark.skipif(DEVICE == "cpu", reason="the CPU's bf16 is tested in tests/training/test_speed_switches.py")
@pytest.mark.parametrize("name", ["regression", "lm", "reflex"])
def test_bf16_autocast_step_tracks_fp32(tmp_path, name):
    a = Trainer(_cfg(name, DEVICE, ["training.dtype=float32"]), tmp_path / "a")
    b = Trainer(_cfg(name, DEVICE, ["training.dtype=bfloat16"]), tmp_path / "b")
    b.model.load_state_dict(a.model.state_dict())
    assert b.amp_dtype is torch.bfloat16 and a.amp_dtype is None
    la = torch.stack([a.train_step(s)[0] for s in range(3)])
    lb = torch.stack([b.train_step(s)[0] for s in range(3)])
    assert lb.dtype == torch.float32 and not torch.equal(la, lb)  # really another precision
    torch.testing.assert_close(lb, la, rtol=3e-2, atol=1e-2)


@pytest.mark.parametrize("scope", ["blocks", "model"])
def test_inductor_compiled_step_matches_eager(tmp_path, scope):
    """torch.compile with inductor (Triton kernels on CUDA): three steps of the quickstart model agree with eager."""
    torch._dynamo.reset()
    extra = ["training.dtype=float32"]
    eager = Trainer(_cfg("regression", DEVICE, extra), tmp_path / "e")
    comp = Trainer(
        _cfg("regression", DEVICE, [*extra, "training.compile=true", f"training.compile_scope={scope}"]), tmp_path / "c"
    )
    comp.model.load_state_dict(eager.model.state_dict())
    le = torch.stack([eager.train_step(s)[0] for s in range(3)])
    lc = torch.stack([comp.train_step(s)[0] for s in range(3)])
    torch.testing.assert_close(lc, le, rtol=1e-3, atol=1e-4)
