"""`iclab import SRC OUT --corpus C`: a nanoGPT checkpoint or a Hugging Face GPT-2 directory as an iclab run.

SRC is either
  * a nanoGPT `ckpt.pt` (a dict with `model_args` and `model`, as nanoGPT's train.py writes it), read with
    `torch.load(weights_only=True)`: only tensors and plain containers are unpickled, never code; anything else
    is refused with one line. `model_args` gives the shape (n_layer, n_head, n_embd, block_size, bias,
    vocab_size, dropout); nanoGPT's GELU is the exact one (iclab activation `gelu`). A checkpoint of the seed's
    Reflex code (`model_args.model_type: reflex`: layers 0-1 plain, then heads 0-4 self, 5-6 reading layer i-1,
    7 reading layer i-2) becomes iclab's Reflex model with allocation [[8], [8], [5, 2, 1], ...];
  * a Hugging Face directory of a GPT-2 model (config.json with model_type gpt2; model.safetensors, its
    shards, or pytorch_model.bin read with weights_only=True). Another architecture is refused with one line.

OUT becomes a language-model run directory (config.yaml, model.safetensors with the checkpoint identity,
tokenizer.json, data.json, import.json) on the corpus given (`--corpus`, `--tokenizer`; `--set key=value` for
any other config key), so `iclab eval`, `sample`, `surgery`, `lens`, `eval --multiple-choice` and the analyses
read it like a trained run. The tokenizer must give the model's vocabulary: for `char` the corpus must have
exactly the model's characters (nanoGPT's shakespeare_char builds the same sorted character list from its
input.txt as iclab does); a GPT-2 BPE model padded to more rows (nanoGPT's 50304) keeps the first 50257
(the rows no token uses; import.json records it). Everything is checked and built before OUT is written; it is
written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from pydantic import ValidationError

from iclab.config import ModelConfig, dump_config, validate
from iclab.config_files import apply_overrides
from iclab.interop.common import InteropError
from iclab.interop.layout import ACTIVATION_FROM_HF, LayoutError, from_hf_gpt2, from_nanogpt
from iclab.models.reflex_plan import reflex_plan
from iclab.training.checkpoint import identity, save_weights
from iclab.workloads import make_workload

GPT2_VOCAB = 50257
SEED_REFLEX_ROW = [5, 2, 1]  # the seed's hard-coded head split for layers >= 2 (8 heads)


# --- reading the sources ------------------------------------------------------------------------------------------
def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's unpickling refusal, or a damaged / foreign file (several exception types)
        msg = " ".join(str(e).split()) or type(e).__name__
        if "weights only load failed" in msg.lower() or "weights_only" in msg:
            detail = next((p for p in msg.split(". ") if "GLOBAL" in p or "Unsupported" in p), msg)
            raise InteropError(
                f"{path}: refused: it pickles more than tensors and plain containers ({detail[:160]})"
            ) from None
        raise InteropError(f"{path}: not a readable torch checkpoint ({msg[:160]})") from None


def read_nanogpt(path: Path) -> tuple[dict, dict, dict]:
    """(model_args, iclab state, notes) of a nanoGPT ckpt.pt."""
    ckpt = _torch_load(path)
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("model_args"), dict)
        or not isinstance(ckpt.get("model"), dict)
    ):
        raise InteropError(f"{path}: not a nanoGPT checkpoint (a dict with 'model_args' and 'model')")
    args = ckpt["model_args"]
    missing = [k for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size") if k not in args]
    if missing:
        raise InteropError(f"{path}: model_args lacks {', '.join(missing)}")
    if not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise InteropError(f"{path}: 'model' must map names to tensors")
    model = {
        "n_layer": int(args["n_layer"]),
        "n_head": int(args["n_head"]),
        "n_embd": int(args["n_embd"]),
        "n_positions": int(args["block_size"]),
        "dropout": float(args.get("dropout", 0.0)),
        "activation": "gelu",  # nanoGPT's nn.GELU(): the exact (erf) GELU
    }
    notes = {"iter_num": int(ckpt["iter_num"]) if isinstance(ckpt.get("iter_num"), int) else None}
    kv_heads = None
    if args.get("model_type") == "reflex":
        if model["n_head"] != 8:
            raise InteropError(
                f"{path}: a seed Reflex checkpoint with n_head={model['n_head']}: the seed's code splits 8 heads "
                "5-2-1 (heads 0-4 self, 5-6 layer i-1, 7 layer i-2)"
            )
        rows = [[8]] * min(2, model["n_layer"]) + [SEED_REFLEX_ROW] * max(0, model["n_layer"] - 2)
        model["attention"] = {"name": "reflex", "allocation": rows}
        try:
            cfg = ModelConfig.model_validate(model)
        except ValidationError as e:
            raise InteropError(f"{path}: model_args do not make an iclab model ({e.errors()[0]['msg']})") from None
        kv_heads = [p.kv_heads for p in reflex_plan(cfg.attention, cfg.n_layer, cfg.n_head)]
        notes["reflex"] = "seed Reflex 5-2-1 (layers 0-1 plain); the seed's layer norms use eps 1e-6, iclab's 1e-5"
    elif args.get("model_type") not in (None, "original", "gpt2"):
        raise InteropError(
            f"{path}: model_args.model_type {args['model_type']!r} is not nanoGPT's nor the seed's Reflex"
        )
    bias = bool(args.get("bias", True))
    try:
        state = from_nanogpt(
            ckpt["model"], model["n_layer"], bias, str(path), kv_heads=kv_heads, n_head=model["n_head"]
        )
    except LayoutError as e:
        raise InteropError(str(e)) from None
    notes["bias"] = bias
    return model, state, notes


def _read_hf_weights(d: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if (d / "model.safetensors").is_file():
            return load_file(str(d / "model.safetensors"))
        index = d / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for f in files for k, v in load_file(str(d / f)).items()}
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise InteropError(f"{d}: unreadable weights ({' '.join(str(e).split())[:160]})") from None
    if (d / "pytorch_model.bin").is_file():
        state = _torch_load(d / "pytorch_model.bin")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise InteropError(f"{d / 'pytorch_model.bin'}: not a state dict of tensors")
        return state
    raise InteropError(f"{d}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def read_hf(d: Path) -> tuple[dict, dict, dict]:
    """(iclab model section, iclab state, notes) of a Hugging Face GPT-2 directory."""
    path = d / "config.json"
    if not path.is_file():
        raise InteropError(f"{d}: no config.json (not a Hugging Face model directory)")
    try:
        c = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InteropError(f"{path}: not valid JSON ({e})") from None
    if c.get("model_type") != "gpt2":
        raise InteropError(f"{path}: model_type {c.get('model_type')!r}; iclab imports GPT-2 models (model_type gpt2)")
    n_embd = c.get("n_embd", 768)
    act = c.get("activation_function", "gelu_new")
    refuse = [
        (act not in ACTIVATION_FROM_HF, f"activation_function {act!r} (iclab has {', '.join(ACTIVATION_FROM_HF)})"),
        (c.get("n_inner") not in (None, 4 * n_embd), f"n_inner {c.get('n_inner')} (iclab's MLP is 4 * n_embd)"),
        (c.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx: true"),
        (not c.get("scale_attn_weights", True), "scale_attn_weights: false"),
        (c.get("add_cross_attention", False), "add_cross_attention: true"),
    ]
    bad = [msg for cond, msg in refuse if cond]
    if bad:
        raise InteropError(f"{path}: {bad[0]} has no iclab counterpart")
    model = {
        "n_layer": int(c.get("n_layer", 12)),
        "n_head": int(c.get("n_head", 12)),
        "n_embd": int(n_embd),
        "n_positions": int(c.get("n_positions", 1024)),
        "dropout": float(c.get("resid_pdrop", 0.0)),
        "activation": ACTIVATION_FROM_HF[act],
    }
    notes = {}
    eps = c.get("layer_norm_epsilon", 1e-5)
    if eps != 1e-5:
        notes["layer_norm_epsilon"] = f"{eps:g} in the source, 1e-5 in iclab"
    try:
        state = from_hf_gpt2(_read_hf_weights(d), model["n_layer"], str(d))
    except LayoutError as e:
        raise InteropError(str(e)) from None
    exported = d / "iclab.json"
    if exported.is_file():
        try:
            notes["iclab_tokenizer"] = json.loads(exported.read_text()).get("tokenizer")
        except json.JSONDecodeError:
            pass
    return model, state, notes


# --- writing the run ------------------------------------------------------------------------------------------------
def import_model(
    src: str | Path,
    out: str | Path,
    corpus: str,
    tokenizer: str | None = None,
    seq_len: int | None = None,
    overrides: list[str] | None = None,
    overwrite: bool = False,
) -> dict:
    """Import SRC (ckpt.pt or an HF directory) into the run directory OUT; returns import.json's record.

    Length: checks every input before anything is written, then writes the run directory in one atomic step;
    the checks are one line each.
    """
    src, out = Path(src), Path(out)
    if not src.exists():
        raise InteropError(f"{src}: no such file or directory")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise InteropError(f"{out} already exists; pass --overwrite to replace it")
    kind = "huggingface" if src.is_dir() else "nanogpt"
    model, state, notes = read_hf(src) if src.is_dir() else read_nanogpt(src)
    V_src = state["wte.weight"].shape[0]
    if tokenizer is None:
        saved = notes.get("iclab_tokenizer") or {}
        tokenizer = saved.get("kind") or ("gpt2" if V_src >= GPT2_VOCAB else "char")
    data = {
        "seed": 0,
        "task": {
            "name": "language_model",
            "seq_len": min(seq_len or model["n_positions"], model["n_positions"]),
            "options": {"corpus": corpus, "tokenizer": tokenizer},
        },
        "model": model,
        "training": {"steps": max(notes.get("iter_num") or 1, 1)},
    }
    cfg = validate(apply_overrides(data, list(overrides or [])), f"import of {src}")
    workload = make_workload(cfg)  # prepares (or reuses) the corpus: tokenizer errors surface here
    V = workload.vocab_size
    if V_src != V:
        if not (workload.tokenizer.kind == "gpt2" and V_src > V):
            raise InteropError(
                f"{src}: the model has {V_src} token embeddings, tokenizer {workload.tokenizer.kind} of corpus "
                f"{corpus} has {V} tokens; give the corpus (or --tokenizer) the model was trained with"
            )
        state["wte.weight"] = state["wte.weight"][:V].clone()
        notes["vocab_truncated"] = f"{V_src} -> {V} rows (padding rows that no GPT-2 token uses)"
    m = workload.build_model()
    try:
        m.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InteropError(f"{src}: weights do not fit the model ({' '.join(str(e).split())[:200]})") from None
    for key, note in notes.items():
        if key in ("layer_norm_epsilon", "reflex", "vocab_truncated"):
            warnings.warn(f"import of {src}: {key}: {note}", stacklevel=2)
    record = {
        "format": "iclab-import-1",
        "source": str(src.resolve()),
        "kind": kind,
        "notes": {k: v for k, v in notes.items() if k != "iclab_tokenizer"},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{os.getpid()}-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        (tmp / "config.yaml").write_text(dump_config(cfg))
        workload.start_run(tmp)
        save_weights(
            tmp / "model.safetensors", m.state_dict(), identity=identity(cfg, workload), step=cfg.training.steps
        )
        (tmp / "import.json").write_text(json.dumps(record, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record
