"""The loop of iclab.models.transformer against an independent, slow re-implementation of the spec
(explicit LayerNorm, masked softmax attention, tanh-GELU MLP, written from the weights)."""

import math

import pytest
import torch
import yaml

from iclab.config import ConfigError, ModelConfig, dump_config, validate
from iclab.evaluation.regression import model_predictions, per_iteration_predictions
from iclab.models.transformer import ICLTransformer
from iclab.workloads.regression.workload import prediction_loss


def make(seed=0, n_dims=3, **kw):
    torch.manual_seed(seed)
    base = dict(n_embd=16, n_head=2, n_positions=64) | ({} if "layers_per_loop" in kw else {"n_layer": 1})
    m = ICLTransformer(ModelConfig(**(base | kw)), n_dims=n_dims).eval()
    with torch.no_grad():  # non-trivial LN affine parameters, so that applying LN or not matters
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
    return m


def data(B=3, n=6, d=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, n, d, generator=g), torch.randn(B, n, generator=g)


# --- the reference --------------------------------------------------------------------------------------


def ref_ln(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def ref_act(z, name):
    if name == "gelu_tanh":
        return 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    if name == "gelu":
        return 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))
    return z.clamp(min=0)


def ref_block(x, blk, n_head, act="gelu_tanh"):
    B, L, C = x.shape
    hd = C // n_head
    a = ref_ln(x, blk.ln_1)
    qkv = a @ blk.attn.c_attn.weight.T + blk.attn.c_attn.bias
    q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]
    heads = []
    mask = torch.ones(L, L).tril().bool()
    for h in range(n_head):
        sl = slice(h * hd, (h + 1) * hd)
        s = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd)
        s = s.masked_fill(~mask, float("-inf"))
        heads.append(torch.softmax(s, -1) @ v[..., sl])
    x = x + torch.cat(heads, -1) @ blk.attn.c_proj.weight.T + blk.attn.c_proj.bias
    a = ref_ln(x, blk.ln_2)
    z = a @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias
    z = ref_act(z, act)
    return x + z @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias


def ref_tokens(xs, ys):
    B, n, d = xs.shape
    toks = torch.zeros(B, 2 * n, d)
    for i in range(n):
        toks[:, 2 * i] = xs[:, i]
        toks[:, 2 * i + 1, 0] = ys[:, i]
    return toks


