"""The optimizer registry: every entry lowers a convex quadratic, its state survives a checkpoint round
trip bit for bit, parameter groups follow the literature, and schedule-free runs are evaluated (and
saved) at their eval-mode weights."""

import shutil

import pytest
import torch
from _faultkit import assert_same_weights, cfg_dict, crash_after

from iclab.config import ConfigError, validate
from iclab.registry import OPTIMIZERS
from iclab.runs import train_run
from iclab.training import checkpoint as ck
from iclab.training.optim import Params, build_optimizer, eval_weights, train_mode

ALL = [
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamw",
    "adamw_schedulefree",
    "adan",
    "kl_shampoo",
    "lamb",
    "lion",
    "muon",
    "psgd",
    "rmsprop",
    "sgd",
    "sgd_schedulefree",
    "shampoo",
    "soap",
]
# step sizes that suit each rule on the quadratic below (sign/normalized updates want a small one)
LR = {
    "sgd": 0.1,
    "sgd_schedulefree": 0.1,
    "adadelta": 1.0,
    "adagrad": 0.1,
    "lion": 0.01,
    "lamb": 0.02,
    "muon": 0.02,
    "rmsprop": 0.01,
}


def test_the_registry_holds_every_optimizer_with_its_library():
    assert OPTIMIZERS.names() == sorted(ALL)
    sources = {n: OPTIMIZERS.get(n).source for n in ALL}
    assert {sources[n] for n in ("soap", "psgd", "kl_shampoo")} == {"heavyball"}
    assert {sources[n] for n in ("shampoo", "lion", "lamb", "adan")} == {"pytorch-optimizer"}
    assert {sources[n] for n in ("adamw_schedulefree", "sgd_schedulefree")} == {"schedulefree"}
    assert sources["adafactor"] == sources["muon"] == "torch"


class Quadratic(torch.nn.Module):
    """f = |W X - Y|^2 / n + |b - c|^2 + |E - F|^2: convex, with a hidden matrix (blocks.0), a bias and an
    embedding table, so the matrix optimizers and the AdamW beside them both have work."""

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(6, 4)])
        self.wpe = torch.nn.Embedding(3, 4)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("X", torch.randn(6, 32, generator=g))
        self.register_buffer("Y", torch.randn(4, 32, generator=g))
        self.register_buffer("F", torch.randn(3, 4, generator=g))

    def forward(self):
        lin = self.blocks[0]
        return (lin.weight @ self.X + lin.bias[:, None] - self.Y).pow(2).mean() + (self.wpe.weight - self.F).pow(
            2
        ).mean()


def _steps(model, opt, n):
    for _ in range(n):
        train_mode(opt)
        loss = model()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _setup(name):
    torch.manual_seed(0)
    model = Quadratic()
    return model, build_optimizer(name, model, LR.get(name, 0.03))


@pytest.mark.parametrize("name", ALL)
def test_each_optimizer_lowers_a_convex_quadratic(name):
    model, opt = _setup(name)
    with torch.no_grad():
        start = float(model())
    _steps(model, opt, 60)
    with torch.no_grad(), eval_weights(opt):
        end = float(model())
    assert end < 0.7 * start, (start, end)


@pytest.mark.parametrize("name", [n for n in ALL if not n.endswith("schedulefree")])
def test_the_lr_schedule_reaches_every_optimizer(name):
    """set_lr(0) freezes the parameters (heavyball keeps its own "base_lr" key: iclab's must not collide).
    Schedule-free entries are left out: their average keeps moving toward z at lr 0."""
    from iclab.training.optim import set_lr

    model, opt = _setup(name)
    _steps(model, opt, 3)
    set_lr(opt, 0.0)
    before = [p.detach().clone() for p in model.parameters()]
    _steps(model, opt, 2)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    set_lr(opt, 1.0)
    _steps(model, opt, 1)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def _tensors(x, prefix=""):
    out = {}
    if isinstance(x, torch.Tensor):
        out[prefix] = x
    elif isinstance(x, dict):
        for k, v in x.items():
            out.update(_tensors(v, f"{prefix}.{k}"))
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            out.update(_tensors(v, f"{prefix}.{i}"))
    return out


