"""Files written atomically: a reader (or a crash) never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

TMP_PREFIX = ".tmp-"


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync, then rename over `path` (and fsync the directory): readers never see
    a partial file, and a crash leaves either the old file or the new one (plus at worst a stray temp file,
    which `remove_stale_temps` deletes and `list_checkpoints` ignores)."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1))


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file such as a run's metrics.jsonl ([] if it does not exist). A line
    that is not a JSON object (a record cut short by a crash, always the last one) is skipped; this is the
    one reader of metrics.jsonl in iclab."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
