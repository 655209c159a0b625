"""`iclab export RUN --format hf OUT`: a run as a Hugging Face `transformers` GPT-2 directory.

Token workloads (language model, multiple choice, sorting, modular arithmetic) become a `GPT2LMHeadModel`:

    OUT/config.json, model.safetensors, generation_config.json   AutoModelForCausalLM.from_pretrained(OUT)
    OUT/tokenizer.json, tokenizer_config.json                    AutoTokenizer.from_pretrained(OUT) (text tokenizers:
                                                                 char, byte, gpt2; see iclab/interop/hf_tokenizer.py)
    OUT/README.md                                                model card: the run's config, data hash, numbers
    OUT/iclab.json                                               what was exported (run, step, identity, tokenizer)

In-context regression runs become a `GPT2Model` backbone (vocab_size 1, its embedding unused) plus
`io.safetensors` (read_in: d -> C, read_out: C -> 1) and `iclab_regression.py`, a 40-line loader that
needs only torch, safetensors and transformers: `ICLRegressor(OUT)(xs, ys)` gives the prediction at every x.

The mapping (iclab/interop/layout.py) is exact: same architecture, Conv1D weights transposed, the LM head tied,
activation gelu_tanh -> gelu_new, gelu -> gelu, relu -> relu, layer norm eps 1e-5. A looped model (model.loops > 1:
the blocks applied b times with input injection) and Reflex attention (heads reading earlier layers' K/V) are
not GPT-2 and are refused with one line. The directory is written next to OUT under a temporary name and
renamed into place: a failed export leaves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import yaml

from iclab.config import Config
from iclab.interop.common import InteropError, require
from iclab.interop.layout import ACTIVATION_TO_HF, to_hf_gpt2
from iclab.runs import load_run_config, load_run_model
from iclab.training.checkpoint import identity, read_metadata
from iclab.workloads import make_workload

LN_EPS = 1e-5  # torch.nn.LayerNorm's default, which iclab's blocks use


def check_exportable(cfg: Config, run_dir: Path) -> None:
    m = cfg.model
    if m.loops > 1:
        raise InteropError(
            f"{run_dir}: a looped model (model.loops={m.loops}: the blocks applied {m.loops} times with input "
            "injection) is not a GPT-2 model; export it with loops=1 or keep it in iclab"
        )
    if m.attention.name != "causal":
        raise InteropError(
            f"{run_dir}: Reflex attention (heads reading earlier layers' K/V) has no GPT-2 counterpart in transformers"
        )
    if cfg.task.family not in ("sequence", "regression"):
        raise InteropError(f"{run_dir}: task {cfg.task.name} ({cfg.task.family}) has no GPT-2 export")


def gpt2_config(cfg: Config, vocab_size: int, **extra):
    transformers = require("transformers")
    m = cfg.model
    return transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=m.n_positions,
        n_embd=m.n_embd,
        n_layer=m.n_layer,
        n_head=m.n_head,
        n_inner=None,  # 4 * n_embd
        activation_function=ACTIVATION_TO_HF[m.activation],
        resid_pdrop=m.dropout,
        embd_pdrop=m.dropout,
        attn_pdrop=m.dropout,
        layer_norm_epsilon=LN_EPS,
        scale_attn_weights=True,
        tie_word_embeddings=True,
        **extra,
    )


def _prepare_out(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise InteropError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InteropError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{os.getpid()}-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def _finish(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def export_run(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> dict:
    """Export a run (see the module docstring); returns what iclab.json records."""
    run_dir, out = Path(run_dir), Path(out)
    cfg = load_run_config(run_dir)
    check_exportable(cfg, run_dir)
    transformers = require("transformers")
    transformers.utils.logging.disable_progress_bar()  # a few small files: no bars on the terminal
    workload = make_workload(cfg, run_dir)
    model = load_run_model(run_dir, cfg, torch.device("cpu"), workload).eval()
    final = run_dir / "model.safetensors"
    step = int(read_metadata(final).get("step", 0)) if final.is_file() else None
    tok = getattr(workload, "tokenizer", None)
    state = model.state_dict()
    tmp = _prepare_out(out, overwrite)
    try:
        if cfg.task.family == "sequence":
            eot = 50256 if tok is not None and tok.kind == "gpt2" else None
            hf_cfg = gpt2_config(
                cfg, workload.vocab_size, architectures=["GPT2LMHeadModel"], bos_token_id=eot, eos_token_id=eot
            )
            hf = transformers.GPT2LMHeadModel(hf_cfg)
            hf.load_state_dict(to_hf_gpt2(state, cfg.model.n_layer), strict=True)
            hf.save_pretrained(str(tmp))
            if tok is not None:
                from iclab.interop.hf_tokenizer import save_tokenizer

                save_tokenizer(tok, tmp, cfg.model.n_positions)
        else:
            from safetensors.torch import save_file

            hf_cfg = gpt2_config(cfg, 1, architectures=["GPT2Model"])
            hf = transformers.GPT2Model(hf_cfg)
            hf_state = to_hf_gpt2(state, cfg.model.n_layer, prefix="")
            hf_state["wte.weight"] = torch.zeros(1, cfg.model.n_embd)
            hf.load_state_dict(hf_state, strict=True)
            hf.save_pretrained(str(tmp))
            io = {
                k: state[k].contiguous() for k in ("read_in.weight", "read_in.bias", "read_out.weight", "read_out.bias")
            }
            save_file(io, str(tmp / "io.safetensors"), metadata={"format": "iclab-regression-io-1"})
            (tmp / "iclab_regression.py").write_text(REGRESSION_LOADER)
        record = {
            "format": "iclab-hf-export-1",
            "run": str(run_dir.resolve()),
            "step": step,
            "task": cfg.task.name,
            "identity": identity(cfg, workload),
            "tokenizer": tok.to_json() if tok is not None else None,
        }
        (tmp / "iclab.json").write_text(json.dumps(record, indent=1) + "\n")
        (tmp / "README.md").write_text(model_card(run_dir, cfg, workload, step))
        _finish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def _headline(run_dir: Path, workload) -> list[str]:
    lines = []
    for path in sorted(run_dir.glob("eval*.json")):
        try:
            ev = json.loads(path.read_text())
            name, value, _ = workload.headline(ev)
        except (ValueError, KeyError, TypeError, NotImplementedError):
            continue
        lines.append(f"| {path.name} | {name} | {value:.4f} |")
        for key, label in (("bits_per_char", "bits per character"), ("token_accuracy", "token accuracy")):
            if isinstance(ev.get(key), float) and ev[key] != value:  # (char: bits per char is the headline)
                lines.append(f"| {path.name} | {label} | {ev[key]:.4f} |")
        for b, rec in (ev.get("baselines") or {}).items():
            if isinstance(rec, dict) and isinstance(rec.get("bits"), float):
                lines.append(f"| {path.name} | baseline {b}, bits | {rec['bits']:.4f} |")
    return lines


def model_card(run_dir: Path, cfg: Config, workload, step: int | None) -> str:
    data = run_dir / "data.json"
    source = json.loads(data.read_text()).get("source", {}) if data.is_file() else None
    tok = getattr(workload, "tokenizer", None)
    regression = cfg.task.family == "regression"
    load = (
        "from iclab_regression import ICLRegressor  # in this directory\n"
        "model = ICLRegressor('.')  # predictions = model(xs, ys): (B, n, d), (B, n) -> (B, n)"
        if regression
        else "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "model = AutoModelForCausalLM.from_pretrained(PATH)\n"
        + ("tokenizer = AutoTokenizer.from_pretrained(PATH)" if tok is not None else "# token ids as in iclab")
    )
    parts = [
        "---",
        "library_name: transformers",
        "tags: [iclab, gpt2]",
        "---",
        f"# {run_dir.name} (exported from iclab)",
        "",
        f"A GPT-2 {'backbone with a linear read-in/read-out' if regression else 'language model'} trained by iclab "
        f"on task `{cfg.task.name}`, weights of step {step}. The architecture is GPT-2's exactly (pre-LN, learned "
        f"positions, tied LM head, layer norm eps {LN_EPS:g}, activation {ACTIVATION_TO_HF[cfg.model.activation]}).",
        "",
        "```python",
        load,
        "```",
        "",
        "## Data",
    ]
    if source:
        parts += [f"- source: {source.get('kind')} {source.get('path') or source.get('name') or ''}".rstrip()]
        parts += [f"- sha256: `{source.get('sha256')}` ({source.get('bytes')} bytes)"]
    elif regression:
        parts += [
            f"- prompts drawn on the fly: task {cfg.task.name}, n_dims {cfg.task.n_dims}, n_points {cfg.task.n_points}"
        ]
    else:
        parts += [f"- task options: `{json.dumps(cfg.task.options)}`"]
    if tok is not None:
        parts += [f"- tokenizer: {tok.kind}, {tok.vocab_size} ids, fingerprint `{tok.fingerprint()}`"]
    head = _headline(run_dir, workload)
    parts += ["", "## Results (from the run's evaluation files)", ""]
    parts += ["| file | metric | value |", "|---|---|---|", *head] if head else ["(the run has no evaluation)"]
    parts += [
        "",
        "## iclab config",
        "",
        "```yaml",
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip(),
    ]
    parts += ["```", ""]
    return "\n".join(parts)


REGRESSION_LOADER = '''"""Load an in-context regression model exported by iclab (torch, safetensors, transformers).

