"""Time every baseline on the same batch of in-context linear-regression prompts (default: Garg et al.'s
evaluation shape, 1,000 prompts of 41 points in d=20) and check the linear ones against the 1 s budget.

    PYTHONPATH=. python benchmarks/eval_baselines.py [--n-prompts 1000] [--slow-prompts 20] [--threads 1]

The linear baselines (least_squares, ridge, averaging, knn) and lasso run on all prompts; the per-prompt ones
(decision_tree, xgboost, relu_net_gd) run on --slow-prompts prompts and their time is scaled linearly to
n_prompts (marked "scaled" in the table; their cost is one fit per prompt and position, so linear in prompts).
`least_squares_pinv` is the previous route (one SVD per prefix, in the prompts' float32), timed for comparison;
least_squares is also compared with float64 pseudo-inverses of every prefix (exact reference). Prints a table and
writes JSON (--out). Each time is the best of --repeats calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from iclab.evaluation.baselines import least_squares_pinv, resolve
from iclab.registry import BASELINES

LINEAR = ["least_squares", "ridge", "averaging", "knn"]
SLOW = ["decision_tree", "xgboost", "relu_net_gd"]


def _time(fn, xs, ys, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn(xs, ys)  # warm-up (lazy imports, allocator)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(xs, ys)
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-prompts", type=int, default=1000)
    ap.add_argument("--n-points", type=int, default=41)
    ap.add_argument("--n-dims", type=int, default=20)
    ap.add_argument("--slow-prompts", type=int, default=20, help="prompts for decision_tree, xgboost, relu_net_gd")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slow-repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="*", default=None, help="baseline names to time (default: all)")
    ap.add_argument("--lasso-alphas", type=float, nargs="*", default=[0.01], help="alphas timed for lasso")
    ap.add_argument("--no-pinv", action="store_true", help="skip the (slow) pseudo-inverse reference route")
    ap.add_argument("--out", type=Path, default=Path("bench_results/eval_baselines.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    g = torch.Generator(device=args.device).manual_seed(0)
    B, n, d = args.n_prompts, args.n_points, args.n_dims
    xs = torch.randn(B, n, d, generator=g, device=args.device)
    w = torch.randn(B, d, generator=g, device=args.device)
    ys = torch.einsum("bnd,bd->bn", xs, w)

    names = args.only or BASELINES.names()
    rows = []
    ref = None
    if not args.no_pinv and (args.only is None or "least_squares" in names):
        t, _ = _time(lambda a, b: least_squares_pinv(a, b), xs, ys, 1)
        rows.append({"baseline": "least_squares_pinv (previous route)", "prompts": B, "seconds": t, "scaled": False})
        ref = least_squares_pinv(xs.double(), ys.double()).float()  # exact reference: float64 pseudo-inverses
    entries = []
    for name in names:
        if name == "lasso":
            entries += [{"name": "lasso", "options": {"alpha": a}} for a in args.lasso_alphas]
        else:
            entries.append(name)
    for rb in resolve(entries):
        name = rb.label
        slow = rb.name in SLOW
        m = min(args.slow_prompts, B) if slow else B
        t, out = _time(rb, xs[:m], ys[:m], args.slow_repeats if slow else args.repeats)
        err = ((out - ys[:m]) ** 2).mean(0) / d
        row = {
            "baseline": name,
            "prompts": m,
            "seconds": t * B / m,
            "scaled": slow,
            "err_at_d/2": float(err[d // 2]),
            "err_at_2d": float(err[min(2 * d, n - 1)]),
        }
        if name == "least_squares" and ref is not None:
            row["max_abs_diff_vs_pinv"] = float((out - ref).abs().max())
        rows.append(row)

    linear_total = sum(r["seconds"] for r in rows if r["baseline"] in LINEAR)
    ls = [r for r in rows if "max_abs_diff_vs_pinv" in r]
    timed_linear = [r["baseline"] for r in rows if r["baseline"] in LINEAR]
    print(f"{B} prompts x {n} points, d={d}, device={args.device}, torch threads={args.threads}")
    print(f"{'baseline':40s} {'s / ' + str(B) + ' prompts':>18s}  {'err@d/2':>9s} {'err@2d':>9s}")
    for r in rows:
        note = f" (scaled from {r['prompts']})" if r["scaled"] else ""
        e1 = f"{r['err_at_d/2']:9.4f}" if "err_at_d/2" in r else " " * 9
        e2 = f"{r['err_at_2d']:9.2e}" if "err_at_2d" in r else " " * 9
        print(f"{r['baseline']:40s} {r['seconds']:18.3f}  {e1} {e2}{note}")
    if ls:
        print(f"least_squares vs float64 pseudo-inverses: max |difference| {ls[0]['max_abs_diff_vs_pinv']:.2e}")
    if timed_linear:
        verdict = "within" if linear_total < 1.0 else "OVER"
        print(f"linear baselines ({', '.join(timed_linear)}): {linear_total:.3f} s total, {verdict} the 1 s budget")
    result = {
        "n_prompts": B,
        "n_points": n,
        "n_dims": d,
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "linear_total_seconds": linear_total,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
