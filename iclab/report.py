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

import base64
import datetime as _dt
import html
import json
import platform
import subprocess
from pathlib import Path

from iclab.errors import IclabError
from iclab.files import write_text


class ReportError(IclabError, ValueError):
    pass


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
  padding:0 1em;color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{margin:.6em 0} figure img{max-width:100%;border:1px solid #eee;cursor:zoom-in}
figure.wide{width:calc(100vw - 3em);max-width:2400px;position:relative;left:50%;transform:translateX(-50%)}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
#zoom{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);overflow:auto;z-index:10;cursor:zoom-out}
#zoom img{max-width:none;background:#fff;margin:1em}
.pass{color:#fff;background:#2a7d2a;padding:.1em .5em;border-radius:4px;font-weight:bold}
.fail{color:#fff;background:#b22;padding:.1em .5em;border-radius:4px;font-weight:bold}
.inconclusive{color:#222;background:#e8b400;padding:.1em .5em;border-radius:4px;font-weight:bold}
.muted{color:#666;font-size:.9em}
"""

# data-figures: loaded/total figures; data-wide: the narrowest rendered width (px) of a wide figure, and the
# window's width; a click on a figure shows it at its natural size (scroll to pan), another click closes it.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('figure img'));
  var ok = imgs.filter(function (im) { return im.complete && im.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', ok + '/' + imgs.length);
  var wide = Array.prototype.slice.call(document.querySelectorAll('figure.wide img'));
  var w = wide.map(function (im) { return im.getBoundingClientRect().width; });
  var narrowest = w.length ? Math.round(Math.min.apply(null, w)) : 0;
  document.body.setAttribute('data-wide', narrowest + '/' + window.innerWidth);
  var zoom = document.getElementById('zoom');
  document.addEventListener('click', function (e) {
    if (e.target.tagName === 'IMG' && e.target.closest('figure')) {
      zoom.querySelector('img').src = e.target.src; zoom.style.display = 'block';
    } else if (e.target.closest('#zoom')) { zoom.style.display = 'none'; }
  });
});
"""

WIDE_PX = 1200  # a figure wider than this (e.g. compare's four panels) spans the window, not the text column


def _e(x) -> str:
    return html.escape(str(x))


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's header ((0, 0) when it is not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return 0, 0
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _img(path: Path, alt: str | None = None) -> str:
    """A figure embedded as base64; a wide one spans the window; a click shows it at its natural size."""
    raw = Path(path).read_bytes()
    wide = " class='wide'" if png_size(raw)[0] > WIDE_PX else ""
    data = base64.b64encode(raw).decode()
    return (
        f'<figure{wide}><img alt="{_e(alt or path.name)}" title="click to enlarge" '
        f'src="data:image/png;base64,{data}"><figcaption class="muted">{_e(path.name)} (click to enlarge)'
        "</figcaption></figure>"
    )


def _section(kind: str, body: str) -> str:
    """A part of the page the report's test looks for: <section data-section=KIND>."""
    return f"<section data-section='{kind}'>{body}</section>"


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return _e(v)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


# --- the environment ----------------------------------------------------------------------------------
def git_commit(where: Path | None = None) -> str:
    where = where or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    import importlib.metadata as md
    import os

    import torch

    env = {
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for pkg in ("iclab", "torch", "numpy", "scikit-learn", "xgboost", "matplotlib"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    env["CPU"] = f"{_cpu_name()} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"
    env["CUDA"] = (
        ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if torch.cuda.is_available()
        else "not available"
    )
    return env


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
