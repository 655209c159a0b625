"""The optimizer step alone: for-loop, foreach and fused AdamW on the quickstart and Garg models.

    PYTHONPATH=. python benchmarks/optimizer_step.py [--threads 1]

Times (ms per step, median of 5 rounds of 20 steps, interleaved) with random gradients in place;
this is what training.optimizer.impl chooses between.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from iclab.config import ModelConfig
from iclab.models.transformer import ICLTransformer

MODELS = {
    "quickstart": (ModelConfig(n_embd=64, n_layer=4, n_head=2, n_positions=64), 5),
    "garg_standard": (ModelConfig(n_embd=256, n_layer=12, n_head=8), 20),
}
IMPLS = {"for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    torch.set_num_threads(ap.parse_args().threads)
    for name, (mc, d) in MODELS.items():
        m = ICLTransformer(mc, d)
        for p in m.parameters():
            p.grad = torch.randn_like(p)
        opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, **kw) for k, kw in IMPLS.items()}
        ms = {k: [] for k in opts}
        for o in opts.values():
            for _ in range(3):
                o.step()
        for _ in range(5):
            for k, o in opts.items():
                t0 = time.process_time()
                for _ in range(20):
                    o.step()
                ms[k].append((time.process_time() - t0) / 20 * 1e3)
        print(name, {k: f"{statistics.median(v):.2f} ms" for k, v in ms.items()})


if __name__ == "__main__":
    main()
