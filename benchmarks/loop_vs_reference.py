"""iclab's looped-transformer training step next to Yang et al.'s code (Leiay/looped_transformer), in one process.

    git -C <looped_transformer gitdir> show HEAD:scripts/models.py > /tmp/yang/models.py   # never copied here
    git -C <looped_transformer gitdir> show HEAD:scripts/nano_gpt.py > /tmp/yang/nano_gpt.py
    PYTHONPATH=. python benchmarks/loop_vs_reference.py /tmp/yang --rounds 6 --steps 2 \
        --out benchmarks/results/loop-vs-reference.json

The shape is their linear-regression setting at the end of its curriculum (configs/looped/lr_b30_T15.yaml:
one GPT-2 block of width 256 with 8 heads, looped b=30 times with input injection, the loss averaged over
the last T=15 iterations; d=20, 41 points, batch 64, Adam lr 1e-4, no clipping). iclab's initial weights
are copied into their `TransformerModelLooped` and the predictions of every iteration in the window are
checked equal on one batch before anything is timed.

What is timed, per step:
  iclab           `Trainer.train_step` of the config, as `iclab train` runs it (batch sampled on the device,
                  forward, loss, backward, gradient norm kept on the device, Adam step).
  yang[train.py]  the body of their scripts/train.py at the same shape: x ~ N(0, I), w ~ N(0, I), y = x w
                  sampled as their GaussianSampler and LinearRegression do, their model's forward (the first
                  b - T iterations under no_grad), the mean squared error over the window, backward, Adam
                  step, and their per-step `calculate_gradient_norm` (one .item() per parameter).
  yang[lean]      the same without the gradient-norm report: the model and optimizer alone.

Rounds go round-robin, the starting contestant rotating; a round's rate is steps / wall time and steps /
process CPU time (steadier on a shared machine). Reported: median rates and, for iclab, the median over
rounds of its rate divided by each reference's rate in the same round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lm_vs_nanogpt import IclabSide, timed  # noqa: E402  (the same iclab contestant and timer)

from iclab.bench import bench_config  # noqa: E402
from iclab.config import load_config  # noqa: E402

CONFIG = REPO / "configs" / "looped" / "lr_b30_T15.yaml"


def load_reference(folder: Path):
    """Their scripts/models.py (which imports nano_gpt from the same folder)."""
    sys.path.insert(0, str(folder))
    import models  # noqa: PLC0415

    return models


def copy_weights(iclab_model, ref) -> None:
    """iclab's parameters into their model: read_in/read_out, wpe (its first rows), blocks.i -> h.i, ln_f."""
    src = iclab_model.state_dict()
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            key = name.replace("_backbone.transformer.", "").replace("h.", "blocks.", 1).lstrip("_")
            t.copy_(src[key][: t.shape[0]] if key == "wpe.weight" else src[key])


class YangSide:
    """Their train.py loop at a fixed shape (mode "train.py" or "lean")."""

    def __init__(self, models, iclab_model, cfg, mode: str):
        m, t = cfg.model, cfg.task
        self.model = models.TransformerModelLooped(
            n_dims=t.n_dims, n_positions=t.n_points, n_embd=m.n_embd, n_layer=m.n_layer, n_head=m.n_head
        )
        copy_weights(iclab_model, self.model)
        self.model.train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.training.lr, weight_decay=0.0)
        self.b, self.window, self.mode = m.loops, m.loop_window, mode
        self.batch, self.n, self.d = cfg.training.batch_size, t.n_points, t.n_dims

    def sample(self):
        xs = torch.randn(self.batch, self.n, self.d)
        w = torch.randn(self.batch, self.d, 1)
        return xs, (xs @ w).sum(-1)

    def step(self):
        xs, ys = self.sample()
        preds = self.model(xs, ys, max(0, self.b - self.window), self.b)
        loss = (torch.cat([ys] * len(preds)) - torch.cat(preds)).square().mean()
        loss.backward()
        self.opt.step()
        if self.mode == "train.py":  # their calculate_gradient_norm, every step
            total = sum(p.grad.data.norm(2).item() ** 2 for p in self.model.parameters())
            _ = total**0.5
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()


