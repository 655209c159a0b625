import hashlib
import json
import sys
import types

import numpy as np
import pytest
import torch

from iclab.workloads.sequence import tokenizers as tk
from iclab.workloads.sequence.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    TokenizerError,
    make_tokenizer,
    tokenizer_from_json,
)

TEXT = "héllo wörld — ✓ 𝄞 naïve\ttabs\nnew line"


def test_char_round_trip_non_ascii_and_sorted_vocab():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.chars == "".join(sorted(set(TEXT)))
    assert tok.vocab_size == len(set(TEXT))
    ids = tok.encode(TEXT)
    assert ids.dtype == np.dtype("<u2") and len(ids) == len(TEXT)
    assert [tok.chars[i] for i in ids] == list(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.decode(ids.tolist()) == TEXT
    assert tok.decode(torch.from_numpy(ids.astype(np.int64))) == TEXT
    assert tok.decode([]) == ""


def test_char_encoding_across_slices_matches_a_dict(monkeypatch):
    monkeypatch.setattr(tk, "_CHUNK", 7)  # many slices, to exercise the slice arithmetic
    rng = np.random.default_rng(0)
    alphabet = "ab€𝄞\n "
    text = "".join(rng.choice(list(alphabet), size=200))
    tok = CharTokenizer(alphabet)
    assert tok.encode(text).tolist() == [alphabet.index(c) for c in text]
    with pytest.raises(TokenizerError, match=r"character 'x' at position 23 "):
        tok.encode(text[:23] + "x" + text[23:])


def test_unknown_character_names_it_and_its_position():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError, match=r"character 'é' at position 2 is not in the vocabulary of 3"):
        tok.encode("abécx")
    with pytest.raises(TokenizerError, match="at position 0"):
        tok.encode("\U0010ffff")  # above every code point of the vocabulary


def test_decode_rejects_bad_ids():
    tok = CharTokenizer("abc")
    with pytest.raises(TokenizerError, match=r"id 3 at position 1 is outside the vocabulary \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(TokenizerError, match="1-D"):
        tok.decode(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(TokenizerError, match="integer"):
        tok.decode([0.5])


def test_char_vocab_errors():
    with pytest.raises(TokenizerError, match="more than once"):
        CharTokenizer("abca")
    with pytest.raises(TokenizerError, match="non-empty"):
        CharTokenizer("")
    with pytest.raises(TokenizerError, match="text is empty"):
        CharTokenizer.from_text("")


def test_large_vocabulary_uses_uint32():
    chars = "".join(chr(c) for c in range(0x10000, 0x10000 + 70_000))
    tok = CharTokenizer(chars)
    ids = tok.encode(chars[-3:] + chars[:2])
    assert ids.dtype == np.dtype("<u4")
    assert ids.tolist() == [69_997, 69_998, 69_999, 0, 1]


def test_byte_round_trip_and_replacement():
    tok = ByteTokenizer()
    ids = tok.encode(TEXT)
    assert tok.vocab_size == 256 and ids.dtype == np.dtype("<u2")
    assert bytes(ids.astype(np.uint8)) == TEXT.encode("utf-8")
    assert tok.decode(ids) == TEXT
    assert tok.decode([104, 0xFF, 105]) == "h\ufffdi"


def test_json_round_trip_and_fingerprint():
    a = CharTokenizer.from_text("hello")
    d = json.loads(json.dumps(a.to_json()))
    b = tokenizer_from_json(d)
    assert b == a and b.fingerprint() == a.fingerprint()
    assert len(a.fingerprint()) == 16 and int(a.fingerprint(), 16) >= 0
    canonical = json.dumps(a.to_json(), sort_keys=True, separators=(",", ":"))
    assert a.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert CharTokenizer.from_text("hellox").fingerprint() != a.fingerprint()
    assert CharTokenizer("olhe").fingerprint() != CharTokenizer("ehlo").fingerprint()  # same set, other ids
    assert ByteTokenizer().fingerprint() != a.fingerprint()
    assert tokenizer_from_json({"kind": "byte", "vocab_size": 256}) == ByteTokenizer()
    with pytest.raises(TokenizerError, match="vocab_size 7"):
        tokenizer_from_json({"kind": "char", "vocab_size": 7, "chars": "abc"})
    with pytest.raises(TokenizerError, match="unknown tokenizer 'wordpiece'"):
        tokenizer_from_json({"kind": "wordpiece"})


def test_make_tokenizer():
    assert make_tokenizer("char", "abca").chars == "abc"
    assert isinstance(make_tokenizer("byte"), ByteTokenizer)
    with pytest.raises(TokenizerError, match="pass text="):
        make_tokenizer("char")
    with pytest.raises(TokenizerError, match="unknown tokenizer 'bpe'; valid kinds: char, byte, gpt2"):
        make_tokenizer("bpe")


def test_gpt2_without_tiktoken_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` fail
    with pytest.raises(
        TokenizerError,
        match=r"needs the tiktoken package .*tiktoken is not installed.*"
        r"never downloads at run time: use tokenizer char or byte",
    ):
        make_tokenizer("gpt2")


def _fake_tiktoken(monkeypatch, get_encoding):
    load = types.ModuleType("tiktoken.load")
    load.read_file = lambda blobpath: pytest.fail(f"network read of {blobpath}")
    pkg = types.ModuleType("tiktoken")
    pkg.load = load
    pkg.get_encoding = get_encoding
    monkeypatch.setitem(sys.modules, "tiktoken", pkg)
    monkeypatch.setitem(sys.modules, "tiktoken.load", load)
    return load


def test_gpt2_with_an_empty_cache_never_calls_tiktoken(monkeypatch, tmp_path):
    _fake_tiktoken(monkeypatch, lambda name: pytest.fail("get_encoding must not run without a cache"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    with pytest.raises(TokenizerError, match=rf"no cached vocab.bpe and encoder.json .* in {tmp_path}"):
        make_tokenizer("gpt2")


def test_gpt2_cache_miss_inside_tiktoken_cannot_reach_the_network(monkeypatch, tmp_path):
    def get_encoding(name):  # a tiktoken whose cache lookup misses after all
        return sys.modules["tiktoken.load"].read_file("https://example.invalid/vocab.bpe")

    load = _fake_tiktoken(monkeypatch, get_encoding)
    original = load.read_file
    for name in ("vocab.bpe", "encoder.json"):  # an older release's cache layout (no hash check)
        key = hashlib.sha1(f"az://openaipublic/gpt-2/encodings/main/{name}".encode()).hexdigest()
        (tmp_path / key).write_text("x")
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
    with pytest.raises(TokenizerError, match="example.invalid/vocab.bpe is not in tiktoken's cache"):
        make_tokenizer("gpt2")
    assert load.read_file is original  # restored
