"""Paired differences against a reference: `iclab compare --reference NAME` and `iclab sweep --reference POINT`.

Runs of one seed share their data order and init seed across configs (or grid points), so a config is
compared with the reference on the per-seed differences (config - reference, on the seeds both finished):
the mean difference with its 95% t-interval, the two-sided paired t-test p-value and the exact sign test
(iclab/stats.py). With one common seed there is no interval ("n/a (1 seed)").
"""

from __future__ import annotations

import math

from iclab import stats
from iclab.experiments.errors import ExperimentError


def check_reference(reference: str | None, names: list[str]) -> None:
    """Refuse a reference that is not one of the compared names (before any run starts)."""
    if reference is not None and reference not in names:
        raise ExperimentError(f"--reference {reference!r} is not one of the compared names: {', '.join(names)}")


def vs_reference(values: dict[str, dict[int, float]], reference: str) -> dict[str, dict | None]:
    """For each name: the paired difference to `reference` over their common seeds (None for the reference
    itself). `values`: name -> {seed: value}."""
    ref = values[reference]
    out: dict[str, dict | None] = {}
    for name, vals in values.items():
        if name == reference:
            out[name] = None
            continue
        common = sorted(set(vals) & set(ref))
        a = [float(vals[s]) for s in common]
        b = [float(ref[s]) for s in common]
        if not common:
            out[name] = dict(reference=reference, n=0, diff=None, lo=None, hi=None, p=None, sign_p=None)
            continue
        pr = stats.paired(a, b)
        one = len(common) < 2
        out[name] = {
            "reference": reference,
            "seeds": common,
            "n": len(common),
            "diff": pr.diff.estimate,
            "lo": None if one else pr.diff.lo,
            "hi": None if one else pr.diff.hi,
            "p": None if one or math.isnan(pr.p) else pr.p,
            "sign_p": pr.sign.p,
        }
    return out


def reference_text(d: dict | None, digits: int = 4) -> tuple[str, str]:
    """(difference [95% CI], p) cells of a table; the reference itself reads "reference"."""
    if d is None:
        return "reference", "-"
    if d["diff"] is None:
        return "no common seed", "-"
    if d["lo"] is None:
        return f"{d['diff']:+.{digits}g} [n/a (1 seed)]", "-"
    p = "-" if d["p"] is None else f"{d['p']:.3g}"
    return f"{d['diff']:+.{digits}g} [{d['lo']:+.{digits}g}, {d['hi']:+.{digits}g}]", p
