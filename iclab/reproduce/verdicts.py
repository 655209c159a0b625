"""Three-valued verdicts: a pre-registered test on per-seed values decides each claim.

An entry measures (its `check` returns per-seed values, `Verdict.per_seed`: quantity -> one value per seed,
seed i of every quantity from the runs with seed i, which share their data order and init seed) and its
`tests`, written next to its claim, decide:

- `less(a, b, margin)`: the claim is mean(a - b) < margin, paired by seed (b a quantity or a constant).
  SUPPORTED when the 95% t-interval of the paired differences lies below the margin, CONTRADICTED when it
  lies above it, INCONCLUSIVE otherwise (with the seeds that the observed spread would need).
- `greater(a, b, margin)`: the mirror image, mean(a - b) > margin.
- `equivalent(a, b, margin)`: a "no effect" claim, |mean(a - b)| < margin: SUPPORTED by TOST at level 0.05
  (the 90% interval inside +-margin), CONTRADICTED when the 95% interval lies entirely outside it.
- `log=True` tests log(a) - log(b), i.e. the ratio a / b per seed (its geometric mean against exp(margin)).
- `learned_below=x` (the in-context plateau): a seed learned under a quantity when its value is <= x; each
  such quantity's fraction of learned seeds is reported with its Wilson interval, and the comparison is made
  on the seeds that learned under all of them (the verdict says which), so a stuck seed cannot decide a claim.

Fewer than 3 usable seeds -> INCONCLUSIVE with the reason. A seed whose value is not finite (a diverged run,
or a target never reached) is counted and named in the verdict and left out of the test, never dropped
silently. An entry's verdict is CONTRADICTED when one of its tests is, SUPPORTED when all are, else
INCONCLUSIVE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from iclab import stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "SUPPORTED", "CONTRADICTED", "INCONCLUSIVE"
MIN_SEEDS = 3  # fewer values give no usable 95% t-interval (2 values: t = 12.7)
ALPHA = 0.05


@dataclass(frozen=True)
class Test:
    """A pre-registered test of one claim on per-seed values (see the module docstring)."""

    kind: str  # "less" | "greater" | "equivalent"
    a: str
    b: str | float = 0.0
    margin: float = 0.0
    log: bool = False
    learned_below: float | None = None
    learned_on: tuple[str, ...] = ()  # default: a, and b when it is a quantity
    label: str = ""  # a short name of the claim part ("beats 3-NN")

    def plateau_keys(self) -> tuple[str, ...]:
        if self.learned_below is None:
            return ()
        return self.learned_on or tuple(k for k in (self.a, self.b) if isinstance(k, str))

    def lhs(self) -> str:
        b = self.b if isinstance(self.b, str) else f"{self.b:g}"
        if self.log:
            return f"log({self.a})" if b == "1" else f"log({self.a} / {b})"
        return self.a if b == "0" else f"{self.a} - {b}"

    def describe(self) -> str:
        m = f"log {math.exp(self.margin):g}" if self.log and self.margin else f"{self.margin:g}"
        if self.kind == "equivalent":
            s = f"|mean({self.lhs()})| < {m} (TOST at {ALPHA:g}: 90% interval inside +-{m})"
        else:
            op = "<" if self.kind == "less" else ">"
            paired = ", paired by seed" if isinstance(self.b, str) else ""
            s = f"mean({self.lhs()}) {op} {m} (95% t-interval over seeds{paired})"
        if self.learned_below is not None:
            s += f", on the seeds where {' and '.join(self.plateau_keys())} <= {self.learned_below:g} (learned)"
        return (f"{self.label}: " if self.label else "") + s


def less(a, b=0.0, margin=0.0, **kw) -> Test:
    return Test("less", a, b, margin, **kw)


def greater(a, b=0.0, margin=0.0, **kw) -> Test:
    return Test("greater", a, b, margin, **kw)


def equivalent(a, b=0.0, margin=0.0, **kw) -> Test:
    if margin <= 0:
        raise ValueError(f"an equivalence test needs a positive margin, got {margin}")
    return Test("equivalent", a, b, margin, **kw)


@dataclass
class Verdict:
    """What an entry's check measured (summary, numbers, per-seed values) and, once `judge` ran, its status
    and one line per test."""

    summary: str  # one line: the numbers the claim is about
    numbers: dict = field(default_factory=dict)
    details: list[str] = field(default_factory=list)  # further lines (spreads, notes)
    per_seed: dict[str, list[float | None]] = field(default_factory=dict)
    status: str | None = None
    tests: list[dict] = field(default_factory=list)  # judge's outcome of each test

    @property
    def passed(self) -> bool:
        return self.status == SUPPORTED


# --- deciding one test ------------------------------------------------------------------------------------
def _num(v) -> float:
    return math.nan if v is None else float(v)


def _fmt(x: float, log: bool) -> str:
    return f"x{math.exp(x):.3g}" if log else f"{x:+.4g}"


def decide(test: Test, per_seed: dict) -> dict:
    """The outcome of one test: {'test', 'status', 'line', 'n', ...effect and interval}.

    Length: one decision read top to bottom: missing values, non-finite seeds, the plateau filter, then the
    test of each kind; split, the order of these checks would be hidden.
    """
    out = {
        "test": test.describe(),
        "status": INCONCLUSIVE,
        "kind": test.kind,
        "lhs": test.lhs(),
        "margin": test.margin,
        "log": test.log,
    }
    missing = [k for k in (test.a, test.b) if isinstance(k, str) and k not in per_seed]
    if missing:
        out["line"] = f"{test.lhs()}: INCONCLUSIVE, per-seed values of {', '.join(missing)} are not recorded"
        return out
    if isinstance(per_seed[test.a], dict):  # a record that kept only "mean +- half-width" (before per-seed values)
        return _decide_summary(test, per_seed, out)
    a = [_num(v) for v in per_seed[test.a]]
    b = [_num(v) for v in per_seed[test.b]] if isinstance(test.b, str) else [float(test.b)] * len(a)
    if len(a) != len(b):
        out["line"] = f"{test.lhs()}: INCONCLUSIVE, {len(a)} values of {test.a} but {len(b)} of {test.b}: not pairable"
        return out
    notes, seeds = [], list(range(len(a)))
    bad = [s for s in seeds if not (math.isfinite(a[s]) and math.isfinite(b[s]))]
    if bad:
        notes.append(f"not finite (diverged or never reached) on seed(s) {', '.join(map(str, bad))}: left out")
    if test.log:
        nonpos = [s for s in seeds if s not in bad and (a[s] <= 0 or b[s] <= 0)]
        if nonpos:
            notes.append(f"not positive on seed(s) {', '.join(map(str, nonpos))} (no ratio): left out")
        bad += nonpos
    use = [s for s in seeds if s not in bad]
    learned = {}
    if test.learned_below is not None:
        for key in test.plateau_keys():
            vals = [_num(v) for v in per_seed.get(key, [])]
            ok = [s for s, v in enumerate(vals) if math.isfinite(v) and v <= test.learned_below]
            learned[key] = {"learned": len(ok), "of": len(vals), "wilson95": stats.wilson_interval(len(ok), len(vals))}
            use = [s for s in use if s in ok]
        notes.append(
            "learned (<= "
            + f"{test.learned_below:g}): "
            + ", ".join(
                f"{k} {v['learned']}/{v['of']} [{v['wilson95'][0]:.2f}, {v['wilson95'][1]:.2f}]"
                for k, v in learned.items()
            )
            + f"; compared on the {len(use)} seed(s) that learned under all: {use}"
        )
        out["learned"] = learned
    f = math.log if test.log else (lambda x: x)
    diffs = [f(a[s]) - f(b[s]) for s in use]
    every = [f(a[s]) - f(b[s]) if s not in bad else None for s in seeds]  # the figure shows the left-out seeds too
    out.update(n=len(use), seeds=use, diffs=diffs, n_total=len(a), all_diffs=every)
    lhs = test.lhs()
    if len(diffs) < 1:
        out["line"] = f"{lhs}: INCONCLUSIVE, no usable seed; " + "; ".join(notes)
        return out
    ci = stats.t_ci(diffs, 0.95)
    out.update(effect=ci.estimate, ci95=[ci.lo, ci.hi], sd=ci.sd)
    m = test.margin
    if len(diffs) >= 2:
        sign = stats.sign_test([d - m for d in diffs])
        out["sign_test"] = {"below": sign.below, "above": sign.above, "p": sign.p}
    if len(diffs) < MIN_SEEDS:
        status = INCONCLUSIVE
        reason = f"only {len(diffs)} usable seed(s); a verdict needs at least {MIN_SEEDS}"
    elif test.kind == "equivalent":
        tost = stats.tost(diffs, m)
        out.update(p_tost=tost.p, ci90=[tost.ci90.lo, tost.ci90.hi])
        status = SUPPORTED if tost.p < ALPHA else CONTRADICTED if (ci.lo > m or ci.hi < -m) else INCONCLUSIVE
        reason = f"TOST p={tost.p:.3g}, 90% interval [{_fmt(tost.ci90.lo, test.log)}, {_fmt(tost.ci90.hi, test.log)}]"
    else:
        # strict claims: an interval that reaches the margin only from the wrong side (zero spread: an exact,
        # seed-independent value such as a parameter count or a schedule) contradicts them
        good, bad_side = (ci.hi < m, ci.lo >= m) if test.kind == "less" else (ci.lo > m, ci.hi <= m)
        status = SUPPORTED if good else CONTRADICTED if bad_side else INCONCLUSIVE
        p = stats.one_sided(diffs, m, test.kind)
        out["p_one_sided"] = p
        reason = f"one-sided p={p:.3g}"
    if status == INCONCLUSIVE and len(diffs) >= 2:
        out["seeds_needed"] = need = _needed(test, ci, m)
        if need is None:
            reason += "; no finite number of seeds would decide it at this spread"
        else:
            frac = len(use) / len(a) if a else 1.0
            reason += f"; at this spread ~{need} usable seeds would decide it"
            if test.learned_below is not None and 0 < frac < 1:
                reason += f" (~{math.ceil(need / frac)} seeds at the observed learned fraction)"
    out["status"] = status
    shown = f"{_fmt(ci.estimate, test.log)} [{_fmt(ci.lo, test.log)}, {_fmt(ci.hi, test.log)}]"
    if test.kind == "equivalent":
        op, bound = ("within a factor", f"{math.exp(m):g}") if test.log else ("within", f"+-{m:g}")
    else:
        op, bound = {"less": "<", "greater": ">"}[test.kind], _fmt(m, True) if test.log else f"{m:g}"
    out["line"] = f"{lhs} = {shown} (95% CI, n={len(diffs)}) {op} {bound}? {status}: {reason}" + (
        "; " + "; ".join(notes) if notes else ""
    )
    return out


def _decide_summary(test: Test, per_seed: dict, out: dict) -> dict:
    """A test of a quantity recorded only as its mean and 95% t half-width over n seeds, against a constant (or a
    quantity whose half-width is 0, the baselines evaluated on the same prompts for every seed): the t-interval
    and the t-test need no more than mean, spread and n. Paired tests of two varying quantities cannot be made."""
    from scipy.stats import t as student

    rec = per_seed[test.a]
    b = per_seed[test.b] if isinstance(test.b, str) else {"mean": float(test.b), "half": 0.0}
    lhs = test.lhs()
    if not isinstance(b, dict) or b.get("half", 0.0) != 0.0 or test.log or test.learned_below is not None:
        out["line"] = f"{lhs}: INCONCLUSIVE, only means were recorded (no per-seed values to pair)"
        return out
    n, mean = int(rec["n"]), float(rec["mean"]) - float(b["mean"])
    if n < MIN_SEEDS:
        out.update(n=n, line=f"{lhs}: INCONCLUSIVE, only {n} seed(s); a verdict needs at least {MIN_SEEDS}")
        return out
    sd = float(rec["half"]) * math.sqrt(n) / float(student.ppf(0.975, n - 1))
    ci = stats.Interval(mean, mean - float(rec["half"]), mean + float(rec["half"]), n, sd)
    m = test.margin
    out.update(n=n, n_total=n, effect=mean, ci95=[ci.lo, ci.hi], sd=sd, from_summary=True)
    if test.kind == "equivalent":
        h90 = float(student.ppf(0.95, n - 1)) * sd / math.sqrt(n)
        inside = -m < mean - h90 and mean + h90 < m
        status = SUPPORTED if inside else CONTRADICTED if (ci.lo > m or ci.hi < -m) else INCONCLUSIVE
    else:
        good, bad = (ci.hi < m, ci.lo >= m) if test.kind == "less" else (ci.lo > m, ci.hi <= m)
        status = SUPPORTED if good else CONTRADICTED if bad else INCONCLUSIVE
    reason = "from the recorded mean +- 95% half-width (3 decimals), no per-seed values"
    if status == INCONCLUSIVE:
        out["seeds_needed"] = need = _needed(test, ci, m)
        reason += "" if need is None else f"; at this spread ~{need} seeds would decide it"
    op = {"less": "<", "greater": ">", "equivalent": "within +-"}[test.kind]
    out.update(
        status=status,
        line=f"{lhs} = {mean:+.4g} [{ci.lo:+.4g}, {ci.hi:+.4g}] (95% CI, n={n}) {op} {m:g}? {status}: {reason}",
    )
    return out


def _needed(test: Test, ci: stats.Interval, m: float) -> int | None:
    """Seeds for 80% power at the observed mean and spread: the distance to the margin for less/greater; for an
    equivalence, to the nearer margin (one-sided, as each TOST half) or past it (to contradict)."""
    if test.kind == "equivalent":
        dist = m - abs(ci.estimate)
        return stats.seeds_needed(abs(dist), ci.sd, two_sided=dist <= 0)
    return stats.seeds_needed(ci.estimate - m, ci.sd)


def combine(statuses: list[str]) -> str:
    if not statuses:
        return INCONCLUSIVE
    if CONTRADICTED in statuses:
        return CONTRADICTED
    return SUPPORTED if all(s == SUPPORTED for s in statuses) else INCONCLUSIVE


def judge(tests: list[Test], verdict: Verdict) -> Verdict:
    """Decide every test of an entry on the verdict's per-seed values; sets status and tests."""
    verdict.tests = [decide(t, verdict.per_seed) for t in tests]
    verdict.status = combine([t["status"] for t in verdict.tests])
    if not tests:
        verdict.tests = [{"test": "none", "status": INCONCLUSIVE, "line": "no pre-registered test"}]
    return verdict
