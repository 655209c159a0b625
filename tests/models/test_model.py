import torch

from iclab.config import ModelConfig
from iclab.models.transformer import ICLTransformer, interleave


def test_interleave_hand_built_prompt():
    xs = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    ys = torch.tensor([[10.0, 20.0]])
    z = interleave(xs, ys)
    expected = torch.tensor([[[1.0, 2.0], [10.0, 0.0], [3.0, 4.0], [20.0, 0.0]]])
    assert torch.equal(z, expected)


def test_readout_at_x_positions_is_causal():
    """The prediction for point i must not depend on y_i or anything after x_i."""
    torch.manual_seed(0)
    m = ICLTransformer(ModelConfig(n_embd=16, n_layer=2, n_head=2, n_positions=32), n_dims=3).eval()
    xs, ys = torch.randn(2, 5, 3), torch.randn(2, 5)
    p = m.predict(xs, ys)
    assert p.shape == (2, 5)
    ys2 = ys.clone()
    ys2[:, 2] += 5.0  # changes y_3 (index 2): predictions 0..2 unchanged, 3.. change
    xs2 = xs.clone()
    p2 = m.predict(xs2, ys2)
    assert torch.allclose(p[:, :3], p2[:, :3], atol=1e-6)
    assert not torch.allclose(p[:, 3:], p2[:, 3:], atol=1e-4)


def test_readout_reads_x_token_hidden_state():
    """Compare against an independent computation of the x-token read-out."""
    torch.manual_seed(0)
    m = ICLTransformer(ModelConfig(n_embd=16, n_layer=1, n_head=2, n_positions=32), n_dims=3).eval()
    xs, ys = torch.randn(2, 4, 3), torch.randn(2, 4)
    with torch.no_grad():
        h = m.read_in(interleave(xs, ys)) + m.wpe.weight[:8]
        for b in m.blocks:
            h = b(h)
        ref = m.read_out(m.ln_f(h))[:, [0, 2, 4, 6], 0]
    assert torch.allclose(m.predict(xs, ys), ref, atol=1e-6)


def test_io_init_torch_is_nn_linear_default_and_gpt2_is_small_normal():
    """io_init=torch (the default, as in the reference code) draws read-in/out from uniform(+-1/sqrt(fan_in));
    gpt2 draws them from N(0, 0.02) like the blocks. The blocks are initialized the same way in both."""
    import math

    from iclab.config import ModelConfig
    from iclab.models.transformer import ICLTransformer

    d, C = 8, 256
    torch.manual_seed(0)
    m = ICLTransformer(ModelConfig(n_embd=C, n_layer=1, n_head=2, n_positions=16), n_dims=d)
    torch.manual_seed(0)
    g = ICLTransformer(ModelConfig(n_embd=C, n_layer=1, n_head=2, n_positions=16, io_init="gpt2"), n_dims=d)
    for lin, fan_in in ((m.read_in, d), (m.read_out, C)):
        bound = 1 / math.sqrt(fan_in)
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.9 * bound
        assert abs(lin.weight.std().item() - bound / math.sqrt(3)) < 0.1 * bound  # std of uniform(-a, a) = a/sqrt(3)
        assert lin.bias.abs().max() <= bound and lin.bias.abs().max() > 0
    for lin in (g.read_in, g.read_out):
        assert abs(lin.weight.std().item() - 0.02) < 0.004 and torch.all(lin.bias == 0)
    torch.testing.assert_close(m.blocks[0].attn.c_attn.weight, g.blocks[0].attn.c_attn.weight)


def test_read_in_std_sets_the_read_in_weights_only():
    from iclab.config import ModelConfig
    from iclab.models.transformer import ICLTransformer

    torch.manual_seed(0)
    base = ICLTransformer(ModelConfig(n_embd=128, n_layer=1, n_head=2, n_positions=16), n_dims=8)
    torch.manual_seed(0)
    m = ICLTransformer(ModelConfig(n_embd=128, n_layer=1, n_head=2, n_positions=16, read_in_std=0.5), n_dims=8)
    assert abs(m.read_in.weight.std().item() - 0.5) < 0.05
    torch.testing.assert_close(m.read_in.bias, base.read_in.bias)
    torch.testing.assert_close(m.read_out.weight, base.read_out.weight)
