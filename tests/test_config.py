import pytest

from iclab.config import ConfigError, load_config, validate


def test_defaults_are_the_paper_model():
    cfg = validate({})
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.model.n_head) == (12, 256, 8)
    assert (cfg.task.n_dims, cfg.task.n_points, cfg.training.batch_size) == (20, 41, 64)


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"training": {"lrr": 1e-3}}, "training.lrr: unknown key"),
        ({"model": {"n_embd": "wide"}}, "model.n_embd"),
        ({"model": {"n_layer": 0}}, "model.n_layer"),
        ({"task": {"name": "linear_regresion"}}, "unknown task 'linear_regresion'"),
        ({"training": {"optimizer": {"name": "adamm"}}}, "unknown optimizer 'adamm'"),
        ({"training": {"optimizer": {"name": "adam", "options": {"betaz": [0.9, 0.9]}}}}, "betaz"),
        ({"model": {"loops": 3, "loop_window": 5}}, "loop_window"),
        (
            {"task": {"n_dims": 5}, "curriculum": {"dims": {"start": 2, "end": 9}}},
            "curriculum.dims.end=9 exceeds task.n_dims=5",
        ),
        ({"model": {"n_embd": 30, "n_head": 4}}, "divisible"),
        ({"eval": {"baselines": ["least_squares", "nope"]}}, "unknown baseline 'nope'"),
    ],
)
def test_bad_configs_name_the_problem(data, needle):
    with pytest.raises(ConfigError) as e:
        validate(data)
    assert needle in str(e.value)


def test_overrides_and_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  lr: 0.001\nmodel:\n  n_layer: 2\n")
    cfg = load_config(p, ["training.lr=3e-4", "model.n_embd=32", "model.n_head=4", "training.optimizer.name=muon"])
    assert cfg.training.lr == 3e-4 and cfg.model.n_embd == 32 and cfg.model.n_layer == 2
    assert cfg.training.optimizer.name == "muon"
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(p, ["training.lr"])
    with pytest.raises(ConfigError, match="training.nope: unknown key"):
        load_config(p, ["training.nope=1"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError):
        load_config(evil)
