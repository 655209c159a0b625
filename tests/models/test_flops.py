"""The analytic FLOP formula (iclab/models/flops.py) against torch's FlopCounterMode on tiny models.

FlopCounterMode has no formula for the CPU flash-attention kernel, so attention runs on the math
backend here, where it is plain batched matmuls that the counter sees (forward and backward)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from iclab.config import ModelConfig, validate
from iclab.models.flops import config_step_flops, predict_flops, seq_lens, train_step_flops
from iclab.models.transformer import ICLTransformer
from iclab.workloads.regression.workload import prediction_loss

CASES = [  # model options, n_dims, n_points
    (dict(n_layer=2), 3, 7),
    (dict(n_layer=1, loops=5, loop_window=2), 3, 7),
    (dict(n_layer=2, loops=6, loop_window=3, drop_tokens=3, min_tokens=4), 4, 6),
    (dict(n_layer=1, loops=4, injection="mul", pos_embedding="once", final_norm="once"), 2, 5),
]


@pytest.mark.parametrize("opts,d,n", CASES)
def test_train_step_flops_match_flop_counter(opts, d, n):
    torch.manual_seed(0)
    mc = ModelConfig(n_embd=16, n_head=2, n_positions=64, **opts)
    m = ICLTransformer(mc, d)
    xs, ys = torch.randn(4, n, d), torch.randn(4, n)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        prediction_loss(m(xs, ys), ys).backward()
    assert fc.get_total_flops() == train_step_flops(mc, n_dims=d, n_points=n, batch=4)


@pytest.mark.parametrize("opts,d,n", CASES)
def test_predict_flops_match_flop_counter(opts, d, n):
    mc = ModelConfig(n_embd=16, n_head=2, n_positions=64, **opts)
    m = ICLTransformer(mc, d).eval()
    xs, ys = torch.randn(3, n, d), torch.randn(3, n)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m.predict(xs, ys)
    assert fc.get_total_flops() == predict_flops(mc, n_dims=d, n_points=n, batch=3)


def test_standard_model_is_three_forward_passes():
    """Independent hand count for Garg's model: 12 layers x (24 B L C^2 + 4 B L^2 C) x 3, plus read-in/out."""
    cfg = validate(
        {
            "task": {"n_dims": 20, "n_points": 41},
            "model": {"n_layer": 12, "n_embd": 256},
            "training": {"batch_size": 64},
        }
    )
    B, L, C, d = 64, 82, 256, 20
    blocks = 12 * (24 * B * L * C * C + 4 * B * L * L * C)
    expected = 3 * blocks + 3 * 2 * B * 41 * C + 2 * 2 * B * L * d * C
    assert config_step_flops(cfg) == expected
    assert 3.0e11 < expected < 3.2e11


def test_token_dropping_lengths():
    mc = ModelConfig(n_layer=1, loops=6, drop_tokens=3, min_tokens=5)
    assert seq_lens(mc, 14, 6) == [14, 11, 8, 5, 5, 5]
    assert seq_lens(ModelConfig(loops=3), 14, 3) == [14, 14, 14]


LM_CASES = [
    dict(n_layer=2),
    dict(n_layer=1, loops=3, loop_window=2),
    dict(n_layer=1, loops=3, drop_tokens=3, min_tokens=4),
]


@pytest.mark.parametrize("opts", LM_CASES)
def test_lm_flops_match_flop_counter(opts):
    """The language-model head: tied LM head on every kept position, forward + backward and forward only."""
    from iclab.models.flops import lm_forward_flops, lm_train_step_flops
    from iclab.models.transformer import GPTLanguageModel
    from iclab.workloads.sequence.base import sequence_loss

    torch.manual_seed(0)
    mc = ModelConfig(n_embd=16, n_head=2, n_positions=64, **opts)
    m = GPTLanguageModel(mc, 11)
    x = torch.randint(0, 11, (4, 10))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        sequence_loss(m(x), x).backward()
    assert fc.get_total_flops() == lm_train_step_flops(mc, vocab_size=11, batch=4, seq_len=10)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m.logits(x)
    assert fc.get_total_flops() == lm_forward_flops(mc, vocab_size=11, batch=4, seq_len=10)
