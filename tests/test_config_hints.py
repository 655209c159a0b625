"""Config mistakes a user makes get a hint: a close key, a directory for a file, a schedule that does not
happen as named."""

import warnings

import pytest

from iclab.config import load_config
from iclab.config_files import ConfigError, ScheduleWarning

QS = "configs/quickstart.yaml"


@pytest.mark.parametrize(
    "override, hint",
    [
        ("training.step=5", "did you mean training.steps?"),
        ("model.n_layers=3", "did you mean model.n_layer?"),
        ("training.optimizer.nme=adam", "did you mean training.optimizer.name?"),
    ],
)
def test_unknown_key_suggests_the_close_one(override, hint):
    with pytest.raises(ConfigError, match=hint.replace(".", r"\.").replace("?", r"\?")):
        load_config(QS, [override])


def test_unknown_key_without_a_close_one_has_no_hint():
    with pytest.raises(ConfigError) as e:
        load_config(QS, ["training.zzzzqqq=1"])
    assert "did you mean" not in str(e.value)


def test_a_directory_for_a_config_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; a config file"):
        load_config(tmp_path)
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(ConfigError, match="it is a run directory"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    "overrides, text",
    [
        (["training.steps=100"], "warmup_steps=100 >= training.steps=100"),
        (["training.schedule=constant"], "has no effect with training.schedule=constant"),
        (["training.steps=110"], "runs into the decay of the last 22 steps"),
        (["training.schedule=warmup_cosine", "training.min_lr_ratio=1.0"], "never decays"),
    ],
)
def test_schedules_that_do_not_happen_as_named_warn_with_the_numbers(overrides, text):
    with pytest.warns(ScheduleWarning, match=text):
        load_config(QS, overrides)


def test_a_sound_schedule_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleWarning)
        load_config(QS, ["training.steps=300"])
        load_config(QS)
