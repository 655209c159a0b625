"""Run directories: create (or resume) one, train into it, evaluate it, load it back.

RUN_DIR/
  config.yaml              the resolved config that ran (every default filled in)
  metrics.jsonl            one JSON record per log interval (step, loss, lr, steps_per_s, curriculum/*)
  tensorboard/             TensorBoard event files
  checkpoints/             step_XXXXXXXXX.safetensors (atomic; last `keep_last` + milestones kept)
  model.safetensors        final weights
  eval.json                per-position errors of the model and the baselines (schema: iclab/evaluation/regression.py)
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

from iclab.config import Config, ConfigError, dump_config, validate
from iclab.errors import IclabError
from iclab.files import write_json, write_text
from iclab.training.checkpoint import (
    INIT_WEIGHTS,
    checkpoint_path,
    identity,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    read_metadata,
    save_weights,
)
from iclab.training.device import run_device
from iclab.training.optim import eval_weights_from_state
from iclab.training.trainer import Trainer
from iclab.workloads import make_workload
from iclab.workloads.base import check_loops


class RunError(IclabError, RuntimeError):
    pass


@contextlib.contextmanager
def _lock(run_dir: Path):
    """Hold the run's lock (acquired once, released on exit even if the run fails)."""
    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(
            f"run directory {run_dir} is in use by another iclab process (lock {run_dir / '.lock'})"
        ) from None
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
            raise RunError(
                f"--resume {run_dir}: the given config differs from the run's config.yaml; resume uses the saved one"
            )
        return saved
    if cfg is None:
        raise RunError("a config is required to start a run")
    if run_dir.exists() and any(p.name != ".lock" for p in run_dir.iterdir()) and not overwrite:
        raise RunError(
            f"run directory {run_dir} already exists; use --resume to continue it or --overwrite to replace it"
        )
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


def train_run(
    cfg: Config | None,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    evaluate_after: bool = True,
    on_log=None,
) -> dict:
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
            trainer.workload.start_run(run_dir)
        last = trainer.run(on_log=on_log)
        model = trainer.full_model()  # the model itself; data parallel with FSDP: gathered from every rank
        save_weights(
            run_dir / "model.safetensors",
            model.state_dict(),
            identity=identity(cfg, trainer.workload),
            step=trainer.step,
        )
        result = {"final": last}
        if evaluate_after:
            result["eval"] = evaluate_run(run_dir, cfg=cfg, model=model, step=trainer.step, workload=trainer.workload)
            result["summary"] = trainer.workload.summary(result["eval"])
    return result


def run_state(run_dir: Path, cfg: Config, workload=None, step: int | None = None) -> tuple[dict, int]:
    """(state dict, step) of a run's weights as they are evaluated. `step` None: the final weights if training
    finished, else the latest checkpoint; 0: the initial weights (init.safetensors); else that checkpoint.
    From a checkpoint of a schedule-free optimizer, the evaluation weights x (the checkpoint holds y)."""
    run_dir, workload = Path(run_dir), workload or make_workload(cfg, run_dir)
    ident, ckpt_dir = identity(cfg, workload), Path(run_dir) / "checkpoints"
    final = run_dir / "model.safetensors"
    if step is None and final.is_file():
        return load_weights(final, ident), int(read_metadata(final).get("step", cfg.training.steps))
    if step is None:
        ckpts = list_checkpoints(ckpt_dir)
        if not ckpts:
            raise RunError(f"{run_dir} has neither model.safetensors nor a checkpoint")
        step = ckpts[-1][0]
    if step == 0:
        path = run_dir / INIT_WEIGHTS
        if not path.is_file():
            raise RunError(
                f"{path} not found: the run was trained before iclab saved the initial weights "
                "(--directions init and --checkpoint 0 need it); train it again"
            )
        return load_weights(path, ident), 0
    path = checkpoint_path(ckpt_dir, step)
    if not path.is_file():
        have = [s for s, _ in list_checkpoints(ckpt_dir)]
        raise RunError(
            f"--checkpoint {step}: {path} does not exist; the run has steps 0 (init), "
            f"{', '.join(map(str, have)) or 'no checkpoints'} and the final weights"
        )
    state = load_checkpoint(path, ident)
    model = workload.build_model()
    model.load_state_dict(state["model"])
    eval_weights_from_state(model, cfg.training, state["optim"])  # schedule-free: evaluate x, not y
    return model.state_dict(), step


