"""Garg et al. 2022, Fig. 4: the linear-regression model under distribution shifts at test time."""

import math

import matplotlib.pyplot as plt

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import PLATEAU, Entry, Verdict, fmt_ci, k2d, less, mean_ci, per_seed, values_at
from iclab.reproduce.plots import error_vs_examples, evals, save

ROBUST = ("skewed", "half_subspace", "label_noise", "orthants", "orthogonal_query", "overlapping_query")
REPORTED = ("scaled_x", "scaled_y")
MARGIN = 0.1
# seeds whose model left the in-context plateau on the training distribution (error at k=2d): a seed that never
# learned linear regression says nothing about its robustness (20 tiny seeds: 3 stayed on the plateau)
LEARNED = {"learned_below": PLATEAU, "learned_on": ("in distribution: model",)}


def evaluate(run):
    from iclab.runs import evaluate_run

    for shift in ROBUST + REPORTED:
        if not (run.dir / f"eval_{shift}.json").is_file():
            evaluate_run(run.dir, shift=shift, write_figure=False)


def _position(ev) -> int:
    """k = 2d, or the last position the shift defines (orthogonal queries exist only below d)."""
    curve = ev["model"]["mean"]
    k = min(2 * ev["n_dims"], len(curve) - 1)
    while curve[k] is None or ev["baselines"]["least_squares"]["mean"][k] is None:
        k -= 1
    return k


def _in_distribution(runs) -> tuple[int, list[float]]:
    """k=2d and each seed's error there on the training distribution (below PLATEAU: the seed learned)."""
    plain = evals(runs["model"])
    k = k2d(plain[0])
    return k, values_at(plain, k)


def check(runs) -> Verdict:
    """Each shift's error at its position, model and least squares, per seed; the rows give means over the seeds
    that learned the training distribution (the ones the tests compare), the stuck seeds named apart."""
    k_in, inside = _in_distribution(runs)
    ok = [s for s, v in enumerate(inside) if v <= PLATEAU]
    stuck = [s for s in range(len(inside)) if s not in ok]
    rows, gaps, numbers, values = [], {}, {}, {"in distribution: model": inside}
    for shift in ROBUST + REPORTED:
        evs = evals(runs["model"], f"eval_{shift}.json")
        k = _position(evs[0])
        model = [ev["model"]["mean"][k] for ev in evs]
        ls = [ev["baselines"]["least_squares"]["mean"][k] for ev in evs]
        values[f"{shift}: model"], values[f"{shift}: least squares"] = model, ls
        m, b = [model[s] for s in ok], [ls[s] for s in ok]
        gap = mean_ci(m)[0] - mean_ci(b)[0] if ok else math.nan
        numbers[f"{shift}/model"], numbers[f"{shift}/least_squares"] = mean_ci(model)[0], mean_ci(ls)[0]
        if shift in ROBUST:
            gaps[shift] = gap
        rows.append(
            f"{shift} (k={k}): model {fmt_ci(m)}, least squares {fmt_ci(b)}, gap {gap:+.3f}"
            + ("" if shift in ROBUST else " (reported only)")
        )
    rows.append(f"in distribution (k={k_in}) per seed {per_seed(inside)}")
    failed = [s for s, g in gaps.items() if not (g <= MARGIN)]
    summary = (
        f"{len(ok)}/{len(inside)} seeds left the plateau on the training distribution"
        + (f" (not: {', '.join(map(str, stuck))})" if stuck else "")
        + f"; on those, mean gap to least squares within {MARGIN} under {len(gaps) - len(failed)} of {len(gaps)} "
        "shifts" + (f"; not under {', '.join(failed)}" if failed else "")
    )
    return Verdict(summary, numbers, rows, values)


def figure(runs, path):
    """One panel per shift: mean and band over the seeds that learned the training distribution (the ones the
    tests compare), each of them thin; the seeds still on the plateau dashed gray, outside the mean."""
    shifts = ROBUST + REPORTED
    cols = 4
    fig, axes = plt.subplots(
        math.ceil(len(shifts) / cols), cols, figsize=(4 * cols, 3.2 * math.ceil(len(shifts) / cols))
    )
    ok = [v <= PLATEAU for v in _in_distribution(runs)[1]]
    label = "transformer, learned" if not all(ok) else "transformer"
    for ax, shift in zip(axes.flat, shifts):
        evs = evals(runs["model"], f"eval_{shift}.json")
        learned = [ev for ev, good in zip(evs, ok) if good] or evs
        error_vs_examples(ax, {label: learned}, ["least_squares", "averaging"], shift, ylim=None)
        stuck = [ev for ev, good in zip(evs, ok) if not good]
        for i, ev in enumerate(stuck):
            curve = ev["model"]["mean"]
            xs = [k for k, v in enumerate(curve) if v is not None]
            lab = f"on the plateau ({len(stuck)} seeds, left out)" if i == 0 else None
            ax.plot(xs, [curve[k] for k in xs], color="0.5", ls="--", lw=0.8, label=lab)
        if stuck:
            ax.legend(fontsize=7)
        top = max(v for ev in learned for v in ev["model"]["mean"] if v is not None)
        ax.set_ylim(0, max(1.5, 1.1 * top))
    for ax in list(axes.flat)[len(shifts) :]:
        ax.axis("off")
    fig.suptitle("linear regression under distribution shifts (Garg et al. Fig. 4)")
    save(fig, path)


REPRODUCTIONS.register("garg-shifts", help="linear regression under distribution shifts")(
    Entry(
        name="garg-shifts",
        source="Garg et al. 2022, Fig. 4",
        claim="The in-context linear-regression model stays close to least squares under shifts of the prompt "
        "distribution "
        "(skewed covariance, a d/2-dimensional subspace, label noise, prompt and query in opposite orthants, queries "
        "orthogonal to or repeating the prompt); scaling x or w up degrades it.",
        criterion=f"under each of {', '.join(ROBUST)} the model's error at k=2d (orthogonal queries: the last "
        f"position below "
        f"d) is at most {MARGIN} above least squares' (paired by seed, on the seeds whose model left the plateau "
        f"on the training distribution: error at k=2d below {PLATEAU}); scaled_x and scaled_y are reported",
        tests=[less(f"{s}: model", f"{s}: least squares", MARGIN, **LEARNED) for s in ROBUST],
        configs={
            "tiny": {"model": "configs/garg/tiny/linear_regression.yaml"},
            "full": {"model": "configs/garg/linear_regression.yaml"},
        },
        check=check,
        figure=figure,
        evaluate=evaluate,
        max_seeds={"tiny": 20},  # 5 seeds left label noise undecided (~15 needed at its spread)
        minutes={"tiny": 7},
    )
)
