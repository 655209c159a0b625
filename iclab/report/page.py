"""The HTML of `iclab report`: style, the zoom and figure-count script, figures embedded as base64 PNGs,
tables, and the environment a report was made in (versions, device, git commit)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import platform
import subprocess
from pathlib import Path

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
    where = where or Path(__file__).resolve().parents[2]  # the checkout iclab/report/page.py sits in
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
