"""iclab heads: the hooks against plain forwards, the score definitions against direct computations, the
ablations against hand-made forwards, the controls, and the command on tiny runs."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from iclab.analysis.heads import (
    HeadsError,
    ablation_sets,
    context_bands,
    copying_scores,
    head_sources,
    induction_summary,
    parse_heads,
    pattern_summary,
    repeated_tokens,
)
from iclab.analysis.heads_controls import planted_control, planted_induction_model, repeated_in_context
from iclab.cli import app
from iclab.config import ModelConfig, validate
from iclab.models.attention import HeadHook
from iclab.models.transformer import GPTLanguageModel
from iclab.runs import train_run


def lm(attention=None, n_layer=3, n_head=4, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        n_layer=n_layer, n_head=n_head, n_embd=16, n_positions=24, attention=attention or {"name": "causal"}
    )
    return GPTLanguageModel(cfg, 11).eval()


REFLEX = {"name": "reflex", "allocation": [2, 1, 1]}


def hooked(model, hook, x):
    with model.hooked(hook):
        hook.start()
        return model.logits(x)


@pytest.mark.parametrize("attention", [None, REFLEX])
def test_hooked_forward_equals_sdpa_and_the_hook_comes_off(attention):
    model = lm(attention)
    x = torch.randint(0, 11, (3, 20))
    plain = model.logits(x)
    hook = HeadHook(record_probs=True)
    torch.testing.assert_close(hooked(model, hook, x), plain, atol=1e-5, rtol=1e-5)
    assert all(b.attn.hook is None for b in model.blocks)
    assert [layer for layer, _ in hook.probs] == [0, 1, 2]
    P = hook.probs[1][1]
    assert P.shape == (3, 4, 20, 20)
    torch.testing.assert_close(P.sum(-1), torch.ones(3, 4, 20))
    assert float(P.triu(1).abs().max()) == 0.0  # causal


def _c_proj_input_edit(model, layer, head, fn, x):
    """Logits with c_proj's input slice of one head replaced by fn(slice) (plain PyTorch, no HeadHook)."""
    H = model.cfg.n_embd // model.cfg.n_head
    sl = slice(head * H, (head + 1) * H)

    def pre(mod, args):
        (inp,) = args
        inp = inp.clone()
        inp[..., sl] = fn(inp[..., sl])
        return (inp,)

    h = model.blocks[layer].attn.c_proj.register_forward_pre_hook(pre)
    try:
        return model.logits(x)
    finally:
        h.remove()


@pytest.mark.parametrize("attention", [None, REFLEX])
def test_zero_and_mean_ablation_equal_hand_made_forwards(attention):
    model = lm(attention)
    x = torch.randint(0, 11, (5, 18))
    L, h = 2, 3  # a Reflex cross head (reads layer 0) when attention is reflex
    want_zero = _c_proj_input_edit(model, L, h, torch.zeros_like, x)
    got_zero = hooked(model, HeadHook(ablate={L: {h: "zero"}}), x)
    torch.testing.assert_close(got_zero, want_zero, atol=1e-5, rtol=1e-5)
    captured = []
    _c_proj_input_edit(model, L, h, lambda s: captured.append(s.mean(0)) or s, x)  # the head's mean output
    want_mean = _c_proj_input_edit(model, L, h, lambda s: captured[0].expand_as(s), x)
    rec = HeadHook(record_outputs=True)
    hooked(model, rec, x)
    means = {c: s / rec.out_n[c] for c, s in rec.out_sum.items()}
    got_mean = hooked(model, HeadHook(ablate={L: {h: "mean"}}, means=means), x)
    torch.testing.assert_close(got_mean, want_mean, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got_mean, model.logits(x), atol=1e-4)  # the ablation did something


def test_mean_ablation_of_one_sequence_changes_nothing():
    model = lm()
    x = torch.randint(0, 11, (1, 12))
    rec = HeadHook(record_outputs=True)
    hooked(model, rec, x)
    means = {c: s / rec.out_n[c] for c, s in rec.out_sum.items()}
    got = hooked(model, HeadHook(ablate={0: {0: "mean", 2: "mean"}, 1: {1: "mean"}}, means=means), x)
    torch.testing.assert_close(got, model.logits(x), atol=1e-5, rtol=1e-5)


def _random_pattern(B, N, T, gen):
    s = torch.randn(B, N, T, T, generator=gen) * 2
    s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, -1)


