"""`iclab export --format hf`: transformers loads the directory and computes iclab's logits; the tokenizers give
iclab's ids; regression runs load through the written loader; looped and Reflex models are refused."""

import importlib.util
import json

import pytest
import torch
from conftest import lm_config, write_corpus
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.interop.common import InteropError
from iclab.interop.hf_export import export_run
from iclab.runs import load_run_config, load_run_model, train_run
from iclab.workloads import make_workload

transformers = pytest.importorskip("transformers")
CPU = torch.device("cpu")


def test_exported_lm_gives_iclabs_logits_and_generates(lm_run, tmp_path):
    out = tmp_path / "hf"
    res = CliRunner().invoke(app, ["export", str(lm_run), str(out), "--format", "hf"])
    assert res.exit_code == 0, res.output
    cfg = load_run_config(lm_run)
    workload = make_workload(cfg, lm_run)
    ours = load_run_model(lm_run, cfg, CPU, workload).eval()
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert hf.config.activation_function == "gelu_new" and hf.config.layer_norm_epsilon == 1e-5
    idx = torch.randint(0, workload.vocab_size, (3, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours.logits(idx), hf(idx).logits
    diff = (a - b).abs().max().item()
    assert diff < 1e-4, diff
    print(f"max |logit difference| = {diff:.2e}")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "def naïve(x):\n    return é"
    assert tok(text)["input_ids"] == workload.tokenizer.encode(text).tolist()
    gen = hf.generate(torch.tensor([tok("def")["input_ids"]]), max_new_tokens=5, do_sample=False)
    assert tok.decode(gen[0]).startswith("def") and gen.shape[1] == 8
    card = (out / "README.md").read_text()
    source = json.loads((lm_run / "data.json").read_text())["source"]
    assert source["sha256"] in card and "val bits per char" in card and "n_embd: 16" in card
    assert json.loads((out / "iclab.json").read_text())["step"] == 6


def test_byte_tokenizer_exports_with_the_same_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = write_corpus(tmp_path / "text.txt")
    cfg = lm_config(tmp_path, corpus, tokenizer="byte")
    cfg["training"]["steps"] = 1
    train_run(validate(cfg), tmp_path / "run", evaluate_after=False)
    export_run(tmp_path / "run", tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "ab\n\tcé😀 ~"
    assert tok(text)["input_ids"] == list(text.encode())
    assert tok.decode(list(text.encode())) == text


def test_regression_run_exports_a_backbone_and_a_loader_that_predicts_like_iclab(tmp_path):
    d = {
        "task": {"name": "linear_regression", "n_dims": 3, "n_points": 6},
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 12},
        "training": {"steps": 2, "batch_size": 4, "device": "cpu"},
        "logging": {"tensorboard": False, "progress": False},
    }
    run = tmp_path / "run"
    train_run(validate(d), run, evaluate_after=False)
    export_run(run, tmp_path / "hf")
    spec = importlib.util.spec_from_file_location("iclab_regression", tmp_path / "hf" / "iclab_regression.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    theirs = mod.ICLRegressor(tmp_path / "hf")
    cfg = load_run_config(run)
    ours = load_run_model(run, cfg, CPU).eval()
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, generator=g)
    with torch.no_grad():
        assert (ours.predict(xs, ys) - theirs(xs, ys)).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "model,msg",
    [
        ({"loops": 3, "n_positions": 24}, "looped model"),
        ({"n_head": 8, "n_layer": 3, "attention": {"name": "reflex", "allocation": [4, 2, 2]}}, "Reflex attention"),
    ],
)
def test_looped_and_reflex_models_are_refused_in_one_line(tmp_path, model, msg):
    corpus = write_corpus(tmp_path / "text.txt")
    cfg = lm_config(tmp_path, corpus)
    cfg["model"].update(model, n_embd=16)
    cfg["training"]["steps"] = 1
    train_run(validate(cfg), tmp_path / "run", evaluate_after=False)
    with pytest.raises(InteropError, match=msg):
        export_run(tmp_path / "run", tmp_path / "hf")
    res = CliRunner().invoke(app, ["export", str(tmp_path / "run"), str(tmp_path / "hf")])
    assert res.exit_code == 2 and msg in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists() and not list(tmp_path.glob(".tmp-*"))


def test_existing_output_is_kept_without_overwrite(lm_run, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InteropError, match="already exists"):
        export_run(lm_run, out)
    assert (out / "keep.txt").read_text() == "mine"
    export_run(lm_run, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()


def test_gpt2_tokenizer_is_built_from_tiktokens_cached_files(tmp_path, monkeypatch):
    """The files iclab's gpt2 tokenizer reads (encoder.json, vocab.bpe, named by the SHA-1 of their URL in
    tiktoken's cache) become a byte-level BPE; here a toy vocabulary: the 256 bytes, 'ab' and 'Ġa'."""
    import hashlib
    from types import SimpleNamespace

    from iclab.interop.hf_tokenizer import bytes_to_unicode, hf_tokenizer

    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)} | {"ab": 256, "Ġa": 257}
    url = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    for name, text in (("encoder.json", json.dumps(vocab)), ("vocab.bpe", "#version: 0.2\na b\nĠ a\n")):
        (tmp_path / hashlib.sha1((url + name).encode()).hexdigest()).write_text(text, encoding="utf-8")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tok = hf_tokenizer(SimpleNamespace(kind="gpt2"))
    assert tok("ab ab")["input_ids"] == [256, 32, 256]  # "ab", " ab" -> Ġ + ab ("a b" merges first)
    assert tok(" a")["input_ids"] == [257] and tok.decode([256, 32, 256]) == "ab ab"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(InteropError, match="not in tiktoken's local cache"):
        hf_tokenizer(SimpleNamespace(kind="gpt2"))
