import hashlib
import json
import re

import numpy as np
import pytest
import torch

from iclab.workloads.sequence import corpus as corpus_mod
from iclab.workloads.sequence.corpus import iter_windows, load_prepared, prepare, sample_windows
from iclab.workloads.sequence.corpus_sources import CorpusError, read_corpus
from iclab.workloads.sequence.tokenizers import CharTokenizer

TEXT = "".join(f"line {i}: héllo wörld ✓ {i * i % 97}\n" for i in range(300))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tiny corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_read_file_records_its_hash(text_file):
    text, src = read_corpus(str(text_file))
    data = text_file.read_bytes()
    assert text == TEXT
    assert src["kind"] == "file" and src["path"] == str(text_file.resolve())
    assert src["sha256"] == hashlib.sha256(data).hexdigest() and src["bytes"] == len(data)


def test_read_file_max_bytes_cuts_at_a_character_boundary(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab✓cd", encoding="utf-8")  # ✓ is 3 bytes: offsets 2..4
    for limit, expected in [(2, "ab"), (3, "ab"), (4, "ab"), (5, "ab✓"), (100, "ab✓cd")]:
        assert read_corpus(str(path), max_bytes=limit)[0] == expected


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9 au lait")
    with pytest.raises(CorpusError, match=rf"{re.escape(str(bad))}: not valid UTF-8 \(first bad byte at offset 3\)"):
        read_corpus(str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match=rf"{re.escape(str(empty))}: is empty"):
        read_corpus(str(empty))
    with pytest.raises(CorpusError, match=rf"{re.escape(str(tmp_path / 'nope.txt'))}: no such file"):
        read_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(CorpusError, match="is a directory"):
        read_corpus(str(tmp_path))
    with pytest.raises(CorpusError, match="'shakespeare': no such file; built-in corpora: python_stdlib"):
        read_corpus("shakespeare")
    with pytest.raises(CorpusError, match="max_bytes must be a positive integer"):
        read_corpus("python_stdlib", max_bytes=0)


def test_python_stdlib_slice():
    text, src = read_corpus("python_stdlib", max_bytes=20_000)
    data = text.encode("utf-8")
    assert text.startswith("# file: ")
    assert 0 < len(data) <= 20_000 and src["bytes"] == len(data)
    assert src["sha256"] == hashlib.sha256(data).hexdigest()
    headers = re.findall(r"^# file: (.+)$", text, flags=re.M)
    assert src["n_files"] >= 2 and headers == sorted(headers) and len(headers) == src["n_files"]
    assert src["kind"] == "python_stdlib" and src["glob"] == "**/*.py" and src["max_bytes"] == 20_000
    assert len(src["files_sha256"]) == 64 and isinstance(src["skipped_non_utf8"], int)
    tiny, tiny_src = read_corpus("python_stdlib", max_bytes=40)  # the first file alone, cut
    assert tiny_src["n_files"] == 1 and len(tiny.encode()) <= 40 and tiny.startswith("# file: ")


def test_python_stdlib_files_are_sorted_and_hashed():
    text, src = read_corpus("python_stdlib", glob="json/*.py")
    names = re.findall(r"^# file: (.+)$", text, flags=re.M)
    assert names == sorted(names) and "json/__init__.py" in names and len(names) == src["n_files"]
    assert src["files_sha256"] == hashlib.sha256("\n".join(names).encode()).hexdigest()
    assert all("site-packages" not in n for n in names)
    with pytest.raises(CorpusError, match="no UTF-8 file matches 'nothing/\\*.xyz'"):
        read_corpus("python_stdlib", glob="nothing/*.xyz")


def _mtimes(path):
    return {p.name: p.stat().st_mtime_ns for p in path.iterdir()}


def test_prepare_writes_a_split_and_reuses_it(text_file, tmp_path):
    root = tmp_path / "data"
    out, reused = prepare(str(text_file), "char", val_fraction=0.25, data_root=root)
    assert not reused and out.parent == root and out.name.startswith("tiny_corpus-char-")
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]
    td = load_prepared(out)
    n = len(TEXT)
    assert td.meta["n_val"] == round(n * 0.25) and td.meta["n_train"] + td.meta["n_val"] == n
    assert len(td.train) == td.meta["n_train"] and len(td.val) == td.meta["n_val"]
    assert isinstance(td.train, np.memmap) and td.train.dtype == np.dtype("<u2") and td.meta["dtype"] == "uint16"
    assert td.tokenizer == CharTokenizer.from_text(TEXT) and td.vocab_size == len(set(TEXT))
    assert td.tokenizer.decode(np.concatenate([td.train, td.val])) == TEXT
    assert td.meta["source"]["sha256"] == hashlib.sha256(text_file.read_bytes()).hexdigest()
    assert td.meta["tokenizer_fingerprint"] == td.tokenizer.fingerprint()

    before = _mtimes(out)
    again, reused = prepare(str(text_file), "char", val_fraction=0.25, data_root=root)
    assert again == out and reused and _mtimes(out) == before

    other, _ = prepare(str(text_file), "char", val_fraction=0.25, data_root=tmp_path / "elsewhere")
    assert other.name == out.name
    for name in ("train.bin", "val.bin", "meta.json"):
        assert (other / name).read_bytes() == (out / name).read_bytes()

    byte_dir, _ = prepare(str(text_file), "byte", val_fraction=0.25, data_root=root)
    frac_dir, _ = prepare(str(text_file), "char", val_fraction=0.5, data_root=root)
    cut_dir, _ = prepare(str(text_file), "char", val_fraction=0.25, data_root=root, max_bytes=500)
    assert len({out, byte_dir, frac_dir, cut_dir}) == 4
    assert load_prepared(byte_dir).meta["n_train"] + load_prepared(byte_dir).meta["n_val"] == len(TEXT.encode())


