"""The speed switches: torch.compile (both scopes) agrees with eager and recompiles a bounded number of
times; optimizer implementations agree; bf16 autocast is refused on the CPU with a clear message.

The default-suite compile tests use the "aot_eager" backend (Dynamo + AOTAutograd trace the same graphs
as with inductor, without generating C++, which takes ~30 s per graph on a 2-core CPU); the slow-marked
test runs inductor itself."""

import pytest
import torch
from torch._dynamo.utils import counters

import iclab.training.compilation as compilation
from iclab.config import ConfigError, validate
from iclab.training.device import TrainingError
from iclab.training.trainer import Trainer

LOOPED = {
    "n_embd": 16,
    "n_layer": 1,
    "n_head": 2,
    "n_positions": 32,
    "loops": 4,
    "loop_window": 2,
    "drop_tokens": 2,
    "min_tokens": 6,
}


def _cfg(tiny, model=LOOPED, **training):
    d = {**tiny, "model": model, "task": {"name": "linear_regression", "n_dims": 3, "n_points": 6}}
    d["training"] = {**tiny["training"], **training}
    return validate(d)


def _train(cfg, tmp_path, steps=3):
    t = Trainer(cfg, tmp_path)
    losses = [t.train_step(s)[0] for s in range(steps)]
    return t, torch.stack(losses)


SMALL = {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32, "loops": 2, "loop_window": 1}


@pytest.mark.parametrize("scope", ["blocks", "model"])
def test_compiled_step_matches_eager(tmp_path, tiny_cfg_dict, monkeypatch, scope):
    """A 2-loop model (one no-grad and one grad iteration): 2 graphs for blocks, 1 for model."""
    monkeypatch.setattr(compilation, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    eager, le = _train(_cfg(tiny_cfg_dict, model=SMALL), tmp_path / "e", steps=2)
    comp, lc = _train(_cfg(tiny_cfg_dict, model=SMALL, compile=True, compile_scope=scope), tmp_path / "c", steps=2)
    torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-6)
    for (n, a), b in zip(eager.model.state_dict().items(), comp.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=n)