def test_pattern_scores_against_loops():
    gen = torch.Generator().manual_seed(0)
    B, N, T = 2, 3, 8
    P = _random_pattern(B, N, T, gen)
    got = pattern_summary(P, regression=True)
    for h in range(N):
        ent, prev, first, xx, yy = [], [], [], [], []
        for b in range(B):
            for i in range(1, T):
                p = P[b, h, i, : i + 1].double()
                ent.append(float(-(p * p.log()).sum()))
                prev.append(float(p[i - 1]))
                first.append(float(p[0]))
                same = sum(float(p[j]) for j in range(i) if j % 2 == i % 2)
                if i >= 2:  # queries with an earlier token of their role
                    (xx if i % 2 == 0 else yy).append(same)
        assert got["entropy"][h] == pytest.approx(np.mean(ent))
        assert got["prev_token"][h] == pytest.approx(np.mean(prev))
        assert got["first_token"][h] == pytest.approx(np.mean(first))
        assert got["x_to_x"][h] == pytest.approx(np.mean(xx))
        assert got["y_to_y"][h] == pytest.approx(np.mean(yy))


def test_induction_score_against_token_lookups():
    gen = torch.Generator().manual_seed(1)
    tokens = repeated_tokens(3, 9, 16, gen, "cpu")  # block of 8 distinct tokens out of 9, twice
    assert tokens.shape == (3, 16) and torch.equal(tokens[:, :8], tokens[:, 8:])
    assert all(len(set(r[:8].tolist())) == 8 for r in tokens)
    P = _random_pattern(3, 2, 16, gen)
    got = induction_summary(P)
    for h in range(2):
        ind, dup = [], []
        for b in range(3):
            for q in range(8, 16):
                tok = tokens[b, q]
                j = int((tokens[b, :q] == tok).nonzero()[0])  # its earlier occurrence
                ind.append(float(P[b, h, q, j + 1]))
                dup.append(float(P[b, h, q, j]))
        assert got["induction"][h] == pytest.approx(np.mean(ind))
        assert got["prefix_matching"][h] == got["induction"][h]
        assert got["duplicate"][h] == pytest.approx(np.mean(dup))


def test_copying_score_against_the_full_vocabulary_matrix():
    model = lm()
    C, N = 16, 4
    H = C // N
    got = copying_scores(model)
    W_E = model.wte.weight.t().double()
    W_U = (model.wte.weight * model.ln_f.weight).double()
    for L, blk in enumerate(model.blocks):
        for h in range(N):
            W_V = blk.attn.c_attn.weight[2 * C + h * H : 2 * C + (h + 1) * H] * blk.ln_1.weight
            W_O = blk.attn.c_proj.weight[:, h * H : (h + 1) * H]
            ev = np.linalg.eigvals((W_U @ W_O.double() @ W_V.double() @ W_E).detach().numpy())  # V x V
            assert got[L][h] == pytest.approx(ev.real.sum() / np.abs(ev).sum(), abs=1e-6)
            assert -1 <= got[L][h] <= 1


def test_reflex_heads_are_labelled_with_the_layer_they_read():
    model = lm(REFLEX, n_layer=3)
    assert head_sources(model) == [[0, 0, 0, 0], [1, 1, 1, 0], [2, 2, 1, 0]]
    assert all(v is not None for row in copying_scores(model) for v in row)  # fixed reflex: every head has a W_V


def test_reflex_value_weights_are_those_the_cross_heads_use():
    from iclab.analysis.heads import _value_weight

    model = lm(REFLEX, n_layer=3)
    x = torch.randint(0, 11, (2, 9))
    seen = {}

    class Capture(HeadHook):
        def __call__(self, layer, q, k, v):
            seen[layer] = v
            return super().__call__(layer, q, k, v)

    with model.tapped() as taps:
        hooked(model, Capture(), x)
    inputs = [model.wte(x) + model.wpe(torch.arange(9))] + [u for _, _, u in taps]  # block inputs
    for head, src in ((0, 2), (2, 1), (3, 0)):  # layer 2: a self head, the heads reading layers 1 and 0
        W, gain = _value_weight(model, 2, head)
        assert gain is model.blocks[src].ln_1.weight
        want = F.linear(model.blocks[src].ln_1(inputs[src]), W)
        diff = (seen[2][:, head] - want).detach()  # the bias of v: the same at every position
        assert float((diff - diff[:1, :1]).abs().max()) < 1e-5


def test_planted_induction_circuit_scores_as_one_and_loses_its_in_context_score_when_ablated():
    res = planted_control(n_seq=16, seed=3)
    scores = {r["label"]: r for r in res["heads"]}
    assert res["top_head"] == "1.0"
    assert scores["1.0"]["induction"] > 0.99 and scores["1.0"]["copying"] > 0.99
    assert scores["0.0"]["prev_token"] > 0.99  # the previous-token head it composes with
    assert max(r["induction"] for k, r in scores.items() if k != "1.0") < 0.1
    assert res["intact"]["in_context"] < -3.0  # the second copy is predicted, the first is not
    assert res["intact"]["loss_second_copy"] < 0.5
    assert abs(res["ablated"]["in_context"]) < 0.05  # gone with the head