@torch.no_grad()
def ref_loop(m, xs, ys, b):
    """Every iteration's predictions, as (position index list, (B, m) tensor), straight from the spec."""
    c = m.cfg
    e = ref_tokens(xs, ys) @ m.read_in.weight.T + m.read_in.bias
    N = e.shape[1]
    h = {"add": torch.zeros_like(e), "mul": torch.ones_like(e), "none": e.clone()}[c.injection]
    out = []
    for t in range(b):
        L = N if c.drop_tokens == 0 else min(N, max(N - t * c.drop_tokens, c.min_tokens))
        first = N - L  # index of the first kept token in the full prompt
        h, e_t = h[:, h.shape[1] - L :], e[:, first:]
        u = {"add": h + e_t, "mul": h * e_t, "none": h}[c.injection]
        if c.pos_embedding == "every_loop" or t == 0:
            ids = list(range(L)) if c.drop_positions == "restart" else list(range(first, N))
            u = u + m.wpe.weight[ids]
        for blk in m.blocks:
            u = ref_block(u, blk, c.n_head, c.activation)
        h = ref_ln(u, m.ln_f) if c.final_norm == "every_loop" else u
        r = ref_ln(u, m.ln_f) @ m.read_out.weight.T + m.read_out.bias
        xpos = [j for j in range(first, N) if j % 2 == 0]  # x tokens of the full prompt that are kept
        out.append(([j // 2 for j in xpos], r[:, [j - first for j in xpos], 0]))
    return out


# --- the standard model is b = 1 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant", [dict(injection="none", pos_embedding="once", final_norm="once", loops=1, loop_window=1), dict()]
)  # the plain and the default (add/every_loop) spellings of b = 1
def test_b1_equals_the_standard_one_layer_model(variant):
    m = make(**variant)
    xs, ys = data()
    with torch.no_grad():  # a standard GPT-2 forward, written out: read-in + positions -> block -> LN -> read-out
        h = ref_tokens(xs, ys) @ m.read_in.weight.T + m.read_in.bias + m.wpe.weight[: 2 * xs.shape[1]]
        ref = (ref_ln(ref_block(h, m.blocks[0], 2), m.ln_f) @ m.read_out.weight.T + m.read_out.bias)[:, ::2, 0]
    preds = m(xs, ys)
    assert len(preds) == 1
    torch.testing.assert_close(preds[0], ref, atol=1e-5, rtol=1e-5)


def test_first_add_iteration_is_f_of_e():
    m = make(loops=4, loop_window=4)
    xs, ys = data()
    with torch.no_grad():
        e = ref_tokens(xs, ys) @ m.read_in.weight.T + m.read_in.bias
        f_e = ref_ln(ref_block(e + m.wpe.weight[: e.shape[1]], m.blocks[0], 2), m.ln_f)
        ref = (f_e @ m.read_out.weight.T + m.read_out.bias)[:, ::2, 0]
    preds = m(xs, ys)
    assert len(preds) == 4
    torch.testing.assert_close(preds[0], ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(preds[1], preds[0], atol=1e-3)  # the loop does something


# --- every mechanism against the reference ------------------------------------------------------------

VARIANTS = {
    "add/every": dict(),
    "mul": dict(injection="mul"),
    "none": dict(injection="none"),
    "pos once": dict(pos_embedding="once"),
    "norm once": dict(final_norm="once"),
    "both once": dict(pos_embedding="once", final_norm="once"),
    "2 blocks per loop": dict(n_layer=2),
    "3 reused, plain": dict(layers_per_loop=3, injection="none", pos_embedding="once", final_norm="once"),
    "drop d=2 k=4": dict(drop_tokens=2, min_tokens=4),
    "drop d=3 k=3 restart": dict(drop_tokens=3, min_tokens=3, drop_positions="restart"),
    "drop d=100 k=5": dict(drop_tokens=100, min_tokens=5),
    "relu": dict(activation="relu"),
    "gelu (erf), 2 blocks": dict(activation="gelu", n_layer=2),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_iteration_matches_the_reference(name):
    b = 5
    m = make(loops=b, loop_window=b, **VARIANTS[name])
    xs, ys = data()
    got = m(xs, ys)
    ref = ref_loop(m, xs, ys, b)
    assert len(got) == b
    for t, (g, (_pts, r)) in enumerate(zip(got, ref)):
        assert g.shape == r.shape, (t, g.shape, r.shape)
        torch.testing.assert_close(g, r, atol=2e-5, rtol=1e-4)
    # the window keeps the last T of the same iterations
    last2 = m(xs, ys, window=2)
    for g, (_, r) in zip(last2, ref[-2:]):
        torch.testing.assert_close(g, r, atol=2e-5, rtol=1e-4)


def test_layers_per_loop_is_n_layer():
    cfg = validate({"model": {"layers_per_loop": 3, "loops": 2}})
    assert cfg.model.n_layer == 3
    assert "n_layer: 3" in dump_config(cfg)
    assert validate(yaml.safe_load(dump_config(cfg))).model.n_layer == 3  # the saved config loads back
    with pytest.raises(ConfigError, match="one setting"):
        validate({"model": {"layers_per_loop": 3, "n_layer": 2}})


# --- token dropping -----------------------------------------------------------------------------------------


def lengths_seen(m, xs, ys, **kw):
    seen = []
    hook = m.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    try:
        m(xs, ys, **kw)
    finally:
        hook.remove()
    return seen


def test_drop_zero_is_no_dropping():
    xs, ys = data(n=7)
    plain = make(loops=6, loop_window=3)
    d0 = make(loops=6, loop_window=3, drop_tokens=0, min_tokens=5, drop_positions="restart")
    for a, b in zip(plain(xs, ys), d0(xs, ys)):
        assert torch.equal(a, b)
    assert lengths_seen(d0, xs, ys) == [14] * 6


@pytest.mark.parametrize(
    "d, k, expected",
    [
        (1, 5, [14, 13, 12, 11, 10, 9, 8, 7]),
        (3, 4, [14, 11, 8, 5, 4, 4, 4, 4]),
        (100, 5, [14, 5, 5, 5, 5, 5, 5, 5]),
        (2, 20, [14] * 8),
    ],
)
def test_each_iteration_sees_the_documented_number_of_tokens(d, k, expected):
    """n = 7 points = 14 tokens; iteration t sees min(14, max(14 - t*d, k)) tokens and predicts the x's among them."""
    m = make(loops=8, loop_window=8, drop_tokens=d, min_tokens=k)
    xs, ys = data(n=7)
    assert lengths_seen(m, xs, ys) == expected
    assert [p.shape[1] for p in m(xs, ys)] == [L // 2 for L in expected]


def test_loss_counts_only_predicted_positions():
    m = make(loops=4, loop_window=4, drop_tokens=3, min_tokens=3)
    xs, ys = data(n=5)
    preds = m(xs, ys)
    manual = sum(((p - ys[:, 5 - p.shape[1] :]) ** 2).mean() for p in preds) / 4
    torch.testing.assert_close(prediction_loss(preds, ys), manual)
    assert [p.shape[1] for p in preds] == [5, 3, 2, 1]


def test_min_tokens_below_two_is_refused():
    with pytest.raises(ConfigError, match="model.min_tokens"):
        validate({"model": {"loops": 4, "drop_tokens": 2, "min_tokens": 1}})


# --- gradients and memory -------------------------------------------------------------------------------------


def test_gradient_reaches_only_the_last_T_iterations():
    b, T = 7, 3
    m = make(loops=b, loop_window=T).train()
    xs, ys = data()
    grad_mode, backward_hits = [], []

    def fwd(mod, args, out):
        grad_mode.append(torch.is_grad_enabled())
        if out.requires_grad:
            out.register_hook(lambda g: backward_hits.append(1))

    hook = m.blocks[0].register_forward_hook(fwd)
    prediction_loss(m(xs, ys), ys).backward()
    hook.remove()
    assert grad_mode == [False] * (b - T) + [True] * T
    assert len(backward_hits) == T
    assert all(p.grad is not None for p in m.parameters())


def saved_bytes(m, xs, ys, **kw):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(xs, ys, **kw)
    return total[0]


def test_memory_does_not_grow_with_b_at_fixed_T():
    m = make(loops=40, loop_window=2).train()
    xs, ys = data()
    sizes = [saved_bytes(m, xs, ys, loops=b, window=2) for b in (2, 5, 40)]
    assert sizes[0] == sizes[1] == sizes[2] > 0
    assert saved_bytes(m, xs, ys, loops=40, window=4) > sizes[0]  # ... but it does with T


# --- evaluation of looped models -------------------------------------------------------------------------------


def test_per_prefix_evaluation_equals_one_pass_without_dropping():
    m = make(loops=4)
    xs, ys = data(n=6)
    one_pass = per_iteration_predictions(m, xs, ys, loops=4, window=4)
    for i in range(6):
        cut = torch.stack(m(xs[:, : i + 1], ys[:, : i + 1], window=4))[:, :, -1]
        torch.testing.assert_close(one_pass[:, :, i], cut, atol=1e-5, rtol=1e-5)


def test_dropping_models_are_evaluated_per_prefix():
    m = make(loops=5, drop_tokens=2, min_tokens=4)
    xs, ys = data(n=6)
    pred = model_predictions(m, xs, ys, loops=5)
    assert pred.shape == (3, 6)
    for i in range(6):
        torch.testing.assert_close(pred[:, i], m.predict(xs[:, : i + 1], ys[:, : i + 1])[:, -1])
    # the full prompt's last iteration keeps 4 tokens (x_5, y_5, x_6, y_6) and predicts points 5 and 6; its
    # prediction for point 5 comes from another window than that of the prompt cut after x_5
    full_last = m.predict(xs, ys)
    assert full_last.shape == (3, 2)
    torch.testing.assert_close(full_last[:, 1], pred[:, 5])
    assert not torch.allclose(full_last[:, 0], pred[:, 4], atol=1e-4)


def test_far_more_loops_and_longer_prompts_than_trained():
    m = make(loops=3, n_positions=128)
    xs, ys = data(n=40)
    preds = m(xs, ys, loops=100, window=100)
    assert len(preds) == 100 and all(p.shape == (3, 40) for p in preds)
    assert all(torch.isfinite(p).all() for p in preds)
    with pytest.raises(ValueError, match="n_positions"):
        m(*data(n=70))
