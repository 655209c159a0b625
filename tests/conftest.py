import copy
import shutil

import pytest


def pytest_configure(config):
    """One torch thread in every process that runs tests; the xdist controller runs none and skips torch's
    ~1.5 s import."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import torch

    torch.set_num_threads(1)


TINY_CFG = {  # a config that trains in a second or two on the CPU
    "seed": 0,
    "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
    "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
    "training": {"steps": 20, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
    "eval": {"n_prompts": 50, "batch_size": 25},
    "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
}


@pytest.fixture(scope="session", autouse=True)
def _matmul_peak_measured_once():
    """`iclab compare` measures the matmul peak (a 2048^3 matmul, four times: ~1.5 s on one core) every time it
    runs; the tests share one measurement per (device, dtype, size, threads) in each test process. Only the
    module attribute is wrapped: tests/test_bench.py times the function it imported itself."""
    from iclab.experiments import throughput

    measure, seen = throughput.measure_peak, {}

    def once(device, dtype, n=None, reps=3):
        import torch

        key = (str(device), dtype, n, reps, torch.get_num_threads())
        if key not in seen:
            seen[key] = measure(device, dtype, n, reps)
        return seen[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(throughput, "measure_peak", once)
        yield


@pytest.fixture
def tiny_cfg_dict():
    """A config that trains in a second or two on the CPU (a fresh copy per test)."""
    return copy.deepcopy(TINY_CFG)


@pytest.fixture(scope="session")
def _tiny_trained(tmp_path_factory):
    from iclab.config import validate
    from iclab.runs import train_run

    run = tmp_path_factory.mktemp("tiny-trained") / "run"
    train_run(validate(copy.deepcopy(TINY_CFG)), run)
    return run


@pytest.fixture(scope="module")
def tiny_run(_tiny_trained, tmp_path_factory):
    """A finished, evaluated run of TINY_CFG, trained once per test process and copied per test module (so a
    module may write into it)."""
    run = tmp_path_factory.mktemp("tiny-run") / "run"
    shutil.copytree(_tiny_trained, run)
    return run
