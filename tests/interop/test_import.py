"""`iclab import`: nanoGPT checkpoints and Hugging Face GPT-2 directories become runs with the same logits;
bad sources are refused with one line and nothing written."""

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import write_corpus
from typer.testing import CliRunner

from iclab.cli import app
from iclab.interop.common import InteropError
from iclab.interop.hf_export import export_run
from iclab.interop.importers import import_model
from iclab.runs import evaluate_run, load_run_config, load_run_model
from iclab.workloads import make_workload

transformers = pytest.importorskip("transformers")
CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


def hf_gpt2(vocab=256, act="gelu", seed=0, n_layer=2, n_head=2, n_embd=16, n_positions=32):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        activation_function=act,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    m = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # biases and norms away from their init, so a lost bias or gain shows
        for name, p in m.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return m


def nanogpt_ckpt(hf, path, bias=True, **extra_args):
    """A checkpoint as nanoGPT's train.py writes it: HF's names, nn.Linear weights (Conv1D's transposed)."""
    c = hf.config
    if not bias:
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
    state = {}
    for k, v in hf.state_dict().items():
        if not bias and k.endswith(".bias"):
            continue
        linear = k.endswith(".weight") and any(n in k for n in ("c_attn", "c_proj", "c_fc"))
        state["_orig_mod." + k] = (v.t() if linear else v).clone()
    args = dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.n_positions, bias=bias)
    args.update(vocab_size=c.vocab_size, dropout=0.0, **extra_args)
    torch.save(
        {"model": state, "model_args": args, "iter_num": 7, "best_val_loss": torch.tensor(1.5), "config": {}}, path
    )
    return path


def iclab_logits(run, idx):
    cfg = load_run_config(run)
    model = load_run_model(run, cfg, CPU, make_workload(cfg, run)).eval()
    with torch.no_grad():
        return model.logits(idx)


