"""Reading a corpus spec (a text file, the built-in `python_stdlib`, or `hf:NAME[:CONFIG]`) is
iclab/workloads/sequence/corpus_sources.py (`read_corpus`).

`read_corpus` returns the text and a `source` dict that pins down exactly what it is (path or Python
version and file list, SHA-256 of the bytes). `prepare` encodes it and writes

    <data_root>/<name>-<tokenizer>-<key[:12]>/{train.bin, val.bin, meta.json}

where the bins are raw little-endian arrays of the tokenizer's dtype (the first round((1 - val_fraction)
* n) tokens are train, the rest val) and `key` hashes the corpus bytes and every setting (tokenizer,
val_fraction, glob, max_bytes), so different settings never share a directory. Each file is written to
a temporary name in the same directory, fsynced and renamed over its target, and meta.json is
written last (after removing any earlier one): a directory whose meta.json is present and agrees with
both bins' sizes is complete, whatever was interrupted before. A complete directory with the same key
is reused without encoding again (`prepare` returns `(path, reused)`). Two processes preparing the
same corpus at once write identical bytes, so the renames cannot produce a mixed directory.

`load_prepared` validates a directory and maps its bins read-only (`TokenData`). `sample_windows`
draws a training batch of random windows with one fancy index into the memmap; `iter_windows` walks a
split in consecutive windows for a full validation pass.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iclab.files import atomic_write
from iclab.workloads.sequence.corpus_sources import CorpusError, read_corpus, sha256_hex
from iclab.workloads.sequence.tokenizers import KINDS, Tokenizer, TokenizerError, make_tokenizer, tokenizer_from_json

FORMAT = "iclab-tokens-1"
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
_META_KEYS = ("source", "tokenizer", "tokenizer_fingerprint", "dtype", "val_fraction", "n_train", "n_val")

log = logging.getLogger(__name__)


# -- preparing ---------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes | memoryview) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _array_bytes(arr: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(arr)).cast("B")


def _dir_name(spec: str, source: dict[str, Any]) -> str:
    if source["kind"] == "hf":
        return "hf_" + (re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source["name"]).name) or "dataset")
    if source["kind"] != "file":
        return source["kind"]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source["path"]).stem) or "corpus"


def prepare(
    spec: str,
    tokenizer_kind: str,
    *,
    val_fraction: float = 0.1,
    data_root: Path | str = Path("data"),
    glob: str = "**/*.py",
    max_bytes: int | None = None,
    split: str | None = None,
    text_field: str | None = None,
) -> tuple[Path, bool]:
    """Encode corpus `spec` into `<data_root>/<name>-<tokenizer>-<key>`; returns (directory, reused)."""
    if tokenizer_kind not in KINDS:
        raise TokenizerError(f"unknown tokenizer {tokenizer_kind!r}; valid kinds: {', '.join(KINDS)}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise CorpusError(f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}")
    val_fraction = float(val_fraction)
    text, source = read_corpus(spec, glob=glob, max_bytes=max_bytes, split=split, text_field=text_field)
    settings = {
        "source_sha256": source["sha256"],
        "tokenizer": tokenizer_kind,
        "val_fraction": val_fraction,
        "glob": glob if source["kind"] == "python_stdlib" else None,
        "max_bytes": max_bytes,
    }
    key = sha256_hex(json.dumps(settings, sort_keys=True).encode("ascii"))
    out = Path(data_root) / f"{_dir_name(spec, source)}-{tokenizer_kind}-{key[:12]}"
    if (out / "meta.json").is_file():
        try:
            meta, _ = _validate(out, check_ids=False)
        except CorpusError as e:
            log.info("preparing %s again: %s", out, e)
        else:
            if meta.get("key") == key:
                log.info("reusing prepared corpus %s", out)
                return out, True

    tokenizer = make_tokenizer(tokenizer_kind, text)
    ids = tokenizer.encode(text)
    n_val = int(round(len(ids) * val_fraction))
    n_train = len(ids) - n_val
    if n_train < 1 or n_val < 1:
        raise CorpusError(
            f"corpus {spec!r}: {len(ids)} tokens cannot be split into non-empty train and val "
            f"parts with val_fraction={val_fraction}"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # from here on the directory is incomplete until meta.json
    _atomic_write(out / "train.bin", _array_bytes(ids[:n_train]))
    _atomic_write(out / "val.bin", _array_bytes(ids[n_train:]))
    meta = {
        "format": FORMAT,
        "key": key,
        "source": source,
        "tokenizer": tokenizer.to_json(),
        "tokenizer_fingerprint": tokenizer.fingerprint(),
        "dtype": ids.dtype.name,
        "val_fraction": val_fraction,
        "n_train": n_train,
        "n_val": n_val,
    }
    _atomic_write(out / "meta.json", (json.dumps(meta, indent=1, ensure_ascii=True) + "\n").encode("ascii"))
    log.info("prepared %s: %d train + %d val tokens", out, n_train, n_val)
    return out, False


# -- loading -----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TokenData:
    """A prepared corpus: read-only memmaps of both splits, its tokenizer and meta.json."""

    path: Path
    train: np.memmap
    val: np.memmap
    tokenizer: Tokenizer
    meta: dict[str, Any]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def _validate(directory: Path, check_ids: bool) -> tuple[dict[str, Any], Tokenizer]:
    meta_path = directory / "meta.json"
    if not directory.is_dir():
        raise CorpusError(f"prepared corpus {directory}: no such directory")
    if not meta_path.is_file():
        raise CorpusError(
            f"{meta_path}: missing (not a prepared corpus, or its prepare was interrupted: run prepare again)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorpusError(f"{meta_path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CorpusError(f"{meta_path}: format {found!r}, expected {FORMAT!r}")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise CorpusError(f"{meta_path}: missing key(s) {', '.join(missing)}")
    dtype = _DTYPES.get(meta["dtype"])
    if dtype is None:
        raise CorpusError(f"{meta_path}: dtype {meta['dtype']!r} is not one of {', '.join(_DTYPES)}")
    try:
        tokenizer = tokenizer_from_json(meta["tokenizer"])
    except TokenizerError as e:
        raise CorpusError(f"{meta_path}: cannot rebuild its tokenizer ({e})") from None
    if tokenizer.fingerprint() != meta["tokenizer_fingerprint"]:
        raise CorpusError(
            f"{meta_path}: tokenizer fingerprint {tokenizer.fingerprint()} does not match the "
            f"recorded {meta['tokenizer_fingerprint']!r}"
        )
    if tokenizer.dtype != dtype:
        raise CorpusError(
            f"{meta_path}: dtype {meta['dtype']} does not fit tokenizer "
            f"{tokenizer.kind!r} (vocab_size {tokenizer.vocab_size})"
        )
    for split in ("train", "val"):
        n = meta[f"n_{split}"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise CorpusError(f"{meta_path}: n_{split} must be a positive integer, got {n!r}")
        bin_path = directory / f"{split}.bin"
        if not bin_path.is_file():
            raise CorpusError(f"{bin_path}: missing")
        size = bin_path.stat().st_size
        if size != n * dtype.itemsize:
            raise CorpusError(
                f"{bin_path}: {size} bytes, but meta.json says {n} tokens of {meta['dtype']} "
                f"= {n * dtype.itemsize} bytes"
            )
        if check_ids:
            top = int(np.memmap(bin_path, dtype=dtype, mode="r").max())
            if top >= tokenizer.vocab_size:
                raise CorpusError(
                    f"{bin_path}: holds id {top}, outside the tokenizer's vocabulary of {tokenizer.vocab_size}"
                )
    return meta, tokenizer


def load_prepared(directory: Path | str, check_ids: bool = True) -> TokenData:
    """Validate a prepared directory and map its splits read-only; `check_ids` scans them for bad ids."""
    directory = Path(directory)
    meta, tokenizer = _validate(directory, check_ids)
    dtype = _DTYPES[meta["dtype"]]
    train = np.memmap(directory / "train.bin", dtype=dtype, mode="r", shape=(meta["n_train"],))
    val = np.memmap(directory / "val.bin", dtype=dtype, mode="r", shape=(meta["n_val"],))
    return TokenData(directory, train, val, tokenizer, meta)


# -- batches -----------------------------------------------------------------------------------------


def _gather(tokens: np.ndarray, offsets: np.ndarray, length: int) -> np.ndarray:
    """Rows tokens[o : o + length + 1] for each offset o, as int64, in one fancy index."""
    return np.asarray(tokens[offsets[:, None] + np.arange(length + 1)], dtype=np.int64)


def _pair(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(rows[:, :-1])), torch.from_numpy(np.ascontiguousarray(rows[:, 1:]))


def windows_at(tokens: np.ndarray, offsets: np.ndarray, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) int64 CPU tensors (len(offsets), length) of the windows starting at `offsets`."""
    return _pair(_gather(tokens, np.asarray(offsets, dtype=np.int64), length))


