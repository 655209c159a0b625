"""Layer surgery (iclab/analysis/surgery.py): op parsing, the rearranged forward pass against models built
independently (blocks physically permuted, or looped), and `iclab surgery` end to end on tiny runs."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from iclab.analysis.surgery import SurgeryError, parse_op, parse_ops, run_surgery
from iclab.cli import app
from iclab.config import ModelConfig, validate
from iclab.evaluation.regression import evaluate
from iclab.models.transformer import ICLTransformer
from iclab.runs import load_run_config, load_run_model, train_run
from iclab.workloads import make_workload

runner = CliRunner()


@pytest.mark.parametrize(
    "op, order, loops",
    [
        ("identity", None, 1),
        ("duplicate:0", [0, 0, 1, 2, 3], 1),
        ("duplicate:3", [0, 1, 2, 3, 3], 1),
        ("repeat:1-2:x2", [0, 1, 2, 1, 2, 3], 1),
        ("repeat:2-2:x3", [0, 1, 2, 2, 2, 3], 1),
        ("repeat:0-3:x2", [0, 1, 2, 3, 0, 1, 2, 3], 1),
        ("repeat:0-1:x1", [0, 1, 2, 3], 1),
        ("drop:0", [1, 2, 3], 1),
        ("drop:3", [0, 1, 2], 1),
        ("swap:1,2", [0, 2, 1, 3], 1),
        ("swap:3,0", [3, 1, 2, 0], 1),
        ("reverse", [3, 2, 1, 0], 1),
        ("loops:3", None, 3),
    ],
)
def test_each_op_gives_the_hand_written_order(op, order, loops):
    v = parse_op(op, 4)
    assert (v.order, v.loops) == (order, loops)
    assert v.name == ("original" if op == "identity" else op)


def test_rearranged_looped_model_keeps_its_trained_loops():
    assert parse_op("swap:0,1", 2, trained_loops=5).loops == 5 and parse_op("loops:7", 2, trained_loops=5).loops == 7


def test_shuffle_is_a_seeded_permutation():
    n = 8
    orders = {s: parse_op(f"shuffle:{s}", n).order for s in range(5)}
    for s, order in orders.items():
        assert sorted(order) == list(range(n))
        assert order == np.random.default_rng(s).permutation(n).tolist()
        assert parse_op(f"shuffle:{s}", n).order == order  # same seed, same order
    assert len({tuple(o) for o in orders.values()}) == 5  # different seeds, different orders
    assert parse_op("shuffle", n).order == orders[0] and parse_op("shuffle", n).name == "shuffle:0"


def test_parse_ops_puts_the_original_first_once():
    vs = parse_ops(["reverse", "identity", "reverse", "drop:1"], 3)
    assert [v.name for v in vs] == ["original", "reverse", "drop:1"]


@pytest.mark.parametrize(
    "op, n, expected",
    [
        ("drop:99", 4, "layer 99 out of range 0..3 (the model has 4 blocks)"),
        ("swap:1", 4, "expected swap:i,j"),
        ("swap:1,4", 4, "layer 4 out of range 0..3"),
        ("repeat:2-1:x3", 4, "range 2-1 is empty"),
        ("repeat:1-2:x0", 4, "repeat count must be >= 1"),
        ("repeat:1-2", 4, "expected repeat:i-j:xN"),
        ("duplicate:x", 4, "'x' is not a layer index; expected an integer in 0..3"),
        ("duplicate:-1", 4, "not a layer index"),
        ("drop:0", 1, "leaves none"),
        ("loops:0", 4, "expected loops:N with N >= 1"),
        ("shuffle:a", 4, "not a seed"),
        ("frobnicate:1", 4, "unknown op; expected one of"),
        ("reverse:1", 4, "unknown op"),
    ],
)
def test_bad_ops_are_one_line_errors_naming_the_op(op, n, expected):
    with pytest.raises(SurgeryError) as e:
        parse_op(op, n)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"op {op!r}: ") and expected in msg
    assert isinstance(e.value, ValueError)


def _xy(n_dims=3, n=6, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, n_dims, generator=g), torch.randn(batch, n, generator=g)


def test_duplicate_of_a_one_block_model_equals_two_loops():
    """With injection=none (h_0 = e, u_t = h_t), pos_embedding=once (wpe added at t = 0 only) and
    final_norm=once (ln_f only before the read-out), two loop iterations compute
        u_0 = e + wpe,  h_1 = B(u_0),  u_1 = h_1,  h_2 = B(h_1),  out = read_out(ln_f(h_2)),
    i.e. read_out(ln_f(B(B(e + wpe)))): exactly one iteration with the order [0, 0] (duplicate:0).
    With the defaults (injection add, wpe and ln_f every loop) the two differ: the control below."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_embd=16, n_layer=1, n_head=2, n_positions=32, injection="none", pos_embedding="once", final_norm="once"
    )
    model = ICLTransformer(cfg, n_dims=3).eval()
    xs, ys = _xy()
    with torch.no_grad():
        looped = model.predict(xs, ys, loops=2)
        with model.rearranged(parse_op("duplicate:0", 1).order):
            dup = model.predict(xs, ys, loops=1)
        once = model.predict(xs, ys, loops=1)
    assert torch.allclose(dup, looped, atol=1e-6, rtol=0) and not torch.allclose(dup, once, atol=1e-3)
    control = ICLTransformer(ModelConfig(n_embd=16, n_layer=1, n_head=2, n_positions=32), n_dims=3).eval()
    control.load_state_dict(model.state_dict())
    with torch.no_grad(), control.rearranged([0, 0]):
        c_dup = control.predict(xs, ys, loops=1)
    with torch.no_grad():
        assert not torch.allclose(c_dup, control.predict(xs, ys, loops=2), atol=1e-3)


