"""iclab's language-model training step next to nanoGPT's, in one process, alternating rounds.

    git -C <nanoGPT gitdir> show HEAD:model.py > /tmp/nanogpt_model.py     # nanoGPT is never copied here
    PYTHONPATH=. python benchmarks/lm_vs_nanogpt.py /tmp/nanogpt_model.py --batch 12 --rounds 8 \
        --variant eager: --variant bf16:training.dtype=bfloat16 --nanogpt fp32 --nanogpt bf16 \
        --out benchmarks/results/lm_vs_nanogpt.json

Both models are built at nanoGPT's shakespeare-char shape (6 layers, width 384, 6 heads, block 256) on
a 65-symbol character corpus written to a temporary directory (vocabulary 65, like Shakespeare's), with
biases, dropout 0 and the exact (erf) GELU, which is nanoGPT's MLP. iclab's initial weights are copied
into nanoGPT (wte/wpe/blocks/ln_f; the LM head is tied in both) and the logits of both are checked
equal on a batch before anything is timed.

What is timed, per step:
  iclab    `Trainer.train_step` of a config, as `iclab train` runs it: sampling the batch from the
           memory-mapped corpus, forward, loss, backward, grad-norm clip at 1.0, AdamW step (iclab's
           optimizer implementation choice: fused on the CPU). Variants add config overrides.
  nanoGPT  the body of nanoGPT's train.py: get_batch (random windows of the same token array),
           `model(X, Y)`, backward, clip_grad_norm_(1.0), the optimizer of `configure_optimizers`
           (weight decay 0.1, betas (0.9, 0.99): its shakespeare-char settings; on the CPU it picks the
           non-fused AdamW), zero_grad. `fp32` is train.py on the CPU (no autocast); `bf16` wraps the
           forward in CPU autocast (what train.py does on CUDA); `compile` is torch.compile(model).

Rounds go round-robin over all contestants, the starting one rotating each round, each timing
--steps steps after warm-up; a round's rate is steps / wall time, and steps / process CPU time
(the steadier number on a shared machine). Reported: the median rates and, for each iclab variant,
the median over rounds of its rate divided by nanoGPT fp32's rate in the same round.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from iclab.bench import bench_config  # noqa: E402
from iclab.config import load_config  # noqa: E402

SHAPE = {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256}
VOCAB = 65


def load_nanogpt(path: Path):
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_corpus(root: Path, n_chars: int = 300_000, seed: int = 0) -> Path:
    """A UTF-8 file of n_chars drawn from 65 symbols (every symbol occurs): vocabulary 65."""
    alphabet = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert len(alphabet) == VOCAB
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, VOCAB, (n_chars,), generator=g).tolist()
    path = root / "corpus65.txt"
    path.write_text(alphabet + "".join(alphabet[i] for i in idx), encoding="utf-8")
    return path


def iclab_config(corpus: Path, data_dir: Path, batch: int, overrides: list[str], device: str = "cpu"):
    base = [
        f"task.options.corpus={corpus}",
        f"task.options.data_dir={data_dir}",
        "task.options.max_bytes=null",
        "task.options.log_val_windows=0",
        f"task.seq_len={SHAPE['block_size']}",
        f"training.batch_size={batch}",
        "training.grad_clip=1.0",
        "model.activation=gelu",
        "model.dropout=0.0",
        f"training.device={device}",
    ]
    return bench_config(load_config(REPO / "benchmarks/configs/lm_char.yaml", base + overrides))


def copy_weights(iclab_model, gpt) -> None:
    """iclab's parameters into nanoGPT's (names: blocks.i -> transformer.h.i; lm_head tied to wte)."""
    src = iclab_model.state_dict()
    dst = gpt.state_dict()
    with torch.no_grad():
        for name, t in dst.items():
            if name == "lm_head.weight":
                continue  # tied to transformer.wte.weight
            key = name.removeprefix("transformer.").replace("h.", "blocks.", 1)
            if key.endswith(".attn.bias"):  # the causal mask buffer of nanoGPT's non-flash path
                continue
            t.copy_(src[key])


class NanoGPTSide:
    """nanoGPT's train.py loop. Modes: fp32 (train.py on the CPU), bf16 (autocast, what train.py does on CUDA),
    compile (torch.compile, fp32), bf16_compile (train.py's defaults on a CUDA GPU with bf16)."""

    def __init__(self, mod, model_src, train_ids, batch: int, mode: str, seed: int = 0, device: str = "cpu"):
        conf = mod.GPTConfig(**SHAPE, vocab_size=VOCAB, dropout=0.0, bias=True)
        self.model = mod.GPT(conf)
        copy_weights(model_src, self.model)
        self.device = torch.device(device)
        self.model.to(self.device).train()
        self.opt = self.model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), self.device.type)  # fused on CUDA
        self.data, self.batch, self.mode = train_ids, batch, mode
        self.forward = torch.compile(self.model) if mode.endswith("compile") else self.model
        self.gen = torch.Generator().manual_seed(seed)

    def get_batch(self):
        L = SHAPE["block_size"]
        ix = torch.randint(len(self.data) - L, (self.batch,), generator=self.gen)
        x = torch.stack([self.data[i : i + L] for i in ix])
        y = torch.stack([self.data[i + 1 : i + 1 + L] for i in ix])
        if self.device.type == "cuda":  # as train.py: pinned host memory, asynchronous copy
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x, y

    def step(self):
        x, y = self.get_batch()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mode.startswith("bf16")):
            _, loss = self.forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()


