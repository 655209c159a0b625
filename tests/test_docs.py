"""The documentation cannot drift from the code: the config reference is regenerated and compared, every
`iclab ...` command line in README.md and docs/ names a real subcommand and only options it has, and the
short ones run."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from iclab.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md")),
    *(ROOT / "docs" / "reference").glob("*.md"),
]
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _command_lines() -> list[tuple[str, str]]:
    """(page, command line) for every line of a fenced code block that runs `iclab`."""
    out = []
    for page in PAGES:
        fenced = False
        for line in page.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            text = line.strip()
            if text.startswith("$ "):
                text = text[2:]
            if fenced and text.startswith("iclab "):
                out.append((page.relative_to(ROOT).as_posix(), text.split("  #")[0].split(" # ")[0]))
    return out


COMMANDS = _command_lines()
CLI = typer.main.get_command(app)


def _options(cmd) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        names.update(o for o in [*p.opts, *p.secondary_opts] if o.startswith("--"))
    return names


def test_the_docs_show_commands():
    assert len(COMMANDS) > 40, "the command-line examples were not found in README.md and docs/"


@pytest.mark.parametrize("page, line", COMMANDS, ids=[f"{p}:{i}" for i, (p, _) in enumerate(COMMANDS)])
def test_every_documented_command_names_a_real_subcommand_and_real_options(page, line):
    words = line.split()
    name = words[1]
    if name.startswith("-"):  # iclab --version / --help
        return
    assert name in CLI.commands, f"{page}: `{line}`: iclab has no command {name!r}"
    cmd = CLI.commands[name]
    if hasattr(cmd, "commands") and len(words) > 2 and words[2] in cmd.commands:  # a group: data prepare, ...
        cmd = cmd.commands[words[2]]
    unknown = sorted(set(OPTION.findall(line)) - _options(cmd))
    assert not unknown, f"{page}: `{line}`: iclab {name} has no option(s) {unknown}"


def _iclab(args: list[str], monkeypatch) -> None:
    """`iclab ARGS` in this process, from the repository root as the docs run it (the console entry itself:
    test_the_console_entry_runs)."""
    monkeypatch.chdir(ROOT)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, f"`iclab {' '.join(args)}`: {r.output[-2000:]} {r.exception!r}"


def test_the_config_reference_is_up_to_date(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sys, "argv", ["config_reference.py", "--check"])
    assert script.main() == 0, capsys.readouterr().err


def test_the_console_entry_runs():
    """`python -m iclab` as a process (the other documented commands run in this process)."""
    r = subprocess.run([sys.executable, "-m", "iclab", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout, r.stderr


@pytest.mark.parametrize("args", [["list", "tasks"], ["list", "optimizers"], ["--help"]])
def test_short_documented_commands_run(args, monkeypatch):
    _iclab(args, monkeypatch)


def test_a_documented_curriculum_command_runs(tmp_path, monkeypatch):
    line = next(line for _, line in COMMANDS if line.startswith("iclab curriculum configs/"))
    words = [w for w in line.split()[1:] if not w.startswith("[")]
    _iclab([*words[:2], "--out", str(tmp_path / "c.png")], monkeypatch)
    assert (tmp_path / "c.png").stat().st_size > 1000


QUICKSTART_LINES = sorted(
    {
        line
        for _, line in COMMANDS
        if line.startswith("iclab train configs/quickstart.yaml")
        and "\\" not in line
        and "[" not in line
        and "--nproc" not in line
        and "--resume" not in line
    }
)


@pytest.mark.parametrize(
    "line",
    [pytest.param(line, marks=[pytest.mark.slow] if i >= 2 else []) for i, line in enumerate(QUICKSTART_LINES)],
)
def test_documented_quickstart_trainings_run_on_tiny_settings(line, tmp_path, monkeypatch):
    """Each one-line `iclab train configs/quickstart.yaml ...` of the docs, cut to 3 steps (the first two in the
    default suite, all of them with -m slow)."""
    words = line.split()[1:]
    if "--out" in words:
        j = words.index("--out")
        words = words[:j] + words[j + 2 :]
    tiny = ["training.steps=3", "training.warmup_steps=1", "logging.log_every=1", "logging.progress=false"]
    _iclab([*words, *tiny, "--no-eval", "--out", str(tmp_path / "run")], monkeypatch)
    assert (tmp_path / "run" / "model.safetensors").is_file()
