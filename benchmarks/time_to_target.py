"""Time to target: wall time of a whole `iclab train` run, from process start to the printed result.

    python benchmarks/time_to_target.py                                  # the quickstart, seed 0
    python benchmarks/time_to_target.py --seeds 0 1 2 3 --out ttt.json
    python benchmarks/time_to_target.py --config my.yaml --set training.steps=1500 --target 0.05

Each run is a fresh `iclab train CONFIG seed=S [--set ...]` subprocess (imports, model build, training,
checkpoints, evaluation and the figure all count), timed with a monotonic clock around the process. The
error is the model's normalized squared error at k = 2d in-context examples (position 2 * n_dims) from the
run's eval.json. Prints a table and writes a JSON list of records
{config, overrides, seed, wall_s, error_at_2d, k, target, met}. Run it on an otherwise idle machine:
wall time is what it measures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iclab.runs import read_eval

ROOT = Path(__file__).resolve().parent.parent


def one_run(config: Path, seed: int, overrides: list[str], target: float) -> dict:
    out = Path(tempfile.mkdtemp(prefix="iclab-ttt-"))
    try:
        cmd = [
            sys.executable,
            "-m",
            "iclab.cli",
            "train",
            str(config),
            f"seed={seed}",
            *overrides,
            "--out",
            str(out / "run"),
            "logging.progress=false",
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"run failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")
        ev = read_eval(out / "run")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    k = 2 * ev["n_dims"]
    err = ev["model"]["mean"][k]
    return {
        "config": str(config),
        "overrides": overrides,
        "seed": seed,
        "wall_s": round(wall, 2),
        "error_at_2d": err,
        "k": k,
        "target": target,
        "met": bool(err <= target),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--target", type=float, default=0.05, help="normalized error at k=2d to reach")
    ap.add_argument("--out", type=Path, default=Path("time_to_target.json"))
    args = ap.parse_args(argv)
    records = []
    print(f"{'seed':>4}  {'wall s':>7}  {'error at k=2d':>13}  met")
    for s in args.seeds:
        r = one_run(args.config, s, args.overrides, args.target)
        records.append(r)
        print(f"{s:>4}  {r['wall_s']:>7.1f}  {r['error_at_2d']:>13.4f}  {'yes' if r['met'] else 'no'}", flush=True)
    if len(records) > 1:
        print(
            f"median wall {statistics.median(r['wall_s'] for r in records):.1f} s, "
            f"met {sum(r['met'] for r in records)}/{len(records)}"
        )
    args.out.write_text(json.dumps(records, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
