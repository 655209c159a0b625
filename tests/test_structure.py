"""The import structure of iclab: layers that point down, no circles, modules of readable size.

Every module is read with `ast` (imports inside functions and under `if TYPE_CHECKING` count too: a
lazy import is still a dependency). The layers, bottom to top (a module may import its own layer and
the layers below it, never a layer above):

    0  errors, files, registry, config, stats, plotting      foundations
    1  models                                               trunk, heads, attention, FLOP formulas
    2  evaluation                                           pure scoring functions and baselines
    3  workloads                                            what is trained and how it is scored
    4  training                                             the trainer and its parts, optimizers
    5  runs                                                 a run directory: create, train, load, evaluate
    6  launch, experiments, sweep, compare                  multi-process launch; one engine for many runs
    7  analysis, reproduce, optbench, report, bench, demos, built on runs and experiments
       interop
    8  cli (and iclab/__main__.py)                          the command line

(evaluation is the lower half of the issue's "workloads (+evaluation)" layer: the workloads compose it,
it never imports them.) A new top-level module or package must be placed in LAYERS.

Besides, no circle between files and none between packages (iclab.X), and no module above MAX_LINES
lines unless its docstring says why in a line starting with "Length:".

Likewise no function body above MAX_FUNCTION_LINES lines unless its docstring says why ("Length:").
There are no accepted exceptions: a violation is fixed, not listed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "iclab"
MAX_LINES = 450

LAYERS = {
    **dict.fromkeys(("errors", "files", "registry", "config", "config_files", "stats", "plotting", "__init__"), 0),
    "models": 1,
    "evaluation": 2,
    "workloads": 3,
    "training": 4,
    "runs": 5,
    **dict.fromkeys(("launch", "experiments", "sweep", "compare"), 6),
    **dict.fromkeys(("analysis", "reproduce", "optbench", "report", "bench", "bench_eval", "demos", "interop"), 7),
    **dict.fromkeys(("cli", "__main__"), 8),
}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        mods[".".join(rel.parts).removesuffix(".__init__")] = p
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module a dotted import name lands in (`iclab.a.b.func` -> `iclab.a.b`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path) -> set[str]:
    """The iclab modules `mod` imports, anywhere in its file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n.split(".")[0] == "iclab" and (t := _resolve(n)) and t != mod and not mod.startswith(t + "."):
                out.add(t)  # (a package importing its own submodules, or a module its parent package, is fine)
    return out


EDGES = {m: _imports(m, p) for m, p in MODULES.items()}


def _top(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward_imports() -> list[str]:
    return sorted(
        f"up: {m} -> {t}" for m, ts in EDGES.items() for t in ts if LAYERS.get(_top(t), -1) > LAYERS.get(_top(m), -1)
    )


def circles() -> list[str]:
    # a package's __init__ importing its own submodules is not a file circle
    files = {
        m: {t for t in ts if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
        for m, ts in EDGES.items()
    }
    packages: dict[str, set[str]] = {}
    for m, ts in files.items():
        for t in ts:
            if _top(m) != _top(t):
                packages.setdefault(f"iclab.{_top(m)}", set()).add(f"iclab.{_top(t)}")
    return [f"file circle: {' -> '.join(c)}" for c in _cycles(files)] + [
        f"package circle: {' <-> '.join(c)}" for c in _cycles(packages)
    ]


def long_modules() -> list[str]:
    out = []
    for p in MODULES.values():
        n = len(p.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(p.read_text())) or ""
        if n > MAX_LINES and not re.search(r"^\s*Length:\s*\S", doc, re.M):
            out.append(f"long: {p.relative_to(ROOT.parent)}")
    return sorted(out)


def test_every_top_level_module_has_a_layer():
    missing = sorted({_top(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"place these in LAYERS (tests/test_structure.py): {missing}"


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    """The ast walk finds an import inside a function, a relative import and an attribute import."""
    src = tmp_path / "m.py"
    src.write_text(
        "def f():\n    from iclab.runs import load_run_config\nfrom . import stats\nimport iclab.training.device\n"
    )
    assert _imports("iclab.fake", src) == {"iclab.runs", "iclab.stats", "iclab.training.device"}


def test_imports_point_down():
    bad = [v for v in upward_imports()]
    assert not bad, "imports pointing up the layers:\n" + "\n".join(bad)


def test_no_circles():
    bad = [c for c in circles()]
    assert not bad, "import circles:\n" + "\n".join(bad)


def test_modules_are_short_or_say_why():
    bad = [m for m in long_modules()]
    assert not bad, f"modules above {MAX_LINES} lines without a 'Length:' line in their docstring:\n" + "\n".join(bad)


MAX_FUNCTION_LINES = 60


def long_functions() -> list[str]:
    """Functions whose body (after the docstring) runs past MAX_FUNCTION_LINES lines, unless their docstring
    says why in a line starting with "Length:"."""
    out = []
    for p in MODULES.values():
        for n in ast.walk(ast.parse(p.read_text())):
            if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(n) or ""
            body = n.body[1:] if doc else n.body
            if body and n.end_lineno - body[0].lineno + 1 > MAX_FUNCTION_LINES:
                if not re.search(r"^\s*Length:\s*\S", doc, re.M):
                    out.append(f"long function: {p.relative_to(ROOT.parent)}:{n.lineno} {n.name}")
    return sorted(out)


def test_functions_are_short_or_say_why():
    bad = long_functions()
    assert not bad, f"functions above {MAX_FUNCTION_LINES} lines without a 'Length:' line:\n" + "\n".join(bad)
