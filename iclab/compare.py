"""`iclab compare`: one experiment over several configs and seeds, aggregated with confidence intervals.

Each (config, seed) pair trains into OUT/<name>/seed<s>, `name` being the config file's stem and the
config's `seed` replaced by s. Data of step t is a pure function of (seed, t), so at one seed every
config sees the same data order, and a config of another shape sees the same stream of functions;
the model init differs only where the architectures do. A finished run (model.safetensors and
eval.json present) is reused, an interrupted one resumed, so running the command twice does no work
twice.

Per config the table reports the workload's headline number (regression: the error at k = 2d;
language model: validation bits; sorting: exact match; modular arithmetic: held-out accuracy) as the
mean over seeds with a 95% confidence interval from Student's t with n - 1 degrees of freedom, beside
the parameters, the matmul FLOPs of a training step, the median logged steps/s, tokens/s and achieved
GFLOP/s, the MFU against the device's matmul peak measured at the end (in the runs' dtype and thread
count, as `iclab bench` measures it; runs that shared the machine show a lower MFU), and the wall time. Outputs: OUT/compare.json, compare.csv, compare.md and compare.png:
the headline per config with its interval and each seed's value; the training loss vs step (language
models: the validation loss vs step and vs training wall-clock, and the loss per context position), mean
over seeds; for regression the error vs in-context examples, mean over seeds.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from pathlib import Path

from iclab.config import Config, load_config
from iclab.errors import IclabError
from iclab.files import write_json, write_text
from iclab.stats import t_interval


class CompareError(IclabError, ValueError):
    pass


def _names(paths: list[Path]) -> list[str]:
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{p.parent.name}_{p.stem}" for p in paths]


def _done(run: Path) -> bool:
    return (run / "model.safetensors").is_file() and (run / "eval.json").is_file()


def run_one(cfg: Config, run: Path, log=print) -> None:
    from iclab.runs import train_run

    if _done(run):
        log(f"  {run}: finished, reused")
        return
    t0 = time.perf_counter()
    resume = (run / "config.yaml").is_file()
    log(f"  {run}: {'resuming' if resume else 'training'}")
    train_run(None if resume else cfg, run, resume=resume, overwrite=not resume and run.exists())
    prev = (
        json.loads((run / "timing.json").read_text())["wall_s"] if resume and (run / "timing.json").is_file() else 0.0
    )
    write_json(run / "timing.json", {"wall_s": prev + time.perf_counter() - t0})


def compare(
    configs: list[Path],
    seeds: list[int],
    out: Path,
    overrides: list[str] | None = None,
    log=print,
    backend: str | None = None,
    workers: int | None = None,
) -> dict:
    """`backend` (local | ray | slurm): train the missing runs through `iclab.sweep.run_many` first, `workers` at a
    time (default: one after another in this process)."""
    from iclab.models import count_params
    from iclab.workloads import make_workload

    if not configs:
        raise CompareError("give at least one config")
    if not seeds:
        raise CompareError("give at least one seed")
    out = Path(out)
    names = _names([Path(c) for c in configs])
    rows = []
    for name, path in zip(names, configs):
        cfgs = {s: load_config(path, list(overrides or []) + [f"seed={s}"]) for s in seeds}  # all checked first
        rows.append((name, path, cfgs))
    if backend is not None:
        from iclab.sweep import Job, run_many

        jobs = [Job(cfg, out / name / f"seed{s}") for name, _, cfgs in rows for s, cfg in cfgs.items()]
        failed = [
            r
            for r in run_many(jobs, backend=backend, workers=workers, log=log)
            if r.state != "reused" and r.state != "done"
        ]
        if failed:
            raise CompareError(
                f"{len(failed)} run(s) did not finish: " + "; ".join(f"{r.run_dir}: {r.error}" for r in failed)
            )
    results = {}
    for name, path, cfgs in rows:
        log(f"{name} ({path})")
        per_seed, wl = {}, None
        for s, cfg in cfgs.items():
            run = out / name / f"seed{s}"
            run_one(cfg, run, log)
            ev = json.loads((run / "eval.json").read_text())
            wl = wl or make_workload(cfg, run)  # the seeds differ in nothing a workload reads
            metric, value, lower = wl.headline(ev)
            recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
            t, clock = 0.0, []
            for prev, r in zip([{"step": 0}] + recs, recs):  # wall-clock of training at each log step
                t += (r["step"] - prev["step"]) / max(r["steps_per_s"], 1e-9)
                clock.append(t)
            per_seed[s] = {
                "run": str(run),
                "value": value,
                "eval": ev,
                "loss": [(r["step"], r["loss"]) for r in recs],
                "clock": clock,
                "val": [(r["step"], r["val/loss"]) for r in recs if "val/loss" in r],
                "steps_per_s": statistics.median(r["steps_per_s"] for r in recs),
                "wall_s": json.loads((run / "timing.json").read_text())["wall_s"]
                if (run / "timing.json").is_file()
                else None,
            }
        values = [v["value"] for v in per_seed.values()]
        model = wl.build_model()
        walls = [v["wall_s"] for v in per_seed.values() if v["wall_s"] is not None]
        results[name] = {
            "config": str(path),
            "metric": metric,
            "lower_is_better": lower,
            "mean": statistics.fmean(values),
            "ci95": t_interval(values),
            "values": values,
            "seeds": list(per_seed),
            "params": count_params(model),
            "flops_per_step": wl.step_flops(),
            "steps_per_s": statistics.median(v["steps_per_s"] for v in per_seed.values()),
            "tokens_per_s": statistics.median(v["steps_per_s"] for v in per_seed.values())
            * wl.tokens_per_step(cfg.training.batch_size),
            "wall_s": statistics.median(walls) if walls else None,
            "per_seed": per_seed,
        }
    peak = measure_peak(rows[0][2][seeds[0]])
    for r in results.values():
        r["peak_flops"] = peak
        r["mfu"] = r["flops_per_step"] * r["steps_per_s"] / peak
    out.mkdir(parents=True, exist_ok=True)
    slim = {k: {kk: vv for kk, vv in r.items() if kk != "per_seed"} for k, r in results.items()}
    write_json(out / "compare.json", {"seeds": seeds, "overrides": overrides or [], "configs": slim})
    write_text(out / "compare.csv", _csv(slim))
    write_text(out / "compare.md", table(slim))
    plot_compare(results, out / "compare.png")
    return slim


def measure_peak(cfg: Config) -> float:
    """The matmul FLOP/s of the runs' device, dtype and thread count, measured now (as `iclab bench` does)."""
    import torch

    from iclab.bench import measure_peak as peak_of
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
        ]
    )
    for name, r in res.items():
        w.writerow(
            [
                name,
                r["metric"],
                r["mean"],
                r["ci95"],
                " ".join(f"{v:.6g}" for v in r["values"]),
                r["params"],
                r["flops_per_step"],
                r["steps_per_s"],
                r["tokens_per_s"],
                r["mfu"],
                r["wall_s"],
            ]
        )
    return buf.getvalue()