class IclabSide:
    def __init__(self, cfg, run_dir: Path):
        from iclab.training.trainer import Trainer

        self.trainer = Trainer(cfg, run_dir)
        self.i = 0

    def step(self):
        loss, _ = self.trainer.train_step(self.i)
        self.i += 1
        return loss


def timed(side, n: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    loss = None
    for _ in range(n):
        loss = side.step()
    loss.item()
    return time.perf_counter() - t0, time.process_time() - c0


def check_logits(iclab_model, gpt, ids: torch.Tensor) -> float:
    iclab_model.eval()
    gpt.eval()
    ids = ids.to(next(gpt.parameters()).device)
    with torch.no_grad():
        a = iclab_model.logits(ids)
        b, _ = gpt(ids, ids)  # with targets nanoGPT returns the logits of every position
    iclab_model.train()
    gpt.train()
    diff = (a - b).abs().max().item()
    if diff > (1e-4 if ids.device.type == "cpu" else 1e-3):  # CUDA: other kernels, other rounding
        raise SystemExit(f"logits differ by {diff:.3g}: the two models are not the same function")
    return diff


def parse_variant(text: str) -> tuple[str, list[str]]:
    label, _, rest = text.partition(":")
    return label, [o for o in rest.split(";") if o]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("nanogpt_model", type=Path, help="path of nanoGPT's model.py")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per contestant and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--variant",
        action="append",
        default=None,
        help="iclab contestant LABEL:key=value;key=value (config overrides); default eager:",
    )
    ap.add_argument(
        "--nanogpt",
        action="append",
        default=None,
        choices=["fp32", "bf16", "compile", "bf16_compile"],
        help="default fp32",
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda: both sides train there")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    mod = load_nanogpt(args.nanogpt_model)
    variants = [parse_variant(v) for v in (args.variant or ["eager:"])]
    modes = args.nanogpt or ["fp32"]
    if "fp32" not in modes:
        modes.insert(0, "fp32")  # the reference of every ratio
    with tempfile.TemporaryDirectory(prefix="lm-vs-nanogpt-") as tmp:
        tmp = Path(tmp)
        corpus = write_corpus(tmp)
        contestants: dict[str, object] = {}
        build_s = {}
        for label, ov in variants:
            torch.manual_seed(0)
            t0 = time.perf_counter()
            contestants[f"iclab[{label}]"] = IclabSide(
                iclab_config(corpus, tmp / "data", args.batch, ov, args.device), tmp / label
            )
            build_s[f"iclab[{label}]"] = time.perf_counter() - t0
        first = next(iter(contestants.values())).trainer
        assert first.workload.vocab_size == VOCAB, first.workload.vocab_size
        train_ids = torch.from_numpy(first.workload.data.train.astype("int64"))
        for mode in modes:
            contestants[f"nanoGPT[{mode}]"] = NanoGPTSide(
                mod, first.model, train_ids, args.batch, mode, device=args.device
            )
        gpt = contestants["nanoGPT[fp32]"]
        diff = check_logits(first.model, gpt.model, train_ids[: 2 * SHAPE["block_size"]].view(2, -1))
        print(f"logits of iclab and nanoGPT at the same weights: max |diff| = {diff:.2e}")
        warm = {}
        for name, side in contestants.items():
            t0 = time.perf_counter()
            timed(side, args.warmup)
            warm[name] = time.perf_counter() - t0
            print(f"  warm-up {name}: {warm[name]:.1f} s ({args.warmup} steps)")
        names = list(contestants)
        rounds = {n: [] for n in names}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                wall, cpu = timed(contestants[n], args.steps)
                rounds[n].append({"steps_per_s": args.steps / wall, "steps_per_cpu_s": args.steps / max(cpu, 1e-9)})
            print(f"round {r + 1}: " + ", ".join(f"{n} {rounds[n][-1]['steps_per_s']:.3f}" for n in names))
    ref = rounds["nanoGPT[fp32]"]
    summary = {}
    for n in names:
        rs = rounds[n]
        summary[n] = {
            "steps_per_s": statistics.median(r["steps_per_s"] for r in rs),
            "steps_per_cpu_s": statistics.median(r["steps_per_cpu_s"] for r in rs),
            "ratio_to_nanogpt_fp32": statistics.median(a["steps_per_s"] / b["steps_per_s"] for a, b in zip(rs, ref)),
            "ratio_to_nanogpt_fp32_cpu_time": statistics.median(
                a["steps_per_cpu_s"] / b["steps_per_cpu_s"] for a, b in zip(rs, ref)
            ),
            "warmup_s": warm[n],
            "build_s": build_s.get(n),
            "rounds": rs,
        }
    print(f"\n{'contestant':28s} {'steps/s':>8s} {'steps/cpu-s':>11s} {'x nanoGPT':>9s} {'(cpu time)':>10s} warm-up s")
    for n, s in summary.items():
        print(
            f"{n:28s} {s['steps_per_s']:8.3f} {s['steps_per_cpu_s']:11.3f} {s['ratio_to_nanogpt_fp32']:9.2f} "
            f"{s['ratio_to_nanogpt_fp32_cpu_time']:10.2f} {s['warmup_s']:.1f}"
        )
    result = {
        "shape": {**SHAPE, "vocab_size": VOCAB, "batch": args.batch},
        "threads": args.threads,
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "logits_max_abs_diff": diff,
        "variants": {f"iclab[{label}]": ov for label, ov in variants},
        "torch": torch.__version__,
        "results": summary,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
