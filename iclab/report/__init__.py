"""`iclab report RUN_OR_DIR... --out report.html`: one self-contained HTML page to send to a colleague.

Everything is inside the file: figures as base64 PNGs, the tables of metrics and baselines, each run's
config, and the environment it was made in (package versions, device, git commit). A path may be a run
directory (it has config.yaml), a result of `iclab reproduce` (result.json), of `iclab compare`
(compare.json) or of `iclab sweep` (sweep.json), or any directory holding such things (searched recursively;
runs are grouped by their parent directory, e.g. the seeds of one config).

Each part is a <section data-section=KIND>: reproduce (verdict: SUPPORTED / CONTRADICTED / INCONCLUSIVE,
or PASS / FAIL from an older result.json's `passed`), compare, sweep (its table and figure), and per run
evaluation (eval.json, eval_<tag>.json), shift (an evaluation with a `shift`), multiple-choice
(eval_mc_*.json), surgery, probes, lens and analysis (any other result JSON), with every figure of the run.
A figure wider than WIDE_PX spans the window instead of the text column; a click shows any figure at its
natural size.

When the page has loaded, a script writes `data-figures="loaded/total"` on <body>: the report's test
renders the page in headless Chromium and reads it back, and checks the screenshot is not blank.
"""

from __future__ import annotations

import json
from pathlib import Path

from iclab.errors import IclabError
from iclab.files import write_text
from iclab.report.page import _CSS, _SCRIPT, _e, _img, _section, _table, environment


class ReportError(IclabError, ValueError):
    pass


# --- sections -------------------------------------------------------------------------------------------
def verdict_of(res: dict) -> str:
    """A reproduction's verdict: its `verdict` (SUPPORTED / CONTRADICTED / INCONCLUSIVE) where it has one, else
    PASS or FAIL from the older `passed`."""
    if res.get("verdict"):
        return str(res["verdict"]).upper()
    return "PASS" if res.get("passed") else "FAIL"


_BADGE = {"PASS": "pass", "SUPPORTED": "pass", "FAIL": "fail", "CONTRADICTED": "fail"}


def _reproduce_section(d: Path) -> str:
    res = json.loads((d / "result.json").read_text())
    v = verdict_of(res)
    badge = f'<span class="{_BADGE.get(v, "inconclusive")}">{_e(v)}</span>'
    parts = [
        f"<h2>{_e(res['name'])} <span class='muted'>({_e(res['scale'])}, {res['seeds']} seed(s))</span> {badge}</h2>",
        f"<p><b>{_e(res['source'])}.</b> {_e(res['claim'])}</p>",
        f"<p><b>Criterion:</b> {_e(res['criterion'])}</p>",
        f"<p><b>Measured:</b> {_e(res['summary'])}</p>",
    ]
    if res.get("tests"):
        parts.append("<p><b>Tests:</b></p><ul>" + "".join(f"<li>{_e(t['line'])}</li>" for t in res["tests"]) + "</ul>")
    if res.get("details"):
        parts.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in res["details"]) + "</ul>")
    nums = [[k, v] for k, v in res.get("numbers", {}).items() if not isinstance(v, (list, dict))]
    if nums:
        parts.append(_table(["quantity", "value"], nums))
    parts.append(f"<p class='muted'>training + evaluation time of the runs: {res.get('train_wall_s', 0):.0f} s</p>")
    for fig in ("figure.png", "verdict.png"):
        if (d / fig).is_file():
            parts.append(_img(d / fig))
    return _section("reproduce", "\n".join(parts))


def _compare_section(d: Path) -> str:
    parts = [f"<h2>Comparison: {_e(d)}</h2>"]
    md = d / "compare.md"
    if md.is_file():
        parts.append(_markdown_table(md.read_text()))
    for png in sorted(d.glob("*.png")):
        parts.append(_img(png))
    return _section("compare", "\n".join(parts))


def _sweep_section(d: Path) -> str:
    """A sweep (sweep.json): its grid, its table (table.md, written when it aggregated) and figure."""
    plan = json.loads((d / "sweep.json").read_text())
    parts = [
        f"<h2>Sweep: {_e(d)}</h2>",
        f"<p class='muted'>config {_e(plan.get('config'))}; grid {_e(' x '.join(plan.get('grid') or []) or '-')}; "
        f"seeds {_e(', '.join(map(str, plan.get('seeds', []))))}"
        + (f"; target {_e(plan['target'])}" if plan.get("target") else "")
        + "</p>",
    ]
    md = d / "table.md"
    parts.append(_markdown_table(md.read_text()) if md.is_file() else "<p>(no table yet: no run has finished)</p>")
    if (d / "table.png").is_file():
        parts.append(_img(d / "table.png"))
    return _section("sweep", "\n".join(parts))


