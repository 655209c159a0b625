"""Bad input everywhere: every CLI error is one readable line (exit 2, no traceback), names the problem,
and a refused run leaves no run directory behind. Run directories are guarded (exists, lock)."""

import copy
import json
import shutil

import pytest
import torch
import yaml
from _faultkit import cfg_dict, write_yaml
from filelock import FileLock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import ConfigError, dump_config, validate
from iclab.runs import RunError, train_run

runner = CliRunner()


def one_line_error(r, *needles) -> str:
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("done") / "run"
    train_run(validate(cfg_dict(training={"steps": 6})), run)
    return run


# --- unknown names list the valid ones ----------------------------------------------------------------
@pytest.mark.parametrize(
    "override, needles",
    [
        ("task.name=quadratic_nope", ["unknown task 'quadratic_nope'", "linear_regression"]),
        ("model.name=lstm", ["unknown model 'lstm'", "gpt2"]),
        ("training.optimizer.name=lionx", ["unknown optimizer 'lionx'", "adamw", "muon", "sgd"]),
        ("eval.baselines=[least_squares,oracle]", ["unknown baseline 'oracle'", "least_squares", "knn"]),
        (
            "curriculum.dims={start: 2, end: 4, shape: exp}",
            ["unknown curriculum shape 'exp'", "cos", "linear", "sqrt", "step"],
        ),
    ],
)
def test_unknown_names_list_the_valid_ones(tmp_path, override, needles):
    cfg = write_yaml(tmp_path / "c.yaml", cfg_dict())
    r = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run"), override])
    one_line_error(r, *needles)
    assert not (tmp_path / "run").exists()


# --- impossible values are refused before any work, leaving no directory ----------------------------
@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["model.loops=4", "model.loop_window=5"], "loop_window (T=5) must not exceed loops (b=4)"),
        (["model.drop_tokens=2", "model.min_tokens=19"], "model.min_tokens=19 exceeds the 18 tokens"),
        (["model.n_embd=0"], "model.n_embd"),
        (["training.batch_size=-8"], "training.batch_size"),
        (["training.steps=0"], "training.steps"),
        (["task.n_points=17"], "task.n_points=17 needs 34 positions > model.n_positions=32"),
        (["eval.n_points=20"], "eval.n_points=20 needs 40 positions"),
        (["curriculum.dims.end=6"], "curriculum.dims.end=6 exceeds task.n_dims=4"),
        (["model.n_head=3"], "n_embd=16 must be divisible by n_head=3"),
        (["training.warmup_steps=99"], "training.warmup_steps=99 exceeds training.steps=30"),
        (["seed=-1"], "seed"),
        (["training.lr=fast"], "training.lr"),
        (["training.nonfinite=ignore"], "training.nonfinite"),
        (["training.device=tpu"], "training.device='tpu' is not a device"),
        (["training.device=meta"], "training.device='meta' is not supported"),
        (["training.device=warp9"], "training.device='warp9' is not a device"),
        (["training.learning_rate=1e-3"], "training.learning_rate: unknown key"),
        (["training.optimizer.options.momentum=0.9"], "momentum: unknown key"),  # adamw has no momentum
        (["task.options.sparsity=3"], "sparsity"),
        (["training.lr"], "not of the form key=value"),
        (["training..lr=1"], "empty key"),
        (["training.lr=[1"], "not valid YAML"),
        (["seed.x=1"], "'seed' is not a section"),
    ],
)
def test_impossible_values_are_refused_before_any_work(tmp_path, overrides, needle):
    cfg = write_yaml(tmp_path / "c.yaml", cfg_dict())
    out = tmp_path / "nested" / "run"
    r = runner.invoke(app, ["train", str(cfg), "--out", str(out), *overrides])
    one_line_error(r, needle)
    assert not (tmp_path / "nested").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_one_line_before_the_run_dir_exists(tmp_path, device):
    cfg = write_yaml(tmp_path / "c.yaml", cfg_dict(training={"device": device}))
    r = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    one_line_error(r, f"training.device='{device}' but CUDA is not available")
    assert not (tmp_path / "run").exists()


