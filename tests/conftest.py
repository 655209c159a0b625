import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg_dict():
    """A config that trains in a second or two on the CPU."""
    return {
        "seed": 0,
        "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
        "training": {"steps": 20, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
        "eval": {"n_prompts": 50, "batch_size": 25},
        "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
    }
