"""Reflex attention (iclab/models/attention.py) against hand computations: the all-self scheme is the causal
model, a cross head is softmax attention over an earlier layer's K/V, nothing leaks from the future, the
linear / top-k sources start as the fixed allocation, gradients reach the reused K/V, and the FLOP formula."""

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from iclab.config import ConfigError, ModelConfig, validate
from iclab.models.flops import lm_forward_flops, lm_train_step_flops
from iclab.models.reflex_plan import reflex_plan
from iclab.models.transformer import GPTLanguageModel
from iclab.training.checkpoint import identity
from iclab.workloads.sequence.base import sequence_loss

V = 11
VARIANTS = {  # name -> model.attention (8 heads)
    "fixed_422": dict(allocation=[4, 2, 2]),
    "fixed_521_reproject": dict(allocation=[5, 2, 1], kv_source="reproject"),
    "all_layers": dict(all_layers=True),
    "all_layers_reproject": dict(all_layers=True, kv_source="reproject"),
    "linear": dict(allocation=[4, 2, 2], combine="linear"),
    "linear_reproject": dict(allocation=[4, 2, 2], combine="linear", kv_source="reproject"),
    "top_k": dict(allocation=[4, 2, 2], top_k=2),
    "top_k_reproject": dict(allocation=[4, 2, 2], top_k=2, kv_source="reproject"),
    "per_layer_seed": dict(allocation=[[8], [8], [4, 2, 2], [5, 2, 1], [4, 2, 2]]),
}


def model(att: dict | None, n_layer=5, seed=0, **opts) -> GPTLanguageModel:
    torch.manual_seed(seed)
    a = dict(name="reflex", **att) if att is not None else {}
    return GPTLanguageModel(ModelConfig(n_layer=n_layer, n_embd=32, n_head=8, n_positions=32, attention=a, **opts), V)


def attn_io(m: GPTLanguageModel, idx: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input LN_1(x), output) of every block's attention in one forward."""
    io = []
    hooks = [b.attn.register_forward_hook(lambda mod, args, out: io.append((args[0], out))) for b in m.blocks]
    m.logits(idx)
    for h in hooks:
        h.remove()
    return io


def causal_softmax_attention(q, k, v):
    """(B, T, H) each -> (B, T, H): softmax(q k^T / sqrt(H)) v over keys s <= t, written out."""
    T, H = q.shape[1], q.shape[2]
    scores = q @ k.transpose(1, 2) / math.sqrt(H)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


@pytest.mark.parametrize("alloc", [[8], [8, 0, 0], [[8]] * 3])
def test_all_self_allocation_is_the_causal_model_bit_for_bit(alloc):
    causal, reflex = model(None, n_layer=3, loops=2), model(dict(allocation=alloc), n_layer=3, seed=1, loops=2)
    reflex.load_state_dict(causal.state_dict())  # strict: the same names and shapes (attn.c_attn, attn.c_proj)
    idx = torch.randint(0, V, (3, 12))
    assert all(torch.equal(a, b) for a, b in zip(causal(idx), reflex(idx)))


