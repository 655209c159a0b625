"""Training throughput of several configs, measured back to back in one process.

    python benchmarks/loop_throughput.py configs/looped/seed000/base.yaml configs/looped/seed000/drop_d1_k5.yaml \
        --set training.device=cpu --steps 5 --rounds 3

Each config gets a Trainer; every round times `--steps` training steps of each config in turn (rounds
interleave the configs, so a change in machine load hits all of them alike). The curriculum is frozen at
`--at-step` (default: the last training step, i.e. the full dims/points/loops). Prints the median steps/s of
each config and its ratio to the first config's; `--json PATH` also writes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from iclab.config import load_config
from iclab.training.trainer import Trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer: Trainer, step: int, n: int) -> float:
    sync(trainer.device)
    t0 = time.perf_counter()
    for _ in range(n):
        trainer.train_step(step)
    sync(trainer.device)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", help="YAML configs; the first is the reference of the ratios")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="key=value for every config")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per config and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per config first")
    ap.add_argument("--at-step", type=int, default=None, help="curriculum state to time (default: the last step)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    trainers, steps = [], []
    for path in args.configs:
        cfg = load_config(path, args.overrides)
        t = Trainer(cfg, tempfile.mkdtemp(prefix="iclab-bench-"))
        s = cfg.training.steps - 1 if args.at_step is None else args.at_step
        trainers.append(t)
        steps.append(s)
        time_steps(t, s, args.warmup)
    rates = [[] for _ in trainers]
    for _ in range(args.rounds):
        for i, t in enumerate(trainers):
            rates[i].append(time_steps(t, steps[i], args.steps))
    med = [statistics.median(r) for r in rates]
    out = {
        "device": str(trainers[0].device),
        "threads": args.threads,
        "steps": args.steps,
        "rounds": args.rounds,
        "results": [
            {"config": p, "curriculum": t.curriculum.at(s), "steps_per_s": m, "all": r, "ratio": m / med[0]}
            for p, t, s, m, r in zip(args.configs, trainers, steps, med, rates)
        ],
    }
    for r in out["results"]:
        print(f"{r['steps_per_s']:8.3f} steps/s  x{r['ratio']:.2f}  {r['config']}  {r['curriculum']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
