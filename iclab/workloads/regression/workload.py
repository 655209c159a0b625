"""In-context regression (Garg et al. 2022): prompts x_1, f(x_1), ..., x_n, f(x_n) of a function class.

The model is `ICLTransformer` (read-in, trunk, scalar read-out); the loss is the squared error of the
predictions at every x position, averaged over the last T loop iterations; the evaluation is the
normalized squared error per in-context position beside the classical baselines
(iclab/evaluation/regression.py), and for looped models the error of every loop iteration.
"""

from __future__ import annotations

from pathlib import Path

import torch

from iclab.evaluation.baselines import check_positions, resolve, resolve_baselines
from iclab.evaluation.plots import plot_error_curves, plot_loop_curves
from iclab.evaluation.regression import evaluate, evaluate_loops
from iclab.files import write_json
from iclab.models import make_model
from iclab.models.flops import config_step_flops
from iclab.workloads.base import EvalError, Workload, step_generator
from iclab.workloads.regression.functions import make_task


def prediction_loss(preds: list[torch.Tensor], ys: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the predicted positions of each iteration, averaged over iterations."""
    n = ys.shape[1]
    return sum(((p - ys[:, n - p.shape[1] :]) ** 2).mean() for p in preds) / len(preds)


class RegressionWorkload(Workload):
    family = "regression"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.task = make_task(cfg.task.name, cfg.task.n_dims, cfg.task.options)

    def build_model(self):
        return make_model(self.cfg.model, "regression", n_dims=self.cfg.task.n_dims)

    def batch(self, step, cur, device):
        gen = step_generator(self.cfg.seed, step, device)
        return self.task.sample(self.cfg.training.batch_size, cur["points"], cur["dims"], gen, device)

    def loss(self, forward, batch, cur):
        xs, ys = batch
        preds = forward(xs, ys, loops=cur["loops"], window=self.cfg.model.window)
        return prediction_loss(preds[-1:] if self.cfg.model.loop_loss == "last" else preds, ys)

    def curriculum_keys(self):
        return ("dims", "points", "loops")

    @torch.no_grad()
    def log_metrics(self, model, device):
        """With logging.val_examples = N > 0: `val/error`, the normalized squared error at k = min(2d, n-1)
        examples (the headline position) on N fixed fresh prompts at the full dims and points (eval.seed)."""
        n = self.cfg.logging.val_examples
        if n == 0:
            return {}
        if getattr(self, "_val_prompts", None) is None:
            task, d = self.task.without_pool(), self.cfg.task.n_dims
            gen = torch.Generator(device=device).manual_seed(self.cfg.eval.seed)
            self._val_prompts = (*task.sample(n, self.cfg.task.n_points, d, gen, device), task.zero_error(d))
        xs, ys, norm = self._val_prompts
        k = min(2 * self.cfg.task.n_dims, self.cfg.task.n_points - 1)
        was = model.training
        model.eval()
        pred = model(xs[:, : k + 1], ys[:, : k + 1], loops=self.cfg.model.loops, window=1)[-1][:, -1]
        model.train(was)
        return {"val/error": ((pred - ys[:, k]) ** 2).mean().item() / norm}

    def tokens_per_step(self, batch_size):
        return batch_size * 2 * self.cfg.task.n_points

    def step_flops(self):
        return config_step_flops(self.cfg)

    def evaluate(
        self,
        run_dir: Path,
        model,
        device,
        *,
        n_prompts=None,
        n_points=None,
        seed=None,
        loops=None,
        tag=None,
        step=None,
        max_loops=None,
    ) -> dict:
        cfg = self.cfg
        n_points = n_points or cfg.eval.n_points or cfg.task.n_points
        if 2 * n_points > cfg.model.n_positions:
            raise EvalError(
                f"--n-points {n_points} needs {2 * n_points} positions; the model has "
                f"n_positions={cfg.model.n_positions}"
            )
        task = self.task.without_pool()  # fresh functions: the test distribution
        names = resolve_baselines(task, cfg.eval.baselines)
        try:
            check_positions(resolve(names), n_points)
        except ValueError as e:
            raise EvalError(f"eval.baselines: {e}") from None
        loops = loops or cfg.eval.loops or cfg.model.loops
        seed = cfg.eval.seed if seed is None else seed
        ev = evaluate(
            model,
            task,
            n_prompts=n_prompts or cfg.eval.n_prompts,
            n_points=n_points,
            loops=loops,
            baselines=names,
            seed=seed,
            batch_size=cfg.eval.batch_size,
            device=device,
        )
        ev["step"] = step
        suffix = f"_{tag}" if tag else ""
        write_json(run_dir / f"eval{suffix}.json", ev)
        plot_error_curves([(run_dir.name, ev)], run_dir / f"error_vs_examples{suffix}.png")
        if cfg.model.loops > 1:
            max_loops = max_loops or cfg.eval.max_loops or max(2 * cfg.model.loops, loops)
            lp = evaluate_loops(
                model,
                task,
                max_loops=max_loops,
                n_prompts=min(ev["n_prompts"], 500),
                n_points=n_points,
                seed=seed,
                batch_size=cfg.eval.batch_size,
                device=device,
            )
            write_json(run_dir / f"loops{suffix}.json", lp)
            plot_loop_curves([(run_dir.name, lp)], run_dir / f"error_vs_loops{suffix}.png")
        return ev

    def headline(self, ev):
        k = min(2 * ev["n_dims"], ev["n_points"] - 1)
        return f"error at k={k}", ev["model"]["mean"][k], True

    def summary(self, ev):
        k = min(2 * ev["n_dims"], ev["n_points"] - 1)
        fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731  (null: a baseline not evaluated there)
        parts = [f"model {ev['model']['mean'][k]:.4f}"] + [
            f"{b} {fmt(c['mean'][k])}" for b, c in ev["baselines"].items()
        ]
        return f"normalized squared error at k={k}: " + ", ".join(parts)
