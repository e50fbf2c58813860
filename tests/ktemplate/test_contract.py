"""The contract as code: every template binds, and a broken copy fails at load, naming the hook."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ktemplate import contract, templates

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", templates.BUILTIN)
def test_every_builtin_template_binds(name):
    template = templates.load(name)
    assert isinstance(template, contract.Template) and name == template.NAME
    for hook in contract.HOOKS:
        if hook.required:
            assert callable(getattr(template, hook.name)), hook.name
    assert template.TUNE_OBJECTIVE.startswith("val_")


def _module_from(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[path.stem]
    return module


def _broken_copy(tmp_path, edit) -> Path:
    source = (ROOT / "templates" / "anomaly_autoencoder.py").read_text()
    path = tmp_path / "broken_copy.py"
    path.write_text(edit(source.replace('NAME = "anomaly_autoencoder"', 'NAME = "broken_copy"')))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("def evaluate(", "def _evaluate("), r"hook evaluate\(model, data, "),
        (lambda s: s.replace("def baseline(", "def baselines("), r"baselines\(\) looks like "),
        (
            lambda s: s.replace("def manifest_extras(spec", "def manifest_extras(spec, extra"),
            r"hook manifest_extras takes \(spec, extra\)",
        ),
        (lambda s: s.replace('TUNE_OBJECTIVE = "val_loss"', 'TUNE_OBJECTIVE = "loss"'), "val_"),
        (
            lambda s: s.replace('TUNE_OBJECTIVE = "val_loss"', 'ENSEMBLE_FIELD = "unitz"'),
            "ENSEMBLE_FIELD is 'unitz', which is not a Config field",
        ),
        (
            lambda s: s.replace("target_fpr: float = 0.05", "target_fpr: float = 5.0"),
            "Config\\(\\) fails with its defaults",
        ),
    ],
)
def test_a_broken_template_is_refused_when_it_is_loaded(tmp_path, edit, message):
    module = _module_from(_broken_copy(tmp_path, edit))
    with pytest.raises(contract.ContractError, match=message) as error:
        contract.bind(module)
    assert "broken_copy.py" in str(error.value)


def test_optional_hooks_left_out_are_none_and_the_engine_asks_nothing_else():
    template = templates.load("tabular_mlp")
    assert template.calibrate is None and template.fine_tune is None
    engine = "\n".join(
        p.read_text() for folder in ("ktemplate", "tuning") for p in (ROOT / folder).glob("*.py")
    )
    assert not re.search(r"(getattr|hasattr)\(template", engine)


def test_a_broken_copy_fails_before_any_data_is_loaded(tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    _broken_copy(folder, lambda s: s.replace("def baseline(", "def baselines("))
    result = subprocess.run(
        [sys.executable, "-m", "ktemplate", "train", "broken_copy", "--output-dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "baselines() looks like the hook baseline() misspelled" in result.stderr
    assert not (tmp_path / "broken_copy").exists()  # no run folder was made
