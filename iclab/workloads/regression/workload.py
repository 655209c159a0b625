"""In-context regression (Garg et al. 2022): prompts x_1, f(x_1), ..., x_n, f(x_n) of a function class.

The model is `ICLTransformer` (read-in, trunk, scalar read-out); the loss is the squared error of the
predictions at every x position, averaged over the last T loop iterations; the evaluation is the
normalized squared error per in-context position beside the classical baselines
(iclab/evaluation/regression.py), and for looped models the error of every loop iteration; with
`shift`, `task` or `all_shifts`, the same under distribution shifts or on another function class
(iclab/evaluation/shift_eval.py).

One task per function class: importing this module registers, for every name of `FUNCTIONS`, a
`RegressionWorkload` subclass bound to that class under the same name in `TASKS`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from iclab.evaluation import EvalError
from iclab.evaluation.baselines import check_positions, resolve, resolve_baselines
from iclab.evaluation.regression import evaluate, evaluate_loops
from iclab.evaluation.shift_eval import evaluate_shift, plot_shift_grid, shift_tag
from iclab.evaluation.shifts import DEFAULT_SHIFTS, SHIFTS, make_shift
from iclab.files import options_tag, write_json
from iclab.models import make_model
from iclab.models.flops import config_step_flops
from iclab.registry import BASELINES, FUNCTIONS, TASKS
from iclab.workloads.base import Workload, step_generator
from iclab.workloads.regression.functions import Task, make_task


def prediction_loss(preds: list[torch.Tensor], ys: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the predicted positions of each iteration, averaged over iterations."""
    n = ys.shape[1]
    return sum(((p - ys[:, n - p.shape[1] :]) ** 2).mean() for p in preds) / len(preds)


