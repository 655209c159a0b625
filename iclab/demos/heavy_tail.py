"""Heavy-tailed class imbalance (Kunstner et al. 2024, "Heavy-tailed class imbalance and why Adam outperforms
gradient descent on language models"): with Zipf-distributed classes, SGD makes progress only on the frequent
classes while Adam lowers the loss of the rare ones too.

Data: C classes with frequencies pi_k proportional to 1/k (Zipf, exponent 1); class k has a random mean mu_k
in R^d and its examples are x = mu_k + noise * N(0, I) + offset * u, with one u ~ N(0, I) shared by all
classes (uncentred features, as real inputs are: it makes the problem ill-conditioned, which caps SGD's usable
lr; with offset 0 and this easy, separable data a large SGD lr learns every class too). Model: a linear
softmax classifier (W in R^{C x d}, bias), cross-entropy. The gradient of row k scales with pi_k, so SGD's
step on a rare class is tiny; Adam divides each coordinate by its own gradient scale. Both train on the same
minibatches from the same start, each with the lr from a small grid whose overall training loss, averaged over
the recorded steps, is lowest (an lr on the edge of stability that spikes early and ends low is not picked).
The classes are cut into `buckets` groups holding about equal shares of the examples (frequent classes alone
in the first groups, the rare thousands together in the last), and the figure draws the training loss of each
group over the steps for both optimizers, as the paper does."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from iclab.demos import save_figure
from iclab.training.optim import Params, build_optimizer

SGD_LRS = [0.1, 0.3, 1.0, 3.0, 10.0]
ADAM_LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def make_data(seed: int, classes: int, dim: int, examples: int, noise: float, offset: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    freq = 1.0 / torch.arange(1, classes + 1, dtype=torch.float64)
    freq /= freq.sum()
    counts = torch.clamp((freq * examples).round().long(), min=1)  # every class present at least once
    labels = torch.repeat_interleave(torch.arange(classes), counts)
    means = torch.randn(classes, dim, generator=g)
    x = means[labels] + noise * torch.randn(len(labels), dim, generator=g)
    x += offset * torch.randn(dim, generator=g)  # a mean shared by all classes: uncentred features
    return x, labels, counts


def buckets_of(counts: torch.Tensor, n: int) -> torch.Tensor:
    """Bucket index of each class (classes sorted by frequency, already in that order): cut where the
    cumulative share of the examples crosses 1/n, 2/n, ..."""
    share = (counts.cumsum(0) - counts).double() / counts.sum()  # share of the examples before the class
    raw = torch.clamp((share * n).floor().long(), max=n - 1)
    return torch.unique(raw, return_inverse=True)[1]  # a class above 1/n alone skips indices: renumber


def train(name, lr, x, labels, classes, steps, batch, seed, record, class_bucket, n_buckets):
    g = torch.Generator().manual_seed(seed)
    W = torch.nn.Parameter(torch.zeros(classes, x.shape[1]))
    b = torch.nn.Parameter(torch.zeros(classes))
    opt = build_optimizer(name, Params([("W", W), ("b", b)]), lr, impl="for_loop")
    sample_bucket = class_bucket[labels]
    per_bucket, overall = [], []
    for step in range(steps + 1):
        if step in record:
            with torch.no_grad():
                losses = F.cross_entropy(x @ W.T + b, labels, reduction="none")
                sums = torch.zeros(n_buckets).index_add_(0, sample_bucket, losses)
                per_bucket.append((sums / torch.bincount(sample_bucket, minlength=n_buckets)).tolist())
                overall.append(float(losses.mean()))
        if step == steps:
            break
        idx = torch.randint(0, len(labels), (batch,), generator=g)
        loss = F.cross_entropy(x[idx] @ W.T + b, labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {"lr": lr, "overall": overall, "per_bucket": per_bucket}


def run(
    out,
    seed: int = 0,
    classes: int = 500,
    dim: int = 32,
    examples: int = 10000,
    noise: float = 1.0,
    offset: float = 5.0,
    steps: int = 1000,
    batch: int = 256,
    buckets: int = 10,
) -> dict:
    x, labels, counts = make_data(seed, classes, dim, examples, noise, offset)
    class_bucket = buckets_of(counts, buckets)
    n_buckets = int(class_bucket.max()) + 1
    record = sorted(set(range(0, steps + 1, max(1, steps // 25))) | {steps})
    runs = {}
    for name, grid in (("sgd", SGD_LRS), ("adam", ADAM_LRS)):
        tried = [
            train(name, lr, x, labels, classes, steps, batch, seed + 1, record, class_bucket, n_buckets) for lr in grid
        ]
        ok = [t for t in tried if math.isfinite(t["overall"][-1])]
        best = min(ok, key=lambda t: sum(t["overall"]) / len(t["overall"]))  # lowest loss averaged over the run
        best["lr_grid"] = {
            str(t["lr"]): {
                "final": t["overall"][-1],
                "mean": sum(t["overall"]) / len(t["overall"]),
                "final_rarest_group": t["per_bucket"][-1][-1],
            }
            for t in tried
        }
        runs[name] = best
    bucket_info = [
        {
            "classes": int((class_bucket == i).sum()),
            "examples": int(counts[class_bucket == i].sum()),
            "most_frequent_class_count": int(counts[class_bucket == i].max()),
            "least_frequent_class_count": int(counts[class_bucket == i].min()),
        }
        for i in range(n_buckets)
    ]
    result = {
        "demo": "heavy-tail",
        "seed": seed,
        "classes": classes,
        "dim": dim,
        "examples": int(len(labels)),
        "noise": noise,
        "offset": offset,
        "steps": steps,
        "batch": batch,
        "steps_recorded": record,
        "buckets": bucket_info,
        "class_counts": counts.tolist(),
        "runs": runs,
        "final_bucket_loss": {n: r["per_bucket"][-1] for n, r in runs.items()},
        "initial_loss": math.log(classes),
    }
    _plot(result, out / "heavy-tail.png")
    return result


def _plot(r, path):
    from iclab.plotting import plt

    nb = len(r["buckets"])
    cmap = plt.get_cmap("viridis")
    colors = [cmap(i / max(1, nb - 1)) for i in range(nb)]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6))
    counts = r["class_counts"]
    start = 0
    for i, bk in enumerate(r["buckets"]):
        ks = list(range(start + 1, start + bk["classes"] + 1))
        axes[0].loglog(ks, counts[start : start + bk["classes"]], ".", ms=3, color=colors[i])
        start += bk["classes"]
    axes[0].set_xlabel("class (sorted by frequency)")
    axes[0].set_ylabel("examples per class")
    axes[0].set_title(
        f"(a) Zipf classes: {r['classes']} classes, {r['examples']} examples,\n{nb} groups of ~equal examples (colour)",
        fontsize=9,
    )
    steps = r["steps_recorded"]
    for name, style in (("sgd", "-"), ("adam", "--")):
        run = r["runs"][name]
        label = {"sgd": "SGD", "adam": "Adam"}[name]
        axes[1].plot(steps, run["overall"], style, color="k", label=f"{label} (lr {run['lr']:g})")
    axes[1].set_title("(b) training loss, all examples", fontsize=9)
    axes[1].legend(fontsize=8)
    for ax, name, tag in ((axes[2], "sgd", "(c) SGD"), (axes[3], "adam", "(d) Adam")):
        pb = torch.tensor(r["runs"][name]["per_bucket"])
        for i in range(nb):
            ax.plot(
                steps,
                pb[:, i],
                color=colors[i],
                lw=1.5,
                label=f"group {i + 1}: {r['buckets'][i]['classes']} classes" if name == "sgd" else None,
            )
        ax.set_title(f"{tag} (lr {r['runs'][name]['lr']:g}): loss per frequency group", fontsize=9)
    axes[2].legend(fontsize=6.5, ncol=2)
    top = max(max(max(v) for v in r["runs"][n]["per_bucket"]) for n in ("sgd", "adam"))
    low = min(min(min(v) for v in r["runs"][n]["per_bucket"]) for n in ("sgd", "adam"))
    for ax in axes[1:]:
        ax.axhline(r["initial_loss"], color="grey", ls=":", lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (dotted: log C, the start)")
        ax.set_yscale("log")
        ax.set_ylim(max(low, 1e-3) * 0.8, top * 1.3)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(
        f"Heavy-tailed class imbalance: linear softmax model, d={r['dim']}, feature offset {r['offset']:g}, "
        f"batch {r['batch']}, lr tuned on a grid "
        "(group 1 = most frequent classes, darkest)",
        fontsize=11,
    )
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
