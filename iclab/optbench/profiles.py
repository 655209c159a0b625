"""AlgoPerf's scoring (Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms",
arXiv:2306.07179, section 4.5; the AlgoPerf rules): performance ratios, performance profiles and the
benchmark score. Pure functions of a table of times; `inf` means "did not reach the target".

    t[s, w]     time of submission s to reach the target of workload w (steps or seconds; inf: never)
    r[s, w]     = t[s, w] / min_s' t[s', w]          the performance ratio (inf if t is inf, or if no
                                                    submission reached w's target)
    rho_s(tau)  = (1 / |W|) * #{w : r[s, w] <= tau}  the performance profile, a step function of tau >= 1
    score_s     = (1 / (r_max - 1)) * integral_1^r_max rho_s(tau) dtau   (r_max = 4 in AlgoPerf)

Ratios above r_max (which AlgoPerf's scoring caps) change neither rho on [1, r_max] nor the score.
The integral is exact: rho_s is a right-continuous step function, so the area is a sum over the sorted
ratios: each workload with r <= r_max contributes (r_max - max(r, 1)) / |W|.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

R_MAX = 4.0  # AlgoPerf's upper limit of the integral


def performance_ratios(times: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """times[s][w] -> ratios[s][w] = t / min over submissions (inf where the target was not reached by s, or by
    anyone). Every submission must have a time for the same workloads."""
    subs = list(times)
    if not subs:
        return {}
    workloads = list(times[subs[0]])
    for s in subs:
        if set(times[s]) != set(workloads):
            raise ValueError(f"submission {s!r} has times for {sorted(times[s])}, expected {sorted(workloads)}")
    out: dict[str, dict[str, float]] = {s: {} for s in subs}
    for w in workloads:
        vals = [float(times[s][w]) for s in subs]
        if any(math.isnan(v) or v < 0 for v in vals):
            raise ValueError(f"workload {w!r}: times must be >= 0 or inf, got {vals}")
        best = min(vals)
        for s, v in zip(subs, vals):
            if math.isinf(best) or math.isinf(v):
                out[s][w] = math.inf
            elif best == 0:
                out[s][w] = 1.0 if v == 0 else math.inf
            else:
                out[s][w] = v / best
    return out


def profile(ratios: Mapping[str, float], taus) -> list[float]:
    """rho(tau) for each tau: the share of workloads whose ratio is <= tau."""
    r = list(ratios.values())
    return [sum(x <= t for x in r) / len(r) for t in taus]


def score(ratios: Mapping[str, float], r_max: float = R_MAX) -> float:
    """The area under rho on [1, r_max], divided by (r_max - 1): in [0, 1], 1 = fastest on every workload."""
    if r_max <= 1:
        raise ValueError(f"r_max={r_max} must be > 1")
    r = list(ratios.values())
    return sum(r_max - max(x, 1.0) for x in r if x <= r_max) / (len(r) * (r_max - 1))


def scores(times: Mapping[str, Mapping[str, float]], r_max: float = R_MAX) -> dict[str, float]:
    """Benchmark score of every submission."""
    return {s: score(r, r_max) for s, r in performance_ratios(times).items()}