# --- every command, every kind of bad argument --------------------------------------------------------
def _cases(tmp_path, done_run):
    good = write_yaml(tmp_path / "good.yaml", cfg_dict())
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "broken.yaml").write_text("task: {name: [\n")
    not_a_run = tmp_path / "empty_dir"
    not_a_run.mkdir()
    bad_cfg_run = tmp_path / "bad_cfg_run"
    shutil.copytree(done_run, bad_cfg_run)
    (bad_cfg_run / "config.yaml").write_text("model: {n_embd: -1}\n")
    torn_run = tmp_path / "torn_run"
    shutil.copytree(done_run, torn_run)
    (torn_run / "model.safetensors").write_bytes((torn_run / "model.safetensors").read_bytes()[:50])
    no_eval = tmp_path / "no_eval"
    shutil.copytree(done_run, no_eval)
    (no_eval / "eval.json").unlink()
    garbled_eval = tmp_path / "garbled_eval"
    shutil.copytree(done_run, garbled_eval)
    (garbled_eval / "eval.json").write_text("{")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return [
        ([], None),  # (no args prints the help; checked separately)
        (["nonsense"], "No such command 'nonsense'"),
        (["train"], "a CONFIG file is required"),
        (["train", str(tmp_path / "missing.yaml")], "config file not found"),
        (["train", str(tmp_path / "list.yaml")], "must hold a mapping"),
        (["train", str(tmp_path / "broken.yaml")], "is not valid YAML"),
        (["train", str(good), "--bogus-flag"], "No such option"),
        (["train", str(good), "--out", str(a_file)], "exists and is not a directory"),
        (["train", str(good), "--out", str(done_run)], "already exists; use --resume"),
        (["train", "--resume", str(tmp_path / "nowhere")], "not an iclab run directory"),
        (["train", "--resume", str(not_a_run)], "not an iclab run directory"),
        (["train", "--resume", str(bad_cfg_run)], "model.n_embd"),
        (["train", "--resume", str(done_run), "training.lr=1"], "overrides cannot be combined with --resume"),
        (["train", "--resume", str(done_run), "--overwrite"], "exclude each other"),
        (["train", str(good), "--resume", str(done_run)], "differs from the run's config.yaml"),
        (["eval"], "Missing argument"),
        (["eval", str(tmp_path / "nowhere")], "not an iclab run directory"),
        (["eval", str(bad_cfg_run)], "model.n_embd"),
        (["eval", str(torn_run)], "model.safetensors is unreadable"),
        (["eval", str(done_run), "--n-points", "17"], "needs 34 positions; the model has n_positions=32"),
        (["eval", str(done_run), "--n-prompts", "0"], "--n-prompts"),
        (["eval", str(done_run), "--n-prompts", "many"], "--n-prompts"),
        (["eval", str(done_run), "--seed", "-3"], "--seed"),
        (["plot"], "Missing argument"),
        (["plot", str(no_eval)], "eval.json not found"),
        (["plot", str(garbled_eval)], "is not valid JSON"),
        (
            ["plot", str(done_run), "--out", str(tmp_path / "no" / "such" / "dir" / "f.png")],
            "No such file or directory",
        ),
        (["plot", str(done_run), "--loops"], "loops.json not found"),
        (["list", "widgets"], "is not one of"),
        (["curriculum"], "Missing argument"),
        (["curriculum", str(tmp_path / "missing.yaml")], "config file not found"),
        (["curriculum", str(good), "curriculum.points.start=0"], "curriculum.points.start"),
        (["curriculum", str(good), "--rows", "1"], "--rows"),
    ]


