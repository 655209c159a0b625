"""Loss landscapes (iclab/analysis/landscape.py): filter-normalized directions, the slices against the model's
own loss on the same batches, the init line, the PCA plane, the comparison figure and the errors."""

import pytest
import torch
from typer.testing import CliRunner

from iclab.analysis import landscape as ls
from iclab.cli import app
from iclab.config import validate
from iclab.runs import load_run_config, train_run
from iclab.training.curriculum import Curriculum
from iclab.workloads import make_workload

runner = CliRunner()


def _cfg(tmp, **over):
    d = {
        "seed": 0,
        "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16},
        "training": {"steps": 30, "batch_size": 16, "lr": 3e-3, "device": "cpu"},
        "eval": {"n_prompts": 20, "batch_size": 20},
        "logging": {"log_every": 10, "ckpt_every": 10, "keep_last": 5, "tensorboard": False, "progress": False},
    }
    for k, v in over.items():
        d[k].update(v)
    return validate(d)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("land") / "run"
    train_run(_cfg(out), out, evaluate_after=False)
    return out


def test_each_filter_has_the_weights_norm_and_1d_params_are_zero():
    torch.manual_seed(0)
    cfg = _cfg(None, model={"dropout": 0.1})
    model = make_workload(cfg).build_model()
    w = {n: p.detach() for n, p in model.named_parameters()}
    d = ls.filter_normalized_direction(w, torch.Generator().manual_seed(3))
    n_filters = 0
    for name, p in w.items():
        if p.dim() <= 1:  # biases and LayerNorm gains/shifts
            assert torch.count_nonzero(d[name]) == 0, name
            continue
        wf, df = p.reshape(p.shape[0], -1).norm(dim=1), d[name].reshape(p.shape[0], -1).norm(dim=1)
        torch.testing.assert_close(df, wf, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(d[name] / (p.norm() + 1e-12), p / (p.norm() + 1e-12))  # random, not the weights
        n_filters += p.shape[0]
    assert n_filters > 100
    assert any(p.dim() <= 1 for p in w.values())


def _direct_loss(run_dir, state, n_batches):
    """The model's training loss on the landscape's batches, computed without the landscape code."""
    cfg = load_run_config(run_dir)
    wl = make_workload(cfg)
    model = wl.build_model()
    model.load_state_dict(state)
    model.eval()
    cur = Curriculum(cfg).at(cfg.training.steps - 1)
    with torch.no_grad():
        return (
            sum(float(wl.loss(model, wl.batch(ls.EVAL_STEP0 + i, cur, "cpu"), cur)) for i in range(n_batches))
            / n_batches
        )


def test_1d_slice_at_zero_is_the_models_loss_on_the_same_batches(run):
    from iclab.training.checkpoint import load_weights

    rec = ls.landscape(run, directions="random", dims=1, points=5, rng=(-1, 1), n_batches=3, seed=1)
    assert rec["alphas"][2] == 0.0
    direct = _direct_loss(run, load_weights(run / "model.safetensors"), 3)
    assert rec["loss"][2] == pytest.approx(direct, rel=1e-5)
    assert rec["center_loss"] == pytest.approx(direct, rel=1e-5)
    assert max(rec["loss"][0], rec["loss"][4]) > rec["loss"][2]  # a step of the weights' size leaves the minimum
    assert (run / "landscape_random_1d.json").is_file() and (run / "landscape_random_1d.png").is_file()


def test_init_line_goes_from_the_initial_to_the_final_weights(run):
    from iclab.training.checkpoint import load_weights

    cfg = load_run_config(run)
    torch.manual_seed(cfg.seed)  # the trainer's init, rebuilt independently
    init = make_workload(cfg).build_model().state_dict()
    saved = load_weights(run / "init.safetensors")
    for k, v in init.items():
        torch.testing.assert_close(saved[k], v)
    rec = ls.landscape(run, directions="init", dims=1, points=5, rng=(0, 1), n_batches=2)
    assert rec["loss"][0] == pytest.approx(_direct_loss(run, init, 2), rel=1e-5)
    assert rec["loss"][-1] == pytest.approx(_direct_loss(run, load_weights(run / "model.safetensors"), 2), rel=1e-5)
    assert rec["loss"][-1] < rec["loss"][0]


def test_2d_random_and_pca_planes(run):
    rec = ls.landscape(run, directions="random", dims=2, points=3, n_batches=1)
    assert len(rec["loss"]) == 3 and len(rec["loss"][0]) == 3
    assert rec["loss"][1][1] == pytest.approx(rec["center_loss"], rel=1e-6)
    assert abs(rec["cosine_d1_d2"]) < 0.2  # two random directions in many dimensions: nearly orthogonal
    pca = ls.landscape(run, directions="pca", dims=2, points=3, n_batches=1)
    steps = [p["step"] for p in pca["trajectory"]]
    assert steps == [0, 10, 20, 30]
    last = pca["trajectory"][-1]
    assert abs(last["x"]) < 1e-4 and abs(last["y"]) < 1e-4  # the center is the final point
    assert 0.3 < sum(pca["explained_variance"]) <= 1.0 + 1e-9
    assert (run / "landscape_pca_2d.png").is_file()


def test_side_by_side_comparison_and_checkpoint_choice(run, tmp_path):
    out = tmp_path / "cmp.png"
    res = runner.invoke(
        app,
        [
            "landscape",
            str(run),
            str(run),
            "--dims",
            "1",
            "--points",
            "3",
            "--batches",
            "1",
            "--checkpoint",
            "20",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.is_file() and (run / "landscape_random_1d_step20.json").is_file()


def test_bad_input_is_one_line(run, tmp_path):
    (run / "init.safetensors").rename(tmp_path / "init.safetensors")
    try:
        res = runner.invoke(app, ["landscape", str(run), "--directions", "init"])
        assert res.exit_code == 2 and "init.safetensors not found" in res.output
        assert "trained before" in res.output
    finally:
        (tmp_path / "init.safetensors").rename(run / "init.safetensors")
    for args, msg in (
        (["--checkpoint", "7"], "--checkpoint 7"),
        (["--range", "1,0"], "--range"),
        (["--directions", "pca", "--dims", "1"], "plane"),
        (["--directions", "sideways"], "--directions"),
    ):
        res = runner.invoke(app, ["landscape", str(run), *args])
        assert res.exit_code == 2 and msg in res.output, res.output
