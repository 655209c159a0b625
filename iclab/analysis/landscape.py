"""Loss landscapes of a trained run: lines and planes through weight space (seed 004's lecture).

    iclab landscape RUN [RUN ...] [--checkpoint STEP] [--dims 1|2] [--range A,B] [--points N]
                    [--directions random|pca|init] [--batches N] [--seed S] [--out FIG.png]

With theta the weights at `--checkpoint` (default: the final ones) the loss is evaluated at

    init     1-D: L(theta_0 + a (theta - theta_0)), a in [A, B] (default -0.5..1.5): the straight line from the
             initial weights (RUN/init.safetensors, written by the trainer before step 1) through the final ones
             (Goodfellow et al. 2015); every parameter moves.
    random   1-D: L(theta + a d1); 2-D: L(theta + a d1 + b d2) (default a, b in [-1, 1]) with d1, d2 random
             filter-normalized directions (Li et al. 2018): d ~ N(0, I), then each filter (a row along dim 0 of a
             weight matrix or embedding table) is rescaled to the norm of the same filter of theta; 1-D
             parameters (biases, LayerNorm gains and shifts) get 0 in the direction ("ignore biasbn").
    pca      2-D: the plane through theta spanned by the first two principal directions of the trajectory
             theta_i - theta over the saved checkpoints (init, every checkpoint kept, final); the
             trajectory's coordinates in that plane are drawn on the contour (save checkpoints often:
             logging.ckpt_every, logging.milestone_every). Axes are in units of the directions (unit norm),
             the range defaults to the trajectory's extent plus a margin; the explained variance is recorded.

The loss is the run's own training loss (`workload.loss`, the model in eval mode, so dropout is off) averaged
over a fixed, stated set of batches: `workload.batch(step)` for the step ids 10**12 + i, i < --batches (batches
of the training distribution that training never drew, at the curriculum's final values), each evaluated as
one batch. The same batches are used at every point and for every run compared. Outputs, into RUN:

    landscape_<directions>_<dims>d[_step<S>].json  {"run", "step", "directions", "dims", "alphas", ["betas"],
                    "loss": [..] or [[..]] (loss[i][j] at alphas[i], betas[j]), "center_loss", "batches": {...},
                    "trajectory": [{"step", "x", "y"}] (pca), "explained_variance" (pca), "seconds"}
    landscape_<directions>_<dims>d[_step<S>].png   1-D: the curve; 2-D: contours (+ trajectory) and a 3-D surface

Several runs given at once are computed the same way (each its own seed-identical directions, filter-normalized
to its own weights) and drawn side by side into --out (default RUN1/landscape_compare_<directions>_<dims>d.png).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from iclab.analysis.landscape_plots import plot_compare, plot_landscape
from iclab.errors import IclabError
from iclab.files import write_json

EVAL_STEP0 = 10**12  # the step ids of the evaluation batches: far past any training step
DIRECTIONS = ("random", "pca", "init")


class LandscapeError(IclabError, ValueError):
    pass


# --- weights of a run -------------------------------------------------------------------------------------
def open_model(run_dir: Path):
    """(cfg, workload, model on its device) of a saved run, with the final weights loaded."""
    from iclab.runs import load_run_config, open_run
    from iclab.workloads import make_workload

    cfg = load_run_config(run_dir)
    if cfg.training.threads is not None:  # the run's CPU threads (1 is much faster on a busy CPU)
        torch.set_num_threads(cfg.training.threads)
    workload = make_workload(cfg, run_dir)
    cfg, device, model, _ = open_run(run_dir, cfg, workload=workload)
    model.eval()
    return cfg, workload, model, device


def run_weights(run_dir: Path, cfg, workload, step: int | None) -> tuple[dict[str, torch.Tensor], int]:
    """The state dict of `run_dir` at `step` (None: the final weights; 0: init.safetensors) and its step,
    as `iclab eval` evaluates it (`runs.run_state`: schedule-free checkpoints give their evaluation weights)."""
    from iclab.runs import RunError, run_state

    try:
        return run_state(run_dir, cfg, workload, step)
    except RunError as e:
        raise LandscapeError(str(e)) from None


def trajectory(run_dir: Path, cfg, workload) -> list[tuple[int, dict[str, torch.Tensor]]]:
    """(step, state) of the init, every kept checkpoint and the final weights, in step order."""
    from iclab.training import checkpoint as ck

    states = {0: run_weights(run_dir, cfg, workload, 0)[0]}
    for step, _ in ck.list_checkpoints(Path(run_dir) / "checkpoints"):
        states[step] = run_weights(run_dir, cfg, workload, step)[0]
    final, fstep = run_weights(run_dir, cfg, workload, None)
    states[fstep] = final
    return sorted(states.items())


# --- parameter vectors (dicts name -> tensor over the model's parameters) ---------------------------------
def param_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters()]


def select(state: dict[str, torch.Tensor], names: list[str], device) -> dict[str, torch.Tensor]:
    return {n: state[n].detach().to(device=device, dtype=torch.float32) for n in names}


def dot(a: dict, b: dict) -> float:
    return float(sum((a[k].double() * b[k].double()).sum() for k in a))


def combine(base: dict, terms: list[tuple[float, dict]]) -> dict:
    """base + sum_i c_i d_i."""
    out = {k: v.clone() for k, v in base.items()}
    for c, d in terms:
        for k in out:
            out[k].add_(d[k], alpha=c)
    return out


def filter_normalized_direction(weights: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A random direction (Li et al. 2018): N(0, I) drawn on the CPU from `gen`, each filter (row along dim 0)
    rescaled to the norm of the same filter of `weights`; parameters with one dimension (biases, norm gains)
    are zero ("ignore biasbn")."""
    out = {}
    for name, w in weights.items():
        if w.dim() <= 1:
            out[name] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.device)
        wf, df = w.reshape(w.shape[0], -1), d.reshape(d.shape[0], -1)
        scale = wf.norm(dim=1, keepdim=True) / (df.norm(dim=1, keepdim=True) + 1e-10)
        out[name] = (df * scale).reshape(w.shape)
    return out