@pytest.mark.parametrize("name", ALL)
def test_state_survives_a_checkpoint_round_trip_bit_for_bit(name, tmp_path):
    """Save after 5 steps (model, optimizer, RNG: PSGD draws random probes), take 4 more; a fresh model and
    optimizer loaded from the file take the same 4 steps to the same parameters and state, bit for bit."""
    model, opt = _setup(name)
    _steps(model, opt, 5)
    path = tmp_path / "c.safetensors"
    ck.save_checkpoint(
        path,
        model_state=model.state_dict(),
        optim_state=opt.state_dict(),
        rng=ck.rng_state(torch.device("cpu")),
        trainer={},
        identity={},
    )
    _steps(model, opt, 4)

    state = ck.load_checkpoint(path)
    model2, opt2 = _setup(name)
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optim"])
    ck.set_rng_state(state["rng"], torch.device("cpu"))
    _steps(model2, opt2, 4)
    for (n, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), n
    sa, sb = _tensors(opt.state_dict()), _tensors(opt2.state_dict())
    assert sa.keys() == sb.keys() and (sa or name == "sgd")  # plain SGD keeps no state
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name", ["soap", "psgd", "adamw_schedulefree"])
def test_a_resumed_run_ends_as_the_uninterrupted_one(name, tmp_path):
    """Through the trainer: crash after the checkpoint at step 10 of 20, resume, same final weights."""
    opts = {"adamw_schedulefree": {}}.get(name, {})
    training = {"steps": 20, "optimizer": {"name": name, "options": opts}}
    if OPTIMIZERS.get(name).schedule_free:
        training.update(schedule="constant", warmup_steps=0)
    d = cfg_dict(training=training)
    ref = tmp_path / "ref"
    train_run(validate(d), ref, evaluate_after=False)
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    crash_after(run, 10)
    train_run(None, run, resume=True, evaluate_after=False)
    assert_same_weights(ref, run)


