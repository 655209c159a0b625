"""Files written atomically: a reader (or a crash) never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from iclab.errors import IclabError

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


def options_tag(options: dict, defaults: dict | None = None) -> str:
    """A file-name tag spelling the options that differ from their defaults (None counts as the default), e.g.
    {"loops": 3, "seed": 5} -> "loops3_seed5"; "" when every option is at its default. Commands that write a
    result into a run name it `<stem>_<tag>` with this tag when the user gave no --tag, so a result computed with
    other options never replaces the default one in silence."""
    defaults = defaults or {}
    parts = []
    for key, value in options.items():
        if value is None or value is False or (key in defaults and value == defaults[key]):
            continue
        if isinstance(value, dict):
            value = "+".join(f"{k}{v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            value = "+".join(map(str, value))
        text = key.replace("_", "") + ("" if value is True else str(value))
        parts.append("".join(c if c.isalnum() or c in ".+-" else "-" for c in text))
    return "_".join(parts)


def check_replace(path: Path, record: dict, keys: tuple[str, ...], force: bool, tag_flag: str = "--tag") -> None:
    """Refuse (ResultExists) to replace the result at `path` with one whose `keys` differ from the stored record's,
    unless `force`: the earlier result would be lost without a word."""
    path = Path(path)
    if force or not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    value = lambda k: list(old[k]) if isinstance(old.get(k), dict) else old.get(k)  # noqa: E731  (a dict: its keys)
    diff = [k for k in keys if value(k) != record.get(k)]
    if diff:
        was = ", ".join(f"{k}={value(k)}" for k in diff)
        now = ", ".join(f"{k}={record.get(k)}" for k in diff)
        raise IclabError(
            f"{path} holds a result with {was}; this one ({now}) would replace it: give {tag_flag} NAME to keep "
            "both, or --force to replace it"
        )
