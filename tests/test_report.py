"""`iclab report`: one self-contained HTML page; rendered in headless Chromium where it is installed."""

import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.report import ReportError, build_report, write_report
from iclab.runs import train_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("report") / "run"
    cfg = {
        "seed": 0,
        "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
        "training": {"steps": 20, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
        "eval": {"n_prompts": 50, "batch_size": 25},
        "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
    }
    train_run(validate(cfg), d)
    return d


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
