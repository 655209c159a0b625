"""Where iclab's language-model training step spends its time next to nanoGPT's, on one device.

    PYTHONPATH=. python benchmarks/lm_step_profile.py NANOGPT_MODEL_PY --device cuda --steps 50 --batch 64 \
        --out benchmarks/results/lm-step-profile-h200-bf16.json

Both sides as in benchmarks/lm_vs_nanogpt.py (same weights, nanoGPT's shakespeare-char shape): iclab bf16,
iclab bf16 without gradient clipping, iclab fp32, nanoGPT bf16 autocast and fp32. Four alternating rounds of
--steps steps give the rates; then torch.profiler records 10 steps of iclab bf16 and of nanoGPT bf16 and
prints each one's top operators by CPU time and its CUDA kernels per step (on a GPU, a small model's step is
bound by the host: the number of launches and the time spent dispatching them decide the rate).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lm_vs_nanogpt as side_by_side  # noqa: E402

ICLAB = {
    "iclab_bf16": ["training.dtype=bfloat16"],
    "iclab_bf16_noclip": ["training.dtype=bfloat16", "training.grad_clip=null"],
    "iclab_fp32": ["training.dtype=float32"],
}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("nanogpt_model", type=Path)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    mod = side_by_side.load_nanogpt(args.nanogpt_model)
    res: dict = {"device": args.device, "batch": args.batch, "steps_per_round": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = side_by_side.write_corpus(tmp)
        sides = {}
        for label, over in ICLAB.items():
            torch.manual_seed(0)
            cfg = side_by_side.iclab_config(corpus, tmp / "data", args.batch, over, args.device)
            sides[label] = side_by_side.IclabSide(cfg, tmp / label)
        first = sides["iclab_bf16"].trainer
        ids = torch.from_numpy(first.workload.data.train.astype("int64"))
        for mode in ("bf16", "fp32"):
            sides[f"nanogpt_{mode}"] = side_by_side.NanoGPTSide(
                mod, first.model, ids, args.batch, mode, device=args.device
            )
        for s in sides.values():
            side_by_side.timed(s, 5)
        rates: dict[str, list[float]] = {n: [] for n in sides}
        for _ in range(4):
            for n, s in sides.items():
                wall, _cpu = side_by_side.timed(s, args.steps)
                rates[n].append(args.steps / wall)
        res["rates"] = rates
        res["median_steps_per_s"] = {n: statistics.median(r) for n, r in rates.items()}
        print(json.dumps(res["median_steps_per_s"], indent=1))
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
        for n in ("iclab_bf16", "nanogpt_bf16"):
            with profile(activities=acts) as prof:
                side_by_side.timed(sides[n], 10)
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
            kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
            res[n] = table
            res[n + "_cuda_events_per_step"] = len(kernels) / 10
            print(f"===== {n}: {len(kernels) / 10:.0f} CUDA kernels per step\n{table}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