class RegressionWorkload(Workload):
    """Trains and evaluates on prompts of one function class (`function_class`, set by `for_function`)."""

    family = "regression"
    function_class: type[Task] = Task
    Options = Task.Options
    eval_options = (
        *("n_prompts", "n_points", "seed", "loops", "tag", "step", "max_loops"),
        *("baselines", "shift", "shift_options", "task", "task_options", "all_shifts", "write_figure"),
    )

    def __init__(self, cfg, run_dir=None):
        super().__init__(cfg)
        self.task = make_task(cfg.task.name, cfg.task.n_dims, cfg.task.options)

    @classmethod
    def for_function(cls, fn: type[Task]) -> type[RegressionWorkload]:
        """The workload class of one function class (what `TASKS` holds under the function's name)."""
        attrs = {"function_class": fn, "Options": fn.Options, "__doc__": fn.__doc__, "__module__": __name__}
        return type(f"{fn.__name__}Workload", (cls,), attrs)

    # --- config checks (called from the config schema) ---------------------------------------------------
    @classmethod
    def check(cls, opts, n_dims: int) -> None:
        """Options of the function class that do not fit n_dims (raise ValueError)."""
        cls.function_class.check(opts, n_dims)

    @classmethod
    def check_config(cls, cfg) -> None:
        """Raise ValueError when the rest of a config does not fit an in-context regression run."""
        t, m, c, ev = cfg.task, cfg.model, cfg.curriculum, cfg.eval
        for key, sched, cap in (("dims", c.dims, t.n_dims), ("points", c.points, t.n_points)):
            if sched is not None and sched.end > cap:
                raise ValueError(f"curriculum.{key}.end={sched.end} exceeds task.n_{key}={cap}")
        if c.seq_len is not None or t.seq_len is not None:
            raise ValueError(
                f"task.seq_len and curriculum.seq_len are for token workloads; {t.name} uses task.n_points"
            )
        if 2 * t.n_points > m.n_positions:
            raise ValueError(
                f"task.n_points={t.n_points} needs {2 * t.n_points} positions > model.n_positions={m.n_positions}"
            )
        if ev.n_points is not None and 2 * ev.n_points > m.n_positions:
            raise ValueError(
                f"eval.n_points={ev.n_points} needs {2 * ev.n_points} positions > model.n_positions={m.n_positions}"
            )
        if ev.baselines:
            check_positions(resolve(ev.baselines), ev.n_points or t.n_points)
        if m.drop_tokens and m.min_tokens > 2 * t.n_points:
            raise ValueError(
                f"model.min_tokens={m.min_tokens} exceeds the {2 * t.n_points} tokens of a prompt "
                f"(task.n_points={t.n_points})"
            )

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

    def _eval_points(self, n_points: int | None) -> int:
        n_points = n_points or self.cfg.eval.n_points or self.cfg.task.n_points
        if 2 * n_points > self.cfg.model.n_positions:
            raise EvalError(
                f"--n-points {n_points} needs {2 * n_points} positions; the model has "
                f"n_positions={self.cfg.model.n_positions}"
            )
        return n_points

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
        baselines=None,
        shift=None,
        shift_options=None,
        task=None,
        task_options=None,
        all_shifts=False,
        write_figure=True,
    ) -> dict:
        """eval[_TAG].json (and loops[_TAG].json for looped models); with `shift`, `task` (another function
        class) or `baselines`: eval_<shift tag>.json (`evaluate_shift`); with `all_shifts`: every applicable
        shift (`evaluate_all_shifts`)."""
        kw = dict(n_prompts=n_prompts, n_points=n_points, seed=seed, loops=loops, baselines=baselines)
        if all_shifts:
            if shift is not None or tag is not None:
                raise EvalError("--all-shifts excludes --shift and --tag")
            return self.evaluate_all_shifts(run_dir, model, device, task, task_options, **kw)
        if shift is not None or task is not None or baselines is not None:
            return self.evaluate_shift(
                run_dir, model, device, shift or "standard", shift_options, task, task_options, tag=tag,
                write_figure=write_figure, **kw,
            )  # fmt: skip
        cfg = self.cfg
        n_points = self._eval_points(n_points)
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
        from iclab.evaluation.plots import plot_error_curves, plot_loop_curves  # matplotlib: only when evaluating

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

    def evaluate_shift(
        self,
        run_dir: Path,
        model,
        device,
        shift: str = "standard",
        shift_options: dict | None = None,
        task_name: str | None = None,
        task_options: dict | None = None,
        *,
        n_prompts=None,
        n_points=None,
        seed=None,
        loops=None,
        baselines: list | None = None,
        tag: str | None = None,
        write_figure: bool = True,
    ) -> dict:
        """The model under `shift`, on its own function class or on `task_name` (same n_dims); writes
        eval_<tag>.json and error_vs_examples_<tag>.png (tag: the shift, its options and the task)."""
        cfg, run_dir = self.cfg, Path(run_dir)
        n_points = self._eval_points(n_points)
        try:
            sh = make_shift(shift, shift_options)
            if task_name is None:
                task = make_task(cfg.task.name, cfg.task.n_dims, cfg.task.options)
                explicit = cfg.eval.baselines if baselines is None else baselines
            else:
                task = make_task(task_name, cfg.task.n_dims, task_options)
                explicit = baselines
            task = task.without_pool()
            names = resolve_baselines(task, explicit)
            for b in names:
                BASELINES.get(b)
            why = sh.applies_to(task)
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            raise EvalError(f"--shift {shift} / --task {task_name or cfg.task.name}: {e}") from None
        if why:
            raise EvalError(f"shift '{shift}' does not apply to task {task_name or cfg.task.name}: {why}")
        ev = evaluate_shift(
            model,
            task,
            sh,
            n_prompts=n_prompts or cfg.eval.n_prompts,
            n_points=n_points,
            loops=loops or cfg.eval.loops or cfg.model.loops,
            baselines=names,
            seed=cfg.eval.seed if seed is None else seed,
            batch_size=cfg.eval.batch_size,
            device=device,
        )
        ev.update(
            shift=shift,
            shift_options=sh.opts.model_dump(),
            eval_task=task_name or cfg.task.name,
            trained_task=cfg.task.name,
        )
        if tag is None:  # options other than the config's name the file, so no earlier result is replaced
            extra = self._options_suffix(n_prompts=n_prompts, n_points=n_points, seed=seed, loops=loops,
                                         baselines=baselines)  # fmt: skip
            tag = shift_tag(shift, shift_options, task_name) + extra
        write_json(run_dir / f"eval_{tag}.json", ev)
        if write_figure:
            from iclab.evaluation.plots import plot_error_curves

            title = f"{ev['eval_task']}, shift: {shift}\n(model trained on {cfg.task.name})"
            plot_error_curves([(run_dir.name, ev)], run_dir / f"error_vs_examples_{tag}.png", title=title)
        return ev

    def evaluate_all_shifts(
        self, run_dir: Path, model, device, task_name=None, task_options=None, shifts=DEFAULT_SHIFTS, **kw
    ) -> dict:
        """Every applicable shift: eval_<shift>[_<options>].json each and one summary figure
        shifts[_on_<task>][_<options>].png (options: those that differ from the config's, as `evaluate_shift`).
        The record: {"shifts": {shift: its record}, "figure": the figure's path}."""
        cfg, run_dir = self.cfg, Path(run_dir)
        name = task_name or cfg.task.name
        try:
            task = make_task(name, cfg.task.n_dims, task_options if task_name else cfg.task.options)
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            raise EvalError(f"--task {name}: {e}") from None
        results = {}
        for shift in shifts:
            if SHIFTS.get(shift)().applies_to(task):
                continue
            results[shift] = self.evaluate_shift(
                run_dir, model, device, shift, None, task_name, task_options, write_figure=False, **kw
            )
        stem = f"shifts_on_{task_name}" if task_name else "shifts"
        out = run_dir / f"{stem}{self._options_suffix(**kw)}.png"
        plot_shift_grid(results, out, title=f"{name}, model trained on {cfg.task.name} ({run_dir.name})")
        return {"shifts": results, "figure": str(out)}

    def _options_suffix(self, n_prompts=None, n_points=None, seed=None, loops=None, baselines=None, **_) -> str:
        """ "_<options>" naming an evaluation's file by the options that differ from the config's ("" if none)."""
        cfg = self.cfg
        given = {"n_prompts": n_prompts, "n_points": n_points, "seed": seed, "loops": loops}
        defaults = {"n_prompts": cfg.eval.n_prompts, "n_points": self._eval_points(None), "seed": cfg.eval.seed,
                    "loops": cfg.eval.loops or cfg.model.loops}  # fmt: skip
        if baselines is not None:
            given["baselines"] = [b if isinstance(b, str) else b.get("label") or b["name"] for b in baselines]
        extra = options_tag(given, defaults)
        return f"_{extra}" if extra else ""

    def headline(self, ev):
        k = min(2 * ev["n_dims"], ev["n_points"] - 1)
        return f"error at k={k}", ev["model"]["mean"][k], True

    def summary(self, ev):
        """The errors at k = 2d of a record of `evaluate`: one line, or one per shift after all_shifts."""
        if "shifts" in ev:
            lines = [f"{s}: {self._errors_at_k(e)}" for s, e in ev["shifts"].items()]
            return "\n".join([*lines, f"wrote {ev['figure']}"])
        where = f"{ev['eval_task']} under {ev['shift']}: " if "shift" in ev else ""
        return where + self._errors_at_k(ev)

    @staticmethod
    def _errors_at_k(ev: dict) -> str:
        k = min(2 * ev["n_dims"], ev["n_points"] - 1)
        fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731  (null: a baseline not evaluated there)
        parts = [f"model {ev['model']['mean'][k]:.4f}"] + [
            f"{b} {fmt(c['mean'][k])}" for b, c in ev["baselines"].items()
        ]
        return f"normalized squared error at k={k}: " + ", ".join(parts)


for _name in FUNCTIONS.names():  # one task per function class, under the function class's name
    TASKS.register(_name, help=FUNCTIONS.describe()[_name])(RegressionWorkload.for_function(FUNCTIONS.get(_name)))
