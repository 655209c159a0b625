"""Text corpora, prepared once into memory-mapped token files (as nanoGPT's train.bin / val.bin).

A corpus spec is a string: the path of a UTF-8 text file, or the name of a built-in corpus. The one
built-in, `python_stdlib`, is the `.py` source of the running Python's standard library
(`sysconfig.get_path("stdlib")`): the files matching `glob` (relative to that directory), minus
anything under `site-packages` / `dist-packages` and minus files that are not UTF-8 (skipped and
counted), sorted by relative POSIX path and concatenated, each preceded by a line `# file: <relpath>`
(and followed by a newline when it does not end with one). `max_bytes` keeps a prefix of that list:
files are added in order until the next one would push the total past `max_bytes`; the first file is
always included, cut at a character boundary if it alone is too long. For a file spec, `max_bytes`
keeps the file's first `max_bytes` bytes (again at a character boundary). A built-in name wins over
a file of the same name in the working directory (write `./python_stdlib` for the file).

A spec `hf:NAME[:CONFIG]` is a Hugging Face dataset, read with `datasets.load_dataset(NAME, CONFIG,
split=split)` in offline mode (a local directory of parquet/json/csv/arrow files, a directory written by
`save_to_disk`, or a dataset already in the local cache; iclab never downloads): the strings of column
`text_field` of that split, in row order, joined by a blank line ("\n\n"); `max_bytes` keeps a prefix as for
a file. A missing split or column, or a non-string value, is an error naming it.

`read_corpus` returns the text and a `source` dict that pins down exactly what it is (path or Python
version and file list, SHA-256 of the bytes); iclab/workloads/sequence/corpus.py prepares it into token files.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from iclab.errors import IclabError

BUILTINS = ("python_stdlib",)
HF_PREFIX = "hf:"  # hf:NAME[:CONFIG], a Hugging Face dataset
_EXCLUDED_DIRS = {"site-packages", "dist-packages"}

log = logging.getLogger(__name__)


class CorpusError(IclabError, ValueError):
    pass


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """The longest prefix of `data` of at most `limit` bytes that ends at a character boundary."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:  # data[cut] continues a character: back off
        cut -= 1
    return data[:cut]


def _check_max_bytes(max_bytes: int | None) -> None:
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
        raise CorpusError(f"max_bytes must be a positive integer or None, got {max_bytes!r}")


# -- reading -----------------------------------------------------------------------------------------


