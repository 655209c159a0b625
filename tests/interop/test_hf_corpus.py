"""Hugging Face datasets as corpora (task.options.corpus: hf:NAME[:CONFIG]) and the HF ARC layout for multiple
choice: offline, from local files; the same preparation and hashing as file corpora; bad input in one line."""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from iclab.config import ConfigError, validate
from iclab.workloads.sequence.corpus import load_prepared, prepare
from iclab.workloads.sequence.corpus_sources import CorpusError, read_corpus

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
# `datasets` takes ~0.7 s to import: not at collection (every test process collects every module), only here
pytestmark = pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="needs datasets (the hf extra)")

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["def f(x):\n    return x", "naïve café", "for i in range(3): pass"]


@pytest.fixture(autouse=True)
def _local_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def parquet_dir(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    pq.write_table(pa.table({"text": DOCS, "n": [1, 2, 3]}), d / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": ["held out"], "n": [4]}), d / "test-00000-of-00001.parquet")
    return d


def test_parquet_dataset_prepares_like_a_file_with_the_joined_text(tmp_path):
    d = parquet_dir(tmp_path)
    text, src = read_corpus(f"hf:{d}")
    assert text == "\n\n".join(DOCS)
    assert src["kind"] == "hf" and src["split"] == "train" and src["n_docs"] == 3
    assert src["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    path, reused = prepare(f"hf:{d}", "char", data_root=tmp_path / "data", val_fraction=0.2)
    data = load_prepared(path)
    ids = np.concatenate([data.train, data.val])
    assert data.tokenizer.decode(ids) == text and not reused
    assert prepare(f"hf:{d}", "char", data_root=tmp_path / "data", val_fraction=0.2) == (path, True)
    other, _ = prepare(f"hf:{d}", "char", data_root=tmp_path / "data", val_fraction=0.2, split="test")
    assert other != path and load_prepared(other).tokenizer.decode(load_prepared(other).val) != ""


def test_json_and_save_to_disk_layouts_and_another_text_field(tmp_path):
    j = tmp_path / "js"
    j.mkdir()
    (j / "train.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in DOCS))
    assert read_corpus(f"hf:{j}", text_field="body")[0] == "\n\n".join(DOCS)
    s = tmp_path / "saved"
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": DOCS})}).save_to_disk(str(s))
    assert read_corpus(f"hf:{s}")[0] == "\n\n".join(DOCS)


def test_bad_datasets_fail_in_one_line_naming_the_field_or_split(tmp_path):
    d = parquet_dir(tmp_path)
    cases = [
        (dict(text_field="body"), "no column 'body'"),
        (dict(split="validation"), "split 'validation' does not exist"),
    ]
    for kw, msg in cases:
        with pytest.raises(CorpusError, match=msg) as e:
            prepare(f"hf:{d}", "char", data_root=tmp_path / "data", **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(CorpusError, match="not found locally"):
        read_corpus("hf:nobody/no_such_dataset_here")
    assert not (tmp_path / "data").exists()
    with pytest.raises(CorpusError, match="apply to hf:"):
        read_corpus(str(d / "x.txt"), split="train")


def test_language_model_config_takes_split_and_text_field(tmp_path):
    d = parquet_dir(tmp_path)
    base = {"task": {"name": "language_model", "seq_len": 4, "options": {"corpus": f"hf:{d}", "split": "train"}}}
    cfg = validate(base)
    assert cfg.task.options["split"] == "train"
    plain = validate({"task": {"name": "language_model", "seq_len": 4, "options": {"corpus": "x.txt"}}})
    assert "split" not in plain.task.options and "text_field" not in plain.task.options  # old identities hold
    with pytest.raises(ConfigError, match="split and text_field apply"):
        validate({"task": {"name": "language_model", "options": {"corpus": "x.txt", "text_field": "body"}}})


def hf_rows(jsonl):
    """ARC JSONL -> HF's ARC layout rows."""
    rows = []
    for line in jsonl.read_text().splitlines():
        q = json.loads(line)
        ch = q["question"]["choices"]
        rows.append(
            {
                "id": q["id"],
                "question": q["question"]["stem"],
                "choices": {"text": [c["text"] for c in ch], "label": [c["label"] for c in ch]},
                "answerKey": q["answerKey"],
            }
        )
    return rows


def test_multiple_choice_reads_the_hf_arc_layout_as_jsonl_and_parquet(tmp_path):
    from iclab.evaluation.multiple_choice import MultipleChoiceError, read_questions

    src = tmp_path / "arc.jsonl"
    src.write_text("\n".join((ROOT / "examples/multiple_choice/test.jsonl").read_text().splitlines()[:20]) + "\n")
    rows = hf_rows(src)
    (tmp_path / "hf.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test-00000-of-00001.parquet")
    key = lambda qs: [(q.id, q.stem, q.labels, q.texts, q.answer) for q in qs]  # noqa: E731
    want = key(read_questions(src))
    assert key(read_questions(tmp_path / "hf.jsonl")) == want
    assert key(read_questions(tmp_path / "test-00000-of-00001.parquet")) == want
    rows[3]["choices"]["label"] = rows[3]["choices"]["label"][:-1]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MultipleChoiceError, match=r"bad.jsonl:4: HF layout: 4 choice texts but 3 labels"):
        read_questions(tmp_path / "bad.jsonl")


def test_a_language_model_trains_on_a_local_dataset(tmp_path):
    from iclab.runs import train_run

    d = parquet_dir(tmp_path)
    cfg = validate(
        {
            "task": {
                "name": "language_model",
                "seq_len": 4,
                "options": {
                    "corpus": f"hf:{d}",
                    "data_dir": str(tmp_path / "data"),
                    "log_val_windows": 2,
                    "val_fraction": 0.3,
                },
            },
            "model": {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 8},
            "training": {"steps": 2, "batch_size": 2, "device": "cpu"},
            "logging": {"log_every": 1, "tensorboard": False, "progress": False},
        }
    )
    train_run(cfg, tmp_path / "run", evaluate_after=False)
    src = json.loads((tmp_path / "run" / "data.json").read_text())["source"]
    assert src["kind"] == "hf" and src["sha256"] == hashlib.sha256("\n\n".join(DOCS).encode()).hexdigest()