def test_block_compile_recompiles_a_bounded_number_of_times(tmp_path, tiny_cfg_dict, monkeypatch):
    """Token dropping (a different length every iteration), grad and no-grad iterations, and a points
    curriculum that changes the prompt length every step: at most 4 graphs (grad / no-grad, static
    then dynamic length). Recompilation is decided by Dynamo's guards, whatever the backend, so the
    test uses the cheapest ("eager")."""
    monkeypatch.setattr(compilation, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    counters.clear()
    d = {**tiny_cfg_dict, "model": LOOPED, "task": {"name": "linear_regression", "n_dims": 3, "n_points": 9}}
    d["training"] = {**d["training"], "compile": True}
    d["curriculum"] = {"points": {"start": 4, "end": 9, "inc": 1, "interval": 1}}
    t = Trainer(validate(d), tmp_path)
    for s in range(6):
        t.train_step(s)
    assert 2 <= counters["stats"]["unique_graphs"] <= 4


@pytest.mark.slow
def test_inductor_compiled_step_matches_eager(tmp_path, tiny_cfg_dict):
    """The real backend (C++ code generation): ~1-2 min on 2 cores."""
    torch._dynamo.reset()
    eager, le = _train(_cfg(tiny_cfg_dict), tmp_path / "e")
    comp, lc = _train(_cfg(tiny_cfg_dict, compile=True), tmp_path / "c")
    torch.testing.assert_close(lc, le, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager.model.parameters(), comp.model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_optimizer_implementations_agree(tmp_path, tiny_cfg_dict, impl):
    base = _cfg(tiny_cfg_dict, optimizer={"name": "adamw", "impl": "for_loop"})
    other = _cfg(tiny_cfg_dict, optimizer={"name": "adamw", "impl": impl})
    a, la = _train(base, tmp_path / "a")
    b, lb = _train(other, tmp_path / "b")
    torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-6)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_auto_picks_fused_where_it_exists(tmp_path, tiny_cfg_dict):
    t = Trainer(_cfg(tiny_cfg_dict, optimizer={"name": "adam"}), tmp_path)
    assert all(g["fused"] for g in t.opt.param_groups)
    t = Trainer(_cfg(tiny_cfg_dict, optimizer={"name": "rmsprop"}), tmp_path)
    assert not any(g.get("fused") for g in t.opt.param_groups) and not any(g["foreach"] for g in t.opt.param_groups)


def test_fused_is_refused_where_torch_has_none():
    with pytest.raises(ConfigError, match="rmsprop.*no fused"):
        validate({"training": {"optimizer": {"name": "rmsprop", "impl": "fused"}}})


def test_bf16_is_refused_on_a_cpu_without_native_bf16(tmp_path, tiny_cfg_dict, monkeypatch):
    from iclab.training import device

    monkeypatch.setattr(device, "cpu_bf16_supported", lambda: False)
    with pytest.raises(TrainingError, match="training.dtype=bfloat16.*no"):
        Trainer(_cfg(tiny_cfg_dict, dtype="bfloat16"), tmp_path)
    assert Trainer(_cfg(tiny_cfg_dict, dtype="auto"), tmp_path).amp_dtype is None
    # bfloat16_where_native: fp32 on such a CPU, never an error
    assert Trainer(_cfg(tiny_cfg_dict, dtype="bfloat16_where_native"), tmp_path).amp_dtype is None
    monkeypatch.setattr(device, "cpu_bf16_supported", lambda: True)  # opt-in only: auto stays fp32 on the CPU
    assert Trainer(_cfg(tiny_cfg_dict, dtype="bfloat16"), tmp_path).amp_dtype is torch.bfloat16
    assert Trainer(_cfg(tiny_cfg_dict, dtype="auto"), tmp_path).amp_dtype is None
    assert Trainer(_cfg(tiny_cfg_dict, dtype="bfloat16_where_native"), tmp_path).amp_dtype is torch.bfloat16


def test_cpu_bf16_step_runs_in_bf16_and_tracks_fp32(tmp_path, tiny_cfg_dict):
    """Where the CPU has native bf16 (AVX512-BF16/AMX), training.dtype=bfloat16 autocasts the step: the matmuls
    run in bf16, the predictions and the loss stay fp32 and close to the fp32 step's."""
    from iclab.training.device import cpu_bf16_supported

    if not cpu_bf16_supported():
        pytest.skip("this CPU has no native bf16")
    a = Trainer(_cfg(tiny_cfg_dict, dtype="float32"), tmp_path / "a")
    b = Trainer(_cfg(tiny_cfg_dict, dtype="bfloat16"), tmp_path / "b")
    la, _ = a.train_step(0)
    lb, _ = b.train_step(0)
    assert lb.dtype == torch.float32 and la != lb  # really another precision
    torch.testing.assert_close(lb, la, rtol=2e-2, atol=1e-2)


def test_dtype_resolution_on_cuda(monkeypatch):
    """The CUDA branch of training.dtype, without a GPU: auto and bfloat16 give bf16 autocast where supported."""
    from iclab.training.device import resolve_amp_dtype

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_amp_dtype("auto", cuda) is torch.bfloat16
    assert resolve_amp_dtype("bfloat16", cuda) is torch.bfloat16
    assert resolve_amp_dtype("float32", cuda) is None
    assert resolve_amp_dtype("bfloat16_where_native", cuda) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_amp_dtype("auto", cuda) is None
    assert resolve_amp_dtype("bfloat16_where_native", cuda) is None
    with pytest.raises(TrainingError, match="does not support bfloat16"):
        resolve_amp_dtype("bfloat16", cuda)


def test_read_out_stays_fp32_under_autocast():
    """Under bf16 autocast (run here with CPU autocast) the blocks compute in bf16 but the predictions,
    and so the loss, are fp32 and close to the fp32 model's."""
    from iclab.config import ModelConfig
    from iclab.models.transformer import ICLTransformer

    torch.manual_seed(0)
    m = ICLTransformer(ModelConfig(n_embd=32, n_layer=2, n_head=2, n_positions=32), 3)
    xs, ys = torch.randn(4, 6, 3), torch.randn(4, 6)
    ref = m(xs, ys)[-1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p = m(xs, ys)[-1]
        assert m.blocks[0].attn.c_attn(torch.randn(2, 32)).dtype is torch.bfloat16
    assert p.dtype is torch.float32
    torch.testing.assert_close(p, ref, rtol=0.05, atol=0.05)
