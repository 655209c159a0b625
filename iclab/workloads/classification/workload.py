"""Classification of a fixed dataset by a feed-forward network: the digits MLP and logistic regression.

`task.name: classification`. The dataset (`task.options.dataset`):

    digits      scikit-learn's bundled `load_digits` (1,797 8x8 images, 10 classes; no download), pixels / 16
    synthetic   logistic regression data: n_samples points x ~ N(0, diag(s_1^2 .. s_d^2)) in d = n_features
                dimensions with scales s_i log-spaced from 1 down to 1/sqrt(condition) (an ill-conditioned
                problem), labels y ~ Bernoulli(sigmoid(w* . x)) with w* ~ N(0, I) rescaled so that w* . x has
                standard deviation `logit_scale` (a noisy, not separable, problem). Drawn once on the CPU from
                data_seed.

The split: a permutation seeded by split_seed; the last round(val_fraction * N) examples are the
validation set (fixed, disjoint), the rest the training set. Features are standardized with the training
set's mean and std when `standardize` (digits: off, the pixels are already in [0, 1]).

The model is built here, not from the `model` section (which this task ignores): `hidden: [h1, h2, ...]`
gives an MLP  read_in (d -> h1), blocks.i (h_i -> h_{i+1}), read_out (h_last -> classes), with
`activation` between layers; `hidden: []` is logistic (softmax) regression, read_out alone. The hidden
square matrices are named `blocks.*`, so Muon treats them as hidden weights and the first and last layer
with AdamW, as in the transformer.

A training batch is training.batch_size examples drawn uniformly with replacement from the training set
by the step's generator (a pure function of (seed, step), on the device); batch_size >= the training set
means full-batch training. The loss is the mean cross-entropy. At every log step the workload logs the loss
and accuracy on the whole validation set (val/loss, val/accuracy); the evaluation writes eval.json

    {"task": "classification", "dataset", "n_train", "n_val", "n_features", "n_classes", "hidden", "step",
     "train": {"loss", "accuracy"}, "val": {"loss", "accuracy"},
     "reference": {"val_loss_true_w": ...} (synthetic only: the loss of the true w* on the validation set)}

and classification.png (train loss and validation loss/accuracy vs step from metrics.jsonl).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from iclab.evaluation import EvalError
from iclab.files import write_json
from iclab.registry import TASKS
from iclab.workloads.base import Workload, step_generator


class ClassificationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: Literal["digits", "synthetic"] = Field(
        "digits",
        description="digits: sklearn load_digits; synthetic: logistic-regression data (see the module docstring)",
    )
    hidden: list[Annotated[int, Field(gt=0)]] = Field(
        [64], description="hidden widths of the MLP; []: logistic regression"
    )
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of the examples held out for validation")
    split_seed: int = Field(0, ge=0, description="seed of the permutation that splits train/validation")
    standardize: bool | None = Field(
        None, description="standardize features with the training statistics (default: synthetic yes, digits no)"
    )
    # synthetic only
    n_samples: int = Field(4096, gt=1, description="synthetic: examples (train + validation)")
    n_features: int = Field(32, gt=0, description="synthetic: d")
    condition: float = Field(
        100.0, ge=1.0, description="synthetic: ratio of the largest to the smallest feature variance"
    )
    logit_scale: float = Field(4.0, gt=0.0, description="synthetic: standard deviation of the true logit w*.x")
    data_seed: int = Field(0, ge=0, description="synthetic: seed of x, w* and the labels")


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def synthetic_data(o: ClassificationOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x (N, d) float32, y (N,) int64, w* (d,)) of the synthetic logistic-regression problem."""
    rng = np.random.default_rng(o.data_seed)
    scales = np.logspace(0.0, -0.5 * math.log10(o.condition), o.n_features)
    x = rng.standard_normal((o.n_samples, o.n_features)) * scales
    w = rng.standard_normal(o.n_features)
    w *= o.logit_scale / math.sqrt(float(np.sum((w * scales) ** 2)))  # Var(w.x) = sum w_i^2 s_i^2
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    y = (rng.random(o.n_samples) < p).astype(np.int64)
    return x.astype(np.float32), y, w


