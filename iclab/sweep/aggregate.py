"""A sweep's table: per grid point, each final metric as mean +- 95% CI over seeds (Student's t, as
`iclab compare`), and the time to a target when one is named.

Final metrics of a run: the workload's headline number from eval.json (regression: the error at k = 2d;
language model: validation bits; ...) and every numeric key of the last metrics.jsonl record except the
step, lr, steps_per_s and curriculum values (loss, and e.g. val/loss or heldout/accuracy), plus the
training wall time (timing.json) and the median steps/s. Time to target (`--target loss<=0.1`): the first
logged step whose metric is at or past the value, and the training clock at that step
(iclab/experiments/metrics.py defines both); a seed that never reaches it counts as not reached (the table
says k/n reached, and the mean is over those that did).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from iclab.experiments import read_metrics, time_to_target, wall_seconds
from iclab.experiments.intervals import NO_CI, ci95_of, ci_cell
from iclab.experiments.reference import reference_text

_SKIP = {"step", "lr", "steps_per_s", "skipped"}


def run_summary(run_dir: Path, workload=None, target=None) -> dict:
    """The final metrics of one finished run."""
    run_dir = Path(run_dir)
    out: dict = {}
    recs = read_metrics(run_dir)
    if recs:
        for k, v in recs[-1].items():
            if (
                k not in _SKIP
                and not k.startswith("curriculum/")
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
            ):
                out[k] = float(v)
        out["steps_per_s"] = statistics.median(r["steps_per_s"] for r in recs if "steps_per_s" in r)
    ev_path = run_dir / "eval.json"
    if workload is not None and ev_path.is_file():
        name, value, _ = workload.headline(json.loads(ev_path.read_text()))
        out[f"eval: {name}"] = float(value)
    wall = wall_seconds(run_dir)
    if wall is not None:
        out["wall_s"] = wall
    if target is not None:
        hit = time_to_target(recs, *target)
        out["target"] = {"step": hit.step, "seconds": hit.seconds} if hit.reached else None
    return out


def _stat(vals: list[float]) -> dict:
    """Mean and 95% t-interval half-width over seeds; ci95 None for one value (no interval from one seed)."""
    return {"mean": statistics.fmean(vals), "ci95": ci95_of(vals), "values": vals}


def aggregate(points: list[dict], target=None) -> list[dict]:
    """points: [{"name", "values": {key: value}, "runs": {seed: summary or None}}] -> table rows:
    {"name", "values", "n_done", "n_runs", "metrics": {metric: {"mean", "ci95", "values"}}, "target": {...}}"""
    rows = []
    for p in points:
        done = {s: r for s, r in p["runs"].items() if r is not None}
        keys: list[str] = []
        for r in done.values():
            keys += [k for k in r if k != "target" and k not in keys]
        metrics = {}
        for k in keys:
            vals = [r[k] for r in done.values() if k in r]
            if vals:
                metrics[k] = _stat(vals)
        row = {
            "name": p["name"],
            "values": p["values"],
            "n_done": len(done),
            "n_runs": len(p["runs"]),
            "seeds": sorted(done),
            "metrics": metrics,
        }
        if target is not None:
            hits = [r["target"] for r in done.values() if r.get("target")]
            row["target"] = {"reached": len(hits), "of": len(done)}
            row["target"].update({k: _stat([h[k] for h in hits]) if hits else None for k in ("step", "seconds")})
        rows.append(row)
    return rows


def _pm(m: dict | None, digits: int = 4) -> str:
    if m is None:
        return "-"
    return f"{m['mean']:.{digits}g} +- " + (NO_CI if m["ci95"] is None else f"{m['ci95']:.2g}")


def metric_names(rows: list[dict]) -> list[str]:
    names: list[str] = []
    for r in rows:
        names += [k for k in r["metrics"] if k not in names]
    first = [k for k in names if k.startswith("eval: ")] + [k for k in ("loss",) if k in names]
    last = [k for k in ("steps_per_s", "wall_s") if k in names]
    return first + [k for k in names if k not in first and k not in last] + last


def table(rows: list[dict], target=None) -> str:
    names = metric_names(rows)
    ref = next((r["vs_reference"] for r in rows if r.get("vs_reference")), None)
    head = (
        ["point", "seeds done"]
        + names
        + ([f"{ref['metric']} - {ref['reference']} (paired by seed, 95% CI)", "p (paired t)"] if ref else [])
        + ([f"step to {''.join(map(str, target))}", "seconds to target"] if target else [])
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], f"{r['n_done']}/{r['n_runs']}"] + [_pm(r["metrics"].get(k)) for k in names]
        if ref:
            cells += list(reference_text(r.get("vs_reference")))
        if target:
            t = r["target"]
            cells += [f"{_pm(t['step'], 5)} ({t['reached']}/{t['of']} reached)", _pm(t["seconds"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], target=None) -> str:
    names = metric_names(rows)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r["values"] if k not in keys]
    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["point", *keys, "n_done", "n_runs"] + [f"{n}{s}" for n in names for s in ("_mean", "_ci95")]
    if target:
        head += ["target_reached", "target_step_mean", "target_step_ci95", "target_seconds_mean", "target_seconds_ci95"]
    w.writerow(head)
    for r in rows:
        cells = [r["name"], *[json.dumps(r["values"].get(k)) for k in keys], r["n_done"], r["n_runs"]]
        for n in names:
            m = r["metrics"].get(n)
            cells += [m["mean"], ci_cell(m["ci95"])] if m else ["", ""]
        if target:
            t = r["target"]
            cells += [t["reached"]] + [
                x for k in ("step", "seconds") for x in ((t[k]["mean"], ci_cell(t[k]["ci95"])) if t[k] else ("", ""))
            ]
        w.writerow(cells)
    return buf.getvalue()


def plot(rows: list[dict], curves: dict[str, list[list[tuple[int, float]]]], out: Path, target=None) -> None:
    """Left: the headline metric per point (mean +- 95% CI, dots: seeds); x = the first grid key when it is
    numeric (log axis when its values span 3x or more), one line per value of the other keys. Right: the
    training loss vs step, mean over seeds, per point. With a target: the steps to it per point."""
    from iclab.experiments.plots import plt

    names = metric_names(rows)
    n_panels = 2 + (target is not None)
    fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4.2))
    if names:
        _plot_metric(axes[0], rows, names[0])
    _plot_losses(axes[1], rows, curves)
    if target is not None:
        _plot_target(axes[2], rows, target)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_metric(ax, rows: list[dict], main: str) -> None:
    from iclab.experiments.plots import floor_at_zero, run_color, seed_dots

    keys = list(rows[0]["values"]) if rows else []
    numeric = bool(keys) and all(
        isinstance(r["values"][keys[0]], (int, float)) and not isinstance(r["values"][keys[0]], bool) for r in rows
    )
    groups: dict[str, list[dict]] = {}
    for r in rows:
        label = ", ".join(f"{k}={r['values'][k]}" for k in keys[1:]) if numeric else ""
        groups.setdefault(label, []).append(r)
    for gi, (label, rs) in enumerate(groups.items()):
        rs = [r for r in rs if main in r["metrics"]]
        if rs:
            xs = [r["values"][keys[0]] for r in rs] if numeric else [rows.index(r) for r in rs]
            seed_dots(ax, xs, [r["metrics"][main] for r in rs], run_color(gi), label or None, line=numeric)
    if numeric:
        vals = sorted({r["values"][keys[0]] for r in rows})
        if min(vals) > 0 and max(vals) / min(vals) >= 3:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(vals, [f"{v:g}" for v in vals])
        ax.set_xlabel(keys[0])
        if len(groups) > 1:
            ax.legend(fontsize=7)
    else:
        ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=30, ha="right", fontsize=7)
    n = max((len(r["metrics"][main]["values"]) for r in rows if main in r["metrics"]), default=0)
    title = "mean +- 95% CI over seeds (dots: seeds)" if n > 1 else "1 seed (no interval)"
    if floor_at_zero(ax, [r["metrics"][main] for r in rows if main in r["metrics"]]):
        title += ", axis from 0"
    ax.set(ylabel=main.removeprefix("eval: "), title=title)
    ax.grid(alpha=0.3)


def _plot_losses(ax, rows: list[dict], curves: dict) -> None:
    from iclab.experiments.plots import run_color

    for i, r in enumerate(rows):
        runs = curves.get(r["name"], [])
        if not runs:
            continue
        by_step = [dict(c) for c in runs]
        steps = sorted(set.intersection(*(set(c) for c in by_step)))
        ax.plot(steps, [statistics.fmean(c[s] for c in by_step) for s in steps], color=run_color(i), label=r["name"])
    ax.set(xlabel="training step", ylabel="training loss (mean over seeds)", yscale="log")
    if rows:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _plot_target(ax, rows: list[dict], target) -> None:
    from iclab.experiments.plots import run_color, seed_dots

    for i, r in enumerate(rows):
        t = r["target"]
        if t["step"]:
            seed_dots(ax, [i], [t["step"]], run_color(i))
        ax.annotate(
            f"{t['reached']}/{t['of']}",
            (i, 0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(bottom=0)
    ax.set(ylabel="steps to target", title=f"first logged step with {''.join(map(str, target))} (k/n reached)")
    ax.grid(alpha=0.3)
