"""Logits only where the loss counts: `GPTLanguageModel.forward(head_from=)` and `SequenceWorkload.loss_from`.
The loss with the head on the counted positions only must equal the loss over the full logits (an
independent computation: every position's logits, IGNORE masking by F.cross_entropy), and the FLOP formula
must follow the FLOPs actually run."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from iclab.config import ModelConfig, validate
from iclab.models.flops import lm_train_step_flops
from iclab.models.transformer import GPTLanguageModel
from iclab.workloads import make_workload
from iclab.workloads.sequence.base import IGNORE


@pytest.mark.parametrize("opts", [dict(n_layer=2), dict(n_layer=1, loops=3, drop_tokens=3, min_tokens=4)])
@pytest.mark.parametrize("head_from", [0, 4, 9])
def test_head_from_gives_the_tail_of_the_full_logits(opts, head_from):
    torch.manual_seed(0)
    m = GPTLanguageModel(ModelConfig(n_embd=16, n_head=2, n_positions=64, **opts), 11)
    x = torch.randint(0, 11, (3, 10))
    full, part = m(x), m(x, head_from=head_from)
    for f, p in zip(full, part):
        assert p.shape[1] == min(f.shape[1], 10 - head_from)
        torch.testing.assert_close(p, f[:, f.shape[1] - p.shape[1] :], rtol=0, atol=0)


def _cfg(task, seq_len, **options):
    return validate(
        {
            "task": {"name": task, **({"seq_len": seq_len} if seq_len else {}), "options": options},
            "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
            "training": {"steps": 2, "batch_size": 8, "device": "cpu"},
        }
    )


@pytest.mark.parametrize(
    "cfg",
    [_cfg("sorting", 6), _cfg("modular_arithmetic", None, p=7)],
    ids=["sorting", "modular"],
)
def test_loss_on_counted_positions_equals_the_full_loss(cfg):
    torch.manual_seed(0)
    wl = make_workload(cfg)
    model = wl.build_model()
    batch = wl.batch(0, {"loops": 1}, torch.device("cpu"))
    inputs, targets = batch
    start = wl.loss_from(inputs)
    assert start > 0 and (targets[:, :start] == IGNORE).all()  # nothing counted is cut off
    got = wl.loss(model, batch, {"loops": 1})
    logits = model.logits(inputs)  # every position
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_flop_formula_counts_the_head_from_loss_from():
    cfg = _cfg("sorting", 6)
    torch.manual_seed(0)
    wl = make_workload(cfg)
    model = wl.build_model()
    batch = wl.batch(0, {"loops": 1}, torch.device("cpu"))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        wl.loss(model, batch, {"loops": 1}).backward()
    assert fc.get_total_flops() == wl.step_flops()
    full = lm_train_step_flops(cfg.model, vocab_size=wl.vocab_size, batch=8, seq_len=12)
    assert wl.step_flops() < full  # the head on 6 of the 12 positions