def pca_directions(states: list[dict[str, torch.Tensor]], center: dict[str, torch.Tensor]):
    """The first two principal directions of (state_i - center), each of unit norm, the trajectory's
    coordinates in them ((n, 2) array) and the fraction of variance each explains."""
    names = list(center)
    M = torch.stack([torch.cat([(s[k] - center[k]).reshape(-1).double() for k in names]) for s in states])
    _, S, Vh = torch.linalg.svd(M, full_matrices=False)  # rows of Vh: unit principal directions
    if len(S) < 2 or S[1] <= 0:
        raise LandscapeError(
            "--directions pca needs a trajectory that spans a plane: save more checkpoints "
            "(logging.ckpt_every, logging.keep_last / milestone_every) and train again"
        )
    coords = (M @ Vh[:2].T).numpy()
    explained = (S[:2] ** 2 / (S**2).sum()).tolist()
    dirs = []
    for v in Vh[:2]:
        d, i = {}, 0
        for k in names:
            n = center[k].numel()
            d[k] = v[i : i + n].reshape(center[k].shape).to(center[k].device, torch.float32)
            i += n
        dirs.append(d)
    return dirs, coords, explained


# --- the loss on fixed batches -----------------------------------------------------------------------------
def eval_batches(cfg, workload, n: int, device) -> list:
    """The fixed batches: `workload.batch(step)` for step ids EVAL_STEP0 + i (i < n), at the curriculum's final
    values."""
    from iclab.training.curriculum import Curriculum

    cur = Curriculum(cfg).at(max(cfg.training.steps - 1, 0))
    return [workload.batch(EVAL_STEP0 + i, cur, device) for i in range(n)], cur


class LossFn:
    """Mean training loss of the model over fixed batches, at any weights (loaded into the model in place)."""

    def __init__(self, cfg, workload, model, n_batches: int, device):
        self.workload, self.model = workload, model
        self.batches, self.cur = eval_batches(cfg, workload, n_batches, device)
        self.params = dict(model.named_parameters())

    @torch.no_grad()
    def __call__(self, weights: dict[str, torch.Tensor]) -> float:
        for k, v in weights.items():
            self.params[k].copy_(v)
        self.model.eval()
        total = torch.zeros((), device=next(iter(weights.values())).device)
        for b in self.batches:
            total += self.workload.loss(self.model, b, self.cur).float()
        return float(total) / len(self.batches)

    def describe(self, cfg) -> dict:
        return {
            "how": "workload.batch(step) at the curriculum's final values, model in eval mode",
            "steps": [EVAL_STEP0, EVAL_STEP0 + len(self.batches) - 1],
            "n_batches": len(self.batches),
            "batch_size": cfg.training.batch_size,
            "seed": cfg.seed,
            "curriculum": self.cur,
        }