def test_interrupted_encoding_leaves_no_meta(text_file, tmp_path, monkeypatch):
    def boom(self, text):
        raise RuntimeError("killed while encoding")

    monkeypatch.setattr(CharTokenizer, "encode", boom)
    with pytest.raises(RuntimeError, match="killed"):
        prepare(str(text_file), "char", data_root=tmp_path / "data")
    assert not list((tmp_path / "data").rglob("meta.json"))


def test_interrupted_write_leaves_an_incomplete_directory_that_is_redone(text_file, tmp_path, monkeypatch):
    write = corpus_mod._atomic_write

    def failing(path, data):
        write(path, object() if path.name == "val.bin" else data)  # object(): f.write raises midway

    monkeypatch.setattr(corpus_mod, "_atomic_write", failing)
    with pytest.raises(TypeError):
        prepare(str(text_file), "char", data_root=tmp_path)
    out = next(tmp_path.glob("tiny_corpus-char-*"))
    assert sorted(p.name for p in out.iterdir()) == ["train.bin"]  # no meta.json, no temp file
    with pytest.raises(CorpusError, match=rf"{re.escape(str(out / 'meta.json'))}: missing"):
        load_prepared(out)
    monkeypatch.setattr(corpus_mod, "_atomic_write", write)
    again, reused = prepare(str(text_file), "char", data_root=tmp_path)
    assert again == out and not reused and len(load_prepared(out).val) > 0


def test_damaged_directories_are_refused_and_redone(text_file, tmp_path):
    out, _ = prepare(str(text_file), "char", data_root=tmp_path)
    val = (out / "val.bin").read_bytes()
    (out / "val.bin").write_bytes(val[:-2])
    with pytest.raises(CorpusError, match=rf"{re.escape(str(out / 'val.bin'))}: {len(val) - 2} bytes"):
        load_prepared(out)
    assert prepare(str(text_file), "char", data_root=tmp_path) == (out, False)
    (out / "val.bin").write_bytes(np.full(len(val) // 2, 999, dtype="<u2").tobytes())
    with pytest.raises(CorpusError, match="holds id 999"):
        load_prepared(out)
    (out / "meta.json").write_text("{not json")
    with pytest.raises(CorpusError, match=rf"{re.escape(str(out / 'meta.json'))}: unreadable"):
        load_prepared(out)
    meta = {"format": "something-else"}
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorpusError, match="format 'something-else'"):
        load_prepared(out)


def test_prepare_argument_errors(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("x")
    with pytest.raises(CorpusError, match="1 tokens cannot be split"):
        prepare(str(one), "char", data_root=tmp_path)
    with pytest.raises(CorpusError, match="val_fraction must be"):
        prepare(str(one), "char", val_fraction=1.0, data_root=tmp_path)
    with pytest.raises(ValueError, match="unknown tokenizer 'words'"):
        prepare(str(one), "words", data_root=tmp_path)


@pytest.fixture
def arange_tokens(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(500, dtype="<u2").tofile(path)
    return np.memmap(path, dtype="<u2", mode="r")


def test_sample_windows(arange_tokens):
    x, y = sample_windows(arange_tokens, 16, 12, torch.Generator().manual_seed(3))
    x2, y2 = sample_windows(arange_tokens, 16, 12, torch.Generator().manual_seed(3))
    x3, _ = sample_windows(arange_tokens, 16, 12, torch.Generator().manual_seed(4))
    assert torch.equal(x, x2) and torch.equal(y, y2) and not torch.equal(x, x3)
    assert x.shape == y.shape == (16, 12) and x.dtype == y.dtype == torch.int64 and x.device.type == "cpu"
    assert torch.equal(y[:, :-1], x[:, 1:])
    tokens = np.asarray(arange_tokens, dtype=np.int64)
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        o = row_x[0]  # tokens are 0..499, so a row's first value is its offset
        assert 0 <= o <= len(tokens) - 12 - 1
        assert row_x == tokens[o : o + 12].tolist() and row_y == tokens[o + 1 : o + 13].tolist()


def test_sample_windows_reaches_both_ends_and_refuses_short_splits(arange_tokens):
    short = arange_tokens[:7]
    x, _ = sample_windows(short, 200, 5, torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == {0, 1}  # offsets 0 .. len - length - 1
    with pytest.raises(CorpusError, match="7 tokens is too short for windows of length 7"):
        sample_windows(short, 1, 7, torch.Generator())


@pytest.mark.parametrize("n", [2, 61, 65, 66])
def test_iter_windows_covers_every_target_once(arange_tokens, n):
    tokens = arange_tokens[:n]
    batches = list(iter_windows(tokens, 8, 3))
    xs = torch.cat([x.flatten() for x, _ in batches]).tolist()
    ys = torch.cat([y.flatten() for _, y in batches]).tolist()
    assert xs == list(range(n - 1)) and ys == list(range(1, n))
    assert all(x.shape[1] == 8 and x.shape[0] <= 3 for x, _ in batches[: (n - 1) // 8 // 3])
    if (n - 1) % 8:
        assert batches[-1][0].shape == (1, (n - 1) % 8)