def _markdown_table(text: str) -> str:
    rows = [ln.strip().strip("|").split("|") for ln in text.splitlines() if ln.strip().startswith("|")]
    rows = [[c.strip() for c in r] for r in rows if not set("".join(r)) <= set("-: ")]
    if not rows:
        return f"<pre>{_e(text)}</pre>"
    return _table(rows[0], rows[1:])


def _headline(run: Path, cfg) -> tuple[str, float] | None:
    ev_path = run / "eval.json"
    if not ev_path.is_file():
        return None
    ev = json.loads(ev_path.read_text())
    try:
        from iclab.workloads import make_workload

        label, value, _ = make_workload(cfg, run).headline(ev)
        return label, value
    except Exception:  # a report still renders a run whose workload cannot be rebuilt here (e.g. a missing corpus)
        return None


def _regression_table(ev: dict) -> str:
    n = len(ev["model"]["mean"])
    d = ev.get("n_dims", 1)
    ks = sorted({k for k in (1, d // 2, d, 2 * d, n - 1) if 0 <= k < n})
    rows = [["model", *[ev["model"]["mean"][k] for k in ks]]]
    rows += [[b, *[c["mean"][k] for k in ks]] for b, c in ev.get("baselines", {}).items()]
    return _table(["normalized squared error", *[f"k={k}" for k in ks]], rows)


def _scalars(d: dict, prefix: str = "") -> list[list]:
    out = []
    for k, v in d.items():
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            out.append([prefix + k, v])
        elif isinstance(v, dict) and len(out) < 40:
            out += _scalars(v, prefix + k + ".")
    return out


# files of a run that are not results
_NOT_RESULTS = {"timing.json", "failed.json", "bench.json"}


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _eval_table(ev: dict) -> str:
    if isinstance(ev.get("model"), dict) and "mean" in ev["model"]:
        return _regression_table(ev)
    return _table(["evaluation", "value"], _scalars(ev))


def _mc_table(path: Path, rec: dict) -> str:
    ci = lambda v: f"[{v[0]:.3f}, {v[1]:.3f}]" if isinstance(v, list) and len(v) == 2 else "n/a"  # noqa: E731
    return _table(
        ["questions", "accuracy", "95% interval (Wilson)", "length-normalized", "95% interval", "chance"],
        [
            [
                rec.get("n_questions"),
                rec.get("accuracy"),
                ci(rec.get("accuracy_ci95")),
                rec.get("accuracy_norm"),
                ci(rec.get("accuracy_norm_ci95")),
                rec.get("chance"),
            ]
        ],
    )


def _per_layer_table(rec: dict) -> str | None:
    """An analysis record with a list of layer labels: one row per layer, a column per numeric list of the same
    length (lens, probes); None when it has no such list."""
    labels = rec.get("layers") or rec.get("blocks")
    if not isinstance(labels, list) or not labels:
        return None
    cols = [
        k
        for k, v in rec.items()
        if isinstance(v, list)
        and len(v) == len(labels)
        and all(isinstance(x, (int, float)) for x in v)
        and k not in ("layers", "blocks")
    ]
    if not cols:
        return None
    return _table(["layer", *cols], [[lab, *(rec[c][i] for c in cols)] for i, lab in enumerate(labels)])


def _results(run: Path) -> list[str]:
    """Every result file of a run: eval.json and tagged evaluations, distribution shifts (eval_<tag>.json with
    a `shift`), multiple-choice scores (eval_mc_*.json), analyses (surgery, probes, lens, sharpness, ...)."""
    out = []
    for path in sorted(run.glob("*.json")):
        rec = _load(path)
        if rec is None or path.name in _NOT_RESULTS:
            continue
        name = path.name
        if name.startswith("eval_mc_"):
            title = f"multiple choice: {rec.get('file') or name.removeprefix('eval_mc_').removesuffix('.json')}"
            out.append(
                _section(
                    "multiple-choice",
                    f"<h4>{_e(title)} <span class='muted'>({_e(name)})</span></h4>" + _mc_table(path, rec),
                )
            )
        elif name.startswith("eval") and rec.get("shift") is not None:
            title = f"distribution shift: {rec['shift']}" + (f" on {rec['eval_task']}" if rec.get("eval_task") else "")
            out.append(
                _section("shift", f"<h4>{_e(title)} <span class='muted'>({_e(name)})</span></h4>" + _eval_table(rec))
            )
        elif name.startswith("eval"):
            out.append(
                _section(
                    "evaluation", f"<h4>evaluation <span class='muted'>({_e(name)})</span></h4>" + _eval_table(rec)
                )
            )
        else:
            kind = next((k for k in ("surgery", "probes", "lens") if name.startswith(k)), "analysis")
            table = _per_layer_table(rec) or _table(["quantity", "value"], _scalars(rec)[:40])
            out.append(_section(kind, f"<h4>{_e(path.stem)} <span class='muted'>({_e(name)})</span></h4>" + table))
    return out


def _run_section(run: Path, level: str = "h3") -> str:
    from iclab.runs import load_run_config

    cfg = load_run_config(run)
    parts = [
        f"<{level}>{_e(run)}</{level}>",
        f"<p class='muted'>task {_e(cfg.task.name)}, model {cfg.model.n_layer} layer(s) x width {cfg.model.n_embd}"
        f"{f', {cfg.model.loops} loops' if cfg.model.loops > 1 else ''}, {cfg.training.steps} steps of "
        f"{_e(cfg.training.optimizer.name)}, seed {cfg.seed}</p>",
    ]
    parts += _results(run)
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        lines = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
        if lines:
            last = json.loads(lines[-1])
            parts.append(_table(["last logged", "value"], [[k, v] for k, v in last.items()]))
    for png in sorted(run.glob("*.png")):
        parts.append(_img(png))
    parts.append(f"<details><summary>config.yaml</summary><pre>{_e((run / 'config.yaml').read_text())}</pre></details>")
    return "\n".join(parts)


def _group_section(parent: Path, runs: list[Path]) -> str:
    from iclab.runs import load_run_config

    rows = []
    for run in runs:
        h = _headline(run, load_run_config(run))
        rows.append([run.name, *(h if h else ("(not evaluated)", None))])
    parts = [f"<h2>Runs in {_e(parent)}</h2>"]
    if len(runs) > 1:
        parts.append(_table(["run", "headline", "value"], rows))
    parts.append(
        "".join(
            f"<details{' open' if i == 0 else ''}><summary>{_e(r.name)}</summary>{_run_section(r)}</details>"
            for i, r in enumerate(runs)
        )
    )
    return "\n".join(parts)


def _collect(paths: list[Path]) -> tuple[list[Path], list[Path], list[Path], dict[Path, list[Path]]]:
    results, compares, sweeps, groups = [], [], [], {}
    seen = set()

    def visit(p: Path):
        p = p.resolve()
        if p in seen:
            return
        seen.add(p)
        if (p / "result.json").is_file():
            results.append(p)
        if (p / "compare.json").is_file():
            compares.append(p)
        if (p / "sweep.json").is_file():
            sweeps.append(p)
        if (p / "config.yaml").is_file():
            groups.setdefault(p.parent, []).append(p)
            return
        for child in sorted(x for x in p.iterdir() if x.is_dir()):
            visit(child)

    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ReportError(f"{p} does not exist")
        if not p.is_dir():
            raise ReportError(f"{p} is not a directory (give run directories or directories holding them)")
        visit(p)
    if not (results or compares or sweeps or groups):
        raise ReportError(
            "no run (config.yaml), reproduction (result.json), comparison (compare.json) or sweep (sweep.json) under "
            + ", ".join(str(p) for p in paths)
        )
    return results, compares, sweeps, groups


def build_report(paths: list[Path], title: str | None = None) -> str:
    results, compares, sweeps, groups = _collect([Path(p) for p in paths])
    body = [f"<h1>{_e(title or 'iclab report')}</h1>"]
    if results:
        verdicts = [verdict_of(json.loads((d / "result.json").read_text())) for d in results]
        counts = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
        body.append(f"<p>{len(results)} reproduction(s): {_e(counts)}.</p>")
        body += [_reproduce_section(d) for d in results]
    body += [_compare_section(d) for d in compares]
    body += [_sweep_section(d) for d in sweeps]
    body += [_group_section(parent, sorted(runs)) for parent, runs in groups.items()]
    env = environment()
    body.append("<h2>Environment</h2>" + _table(["", ""], [[k, v] for k, v in env.items()]))
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title or 'iclab report')}</title>"
        f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>\n"
        + "\n".join(body)
        + "\n<div id='zoom' title='click to close'><img alt='enlarged figure'></div>\n</body></html>\n"
    )


def write_report(paths: list[Path], out: Path, title: str | None = None) -> Path:
    out = Path(out)
    if out.is_dir():
        raise ReportError(f"--out {out} is a directory: give the HTML file to write, e.g. {out / 'report.html'}")
    if out.parent.exists() and not out.parent.is_dir():
        raise ReportError(f"--out {out}: {out.parent} is not a directory")
    page = build_report(paths, title)  # everything is read before the file is touched
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, page)
    return out