def load_run_model(run_dir: Path, cfg: Config, device, workload=None):
    """The model of a run (the final weights if training finished, else the latest checkpoint), on `device`."""
    workload = workload or make_workload(cfg, run_dir)
    model = workload.build_model()
    model.load_state_dict(run_state(run_dir, cfg, workload)[0])
    return model.to(device)


def weights_step(run_dir: Path) -> int | None:
    """The training step of the weights `load_run_model` loads: model.safetensors' recorded step, else the
    latest checkpoint's (None when neither says)."""
    final = Path(run_dir) / "model.safetensors"
    if final.is_file():
        from safetensors import safe_open

        try:  # an unreadable file: None here; loading the weights says what is wrong with it
            with safe_open(str(final), "pt") as f:
                meta = f.metadata() or {}
            step = json.loads(meta.get("iclab", "{}")).get("step")
        except Exception:
            step = None
        return int(step) if step is not None and str(step).isdigit() else None
    ckpts = list_checkpoints(Path(run_dir) / "checkpoints")
    return ckpts[-1][0] if ckpts else None


def open_run(run_dir: Path, cfg: Config | None = None, model=None, n_points: int | None = None, workload=None):
    """(config, device, model, evaluation prompt length) of a saved run; the workload checks the length
    when it evaluates."""
    cfg = cfg or load_run_config(run_dir)
    device = run_device(cfg.training.device)
    n_points = n_points or cfg.eval.n_points or cfg.task.n_points
    if model is None:
        model = load_run_model(run_dir, cfg, device, workload)
    return cfg, device, model, n_points


def evaluate_run(run_dir: Path, cfg: Config | None = None, model=None, *, workload=None, **options) -> dict:
    """Evaluate a run with its workload's evaluation (writes eval*.json and figures into the run).
    Options are the workload's `eval_options` (regression: n_prompts, n_points, seed, loops, tag, step,
    max_loops, and shift, shift_options, task, task_options, baselines, all_shifts, write_figure); any
    other is refused before the model is loaded."""
    run_dir = Path(run_dir)
    cfg = cfg or load_run_config(run_dir)
    workload = workload or make_workload(cfg, run_dir)
    workload.check_eval_options(options)
    if options.get("step") is None and model is None:  # a re-evaluation: the step of the weights it loads
        options["step"] = weights_step(run_dir)
    cfg, device, model, _ = open_run(run_dir, cfg, model, options.get("n_points"), workload)
    return workload.evaluate(run_dir, model, device, **options)


def evaluate_multiple_choice(
    run_dir: str | Path, file: str | Path, *, tag: str | None = None, loops: int | None = None
) -> dict:
    """Score a run whose workload has a text tokenizer (a language model) on a question file
    (iclab/evaluation/multiple_choice.py); writes RUN_DIR/eval_mc_<file stem>[_<tag>].json. The file is
    checked before the model is loaded."""
    from iclab.evaluation import multiple_choice as mc

    run_dir, file = Path(run_dir), Path(file)
    cfg = load_run_config(run_dir)
    workload = make_workload(cfg, run_dir)
    tokenizer = getattr(workload, "tokenizer", None)
    if tokenizer is None:
        raise mc.MultipleChoiceError(
            f"task {cfg.task.name} has no text tokenizer; multiple choice needs a language-model run"
        )
    check_loops(cfg, loops)
    questions = mc.read_questions(file)  # before loading the model: a bad file fails fast
    device = run_device(cfg.training.device)
    model = load_run_model(run_dir, cfg, device, workload)
    loops = loops or cfg.eval.loops or cfg.model.loops
    record = {
        "file": str(file),
        "sha256": mc.file_sha256(file),
        "task": cfg.task.name,
        "tokenizer": tokenizer.kind,
        "tokenizer_fingerprint": tokenizer.fingerprint(),
        "loops": loops,
        **mc.score_questions(model, tokenizer, questions, device, loops=loops),
    }
    write_json(run_dir / f"eval_mc_{file.stem}{'_' + tag if tag else ''}.json", record)
    return record


def read_eval(run_dir: Path, tag: str | None = None, kind: str = "eval") -> dict:
    path = Path(run_dir) / f"{kind}{'_' + tag if tag else ''}.json"
    if not path.is_file():
        raise RunError(f"{path} not found; run `iclab eval {run_dir}` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON: {e}") from None