Prompt x_1, y_1, ..., x_n, y_n: each y is written into coordinate 0 of a d-vector, a linear read-in maps the
2n tokens to the model width, GPT-2 runs over them, and a linear read-out at each x token predicts its y.
"""

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import GPT2Model


class ICLRegressor(torch.nn.Module):
    def __init__(self, path):
        super().__init__()
        path = Path(path)
        self.backbone = GPT2Model.from_pretrained(str(path))
        io = load_file(str(path / "io.safetensors"))
        width, n_dims = io["read_in.weight"].shape
        self.read_in = torch.nn.Linear(n_dims, width)
        self.read_out = torch.nn.Linear(width, 1)
        self.read_in.load_state_dict({"weight": io["read_in.weight"], "bias": io["read_in.bias"]})
        self.read_out.load_state_dict({"weight": io["read_out.weight"], "bias": io["read_out.bias"]})
        self.eval()

    def forward(self, xs, ys):
        """xs (B, n, d), ys (B, n) -> (B, n): the prediction of y_j from x_1, y_1, ..., x_j."""
        B, n, d = xs.shape
        ys_wide = torch.cat([ys.unsqueeze(-1), xs.new_zeros(B, n, d - 1)], dim=2)
        tokens = torch.stack([xs, ys_wide], dim=2).reshape(B, 2 * n, d)
        h = self.backbone(inputs_embeds=self.read_in(tokens)).last_hidden_state
        return self.read_out(h[:, ::2]).squeeze(-1)
'''
