import json

import yaml
from typer.testing import CliRunner

from iclab.cli import app

runner = CliRunner()


def _write_cfg(tmp_path, d):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_train_end_to_end_writes_every_artifact(tmp_path, tiny_cfg_dict):
    tiny_cfg_dict["logging"]["tensorboard"] = True
    cfg = _write_cfg(tmp_path, tiny_cfg_dict)
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", str(cfg), "--out", str(out), "training.lr=2e-3"])
    assert r.exit_code == 0, r.output
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "eval.json", "error_vs_examples.png"):
        assert (out / name).is_file(), name
    assert list((out / "checkpoints").glob("step_*.safetensors"))
    assert list((out / "tensorboard").iterdir())
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["training"]["lr"] == 2e-3  # the override is what ran
    ev = json.loads((out / "eval.json").read_text())
    assert len(ev["model"]["mean"]) == 7 and set(ev["baselines"]) == {"least_squares", "knn", "averaging"}

    # re-evaluate: longer prompts, other seed, tagged output
    r = runner.invoke(app, ["eval", str(out), "--n-points", "12", "--seed", "3", "--n-prompts", "40", "--tag", "long"])
    assert r.exit_code == 0, r.output
    ev2 = json.loads((out / "eval_long.json").read_text())
    assert ev2["n_points"] == 12 and ev2["seed"] == 3 and ev2["n_prompts"] == 40
    assert (out / "error_vs_examples_long.png").is_file()
    # the line printed is the workload's summary of the record (the error at k = 2d = 6 here)
    k6 = f"normalized squared error at k=6: model {ev2['model']['mean'][6]:.4f}"
    assert r.output.strip().startswith(k6), r.output

    r = runner.invoke(app, ["plot", str(out), str(out), "--out", str(tmp_path / "both.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "both.png").stat().st_size > 1000


def test_typo_in_config_is_one_clean_line(tmp_path, tiny_cfg_dict):
    tiny_cfg_dict["training"]["learning_rate"] = 1e-3
    cfg = _write_cfg(tmp_path, tiny_cfg_dict)
    r = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2
    assert "training.learning_rate: unknown key" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def test_existing_run_dir_is_refused(tmp_path, tiny_cfg_dict):
    cfg = _write_cfg(tmp_path, tiny_cfg_dict)
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", str(cfg), "--out", str(out), "--no-eval"]).exit_code == 0
    r = runner.invoke(app, ["train", str(cfg), "--out", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output


def test_list_shows_every_registry():
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0
    for word in ("tasks", "linear_regression", "gpt2", "muon", "adamw", "least_squares", "knn", "sqrt"):
        assert word in r.output
    r = runner.invoke(app, ["list", "optimizers"])
    assert "sgd" in r.output and "linear_regression" not in r.output


def test_every_library_error_is_one_line_exit_2_from_one_place():
    """The group catches every IclabError (and OSError) of any command: one line, exit 2; an interruption
    exits 130; other exceptions are not hidden."""
    import typer

    from iclab.cli.app import _OneLineErrors
    from iclab.errors import IclabError

    class Odd(IclabError):
        pass

    mini = typer.Typer(cls=_OneLineErrors)

    @mini.command()
    def fail(kind: str):
        raise {"iclab": Odd("bad value\n  of key x"), "os": FileNotFoundError("no such file: f"), "bug": KeyError("k")}[
            kind
        ]

    @mini.command()
    def stop():
        raise KeyboardInterrupt

    r = runner.invoke(mini, ["fail", "iclab"])
    assert r.exit_code == 2 and r.output == "error: bad value of key x\n", r.output
    r = runner.invoke(mini, ["fail", "os"])
    assert r.exit_code == 2 and r.output == "error: no such file: f\n", r.output
    r = runner.invoke(mini, ["fail", "bug"])
    assert r.exit_code == 1 and isinstance(r.exception, KeyError)
    r = runner.invoke(mini, ["stop"])
    assert r.exit_code == 130 and "interrupted" in r.output


def test_eval_refuses_options_its_workload_does_not_take(tmp_path, tiny_cfg_dict):
    cfg = _write_cfg(tmp_path, tiny_cfg_dict)
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", str(cfg), "--out", str(out), "--no-eval"]).exit_code == 0
    for args, msg in (
        (["--seq-len", "4"], "--seq-len: not an evaluation option of task linear_regression (regression); it takes"),
        (["--all-shifts", "--tag", "x"], "--all-shifts excludes --shift and --tag"),
        (["--task", "sorting"], "unknown function class 'sorting'"),
    ):
        r = runner.invoke(app, ["eval", str(out), *args])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and msg in r.output, (args, r.output)
    assert not list(out.glob("eval*.json"))  # refused before anything was written
