import dataclasses
import json
import typing

import pytest

from ktemplate import config as config_lib
from ktemplate.config import ConfigError, TrainingConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    filters: int = 32  # filters of the first block
    name: str | None = None  # an optional name


def test_overrides_from_text_are_typed():
    config = config_lib.apply_overrides(
        Config(),
        {"epochs": "3", "learning_rate": "0.01", "batch_norm": "false", "optimizer": "sgd"},
        from_text=True,
    )
    assert config.epochs == 3
    assert config.learning_rate == 0.01
    assert config.batch_norm is False
    assert config.optimizer == "sgd"


def test_optional_field_accepts_none_and_text():
    assert config_lib.apply_overrides(Config(), {"name": "none"}, from_text=True).name is None
    assert config_lib.apply_overrides(Config(), {"name": "abc"}, from_text=True).name == "abc"


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as excinfo:
        config_lib.apply_overrides(Config(), {"filterz": "3"}, from_text=True)
    message = str(excinfo.value)
    assert "'filterz'" in message
    assert "filters" in message and "learning_rate" in message


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("epochs", "three", "expects an integer"),
        ("batch_norm", "maybe", "expects a boolean"),
        ("optimizer", "adamx", "must be one of"),
        ("dropout", "1.5", "'dropout' must be in [0, 1)"),
        ("epochs", "0", "'epochs' must be > 0"),
    ],
)
def test_bad_values_name_the_key(key, value, expected):
    with pytest.raises(ConfigError, match=key) as excinfo:
        config_lib.apply_overrides(Config(), {key: value}, from_text=True)
    assert expected in str(excinfo.value)


def test_typed_file_values_are_not_coerced_from_strings():
    with pytest.raises(ConfigError, match="'epochs' expects an integer"):
        config_lib.apply_overrides(Config(), {"epochs": "3"})
    with pytest.raises(ConfigError, match="'epochs' expects an integer"):
        config_lib.apply_overrides(Config(), {"epochs": True})
    assert config_lib.apply_overrides(Config(), {"learning_rate": 1}).learning_rate == 1.0


@pytest.mark.parametrize(
    "suffix, text",
    [
        (".json", json.dumps({"epochs": 4, "optimizer": "sgd"})),
        (".toml", 'epochs = 4\noptimizer = "sgd"\n'),
        (".yaml", "epochs: 4\noptimizer: sgd\n"),
    ],
)
def test_config_files(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    config = config_lib.resolve_config(Config, path, ["epochs=5"])
    assert config.optimizer == "sgd"
    assert config.epochs == 5  # --set wins over the file


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Config file not found"):
        config_lib.load_config_file(tmp_path / "missing.json")
    bad = tmp_path / "c.ini"
    bad.write_text("x")
    with pytest.raises(ConfigError, match="use .json, .toml, .yaml"):
        config_lib.load_config_file(bad)
    broken = tmp_path / "c.json"
    broken.write_text("{epochs: ")
    with pytest.raises(ConfigError, match="Could not parse"):
        config_lib.load_config_file(broken)


def test_assignment_without_equals_sign():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config_lib.parse_assignments(["epochs"])


def test_every_field_has_a_comment():
    comments = config_lib.field_comments(Config)
    for field in dataclasses.fields(Config):
        assert comments.get(field.name), f"field {field.name} has no comment"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_numbers_are_refused_before_training(value):
    from ktemplate.templates import image_cnn

    with pytest.raises(ConfigError, match="'learning_rate' must be a finite number"):
        config_lib.apply_overrides(image_cnn.Config(), {"learning_rate": value}, from_text=True)
    with pytest.raises(ValueError, match="'dropout' must be a finite number"):
        image_cnn.Config(dropout=float(value))


def _numeric_fields():
    from ktemplate import templates

    for name in templates.names():
        config_cls = templates.load(name).Config
        hints = typing.get_type_hints(config_cls)
        for field in dataclasses.fields(config_cls):
            kinds = typing.get_args(hints[field.name]) or (hints[field.name],)
            if bool not in kinds and any(kind in (int, float) for kind in kinds):
                yield name, field.name


@pytest.mark.parametrize(("template", "key"), list(_numeric_fields()))
def test_every_numeric_field_refuses_negative_values_with_its_range(template, key):
    from ktemplate import templates

    config_cls = templates.load(template).Config
    with pytest.raises(ConfigError, match=rf"\b{key}\b.* (must be|>)"):
        config_lib.apply_overrides(config_cls(), {key: "-1"}, from_text=True)


def test_ranges_are_declared_on_the_fields_and_shown():
    from ktemplate.templates import image_cnn

    ranges = config_lib.field_ranges(image_cnn.Config)
    assert ranges["filters"].describe() == "> 0" and ranges["translate"].describe() == "in [0, 1)"
    assert ranges["members"].describe() == "> 0"  # `PositiveInt | Auto`: auto is not checked
    assert image_cnn.Config(members="auto").members == "auto"
    shown = config_lib.config_help(image_cnn.Config)
    assert "filters = 32  (int, > 0)" in shown and "backbone_size = 96  (int, >= 32)" in shown
    with pytest.raises(ValueError, match=r"'translate' must be in \[0, 1\), got 1.5"):
        image_cnn.Config(translate=1.5)
