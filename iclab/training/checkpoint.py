"""Checkpoints: one safetensors file per checkpoint, written atomically, verified on load.

A checkpoint holds the model's tensors (`model/...`), the optimizer's state (`optim/...`, its nested
structure kept as JSON in the metadata), the RNG states and the trainer's counters. The metadata also
holds the model/task config it was made with and a SHA-256 of all tensor bytes and of every other
metadata field, so a truncated, altered or foreign file is refused with a message naming the file and
what is wrong (`CorruptCheckpointError`: unreadable or altered; `IncompatibleCheckpointError`: made with
another configuration). Nothing is unpickled: loading cannot run code.

The final weights (`model.safetensors`) carry the same digest and identity (`save_weights`/`load_weights`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from iclab.config import AttentionConfig, Config
from iclab.errors import IclabError
from iclab.files import TMP_PREFIX as _TMP_PREFIX
from iclab.files import atomic_write
from iclab.training.device import TrainingError

FORMAT = "iclab-checkpoint-2"
WEIGHTS_FORMAT = "iclab-weights-1"
_NAME = re.compile(r"^step_(\d{9})\.safetensors$")
_META_KEY = "iclab"  # all metadata in one JSON entry: safetensors writes a map's keys in random order,
#                      a single key keeps equal checkpoints byte-identical


class CheckpointError(IclabError, RuntimeError):
    pass


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, unreadable or altered since it was written."""


class IncompatibleCheckpointError(CheckpointError):
    """The file is intact but was made with another model/task/optimizer configuration."""


# --- nested state <-> (tensors, JSON skeleton) ------------------------------------------------------
def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().contiguous().cpu()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a checkpoint (at {prefix})")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _digest(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """SHA-256 over every metadata field (but the digest itself) and every tensor's name, dtype, shape, bytes."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    for k in sorted(tensors):
        t = tensors[k]
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# --- files ------------------------------------------------------------------------------------------
def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:09d}.safetensors"


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of finished checkpoints, oldest first. Temporary files are ignored."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files left by a writer that was killed mid-write. Call only while holding the run's lock."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(_TMP_PREFIX) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_checkpoint(
    path: Path, *, model_state: dict, optim_state: dict, rng: dict, trainer: dict, identity: dict
) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model_state.items():
        tensors[f"model/{k}"] = v.detach().contiguous().cpu()
    optim_skel = _flatten(optim_state, "optim", tensors)
    rng_skel = _flatten(rng, "rng", tensors)
    meta = {
        "format": FORMAT,
        "identity": json.dumps(identity, sort_keys=True),
        "trainer": json.dumps(trainer),
        "optim": json.dumps(optim_skel),
        "rng": json.dumps(rng_skel),
    }
    _write(path, tensors, meta)


