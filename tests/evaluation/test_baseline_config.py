"""eval.baselines entries with options and labels: validation, evaluation keyed by label, figures."""

import json

import pytest
import torch

from iclab.config import ConfigError, dump_config, load_config, validate
from iclab.evaluation.plots import plot_error_curves
from iclab.evaluation.regression import evaluate
from iclab.models import make_model
from iclab.workloads.regression.functions import make_task


def _cfg(baselines, **eval_kw):
    return {
        "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
        "model": {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32},
        "eval": {"baselines": baselines, **eval_kw},
    }


def test_plain_names_and_mappings_validate_with_options_filled_and_labels():
    cfg = validate(
        _cfg(
            [
                "least_squares",
                {"name": "lasso", "options": {"alpha": 0.1}},
                {"name": "ridge", "options": {"alpha": 2}, "label": "ridge strong"},
            ]
        )
    )
    b = cfg.eval.baselines
    assert b[0] == "least_squares"
    assert b[1]["label"] == "lasso(alpha=0.1)" and b[1]["options"]["alpha"] == 0.1
    assert b[1]["options"]["solver"] == "lars"  # defaults filled in: the saved config says what ran
    assert b[2] == {"name": "ridge", "options": {"alpha": 2.0}, "label": "ridge strong"}
    # the saved config reloads to the same thing
    import yaml

    again = validate(yaml.safe_load(dump_config(cfg)))
    assert again.eval.baselines == cfg.eval.baselines


@pytest.mark.parametrize(
    "entry, needle",
    [
        ({"name": "lasso", "options": {"alpah": 0.1}}, "unknown option 'alpah'"),
        ({"name": "lasso", "options": {"alpha": -1}}, "option 'alpha'"),
        ({"name": "ridge", "options": {"alpha": "big"}}, "option 'alpha'"),
        ({"name": "knn", "options": {"k": 0}}, "option 'k'"),
        ({"name": "xgboost", "options": {"positions": [-1]}}, "positions must be >= 0"),
        ({"name": "relu_net_gd", "options": {"optimizer": "lbfgs"}}, "option 'optimizer'"),
        ({"name": "least_squares", "options": {"alpha": 1}}, "unknown option 'alpha'"),
        ({"name": "lassso"}, "unknown baseline 'lassso'"),
        ({"name": "lasso", "opts": {}}, "unknown key(s) ['opts']"),
        ({"options": {"alpha": 1}}, "has no name"),
        (3, "a baseline is a name or a mapping"),
    ],
)
def test_bad_baseline_entries_are_config_errors_naming_the_problem(entry, needle):
    with pytest.raises(ConfigError) as e:
        validate(_cfg(["least_squares", entry]))
    assert "eval.baselines" in str(e.value) and needle in str(e.value)


def test_duplicate_labels_and_out_of_range_positions_are_errors():
    with pytest.raises(ConfigError, match="label 'lasso\\(alpha=0.1\\)' appears twice"):
        validate(_cfg([{"name": "lasso", "options": {"alpha": 0.1}}, {"name": "lasso", "options": {"alpha": 0.1}}]))
    with pytest.raises(ConfigError, match="label 'knn' appears twice"):
        validate(_cfg(["knn", {"name": "knn", "options": {"k": 5}, "label": "knn"}]))
    with pytest.raises(ConfigError, match="positions \\[2, 7\\] must be < the 7 points"):
        validate(_cfg([{"name": "decision_tree", "options": {"positions": [2, 7]}}]))
    validate(_cfg([{"name": "decision_tree", "options": {"positions": [2, 7]}}], n_points=8))  # eval.n_points


def test_overrides_can_set_baseline_entries(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(json.dumps(_cfg(["least_squares"])))
    cfg = load_config(p, ["eval.baselines=[averaging, {name: lasso, options: {alpha: 0.01}}]"])
    assert cfg.eval.baselines[1]["label"] == "lasso(alpha=0.01)"


def test_evaluate_keys_baselines_by_label_and_nulls_positions_not_fitted(tmp_path):
    cfg = validate(
        _cfg(
            [
                "least_squares",
                {"name": "ridge", "options": {"alpha": 1e-6}, "label": "ridge tiny"},
                {"name": "ridge", "options": {"alpha": 100.0}},
                {"name": "decision_tree", "options": {"positions": [0, 3, 6], "max_depth": 2}},
            ]
        )
    )
    torch.manual_seed(0)
    model = make_model(cfg.model, "regression", n_dims=cfg.task.n_dims)
    task = make_task("linear_regression", 3)
    ev = evaluate(model, task, n_prompts=40, n_points=7, baselines=cfg.eval.baselines, batch_size=20)
    assert list(ev["baselines"]) == ["least_squares", "ridge tiny", "ridge(alpha=100)", "decision_tree(max_depth=2)"]
    ls, tiny, big = (
        ev["baselines"]["least_squares"]["mean"],
        ev["baselines"]["ridge tiny"]["mean"],
        ev["baselines"]["ridge(alpha=100)"]["mean"],
    )
    assert ls[6] < 1e-8 and tiny[6] < 1e-8  # noiseless, 6 points in 3 dims; alpha -> 0 is least squares
    assert big[6] > 1e-2  # heavy shrinkage is visibly worse: the options reached the baseline
    tree = ev["baselines"]["decision_tree(max_depth=2)"]
    assert [m is None for m in tree["mean"]] == [False, True, True, False, True, True, False]
    assert [c is None for c in tree["ci95"]] == [m is None for m in tree["mean"]]
    json.dumps(ev, allow_nan=False)
    assert plot_error_curves([("run", ev)], tmp_path / "f.png").is_file()