class MLP(nn.Module):
    """read_in (d -> h1), blocks (h_i -> h_{i+1}), read_out (h_last -> classes); no hidden: read_out alone."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int, activation: str = "relu"):
        super().__init__()
        self.act = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "gelu": nn.GELU()}[activation]
        self.read_in = nn.Linear(n_in, hidden[0]) if hidden else None
        self.blocks = nn.ModuleList(nn.Linear(a, b) for a, b in zip(hidden[:-1], hidden[1:]))
        self.read_out = nn.Linear(hidden[-1] if hidden else n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.read_in is not None:
            x = self.act(self.read_in(x))
        for layer in self.blocks:
            x = self.act(layer(x))
        return self.read_out(x)


@TASKS.register("classification")
class ClassificationWorkload(Workload):
    """Classification of a fixed dataset (digits or synthetic logistic data) by an MLP / logistic regression."""

    family = "classification"
    Options = ClassificationOptions
    eval_options = ("tag", "step")  # the fixed validation set

    def __init__(self, cfg, run_dir=None):
        super().__init__(cfg)
        self.opts = o = self.Options(**cfg.task.options)
        w = None
        if o.dataset == "digits":
            x, y = digits_data()
        else:
            x, y, w = synthetic_data(o)
        perm = np.random.default_rng(o.split_seed).permutation(len(x))
        n_val = round(o.val_fraction * len(x))
        tr, va = perm[: len(x) - n_val], perm[len(x) - n_val :]
        if o.standardize if o.standardize is not None else o.dataset == "synthetic":
            mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
            x = (x - mu) / sd
        self.n_classes = int(y.max()) + 1
        self.n_features = x.shape[1]
        self.x_train, self.y_train = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
        self.x_val, self.y_val = torch.from_numpy(x[va]), torch.from_numpy(y[va])
        self.true_w = w
        self._on_device: dict[str, tuple[torch.Tensor, ...]] = {}

    # --- config checks (called from the config schema) ---------------------------------------------------
    @classmethod
    def check(cls, opts, n_dims: int) -> None:
        if opts.dataset == "synthetic" and round(opts.val_fraction * opts.n_samples) in (0, opts.n_samples):
            raise ValueError(
                f"task.options.val_fraction={opts.val_fraction} leaves the training or validation set "
                f"of the {opts.n_samples} examples empty"
            )

    @classmethod
    def check_config(cls, cfg) -> None:
        c = cfg.curriculum
        if c.dims is not None or c.points is not None or c.seq_len is not None or c.loops is not None:
            raise ValueError(
                "curriculum: classification has no curriculum (remove curriculum.dims/points/seq_len/loops)"
            )

    # --- training ------------------------------------------------------------------------------------
    def build_model(self):
        return MLP(self.n_features, list(self.opts.hidden), self.n_classes, self.opts.activation)

    def data(self, device) -> tuple[torch.Tensor, ...]:
        """(x_train, y_train, x_val, y_val) on `device` (copied there once)."""
        key = str(torch.device(device))
        if key not in self._on_device:
            self._on_device[key] = tuple(t.to(device) for t in (self.x_train, self.y_train, self.x_val, self.y_val))
        return self._on_device[key]

    def batch(self, step, cur, device):
        x, y = self.data(device)[:2]
        B = self.cfg.training.batch_size
        if B >= len(x):
            return x, y
        idx = torch.randint(len(x), (B,), generator=step_generator(self.cfg.seed, step, device), device=device)
        return x[idx], y[idx]

    def loss(self, forward, batch, cur):
        x, y = batch
        return F.cross_entropy(forward(x).float(), y)

    def curriculum_keys(self):
        return ()

    def identity(self):
        return {"n_features": self.n_features, "n_classes": self.n_classes}

    def tokens_per_step(self, batch_size):
        return min(batch_size, len(self.x_train))

    def step_flops(self):
        widths = [self.n_features, *self.opts.hidden, self.n_classes]
        return (
            6
            * min(self.cfg.training.batch_size, len(self.x_train))
            * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        )

    # --- metrics ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def split_metrics(self, model, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        was = model.training
        model.eval()
        logits = model(x).float()
        model.train(was)
        loss, acc = torch.stack([F.cross_entropy(logits, y), (logits.argmax(-1) == y).float().mean()]).tolist()
        return {"loss": loss, "accuracy": acc}

    def log_metrics(self, model, device):
        m = self.split_metrics(model, *self.data(device)[2:])
        return {"val/loss": m["loss"], "val/accuracy": m["accuracy"]}

    def fixed_batches(self, n, seed, device):
        raise EvalError(
            "task.name=classification: layer analyses (surgery, lens, probes) are for transformer runs; "
            "this run is an MLP / logistic regression"
        )

    # --- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, run_dir: Path, model, device, *, tag=None, step=None, **_) -> dict:
        xt, yt, xv, yv = self.data(device)
        o = self.opts
        ev = {
            "task": "classification",
            "dataset": o.dataset,
            "n_train": len(xt),
            "n_val": len(xv),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "hidden": list(o.hidden),
            "step": step,
            "train": self.split_metrics(model, xt, yt),
            "val": self.split_metrics(model, xv, yv),
        }
        if self.true_w is not None:
            ev["reference"] = {"val_loss_true_w": self.true_w_val_loss()}
        suffix = f"_{tag}" if tag else ""
        write_json(Path(run_dir) / f"eval{suffix}.json", ev)
        recs = read_val_metrics(Path(run_dir) / "metrics.jsonl")
        if recs:
            plot_classification(recs, Path(run_dir) / f"classification{suffix}.png", title=Path(run_dir).name)
        return ev

    def true_w_val_loss(self) -> float:
        """Synthetic data: the validation cross-entropy of the true w* (in the raw feature space; the labels were
        drawn from it), a reference that no model can beat in expectation."""
        o = self.opts
        x, y, w = synthetic_data(o)
        perm = np.random.default_rng(o.split_seed).permutation(len(x))
        va = perm[len(x) - round(o.val_fraction * len(x)) :]
        z = x[va].astype(np.float64) @ w
        return float(np.mean(np.logaddexp(0.0, z) - y[va] * z))

    def headline(self, ev):
        return "validation accuracy", ev["val"]["accuracy"], False

    def summary(self, ev):
        ref = f", true w* val loss {ev['reference']['val_loss_true_w']:.4f}" if "reference" in ev else ""
        return (
            f"{ev['dataset']} ({ev['n_train']} train / {ev['n_val']} val): val accuracy {ev['val']['accuracy']:.4f}, "
            f"val loss {ev['val']['loss']:.4f}; train accuracy {ev['train']['accuracy']:.4f}{ref}"
        )


def read_val_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [r for r in recs if "val/accuracy" in r]


def plot_classification(records: list[dict], path: Path, title: str | None = None) -> Path:
    """Training and validation loss (left, log y) and validation accuracy (right) vs step."""
    from iclab.plotting import plt

    steps = [r["step"] for r in records]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax.plot(steps, [r["loss"] for r in records], label="train (batch mean)", color="tab:blue")
    ax.plot(steps, [r["val/loss"] for r in records], label="validation", color="tab:red")
    ax.set_yscale("log")
    ax.set_ylabel("cross-entropy (nats)")
    bx.plot(steps, [r["val/accuracy"] for r in records], color="tab:red", label="validation")
    bx.set_ylabel("accuracy")
    bx.set_ylim(0, 1.02)
    for a in (ax, bx):
        a.set_xlabel("training step")
        a.legend(fontsize=8)
    fig.suptitle(title or "classification", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
