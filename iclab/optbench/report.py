"""`iclab optbench`'s tables and figures (the files are listed in iclab/optbench/bench.py): every trial, time to
target per (workload, submission), performance ratios and scores, performance profiles, the fastest
trials' curves, and summary.md with the tables together.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from iclab.experiments import read_metrics
from iclab.files import write_json, write_text
from iclab.optbench.bench import MEASURES, Trial, aggregate
from iclab.optbench.profiles import profile
from iclab.optbench.spec import BenchSpec


def _fmt(x: float, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits}f}"


def trials_rows(trials: list[Trial]) -> list[dict]:
    rows = []
    for t in trials:
        rows.append(
            {
                "workload": t.workload,
                "submission": t.submission,
                "study": t.study,
                "trial": t.trial,
                "seed": t.seed,
                "run_dir": str(t.run_dir),
                "hparams": t.hparams,
                **t.result,
            }
        )
    return rows


def _jsonable(x):
    if isinstance(x, float) and math.isinf(x):
        return None  # JSON has no infinity: null = the target was not reached
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["inf" if isinstance(v, float) and math.isinf(v) else v for v in r])
    return buf.getvalue()


def ttt_markdown(spec: BenchSpec, agg: dict) -> str:
    subs = list(spec.submissions)
    lines = ["| workload (metric, target, budget) | " + " | ".join(subs) + " |", "|---|" + "---|" * len(subs)]
    for w, ws in spec.workloads.items():
        cells = []
        for s in subs:
            r = agg["table"][w][s]
            cells.append(f"{_fmt(r['steps'])} / {_fmt(r['seconds'], 1)} s ({r['reached']}/{r['trials']})")
        sign = "≤" if ws.goal == "min" else "≥"
        lines.append(
            f"| {w} ({ws.metric} {sign} {ws.target:g}, {agg['budgets'][w]} steps) | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def scores_markdown(spec: BenchSpec, agg: dict) -> str:
    rank = spec.rank_by
    other = "seconds" if rank == "steps" else "steps"
    sc = agg["measures"][rank]["scores"]
    lines = [f"| rank | submission | score ({rank}) | score ({other}) | workloads reached |", "|---|---|---|---|---|"]
    for i, s in enumerate(sorted(sc, key=lambda s: -sc[s]), 1):
        n = sum(math.isfinite(agg["table"][w][s][rank]) for w in spec.workloads)
        lines.append(
            f"| {i} | {s} | {sc[s]:.3f} | {agg['measures'][other]['scores'][s]:.3f} | {n}/{len(spec.workloads)} |"
        )
    return "\n".join(lines)


def ratios_markdown(spec: BenchSpec, agg: dict, measure: str) -> str:
    subs = list(spec.submissions)
    rat = agg["measures"][measure]["ratios"]
    lines = ["| workload | " + " | ".join(subs) + " |", "|---|" + "---|" * len(subs)]
    for w in spec.workloads:
        lines.append(f"| {w} | " + " | ".join(_fmt(rat[s][w], 2) for s in subs) + " |")
    return "\n".join(lines)


def plot_profiles(spec: BenchSpec, agg: dict, path: Path) -> Path:
    from iclab.experiments.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    n = 400
    taus = [1 + (spec.r_max - 1) * i / n for i in range(n + 1)]
    for ax, m in zip(axes, MEASURES):
        rat, sc = agg["measures"][m]["ratios"], agg["measures"][m]["scores"]
        for i, s in enumerate(sorted(rat, key=lambda s: -sc[s])):  # wider lines first: overlapping ones stay visible
            ax.step(
                taus,
                profile(rat[s], taus),
                where="post",
                lw=max(1.2, 4.0 - 0.7 * i),
                alpha=0.85,
                label=f"{s} ({sc[s]:.3f})",
            )
        ax.set_xlim(1, spec.r_max)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"τ (ratio to the fastest, time in {'training steps' if m == 'steps' else 'training seconds'})")
        ax.set_title(f"time = {m}" + (" (ranking)" if m == spec.rank_by else ""), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="submission (score)", title_fontsize=8, loc="lower right")
    axes[0].set_ylabel("ρ(τ): share of workloads within τ of the fastest")
    fig.suptitle(
        f"optbench {spec.name}: performance profiles ({len(spec.workloads)} workloads, {spec.studies} studies x "
        f"{spec.trials} trials)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(spec: BenchSpec, trials: list[Trial], agg: dict, path: Path) -> Path:
    """Per workload, the metric vs step of each submission's fastest trial by steps (over all studies; if none
    reached the target, its trial with the best metric), the target dashed."""
    from iclab.experiments.plots import plt

    ws = list(spec.workloads)
    cols = min(3, len(ws))
    rows = math.ceil(len(ws) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    colors = {s: f"C{i}" for i, s in enumerate(spec.submissions)}
    for ax, w in zip(axes.flat, ws):
        wspec = spec.workloads[w]
        for s in spec.submissions:
            mine = [t for t in trials if t.workload == w and t.submission == s and t.result.get("best") is not None]
            if not mine:
                continue
            sign = 1 if wspec.goal == "min" else -1
            t = min(mine, key=lambda t: (t.result["steps"], sign * t.result["best"]))
            recs = [r for r in read_metrics(t.run_dir) if r.get(wspec.metric) is not None]
            ax.plot(
                [r["step"] for r in recs],
                [r[wspec.metric] for r in recs],
                color=colors[s],
                lw=1.6,
                label=s + ("" if t.result["reached"] else " (not reached)"),
            )
        ax.axhline(wspec.target, color="k", ls="--", lw=1, label="target")
        ax.set_title(w, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(wspec.metric)
        if wspec.metric.endswith("loss") or wspec.metric.endswith("error"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ws) :]:
        ax.set_visible(False)
    fig.suptitle(f"optbench {spec.name}: each submission's fastest trial (by steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(spec: BenchSpec, trials: list[Trial], out: Path, run_info: dict | None = None) -> dict:
    """Write every table and figure into `out`; return the aggregate."""
    agg = aggregate(spec, trials)
    agg["budgets"] = {w: next(t.config.training.steps for t in trials if t.workload == w) for w in spec.workloads}
    write_trials(trials, out)
    write_time_to_target(spec, agg, out)
    write_json(
        out / "scores.json",
        _jsonable({"r_max": spec.r_max, "rank_by": spec.rank_by, **{m: agg["measures"][m] for m in MEASURES}}),
    )
    write_text(out / "scores.md", scores_markdown(spec, agg) + "\n")
    plot_profiles(spec, agg, out / "profiles.png")
    plot_curves(spec, trials, agg, out / "curves.png")
    write_text(out / "summary.md", summary_markdown(spec, trials, agg, run_info or {}))
    return agg


TRIAL_COLUMNS = ("workload", "submission", "study", "trial", "seed", "state", "reached")
TTT_COLUMNS = ("submission", "steps", "seconds", "reached", "trials", "share_reached", "best_metric")


def write_trials(trials: list[Trial], out: Path) -> None:
    """trials.json and trials.csv: every trial, its hyperparameters and its result."""
    rows = trials_rows(trials)
    write_json(out / "trials.json", _jsonable(rows))
    hp_keys = sorted({k for t in trials for k in t.hparams})
    header = [*TRIAL_COLUMNS, "steps_to_target", "seconds_to_target", "best", "final", *hp_keys, "run_dir"]
    table = [
        [*(r[k] for k in TRIAL_COLUMNS), r["steps"], r["seconds"], r["best"], r["final"]]
        + [r["hparams"].get(k) for k in hp_keys]
        + [r["run_dir"]]
        for r in rows
    ]
    write_text(out / "trials.csv", _csv(header, table))


def write_time_to_target(spec: BenchSpec, agg: dict, out: Path) -> None:
    """time_to_target.csv, .json and .md: per (workload, submission) the median over studies of the fastest trial."""
    header = ["workload", "metric", "goal", "target", "budget_steps", *TTT_COLUMNS]
    table = []
    for w, ws in spec.workloads.items():
        for s, r in agg["table"][w].items():
            table.append([w, ws.metric, ws.goal, ws.target, agg["budgets"][w], s] + [r[k] for k in TTT_COLUMNS[1:]])
    write_text(out / "time_to_target.csv", _csv(header, table))
    record = {"workloads": {w: ws.model_dump() for w, ws in spec.workloads.items()}, "budgets": agg["budgets"]}
    write_json(out / "time_to_target.json", _jsonable({**record, "table": agg["table"]}))
    write_text(out / "time_to_target.md", ttt_markdown(spec, agg) + "\n")


def summary_markdown(spec: BenchSpec, trials: list[Trial], agg: dict, info: dict) -> str:
    summary = [
        f"# optbench {spec.name}",
        "",
        f"{len(spec.workloads)} workloads x {len(spec.submissions)} submissions x {spec.studies} studies x "
        f"{spec.trials} trials = {len(trials)} trials (seed {spec.seed}); r_max = {spec.r_max:g}; ranked by "
        f"{spec.rank_by}.",
        "",
    ]
    if info:
        summary += [
            f"This invocation: {info.get('ran', 0)} trial runs trained, {info.get('reused', 0)} reused, "
            f"states {info.get('states', {})}, wall time {info.get('wall_s', 0):.0f} s.",
            "",
        ]
    summary += [
        "## Time to target",
        "",
        "Cell: median over studies of the fastest trial that reached the target, in steps / training seconds "
        "(each measure picks its own fastest trial; the time is that of the first logged evaluation at or past "
        "the target, training seconds exclude evaluations; ∞: not reached in the median study), and "
        "(trials that reached it / trials).",
        "",
        ttt_markdown(spec, agg),
        "",
        "## Score (area under the performance profile up to r_max, divided by r_max - 1)",
        "",
        scores_markdown(spec, agg),
        "",
        f"## Performance ratios ({spec.rank_by})",
        "",
        ratios_markdown(spec, agg, spec.rank_by),
        "",
        "Figures: profiles.png, curves.png. Every trial: trials.csv.",
    ]
    return "\n".join(summary) + "\n"
