"""iclab's tokenizers as Hugging Face (`tokenizers` / `transformers`) tokenizers with the same ids.

char   WordLevel over the run's characters (id i = chars[i]); a pre-tokenizer splits every character
       ([\\s\\S]: newlines too) and the Fuse decoder joins them back. A character outside the vocabulary is an
       error ("Missing [UNK] token"), as in iclab: there is no unknown token to fall back to.
byte   byte-level BPE with the 256 byte symbols and no merges (id = the byte), GPT-2's byte-to-unicode
       alphabet, so encode = UTF-8 bytes and decode replaces invalid sequences.
gpt2   GPT-2's vocabulary and merges, from the same local tiktoken cache iclab's tokenizer reads
       (encoder.json, vocab.bpe); nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from iclab.interop.common import InteropError, require
from iclab.workloads.sequence.tokenizers import Tokenizer

EOT = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map: the printable Latin-1 bytes stand for themselves, the other
    68 bytes take the characters 256, 257, ... in byte order."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def _gpt2_files() -> tuple[Path, Path]:
    """encoder.json and vocab.bpe from tiktoken's cache (the files iclab's gpt2 tokenizer was built from)."""
    import hashlib

    from iclab.workloads.sequence import tokenizers as T

    try:
        import tiktoken.load as tl
    except ImportError:
        tl = None
    for d in T._tiktoken_cache_dirs(tl):
        for prefix in T._GPT2_URL_PREFIXES:
            enc, bpe = (
                Path(d) / hashlib.sha1((prefix + n).encode()).hexdigest() for n in ("encoder.json", "vocab.bpe")
            )
            if enc.is_file() and bpe.is_file():
                return enc, bpe
    raise InteropError(
        "tokenizer gpt2: encoder.json / vocab.bpe are not in tiktoken's local cache; nothing is downloaded"
    )


def hf_tokenizer(tok: Tokenizer):
    """A transformers PreTrainedTokenizerFast that maps text to the ids `tok` gives."""
    tokenizers = require("tokenizers")
    from tokenizers import Regex, decoders, models, pre_tokenizers

    transformers = require("transformers")
    special = {}
    if tok.kind == "char":
        t = tokenizers.Tokenizer(models.WordLevel(vocab={c: i for i, c in enumerate(tok.chars)}))
        t.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
        t.decoder = decoders.Fuse()
    elif tok.kind == "byte":
        b2u = bytes_to_unicode()
        t = tokenizers.Tokenizer(models.BPE(vocab={b2u[b]: b for b in range(256)}, merges=[]))
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        t.decoder = decoders.ByteLevel()
    elif tok.kind == "gpt2":
        enc, bpe = _gpt2_files()
        vocab = json.loads(enc.read_text(encoding="utf-8"))
        merges = [tuple(ln.split()) for ln in bpe.read_text(encoding="utf-8").splitlines()[1:] if ln.strip()]
        t = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges))
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t.decoder = decoders.ByteLevel()
        special = dict(bos_token=EOT, eos_token=EOT, unk_token=EOT)
    else:
        raise InteropError(f"tokenizer {tok.kind!r} has no Hugging Face counterpart")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=t, model_max_length=int(1e30), **special)


def save_tokenizer(tok: Tokenizer, out: Path, n_positions: int) -> None:
    fast = hf_tokenizer(tok)
    fast.model_max_length = n_positions
    fast.save_pretrained(str(out))
