"""Run directories: create (or resume) one, train into it, evaluate it, load it back.

    RUN_DIR/
      config.yaml              the resolved config that ran (every default filled in)
      metrics.jsonl            one JSON record per log interval (step, loss, lr, steps_per_s, curriculum/*)
      tensorboard/             TensorBoard event files
      checkpoints/             step_XXXXXXXXX.safetensors (atomic; last `keep_last` + milestones kept)
      model.safetensors        final weights
      eval.json                per-position errors of the model and the baselines (schema: iclab/evaluate.py)
      error_vs_examples.png    the figure of eval.json
      loops.json, error_vs_loops.png   looped models: error of every loop iteration
      .lock                    held while a process writes the run
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import yaml
from filelock import FileLock, Timeout

from iclab.baselines import check_positions, resolve
from iclab.checkpoint import atomic_write, list_checkpoints, load_checkpoint, load_weights, save_weights
from iclab.config import Config, ConfigError, dump_config, validate
from iclab.evaluate import evaluate, evaluate_loops
from iclab.models import make_model
from iclab.plots import plot_error_curves, plot_loop_curves
from iclab.tasks import make_task, resolve_baselines
from iclab.train import Trainer, identity, resolve_device


class RunError(RuntimeError):
    pass


def write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1))


@contextlib.contextmanager
def _lock(run_dir: Path):
    """Hold the run's lock (acquired once, released on exit even if the run fails)."""
    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(f"run directory {run_dir} is in use by another iclab process (lock {run_dir / '.lock'})") from None
    try:
        yield lock
    finally:
        lock.release()


def prepare_run_dir(run_dir: Path, cfg: Config | None, resume: bool, overwrite: bool) -> Config:
    """Check the run directory before anything is written; return the config to run.
    On resume the config is read from it (`cfg` must match if given)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} exists and is not a directory")
    if resume:
        if overwrite:
            raise RunError("--resume and --overwrite exclude each other")
        saved = load_run_config(run_dir)
        if cfg is not None and cfg.model_dump() != saved.model_dump():
            raise RunError(f"--resume {run_dir}: the given config differs from the run's config.yaml; resume uses the saved one")
        return saved
    if cfg is None:
        raise RunError("a config is required to start a run")
    if run_dir.exists() and any(p.name != ".lock" for p in run_dir.iterdir()) and not overwrite:
        raise RunError(f"run directory {run_dir} already exists; use --resume to continue it or --overwrite to replace it")
    return cfg


def _start_run_dir(run_dir: Path, cfg: Config) -> None:
    """Empty the directory (--overwrite) and write config.yaml. Call with the run's lock held."""
    for p in run_dir.iterdir():
        if p.name != ".lock":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    write_text(run_dir / "config.yaml", dump_config(cfg))


def load_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise RunError(f"{run_dir} is not an iclab run directory (no config.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    return validate(data or {}, str(path))


def train_run(cfg: Config | None, run_dir: Path, resume: bool = False, overwrite: bool = False, evaluate_after: bool = True,
              on_log=None) -> dict:
    """Train into `run_dir`. Every check (config, directory, device, lock) happens before anything is
    written, so a refused run leaves no directory behind; the lock is held from start to finish."""
    run_dir = Path(run_dir)
    cfg = prepare_run_dir(run_dir, cfg, resume, overwrite)
    if not resume:
        trainer = Trainer(cfg, run_dir)  # builds the model on the device: fails here, before the directory exists
        run_dir.mkdir(parents=True, exist_ok=True)
    with _lock(run_dir):
        if resume:
            trainer = Trainer(cfg, run_dir, resume=True)
        else:
            _start_run_dir(run_dir, cfg)
        last = trainer.run(on_log=on_log)
        save_weights(run_dir / "model.safetensors", trainer.model.state_dict(), identity=identity(cfg), step=trainer.step)
        result = {"final": last}
        if evaluate_after:
            result["eval"] = evaluate_run(run_dir, cfg=cfg, model=trainer.model, step=trainer.step)
    return result


def load_run_model(run_dir: Path, cfg: Config, device):
    """The final weights if training finished, else the latest checkpoint."""
    model = make_model(cfg.model, cfg.task.n_dims)
    final = Path(run_dir) / "model.safetensors"
    if final.is_file():
        model.load_state_dict(load_weights(final, identity(cfg)))
    else:
        ckpts = list_checkpoints(Path(run_dir) / "checkpoints")
        if not ckpts:
            raise RunError(f"{run_dir} has neither model.safetensors nor a checkpoint")
        model.load_state_dict(load_checkpoint(ckpts[-1][1], identity(cfg))["model"])
    return model.to(device)


def open_run(run_dir: Path, cfg: Config | None = None, model=None, n_points: int | None = None):
    """(config, device, model, evaluation prompt length) of a saved run, checked before any work."""
    cfg = cfg or load_run_config(run_dir)
    device = resolve_device(cfg.training.device)
    if model is None:
        model = load_run_model(run_dir, cfg, device)
    n_points = n_points or cfg.eval.n_points or cfg.task.n_points
    if 2 * n_points > cfg.model.n_positions:
        raise RunError(f"--n-points {n_points} needs {2 * n_points} positions; the model has n_positions={cfg.model.n_positions}")
    return cfg, device, model, n_points


def evaluate_run(run_dir: Path, cfg: Config | None = None, model=None, *, n_prompts: int | None = None,
                 n_points: int | None = None, seed: int | None = None, loops: int | None = None, tag: str | None = None,
                 step: int | None = None, max_loops: int | None = None) -> dict:
    run_dir = Path(run_dir)
    cfg, device, model, n_points = open_run(run_dir, cfg, model, n_points)
    task = make_task(cfg.task.name, cfg.task.n_dims, cfg.task.options).without_pool()  # fresh functions
    try:
        check_positions(resolve(resolve_baselines(task, cfg.eval.baselines)), n_points)
    except ValueError as e:
        raise RunError(f"eval.baselines: {e}") from None
    loops = loops or cfg.eval.loops or cfg.model.loops
    seed = cfg.eval.seed if seed is None else seed
    ev = evaluate(model, task, n_prompts=n_prompts or cfg.eval.n_prompts, n_points=n_points, loops=loops,
                  baselines=resolve_baselines(task, cfg.eval.baselines), seed=seed, batch_size=cfg.eval.batch_size,
                  device=device)
    ev["step"] = step
    suffix = f"_{tag}" if tag else ""
    write_json(run_dir / f"eval{suffix}.json", ev)
    plot_error_curves([(run_dir.name, ev)], run_dir / f"error_vs_examples{suffix}.png")
    if cfg.model.loops > 1:
        max_loops = max_loops or cfg.eval.max_loops or max(2 * cfg.model.loops, loops)
        lp = evaluate_loops(model, task, max_loops=max_loops, n_prompts=min(ev["n_prompts"], 500),
                            n_points=n_points, seed=seed, batch_size=cfg.eval.batch_size, device=device)
        write_json(run_dir / f"loops{suffix}.json", lp)
        plot_loop_curves([(run_dir.name, lp)], run_dir / f"error_vs_loops{suffix}.png")
    return ev


def read_eval(run_dir: Path, tag: str | None = None, kind: str = "eval") -> dict:
    path = Path(run_dir) / f"{kind}{'_' + tag if tag else ''}.json"
    if not path.is_file():
        raise RunError(f"{path} not found; run `iclab eval {run_dir}` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON: {e}") from None
