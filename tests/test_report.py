"""`iclab report`: one self-contained HTML page; rendered in headless Chromium where it is installed."""

import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from iclab.cli import app
from iclab.report import ReportError, build_report, write_report


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    return tiny_run


def test_the_page_embeds_figures_tables_config_and_environment(run_dir):
    page = build_report([run_dir], title="my runs")
    n_png = len(list(run_dir.glob("*.png")))
    assert n_png >= 1 and page.count("data:image/png;base64,") == n_png
    assert "<title>my runs</title>" in page and "least_squares" in page and "normalized squared error" in page
    assert "linear_regression" in page  # the config
    for key in ("git commit", "torch", "numpy", "CPU", "CUDA"):
        assert f"<td>{key}</td>" in page
    assert 'src="http' not in page and "<link" not in page  # self-contained


def test_a_parent_directory_is_searched_and_bad_paths_are_errors(run_dir, tmp_path):
    page = build_report([run_dir.parent])
    assert str(run_dir.resolve()) in page
    with pytest.raises(ReportError, match="does not exist"):
        build_report([tmp_path / "nope"])
    with pytest.raises(ReportError, match="no run"):
        build_report([tmp_path])
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "does not exist" in res.output and not (tmp_path / "r.html").exists()


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(
    _chromium() is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it where it can",
)
def test_chromium_renders_the_page_with_every_figure_loaded(run_dir, tmp_path):
    out = write_report([run_dir], tmp_path / "report.html")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'data-figures="(\d+)/(\d+)"', dom.stdout)
    assert m, f"the page's load script did not run: {dom.stderr[-500:]}"
    loaded, total = int(m[1]), int(m[2])
    assert total == len(list(run_dir.glob("*.png"))) and loaded == total
    shot = tmp_path / "shot.png"
    subprocess.run(
        [_chromium(), *flags, "--window-size=1000,1400", f"--screenshot={shot}", out.as_uri()],
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] > 100 and img[..., :3].std() > 0.05  # not a blank page


def _wide_png(path, panels: int = 4) -> None:
    """A figure as wide as compare's four panels (5 in each at 110 dpi: 2200 px)."""
    from iclab.experiments.plots import plt

    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for i, ax in enumerate(axes):
        ax.plot([0, 1, 2], [i, i + 1, i * 2])
        ax.set_title(f"panel {i}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


@pytest.fixture(scope="module")
def everything(run_dir, tmp_path_factory):
    """A directory holding one of each thing the report shows: a run with multiple-choice, shift, surgery,
    probes and lens results; a comparison and a sweep (wide figures); reproductions old (passed) and new
    (verdict)."""
    import json
    import shutil

    root = tmp_path_factory.mktemp("everything")
    run = root / "runs" / "seed0"
    shutil.copytree(run_dir, run)
    ev = json.loads((run / "eval.json").read_text())
    (run / "eval_noisy.json").write_text(json.dumps({**ev, "shift": "noisy_y", "eval_task": "linear_regression"}))
    mc = {"file": "qa.jsonl", "n_questions": 40, "accuracy": 0.625, "accuracy_ci95": [0.47, 0.76]}
    mc.update({"accuracy_norm": 0.55, "accuracy_norm_ci95": [0.4, 0.69], "chance": 0.25, "predictions": []})
    (run / "eval_mc_qa.json").write_text(json.dumps(mc))
    (run / "surgery.json").write_text(json.dumps({"original": {"at_k": 0.31}, "variants": {"drop_0": {"at_k": 0.9}}}))
    (run / "probes.json").write_text(json.dumps({"layers": ["0", "1"], "r2_w": [0.12, 0.87]}))
    (run / "lens.json").write_text(json.dumps({"layers": ["0", "1"], "error": [0.93, 0.41], "n_points": 7}))
    cmp = root / "compare"
    cmp.mkdir()
    (cmp / "compare.json").write_text("{}")
    (cmp / "compare.md").write_text(
        "| config | error at k=6 (mean +- 95% CI) |\n|---|---|\n| tiny | 0.3400 +- n/a (1 seed) |\n"
    )
    _wide_png(cmp / "compare.png")
    sw = root / "sweep"
    sw.mkdir()
    plan = {"config": "tiny.yaml", "grid": ["training.lr=1e-3,3e-3"], "seeds": [0, 1], "target": None}
    (sw / "sweep.json").write_text(json.dumps({**plan, "overrides": [], "points": []}))
    (sw / "table.md").write_text(
        "| point | seeds done | loss |\n|---|---|---|\n| training.lr=1e-3 | 2/2 | 0.81 +- 0.1 |\n"
    )
    _wide_png(sw / "table.png", 3)
    base = {"source": "Garg et al. 2022", "claim": "c", "criterion": "k", "scale": "tiny", "seeds": 2}
    base.update({"summary": "measured", "numbers": {"x": 1.0}, "details": [], "train_wall_s": 3.0})
    for name, extra in (("old-entry", {"passed": True}), ("new-entry", {"verdict": "INCONCLUSIVE", "passed": False})):
        d = root / "reproduce" / name / "tiny"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"name": name, **base, **extra}))
    return root


SECTIONS = ("reproduce", "compare", "sweep", "evaluation", "shift", "multiple-choice", "surgery", "probes", "lens")


def test_the_report_shows_everything_a_directory_holds(everything):
    page = build_report([everything])
    for kind in SECTIONS:
        assert f"data-section='{kind}'" in page, kind
    assert "0.3400 +- n/a (1 seed)" in page and "training.lr=1e-3" in page  # compare's and the sweep's tables
    assert "<td>0.625</td>" in page and "[0.470, 0.760]" in page  # multiple choice with its interval
    assert "distribution shift: noisy_y" in page
    assert "<td>0.87</td>" in page and "<td>0.41</td>" in page  # probes and lens per layer
    assert '<span class="pass">PASS</span>' in page and '<span class="inconclusive">INCONCLUSIVE</span>' in page
    assert "2 reproduction(s): 1 PASS, 1 INCONCLUSIVE" in page or "2 reproduction(s): 1 INCONCLUSIVE, 1 PASS" in page
    assert page.count("<figure class='wide'>") == 2  # compare's and the sweep's figures span the window
    assert "click to enlarge" in page and "id='zoom'" in page


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_shows_every_section_and_wide_figures_at_the_window_width(everything, tmp_path):
    out = write_report([everything], tmp_path / "all.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1200"]
    dom = subprocess.run(
        [_chromium(), *flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for kind in SECTIONS:
        assert re.search(rf"<section data-section=\"{kind}\"", dom), kind
    m = re.search(r'data-figures="(\d+)/(\d+)"', dom)
    assert m and m[1] == m[2] and int(m[2]) >= 3
    w = re.search(r'data-wide="(\d+)/(\d+)"', dom)
    assert w, "the page's load script did not run"
    narrowest, window = int(w[1]), int(w[2])
    assert narrowest > 1200 and narrowest >= 0.85 * window  # wider than the 1200 px text column