def check_predictions(side: IclabSide, ref: YangSide) -> float:
    """The largest difference between the two models' predictions at every iteration of the window."""
    xs, ys = ref.sample()
    t = side.trainer
    with torch.no_grad():
        a = t.model(xs, ys, loops=ref.b, window=ref.window)
        b = ref.model(xs, ys, max(0, ref.b - ref.window), ref.b)
    if len(a) != len(b):
        raise SystemExit(f"iclab returns {len(a)} predictions, theirs {len(b)}")
    diff = max((x - y).abs().max().item() for x, y in zip(a, b))
    if diff > 1e-4:
        raise SystemExit(f"predictions differ by {diff:.3g}: the two models are not the same function")
    return diff


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference", type=Path, help="folder holding their scripts/models.py and scripts/nano_gpt.py")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per contestant and round")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides for iclab and the shared shape")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = load_reference(args.reference)
    cfg = bench_config(load_config(CONFIG, ["training.device=cpu", *args.set]))
    with tempfile.TemporaryDirectory(prefix="loop-vs-reference-") as tmp:
        torch.manual_seed(0)
        sides = {"iclab": IclabSide(cfg, Path(tmp) / "run")}
        for mode in ("train.py", "lean"):
            sides[f"yang[{mode}]"] = YangSide(models, sides["iclab"].trainer.model, cfg, mode)
        diff = check_predictions(sides["iclab"], sides["yang[lean]"])
        print(f"predictions of iclab and their code at the same weights, every iteration: max |diff| = {diff:.2e}")
        for side in sides.values():
            timed(side, args.warmup)
        names = list(sides)
        rounds = {n: [] for n in names}
        for r in range(args.rounds):
            for n in names[r % len(names) :] + names[: r % len(names)]:
                wall, cpu = timed(sides[n], args.steps)
                rounds[n].append({"steps_per_s": args.steps / wall, "steps_per_cpu_s": args.steps / max(cpu, 1e-9)})
            print(f"round {r + 1}: " + ", ".join(f"{n} {rounds[n][-1]['steps_per_s']:.3f}" for n in names))
    summary = {}
    for n in names:
        rs = rounds[n]
        summary[n] = {
            "steps_per_s": statistics.median(r["steps_per_s"] for r in rs),
            "steps_per_cpu_s": statistics.median(r["steps_per_cpu_s"] for r in rs),
            "rounds": rs,
        }
        for ref in names[1:]:
            pairs = list(zip(rs, rounds[ref]))
            summary[n][f"ratio_to_{ref}"] = statistics.median(a["steps_per_s"] / b["steps_per_s"] for a, b in pairs)
            summary[n][f"ratio_to_{ref}_cpu_time"] = statistics.median(
                a["steps_per_cpu_s"] / b["steps_per_cpu_s"] for a, b in pairs
            )
    print(
        f"\n{'contestant':16s} {'steps/s':>8s} {'steps/cpu-s':>11s}  x yang[train.py] (cpu time)"
        "  x yang[lean] (cpu time)"
    )
    for n, s in summary.items():
        print(
            f"{n:16s} {s['steps_per_s']:8.3f} {s['steps_per_cpu_s']:11.3f}  "
            f"{s['ratio_to_yang[train.py]']:6.2f} ({s['ratio_to_yang[train.py]_cpu_time']:.2f})"
            f"              {s['ratio_to_yang[lean]']:6.2f} ({s['ratio_to_yang[lean]_cpu_time']:.2f})"
        )
    m = cfg.model
    result = {
        "shape": {
            "n_embd": m.n_embd,
            "n_head": m.n_head,
            "loops": m.loops,
            "window": m.loop_window,
            "n_dims": cfg.task.n_dims,
            "n_points": cfg.task.n_points,
            "batch": cfg.training.batch_size,
        },
        "threads": args.threads,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "predictions_max_abs_diff": diff,
        "overrides": args.set,
        "torch": torch.__version__,
        "results": summary,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
