"""One-off: add a `per_seed` section to the result.json files written before verdicts were decided per seed.

The runs of those results are not kept (runs/ is not in the repository), so the per-seed values come from what
each result.json printed: its `numbers` (full precision where they were lists per seed), its `details` lines
("... per seed [0.405, 0.017, ...]", 3 decimals), and, for yang-flat, the per-seed values quoted in this folder's
README ("0.022 -> 0.045, ..."). Baselines are evaluated on the same prompts for every seed (their recorded
interval is 0), so a baseline's per-seed values are its mean repeated. A quantity recorded only as
"mean +- half-width" is kept as {"mean", "half", "n"} (tests against a constant can use it); one not recorded
at all is left out, and its tests say so. Each file gets `per_seed_source` saying which is which.

    python results/reproduce/recover_per_seed.py            # writes per_seed into results/reproduce/*/result.json
    python -m iclab reproduce --all --recheck --out results/reproduce
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NUM = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def listed(lines: list[str], prefix: str) -> list[float | None]:
    """The bracketed list after `prefix` in the first details line that starts with it ('never' -> None)."""
    for ln in lines:
        if ln.startswith(prefix):
            inner = ln[len(prefix) :].split("[", 1)[1].split("]", 1)[0]
            return [None if x.strip() == "never" else float(x) for x in inner.split(",")]
    raise KeyError(prefix)


def summary_of(text: str, label: str, n: int) -> dict:
    """{"mean", "half", "n"} of "label M +- H" in a printed line."""
    m = re.search(re.escape(label) + rf" ({NUM}) \+- ({NUM})", text)
    if m is None:
        raise KeyError(label)
    return {"mean": float(m.group(1)), "half": float(m.group(2)), "n": n}


def const(x: float, n: int) -> list[float]:
    return [float(x)] * n


def recover(r: dict) -> tuple[dict, str]:
    name, n, num, det, summ = r["name"], r["seeds"], r["numbers"], r["details"], r["summary"]
    printed = "per-seed values from the printed details (3 decimals); baselines: their mean, the same every seed"
    if name == "garg-linear":
        return {"model": listed(det, "model per seed"), "least squares": const(num["least_squares"], n),
                "3-NN": const(num["knn"], n)}, printed  # fmt: skip
    if name == "garg-memorization":
        return {"model on fresh w": listed(det, "model on fresh w per seed"),
                "least squares": const(num["least_squares"], n),
                "memorization": const(num["memorization"], n)}, printed  # fmt: skip
    if name == "garg-relu":
        return {"model": listed(det, "model per seed"), "2-layer net by GD": const(num["relu_net_gd"], n),
                "least squares": const(num["least_squares"], n)}, printed  # fmt: skip
    if name == "garg-trees":
        return {"model": listed(det, "model per seed"), "XGBoost": const(num["xgboost"], n),
                "greedy tree": const(num["decision_tree"], n)}, printed  # fmt: skip
    if name == "garg-sparse":
        return {
            "model at d/2": listed(det, f"model at k={num['k_small']} per seed"),
            "least squares at d/2": const(num["least_squares_small"], n),
            "LASSO at d/2": const(num["lasso_small"], n),
            "model at 2d": listed(det, f"model at k={num['k']} per seed"),
            "LASSO at 2d": const(num["lasso"], n),
        }, printed
    if name == "garg-curriculum":
        budget = 1200  # configs/garg/tiny/curriculum_{on,off}.yaml: training.steps
        on, off = listed(det, "with curriculum, per seed:"), listed(det, "without, per seed:")
        fill = lambda xs: [budget if x is None else x for x in xs]  # noqa: E731
        return {"steps with curriculum": fill(on), "steps without": fill(off)}, (
            f"steps per seed from the printed details; 'never' counts as the budget {budget}"
        )
    if name == "garg-shifts":
        out = {}
        for ln in det:
            shift = ln.split(" ", 1)[0]
            out[f"{shift}: model"] = summary_of(ln, "model", n)
            out[f"{shift}: least squares"] = summary_of(ln, "least squares", n)
        return out, "only 'mean +- 95% half-width' per shift was recorded (no per-seed values)"
    if name == "seed000-curriculum-shapes":
        loops = int(num["log2_max_loops"])
        model_loops = int(re.search(r"log2 reaches \d+ of (\d+) loops", summ).group(1))
        return {"log2 most loops": const(loops, n), "model loops": const(model_loops, n)}, (
            "only means were recorded: the loop schedule (the same every seed) is recovered, the errors are not"
        )
    if name == "seed000-dropping":
        out = {f"{lab} at twice the length": listed(det, f"{lab} at k={num['k_long']} per seed")
               for lab in ("no dropping", "d=1, k=5", "d=100, k=5")}  # fmt: skip
        out["d=100, k=5 at 2d"] = summary_of(summ, "d=100", n)
        return out, "errors at twice the length per seed from the details; at 2d only means; speed-up one median"
    if name == "seed000-pos-norm":
        return {}, "only means were recorded"
    if name == "seed000-two-blocks":
        return {"2 blocks after b/2": listed(det, "2 blocks at b/2 per seed")}, (
            "2 blocks per seed from the details; the 1-block values were recorded only as a mean"
        )
    if name == "seed001-reuse":
        return {"6 layers": listed(det, "6 layers per seed"), "3 layers x 2": listed(det, "3 layers x 2 per seed")}, (
            printed
        )
    if name == "seed001-surgery":
        reuse = json.loads((HERE / "seed001-reuse" / "result.json").read_text())
        six = listed(reuse["details"], "6 layers per seed")
        assert math.isclose(sum(six) / len(six), num["original"], abs_tol=5e-4)  # the same runs as seed001-reuse
        out = {"trained order": six}
        for ln in det:  # "duplicate:0: 0.488 +- 0.392 (per seed [0.767, ...])"
            out[ln.split(": ", 1)[0]] = _per_seed_in(ln)
        return out, "per seed from the details; trained order: seed001-reuse's 6-layer values (the same runs)"
    if name == "seed002-reflex":
        return {lab: listed(det, f"{lab} per seed") for lab in ("nanoGPT 6L", "Reflex 6L 4-2-2", "Reflex 6L 5-2-1")}, (
            printed
        )
    if name == "seed004-double-descent":
        out = {}
        for key in ("width_sweep", "sample_sweep"):
            s = key.split("_")[0]
            out[f"{s} peak / threshold"] = [c["peak_at"] / c["threshold"] for c in num[key]]
            out[f"{s} peak / smallest"] = [c["peak_over_start"] for c in num[key]]
            out[f"{s} peak / largest"] = [c["peak_over_end"] for c in num[key]]
        return out, "per seed from numbers (full precision)"
    if name == "seed004-grokking":
        d = num["grokked_at"] / num["memorized_at"] if num["grokked_at"] else math.nan
        return {"held-out step / train step": [d],
                "no weight decay: final held-out accuracy": [num["no_wd_final_heldout"]]}, "seed 0 from numbers"  # fmt: skip
    if name == "seed004-grokking-fraction":
        out = {f"steps at {f}": [num[f]["grokked_at"] if num[f]["grokked_at"] is not None else math.nan] for f in num}
        out["fractions that generalize"] = [sum(num[f]["grokked_at"] is not None for f in num)]
        return out, "seed 0 from numbers; NaN: not within the budget"
    if name == "seed004-heavy-tail":
        init = math.log(500)  # details: "initial loss ln 500 = 6.21"
        assert "initial loss ln 500" in " ".join(det)
        return {
            "SGD frequent / ln C": [v / init for v in num["frequent"]["sgd"]],
            "Adam frequent / ln C": [v / init for v in num["frequent"]["adam"]],
            "SGD rarest": num["rarest"]["sgd"],
            "Adam rarest": num["rarest"]["adam"],
        }, "per seed from numbers (full precision)"
    if name == "seed004-init":
        out = {}
        for d in (20, 50):
            out[f"depth {d} Kaiming"] = num[f"depth{d}"]["kaiming"]
            out[f"depth {d} naive"] = num[f"depth{d}"]["naive(0.01)"]
        return out, "per seed from numbers (full precision)"
    if name == "yang-flat":
        text = (HERE / "README.md").read_text()
        pairs = re.findall(rf"({NUM}) -> ({NUM})", text.split("**yang-flat**", 1)[1].split("- **", 1)[0])
        assert len(pairs) == n, pairs
        return {"at b": [float(a) for a, _ in pairs], "at max loops": [float(b) for _, b in pairs]}, (
            "per seed at b and at 100 loops as quoted in this README (3 decimals); the result.json kept means only"
        )
    if name == "yang-looped":
        layers = int(re.search(r"standard \((\d+) layers\)", summ).group(1))
        return {
            "looped": listed(det, "looped per seed"),
            "standard": listed(det, "standard per seed"),
            "parameter ratio x layers": const(num["param_ratio"] * layers, n),
        }, printed
    raise KeyError(name)


def _per_seed_in(line: str) -> list[float]:
    return [float(x) for x in line.rsplit("[", 1)[1].split("]", 1)[0].split(",")]


def main() -> int:
    for path in sorted(HERE.glob("*/result.json")):
        r = json.loads(path.read_text())
        if "per_seed" in r:
            print(f"{path.parent.name}: has per_seed already")
            continue
        per_seed, source = recover(r)
        r["per_seed"], r["per_seed_source"] = per_seed, source
        r["old_verdict"] = "PASS" if r.get("passed") else "FAIL"
        path.write_text(json.dumps(r, indent=1))
        print(f"{path.parent.name}: {len(per_seed)} quantities ({source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