@pytest.mark.parametrize("kv_source", ["reuse", "reproject"])
def test_cross_head_is_softmax_attention_over_the_earlier_layers_kv(kv_source):
    """Layer 1 of [[8], [5, 3]]: heads 0-4 attend over layer 1's own K/V, heads 5-7 over layer 0's
    (reuse: layer 0's own projection of its input; reproject: layer 1's cross weights on layer 0's input)."""
    m = model(dict(allocation=[[8], [5, 3]], kv_source=kv_source), n_layer=2).eval()
    idx = torch.randint(0, V, (2, 9))
    (x0, _), (x1, out1) = attn_io(m, idx)
    C, H = 32, 4
    W0, b0 = m.blocks[0].attn.c_attn.weight, m.blocks[0].attn.c_attn.bias  # rows: q (32) | k (8 heads) | v (8 heads)
    W1, b1 = m.blocks[1].attn.c_attn.weight, m.blocks[1].attn.c_attn.bias
    n_kv1 = 5  # layer 1 projects K/V for its 5 self heads only: its cross heads compute none, no later layer reads it
    assert W1.shape == (C + 2 * n_kv1 * H, C)
    q1 = x1 @ W1[:C].T + b1[:C]
    ys = []
    for h in range(8):
        qh = q1[..., h * H : (h + 1) * H]
        if h < 5:
            rk, rv = C + h * H, C + n_kv1 * H + h * H
            k, v = x1 @ W1[rk : rk + H].T + b1[rk : rk + H], x1 @ W1[rv : rv + H].T + b1[rv : rv + H]
        elif kv_source == "reuse":
            rk, rv = C + h * H, C + 8 * H + h * H
            k, v = x0 @ W0[rk : rk + H].T + b0[rk : rk + H], x0 @ W0[rv : rv + H].T + b0[rv : rv + H]
        else:
            Wx, bx = m.blocks[1].attn.c_kv_cross.weight, m.blocks[1].attn.c_kv_cross.bias  # k (3 heads) | v (3 heads)
            rk, rv = (h - 5) * H, 3 * H + (h - 5) * H
            k, v = x0 @ Wx[rk : rk + H].T + bx[rk : rk + H], x0 @ Wx[rv : rv + H].T + bx[rv : rv + H]
        ys.append(causal_softmax_attention(qh, k, v))
    expected = m.blocks[1].attn.c_proj(torch.cat(ys, dim=-1))
    torch.testing.assert_close(out1, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", list(VARIANTS) + ["looped"])
def test_no_future_leakage(name):
    att = VARIANTS.get(name, VARIANTS["fixed_422"])
    m = model(att, loops=2 if name == "looped" else 1).eval()
    with torch.no_grad():
        for mod in m.modules():  # move linear / top-k off their init, so every source contributes
            if hasattr(mod, "mix"):
                mod.mix.normal_()
            if hasattr(mod, "scores"):
                mod.scores.normal_()
    idx = torch.randint(0, V, (2, 16))
    base = m.logits(idx)
    for t in (3, 9, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % V
        out = m.logits(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=0, rtol=0)
        assert not torch.allclose(out[:, t], base[:, t])


def test_all_layer_head_counts():
    plans = reflex_plan(
        ModelConfig(n_layer=6, n_head=8, attention=dict(name="reflex", all_layers=True)).attention, 6, 8
    )
    assert [p.n_self for p in plans] == [8, 7, 6, 5, 4, 3]
    assert [p.groups for p in plans] == [tuple((d, 1) for d in range(1, i + 1)) for i in range(6)]
    # reuse: a layer projects K/V for its self heads and the heads later layers read from it: layer j's
    # head n_self(i) + (i - j) - 1 for every i > j, i.e. heads 0 .. 7 - j - 1 + ... (here: exactly its self heads)
    assert [p.kv_heads for p in plans] == [tuple(range(n)) for n in (8, 7, 6, 5, 4, 3)]


def test_uniform_allocation_moves_missing_sources_to_self():
    plans = reflex_plan(ModelConfig(n_layer=4, attention=dict(name="reflex", allocation=[4, 2, 2])).attention, 4, 8)
    assert [(p.n_self, p.groups) for p in plans] == [
        (8, ()),
        (6, ((1, 2),)),
        (4, ((1, 2), (2, 2))),
        (4, ((1, 2), (2, 2))),
    ]
    # same head index: layer 0 projects heads 6-7 for layers 1 and 2, layer 1 heads 4-7 for layers 2 and 3,
    # layer 2 heads 4-5 for layer 3, layer 3 only its self heads
    assert [p.kv_heads for p in plans] == [tuple(range(n)) for n in (8, 8, 6, 4)]


def _copy_weights(src: GPTLanguageModel, dst: GPTLanguageModel) -> None:
    """Copy src into dst head by head (their reflex layers may project K/V for different head sets)."""
    sd = src.state_dict()
    with torch.no_grad():
        for name, p in dst.state_dict().items():
            if name.endswith("attn.c_attn.weight") or name.endswith("attn.c_attn.bias"):
                i = int(name.split(".")[1])
                hs, hd = src.blocks[i].attn.p.kv_heads, dst.blocks[i].attn.p.kv_heads
                s, C, H = sd[name], 32, 4
                p[:C] = s[:C]
                for part in range(2):  # k, v
                    for h in set(hs) & set(hd):
                        a, b = C + (part * len(hd) + hd.index(h)) * H, C + (part * len(hs) + hs.index(h)) * H
                        p[a : a + H] = s[b : b + H]
            elif name in sd and sd[name].shape == p.shape:
                p.copy_(sd[name])


@pytest.mark.parametrize("kv_source", ["reuse", "reproject"])
@pytest.mark.parametrize("other", [dict(combine="linear"), dict(top_k=2)])
def test_linear_and_top_k_start_as_the_fixed_allocation(kv_source, other):
    fixed = model(dict(allocation=[4, 2, 2], kv_source=kv_source), loops=2)
    mixed = model(dict(allocation=[4, 2, 2], kv_source=kv_source, **other), seed=1, loops=2)
    _copy_weights(fixed, mixed)
    idx = torch.randint(0, V, (2, 12))
    for a, b in zip(fixed(idx), mixed(idx)):  # equal up to float rounding: the K/V projections have other widths
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_linear_weights_are_learned_and_top_k_scores_get_a_straight_through_gradient():
    for att in (dict(allocation=[4, 2, 2], combine="linear"), dict(allocation=[4, 2, 2], top_k=2)):
        m = model(att)
        idx = torch.randint(0, V, (2, 12))
        sequence_loss(m(idx), idx).backward()
        p = m.blocks[4].attn.mix if "combine" in att else m.blocks[4].attn.scores
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_gradient_reaches_the_earlier_layers_kv_projection():
    """[4, 2, 2], 5 layers: layer 3 projects K/V of heads 4-5 only for layer 4 (its own heads 4-5 read layer 2)."""
    m = model(dict(allocation=[4, 2, 2]))
    idx = torch.randint(0, V, (2, 12))
    sequence_loss(m(idx), idx).backward()
    g = m.blocks[3].attn.c_attn.weight.grad  # rows: q 32 | k heads 0-5 | v heads 0-5 (4 wide)
    assert g.shape[0] == 32 + 2 * 6 * 4
    assert g[32 + 4 * 4 : 32 + 6 * 4].abs().sum() > 0 and g[56 + 4 * 4 : 56 + 6 * 4].abs().sum() > 0


def test_looped_reflex_reads_the_current_iterations_kv():
    """loops=2: each iteration starts an empty cache; the same computation written out block by block."""
    m = model(VARIANTS["fixed_422"], loops=2, loop_window=2).eval()
    idx = torch.randint(0, V, (2, 10))
    e = m.wte(idx)
    pos = m.wpe(torch.arange(10))
    h, outs = torch.zeros_like(e), []
    for _ in range(2):
        u, cache = h + e + pos, []
        for b in m.blocks:
            u = b(u, cache)
        assert [s.layer for s in cache] == list(range(5))
        h = m.ln_f(u)
        outs.append(m.lm_head(h))
    for a, b in zip(m(idx), outs):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_rearranged_order_is_refused():
    m = model(VARIANTS["fixed_422"])
    with m.rearranged([0, 2, 1, 3, 4]), pytest.raises(RuntimeError, match="rearranged"):
        m.logits(torch.randint(0, V, (1, 5)))


def test_checkpoint_identity_includes_the_attention_config():
    plain = validate({"model": {"n_layer": 2}})
    assert "attention" not in identity(plain)["model"]  # old checkpoints (no attention key) still match
    reflex = validate({"model": {"n_layer": 3, "attention": {"name": "reflex", "allocation": [4, 2, 2]}}})
    assert identity(reflex)["model"]["attention"]["allocation"] == [4, 2, 2]


@pytest.mark.parametrize(
    "att,n_layer,msg",
    [
        (dict(name="reflex", allocation=[4, 2, 1]), 4, "summing to n_head=8"),
        (dict(allocation=[4, 2, 2]), 4, "reflex-only"),
        (dict(name="reflex"), 4, "exactly one"),
        (dict(name="reflex", allocation=[4, 2, 2], all_layers=True), 4, "exactly one"),
        (dict(name="reflex", allocation=[4, 1, 1, 1, 1]), 3, "no layer of a 3-layer model"),
        (dict(name="reflex", allocation=[[8], [4, 2, 2]]), 2, "layer 1 gives heads to layer 1-2, which does not exist"),
        (dict(name="reflex", allocation=[[8], [8]]), 3, "2 per-layer rows"),
        (dict(name="reflex", all_layers=True), 9, "n_head=8 must exceed 8"),
        (dict(name="reflex", allocation=[4, 2, 2], top_k=3), 4, "top_k=3 needs 3"),
        (dict(name="reflex", allocation=[4, 2, 2], top_k=2, combine="linear"), 4, "alternatives"),
        (dict(name="reflex", all_layers=True, top_k=2), 4, "uniform allocation"),
        (dict(name="reflex", allocation=[4, 2, 2], kv_source="recompute"), 4, "kv_source"),
    ],
)
def test_bad_configs_give_one_line_errors(att, n_layer, msg):
    with pytest.raises(ConfigError) as err:
        validate({"model": {"n_layer": n_layer, "n_head": 8, "attention": att}})
    assert msg in str(err.value) and "\n" not in str(err.value).strip()


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("loops", [1, 2])
def test_flops_match_flop_counter(name, loops):
    m = model(VARIANTS[name], loops=loops, loop_window=1)
    idx = torch.randint(0, V, (3, 10))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        sequence_loss(m(idx), idx).backward()
    assert fc.get_total_flops() == lm_train_step_flops(m.cfg, vocab_size=V, batch=3, seq_len=10)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m.logits(idx)
    assert fc.get_total_flops() == lm_forward_flops(m.cfg, vocab_size=V, batch=3, seq_len=10)


def test_flops_hand_count_422():
    """6 layers, 8 heads, [4, 2, 2], reuse: layers 0-3 project all 8 heads' K/V (their heads 4-7 are read by the
    next two layers), layer 4 heads 0-5, layer 5 heads 0-3: a saving of (2 + 4) heads of K/V over the causal model."""
    mc = ModelConfig(n_layer=6, n_embd=64, n_head=8, attention=dict(name="reflex", allocation=[4, 2, 2]))
    B, L, C, H = 2, 16, 64, 8
    causal = 6 * (24 * B * L * C * C + 4 * B * L * L * C) + 2 * B * L * C * V
    saved = (2 + 4) * 2 * (2 * B * L * C * H)  # k and v of 6 heads, 2 FLOPs per multiply-add
    assert lm_forward_flops(mc, vocab_size=V, batch=B, seq_len=L) == causal - saved


def test_tiny_reflex_config_trains_resumes_and_refuses_per_block_compile(tmp_path):
    from iclab.config import load_config
    from iclab.runs import train_run
    from iclab.training.device import TrainingError
    from iclab.training.trainer import Trainer

    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    over = [
        "training.steps=4",
        "training.warmup_steps=1",
        "logging.ckpt_every=2",
        "logging.log_every=2",
        "logging.progress=false",
        "task.seq_len=16",
        "task.options.max_bytes=20000",
        f"task.options.data_dir={tmp_path / 'data'}",
        "task.options.log_val_windows=2",
    ]
    cfg = load_config(root / "configs/reflex/tiny/reflex_topk.yaml", over)
    train_run(cfg, tmp_path / "run", evaluate_after=False)
    (tmp_path / "run" / "model.safetensors").unlink()
    train_run(None, tmp_path / "run", resume=True, evaluate_after=False)  # checkpoint identity matches, weights load
    assert (tmp_path / "run" / "model.safetensors").is_file()
    with pytest.raises(TrainingError, match="compile_scope=model"):
        Trainer(
            load_config(root / "configs/reflex/tiny/reflex_topk.yaml", over + ["training.compile=true"]),
            tmp_path / "r2",
        )
