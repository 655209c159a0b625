"""The language-model head around the shared trunk: loss, causality, weight tying, the loop."""

import torch
import torch.nn.functional as F

from iclab.config import ModelConfig
from iclab.models import count_params, make_model
from iclab.models.transformer import GPTLanguageModel, ICLTransformer
from iclab.workloads.sequence.base import IGNORE, sequence_loss


def _lm(**kw):
    torch.manual_seed(0)
    return GPTLanguageModel(ModelConfig(n_embd=16, n_head=2, n_layer=2, n_positions=32, **kw), 13)


def test_lm_loss_equals_an_independent_cross_entropy():
    m = _lm()
    x, y = torch.randint(0, 13, (3, 9)), torch.randint(0, 13, (3, 9))
    y[0, :4] = IGNORE
    logits = m.logits(x)
    logp = logits - logits.logsumexp(-1, keepdim=True)  # by hand, not F.cross_entropy
    keep = y != IGNORE
    manual = -logp[keep].gather(1, y[keep].unsqueeze(1)).mean()
    torch.testing.assert_close(sequence_loss(m(x), y), manual)


def test_changing_a_token_never_changes_earlier_logits():
    m = _lm().eval()
    x = torch.randint(0, 13, (2, 12))
    for t in (0, 5, 11):
        x2 = x.clone()
        x2[:, t] = (x2[:, t] + 1) % 13
        a, b = m.logits(x), m.logits(x2)
        assert torch.equal(a[:, :t], b[:, :t])
        assert not torch.allclose(a[:, t:], b[:, t:])


def test_lm_head_is_tied_to_the_token_embedding():
    m = _lm()
    x = torch.randint(0, 13, (2, 7))
    h = m.loop(m.wte(x), 1, 1)[-1]
    torch.testing.assert_close(m.logits(x), h @ m.wte.weight.T)
    assert "lm_head.weight" not in m.state_dict()  # one vocabulary-sized tensor, stored once
    sequence_loss(m(x), x).backward()
    assert m.wte.weight.grad[x.unique()].abs().sum() > 0
    unused = torch.ones(13, dtype=torch.bool)
    unused[x.unique()] = False
    assert m.wte.weight.grad[unused].abs().sum() > 0  # rows never embedded still learn, through the head
    C, V, L = 16, 13, 2
    blocks = L * (12 * C * C + 13 * C)  # qkv, proj, fc, proj weights + biases, two layer norms
    assert count_params(m) == V * C + 32 * C + blocks + 2 * C


def test_one_trunk_two_heads_same_blocks():
    cfg = ModelConfig(n_embd=16, n_head=2, n_layer=2, n_positions=32)
    torch.manual_seed(0)
    lm = make_model(cfg, "lm", vocab_size=13)
    reg = make_model(cfg, "regression", n_dims=3)
    assert isinstance(lm, GPTLanguageModel) and isinstance(reg, ICLTransformer)
    trunk_keys = {k for k in lm.state_dict() if not k.startswith("wte")}
    assert trunk_keys == {k for k in reg.state_dict() if not k.startswith(("read_in", "read_out"))}


def test_looped_lm_with_one_loop_equals_the_standard_lm_and_loops_repeat_the_blocks():
    m1 = _lm(loops=1).eval()
    m3 = _lm(loops=3, loop_window=3).eval()
    m3.load_state_dict(m1.state_dict())
    x = torch.randint(0, 13, (2, 8))
    assert torch.equal(m1.logits(x), m3.logits(x, loops=1))
    # three iterations by hand: h_{t+1} = ln_f(blocks(h_t + e + wpe)), h_0 = 0
    e, pos = m1.wte(x), m1.wpe(torch.arange(8))
    h = torch.zeros_like(e)
    outs = []
    for _ in range(3):
        u = h + e + pos
        for blk in m1.blocks:
            u = blk(u)
        h = m1.ln_f(u)
        outs.append(F.linear(h, m1.wte.weight))
    for got, want in zip(m3(x), outs):
        torch.testing.assert_close(got, want)