def read_corpus(
    spec: str,
    glob: str = "**/*.py",
    max_bytes: int | None = None,
    split: str | None = None,
    text_field: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The text of corpus `spec` and a `source` dict describing exactly what was read."""
    _check_max_bytes(max_bytes)
    if spec.startswith(HF_PREFIX):
        return _read_hf(spec, split or "train", text_field or "text", max_bytes)
    if split is not None or text_field is not None:
        raise CorpusError(f"corpus {spec!r}: split and text_field apply to {HF_PREFIX}NAME[:CONFIG] corpora only")
    if spec in BUILTINS:
        return _read_python_stdlib(glob, max_bytes)
    return _read_file(spec, max_bytes)


def _read_file(spec: str, max_bytes: int | None) -> tuple[str, dict[str, Any]]:
    path = Path(spec).expanduser()
    if not path.exists():
        if "/" not in spec and os.sep not in spec:
            raise CorpusError(f"corpus {spec!r}: no such file; built-in corpora: {', '.join(BUILTINS)}")
        raise CorpusError(f"corpus file {path}: no such file")
    if path.is_dir():
        raise CorpusError(f"corpus file {path}: is a directory, not a text file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"corpus file {path}: cannot be read ({e.strerror})") from None
    if not data:
        raise CorpusError(f"corpus file {path}: is empty")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"corpus file {path}: not valid UTF-8 (first bad byte at offset {e.start})") from None
    used = data if max_bytes is None else _cut_utf8(data, max_bytes)
    if not used:
        raise CorpusError(f"corpus file {path}: max_bytes={max_bytes} is shorter than its first character")
    source = {
        "kind": "file",
        "path": str(path.resolve()),
        "sha256": sha256_hex(data),
        "bytes": len(data),
        "max_bytes": max_bytes,
        "used_bytes": len(used),
    }
    return used.decode("utf-8"), source


@contextlib.contextmanager
def _offline(datasets: Any):
    """Hugging Face hub and datasets in offline mode while inside (restored after): iclab never downloads."""
    import huggingface_hub.constants as hub

    saved = [(m, a, getattr(m, a)) for m, a in ((datasets.config, "HF_HUB_OFFLINE"), (hub, "HF_HUB_OFFLINE"))]
    try:
        for m, a, _ in saved:
            setattr(m, a, True)
        yield
    finally:
        for m, a, v in saved:
            setattr(m, a, v)


def load_hf_split(spec: str, split: str) -> Any:
    """The `split` of dataset `hf:NAME[:CONFIG]` (a datasets.Dataset), offline; CorpusError names what is wrong."""
    name, _, config = spec[len(HF_PREFIX) :].partition(":")
    if not name:
        raise CorpusError(
            f"corpus {spec!r}: give {HF_PREFIX}NAME[:CONFIG] (a local dataset directory or a cached name)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when datasets is first imported; patched below too
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise CorpusError(f"corpus {spec!r} needs the datasets package: pip install 'iclab[hf]'") from None
    path = Path(name).expanduser()
    with _offline(datasets):
        try:
            if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
                ds = datasets.load_from_disk(str(path))  # written by save_to_disk
                if isinstance(ds, datasets.DatasetDict):
                    if split not in ds:
                        raise ValueError(f'Unknown split "{split}". Should be one of {list(ds)}.')
                    ds = ds[split]
                elif split != "train":
                    raise ValueError(f"Unknown split \"{split}\". Should be one of ['train'].")
            else:
                ds = datasets.load_dataset(str(path) if path.is_dir() else name, config or None, split=split)
        except ValueError as e:
            msg = " ".join(str(e).split())
            if "split" in msg.lower():
                raise CorpusError(f"corpus {spec!r}: split {split!r} does not exist ({msg[:200]})") from None
            raise CorpusError(f"corpus {spec!r}: {msg[:200]}") from None
        except (OSError, FileNotFoundError, ConnectionError) as e:
            msg = " ".join(str(e).split())[:200]
            raise CorpusError(f"corpus {spec!r}: not found locally (offline: nothing is downloaded): {msg}") from None
    return ds


def _read_hf(spec: str, split: str, text_field: str, max_bytes: int | None) -> tuple[str, dict[str, Any]]:
    ds = load_hf_split(spec, split)
    if text_field not in ds.column_names:
        raise CorpusError(
            f"corpus {spec!r}: split {split!r} has no column {text_field!r} (task.options.text_field); "
            f"its columns: {', '.join(ds.column_names)}"
        )
    docs = ds[text_field]
    bad = next((i for i, d in enumerate(docs) if not isinstance(d, str)), None)
    if bad is not None:
        raise CorpusError(
            f"corpus {spec!r}: row {bad} of column {text_field!r} is a {type(docs[bad]).__name__}, not a string"
        )
    data = "\n\n".join(docs).encode("utf-8", "surrogatepass")
    if not data:
        raise CorpusError(f"corpus {spec!r}: column {text_field!r} of split {split!r} is empty")
    used = data if max_bytes is None else _cut_utf8(data, max_bytes)
    name, _, config = spec[len(HF_PREFIX) :].partition(":")
    source = {
        "kind": "hf",
        "name": str(Path(name).expanduser().resolve()) if Path(name).expanduser().is_dir() else name,
        "config": config or None,
        "split": split,
        "text_field": text_field,
        "n_docs": len(docs),
        "sha256": sha256_hex(data),
        "bytes": len(data),
        "max_bytes": max_bytes,
        "used_bytes": len(used),
    }
    return used.decode("utf-8", "surrogatepass"), source


def _read_python_stdlib(glob: str, max_bytes: int | None) -> tuple[str, dict[str, Any]]:
    root = Path(sysconfig.get_path("stdlib"))
    try:
        found = [
            p for p in root.glob(glob) if not _EXCLUDED_DIRS.intersection(p.relative_to(root).parts) and p.is_file()
        ]
    except (ValueError, NotImplementedError) as e:
        raise CorpusError(f"corpus python_stdlib: bad glob {glob!r} ({e})") from None
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    pieces: list[bytes] = []
    names: list[str] = []
    total = skipped = 0
    for p in found:
        rel = p.relative_to(root).as_posix()
        try:
            data = p.read_bytes()
            data.decode("utf-8")
            header = f"# file: {rel}\n".encode()
        except (UnicodeError, OSError):
            skipped += 1
            continue
        piece = header + data + (b"\n" if data and not data.endswith(b"\n") else b"")
        if max_bytes is not None and total + len(piece) > max_bytes:
            if not pieces:  # the first file always goes in, cut to size
                pieces.append(_cut_utf8(piece, max_bytes))
                names.append(rel)
            break
        pieces.append(piece)
        names.append(rel)
        total += len(piece)
    if not pieces or not pieces[0]:
        raise CorpusError(
            f"corpus python_stdlib: no UTF-8 file matches {glob!r} under {root} "
            f"({len(found)} matched, {skipped} not UTF-8)"
        )
    blob = b"".join(pieces)
    source = {
        "kind": "python_stdlib",
        "python": sys.version,
        "stdlib": str(root),
        "glob": glob,
        "max_bytes": max_bytes,
        "n_files": len(names),
        "files_sha256": sha256_hex("\n".join(names).encode("utf-8")),
        "sha256": sha256_hex(blob),
        "bytes": len(blob),
        "skipped_non_utf8": skipped,
    }
    return blob.decode("utf-8"), source
