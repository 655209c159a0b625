"""Grokking runs compared: when each memorized and when each generalized (Power et al. 2022).

    iclab dynamics grokking RUN [RUN ...] --out DIR [--memorized 0.99] [--grokked 0.95]

Reads each modular-arithmetic run's metrics.jsonl (train and held-out accuracy on the whole table at every log
step) and its config, and records per run: p, op, train fraction, weight decay, the first logged step with
train accuracy >= --memorized, the first with held-out accuracy >= --grokked (null if never), their ratio, and
the final accuracies. DIR/grokking_summary.json and DIR/grokking_compare.png: held-out (solid) and train
(dashed) accuracy vs step on a log axis for every run, and steps to memorize / to generalize vs the training
fraction (runs that never generalized drawn at their last step, hollow).
"""

from __future__ import annotations

from pathlib import Path

from iclab.errors import IclabError
from iclab.files import write_json


class GrokkingError(IclabError, ValueError):
    pass


def first_step(records: list[dict], key: str, level: float) -> int | None:
    return next((r["step"] for r in records if r[key] >= level), None)


def summarize(run_dir: Path, memorized: float = 0.99, grokked: float = 0.95) -> dict:
    from iclab.runs import load_run_config
    from iclab.workloads.sequence.modular import read_metrics

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if cfg.task.name != "modular_arithmetic":
        raise GrokkingError(f"{run_dir}: task {cfg.task.name!r} is not modular_arithmetic")
    recs = read_metrics(run_dir / "metrics.jsonl")
    if not recs:
        raise GrokkingError(f"{run_dir}/metrics.jsonl has no train/held-out accuracy records")
    o = cfg.task.options
    mem, grok = first_step(recs, "train/accuracy", memorized), first_step(recs, "heldout/accuracy", grokked)
    return {
        "run": str(run_dir),
        "name": run_dir.name,
        "p": o.get("p", 97),
        "op": o.get("op", "/"),
        "train_fraction": o.get("train_fraction", 0.5),
        "embed_std": o.get("embed_std"),
        "weight_decay": cfg.training.optimizer.options.get("weight_decay"),
        "lr": cfg.training.lr,
        "steps": recs[-1]["step"],
        "memorized_at": mem,
        "generalized_at": grok,
        "delay_ratio": grok / mem if grok and mem else None,
        "final_train_accuracy": recs[-1]["train/accuracy"],
        "final_heldout_accuracy": recs[-1]["heldout/accuracy"],
        "curve": {
            "step": [r["step"] for r in recs],
            "train": [r["train/accuracy"] for r in recs],
            "heldout": [r["heldout/accuracy"] for r in recs],
        },
    }


def compare_runs(run_dirs: list[Path], out: Path, memorized: float = 0.99, grokked: float = 0.95) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [summarize(r, memorized, grokked) for r in run_dirs]
    rec = {"memorized_level": memorized, "grokked_level": grokked, "runs": runs}
    write_json(out / "grokking_summary.json", rec)
    rec["figure"] = str(plot_compare(rec, out / "grokking_compare.png"))
    rec["path"] = str(out / "grokking_summary.json")
    return rec


def plot_compare(rec: dict, path: Path) -> Path:
    from iclab.plotting import plt

    runs = rec["runs"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5))
    colors = plt.get_cmap("tab10").colors
    for i, r in enumerate(runs):
        c = colors[i % 10]
        lab = f"{r['name']} (p={r['p']}, frac {r['train_fraction']}, wd {r['weight_decay']})"
        ax.plot(r["curve"]["step"], r["curve"]["heldout"], "-", color=c, lw=2, label=lab)
        ax.plot(r["curve"]["step"], r["curve"]["train"], "--", color=c, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (solid: held-out, dashed: train)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    for key, marker, lab in (
        ("memorized_at", "s", f"train acc >= {rec['memorized_level']}"),
        ("generalized_at", "o", f"held-out acc >= {rec['grokked_level']}"),
    ):
        by_group: dict = {}
        for r in runs:
            by_group.setdefault((r["p"], r["weight_decay"]), []).append(r)
        for group in by_group.values():
            group = sorted(group, key=lambda r: r["train_fraction"])
            xs = [r["train_fraction"] for r in group]
            ys = [r[key] if r[key] is not None else r["steps"] for r in group]
            hollow = [r[key] is None for r in group]
            bx.plot(xs, ys, "-", lw=1, color="tab:red" if key == "generalized_at" else "tab:blue", alpha=0.6)
            for x, y, h in zip(xs, ys, hollow):
                bx.plot(
                    x,
                    y,
                    marker,
                    ms=7,
                    color="tab:red" if key == "generalized_at" else "tab:blue",
                    mfc="none" if h else None,
                )
        bx.plot([], [], marker, color="tab:red" if key == "generalized_at" else "tab:blue", label=lab)
    bx.plot([], [], "o", mfc="none", color="gray", label="never (drawn at the last step)")
    bx.set_yscale("log")
    bx.set_xlabel("training fraction")
    bx.set_ylabel("first logged step")
    bx.set_title("steps to memorize / to generalize", fontsize=9)
    bx.legend(fontsize=7)
    fig.suptitle("grokking: modular arithmetic runs compared", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
