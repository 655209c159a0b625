"""Issue 26: a command line that never surprises. Nothing overwritten in silence (other options: their own file,
or --tag/--force), no option ignored (refused with one line, caps stated), one numbering of layers (0-based, as
`iclab surgery`), units labelled, and the small things (--version, "did you mean", sample's newline)."""

import json
import math

import pytest
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.runs import train_run

runner = CliRunner()


def _ok(args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (args, r.output)
    return r.output


def _refused(args, needle):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2 and needle in r.output and r.output.count("\n") == 1, (args, r.output)
    return r.output


@pytest.fixture(scope="module")
def reg_run(tiny_run):
    return tiny_run


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("vocab_lm")
    corpus = base / "corpus.txt"
    corpus.write_text("def f(x):\n    return x + 1\n" * 200)
    cfg = {
        "seed": 0,
        "task": {
            "name": "language_model",
            "seq_len": 16,
            "options": {"corpus": str(corpus), "tokenizer": "char", "data_dir": str(base / "data")},
        },
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16},
        "training": {"steps": 10, "batch_size": 4, "lr": 3e-3, "device": "cpu"},
        "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
    }
    train_run(validate(cfg), base / "lm")
    return base / "lm"


# --- 1. nothing overwritten in silence --------------------------------------------------------------------
def test_loops_on_a_model_that_is_not_looped_is_refused_and_nothing_written(reg_run, lm_run):
    before = (reg_run / "eval.json").read_bytes()
    _refused(["eval", reg_run, "--loops", "3"], "--loops 3: the model is not looped (model.loops=1)")
    _refused(["eval", lm_run, "--loops", "3"], "the model is not looped")
    _refused(["lens", reg_run, "--loops", "3"], "the model is not looped")
    _refused(["probe", reg_run, "-t", "true_w", "--loops", "2"], "the model is not looped")
    assert (reg_run / "eval.json").read_bytes() == before
    assert not list(reg_run.glob("*loops*"))


def test_eval_with_other_options_keeps_both_results_and_records_the_step(reg_run):
    default = json.loads((reg_run / "eval.json").read_text())
    out = _ok(["eval", reg_run, "--seed", "3", "--n-prompts", "40"])
    assert "eval_nprompts40_seed3.json" in out
    other = json.loads((reg_run / "eval_nprompts40_seed3.json").read_text())
    assert other["seed"] == 3 and other["n_prompts"] == 40 and other["step"] == 20  # the step of the saved weights
    assert json.loads((reg_run / "eval.json").read_text()) == default  # untouched
    _ok(["eval", reg_run])  # the defaults again: eval.json, now with its step rather than null
    assert json.loads((reg_run / "eval.json").read_text())["step"] == 20


def test_eval_on_another_task_with_other_options_keeps_both(reg_run):
    """--task/--shift evaluations are named by the task and shift, and by any other non-default option."""
    _ok(["eval", reg_run, "--task", "sparse_linear_regression"])
    _ok(["eval", reg_run, "--task", "sparse_linear_regression", "--seed", "3"])
    names = sorted(p.name for p in reg_run.glob("eval_*sparse_linear_regression*.json"))
    assert len(names) == 2 and any(n.endswith("_seed3.json") for n in names), names
    seeds = {json.loads((reg_run / n).read_text())["seed"] for n in names}
    assert len(seeds) == 2 and 3 in seeds


def test_lens_twice_with_different_options_keeps_both(reg_run):
    _ok(["lens", reg_run])
    _ok(["lens", reg_run, "--seed", "2"])
    _ok(["lens", reg_run, "--seed", "2", "--tag", "mine"])
    a, b, c = (json.loads((reg_run / f"lens{s}.json").read_text()) for s in ("", "_seed2", "_mine"))
    assert (a["seed"], b["seed"], c["seed"]) == (0, 2, 2) and a["error"] != b["error"] and b["error"] == c["error"]
    assert (reg_run / "lens_seed2.png").is_file() and (reg_run / "lens_mine.png").is_file()


def test_probe_keeps_both_results_or_refuses_to_replace_other_targets(reg_run):
    _ok(["probe", reg_run, "-t", "true_w", "--n-prompts", "100"])
    _ok(["probe", reg_run, "-t", "true_w", "--n-prompts", "100", "--seed", "1"])
    assert {
        json.loads((reg_run / f).read_text())["seed"]
        for f in ("probes_nprompts100.json", "probes_nprompts100_seed1.json")
    } == {0, 1}
    before = (reg_run / "probes_nprompts100.json").read_bytes()
    _refused(["probe", reg_run, "-t", "least_squares", "--n-prompts", "100"], "give --tag NAME to keep both")
    assert (reg_run / "probes_nprompts100.json").read_bytes() == before
    _ok(["probe", reg_run, "-t", "least_squares", "--n-prompts", "100", "--force"])
    assert json.loads((reg_run / "probes_nprompts100.json").read_text())["targets"] == ["least_squares"]


