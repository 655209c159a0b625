"""`iclab compare`: one experiment over several configs and seeds, aggregated with confidence intervals.

A sweep over a config axis on the run engine (iclab/experiments): each (config, seed) pair trains into
OUT/<name>/seed<s>, `name` being the config file's stem and the config's `seed` replaced by s. Data of
step t is a pure function of (seed, t), so at one seed every config sees the same data order, and a
config of another shape sees the same stream of functions; the model init differs only where the
architectures do. A finished run of the same config is reused, an interrupted one resumed, so running
the command twice does no work twice; a run directory holding another config is an error.

Per config the table reports the workload's headline number (regression: the error at k = 2d;
language model: validation bits; sorting: exact match; modular arithmetic: held-out accuracy) as the
mean over seeds with a 95% confidence interval from Student's t with n - 1 degrees of freedom, beside
the parameters, the matmul FLOPs of a training step, the median logged steps/s, tokens/s and achieved
GFLOP/s, the MFU against the device's matmul peak measured at the end (in the runs' dtype and thread
count, as `iclab bench` measures it; runs that shared the machine show a lower MFU), and the wall time.
Outputs: OUT/compare.json, compare.csv, compare.md and compare.png:
the headline per config with its interval and each seed's value; the training loss vs step (language
models: the validation loss vs step and vs the training clock, and the loss per context position), mean
over seeds; for regression the error vs in-context examples, mean over seeds.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from iclab.config import Config
from iclab.experiments import (
    ExperimentError,
    Job,
    check_backend,
    config_axis,
    point_config,
    read_metrics,
    run_many,
    training_clock,
    wall_seconds,
)
from iclab.experiments.intervals import ci95_of, ci_cell, ci_text
from iclab.experiments.reference import check_reference, reference_text, vs_reference
from iclab.files import write_json, write_text


class CompareError(ExperimentError):
    pass


def compare(
    configs: list[Path],
    seeds: list[int],
    out: Path,
    overrides: list[str] | None = None,
    log=print,
    backend: str | None = None,
    workers: int | None = None,
    reference: str | None = None,
) -> dict:
    """A sweep over a config axis: every (config, seed) run through the engine (`backend`: inline, the
    default, one after another in this process; local | pool | ray | slurm, `workers` at a time), then the
    table and the figure. With `reference` (a config's name): each config's paired difference to it, by seed
    (iclab/experiments/reference.py)."""
    if not configs:
        raise CompareError("give at least one config")
    if not seeds:
        raise CompareError("give at least one seed")
    out = Path(out)
    check_backend(backend or "inline", workers)
    if out.exists() and not out.is_dir():
        raise CompareError(f"--out {out} exists and is not a directory")
    points = config_axis(configs)
    check_reference(reference, [p.name for p in points])
    cfgs = {(p.name, s): point_config(p, s, overrides=overrides) for p in points for s in seeds}  # all checked first
    jobs = [Job(cfg, out / name / f"seed{s}") for (name, s), cfg in cfgs.items()]
    log(f"compare: {len(points)} config(s) x {len(seeds)} seed(s) into {out}")
    results = run_many(jobs, backend=backend or "inline", workers=workers, log=log)
    if any(r.state == "interrupted" for r in results):
        raise KeyboardInterrupt("interrupted")
    failed = [r for r in results if not r.finished]
    if failed:
        raise CompareError(
            f"{len(failed)} run(s) did not finish: " + "; ".join(f"{r.run_dir}: {r.error}" for r in failed)
        )
    res = {p.name: summarize_config(p.config, {s: cfgs[p.name, s] for s in seeds}, out / p.name) for p in points}
    peak = measure_peak(cfgs[points[0].name, seeds[0]])
    for r in res.values():
        r["peak_flops"] = peak
        r["mfu"] = r["flops_per_step"] * r["steps_per_s"] / peak
    if reference is not None:
        by_seed = {k: {s: v["value"] for s, v in r["per_seed"].items()} for k, r in res.items()}
        for k, d in vs_reference(by_seed, reference).items():
            res[k]["vs_reference"] = d
    out.mkdir(parents=True, exist_ok=True)
    slim = {k: {kk: vv for kk, vv in r.items() if kk != "per_seed"} for k, r in res.items()}
    write_json(
        out / "compare.json",
        {"seeds": seeds, "overrides": overrides or [], "reference": reference, "configs": slim},
    )
    write_text(out / "compare.csv", _csv(slim))
    write_text(out / "compare.md", table(slim))
    plot_compare(res, out / "compare.png")
    return slim


def seed_summary(run: Path, wl) -> dict:
    """One finished run: its headline value, evaluation, loss and validation curves and training clock."""
    ev = json.loads((run / "eval.json").read_text())
    recs = read_metrics(run)
    return {
        "run": str(run),
        "value": wl.headline(ev)[1],
        "eval": ev,
        "loss": [(r["step"], r["loss"]) for r in recs],
        "clock": training_clock(recs),
        "val": [(r["step"], r["val/loss"]) for r in recs if "val/loss" in r],
        "steps_per_s": statistics.median(r["steps_per_s"] for r in recs if "steps_per_s" in r),
        "wall_s": wall_seconds(run),
    }


def summarize_config(path: Path, cfgs: dict[int, Config], runs: Path) -> dict:
    """One config over its seeds (runs/seed<s>): the headline as mean +- 95% CI, size, speed, wall time."""
    from iclab.models import count_params
    from iclab.workloads import make_workload

    cfg = next(iter(cfgs.values()))
    wl = make_workload(cfg, runs / f"seed{cfg.seed}")  # the seeds differ in nothing a workload reads
    metric, _, lower = wl.headline(json.loads((runs / f"seed{cfg.seed}" / "eval.json").read_text()))
    per_seed = {s: seed_summary(runs / f"seed{s}", wl) for s in cfgs}
    values = [v["value"] for v in per_seed.values()]
    walls = [v["wall_s"] for v in per_seed.values() if v["wall_s"] is not None]
    steps_per_s = statistics.median(v["steps_per_s"] for v in per_seed.values())
    return {
        "config": str(path),
        "metric": metric,
        "lower_is_better": lower,
        "mean": statistics.fmean(values),
        "ci95": ci95_of(values),  # None for one seed: no interval
        "values": values,
        "seeds": list(per_seed),
        "params": count_params(wl.build_model()),
        "flops_per_step": wl.step_flops(),
        "steps_per_s": steps_per_s,
        "tokens_per_s": steps_per_s * wl.tokens_per_step(cfg.training.batch_size),
        "wall_s": statistics.median(walls) if walls else None,
        "per_seed": per_seed,
    }


def measure_peak(cfg: Config) -> float:
    """The matmul FLOP/s of the runs' device, dtype and thread count, measured now (as `iclab bench` does)."""
    import torch

    from iclab.experiments.throughput import measure_peak as peak_of
    from iclab.training.device import resolve_amp_dtype, resolve_device

    device = resolve_device(cfg.training.device)
    old = torch.get_num_threads()
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    try:
        return peak_of(device, resolve_amp_dtype(cfg.training.dtype, device) or torch.float32)
    finally:
        torch.set_num_threads(old)


def _csv(res: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "config",
            "metric",
            "mean",
            "ci95",
            "values",
            "params",
            "flops_per_step",
            "steps_per_s",
            "tokens_per_s",
            "mfu",
            "wall_s",
            "diff_vs_reference",
            "diff_lo",
            "diff_hi",
            "p_paired_t",
        ]
    )
    for name, r in res.items():
        w.writerow(
            [
                name,
                r["metric"],
                r["mean"],
                ci_cell(r["ci95"]),
                " ".join(f"{v:.6g}" for v in r["values"]),
                r["params"],
                r["flops_per_step"],
                r["steps_per_s"],
                r["tokens_per_s"],
                r["mfu"],
                r["wall_s"],
                *(
                    ["", "", "", ""]
                    if not r.get("vs_reference")
                    else [r["vs_reference"][k] for k in ("diff", "lo", "hi", "p")]
                ),
            ]
        )
    return buf.getvalue()


