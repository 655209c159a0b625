"""Tokenizers for token-sequence workloads: characters, UTF-8 bytes, or GPT-2 BPE.

Every tokenizer has the same small interface:

* `kind` ("char" | "byte" | "gpt2") and `vocab_size`;
* `encode(text) -> np.ndarray` of ids in `dtype` (little-endian uint16 when the vocabulary fits in
  16 bits, else uint32): the array is written as is into a corpus's `train.bin` / `val.bin`;
* `decode(ids) -> str`, ids given as a list, a numpy array or a 1-D torch tensor;
* `to_json()`: a plain dict that `tokenizer_from_json` turns back into an identical tokenizer;
* `fingerprint()`: the first 16 hex digits of the SHA-256 of the canonical JSON (sorted keys, ASCII
  escapes), stored next to prepared data and checkpoints so that a model is never fed ids from
  another vocabulary.

`CharTokenizer` maps each character of its vocabulary to its index in `chars` (`from_text` uses the
sorted distinct characters of a text). Encoding is vectorized: the text becomes an array of Unicode
code points (`str.encode("utf-32-le")` viewed as uint32), and a dense table indexed by code point
(at most 0x110000 int32 entries) gives the ids; the text is processed in slices of a few million
characters to bound the temporary memory. A character outside the vocabulary is an error naming it
and its position, never a silent substitute.

`ByteTokenizer` is UTF-8 with a fixed vocabulary of 256; decoding replaces invalid sequences (a
model may well emit them).

`GPT2Tokenizer` wraps `tiktoken`'s "gpt2" encoding, but only when tiktoken is installed and its
encoding files are already in tiktoken's local cache: iclab never downloads at run time. The cache
lookup mirrors `tiktoken.load.read_file_cached` (directory `TIKTOKEN_CACHE_DIR`, else
`DATA_GYM_CACHE_DIR`, else `<tempdir>/data-gym-cache`, or `_default_cache_dir()` in the tiktoken
versions that have one; file name = SHA-1 hex of the blob URL), and while tiktoken builds the
encoding its remote reader is replaced by one that raises, so a stale or incomplete cache fails
instead of reaching the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from typing import Any, ClassVar

import numpy as np

from iclab.errors import IclabError

KINDS = ("char", "byte", "gpt2")
_CHUNK = 1 << 22  # characters per encoding slice


class TokenizerError(IclabError, ValueError):
    pass


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


def _ids_array(ids: Any, vocab_size: int, kind: str) -> np.ndarray:
    """ids (list, numpy array, 1-D torch tensor) as a 1-D int64 array, each checked in [0, vocab_size)."""
    if hasattr(ids, "detach") and hasattr(ids, "cpu"):  # a torch tensor, without importing torch here
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise TokenizerError(f"tokenizer {kind!r}: decode takes a 1-D sequence of ids, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TokenizerError(f"tokenizer {kind!r}: decode takes integer ids, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        raise TokenizerError(
            f"tokenizer {kind!r}: id {int(arr[bad[0]])} at position {int(bad[0])} "
            f"is outside the vocabulary [0, {vocab_size})"
        )
    return arr.astype(np.int64, copy=False)


class Tokenizer:
    """The common interface (see the module docstring)."""

    kind: ClassVar[str]
    vocab_size: int

    @property
    def dtype(self) -> np.dtype:
        return _dtype_for(self.vocab_size)

    def encode(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids: Any) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size}

    def fingerprint(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, fingerprint={self.fingerprint()})"


def _code_points(text: str) -> np.ndarray:
    # surrogatepass: a lone surrogate is just another code point here
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class CharTokenizer(Tokenizer):
    """Id i is the character chars[i]; `from_text` builds the sorted distinct characters of a text."""

    kind = "char"

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars:
            raise TokenizerError(f"tokenizer 'char': the vocabulary must be a non-empty string, got {chars!r:.60}")
        cps = _code_points(chars)
        uniq, counts = np.unique(cps, return_counts=True)
        if (counts > 1).any():
            raise TokenizerError(
                f"tokenizer 'char': character {chr(int(uniq[counts > 1][0]))!r} "
                f"appears more than once in the vocabulary"
            )
        self.chars = chars
        self.vocab_size = len(chars)
        self._cps = cps.copy()
        self._table = np.full(int(cps.max()) + 2, -1, dtype=np.int32)  # last entry: "above the vocabulary"
        self._table[cps] = np.arange(len(chars), dtype=np.int32)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not text:
            raise TokenizerError("tokenizer 'char' builds its vocabulary from a text, and the text is empty")
        present = np.zeros(0x110000, dtype=bool)
        for start in range(0, len(text), _CHUNK):
            present[_code_points(text[start : start + _CHUNK])] = True
        return cls(np.flatnonzero(present).astype("<u4").tobytes().decode("utf-32-le", "surrogatepass"))

    def encode(self, text: str) -> np.ndarray:
        out = np.empty(len(text), dtype=self.dtype)
        top = len(self._table) - 1
        for start in range(0, len(text), _CHUNK):
            cps = _code_points(text[start : start + _CHUNK])
            ids = self._table[np.minimum(cps, top)]
            bad = np.flatnonzero(ids < 0)
            if bad.size:
                i = int(bad[0])
                raise TokenizerError(
                    f"tokenizer 'char': character {chr(int(cps[i]))!r} at position {start + i} "
                    f"is not in the vocabulary of {self.vocab_size} characters"
                )
            out[start : start + len(ids)] = ids
        return out

    def decode(self, ids: Any) -> str:
        arr = _ids_array(ids, self.vocab_size, self.kind)
        return self._cps[arr].tobytes().decode("utf-32-le", "surrogatepass")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "chars": self.chars}


class ByteTokenizer(Tokenizer):
    """The UTF-8 bytes of the text; vocabulary 256. Decoding replaces invalid UTF-8 with U+FFFD."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TokenizerError(
                f"tokenizer 'byte': character {text[e.start]!r} at position {e.start} "
                f"has no UTF-8 encoding (a lone surrogate)"
            ) from None
        return np.frombuffer(data, dtype=np.uint8).astype(self.dtype)

    def decode(self, ids: Any) -> str:
        arr = _ids_array(ids, self.vocab_size, self.kind)
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


