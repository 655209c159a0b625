"""Verdicts from stored results: what result.json holds of a verdict, deciding it again from its per-seed
section without the runs (`iclab reproduce NAME --recheck`), and the Markdown table of all results.

A result.json is found as OUT/<name>/<scale>/result.json (what `iclab reproduce` writes) or OUT/<name>/result.json
(results/reproduce/ in the repository). Re-deciding reads only `per_seed`; the entry's current tests decide, so a
test changed after the runs is applied to the same measurements.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from iclab.errors import IclabError
from iclab.files import write_json
from iclab.reproduce.verdicts import Verdict, judge


class RecheckError(IclabError, ValueError):
    pass


def result_fields(entry, verdict: Verdict) -> dict:
    """The verdict's part of result.json."""
    return {
        "verdict": verdict.status,
        "summary": verdict.summary,
        "tests": verdict.tests,
        "per_seed": {k: _finite_or_none(v) for k, v in verdict.per_seed.items()},
        "numbers": verdict.numbers,
        "details": verdict.details,
    }


def _finite_or_none(values):
    """JSON has no NaN: a non-finite per-seed value (diverged, never reached) is stored as null."""
    if isinstance(values, dict):
        return values
    return [v if v is None or math.isfinite(v) else None for v in values]


def find_result(out: Path, name: str, scale: str) -> Path:
    for path in (Path(out) / name / scale / "result.json", Path(out) / name / "result.json"):
        if path.is_file():
            return path
    raise RecheckError(f"no result.json of '{name}' under {out}/{name}/[{scale}/]: run `iclab reproduce {name}` first")


def recheck(name: str, out: Path, scale: str = "tiny", figure: bool = True) -> dict:
    """Decide an entry's verdict again from the per-seed values in its result.json; rewrites the verdict fields
    (and verdict.png beside it) and returns the result. Nothing is written when the record cannot be read."""
    from iclab.registry import REPRODUCTIONS

    entry = REPRODUCTIONS.get(name)
    if not entry.built:
        raise RecheckError(f"reproduction '{name}' is not built yet ({entry.issue}): nothing to recheck")
    path = find_result(out, name, scale)
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecheckError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(result.get("per_seed"), dict):
        raise RecheckError(f"{path} has no per_seed section (written before verdicts were per seed): rerun `{name}`")
    verdict = Verdict(
        result.get("summary", ""), result.get("numbers", {}), result.get("details", []), result["per_seed"]
    )
    judge(entry.tests, verdict)
    fields = result_fields(entry, verdict)
    result.pop("passed", None)
    result.update(fields)
    write_json(path, result)
    if figure:
        from iclab.reproduce.plots import verdict_figure

        verdict_figure(result, path.parent / "verdict.png")
    return result


def next_seeds(result: dict, most: int) -> int | None:
    """Adaptive seeds: how many seeds to run next for an INCONCLUSIVE result (None: stop). The largest number an
    undecided test asks for at its observed spread (scaled up by the fraction of seeds it could use, where the
    plateau left some out), at least one more than now, at most `most`; None when decided, at the maximum, or
    when no finite number of seeds would decide a test."""
    n = int(result["seeds"])
    if result.get("verdict") != "INCONCLUSIVE" or n >= most:
        return None
    want = n + 1
    for t in result.get("tests", []):
        if t["status"] != "INCONCLUSIVE":
            continue
        if "seeds_needed" in t and t["seeds_needed"] is None:
            return None  # this test cannot be decided by more seeds at its spread
        need = t.get("seeds_needed") or n + 2  # too few usable seeds for an estimate: two more
        used = t.get("n") or 0
        want = max(want, math.ceil(need * n / used) if used else need)
    return min(want, most)


def _row_tests(r: dict) -> str:
    parts = []
    for t in r.get("tests", []):
        short = {"SUPPORTED": "S", "CONTRADICTED": "C", "INCONCLUSIVE": "I"}[t["status"]]
        if "ci95" not in t:  # nothing to estimate: the line says why ("... are not recorded")
            line = t["line"]
            why = (
                "not recorded"
                if "not recorded" in line
                else "only means recorded"
                if "only means" in line
                else f"0 of {t.get('n_total', '?')} seeds usable"
                if "no usable seed" in line
                else "-"
            )
            parts.append(f"{t.get('lhs', t['test'])}: {why} **{short}**")
            continue
        show = (lambda x: f"x{math.exp(x):.3g}") if t["log"] else (lambda x: f"{x:+.3g}")
        op = {"less": "<", "greater": ">", "equivalent": "within +-"}[t["kind"]]
        bound = show(t["margin"]) if t["log"] else f"{t['margin']:g}"
        lhs = f"{t['lhs']} {op} {bound}:"
        parts.append(f"{lhs} {show(t['effect'])} [{show(t['ci95'][0])}, {show(t['ci95'][1])}] (n={t['n']}) **{short}**")
    return "<br>".join(parts)


def _learned(r: dict) -> str:
    seen = {}
    for t in r.get("tests", []):
        for k, v in t.get("learned", {}).items():
            seen[k] = f"{k} {v['learned']}/{v['of']} [{v['wilson95'][0]:.2f}, {v['wilson95'][1]:.2f}]"
    return "<br>".join(seen.values()) or "-"


def summary_table(out: Path) -> str:
    """A Markdown table of every result under OUT: verdict, each test's effect with its 95% interval (S/C/I:
    supported, contradicted, inconclusive), the fraction of seeds that learned, seeds and run time."""
    paths = sorted(set(Path(out).glob("*/*/result.json")) | set(Path(out).glob("*/result.json")))
    rows = []
    for path in paths:
        r = json.loads(path.read_text())
        verdict = r.get("verdict") or ("PASS" if r.get("passed") else "FAIL")  # a record from before the tests
        rows.append(
            f"| {r['name']} | {r['scale']} | {r['seeds']} | **{verdict}** | {_row_tests(r)} | {_learned(r)} | "
            f"{r['train_wall_s'] / 60:.1f} |"
        )
    if not rows:
        raise RecheckError(
            f"no result.json under {out}/<entry>/[<scale>/]: run `iclab reproduce NAME --out {out}` first"
        )
    return (
        "| entry | scale | seeds | verdict | tests: effect [95% CI] (usable seeds) | learned (Wilson 95%) "
        "| run time (min) |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