def test_surgery_keeps_both_results_or_refuses_to_replace_other_ops(reg_run):
    _ok(["surgery", reg_run, "--op", "swap:0,1"])
    before = (reg_run / "surgery.json").read_bytes()
    _refused(["surgery", reg_run, "--op", "drop:0"], "--out-tag NAME to keep both, or --force")
    assert (reg_run / "surgery.json").read_bytes() == before
    _ok(["surgery", reg_run, "--op", "drop:0", "--seed", "4"])  # other options: their own file
    assert json.loads((reg_run / "surgery_seed4.json").read_text())["seed"] == 4
    _ok(["surgery", reg_run, "--op", "drop:0", "--out-tag", "dropped"])
    assert list(json.loads((reg_run / "surgery_dropped.json").read_text())["variants"]) == ["original", "drop:0"]
    assert list(json.loads((reg_run / "surgery.json").read_text())["variants"]) == ["original", "swap:0,1"]


def test_plot_refuses_to_replace_a_figure_without_force(reg_run, tmp_path):
    fig = tmp_path / "e.png"
    _ok(["plot", reg_run, "--out", fig])
    _refused(["plot", reg_run, reg_run, "--out", fig], "--force to replace it")
    _ok(["plot", reg_run, reg_run, "--out", fig, "--force"])


# --- 2. no option ignored ------------------------------------------------------------------------------
def test_options_a_workload_ignores_are_refused(lm_run):
    _refused(["eval", lm_run, "--n-prompts", "7"], "--n-prompts: not an evaluation option of task language_model")
    _refused(["eval", lm_run, "--seed", "7"], "--seed: not an evaluation option")
    _refused(["lens", lm_run, "--n-prompts", "1000"], "reads at most 512 sequences")
    assert not list(lm_run.glob("lens*")) and not list(lm_run.glob("eval_*"))


def test_surgery_without_an_op_is_refused(reg_run):
    _refused(["surgery", reg_run, "--out-tag", "none"], "give at least one --op")
    assert not (reg_run / "surgery_none.json").exists()


# --- 3. one vocabulary ------------------------------------------------------------------------------------
def test_layers_are_numbered_from_0_in_lens_probe_and_surgery(reg_run):
    _ok(["lens", reg_run, "--tag", "numbering"])
    _ok(["probe", reg_run, "-t", "true_w", "--n-prompts", "50", "--tag", "numbering"])
    _ok(["surgery", reg_run, "--op", "reverse", "--out-tag", "numbering"])
    lens, probes, surgery = (
        json.loads((reg_run / f"{k}_numbering.json").read_text()) for k in ("lens", "probes", "surgery")
    )
    assert lens["layers"] == ["0", "1"] and probes["layers"] == ["embed", "0", "1"]
    assert surgery["variants"]["original"]["order"] == [0, 1] and surgery["variants"]["reverse"]["order"] == [1, 0]


def test_token_lens_reports_nats_and_bits_and_its_sequence_count(lm_run):
    out = _ok(["lens", lm_run, "--n-prompts", "8"])
    rec = json.loads((lm_run / "lens_nprompts8.json").read_text())
    assert rec["layers"] == ["0", "1"] and rec["n_prompts"] == 8
    assert rec["bits"] == pytest.approx([v / math.log(2) for v in rec["loss"]])
    assert rec["model_bits"] == pytest.approx(rec["model_loss"] / math.log(2))
    assert "nats" in out and "bits" in out and "over 8 sequences" in out


def test_lm_eval_figure_and_progress_bar_label_their_units(lm_run):
    from iclab.training.progress import loss_text

    ev = json.loads((lm_run / "eval.json").read_text())
    assert ev["bits"] == pytest.approx(ev["loss"] / math.log(2))
    assert loss_text(math.log(2) * 3, nats=True) == "loss 2.0794 nats = 3.0000 bits per token"
    assert loss_text(0.5) == "loss 0.5000"


# --- 4. small things ---------------------------------------------------------------------------------------
def test_version_and_did_you_mean(tmp_path):
    from iclab import __version__

    assert _ok(["--version"]).strip() == f"iclab {__version__}"
    _refused(["evl", tmp_path], "Did you mean 'eval'?")
    _refused(["sweep", "stat", tmp_path], "did you mean 'status'?")
    assert not (tmp_path / "sweep.json").exists()


def test_sample_ends_with_a_newline(lm_run):
    out = _ok(["sample", lm_run, "--tokens", "5", "--prompt", "def"])
    assert out.startswith("def") and out.endswith("\n")


def test_options_tag_names_only_non_default_options():
    from iclab.files import options_tag

    assert options_tag({"n_prompts": None, "seed": 0, "loops": 3}, {"seed": 0}) == "loops3"
    assert options_tag({"seed": 5, "task_options": {"scale": 2}}) == "seed5_taskoptionsscale2"
    assert options_tag({"seed": None}) == ""