def table(res: dict) -> str:
    metric = next(iter(res.values()))["metric"]
    lines = [
        f"| config | {metric} (mean +- 95% CI) | per seed | parameters | GFLOP/step | steps/s | tokens/s | "
        "GFLOP/s | MFU | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] is not None else "-"
        lines.append(
            f"| {name} | {r['mean']:.4f} +- {r['ci95']:.4f} | {', '.join(f'{v:.4f}' for v in r['values'])} | "
            f"{r['params']:,} | {r['flops_per_step'] / 1e9:.2f} | {r['steps_per_s']:.2f} | "
            f"{r['tokens_per_s']:,.0f} | {r['flops_per_step'] * r['steps_per_s'] / 1e9:.1f} | {r['mfu']:.1%} | {wall} |"
        )
    return "\n".join(lines) + "\n"


def plot_compare(results: dict, out: Path) -> None:
    from iclab.evaluation.plots import plt, run_color

    seeds = [s for r in results.values() for s in r["per_seed"].values()]
    regression = all("model" in s["eval"] for s in seeds)
    val = all(s["val"] for s in seeds)  # a language model: validation loss logged during training
    per_pos = all("loss_per_position" in s["eval"] for s in seeds)
    n_panels = 2 + regression + val + per_pos
    fig, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 4))
    ax = axes[0]
    names = list(results)
    for i, (name, r) in enumerate(results.items()):
        ax.errorbar([i], [r["mean"]], yerr=[r["ci95"]], fmt="o", color=run_color(i), capsize=4)
        ax.scatter([i] * len(r["values"]), r["values"], color=run_color(i), alpha=0.4, s=12)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    first = next(iter(results.values()))
    title = f"mean +- 95% CI over {len(first['values'])} seeds (dots: seeds)"
    if all(v >= 0 for r in results.values() for v in r["values"]) and any(
        r["mean"] < r["ci95"] for r in results.values()
    ):
        ax.set_ylim(bottom=0)  # a t interval of skewed values can reach below 0; the metric cannot
        title += ", axis from 0"
    ax.set(ylabel=first["metric"], title=title)
    ax.grid(alpha=0.3)
    ax = axes[1]
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
    ax.grid(alpha=0.3)
    k = 2
    if val:  # the same curves against training wall-clock (from the logged steps/s)
        ax = axes[k]
        k += 1
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
        ax.grid(alpha=0.3)
    if per_pos:  # language model: loss at each context position after training
        ax = axes[k]
        k += 1
        for i, (name, r) in enumerate(results.items()):
            pp = [s["eval"]["loss_per_position"] for s in r["per_seed"].values()]
            n = min(len(p) for p in pp)
            ax.plot(range(n), [statistics.fmean(p[q] for p in pp) for q in range(n)], color=run_color(i), label=name)
        ax.set(xlabel="position in the context", ylabel="validation loss (mean over seeds)", xscale="symlog")
        ax.set_xlim(left=0)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if regression:
        ax = axes[k]
        for i, (name, r) in enumerate(results.items()):
            evs = [s["eval"] for s in r["per_seed"].values()]
            n = min(len(e["model"]["mean"]) for e in evs)
            ax.plot(
                range(n),
                [statistics.fmean(e["model"]["mean"][k] for e in evs) for k in range(n)],
                color=run_color(i),
                label=name,
            )
        ls = evs[0]["baselines"].get("least_squares")
        if ls:
            ax.plot(range(len(ls["mean"])), ls["mean"], "k--", label=f"least squares (seed {r['seeds'][-1]})")
        ax.set(xlabel="in-context examples", ylabel="normalized squared error (mean over seeds)", ylim=(0, None))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def parse_seeds(spec: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0-4' -> [0..4]; '1,5,7' -> [1, 5, 7]."""
    try:
        if "-" in spec:
            a, b = spec.split("-", 1)
            return list(range(int(a), int(b) + 1))
        if "," in spec:
            return [int(x) for x in spec.split(",")]
        return list(range(int(spec)))
    except ValueError:
        raise CompareError(f"--seeds {spec!r}: use a count (3), a range (0-4) or a list (1,5,7)") from None
