"""The lecture's demonstrations at small sizes: each writes its JSON and figure, is deterministic, and
shows what it is meant to show (the finding, not just that it ran)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from iclab.cli import app
from iclab.demos import run_demo, trajectories


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_trajectories_every_method_descends_and_gd_solves_the_quadratic(tmp_path):
    grid = [3e-3, 3e-2, 9e-2, 1.0]
    r = trajectories.run(tmp_path, steps=100, functions=["quadratic", "beale"], lr_grid=grid)
    assert (tmp_path / "trajectories.png").stat().st_size > 10_000
    for fname, res in r["functions"].items():
        fn, start, xstar, _, _ = trajectories.FUNCTIONS[fname]
        f0 = float(fn(torch.tensor(start, dtype=torch.float64))) - float(fn(torch.tensor(xstar, dtype=torch.float64)))
        assert set(res["methods"]) == set(trajectories.METHODS)
        for m, v in res["methods"].items():
            assert not v["diverged"] and v["final_gap"] < f0, (fname, m, v["final_gap"])  # Muon, Shampoo too
            assert len(v["path"]) == 101
    assert r["functions"]["quadratic"]["methods"]["GD"]["final_gap"] < 1e-6
    again = trajectories.run(
        tmp_path, steps=100, functions=["quadratic"], methods=["SGD", "Muon", "Shampoo"], lr_grid=grid
    )
    for m, v in again["functions"]["quadratic"]["methods"].items():
        assert v == r["functions"]["quadratic"]["methods"][m]  # deterministic, SGD's noise included


def test_noise_floor_constant_steps_stall_and_decaying_steps_do_not(tmp_path):
    r = run_demo("noise-floor", tmp_path, seed=0, options={"steps": "1500", "runs": "8"})
    assert json.loads((tmp_path / "noise-floor.json").read_text())["tail_mean_gap"] == r["tail_mean_gap"]
    tail = r["tail_mean_gap"]
    big, small = tail[f"constant 1/L = {1 / r['L']:.3f}"], tail[f"constant 0.1/L = {0.1 / r['L']:.4f}"]
    assert big > 5 * small  # the floor grows with the step
    assert small > 5 * tail["2/(mu (k + 2L/mu))"]  # the 1/(mu k) step goes below the small step's floor
    curve = r["mean_gap"][f"constant 1/L = {1 / r['L']:.3f}"]
    assert max(curve[-10:]) > 0.3 * curve[len(curve) // 2]  # stalled: no progress over the second half


def test_heavy_tail_sgd_stalls_on_rare_classes_and_adam_does_not(tmp_path):
    r = run_demo(
        "heavy-tail", tmp_path, seed=0, options={"classes": "100", "examples": "2000", "steps": "150", "dim": "32"}
    )
    assert (tmp_path / "heavy-tail.png").is_file()
    sgd, adam = r["final_bucket_loss"]["sgd"], r["final_bucket_loss"]["adam"]
    assert sgd[0] < 0.5 and adam[0] < 0.5  # both learn the most frequent class
    assert sgd[-1] > 2 * adam[-1]  # the rarest group: SGD far behind Adam
    assert sgd[-1] > 0.3 * r["initial_loss"]


def test_demo_command_and_its_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app, ["demo", "noise-floor", "--out", str(tmp_path), "--option", "steps=200", "--option", "runs=2"]
    )
    assert res.exit_code == 0, res.output
    assert "SGD, step constant" in res.output and (tmp_path / "noise-floor.png").is_file()
    bad = runner.invoke(app, ["demo", "heavy-tail", "--out", str(tmp_path), "--option", "lr=3"])
    assert bad.exit_code == 2 and "has no option 'lr'" in bad.output
    bad = runner.invoke(app, ["demo", "spirals", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown demo 'spirals'" in bad.output