# -- GPT-2 through tiktoken, from the local cache only --------------------------------------------

_GPT2_FILES = {  # file name -> sha256 that tiktoken checks (None where it does not check)
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
_GPT2_URL_PREFIXES = (  # the recent releases' URL, and the older releases' blob path
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/",
    "az://openaipublic/gpt-2/encodings/main/",
)
_GPT2_HINT = "iclab never downloads at run time: use tokenizer char or byte"
_no_network = threading.Lock()


def _tiktoken_cache_dirs(load_module: Any) -> list[str]:
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return [os.environ[var]]
    dirs = [os.path.join(tempfile.gettempdir(), "data-gym-cache")]
    default = getattr(load_module, "_default_cache_dir", None)  # some releases use ~/.cache/tiktoken
    if callable(default):
        dirs.insert(0, default())
    return dirs


def _missing_gpt2_files(load_module: Any) -> str | None:
    """None when every gpt2 file is cached (for one URL scheme) with the right hash, else what is missing."""
    dirs = _tiktoken_cache_dirs(load_module)
    if dirs == [""]:
        return "caching is disabled (TIKTOKEN_CACHE_DIR is empty)"
    for d in dirs:
        for prefix in _GPT2_URL_PREFIXES:
            ok = True
            for name, sha in _GPT2_FILES.items():
                path = os.path.join(d, hashlib.sha1((prefix + name).encode()).hexdigest())
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    ok = False
                    break
                if prefix.startswith("https") and hashlib.sha256(data).hexdigest() != sha:
                    ok = False
                    break
            if ok:
                return None
    return f"no cached vocab.bpe and encoder.json (sha1 of their URLs) in {' or '.join(dirs)}"


def _load_gpt2_encoding() -> Any:
    try:
        import tiktoken
        import tiktoken.load as tiktoken_load
    except ImportError:
        raise TokenizerError(
            f"tokenizer 'gpt2' needs the tiktoken package and its cached gpt2 encoding files "
            f"(tiktoken is not installed); {_GPT2_HINT}"
        ) from None
    missing = _missing_gpt2_files(tiktoken_load)
    if missing is not None:
        raise TokenizerError(
            f"tokenizer 'gpt2' needs the tiktoken package and its cached gpt2 encoding files ({missing}); {_GPT2_HINT}"
        )

    def refuse(blobpath: str) -> bytes:
        raise TokenizerError(f"tokenizer 'gpt2': {blobpath} is not in tiktoken's cache; {_GPT2_HINT}")

    with _no_network:  # belt and braces: a cache miss now raises instead of downloading
        original = tiktoken_load.read_file
        tiktoken_load.read_file = refuse
        try:
            return tiktoken.get_encoding("gpt2")
        finally:
            tiktoken_load.read_file = original


class GPT2Tokenizer(Tokenizer):
    """GPT-2 byte-level BPE (50257 ids, `<|endoftext|>` = 50256 is never produced by `encode`)."""

    kind = "gpt2"
    vocab_size = 50257

    def __init__(self) -> None:
        self._enc = _load_gpt2_encoding()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._enc.encode_ordinary(text), dtype=self.dtype)

    def decode(self, ids: Any) -> str:
        arr = _ids_array(ids, self.vocab_size, self.kind)
        return self._enc.decode(arr.tolist(), errors="replace")


# -- construction ------------------------------------------------------------------------------------


def make_tokenizer(kind: str, text: str | None = None) -> Tokenizer:
    """A tokenizer of `kind`; "char" builds its vocabulary from `text` (required)."""
    if kind == "char":
        if text is None:
            raise TokenizerError("tokenizer 'char' builds its vocabulary from the corpus text: pass text=")
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "gpt2":
        return GPT2Tokenizer()
    raise TokenizerError(f"unknown tokenizer {kind!r}; valid kinds: {', '.join(KINDS)}")


def tokenizer_from_json(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `to_json()`; the recorded vocab_size must match the rebuilt one."""
    if not isinstance(d, dict) or "kind" not in d:
        raise TokenizerError(f"a tokenizer description must be a dict with a 'kind', got {d!r:.80}")
    kind = d["kind"]
    if kind == "char":
        if not isinstance(d.get("chars"), str):
            raise TokenizerError("tokenizer 'char' description has no 'chars' string")
        tok: Tokenizer = CharTokenizer(d["chars"])
    elif kind in ("byte", "gpt2"):
        tok = make_tokenizer(kind)
    else:
        raise TokenizerError(f"unknown tokenizer {kind!r}; valid kinds: {', '.join(KINDS)}")
    if d.get("vocab_size", tok.vocab_size) != tok.vocab_size:
        raise TokenizerError(
            f"tokenizer {kind!r} description says vocab_size {d['vocab_size']}, "
            f"but its vocabulary has {tok.vocab_size} entries"
        )
    return tok


__all__ = [
    "KINDS",
    "Tokenizer",
    "TokenizerError",
    "CharTokenizer",
    "ByteTokenizer",
    "GPT2Tokenizer",
    "make_tokenizer",
    "tokenizer_from_json",
]