def test_every_command_fails_in_one_line(tmp_path, done_run):
    before = json.loads((done_run / "eval.json").read_text())
    for args, needle in _cases(tmp_path, done_run):
        r = runner.invoke(app, args)
        if needle is None:
            assert r.exit_code == 2 and "Usage" in r.output and "Traceback" not in r.output
            continue
        one_line_error(r, needle)
    assert json.loads((done_run / "eval.json").read_text()) == before  # the failed commands changed nothing


# --- run directories -----------------------------------------------------------------------------------
def test_existing_dir_needs_resume_or_overwrite(tmp_path, done_run):
    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    with pytest.raises(RunError, match="already exists"):
        train_run(validate(cfg_dict(training={"steps": 6})), run)
    train_run(validate(cfg_dict(training={"steps": 3, "warmup_steps": 1})), run, overwrite=True, evaluate_after=False)
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["steps"] == 3
    assert not (run / "eval.json").exists()  # --overwrite replaced the old run entirely


def test_a_held_lock_keeps_a_second_writer_out(tmp_path, done_run):
    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    snapshot = sorted(p.name for p in run.rglob("*"))
    with FileLock(str(run / ".lock")):  # another process is writing this run
        with pytest.raises(RunError, match="in use by another iclab process"):
            train_run(None, run, resume=True)
        with pytest.raises(RunError, match="in use by another iclab process"):
            train_run(validate(cfg_dict()), run, overwrite=True)
        r = runner.invoke(app, ["train", "--resume", str(run)])
        one_line_error(r, "in use by another iclab process")
        assert sorted(p.name for p in run.rglob("*")) == snapshot  # nothing deleted or written
    train_run(None, run, resume=True, evaluate_after=False)  # released: fine again


# --- random invalid configs (property-based) -----------------------------------------------------------
INT_KEYS = [
    ("task", "n_dims"),
    ("task", "n_points"),
    ("model", "n_embd"),
    ("model", "n_layer"),
    ("model", "n_head"),
    ("model", "n_positions"),
    ("model", "loops"),
    ("training", "steps"),
    ("training", "batch_size"),
    ("eval", "n_prompts"),
    ("eval", "batch_size"),
    ("logging", "log_every"),
    ("logging", "ckpt_every"),
    ("logging", "keep_last"),
]
SECTIONS = ["task", "model", "training", "curriculum", "eval", "logging"]


def _invalid_mutation():
    """Strategies of edits, each of which makes any config invalid on its own."""
    key = st.sampled_from(INT_KEYS)
    return st.one_of(
        st.tuples(st.just("non_positive"), key, st.integers(-(10**6), 0)),
        st.tuples(st.just("wrong_type"), key, st.sampled_from(["ten", [1, 2], {"a": 1}, "", None, 2.5])),
        st.tuples(
            st.just("unknown_key"), st.sampled_from(SECTIONS + [None]), st.text("abcxyz_", min_size=1, max_size=8)
        ),
        st.tuples(st.just("section_type"), st.sampled_from(SECTIONS), st.sampled_from([[1], "x", 3])),
        st.tuples(
            st.just("inconsistent"),
            st.sampled_from(["window", "heads", "positions", "curriculum", "warmup", "min_tokens", "eval_points"]),
            st.integers(1, 5),
        ),
        st.tuples(
            st.just("bad_name"),
            st.sampled_from(["task", "model", "optimizer", "baseline", "nonfinite", "shape"]),
            st.text("qwz", min_size=1, max_size=5),
        ),
    )