def sample_windows(
    tokens: np.ndarray, batch: int, length: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` random windows: inputs tokens[o:o+length], targets tokens[o+1:o+length+1], as int64
    CPU tensors of shape (batch, length), with offsets o uniform in [0, len(tokens) - length - 1]
    drawn from the CPU generator `gen`."""
    if batch < 1 or length < 1:
        raise ValueError(f"sample_windows needs batch >= 1 and length >= 1, got batch={batch}, length={length}")
    if len(tokens) < length + 1:
        raise CorpusError(
            f"a split of {len(tokens)} tokens is too short for windows of length {length} (needs at least {length + 1})"
        )
    offsets = torch.randint(0, len(tokens) - length, (batch,), generator=gen).numpy()
    return _pair(_gather(tokens, offsets, length))


def iter_windows(tokens: np.ndarray, length: int, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive non-overlapping windows over a whole split, `batch` windows at a time.

    Window k has inputs tokens[k*length : (k+1)*length] and targets shifted by one, so every token but
    the first is a target exactly once. The full windows come in batches of shape (<= batch, length);
    the remainder, if any, comes last as one window of its true length, shape (1, r) with r < length.
    """
    if batch < 1 or length < 1:
        raise ValueError(f"iter_windows needs batch >= 1 and length >= 1, got batch={batch}, length={length}")
    n_targets = len(tokens) - 1
    n_full = max(n_targets, 0) // length
    for first in range(0, n_full, batch):
        offsets = np.arange(first, min(first + batch, n_full), dtype=np.int64) * length
        yield _pair(_gather(tokens, offsets, length))
    rest = n_targets - n_full * length
    if rest > 0:
        yield _pair(_gather(tokens, np.array([n_full * length], dtype=np.int64), rest))


__all__ = [
    "FORMAT",
    "TokenData",
    "prepare",
    "load_prepared",
    "sample_windows",
    "iter_windows",
]