# --- one run ------------------------------------------------------------------------------------------------
def parse_range(text: str | None, directions: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise LandscapeError(f"--range {text!r}: expected two numbers A,B (e.g. -1,1)") from None
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise LandscapeError(f"--range {text!r}: expected A < B, both finite")
    return a, b


def landscape(
    run_dir: Path,
    *,
    directions: str = "random",
    dims: int = 2,
    step: int | None = None,
    rng: tuple[float, float] | None = None,
    points: int = 21,
    n_batches: int = 4,
    seed: int = 0,
    write: bool = True,
) -> dict:
    """Compute one run's landscape (see the module docstring); write its JSON and figure into the run.

    Length: a third of it checks the options before any work (one line each, naming the option); the rest is
    directions, grid evaluation and the record, in order.
    """
    if directions not in DIRECTIONS:
        raise LandscapeError(f"--directions {directions!r}: expected one of {', '.join(DIRECTIONS)}")
    if dims not in (1, 2):
        raise LandscapeError(f"--dims {dims}: expected 1 or 2")
    if directions == "init" and dims != 1:
        raise LandscapeError("--directions init is a line (initial -> final weights): use --dims 1")
    if directions == "pca" and dims != 2:
        raise LandscapeError("--directions pca is a plane (the first two PCA directions): use --dims 2")
    if points < 2:
        raise LandscapeError(f"--points {points}: need at least 2")
    if n_batches < 1:
        raise LandscapeError(f"--batches {n_batches}: need at least 1")
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    cfg, workload, model, device = open_model(run_dir)
    names = param_names(model)
    state, step = run_weights(run_dir, cfg, workload, step)
    center = select(state, names, device)
    loss_fn = LossFn(cfg, workload, model, n_batches, device)
    rec = {
        "run": str(run_dir),
        "task": cfg.task.name,
        "step": step,
        "directions": directions,
        "dims": dims,
        "points": points,
        "seed": seed,
        "batches": loss_fn.describe(cfg),
    }
    if directions == "init":
        start = select(run_weights(run_dir, cfg, workload, 0)[0], names, device)
        d = combine(center, [(-1.0, start)])
        lo, hi = rng or (-0.5, 1.5)
        alphas = np.linspace(lo, hi, points)
        rec.update(
            alphas=alphas.tolist(),
            loss=[loss_fn(combine(start, [(float(a), d)])) for a in alphas],
            distance=math.sqrt(dot(d, d)),
            center_loss=loss_fn(center),
            init_loss=loss_fn(start),
        )
    elif directions == "random":
        gen = torch.Generator().manual_seed(seed)
        d1 = filter_normalized_direction(center, gen)
        lo, hi = rng or (-1.0, 1.0)
        alphas = np.linspace(lo, hi, points)
        if dims == 1:
            loss = [loss_fn(combine(center, [(float(a), d1)])) for a in alphas]
            rec.update(alphas=alphas.tolist(), loss=loss)
        else:
            d2 = filter_normalized_direction(center, gen)
            loss = [[loss_fn(combine(center, [(float(a), d1), (float(b), d2)])) for b in alphas] for a in alphas]
            rec.update(
                alphas=alphas.tolist(),
                betas=alphas.tolist(),
                loss=loss,
                cosine_d1_d2=dot(d1, d2) / math.sqrt(dot(d1, d1) * dot(d2, d2)),
            )
        rec["center_loss"] = loss_fn(center)
    else:
        traj = trajectory(run_dir, cfg, workload)
        (d1, d2), coords, explained = pca_directions([select(s, names, device) for _, s in traj], center)
        if rng is None:
            ext = float(np.abs(coords).max()) * 1.25 or 1.0
            xlo, xhi = min(coords[:, 0].min(), 0) - 0.25 * ext, max(coords[:, 0].max(), 0) + 0.25 * ext
            ylo, yhi = min(coords[:, 1].min(), 0) - 0.25 * ext, max(coords[:, 1].max(), 0) + 0.25 * ext
        else:
            (xlo, xhi), (ylo, yhi) = rng, rng
        alphas, betas = np.linspace(xlo, xhi, points), np.linspace(ylo, yhi, points)
        loss = [[loss_fn(combine(center, [(float(a), d1), (float(b), d2)])) for b in betas] for a in alphas]
        rec.update(
            alphas=alphas.tolist(),
            betas=betas.tolist(),
            loss=loss,
            explained_variance=explained,
            trajectory=[{"step": s, "x": float(x), "y": float(y)} for (s, _), (x, y) in zip(traj, coords)],
            center_loss=loss_fn(center),
        )
    rec["seconds"] = time.perf_counter() - t0
    if write:
        base = run_dir / f"landscape_{directions}_{dims}d{'' if step == cfg.training.steps else f'_step{step}'}"
        write_json(base.with_suffix(".json"), rec)
        rec["figure"] = str(plot_landscape(rec, base.with_suffix(".png"), title=f"{run_dir.name}"))
        rec["path"] = str(base.with_suffix(".json"))
    return rec


# --- figures --------------------------------------------------------------------------------------------------
def compare(run_dirs: list[Path], out: Path | None = None, **kw) -> tuple[list[dict], Path]:
    recs = [landscape(r, **kw) for r in run_dirs]
    labels = [Path(r).name for r in run_dirs]
    out = Path(out) if out else Path(run_dirs[0]) / f"landscape_compare_{recs[0]['directions']}_{recs[0]['dims']}d.png"
    return recs, plot_compare(recs, labels, out)


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())