def test_parameter_groups_exclude_norms_biases_and_embeddings_from_decay():
    from iclab.models import make_model

    cfg = validate(
        {"model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16}, "task": {"n_dims": 3, "n_points": 5}}
    )
    model = make_model(cfg.model, "regression", n_dims=3)
    names = {id(p): n for n, p in model.named_parameters()}

    opt = build_optimizer("lion", model, 1e-3, {"weight_decay": 0.1})  # new entries: decay_on=weights
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed and all(n.endswith(".weight") and "ln" not in n and n != "wpe.weight" for n in decayed)
    assert {n for n in names.values() if n.startswith("blocks.") and n.endswith("c_fc.weight")} <= decayed
    assert "read_in.weight" in decayed and "wpe.weight" not in decayed

    old = build_optimizer("adamw", model, 1e-3)  # adamw keeps decay on everything unless asked
    assert len(old.param_groups) == 1 and old.param_groups[0]["weight_decay"] == 0.01
    new = build_optimizer("adamw", model, 1e-3, {"decay_on": "weights"})
    assert [g["weight_decay"] for g in new.param_groups] == [0.01, 0.0]

    soap = build_optimizer("soap", model, 1e-3, {"adamw_weight_decay": 0.1})  # matrix optimizer + AdamW
    matrix_part, adamw_part = soap.optimizers
    in_matrix = {names[id(p)] for g in matrix_part.param_groups for p in g["params"]}
    assert in_matrix == {n for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("blocks.")}
    assert isinstance(adamw_part, torch.optim.AdamW)
    assert [g["weight_decay"] for g in adamw_part.param_groups] == [0.1, 0.0]  # read-in/out decay, the rest not


def test_params_of_a_bare_point_take_the_matrix_optimizer_with_scope_all():
    point = torch.nn.Parameter(torch.tensor([[1.0, -2.0]]))
    opt = build_optimizer("muon", Params([("point", point)]), 0.1, {"matrices": "all"})
    assert len(opt.optimizers) == 1 and isinstance(opt.optimizers[0], torch.optim.Muon)


def test_schedule_free_needs_the_constant_schedule():
    with pytest.raises(ConfigError, match="schedule-free"):
        validate({"training": {"optimizer": {"name": "adamw_schedulefree"}, "schedule": "warmup_cosine"}})
    with pytest.raises(ConfigError, match="optimizer.options.warmup_steps"):
        validate({"training": {"optimizer": {"name": "sgd_schedulefree"}, "warmup_steps": 10}})
    with pytest.raises(ConfigError, match="decay_on"):
        validate({"training": {"optimizer": {"name": "lion", "options": {"decay_on": "norms"}}}})


def test_a_schedule_free_run_is_saved_and_evaluated_at_its_eval_weights(tmp_path):
    """model.safetensors and eval.json are x (eval mode); the last checkpoint holds y (train mode) and the
    optimizer state, and x recomputed from them equals the saved weights. Evaluating y gives another error."""
    from iclab.runs import evaluate_run, load_run_config
    from iclab.training.optim import eval_weights_from_state
    from iclab.workloads import make_workload

    d = cfg_dict(
        training={
            "steps": 20,
            "schedule": "constant",
            "warmup_steps": 0,
            "lr": 1e-2,
            "optimizer": {"name": "adamw_schedulefree", "options": {"warmup_steps": 5}},
        }
    )
    run = tmp_path / "run"
    out = train_run(validate(d), run)
    final = ck.load_weights(run / "model.safetensors")
    state = ck.load_checkpoint(ck.list_checkpoints(run / "checkpoints")[-1][1])
    y = state["model"]
    assert any(not torch.equal(final[k], y[k]) for k in final)  # x differs from y

    cfg = load_run_config(run)
    model = make_workload(cfg).build_model()
    model.load_state_dict(y)
    eval_weights_from_state(model, cfg.training, state["optim"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, final[k]), k

    err_x = out["eval"]["model"]["mean"]
    model.load_state_dict(y)
    err_y = evaluate_run(run, cfg=cfg, model=model, tag="y")["model"]["mean"]
    assert err_x != err_y
    (run / "model.safetensors").unlink()  # a run with only checkpoints is evaluated at x too
    err_ckpt = evaluate_run(run, cfg=cfg, tag="ckpt")["model"]["mean"]
    assert err_ckpt == pytest.approx(err_x, rel=1e-6)


def test_eval_weights_restores_train_weights_bit_for_bit():
    model, opt = _setup("sgd_schedulefree")
    _steps(model, opt, 5)
    before = [p.detach().clone() for p in model.parameters()]
    with eval_weights(opt):
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_list_optimizers_names_each_source_library():
    from typer.testing import CliRunner

    from iclab.cli import app

    out = CliRunner().invoke(app, ["list", "optimizers"]).output
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.strip()}
    assert set(lines) == set(ALL)
    for name in ALL:
        assert f"[{OPTIMIZERS.get(name).source}]" in lines[name]
    assert "[heavyball] SOAP" in lines["soap"] and "[schedulefree]" in lines["sgd_schedulefree"]


def test_a_schedule_free_run_does_not_depend_on_how_often_it_logs(tmp_path):
    """Each log step evaluates at x and goes back to y; y must come back exactly (the lerps do not
    round-trip in floating point), so logging every 2 or every 5 steps ends with the same weights."""
    runs = []
    for every in (2, 5):
        d = cfg_dict(
            training={
                "steps": 20,
                "schedule": "constant",
                "warmup_steps": 0,
                "optimizer": {"name": "sgd_schedulefree"},
            },
            logging=dict(cfg_dict()["logging"], log_every=every),
        )
        train_run(validate(d), tmp_path / f"every{every}", evaluate_after=False)
        runs.append(tmp_path / f"every{every}")
    assert_same_weights(*runs)