def _apply(d, m):
    kind = m[0]
    if kind in ("non_positive", "wrong_type"):
        (sec, k), v = m[1], m[2]
        d[sec][k] = v
    elif kind == "unknown_key":
        sec, k = m[1], "zz_" + m[2]
        (d if sec is None else d.setdefault(sec, {}))[k] = 1
    elif kind == "section_type":
        d[m[1]] = m[2]
    elif kind == "inconsistent":
        what, n = m[1], m[2]
        if what == "window":
            d["model"].update(loops=n, loop_window=n + 1)
        elif what == "heads":
            d["model"].update(n_embd=16 * n + 1, n_head=2)
        elif what == "positions":
            d["task"]["n_points"] = d["model"]["n_positions"] // 2 + n
        elif what == "curriculum":
            d["curriculum"] = {"dims": {"start": 1, "end": d["task"]["n_dims"] + n}}
        elif what == "warmup":
            d["training"]["warmup_steps"] = d["training"]["steps"] + n
        elif what == "min_tokens":
            d["model"].update(drop_tokens=1, min_tokens=2 * d["task"]["n_points"] + n)
        elif what == "eval_points":
            d["eval"]["n_points"] = d["model"]["n_positions"] // 2 + n
    elif kind == "bad_name":
        name = "no_" + m[2]
        if m[1] == "task":
            d["task"]["name"] = name
        elif m[1] == "model":
            d["model"]["name"] = name
        elif m[1] == "optimizer":
            d["training"]["optimizer"] = {"name": name}
        elif m[1] == "baseline":
            d["eval"]["baselines"] = ["least_squares", name]
        elif m[1] == "nonfinite":
            d["training"]["nonfinite"] = name
        else:
            d["curriculum"] = {"points": {"start": 2, "end": 5, "shape": name}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_invalid_mutation(), min_size=1, max_size=3), via_cli=st.booleans())
def test_random_invalid_configs_fail_cleanly_and_leave_nothing(tmp_path, mutations, via_cli):
    d = copy.deepcopy(cfg_dict())
    # cross-field edits first (they read the valid base values); each later edit only adds another fault
    for m in sorted(mutations, key=lambda m: m[0] not in ("inconsistent", "bad_name")):
        if all(isinstance(d.get(s), dict) for s in SECTIONS):
            _apply(d, m)
    out = tmp_path / "runs" / "r"
    try:
        if via_cli:
            cfg = write_yaml(tmp_path / "c.yaml", d)
            r = runner.invoke(app, ["train", str(cfg), "--out", str(out), "--no-eval"])
            one_line_error(r)
        else:
            with pytest.raises((ConfigError, RunError)) as ei:
                train_run(validate(d), out, evaluate_after=False)
            assert "\n" not in str(ei.value)
        assert not (tmp_path / "runs").exists()
    finally:
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)


@settings(max_examples=25, deadline=None)
@given(
    n_dims=st.integers(1, 8),
    n_points=st.integers(1, 20),
    layers=st.integers(1, 4),
    loops=st.integers(1, 6),
    optimizer=st.sampled_from(["adam", "adamw", "sgd", "rmsprop", "adagrad", "adadelta", "muon"]),
    seed=st.integers(0, 2**63 - 1),
    clip=st.sampled_from([None, 0.5]),
)
def test_valid_configs_round_trip_through_config_yaml(n_dims, n_points, layers, loops, optimizer, seed, clip):
    """What resume reads back from config.yaml is exactly the config that ran (so its checkpoints match)."""
    from iclab.training.checkpoint import identity

    d = cfg_dict(
        seed=seed,
        task={"n_dims": n_dims, "n_points": n_points, "name": "linear_regression"},
        model={"n_layer": layers, "loops": loops, "n_positions": 2 * n_points},
        training={"optimizer": {"name": optimizer}, "grad_clip": clip},
    )
    d["curriculum"] = {}
    cfg = validate(d)
    back = validate(yaml.safe_load(dump_config(cfg)))
    assert back == cfg and identity(back) == identity(cfg)


def test_the_lock_is_released_when_a_run_ends_or_fails(tmp_path):
    """Released on exit, not when the lock object happens to be garbage-collected."""
    from iclab.runs import _lock

    def boom(rec):
        raise RuntimeError("user callback failed")

    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        train_run(validate(cfg_dict()), run, on_log=boom)
    with _lock(run) as held:
        with pytest.raises(RunError, match="in use"):
            train_run(None, run, resume=True)
    lock = FileLock(str(run / ".lock"))
    lock.acquire(timeout=0)  # raises Timeout if `held` still held it
    lock.release()
    assert held is not None
