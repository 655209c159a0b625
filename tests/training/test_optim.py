import pytest
import torch

from iclab.config import ConfigError, validate
from iclab.models import make_model
from iclab.registry import OPTIMIZERS
from iclab.training.optim import MultiOptimizer, lr_factor, make_optimizer


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "muon"])
def test_every_optimizer_takes_a_step(name):
    cfg = validate(
        {
            "model": {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 16},
            "task": {"n_dims": 3, "n_points": 5},
            "training": {"lr": 0.05, "optimizer": {"name": name}},
        }
    )
    torch.manual_seed(0)
    m = make_model(cfg.model, "regression", n_dims=3)
    opt = make_optimizer(m, cfg.training)
    before = [p.detach().clone() for p in m.parameters()]
    loss = m.predict(torch.randn(4, 5, 3), torch.randn(4, 5)).pow(2).mean()
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert changed == len(before)


def test_muon_splits_hidden_matrices_from_the_rest():
    cfg = validate(
        {
            "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16},
            "task": {"n_dims": 3, "n_points": 5},
            "training": {"optimizer": {"name": "muon"}},
        }
    )
    m = make_model(cfg.model, "regression", n_dims=3)
    opt = make_optimizer(m, cfg.training)
    assert isinstance(opt, MultiOptimizer)
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    muon_ids = {id(p) for g in muon.param_groups for p in g["params"]}
    for n, p in m.named_parameters():
        assert (id(p) in muon_ids) == (p.ndim == 2 and n.startswith("blocks."))


def test_sgd_options_reach_torch():
    cfg = validate({"training": {"optimizer": {"name": "sgd", "options": {"momentum": 0.9, "nesterov": True}}}})
    assert cfg.training.optimizer.options["nesterov"] is True
    assert "muon" in OPTIMIZERS.names()


def test_warmup_cosine_schedule():
    t = validate(
        {"training": {"steps": 100, "schedule": "warmup_cosine", "warmup_steps": 10, "min_lr_ratio": 0.1}}
    ).training
    assert lr_factor(t, 0) == pytest.approx(0.1)
    assert lr_factor(t, 9) == pytest.approx(1.0)
    assert lr_factor(t, 10) == pytest.approx(1.0)
    assert lr_factor(t, 55) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(t, 100) == pytest.approx(0.1)


def test_warmup_stable_decay_schedule():
    t = validate(
        {
            "training": {
                "steps": 100,
                "schedule": "warmup_stable_decay",
                "warmup_steps": 10,
                "decay_fraction": 0.2,
                "min_lr_ratio": 0.0,
            }
        }
    ).training
    assert lr_factor(t, 0) == pytest.approx(0.1)
    assert lr_factor(t, 9) == pytest.approx(1.0)
    assert [lr_factor(t, s) for s in (10, 50, 80)] == pytest.approx([1.0, 1.0, 1.0])  # stable until the last 20 steps
    assert lr_factor(t, 90) == pytest.approx(0.5)  # linear from 1 at step 80 to 0 at step 100
    assert lr_factor(t, 99) == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="decay_fraction"):
        validate({"training": {"decay_fraction": 0}})


def test_linear_decay_schedule():
    t = validate(
        {"training": {"steps": 100, "schedule": "linear_decay", "warmup_steps": 10, "min_lr_ratio": 0.1}}
    ).training
    assert [lr_factor(t, s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    # after warmup: 1 at step 10, 1 - 0.9 * (s - 10) / 90 after, 0.1 at the last step
    assert [lr_factor(t, s) for s in (10, 55, 100)] == pytest.approx([1.0, 0.55, 0.1])


def test_inverse_sqrt_schedule():
    t = validate(
        {"training": {"steps": 1000, "schedule": "inverse_sqrt", "warmup_steps": 4, "min_lr_ratio": 0.05}}
    ).training
    assert [lr_factor(t, s) for s in (0, 3)] == pytest.approx([0.25, 1.0])
    assert [lr_factor(t, s) for s in (4, 15, 99)] == pytest.approx([(4 / 5) ** 0.5, 0.5, 0.2])  # sqrt(4 / (s + 1))
    assert lr_factor(t, 999) == pytest.approx(0.063245553)
    t = validate(
        {"training": {"steps": 10**6, "schedule": "inverse_sqrt", "warmup_steps": 4, "min_lr_ratio": 0.05}}
    ).training
    assert lr_factor(t, 10**5) == pytest.approx(0.05)  # floored at min_lr_ratio
    no_warmup = validate({"training": {"steps": 100, "schedule": "inverse_sqrt"}}).training
    assert [lr_factor(no_warmup, s) for s in (0, 3)] == pytest.approx([1.0, 0.5])
