"""The `project` fixture of the README tests (their helpers: lines.py)."""

import dataclasses
import types

import pytest
from ktemplate.pipelines import text
from ktemplate.tuning import search

from ktemplate import run
from ktemplate.check import SMOKE_CONFIG
from tests.helpers.text import (
    FILLER,
    NEGATIVE,
    POSITIVE,
    install_glove_stand_in,
    make_vader_sdist,
)


@pytest.fixture
def project(tmp_path, monkeypatch, online):
    """A new project folder as the working directory, every run a smoke run, every sweep 2
    trials of one epoch, and local stand-ins for the data README's lines would fetch."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KTEMPLATE_PROJECT_DIR", raising=False)
    real_train, real_tune = run.train, search.tune

    def smoke_train(template, config=None, *args, **kwargs):
        if run._CHECKING.get():  # the smoke run's own call
            return real_train(template, config, *args, **kwargs)
        if config is not None:
            config = dataclasses.replace(config, **SMOKE_CONFIG)
        return real_train(template, config, *args, **{**kwargs, "smoke": True})

    def short_tune(template, config, fixed, sweep, *args, **kwargs):
        sweep = dataclasses.replace(sweep, max_trials=min(sweep.max_trials, 2), max_epochs=1)
        return real_tune(template, config, fixed, sweep, *args, **kwargs)

    monkeypatch.setattr(run, "train", smoke_train)
    monkeypatch.setattr(search, "tune", short_tune)
    cache = tmp_path / ".cache"
    (cache / "vaderSentiment").mkdir(parents=True)
    sha256 = make_vader_sdist(cache / "vaderSentiment" / text.VADER_SDIST, per_file=40)
    monkeypatch.setenv("KTEMPLATE_CACHE_DIR", str(cache))
    monkeypatch.setattr(text, "VADER_SHA256", sha256)
    # the package `pip install "ktemplate[vectors]"` installs
    install_glove_stand_in(
        tmp_path / ".glove", sorted(set(POSITIVE + NEGATIVE + FILLER)), monkeypatch
    )
    return types.SimpleNamespace(path=tmp_path, real_train=real_train)