@pytest.mark.parametrize("bias", [True, False])
def test_nanogpt_checkpoint_imports_with_its_logits_and_evaluates(tmp_path, bias, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hf = hf_gpt2()
    ckpt = nanogpt_ckpt(hf, tmp_path / "ckpt.pt", bias=bias)
    corpus = write_corpus(tmp_path / "text.txt")
    run = tmp_path / "run"
    rec = import_model(ckpt, run, str(corpus), tokenizer="byte")
    assert rec["kind"] == "nanogpt" and rec["notes"]["bias"] is bias
    idx = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(idx).logits
    diff = (iclab_logits(run, idx) - ref).abs().max().item()
    assert diff < 1e-4, diff
    cfg = load_run_config(run)
    assert cfg.model.activation == "gelu" and cfg.model.n_positions == 32 and cfg.training.steps == 7
    ev = evaluate_run(run)  # iclab eval on the imported run
    assert math.isfinite(ev["loss"]) and (run / "eval.json").is_file()
    res = CliRunner().invoke(app, ["sample", str(run), "--tokens", "5", "--prompt", "def"])
    assert res.exit_code == 0, res.output
    mc = tmp_path / "mc.jsonl"
    mc.write_text((ROOT / "examples/multiple_choice/test.jsonl").read_text().splitlines()[0] + "\n")
    res = CliRunner().invoke(app, ["eval", str(run), "--multiple-choice", str(mc)])
    assert res.exit_code == 0 and "1 questions" in res.output, res.output


def test_hf_directory_imports_and_round_trips_an_export(lm_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hf = hf_gpt2(act="gelu_new")
    hf.save_pretrained(tmp_path / "hf")
    corpus = write_corpus(tmp_path / "text.txt")
    run = tmp_path / "run"
    res = CliRunner().invoke(
        app, ["import", str(tmp_path / "hf"), str(run), "--corpus", str(corpus), "--tokenizer", "byte"]
    )
    assert res.exit_code == 0, res.output
    idx = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf(idx).logits
    assert (iclab_logits(run, idx) - ref).abs().max().item() < 1e-4
    assert load_run_config(run).model.activation == "gelu_tanh"
    # an iclab run -> HF -> iclab gives back the same model (the corpus and tokenizer from the run)
    export_run(lm_run, tmp_path / "exported")
    cfg = load_run_config(lm_run)
    back = tmp_path / "back"
    import_model(
        tmp_path / "exported", back, cfg.task.options["corpus"], overrides=[f"task.options.data_dir={tmp_path / 'd'}"]
    )
    idx = torch.randint(0, 20, (2, 24), generator=torch.Generator().manual_seed(3))
    assert torch.equal(iclab_logits(back, idx), iclab_logits(lm_run, idx))


def seed_reflex_forward(state, idx, n_layer, n_head, eps):
    """The seed's Reflex GPT (KornilovaK/reflex_attention) written out from its description: layers 0-1 plain
    causal attention; from layer 2 on heads 0-4 attend over their own K/V, heads 5-6 use layer i-1's K/V of
    heads 5-6, head 7 layer i-2's K/V of head 7; exact GELU; layer norms with `eps`; tied LM head."""
    g = lambda k: state[f"transformer.{k}"]  # noqa: E731
    ln = lambda x, k: F.layer_norm(x, x.shape[-1:], g(f"{k}.weight"), g(f"{k}.bias"), eps)  # noqa: E731
    B, T = idx.shape
    x = g("wte.weight")[idx] + g("wpe.weight")[:T]
    C = x.shape[-1]
    H = C // n_head
    kvs = []
    for i in range(n_layer):
        a = ln(x, f"h.{i}.ln_1")
        q, k, v = (a @ g(f"h.{i}.attn.c_attn.weight").t() + g(f"h.{i}.attn.c_attn.bias")).split(C, dim=2)
        q, k, v = (t.view(B, T, n_head, H).transpose(1, 2) for t in (q, k, v))
        kk, vv = k.clone(), v.clone()
        if i >= 2:
            kk[:, 5:7], vv[:, 5:7] = kvs[i - 1][0][:, 5:7], kvs[i - 1][1][:, 5:7]
            kk[:, 7], vv[:, 7] = kvs[i - 2][0][:, 7], kvs[i - 2][1][:, 7]
        kvs.append((k, v))
        s = (q @ kk.transpose(-1, -2)) / math.sqrt(H)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = (s.softmax(-1) @ vv).transpose(1, 2).reshape(B, T, C)
        x = x + y @ g(f"h.{i}.attn.c_proj.weight").t() + g(f"h.{i}.attn.c_proj.bias")
        m = F.gelu(ln(x, f"h.{i}.ln_2") @ g(f"h.{i}.mlp.c_fc.weight").t() + g(f"h.{i}.mlp.c_fc.bias"))
        x = x + m @ g(f"h.{i}.mlp.c_proj.weight").t() + g(f"h.{i}.mlp.c_proj.bias")
    return ln(x, "ln_f") @ g("wte.weight").t()


@pytest.mark.parametrize("separate_qkv", [False, True])
def test_seed_reflex_checkpoint_imports_into_the_reflex_model(tmp_path, monkeypatch, separate_qkv):
    monkeypatch.chdir(tmp_path)
    hf = hf_gpt2(n_layer=5, n_head=8, n_embd=32)
    ckpt = nanogpt_ckpt(hf, tmp_path / "ckpt.pt", model_type="reflex")
    if separate_qkv:  # some versions of the seed's code: attn.query / attn.key / attn.value instead of c_attn
        saved = torch.load(ckpt, weights_only=True)
        m = saved["model"]
        for k in [k for k in m if ".attn.c_attn." in k]:
            for name, part in zip(("query", "key", "value"), m.pop(k).chunk(3)):
                m[k.replace("c_attn", name)] = part
        torch.save(saved, ckpt)
    corpus = write_corpus(tmp_path / "text.txt")
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="eps 1e-6"):
        import_model(ckpt, run, str(corpus), tokenizer="byte")
    cfg = load_run_config(run)
    assert cfg.model.attention.name == "reflex" and cfg.model.attention.allocation[2] == [5, 2, 1]
    state = {k.removeprefix("_orig_mod."): v for k, v in torch.load(ckpt, weights_only=True)["model"].items()}
    for i in range(5):  # the reference reads the fused projection
        a = f"transformer.h.{i}.attn."
        if a + "query.weight" in state:
            for p in ("weight", "bias"):
                state[f"{a}c_attn.{p}"] = torch.cat([state[f"{a}{n}.{p}"] for n in ("query", "key", "value")])
    idx = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(4))
    ours = iclab_logits(run, idx)
    with torch.no_grad():
        same_eps = seed_reflex_forward(state, idx, 5, 8, 1e-5)
        seed_eps = seed_reflex_forward(state, idx, 5, 8, 1e-6)
    assert (ours - same_eps).abs().max().item() < 1e-4
    diff = (ours - seed_eps).abs().max().item()
    assert diff < 1e-2, diff  # the layer-norm eps: 1e-6 in the seed, 1e-5 in iclab
    print(f"seed Reflex: max |logit difference| {diff:.2e} (eps 1e-6 vs 1e-5)")


def test_bad_sources_are_refused_in_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = str(write_corpus(tmp_path / "text.txt"))
    hf = hf_gpt2()
    good = nanogpt_ckpt(hf, tmp_path / "ckpt.pt")
    ckpt = torch.load(good, weights_only=True)
    ckpt["config"] = argparse.Namespace(lr=1)  # a class: loading it would need code
    torch.save(ckpt, tmp_path / "evil.pt")
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    cases = [
        (tmp_path / "evil.pt", "byte", "refused: it pickles more than tensors"),
        (tmp_path / "llama", "byte", "model_type 'llama'"),
        (tmp_path / "other.pt", "byte", "not a nanoGPT checkpoint"),
        (good, "char", "256 token embeddings, tokenizer char"),
    ]
    for src, tok, msg in cases:
        out = tmp_path / "out"
        with pytest.raises(InteropError, match=msg):
            import_model(src, out, corpus, tokenizer=tok)
        assert not out.exists()
        res = CliRunner().invoke(app, ["import", str(src), str(out), "--corpus", corpus, "--tokenizer", tok])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert not out.exists() and not list(tmp_path.glob(".tmp-*"))