# --- tiny trained runs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reg_run(tmp_path_factory):
    cfg = validate(
        {
            "seed": 0,
            "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
            "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
            "training": {"steps": 20, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
            "eval": {"n_prompts": 50, "batch_size": 25},
            "logging": {"log_every": 10, "ckpt_every": 20, "tensorboard": False, "progress": False},
        }
    )
    run = tmp_path_factory.mktemp("surgery") / "run"
    train_run(cfg, run)
    return run


def test_regression_surgery_against_independent_evaluations(reg_run):
    res = run_surgery(reg_run, ["repeat:0-1:x1", "swap:0,1", "drop:0"], n_prompts=60, seed=3)
    cfg = load_run_config(reg_run)
    w = make_workload(cfg, reg_run)
    model = load_run_model(reg_run, cfg, "cpu", w)
    common = dict(n_prompts=60, n_points=7, seed=3, batch_size=25, device="cpu")
    plain = evaluate(model, w.task.without_pool(), baselines=["least_squares"], **common)
    v = res["variants"]
    assert v["original"]["mean"] == plain["model"]["mean"] and v["original"]["ci95"] == plain["model"]["ci95"]
    assert v["repeat:0-1:x1"]["mean"] == plain["model"]["mean"]  # the order [0, 1] is the model itself, bit for bit
    assert res["reference"]["least_squares"]["mean"] == plain["baselines"]["least_squares"]["mean"]
    # swap:0,1 == a model whose blocks are physically exchanged; drop:0 == a 1-layer model holding block 1
    sd = model.state_dict()
    swapped = {
        k.replace("blocks.0.", "blocks.X.").replace("blocks.1.", "blocks.0.").replace("blocks.X.", "blocks.1."): t
        for k, t in sd.items()
    }
    twin = w.build_model()
    twin.load_state_dict(swapped)
    assert v["swap:0,1"]["mean"] == pytest.approx(
        evaluate(twin, w.task.without_pool(), **common)["model"]["mean"], rel=1e-6, abs=1e-9
    )
    one = ICLTransformer(cfg.model.model_copy(update={"n_layer": 1}), n_dims=3)
    one.load_state_dict(
        {k.replace("blocks.1.", "blocks.0."): t for k, t in sd.items() if not k.startswith("blocks.0.")}
    )
    assert v["drop:0"]["mean"] == pytest.approx(
        evaluate(one, w.task.without_pool(), **common)["model"]["mean"], rel=1e-6, abs=1e-9
    )
    assert v["swap:0,1"]["mean"] != v["original"]["mean"]
    assert v["swap:0,1"]["order"] == [1, 0] and v["drop:0"]["order"] == [1] and v["original"]["order"] == [0, 1]
    assert res["summary_position"] == 6 and v["drop:0"]["at_k"] == v["drop:0"]["mean"][6]  # min(2d, n - 1)
    saved = json.loads((reg_run / "surgery.json").read_text())
    assert saved["variants"]["swap:0,1"]["mean"] == v["swap:0,1"]["mean"] and saved["n_prompts"] == 60
    assert saved["seed"] == 3 and (reg_run / "surgery.png").stat().st_size > 0


def test_cli_writes_the_table_json_and_figure(reg_run):
    r = runner.invoke(
        app, ["surgery", str(reg_run), "--op", "duplicate:1", "--op", "reverse", "--n-prompts", "30", "--out-tag", "t"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads((reg_run / "surgery_t.json").read_text())
    assert list(out["variants"]) == ["original", "duplicate:1", "reverse"] and out["n_prompts"] == 30
    assert (reg_run / "surgery_t.png").stat().st_size > 0
    assert "duplicate:1" in r.output and "0 1 1" in r.output and "least_squares" in r.output
    assert f"{out['variants']['reverse']['at_k']:.4f}" in r.output and "surgery_t.json" in r.output


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--op", "drop:99"], "op 'drop:99': layer 99 out of range 0..1 (the model has 2 blocks)"),
        (["--op", "swap:1"], "op 'swap:1': expected swap:i,j"),
        (["--n-prompts", "0"], "--n-prompts"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(reg_run, args, expected):
    r = runner.invoke(app, ["surgery", str(reg_run), *args])
    assert r.exit_code == 2 and expected in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_cli_on_a_directory_that_is_no_run(tmp_path):
    r = runner.invoke(app, ["surgery", str(tmp_path), "--op", "reverse"])
    assert r.exit_code == 2 and "not an iclab run directory" in r.output


def test_sorting_surgery_measures_token_accuracy_on_its_eval_sequences(tmp_path):
    cfg = validate(
        {
            "task": {"name": "sorting", "seq_len": 4, "options": {"vocab": 8}},
            "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16},
            "training": {"steps": 10, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
            "eval": {"n_prompts": 40, "batch_size": 16},
            "logging": {"log_every": 10, "ckpt_every": 10, "tensorboard": False, "progress": False},
        }
    )
    run = tmp_path / "sort"
    ev = train_run(cfg, run)["eval"]
    res = run_surgery(run, ["reverse", "loops:2"])
    v = res["variants"]
    assert v["original"]["metrics"] == ev["lengths"]["4"]  # the same sequences as its eval.json's trained length
    w = make_workload(cfg, run)
    model = load_run_model(run, cfg, "cpu", w)
    with model.rearranged([1, 0]):
        rev = w.metrics_of(model, w.eval_batches(4, 40, cfg.eval.seed, "cpu"))
    assert v["reverse"]["metrics"] == rev and v["reverse"]["value"] == rev["token_accuracy"]
    assert v["loops:2"]["metrics"] == w.metrics_of(model, w.eval_batches(4, 40, cfg.eval.seed, "cpu"), loops=2)
    assert (run / "surgery.png").is_file() and json.loads((run / "surgery.json").read_text())["family"] == "sequence"
