"""Checkpoints: one safetensors file per checkpoint, written atomically, verified on load.

A checkpoint holds the model's tensors (`model/...`), the optimizer's state (`optim/...`, its nested
structure kept as JSON in the metadata), the RNG states and the trainer's counters. The metadata also
holds a SHA-256 of all tensor bytes and the model/task config it was made with, so a truncated, altered
or foreign file is refused with a message naming the file. Nothing is unpickled: loading cannot run code.
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

FORMAT = "iclab-checkpoint-1"
_NAME = re.compile(r"^step_(\d{9})\.safetensors$")


class CheckpointError(RuntimeError):
    pass


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


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
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


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync, then rename over `path`: readers never see a partial file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(path: Path, *, model_state: dict, optim_state: dict, rng: dict, trainer: dict, identity: dict) -> None:
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
        "sha256": _digest(tensors),
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def load_checkpoint(path: Path, identity: dict | None = None) -> dict:
    """Load and verify. Returns dict(model=state_dict, optim=..., rng=..., trainer=..., identity=...)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(str(path))
        meta = read_metadata(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or not a safetensors file): {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an iclab checkpoint (format={meta.get('format')!r})")
    try:
        if _digest(tensors) != meta["sha256"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: its tensors do not match the stored SHA-256")
        saved_identity = json.loads(meta["identity"])
        trainer = json.loads(meta["trainer"])
        optim = _unflatten(json.loads(meta["optim"]), tensors)
        rng = _unflatten(json.loads(meta["rng"]), tensors)
    except (KeyError, json.JSONDecodeError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} has damaged metadata ({e})") from None
    if identity is not None and saved_identity != identity:
        diffs = [
            f"{k}: checkpoint {saved_identity.get(k)!r} vs config {identity.get(k)!r}"
            for k in sorted(set(identity) | set(saved_identity))
            if saved_identity.get(k) != identity.get(k)
        ]
        raise CheckpointError(f"checkpoint {path} was made with another configuration: " + "; ".join(diffs))
    model = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    return {"model": model, "optim": optim, "rng": rng, "trainer": trainer, "identity": saved_identity}


def prune_checkpoints(ckpt_dir: Path, keep_last: int, milestone_every: int | None) -> None:
    ckpts = list_checkpoints(ckpt_dir)
    recent = {s for s, _ in ckpts[-keep_last:]}
    for step, p in ckpts:
        if step in recent or (milestone_every and step % milestone_every == 0):
            continue
        p.unlink(missing_ok=True)