def test_random_init_has_no_induction_head_and_no_in_context_gain():
    model = lm(n_layer=2, n_head=2, seed=4)
    gen = torch.Generator().manual_seed(0)
    tokens = repeated_tokens(32, 11, 22, gen, "cpu")
    from iclab.analysis.heads import score_heads

    recs = score_heads(model, "language_model", {"patterns": tokens, "repeated": tokens})
    assert max(r["induction"] for r in recs) < 0.2  # ~ uniform attention: 1/(position + 1)
    assert abs(repeated_in_context(model, tokens)["in_context"]) < 0.05
    planted = planted_induction_model(vocab=11, n_positions=22)
    assert repeated_in_context(planted, tokens)["in_context"] < -1.0


def test_first_reaching_half_way():
    from iclab.analysis.heads_training import first_reaching

    steps = [100, 200, 300, 400]
    assert first_reaching(steps, [0.0, 0.2, 0.6, 0.5]) == 300  # half of 0.6 first reached at 300
    assert first_reaching(steps, [0.0, -0.1, -0.4, -0.4], lower=True) == 300
    assert first_reaching(steps, [0.3, 0.2, 0.1, 0.1]) is None  # never rose


def test_small_helpers():
    assert parse_heads("1.0, 2.3,1.0", 3, 4) == [(1, 0), (2, 3)]
    for bad in ("1", "3.0", "0.4", "a.b"):
        with pytest.raises(HeadsError):
            parse_heads(bad, 3, 4)
    early, late = context_bands(128)
    assert (early.start, early.stop, late.start, late.stop) == (49, 59, 118, 128)
    top, rand = ablation_sets({"0.0": 0.1, "0.1": 0.9, "1.0": 0.5, "1.1": 0.0}, 2, 3, seed=0)
    assert top == ["0.1", "1.0"] and all(len(r) == 2 and not set(r) & set(top) for r in rand)
    assert rand == [["0.0", "1.1"]]  # the only other pair, once


# --- the command on tiny runs ---------------------------------------------------------------------------
LOG = {"log_every": 10, "ckpt_every": 10, "milestone_every": 10, "tensorboard": False, "progress": False}


@pytest.fixture(scope="module")
def sort_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("heads") / "sort"
    cfg = {
        "seed": 0,
        "task": {"name": "sorting", "seq_len": 6, "options": {"vocab": 12}},
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16},
        "training": {"steps": 30, "batch_size": 8, "lr": 3e-3, "device": "cpu"},
        "eval": {"n_prompts": 32},
        "logging": LOG,
    }
    train_run(validate(cfg), run)
    return run


def test_heads_cli_on_a_token_run_and_over_training(sort_run):
    args = ["heads", str(sort_run), "--n-sequences", "16", "--ablate", "1.0,0.1", "--n-random", "2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads((sort_run / "heads.json").read_text())
    assert (sort_run / "heads.png").is_file()
    assert len(res["heads"]) == 4 and set(res["ablation"]) == {"0.0", "0.1", "1.0", "1.1"}
    assert res["ablate_set"]["heads"] == ["1.0", "0.1"] and len(res["random_sets"]) == 1  # the only other pair
    assert res["headline"]["metric"] == "exact_match"
    assert res["controls"]["planted"]["induction"] > 0.99
    r = CliRunner().invoke(app, ["heads", str(sort_run), "--over-training"])
    assert r.exit_code == 0, r.output
    rec = json.loads((sort_run / "heads_over_training.json").read_text())
    assert rec["steps"] == [10, 20, 30] and len(rec["per_head"]) == 4
    assert (sort_run / "heads_over_training.png").is_file()


def test_bad_ablate_is_one_line_and_writes_nothing(sort_run, tmp_path):
    before = json.loads((sort_run / "heads.json").read_text()) if (sort_run / "heads.json").is_file() else None
    r = CliRunner().invoke(app, ["heads", str(sort_run), "--ablate", "5.0", "--out-tag", "bad"])
    assert r.exit_code == 2 and "5.0 does not exist" in r.output
    assert not (sort_run / "heads_bad.json").exists()
    if before is not None:
        assert json.loads((sort_run / "heads.json").read_text()) == before


def test_heads_on_a_regression_run(tmp_path, tiny_cfg_dict):
    run = tmp_path / "reg"
    train_run(validate({**tiny_cfg_dict, "logging": LOG}), run)
    from iclab.analysis.heads_run import run_heads

    res = run_heads(run, n_sequences=20, n_random=1)
    assert res["score_key"] == "x_to_x" and res["headline"]["metric"] == "error"
    T = 14  # 7 points: x at 0, 2, ..., 12; an x query at 2m has m earlier x tokens among its 2m + 1 keys
    assert res["uniform"]["x_to_x"] == pytest.approx(np.mean([m / (2 * m + 1) for m in range(1, T // 2)]))
    assert all(0 <= r["x_to_x"] <= 1 and 0 <= r["y_to_y"] <= 1 for r in res["heads"])
    assert "copying" not in res["heads"][0] and "planted" not in res["controls"]
    assert math.isfinite(res["ablation"]["0.0"]["zero"]["error"]["delta"])
    assert (run / "heads.json").is_file() and (run / "heads.png").is_file()