def table(res: dict) -> str:
    metric = next(iter(res.values()))["metric"]
    ref = next((r["vs_reference"]["reference"] for r in res.values() if r.get("vs_reference")), None)
    extra = f" {metric} - {ref} (paired by seed, 95% CI) | p (paired t) |" if ref else ""
    lines = [
        f"| config | {metric} (mean +- 95% CI) | per seed |{extra} parameters | GFLOP/step | steps/s | tokens/s | "
        "GFLOP/s | MFU | wall s |",
        "|---|---|---|" + ("---|---|" if ref else "") + "---|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] is not None else "-"
        lines.append(
            f"| {name} | {r['mean']:.4f} +- {ci_text(r['ci95'])} | {', '.join(f'{v:.4f}' for v in r['values'])} | "
            + (" | ".join(reference_text(r.get("vs_reference"))) + " | " if ref else "")
            + f"{r['params']:,} | {r['flops_per_step'] / 1e9:.2f} | {r['steps_per_s']:.2f} | "
            f"{r['tokens_per_s']:,.0f} | {r['flops_per_step'] * r['steps_per_s'] / 1e9:.1f} | {r['mfu']:.1%} | {wall} |"
        )
    return "\n".join(lines) + "\n"


def plot_compare(results: dict, out: Path) -> None:
    """The headline per config (mean +- 95% CI, dots: seeds); the loss vs step (language models: validation
    loss, also vs training clock, and the loss per context position); regression: error vs examples."""
    from iclab.experiments.plots import plt

    seeds = [s for r in results.values() for s in r["per_seed"].values()]
    regression = all("model" in s["eval"] for s in seeds)
    val = all(s["val"] for s in seeds)  # a language model: validation loss logged during training
    per_pos = all("loss_per_position" in s["eval"] for s in seeds)
    panels = [_plot_headline, _plot_loss_vs_step]
    panels += [_plot_val_vs_clock] * val + [_plot_per_position] * per_pos + [_plot_error_vs_examples] * regression
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, panel in zip(axes, panels):
        panel(ax, results)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_headline(ax, results: dict) -> None:
    from iclab.experiments.plots import floor_at_zero, run_color, seed_dots

    for i, r in enumerate(results.values()):
        seed_dots(ax, [i], [r], run_color(i))
    ax.set_xticks(range(len(results)), list(results), rotation=30, ha="right")
    first = next(iter(results.values()))
    n = len(first["values"])
    title = f"mean +- 95% CI over {n} seeds (dots: seeds)" if n > 1 else "1 seed (no interval)"
    if floor_at_zero(ax, list(results.values())):
        title += ", axis from 0"
    ax.set(ylabel=first["metric"], title=title)


def _plot_loss_vs_step(ax, results: dict) -> None:
    from iclab.experiments.plots import run_color

    val = all(s["val"] for r in results.values() for s in r["per_seed"].values())
    key = "val" if val else "loss"
    for i, (name, r) in enumerate(results.items()):
        curves = [dict(s[key]) for s in r["per_seed"].values()]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        ax.plot(steps, [statistics.fmean(c[t] for c in curves) for t in steps], color=run_color(i), label=name)
    ax.set(
        xlabel="training step",
        ylabel=f"{'validation' if val else 'training'} loss (mean over seeds)",
        yscale="linear" if val else "log",
    )
    ax.legend(fontsize=8)


def _plot_val_vs_clock(ax, results: dict) -> None:
    """The validation curves against the training clock (iclab/experiments/metrics.py), each seed."""
    from iclab.experiments.plots import run_color

    for i, (name, r) in enumerate(results.items()):
        for j, s in enumerate(r["per_seed"].values()):
            at = dict(zip((st for st, _ in s["loss"]), s["clock"]))
            ax.plot(
                [at[st] for st, _ in s["val"]],
                [v for _, v in s["val"]],
                color=run_color(i),
                alpha=0.7,
                lw=1,
                label=name if j == 0 else None,
            )
    ax.set(xlabel="training wall-clock (s)", ylabel="validation loss (each seed)")
    ax.legend(fontsize=8)


def _plot_per_position(ax, results: dict) -> None:
    """Language model: the loss at each context position after training."""
    from iclab.experiments.plots import run_color

    for i, (name, r) in enumerate(results.items()):
        pp = [s["eval"]["loss_per_position"] for s in r["per_seed"].values()]
        n = min(len(p) for p in pp)
        ax.plot(range(n), [statistics.fmean(p[q] for p in pp) for q in range(n)], color=run_color(i), label=name)
    ax.set(xlabel="position in the context", ylabel="validation loss (mean over seeds)", xscale="symlog")
    ax.set_xlim(left=0)
    ax.legend(fontsize=8)


def _plot_error_vs_examples(ax, results: dict) -> None:
    from iclab.experiments.plots import run_color

    for i, (name, r) in enumerate(results.items()):
        evs = [s["eval"] for s in r["per_seed"].values()]
        n = min(len(e["model"]["mean"]) for e in evs)
        mean = [statistics.fmean(e["model"]["mean"][k] for e in evs) for k in range(n)]
        ax.plot(range(n), mean, color=run_color(i), label=name)
    ls = evs[0]["baselines"].get("least_squares")
    if ls:
        ax.plot(range(len(ls["mean"])), ls["mean"], "k--", label=f"least squares (seed {r['seeds'][-1]})")
    ax.set(xlabel="in-context examples", ylabel="normalized squared error (mean over seeds)", ylim=(0, None))
    ax.legend(fontsize=8)