def _write(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    meta = dict(meta, sha256=_digest(tensors, meta))
    packed = {_META_KEY: json.dumps(meta, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=packed))


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata an iclab file was written with (raises ValueError if it is not valid JSON)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    if _META_KEY not in raw:
        return raw
    meta = json.loads(raw[_META_KEY])
    if not isinstance(meta, dict):
        raise ValueError(f"metadata entry {_META_KEY!r} is not a JSON object")
    return meta


def _read_verified(path: Path, formats: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(str(path))
        meta = read_metadata(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptCheckpointError(
            f"checkpoint {path} is unreadable (truncated or not a safetensors file): {e}"
        ) from None
    if meta.get("format") not in formats:
        raise CorruptCheckpointError(
            f"checkpoint {path} is not an iclab file of the expected kind "
            f"(format={meta.get('format')!r}, expected {' or '.join(formats)})"
        )
    if _digest(tensors, meta) != meta.get("sha256"):
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupt: its contents do not match the SHA-256 stored in it "
            "(altered or damaged since it was written)"
        )
    return tensors, meta


def _leaf_diffs(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _leaf_diffs(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [f"{prefix}: checkpoint has {a!r}, the config has {b!r}"]


def check_identity(path: Path, saved: dict, expected: dict | None) -> None:
    if expected is not None and saved != expected:
        raise IncompatibleCheckpointError(
            f"checkpoint {path} was made with another configuration: " + "; ".join(_leaf_diffs(saved, expected, ""))
        )


def load_checkpoint(path: Path, identity: dict | None = None) -> dict:
    """Load and verify. Returns dict(model=state_dict, optim=..., rng=..., trainer=..., identity=...)."""
    path = Path(path)
    tensors, meta = _read_verified(path, (FORMAT,))
    try:
        saved_identity = json.loads(meta["identity"])
        trainer = json.loads(meta["trainer"])
        optim = _unflatten(json.loads(meta["optim"]), tensors)
        rng = _unflatten(json.loads(meta["rng"]), tensors)
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as e:
        raise CorruptCheckpointError(f"checkpoint {path} has damaged metadata ({e})") from None
    check_identity(path, saved_identity, identity)
    model = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    return {"model": model, "optim": optim, "rng": rng, "trainer": trainer, "identity": saved_identity}


def save_weights(path: Path, state_dict: dict, *, identity: dict, step: int) -> None:
    """The final weights: plain tensor names (loadable by any safetensors reader) plus digest and identity."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {"format": WEIGHTS_FORMAT, "identity": json.dumps(identity, sort_keys=True), "step": str(step)}
    _write(path, tensors, meta)


def load_weights(path: Path, identity: dict | None = None) -> dict[str, torch.Tensor]:
    path = Path(path)
    tensors, meta = _read_verified(path, (WEIGHTS_FORMAT,))
    try:
        saved_identity = json.loads(meta["identity"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"checkpoint {path} has damaged metadata ({e})") from None
    check_identity(path, saved_identity, identity)
    return tensors


def quarantine(path: Path) -> Path:
    """Rename a damaged checkpoint out of the way (kept for inspection; no longer listed)."""
    path = Path(path)
    dest = path.with_name(path.name + ".corrupt")
    os.replace(path, dest)
    return dest


def prune_checkpoints(ckpt_dir: Path, keep_last: int, milestone_every: int | None) -> None:
    ckpts = list_checkpoints(ckpt_dir)
    recent = {s for s, _ in ckpts[-keep_last:]}
    for step, p in ckpts:
        if step in recent or (milestone_every and step % milestone_every == 0):
            continue
        p.unlink(missing_ok=True)


INIT_WEIGHTS = "init.safetensors"  # the weights at step 0, saved by every run (iclab landscape --directions init)


def identity(cfg: Config, workload=None) -> dict:
    """What a checkpoint must match to be loaded into a run of `cfg` (and the workload's own items,
    e.g. the vocabulary of a token workload). Config keys added in later versions are left out while they
    hold their default, so checkpoints written before them still load."""
    model, task = cfg.model.model_dump(mode="json"), cfg.task.model_dump(mode="json")
    for section, defaults in _LATER_KEYS.items():
        d = {"model": model, "task": task}[section]
        for key, default in defaults.items():
            if d.get(key) == default:
                d.pop(key)
    return {
        "model": model,
        "task": task,
        "optimizer": cfg.training.optimizer.name,
        **(workload.identity() if workload is not None else {}),
    }


def check_vocabulary(saved: dict, ours: dict, src: str) -> None:
    """Weights from another run (`training.init_from`) fit only a run with the same vocabulary; every other
    difference of identity is allowed (fine-tuning changes the task or the optimizer)."""
    for key in ("vocab_size", "tokenizer"):
        if key in ours and saved.get(key) != ours[key]:
            raise TrainingError(
                f"training.init_from={src}: vocabulary mismatch: the weights were trained with "
                f"{key}={saved.get(key)!r}, this run's data has {ours[key]!r}"
            )


_LATER_KEYS = {
    "task": {"seq_len": None},  # keys added after checkpoints already existed, with their defaults
    "model": {"loop_loss": "mean", "attention": AttentionConfig().model_dump(mode="json")},
}  # keys added after checkpoints already existed, with their defaults
